using System.Globalization;
using System.Numerics;
using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Nn;

/// <summary>
/// DCN-V2's cross network (Wang et al., WWW 2021) over the flattened embeddings x0 [B, n] (n = F·D):
/// <code>
///   full rank:   x_{l+1} = x0 ∘ (W_l·x_l + b_l) + x_l                                   W_l [n, n]
///   low rank:    x_{l+1} = x0 ∘ (U_l·(V_lᵀ·x_l) + b_l) + x_l                            U_l, V_l [n, r]
///   mixture:     x_{l+1} = x0 ∘ (Σ_i G_i(x_l)·U_l^i·(V_l^iᵀ·x_l) + b_l) + x_l,   G(x_l) = softmax(Γ_l·x_l) over K experts
/// </code>
/// (the paper's mixture, eq. 3–4, with its softmax gate; Σ_i G_i = 1, so the shared bias stays outside the sum; the
/// optional non-linear projection of its eq. 5 is not implemented). Parameters per layer l: full rank <c>{l}.weight</c>
/// [n, n] (PyTorch Linear layout: y = x·Wᵀ); low rank <c>{l}.u.{i}</c> and <c>{l}.v.{i}</c> [n, r] for each expert i;
/// with K &gt; 1 experts the gate <c>{l}.gate</c> [K, n]; always <c>{l}.bias</c> [n] (zero-initialised).
/// The math is <see cref="Apply{T}"/>, generic like the ops (gradient-checked in double); the module holds the float weights.
/// </summary>
public sealed class CrossNetworkV2 : Module
{
    private readonly CrossV2Layer<float>[] _layers;

    /// <summary>Builds <paramref name="layers"/> cross layers of width <paramref name="width"/>, initialised from <paramref name="rng"/>.</summary>
    /// <param name="width">n = F·D.</param>
    /// <param name="layers">Number of cross layers (≥ 1).</param>
    /// <param name="rank">0 for full-rank layers, else r (1 ≤ r ≤ n).</param>
    /// <param name="experts">Low-rank experts per layer (1: no mixture; &gt; 1 needs a rank).</param>
    /// <param name="rng">Seeded source of the uniform initialisation (biases start at zero).</param>
    public CrossNetworkV2(int width, int layers, int rank, int experts, Random rng)
    {
        if (layers <= 0) throw new ArgumentException($"CrossNetworkV2: {layers} layers; at least one is needed.");
        if (rank < 0 || rank > width) throw new ArgumentException($"CrossNetworkV2: rank {rank} must be 0 (full rank) or 1…{width}.");
        if (experts < 1 || (experts > 1 && rank == 0)) throw new ArgumentException($"CrossNetworkV2: {experts} experts; a mixture (> 1) needs a low rank.");
        Width = width;
        Rank = rank;
        Experts = experts;
        _layers = new CrossV2Layer<float>[layers];
        for (int l = 0; l < layers; l++)
        {
            string p = l.ToString(CultureInfo.InvariantCulture);
            if (rank == 0)
            {
                var w = AddParameter(p + ".weight", Init.Uniform(rng, 1f / MathF.Sqrt(width), width, width));
                _layers[l] = new CrossV2Layer<float>(w, [], [], null, AddParameter(p + ".bias", Tensor<float>.Zeros(width)));
                continue;
            }
            var u = new Tensor<float>[experts];
            var v = new Tensor<float>[experts];
            for (int i = 0; i < experts; i++)
            {
                string e = i.ToString(CultureInfo.InvariantCulture);
                u[i] = AddParameter($"{p}.u.{e}", Init.Uniform(rng, 1f / MathF.Sqrt(rank), width, rank));
                v[i] = AddParameter($"{p}.v.{e}", Init.Uniform(rng, 1f / MathF.Sqrt(width), width, rank));
            }
            var gate = experts > 1 ? AddParameter(p + ".gate", Init.Uniform(rng, 1f / MathF.Sqrt(width), experts, width)) : null;
            _layers[l] = new CrossV2Layer<float>(null, u, v, gate, AddParameter(p + ".bias", Tensor<float>.Zeros(width)));
        }
    }

    /// <summary>n = F·D: the width of every layer's input and output.</summary>
    public int Width { get; }
    /// <summary>0 for full-rank layers, else the rank r of U·Vᵀ.</summary>
    public int Rank { get; }
    /// <summary>Low-rank experts per layer (1: no mixture).</summary>
    public int Experts { get; }
    /// <summary>The layers' float weights, input side first.</summary>
    public IReadOnlyList<CrossV2Layer<float>> Layers => _layers;

    /// <summary>x0 [B, n] → x_L [B, n].</summary>
    public Tensor<float> Forward(Tensor<float> x0) => Apply(x0, _layers);

    /// <summary>Weights of a network of <paramref name="layers"/> layers (as the constructor builds it).</summary>
    public static long ParameterCount(long width, int layers, int rank, int experts) =>
        layers * (width + (rank == 0 ? width * width : experts * 2 * width * rank + (experts > 1 ? experts * width : 0)));

    /// <summary>The cross layers: x0 [B, n] → x_L [B, n].</summary>
    public static Tensor<T> Apply<T>(Tensor<T> x0, IReadOnlyList<CrossV2Layer<T>> layers) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var x = x0;
        foreach (var layer in layers)
        {
            Tensor<T> y;                                                           // [B, n]: W·x_l + b_l (or its low-rank / mixture form)
            if (layer.Weight is not null) y = Op.Linear(x, layer.Weight, layer.Bias);
            else if (layer.Gate is null) y = Op.Linear(Op.MatMul(x, layer.V[0]), layer.U[0], layer.Bias); // [B, r] → [B, n]
            else
            {
                int k = layer.U.Count;
                var gates = Op.Split(Op.Softmax(Op.Linear(x, layer.Gate), axis: 1), Enumerable.Repeat(1, k).ToArray(), axis: 1); // K × [B, 1]
                Tensor<T>? mix = null;
                for (int i = 0; i < k; i++)
                {
                    var expert = Op.Linear(Op.MatMul(x, layer.V[i]), layer.U[i]);                 // [B, n] = U_i·(V_iᵀ·x_l)
                    var weighted = Op.MulColumn(expert, Op.Reshape(gates[i], -1));                 // [B, n] · G_i [B]
                    mix = mix is null ? weighted : Op.Add(mix, weighted);
                }
                y = Op.Add(mix!, layer.Bias);
            }
            x = Op.Add(Op.Mul(x0, y), x);                                          // x0 ∘ y + x_l
        }
        return x;
    }
}

/// <summary>One DCN-V2 cross layer's weights: <see cref="Weight"/> [n, n] (full rank), or the experts' <see cref="U"/> and
/// <see cref="V"/> [n, r] with the gate [K, n] when K &gt; 1; the bias [n].</summary>
public sealed record CrossV2Layer<T>(Tensor<T>? Weight, IReadOnlyList<Tensor<T>> U, IReadOnlyList<Tensor<T>> V, Tensor<T>? Gate, Tensor<T> Bias)
    where T : unmanaged, IFloatingPointIeee754<T>;
