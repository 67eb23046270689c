using KdEngine.Tensors;

namespace KdEngine.Training;

/// <summary>
/// Stochastic gradient descent with optional momentum (PyTorch's form, no dampening):
/// b ← μ·b + ĝ; w ← w − lr·b, or with Nesterov w ← w − lr·(ĝ + μ·b). Plain SGD (μ = 0) keeps no state.
/// </summary>
/// <remarks>
/// For embedding tables the momentum is lazy: only the touched rows' buffers decay and move (as TF's sparse
/// momentum update does); a row not seen for k steps resumes with the buffer it had.
/// </remarks>
public sealed class Sgd : Optimizer
{
    /// <summary>SGD over <paramref name="parameters"/>; invalid settings are an <see cref="ArgumentException"/> naming them.</summary>
    /// <param name="parameters">The tensors to update.</param>
    /// <param name="learningRate">The step size.</param>
    /// <param name="momentum">μ ≥ 0 (0 = plain SGD).</param>
    /// <param name="nesterov">Nesterov momentum; needs μ &gt; 0.</param>
    public Sgd(IEnumerable<Tensor<float>> parameters, float learningRate, float momentum = 0f, bool nesterov = false)
        : base(parameters, learningRate, Slots(momentum, nesterov))
    {
        Momentum = momentum;
        Nesterov = nesterov;
    }

    /// <summary>μ: the momentum (0 = plain SGD).</summary>
    public float Momentum { get; }
    /// <summary>True for Nesterov momentum.</summary>
    public bool Nesterov { get; }

    private static (string, float)[] Slots(float momentum, bool nesterov)
    {
        if (!(momentum >= 0f && momentum < 1f))
            throw new ArgumentOutOfRangeException(nameof(momentum), momentum, $"Sgd: momentum must be in [0, 1); got {momentum}.");
        if (nesterov && momentum == 0f)
            throw new ArgumentException("Sgd: Nesterov momentum needs momentum > 0.", nameof(nesterov));
        return momentum == 0f ? [] : [("momentum_buffer", 0f)];
    }

    /// <inheritdoc/>
    protected override void Update(int index, int offset, Span<float> weights, ReadOnlySpan<float> gradient, float gradientScale, float l2)
    {
        if (Momentum == 0f)
            UpdateKernels.Sgd(weights, gradient, gradientScale, l2, LearningRate);
        else
            UpdateKernels.SgdMomentum(weights, gradient, State(0, index).AsSpan(offset, weights.Length),
                gradientScale, l2, LearningRate, Momentum, Nesterov);
    }
}
