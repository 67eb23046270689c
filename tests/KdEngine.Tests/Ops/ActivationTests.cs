using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;
using NUnit.Framework;
using static KdEngine.Tests.Autograd.GradCheckTests;

namespace KdEngine.Tests.Ops;

/// <summary>Gradient checks of the elementwise ops at sizes that hit the Vector512 body and the scalar tail.</summary>
public class ActivationTests
{
    private static Tensor<T> LeakyReluF<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.LeakyRelu(x[0], T.CreateChecked(0.1));
    private static Tensor<T> SigmoidF<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.Sigmoid(x[0]);
    private static Tensor<T> SigmoidT3F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.SigmoidWithTemperature(x[0], T.CreateChecked(3));
    private static Tensor<T> TanhF<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.Tanh(x[0]);
    private static Tensor<T> ExpF<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.Exp(x[0]);
    private static Tensor<T> LogF<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.Log(x[0]);
    private static Tensor<T> NegF<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.Neg(x[0]);
    private static Tensor<T> SquareF<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.Square(x[0]);

    private static readonly int[] Sizes = [1, 7, 17, 33];

    private static void Check(Func<Tensor<double>[], Tensor<double>> fd, Func<Tensor<float>[], Tensor<float>> ff, double[] x)
        => AssertPasses(GradCheck.Run(fd, ff, [x], [new Shape(x.Length)]));

    [TestCaseSource(nameof(Sizes))]
    public void LeakyRelu(int n) =>
        Check(LeakyReluF<double>, LeakyReluF<float>, Random(n, 21).Select(v => v >= 0 ? v + 0.05 : v - 0.05).ToArray());

    [TestCaseSource(nameof(Sizes))]
    public void Sigmoid(int n) => Check(SigmoidF<double>, SigmoidF<float>, Random(n, 22, -6, 6));

    [TestCaseSource(nameof(Sizes))]
    public void SigmoidWithTemperature(int n) => Check(SigmoidT3F<double>, SigmoidT3F<float>, Random(n, 23, -9, 9));

    [TestCaseSource(nameof(Sizes))]
    public void Tanh(int n) => Check(TanhF<double>, TanhF<float>, Random(n, 24, -3, 3));

    [TestCaseSource(nameof(Sizes))]
    public void Tanh_near_zero_where_the_series_is_used(int n) => Check(TanhF<double>, TanhF<float>, Random(n, 25, -0.2, 0.2));

    [TestCaseSource(nameof(Sizes))]
    public void Exp(int n) => Check(ExpF<double>, ExpF<float>, Random(n, 26, -3, 3));

    [TestCaseSource(nameof(Sizes))]
    public void Log(int n) => Check(LogF<double>, LogF<float>, Random(n, 27, 0.2, 5));

    [TestCaseSource(nameof(Sizes))]
    public void Neg_and_Square(int n)
    {
        Check(NegF<double>, NegF<float>, Random(n, 28));
        Check(SquareF<double>, SquareF<float>, Random(n, 29));
    }

    [Test]
    public void Vector_and_scalar_forms_agree_with_the_math_library_over_the_whole_range()
    {
        // 67 values (Vector512 body + tail) spanning tiny, threshold-crossing, moderate and saturating inputs.
        double[] xs = [0, 1e-12, -1e-8, 1e-4, -0.01, 0.1, -0.124, 0.125, 0.126, -0.3, 0.7, -1, 2, -5, 9, 17, -20, 40, -88, 100, 700, -1000, 1000];
        var all = xs.Concat(Random(67 - xs.Length, 30, -12, 12)).ToArray();
        using var tape = Tape<double>.NoGrad();
        var x = Tensor<double>.FromArray(all, all.Length);
        var tanh = Op.Tanh(x).ToArray();
        var sig = Op.Sigmoid(x).ToArray();
        var xf = Tensor<float>.FromArray(all.Select(v => (float)v).ToArray(), all.Length);
        float[] tanhF, sigF;
        using (Tape<float>.NoGrad()) { tanhF = Op.Tanh(xf).ToArray(); sigF = Op.Sigmoid(xf).ToArray(); }
        for (int i = 0; i < all.Length; i++)
        {
            double v = all[i], t = Math.Tanh(v), s = 1 / (1 + Math.Exp(-v));
            Assert.That(tanh[i], Is.EqualTo(t).Within(1e-12 * Math.Max(Math.Abs(t), 1e-300)).Or.EqualTo(t).Within(1e-300), $"tanh({v})");
            Assert.That(sig[i], Is.EqualTo(s).Within(1e-13 * s + 1e-300), $"sigmoid({v})");
            double tf = Math.Tanh((float)v), sf = 1 / (1 + Math.Exp(-(float)v));
            Assert.That((double)tanhF[i], Is.EqualTo(tf).Within(2e-6 * Math.Abs(tf) + 1e-30), $"float tanh({v})");
            Assert.That((double)sigF[i], Is.EqualTo(sf).Within(2e-6 * sf + 1e-30), $"float sigmoid({v})");
            Assert.That(double.IsFinite(tanh[i]) && double.IsFinite(sig[i]) && float.IsFinite(tanhF[i]) && float.IsFinite(sigF[i]), Is.True);
        }
    }

    [Test]
    public void SigmoidWithTemperature_is_sigmoid_of_z_over_T()
    {
        using var tape = Tape<double>.NoGrad();
        var z = Tensor<double>.FromArray(Random(17, 31, -10, 10), 17);
        var a = Op.SigmoidWithTemperature(z, 4.0).ToArray();
        var b = Op.Sigmoid(Op.Scale(z, 0.25)).ToArray();
        Assert.That(a, Is.EqualTo(b).Within(1e-15));
        Assert.Throws<ArgumentException>(() => Op.SigmoidWithTemperature(z, 0.0));
        Assert.Throws<ArgumentException>(() => Op.SigmoidWithTemperature(z, double.NaN));
    }

    [Test]
    public void Log_of_a_non_positive_value_names_the_op_the_shape_and_the_index()
    {
        var data = Random(2 * 17, 32, 0.5, 2);
        data[17 + 3] = -0.5; // row 1, column 3
        var x = Tensor<double>.FromArray(data, new Shape(2, 17), name: "probs");
        using var tape = Tape<double>.NoGrad();
        var ex = Assert.Throws<ArgumentException>(() => Op.Log(x))!;
        Assert.That(ex.Message, Does.Contain("Log").And.Contain("'probs' [2, 17]").And.Contain("[1, 3]").And.Contain("-0.5"));
        data[20] = 0;
        var zero = Tensor<double>.FromArray(data, new Shape(2, 17));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.Log(zero))!.Message, Does.Contain("[1, 3]"));
    }
}
