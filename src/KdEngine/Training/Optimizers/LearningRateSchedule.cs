namespace KdEngine.Training;

/// <summary>What a <see cref="LearningRateSchedule"/> does after its warm-up.</summary>
public enum LearningRateDecay
{
    /// <summary>lr stays at the base rate.</summary>
    Constant,
    /// <summary>lr = base · γ^⌊t / period⌋.</summary>
    Step,
    /// <summary>lr = base · γ^(t / period) (continuous; period 1 = ×γ every step).</summary>
    Exponential,
    /// <summary>lr = min + (base − min) · ½(1 + cos(π·min(t, period)/period)); stays at min after the period.</summary>
    Cosine,
}

/// <summary>
/// A learning rate as a pure function of the optimizer step: linear warm-up for <see cref="WarmupSteps"/> steps,
/// then a decay. Use it as <c>opt.LearningRate = schedule.LearningRate(opt.StepCount)</c> before each
/// <see cref="Optimizer.Step"/>; being a function of the step count alone, it resumes exactly from a checkpoint.
/// </summary>
/// <remarks>
/// Steps are 0-based (step k is the (k+1)-th update). Warm-up: lr(k) = base·(k+1)/W for k &lt; W, so the first
/// update is not wasted at zero and step W−1 reaches the base rate. The decay clock t = k − W starts after the
/// warm-up. Computed in double, rounded once to float.
/// </remarks>
public sealed class LearningRateSchedule
{
    private LearningRateSchedule(float baseRate, int warmupSteps, LearningRateDecay decay, int period, float gamma, float minRate)
    {
        if (!(baseRate >= 0f && float.IsFinite(baseRate)))
            throw new ArgumentOutOfRangeException(nameof(baseRate), baseRate, $"LearningRateSchedule: base learning rate must be a finite number ≥ 0; got {baseRate}.");
        if (warmupSteps < 0)
            throw new ArgumentOutOfRangeException(nameof(warmupSteps), warmupSteps, $"LearningRateSchedule: warm-up steps must be ≥ 0; got {warmupSteps}.");
        if (period < 1)
            throw new ArgumentOutOfRangeException(nameof(period), period, $"LearningRateSchedule ({decay}): the decay period must be ≥ 1 step; got {period}.");
        if (!(gamma > 0f && gamma <= 1f))
            throw new ArgumentOutOfRangeException(nameof(gamma), gamma, $"LearningRateSchedule ({decay}): the decay factor must be in (0, 1]; got {gamma}.");
        if (!(minRate >= 0f && minRate <= baseRate))
            throw new ArgumentOutOfRangeException(nameof(minRate), minRate, $"LearningRateSchedule ({decay}): the minimum rate must be in [0, {baseRate}]; got {minRate}.");
        BaseLearningRate = baseRate;
        WarmupSteps = warmupSteps;
        Decay = decay;
        DecayPeriod = period;
        DecayFactor = gamma;
        MinLearningRate = minRate;
    }

    /// <summary>The learning rate after the warm-up, before any decay.</summary>
    public float BaseLearningRate { get; }
    /// <summary>Steps of linear warm-up from lr/warmup to lr (0 = none).</summary>
    public int WarmupSteps { get; }
    /// <summary>The decay after the warm-up.</summary>
    public LearningRateDecay Decay { get; }

    /// <summary>Step decay: steps between drops; exponential: steps per factor γ; cosine: length of the decay.</summary>
    public int DecayPeriod { get; }

    /// <summary>γ of step and exponential decay.</summary>
    public float DecayFactor { get; }

    /// <summary>The floor of the cosine decay.</summary>
    public float MinLearningRate { get; }

    /// <summary>A constant <paramref name="learningRate"/> (after an optional linear warm-up of <paramref name="warmupSteps"/> steps).</summary>
    public static LearningRateSchedule Constant(float learningRate, int warmupSteps = 0) =>
        new(learningRate, warmupSteps, LearningRateDecay.Constant, 1, 1f, 0f);

    /// <summary>lr·γ^⌊t/stepSize⌋ (PyTorch StepLR).</summary>
    public static LearningRateSchedule StepDecay(float learningRate, int stepSize, float gamma, int warmupSteps = 0) =>
        new(learningRate, warmupSteps, LearningRateDecay.Step, stepSize, gamma, 0f);

    /// <summary>lr·rate^(t/decaySteps) (TF ExponentialDecay, not staircased).</summary>
    public static LearningRateSchedule Exponential(float learningRate, float decayRate, int decaySteps = 1, int warmupSteps = 0) =>
        new(learningRate, warmupSteps, LearningRateDecay.Exponential, decaySteps, decayRate, 0f);

    /// <summary>Cosine from lr down to <paramref name="minLearningRate"/> over <paramref name="decaySteps"/>, then flat.</summary>
    public static LearningRateSchedule Cosine(float learningRate, int decaySteps, float minLearningRate = 0f, int warmupSteps = 0) =>
        new(learningRate, warmupSteps, LearningRateDecay.Cosine, decaySteps, 1f, minLearningRate);

    /// <summary>The learning rate for 0-based step <paramref name="step"/>.</summary>
    public float LearningRate(long step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        double baseRate = BaseLearningRate;
        if (step < WarmupSteps) return (float)(baseRate * (step + 1) / WarmupSteps);
        long t = step - WarmupSteps;
        double lr = Decay switch
        {
            LearningRateDecay.Constant => baseRate,
            LearningRateDecay.Step => baseRate * Math.Pow(DecayFactor, t / DecayPeriod),
            LearningRateDecay.Exponential => baseRate * Math.Pow(DecayFactor, (double)t / DecayPeriod),
            LearningRateDecay.Cosine => MinLearningRate + (baseRate - MinLearningRate) * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(t, DecayPeriod) / DecayPeriod)),
            _ => throw new InvalidOperationException($"LearningRateSchedule: unknown decay {Decay}."),
        };
        return (float)lr;
    }

    /// <summary>The schedule's kind and settings, for logs.</summary>
    public override string ToString() =>
        $"{Decay}(base {BaseLearningRate}, warm-up {WarmupSteps}, period {DecayPeriod}, γ {DecayFactor}, min {MinLearningRate})";
}
