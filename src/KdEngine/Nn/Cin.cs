using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Nn;

/// <summary>
/// xDeepFM's Compressed Interaction Network. Layer k maps X^{k−1} [B, H_{k−1}, D] and X^0 [B, F, D] to
/// X^k [B, H_k, D] with X^k[h,:] = Σ_{i,j} W^k[h, i·F+j]·(X^{k−1}[i,:] ∘ X^0[j,:]) + b^k[h] (the fused,
/// batch-tiled <see cref="Op.CinLayer"/>: the [B, H_{k−1}·F, D] outer product is never materialised).
/// With split-half, each hidden layer but the last sends half its maps on and half to the output.
/// Output maps are sum-pooled over D and concatenated: [B, Σ output maps].
/// Parameters: <c>{k}.weight</c> [H_k, H_{k−1}·F], <c>{k}.bias</c> [H_k].
/// </summary>
public sealed class Cin : Module
{
    private readonly Tensor<float>[] _w, _b;
    private readonly int[] _sizes;

    /// <summary>
    /// A CIN over <paramref name="fields"/> fields with H_k = <paramref name="layerSizes"/>[k] maps per layer. Split-half
    /// needs direct connections and even hidden sizes. Weights are drawn from <paramref name="rng"/>.
    /// </summary>
    public Cin(int fields, IReadOnlyList<int> layerSizes, Activation activation, bool splitHalf, bool directConnections, Random rng)
    {
        if (layerSizes.Count == 0) throw new ArgumentException("Cin: at least one layer is needed.");
        if (splitHalf && !directConnections)
            throw new ArgumentException("Cin: split-half sends half of each layer to the output, so it needs direct connections.");
        _sizes = layerSizes.ToArray();
        _w = new Tensor<float>[_sizes.Length];
        _b = new Tensor<float>[_sizes.Length];
        Fields = fields;
        ActivationKind = activation;
        SplitHalf = splitHalf;
        DirectConnections = directConnections;
        int prevMaps = fields;
        int outputMaps = 0;
        for (int k = 0; k < _sizes.Length; k++)
        {
            int h = _sizes[k];
            bool last = k == _sizes.Length - 1;
            if (h <= 0) throw new ArgumentException($"Cin: layer {k} size {h} must be positive.");
            if (splitHalf && !last && h % 2 != 0)
                throw new ArgumentException($"Cin: with split-half, hidden layer {k} size {h} must be even.");
            int fanIn = prevMaps * fields;
            string p = k.ToString(System.Globalization.CultureInfo.InvariantCulture);
            float bound = 1f / MathF.Sqrt(fanIn);
            _w[k] = AddParameter(p + ".weight", Init.Uniform(rng, bound, h, fanIn));
            _b[k] = AddParameter(p + ".bias", Tensor<float>.Zeros(h));
            int next = splitHalf && !last ? h / 2 : h;
            if (directConnections) outputMaps += splitHalf && !last ? h - next : h;
            else if (last) outputMaps = h;
            prevMaps = next;
        }
        OutputWidth = outputMaps;
    }

    /// <summary>F: the number of fields (rows of X^0).</summary>
    public int Fields { get; }
    /// <summary>The activation applied to each layer's maps.</summary>
    public Activation ActivationKind { get; }
    /// <summary>True when each hidden layer but the last sends half its maps to the output.</summary>
    public bool SplitHalf { get; }
    /// <summary>True when every layer's (output) maps are pooled into the result, not only the last layer's.</summary>
    public bool DirectConnections { get; }
    /// <summary>H_k: maps per layer.</summary>
    public IReadOnlyList<int> LayerSizes => _sizes;

    /// <summary>Layer k's filter W^k [H_k, H_{k−1}·F].</summary>
    public Tensor<float> Weight(int layer) => _w[layer];

    /// <summary>Layer k's bias [H_k].</summary>
    public Tensor<float> Bias(int layer) => _b[layer];

    /// <summary>Width of the pooled output: the number of maps sent to the output.</summary>
    public int OutputWidth { get; }

    /// <summary>x0 [B, F, D] → pooled [B, OutputWidth]; each layer's maps are added to <paramref name="hidden"/> as <c>cin.{k}</c>.</summary>
    public Tensor<float> Forward(Tensor<float> x0, IDictionary<string, Tensor<float>>? hidden = null)
    {
        var pooled = new List<Tensor<float>>(_sizes.Length);
        var h = x0;
        for (int k = 0; k < _sizes.Length; k++)
        {
            bool last = k == _sizes.Length - 1;
            var xk = Mlp.Activate(Op.CinLayer(h, x0, _w[k], _b[k]), ActivationKind); // [B, H_k, D]
            hidden?.Add("cin." + k.ToString(System.Globalization.CultureInfo.InvariantCulture), xk);
            Tensor<float> toOutput;
            if (SplitHalf && !last)
            {
                int half = _sizes[k] / 2;
                var parts = Op.Split(xk, [half, _sizes[k] - half], axis: 1); // [B, H/2, D] each
                h = parts[0];
                toOutput = parts[1];
            }
            else
            {
                h = xk;
                toOutput = xk;
            }
            if (DirectConnections || last) pooled.Add(Op.Sum(toOutput, axis: 2)); // sum-pool over D: [B, maps]
        }
        return pooled.Count == 1 ? pooled[0] : Op.Concat(pooled, axis: 1);
    }
}
