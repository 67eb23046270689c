using KdEngine.Tensors;

namespace KdEngine.Training;

/// <summary>
/// Adam with bias correction, in PyTorch's arithmetic: m ← β1·m + (1−β1)·ĝ; v ← β2·v + (1−β2)·ĝ²;
/// w ← w − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε). L2 is added to the gradient (classic L2, not AdamW).
/// </summary>
/// <remarks>
/// <para>Embedding tables use <b>lazy Adam</b>: only the touched rows' m and v are decayed and updated and only
/// those rows move; an untouched row keeps its weights and moments bit-for-bit (dense Adam would keep
/// moving it on stale momentum and decay its moments every step).</para>
/// <para>Step count: t is per parameter — one count per table, not per row — and grows in each step in which
/// the parameter received any gradient. This is PyTorch SparseAdam's choice (one <c>state['step']</c> per
/// parameter). A rarely seen row is therefore bias-corrected with the table's t, not with the number of times
/// that row was seen. Unlike SparseAdam (ε added before the bias correction), dense and sparse updates share
/// one formula, so a table whose every row is touched each step follows dense Adam exactly.</para>
/// </remarks>
public sealed class Adam : Optimizer
{
    private float _stepSize, _invSqrtBc2;

    /// <summary>
    /// Adam over <paramref name="parameters"/> with step <paramref name="learningRate"/>, moment decays
    /// <paramref name="beta1"/>, <paramref name="beta2"/> in [0, 1) and <paramref name="epsilon"/> &gt; 0 (PyTorch's defaults).
    /// </summary>
    public Adam(IEnumerable<Tensor<float>> parameters, float learningRate = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f, float epsilon = 1e-8f)
        : base(parameters, learningRate, Slots(beta1, beta2, epsilon))
    {
        Beta1 = beta1;
        Beta2 = beta2;
        Epsilon = epsilon;
    }

    /// <summary>β₁: the first moment's decay.</summary>
    public float Beta1 { get; }
    /// <summary>β₂: the second moment's decay.</summary>
    public float Beta2 { get; }
    /// <summary>ε in the update's denominator.</summary>
    public float Epsilon { get; }

    private static (string, float)[] Slots(float beta1, float beta2, float epsilon)
    {
        if (!(beta1 >= 0f && beta1 < 1f)) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, $"Adam: beta1 must be in [0, 1); got {beta1}.");
        if (!(beta2 >= 0f && beta2 < 1f)) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, $"Adam: beta2 must be in [0, 1); got {beta2}.");
        if (!(epsilon > 0f && float.IsFinite(epsilon))) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, $"Adam: epsilon must be > 0; got {epsilon}.");
        return [("exp_avg", 0f), ("exp_avg_sq", 0f)];
    }

    /// <inheritdoc/>
    protected override void BeginParameter(int index, long step)
    {
        // Bias corrections in double: 1 − β^t loses most of its digits in float when β^t is near 1.
        double bc1 = 1.0 - Math.Pow(Beta1, step);
        double bc2 = 1.0 - Math.Pow(Beta2, step);
        _stepSize = (float)(LearningRate / bc1);
        _invSqrtBc2 = (float)(1.0 / Math.Sqrt(bc2));
    }

    /// <inheritdoc/>
    protected override void Update(int index, int offset, Span<float> weights, ReadOnlySpan<float> gradient, float gradientScale, float l2) =>
        UpdateKernels.Adam(weights, gradient,
            State(0, index).AsSpan(offset, weights.Length), State(1, index).AsSpan(offset, weights.Length),
            gradientScale, l2, _stepSize, Beta1, Beta2, _invSqrtBc2, Epsilon);
}
