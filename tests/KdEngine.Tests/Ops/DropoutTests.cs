using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;
using NUnit.Framework;
using static KdEngine.Tests.Autograd.GradCheckTests;

namespace KdEngine.Tests.Ops;

public class DropoutTests
{
    private static float[] Apply(float[] data, float rate, ulong seed)
    {
        using var tape = Tape<float>.NoGrad();
        return Op.Dropout(Tensor<float>.FromArray(data, data.Length), rate, seed, training: true).ToArray();
    }

    [Test]
    public void Same_seed_gives_the_same_mask_and_another_seed_a_different_one()
    {
        var ones = Enumerable.Repeat(1f, 1001).ToArray();
        var a = Apply(ones, 0.3f, 42);
        var b = Apply(ones, 0.3f, 42);
        var c = Apply(ones, 0.3f, 43);
        Assert.That(a, Is.EqualTo(b));
        Assert.That(a, Is.Not.EqualTo(c));
        // float and double draw the same mask
        double[] d;
        using (Tape<double>.NoGrad())
            d = Op.Dropout(Tensor<double>.FromArray(ones.Select(v => (double)v).ToArray(), 1001), 0.3, 42, true).ToArray();
        Assert.That(d.Select(v => v == 0), Is.EqualTo(a.Select(v => v == 0)));
    }

    [TestCase(0.1)]
    [TestCase(0.5)]
    [TestCase(0.9)]
    public void Keeps_about_one_minus_rate_and_scales_survivors_by_its_inverse(double rate)
    {
        int n = 100_003;
        var y = Apply(Enumerable.Repeat(1f, n).ToArray(), (float)rate, 7);
        float keep = (float)(1 / (1 - (float)rate));
        Assert.That(y, Is.All.EqualTo(0f).Or.EqualTo(keep));
        double kept = y.Count(v => v != 0) / (double)n;
        double sd = Math.Sqrt(rate * (1 - rate) / n);
        Assert.That(kept, Is.EqualTo(1 - rate).Within(5 * sd));
        Assert.That(y.Average(v => (double)v), Is.EqualTo(1.0).Within(5 * sd * keep)); // expectation preserved
    }

    [Test]
    public void Identity_without_a_node_when_not_training_or_rate_is_zero()
    {
        var x = Tensor<float>.FromArray([1f, 2f, 3f], 3).RequireGrad();
        using var tape = new Tape<float>();
        Assert.That(Op.Dropout(x, 0.5f, 1, training: false), Is.SameAs(x));
        Assert.That(Op.Dropout(x, 0f, 1, training: true), Is.SameAs(x));
        Assert.That(tape.NodeCount, Is.EqualTo(0));
        Op.Dropout(x, 0.5f, 1, training: true);
        Assert.That(tape.NodeCount, Is.EqualTo(1));
    }

    [TestCase(1)]
    [TestCase(7)]
    [TestCase(17)]
    [TestCase(33)]
    public void Gradient_goes_through_the_same_mask(int n)
    {
        static Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T>
            => Op.Dropout(Op.Square(x[0]), T.CreateChecked(0.4), 99, training: true);
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(n, 90)], [new Shape(n)]));
    }

    [TestCase(-0.1)]
    [TestCase(1.0)]
    [TestCase(double.NaN)]
    public void Rate_outside_0_1_is_rejected(double rate)
    {
        var x = Tensor<double>.FromArray([1.0, 2.0], 2);
        var ex = Assert.Throws<ArgumentException>(() => Op.Dropout(x, rate, 1, training: true))!;
        Assert.That(ex.Message, Does.Contain("Dropout").And.Contain("[2]"));
        Assert.Throws<ArgumentException>(() => Op.Dropout(x, rate, 1, training: false));
    }
}
