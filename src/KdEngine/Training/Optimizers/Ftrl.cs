using KdEngine.Tensors;

namespace KdEngine.Training;

/// <summary>How <see cref="Ftrl"/>'s L1/L2 strengths relate to the number of steps.</summary>
public enum FtrlRegularization
{
    /// <summary>
    /// McMahan et al.'s Algorithm 1: λ1, λ2 enter the closed form once. Over t steps of batch-mean gradients the
    /// algorithm minimises Σ_t loss_t(w) + λ1‖w‖₁ + λ2/2‖w‖², so the regularisation fades relative to the data as
    /// training goes on. Untouched weights never change.
    /// </summary>
    Absolute,
    /// <summary>
    /// The composite-objective form (regularised dual averaging's scaling): λ1, λ2 are multiplied by the table's
    /// step count t, so FTRL minimises Σ_t [loss_t(w) + λ1‖w‖₁ + λ2/2‖w‖²] — i.e. it converges to the minimiser of
    /// mean loss + λ1‖w‖₁ + λ2/2‖w‖², the regularised logistic regression a solver would return. Every weight
    /// shrinks every step, so untouched rows are deferred and recomputed from (z, n, t) when read.
    /// </summary>
    PerStep,
}

/// <summary>
/// FTRL-Proximal (McMahan et al., "Ad Click Prediction: a View from the Trenches", KDD 2013, Algorithm 1) with
/// per-coordinate learning rates and L1/L2 — the standard optimizer for sparse linear CTR models (logistic
/// regression, and the wide part of WDL / DeepFM / xDeepFM beside Adam on the rest, see <see cref="OptimizerGroup"/>).
/// Per coordinate, with ĝ the (clipping-scaled) gradient at the current weight w:
/// <code>
///   σ = (√(n + ĝ²) − √n) / α        z ← z + ĝ − σ·w        n ← n + ĝ²
///   w = 0                                   if |z| ≤ λ1·c
///   w = −(z − sgn(z)·λ1·c) / ((β + √n)/α + λ2·c)   otherwise
/// </code>
/// with c = 1 (<see cref="FtrlRegularization.Absolute"/>) or c = the step count (<see cref="FtrlRegularization.PerStep"/>).
/// α is <see cref="Optimizer.LearningRate"/> and is fixed for the run (the per-coordinate rates α/(β + √n) adapt by
/// themselves; schedules do not apply). State slots: <c>z</c>, <c>n</c>.
/// </summary>
/// <remarks>
/// <para>The weights are a function of (z, n): at construction z is set so that this function returns the current
/// weights (z = −w·(β/α + λ2·c₀) − sgn(w)·λ1·c₀; for zero-initialised linear weights z = 0), so FTRL continues from
/// any initialisation.</para>
/// <para>Coupled L2 (<see cref="Optimizer.DenseL2"/>, <see cref="Optimizer.EmbeddingL2"/>) and decoupled decay are not
/// part of FTRL and are rejected: use <see cref="L1"/> / <see cref="L2"/>.</para>
/// </remarks>
public sealed class Ftrl : Optimizer
{
    private readonly float _invAlpha;
    private float _c; // the regularisation multiplier of the current update (1, or the step count)

    /// <param name="alpha">α, the learning-rate scale (McMahan's experiments: 0.05–0.1 for click data).</param>
    /// <param name="beta">β (1 in the paper): the per-coordinate rate is α/(β + √n).</param>
    /// <param name="l1">λ1 ≥ 0 (sparsity).</param>
    /// <param name="l2">λ2 ≥ 0.</param>
    /// <param name="parameters">The tensors to train (dense weights and embedding tables).</param>
    /// <param name="regularization">Absolute (the paper's) or per-step λ1/λ2.</param>
    public Ftrl(IEnumerable<Tensor<float>> parameters, float alpha = 0.05f, float beta = 1f, float l1 = 0f, float l2 = 0f,
        FtrlRegularization regularization = FtrlRegularization.PerStep)
        : base(parameters, alpha, Slots(alpha, beta, l1, l2, regularization))
    {
        Alpha = alpha;
        Beta = beta;
        L1 = l1;
        L2 = l2;
        Regularization = regularization;
        _invAlpha = 1f / alpha;
        // z such that the closed form returns the initial weights (c₀ = 1 in Absolute mode, 0 = no steps yet in PerStep).
        float c0 = regularization == FtrlRegularization.Absolute ? 1f : 0f;
        for (int i = 0; i < Parameters.Count; i++) AnchorZ(Parameters[i].ToArray(), State(0, i), State(1, i), c0);
        RefreshDeferral();
    }

    /// <summary>α: the per-coordinate rate is α/(β + √n).</summary>
    public float Alpha { get; }
    /// <summary>β: the rate's offset (1 in the paper).</summary>
    public float Beta { get; }
    /// <summary>λ1: the L1 strength (sparsity).</summary>
    public float L1 { get; }
    /// <summary>λ2: the L2 strength.</summary>
    public float L2 { get; }
    /// <summary>Whether λ1/λ2 are absolute (the paper) or per step.</summary>
    public FtrlRegularization Regularization { get; }

    /// <inheritdoc/>
    public override bool SchedulesLearningRate => false;

    /// <inheritdoc/>
    public override string Description => $"Ftrl({(Regularization == FtrlRegularization.PerStep ? "perStep" : "absolute")})";

    /// <summary>α is fixed: setting another rate after construction throws (schedules and plateau reductions do not apply to FTRL).</summary>
    public override float LearningRate
    {
        get => base.LearningRate;
        set
        {
            if (_invAlpha != 0f && value != Alpha)
                throw new InvalidOperationException($"Ftrl: α = {Alpha} is fixed for the run (the per-coordinate rates adapt by themselves); got a learning rate of {value}.");
            base.LearningRate = value;
        }
    }

    private static (string, float)[] Slots(float alpha, float beta, float l1, float l2, FtrlRegularization regularization)
    {
        if (!(alpha > 0f && float.IsFinite(alpha))) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, $"Ftrl: alpha must be > 0; got {alpha}.");
        if (!(beta >= 0f && float.IsFinite(beta))) throw new ArgumentOutOfRangeException(nameof(beta), beta, $"Ftrl: beta must be ≥ 0; got {beta}.");
        if (!(l1 >= 0f && float.IsFinite(l1))) throw new ArgumentOutOfRangeException(nameof(l1), l1, $"Ftrl: l1 must be ≥ 0; got {l1}.");
        if (!(l2 >= 0f && float.IsFinite(l2))) throw new ArgumentOutOfRangeException(nameof(l2), l2, $"Ftrl: l2 must be ≥ 0; got {l2}.");
        if (!Enum.IsDefined(regularization)) throw new ArgumentOutOfRangeException(nameof(regularization), regularization, "Ftrl: unknown regularization mode.");
        return [("z", 0f), ("n", 0f)];
    }

    /// <summary>
    /// Re-derives z from the current weights, keeping n and the step counts: for w ≠ 0, z = −w·((β + √n)/α + λ2·c) −
    /// sgn(w)·λ1·c, the z whose closed form returns w (the constructor's rule, with the accumulated n and c); for w = 0 a z
    /// outside [−λ1·c, λ1·c] (which would give w ≠ 0) becomes 0. Without it, weights written from outside (restored best
    /// weights, a wide part copied from a fitted logistic regression) are replaced by the closed form of the old z at
    /// their next update.
    /// </summary>
    public override void AnchorStateToWeights()
    {
        ApplyDeferredRows();
        for (int i = 0; i < Parameters.Count; i++)
        {
            // c of the weights as they stand: what the last update (or catch-up) of this parameter used.
            float c = Regularization == FtrlRegularization.Absolute ? 1f
                : IsTable(i) && TableUpdate == TableUpdateMode.Lazy && DefersRows(i) && !IsOnDevice(i) ? (float)TableClock(i)
                : IsTable(i) ? ParameterStepCount(i)
                : StepCount;
            AnchorZ(HostValues(i), State(0, i), State(1, i), c);
        }
    }

    /// <summary>Sets z so that the closed form with this n and c returns w: z = −w·((β + √n)/α + λ2·c) − sgn(w)·λ1·c for
    /// w ≠ 0; for w = 0, a z outside [−λ1·c, λ1·c] becomes 0.</summary>
    private void AnchorZ(ReadOnlySpan<float> w, Span<float> z, ReadOnlySpan<float> n, float c)
    {
        for (int k = 0; k < w.Length; k++)
        {
            if (w[k] != 0f)
                z[k] = -(w[k] * ((Beta + MathF.Sqrt(n[k])) * _invAlpha + L2 * c) + MathF.CopySign(L1 * c, w[k]));
            else if (MathF.Abs(z[k]) > L1 * c)
                z[k] = 0f;
        }
    }

    /// <inheritdoc/>
    protected override bool DefersRows(int index) =>
        IsTable(index) && TableUpdate == TableUpdateMode.Lazy && Regularization == FtrlRegularization.PerStep && (L1 > 0f || L2 > 0f);

    /// <inheritdoc/>
    protected override bool DenseEqualsDeferred => true;

    /// <summary>The clock of a deferring table is its step count t (λ's multiplier).</summary>
    protected override double AdvanceClock(int index, double clock) => clock + 1;

    /// <inheritdoc/>
    protected override void CatchUp(int index, int row, Span<float> weights, double from, double to)
    {
        int offset = row * weights.Length;
        float c = (float)to;
        UpdateKernels.FtrlWeights(weights, State(0, index).AsSpan(offset, weights.Length), State(1, index).AsSpan(offset, weights.Length),
            _invAlpha, Beta, L1 * c, L2 * c);
    }

    /// <inheritdoc/>
    protected override void BeginParameter(int index, long step)
    {
        if (DenseL2 != 0f || EmbeddingL2 != 0f || DenseWeightDecay != 0f || EmbeddingWeightDecay != 0f)
            throw new InvalidOperationException("Ftrl: coupled L2 and weight decay are not part of FTRL; set its own l1/l2 instead.");
        // PerStep: c = t after this step — the optimizer's step count for dense parameters (they step every step),
        // the table's clock (already advanced) for a deferring table, its own step count for any other table.
        _c = Regularization == FtrlRegularization.Absolute ? 1f
            : IsTable(index) && TableUpdate == TableUpdateMode.Lazy && DefersRows(index) && !IsOnDevice(index) ? (float)TableClock(index)
            : IsTable(index) ? step
            : StepCount + 1;
    }

    /// <inheritdoc/>
    protected override void Update(int index, int offset, Span<float> weights, ReadOnlySpan<float> gradient, float gradientScale, float l2) =>
        UpdateKernels.Ftrl(weights, gradient, State(0, index).AsSpan(offset, weights.Length), State(1, index).AsSpan(offset, weights.Length),
            gradientScale, _invAlpha, Beta, L1 * _c, L2 * _c);
}
