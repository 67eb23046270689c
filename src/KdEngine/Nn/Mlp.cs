using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Nn;

/// <summary>Hidden-layer activation of an MLP or a CIN layer.</summary>
public enum Activation
{
    /// <summary>max(x, 0).</summary>
    Relu,
    /// <summary>tanh x.</summary>
    Tanh,
    /// <summary>σ(x) = 1 / (1 + e^−x).</summary>
    Sigmoid,
    /// <summary>x unchanged.</summary>
    Identity,
}

/// <summary>
/// A stack of Linear → activation → dropout blocks: [B, in] → [B, widths[^1]]. The i-th Linear is named
/// <c>{i}</c> (so <c>dnn.0.weight</c> is the first layer's [out, in] weight).
/// </summary>
public sealed class Mlp : Module
{
    private readonly Linear[] _layers;
    private readonly ulong _dropoutSeed;
    private ulong _callsThisStep;

    /// <summary>
    /// Hidden layers of the given <paramref name="widths"/> over inputs of width <paramref name="inFeatures"/>, each
    /// followed by <paramref name="activation"/> and, while training, dropout at rate <paramref name="dropout"/> (in [0, 1)).
    /// </summary>
    public Mlp(int inFeatures, IReadOnlyList<int> widths, Activation activation, float dropout, Random rng)
    {
        if (widths.Count == 0) throw new ArgumentException("Mlp: at least one hidden width is needed.");
        if (dropout is < 0 or >= 1) throw new ArgumentException($"Mlp: dropout {dropout} must be in [0, 1).");
        _layers = new Linear[widths.Count];
        int prev = inFeatures;
        for (int i = 0; i < widths.Count; i++)
        {
            _layers[i] = AddModule(i.ToString(System.Globalization.CultureInfo.InvariantCulture), new Linear(prev, widths[i], rng));
            prev = widths[i];
        }
        ActivationKind = activation;
        Dropout = dropout;
        _dropoutSeed = (ulong)rng.NextInt64();
        OutFeatures = prev;
    }

    /// <summary>The activation after each layer.</summary>
    public Activation ActivationKind { get; }
    /// <summary>Dropout rate while training (0 = none).</summary>
    public float Dropout { get; }
    /// <summary>Width of the last layer (the MLP's output).</summary>
    public int OutFeatures { get; }
    /// <summary>Number of layers.</summary>
    public int Depth => _layers.Length;

    /// <summary>The Linear layers, input first (their weights are what a compiled predictor snapshots).</summary>
    public IReadOnlyList<Linear> Layers => _layers;

    /// <summary>
    /// x [B, in] → [B, out]. When <paramref name="hidden"/> is given, each layer's post-activation output is
    /// added as <c>{prefix}{i}</c> (the names distillation uses to pick layers).
    /// </summary>
    public Tensor<float> Forward(Tensor<float> x, IDictionary<string, Tensor<float>>? hidden = null, string prefix = "dnn.")
    {
        var h = x;
        for (int i = 0; i < _layers.Length; i++)
        {
            h = Activate(_layers[i].Forward(h), ActivationKind);
            if (hidden is not null) hidden[prefix + i.ToString(System.Globalization.CultureInfo.InvariantCulture)] = h;
            if (Training && Dropout > 0) h = Op.Dropout(h, Dropout, DropoutSeed(_callsThisStep++), training: true);
        }
        return h;
    }

    /// <inheritdoc/>
    protected override void OnRandomStepChanged() => _callsThisStep = 0;

    /// <summary>
    /// The seed of one dropout mask: a mix of the layer's seed, <see cref="Module.RandomStep"/> and the call number
    /// within that step (every layer of every forward in a step gets its own mask). Depends on nothing else, so a
    /// resumed run reproduces the masks of an uninterrupted one.
    /// </summary>
    private ulong DropoutSeed(ulong call)
    {
        ulong x = _dropoutSeed ^ (0x9E3779B97F4A7C15UL * ((ulong)RandomStep + 1)) ^ (0xC2B2AE3D27D4EB4FUL * (call + 1));
        // splitmix64 finaliser: nearby (step, call) pairs give unrelated seeds.
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    /// <summary>Applies <paramref name="activation"/> to <paramref name="x"/> (identity returns x itself).</summary>
    public static Tensor<float> Activate(Tensor<float> x, Activation activation) => activation switch
    {
        Activation.Relu => Op.Relu(x),
        Activation.Tanh => Op.Tanh(x),
        Activation.Sigmoid => Op.Sigmoid(x),
        _ => x,
    };
}
