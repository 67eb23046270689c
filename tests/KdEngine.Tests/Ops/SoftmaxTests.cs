using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;
using NUnit.Framework;
using static KdEngine.Tests.Autograd.GradCheckTests;

namespace KdEngine.Tests.Ops;

public class SoftmaxTests
{
    private static readonly object[] Cases =
    [
        new object[] { 1, 1.0 }, new object[] { 7, 1.0 }, new object[] { 17, 2.0 }, new object[] { 33, 5.0 },
    ];

    [TestCaseSource(nameof(Cases))]
    public void Softmax_gradient_last_axis(int classes, double temperature)
    {
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.Softmax(x[0], -1, T.CreateChecked(temperature));
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(3 * classes, 50, -4, 4)], [new Shape(3, classes)]));
    }

    [TestCaseSource(nameof(Cases))]
    public void LogSoftmax_gradient_last_axis(int classes, double temperature)
    {
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.LogSoftmax(x[0], -1, T.CreateChecked(temperature));
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(3 * classes, 51, -4, 4)], [new Shape(3, classes)]));
    }

    [TestCase(0)]
    [TestCase(1)]
    public void Softmax_and_LogSoftmax_gradient_along_an_inner_axis(int axis)
    {
        // [5, 7, 17]: axis 0 or 1 has inner = 119 or 17 (the strided kernel path).
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T>
            => Op.Add(Op.Softmax(x[0], axis, T.CreateChecked(2)), Op.LogSoftmax(x[0], axis));
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(5 * 7 * 17, 52, -3, 3)], [new Shape(5, 7, 17)]));
    }

    [TestCase(1)]
    [TestCase(7)]
    [TestCase(33)]
    public void Rows_sum_to_one_and_logits_of_plus_minus_1000_stay_finite(int classes)
    {
        var data = Random(4 * classes, 53, -1000, 1000);
        data[0] = 1000; data[^1] = -1000;
        using var tape = Tape<double>.NoGrad();
        var x = Tensor<double>.FromArray(data, 4, classes);
        var p = Op.Softmax(x).ToArray();
        var lp = Op.LogSoftmax(x).ToArray();
        Assert.That(p.All(double.IsFinite) && lp.All(double.IsFinite), Is.True);
        for (int r = 0; r < 4; r++)
            Assert.That(p.Skip(r * classes).Take(classes).Sum(), Is.EqualTo(1.0).Within(1e-12));
        // The exact answer for [1000, 1000 − 1, −1000] is the softmax of [0, −1, −2000].
        var y = Op.Softmax(Tensor<double>.FromArray([1000, 999, -1000], 1, 3)).ToArray();
        double e = Math.Exp(-1);
        Assert.That(y, Is.EqualTo(new[] { 1 / (1 + e), e / (1 + e), 0 }).Within(1e-15));
        using (Tape<float>.NoGrad())
            Assert.That(Op.LogSoftmax(Tensor<float>.FromArray([1000f, -1000f], 1, 2), -1, 1f).ToArray(), Is.EqualTo(new[] { 0f, -2000f }));
    }

    [TestCase(-1, 1.0)]
    [TestCase(1, 3.0)]
    [TestCase(0, 0.5)]
    public void LogSoftmax_matches_log_of_Softmax(int axis, double temperature)
    {
        using var tape = Tape<double>.NoGrad();
        var x = Tensor<double>.FromArray(Random(3 * 7 * 5, 54, -5, 5), 3, 7, 5);
        var a = Op.LogSoftmax(x, axis, temperature).ToArray();
        var b = Op.Log(Op.Softmax(x, axis, temperature)).ToArray();
        Assert.That(a, Is.EqualTo(b).Within(1e-12));
        // and the temperature divides the logits
        var c = Op.Softmax(Op.Scale(x, 1 / temperature), axis).ToArray();
        Assert.That(Op.Softmax(x, axis, temperature).ToArray(), Is.EqualTo(c).Within(1e-14));
    }

    [Test]
    public void Bad_arguments_are_rejected()
    {
        var x = Tensor<double>.FromArray(Random(6, 55), 2, 3);
        Assert.That(Assert.Throws<ArgumentException>(() => Op.Softmax(x, -1, 0.0))!.Message, Does.Contain("Softmax").And.Contain("temperature"));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.LogSoftmax(x, -1, -2.0))!.Message, Does.Contain("LogSoftmax"));
        Assert.Throws<ArgumentOutOfRangeException>(() => Op.Softmax(x, 2));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.Softmax(Tensor<double>.Zeros(2, 0)))!.Message, Does.Contain("[2, 0]"));
    }
}
