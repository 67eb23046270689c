using System.Numerics;
using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Nn;

/// <summary>
/// DCN's cross network: x_{l+1} = x0 ∘ (x_l · w_l) + b_l + x_l over the flattened embeddings
/// x0 [B, n] (n = F·D); w_l [n, 1] named <c>{l}.weight</c>, b_l [n] named <c>{l}.bias</c>.
/// The math is <see cref="Apply{T}"/>, generic like the ops (gradient-checked in double); the module holds the float weights.
/// </summary>
public sealed class CrossNetwork : Module
{
    private readonly Tensor<float>[] _w, _b;

    /// <summary><paramref name="layers"/> cross layers over inputs of width <paramref name="width"/> (F·D); weights uniform in ±1/√width from <paramref name="rng"/>, biases zero.</summary>
    public CrossNetwork(int width, int layers, Random rng)
    {
        if (layers <= 0) throw new ArgumentException($"CrossNetwork: {layers} layers; at least one is needed.");
        Width = width;
        _w = new Tensor<float>[layers];
        _b = new Tensor<float>[layers];
        float bound = 1f / MathF.Sqrt(width);
        for (int l = 0; l < layers; l++)
        {
            string p = l.ToString(System.Globalization.CultureInfo.InvariantCulture);
            _w[l] = AddParameter(p + ".weight", Init.Uniform(rng, bound, width, 1));
            _b[l] = AddParameter(p + ".bias", Tensor<float>.Zeros(width));
        }
    }

    /// <summary>n: the input width (F·D).</summary>
    public int Width { get; }
    /// <summary>L: the number of cross layers.</summary>
    public int Layers => _w.Length;

    /// <summary>Layer l's weight w_l [n, 1].</summary>
    public Tensor<float> Weight(int layer) => _w[layer];

    /// <summary>Layer l's bias b_l [n].</summary>
    public Tensor<float> Bias(int layer) => _b[layer];

    /// <summary>x0 [B, n] → [B, n].</summary>
    public Tensor<float> Forward(Tensor<float> x0) => Apply(x0, _w, _b);

    /// <summary>The cross layers: x0 [B, n], weights w_l [n, 1], biases b_l [n] → x_L [B, n].</summary>
    public static Tensor<T> Apply<T>(Tensor<T> x0, IReadOnlyList<Tensor<T>> weights, IReadOnlyList<Tensor<T>> biases)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (weights.Count != biases.Count) throw new ArgumentException($"CrossNetwork: {weights.Count} weights but {biases.Count} biases.");
        var x = x0;
        for (int l = 0; l < weights.Count; l++)
        {
            var s = Op.MatMul(x, weights[l]);                                         // [B, 1]  x_l · w_l
            x = Op.Add(Op.Add(Op.MulColumn(x0, Op.Reshape(s, -1)), biases[l]), x);    // [B, n]
        }
        return x;
    }
}
