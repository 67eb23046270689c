using KdEngine.Tensors;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Training;

public class LearningRateScheduleTests
{
    private static void AssertRates(LearningRateSchedule s, params (long Step, double Rate)[] expected)
    {
        foreach (var (step, rate) in expected)
            Assert.That(s.LearningRate(step), Is.EqualTo(rate).Within(1e-7), $"{s} at step {step}");
    }

    [Test]
    public void Linear_warmup_then_constant()
    {
        // base 0.1, W = 4: (k+1)/4 of the base for k < 4, then the base.
        AssertRates(LearningRateSchedule.Constant(0.1f, warmupSteps: 4),
            (0, 0.025), (1, 0.05), (2, 0.075), (3, 0.1), (4, 0.1), (1000, 0.1));
        AssertRates(LearningRateSchedule.Constant(0.1f), (0, 0.1), (7, 0.1));
    }

    [Test]
    public void Step_decay_drops_by_gamma_every_period_after_warmup()
    {
        AssertRates(LearningRateSchedule.StepDecay(0.1f, stepSize: 10, gamma: 0.5f),
            (0, 0.1), (9, 0.1), (10, 0.05), (19, 0.05), (25, 0.025));
        // With 5 warm-up steps the decay clock starts at step 5.
        AssertRates(LearningRateSchedule.StepDecay(0.1f, stepSize: 10, gamma: 0.5f, warmupSteps: 5),
            (0, 0.02), (4, 0.1), (14, 0.1), (15, 0.05));
    }

    [Test]
    public void Exponential_decay_is_continuous()
    {
        AssertRates(LearningRateSchedule.Exponential(0.1f, decayRate: 0.5f, decaySteps: 10),
            (0, 0.1), (5, 0.1 * Math.Sqrt(0.5)), (10, 0.05), (20, 0.025));
        AssertRates(LearningRateSchedule.Exponential(1f, decayRate: 0.9f), (3, 0.729));
    }

    [Test]
    public void Cosine_decays_to_the_floor_and_stays_there()
    {
        var s = LearningRateSchedule.Cosine(0.1f, decaySteps: 100, minLearningRate: 0.01f, warmupSteps: 10);
        AssertRates(s,
            (0, 0.01), (9, 0.1),                                   // warm-up
            (10, 0.1),                                             // t = 0: the base
            (35, 0.01 + 0.09 * 0.5 * (1 + Math.Cos(Math.PI / 4))), // t = 25
            (60, 0.055),                                           // t = 50: half-way
            (110, 0.01), (5000, 0.01));                            // the floor
    }

    [Test]
    public void LearningRate_is_a_pure_function_of_the_step()
    {
        var s = LearningRateSchedule.Cosine(0.3f, decaySteps: 50, warmupSteps: 7);
        var forward = Enumerable.Range(0, 80).Select(k => s.LearningRate(k)).ToArray();
        var backward = Enumerable.Range(0, 80).Reverse().Select(k => s.LearningRate(k)).Reverse().ToArray();
        Assert.That(backward, Is.EqualTo(forward));
    }

    [Test]
    public void Schedule_drives_an_optimizer_step_by_step()
    {
        // SGD with g = 1: each step moves w by exactly the scheduled rate.
        var w = Tensor<float>.FromArray([0f], 1).RequireGrad();
        var opt = new Sgd([w], 1f);
        var s = LearningRateSchedule.StepDecay(0.1f, stepSize: 2, gamma: 0.5f, warmupSteps: 2);
        double expected = 0;
        for (int k = 0; k < 6; k++)
        {
            opt.LearningRate = s.LearningRate(opt.StepCount);
            expected -= s.LearningRate(k);
            w.Grad ??= Tensor<float>.Zeros(1);
            w.Grad.AsSpan()[0] = 1f;
            opt.Step();
        }
        // rates: 0.05, 0.1 (warm-up), 0.1, 0.1, 0.05, 0.05 → Σ = 0.45
        Assert.That(expected, Is.EqualTo(-0.45).Within(1e-7));
        Assert.That(w.AsSpan()[0], Is.EqualTo(expected).Within(1e-6));
    }

    [Test]
    public void Bad_settings_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.Constant(-0.1f));
        Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.Constant(float.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.Constant(0.1f, warmupSteps: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.StepDecay(0.1f, stepSize: 0, gamma: 0.5f));
        Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.StepDecay(0.1f, stepSize: 5, gamma: 1.5f));
        Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.Exponential(0.1f, decayRate: 0f));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.Cosine(0.1f, decaySteps: 10, minLearningRate: 0.2f));
        Assert.That(ex!.Message, Does.Contain("minimum rate"));
        Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.Constant(0.1f).LearningRate(-1));
    }
}
