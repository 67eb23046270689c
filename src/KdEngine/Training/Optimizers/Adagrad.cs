using KdEngine.Tensors;

namespace KdEngine.Training;

/// <summary>
/// Adagrad: a ← a + ĝ²; w ← w − lr·ĝ/(√a + ε) — the usual CTR choice for embeddings, since rare ids keep a
/// large step while frequent ones anneal. For tables only the touched rows' accumulators grow.
/// </summary>
/// <remarks>
/// Defaults follow PyTorch (initial accumulator 0, ε = 1e-10); TensorFlow's Adagrad starts the accumulator
/// at 0.1, which damps the first steps — pass <c>initialAccumulator: 0.1f</c> to match it.
/// </remarks>
public sealed class Adagrad : Optimizer
{
    /// <summary>
    /// Adagrad over <paramref name="parameters"/> with step <paramref name="learningRate"/>, accumulators starting at
    /// <paramref name="initialAccumulator"/> (≥ 0) and <paramref name="epsilon"/> (&gt; 0) in the denominator.
    /// </summary>
    public Adagrad(IEnumerable<Tensor<float>> parameters, float learningRate = 0.01f, float initialAccumulator = 0f, float epsilon = 1e-10f)
        : base(parameters, learningRate, Slots(initialAccumulator, epsilon))
    {
        InitialAccumulator = initialAccumulator;
        Epsilon = epsilon;
    }

    /// <summary>The accumulators' starting value.</summary>
    public float InitialAccumulator { get; }
    /// <summary>ε in w ← w − lr·ĝ/(√a + ε).</summary>
    public float Epsilon { get; }

    private static (string, float)[] Slots(float initialAccumulator, float epsilon)
    {
        if (!(initialAccumulator >= 0f && float.IsFinite(initialAccumulator)))
            throw new ArgumentOutOfRangeException(nameof(initialAccumulator), initialAccumulator, $"Adagrad: initialAccumulator must be ≥ 0; got {initialAccumulator}.");
        if (!(epsilon > 0f && float.IsFinite(epsilon)))
            throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, $"Adagrad: epsilon must be > 0; got {epsilon}.");
        return [("sum", initialAccumulator)];
    }

    /// <inheritdoc/>
    protected override void Update(int index, int offset, Span<float> weights, ReadOnlySpan<float> gradient, float gradientScale, float l2) =>
        UpdateKernels.Adagrad(weights, gradient, State(0, index).AsSpan(offset, weights.Length), gradientScale, l2, LearningRate, Epsilon);
}
