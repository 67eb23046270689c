using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;
using NUnit.Framework;
using static KdEngine.Tests.Autograd.GradCheckTests;

namespace KdEngine.Tests.Ops;

public class DistillationLossTests
{
    private static readonly double[] Temperatures = [1, 2, 5];

    [TestCase(1, 1)]
    [TestCase(3, 7)]
    [TestCase(2, 17)]
    [TestCase(1, 33)]
    public void KlDivergence_gradient_to_both_inputs(int rows, int classes)
    {
        static Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.KlDivergence(x[0], x[1]);
        AssertPasses(GradCheck.Run(F<double>, F<float>,
            [Random(rows * classes, 60, -4, 0), Random(rows * classes, 61, -4, 0)],
            [new Shape(rows, classes), new Shape(rows, classes)]));
    }

    [Test]
    public void KlDivergence_matches_the_definition_and_averages_over_all_leading_dims()
    {
        // rows = 2·3 = 6; classes 5.
        var pt = Random(30, 62, 0.1, 1); var pq = Random(30, 63, 0.1, 1);
        Normalize(pt, 5); Normalize(pq, 5);
        double expected = 0;
        for (int i = 0; i < 30; i++) expected += pt[i] * Math.Log(pt[i] / pq[i]);
        expected /= 6;
        using var tape = Tape<double>.NoGrad();
        var kl = Op.KlDivergence(Tensor<double>.FromArray(pt.Select(v => Math.Log(v)).ToArray(), 2, 3, 5),
            Tensor<double>.FromArray(pq.Select(v => Math.Log(v)).ToArray(), 2, 3, 5));
        Assert.That(kl.Item(), Is.EqualTo(expected).Within(1e-14));
        Assert.That(expected, Is.GreaterThan(0));
    }

    private static void Normalize(double[] p, int classes)
    {
        for (int r = 0; r < p.Length; r += classes)
        {
            double s = 0; for (int j = 0; j < classes; j++) s += p[r + j];
            for (int j = 0; j < classes; j++) p[r + j] /= s;
        }
    }

    [Test]
    public void SoftmaxKd_gradient_at_temperatures_1_2_5([ValueSource(nameof(Temperatures))] double temperature, [Values(1, 7, 33)] int classes)
    {
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.SoftmaxKd(x[0], x[1], T.CreateChecked(temperature));
        AssertPasses(GradCheck.Run(F<double>, F<float>,
            [Random(3 * classes, 64, -5, 5), Random(3 * classes, 65, -5, 5)],
            [new Shape(3, classes), new Shape(3, classes)]));
    }

    [Test]
    public void SoftmaxKd_value_is_T_squared_times_the_KL_of_the_softened_distributions([ValueSource(nameof(Temperatures))] double temperature)
    {
        var zt = Random(2 * 7, 66, -4, 4); var zs = Random(2 * 7, 67, -4, 4);
        double expected = 0;
        for (int r = 0; r < 2; r++)
        {
            var p = SoftmaxRef(zt.AsSpan(r * 7, 7), temperature); var q = SoftmaxRef(zs.AsSpan(r * 7, 7), temperature);
            for (int j = 0; j < 7; j++) expected += p[j] * Math.Log(p[j] / q[j]);
        }
        expected = expected / 2 * temperature * temperature;
        using var tape = Tape<double>.NoGrad();
        var loss = Op.SoftmaxKd(Tensor<double>.FromArray(zt, 2, 7), Tensor<double>.FromArray(zs, 2, 7), temperature);
        Assert.That(loss.Item(), Is.EqualTo(expected).Within(1e-13));
    }

    private static double[] SoftmaxRef(ReadOnlySpan<double> z, double t)
    {
        double m = double.MinValue; foreach (var v in z) m = Math.Max(m, v);
        var e = new double[z.Length]; double s = 0;
        for (int i = 0; i < z.Length; i++) { e[i] = Math.Exp((z[i] - m) / t); s += e[i]; }
        for (int i = 0; i < z.Length; i++) e[i] /= s;
        return e;
    }

    [Test]
    public void BinaryKd_gradient_at_temperatures_1_2_5([ValueSource(nameof(Temperatures))] double temperature, [Values(1, 7, 17, 33)] int n)
    {
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.BinaryKd(x[0], x[1], T.CreateChecked(temperature));
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(n, 68, -6, 6), Random(n, 69, -6, 6)], [new Shape(n, 1), new Shape(n, 1)]));
    }

    [Test]
    public void BinaryKd_equals_SoftmaxKd_over_the_two_class_logits_0_z([ValueSource(nameof(Temperatures))] double temperature)
    {
        // [0, z] as two-class logits [n, 2], built with Concat — the same gradients must reach z_s too.
        int n = 33;
        var zt = Random(n, 70, -8, 8); var zs = Random(n, 71, -8, 8);
        double[] Run(bool binary, out double value)
        {
            var t = Tensor<double>.FromArray(zt, n, 1);
            var s = Tensor<double>.FromArray(zs, n, 1).RequireGrad();
            using var tape = new Tape<double>();
            var zeros = Tensor<double>.Zeros(n, 1);
            var loss = binary ? Op.BinaryKd(t, s, temperature)
                : Op.SoftmaxKd(Op.Concat([zeros, t], 1), Op.Concat([zeros, s], 1), temperature);
            value = loss.Item();
            tape.Backward(loss);
            return s.Grad!.ToArray();
        }
        var gb = Run(true, out double vb);
        var gs = Run(false, out double vs);
        Assert.That(vb, Is.EqualTo(vs).Within(1e-13));
        Assert.That(gb, Is.EqualTo(gs).Within(1e-14));
        // ∂/∂z_s = T·(σ(z_s/T) − σ(z_t/T))/N
        for (int i = 0; i < n; i++)
        {
            double expected = temperature * (Sig(zs[i] / temperature) - Sig(zt[i] / temperature)) / n;
            Assert.That(gb[i], Is.EqualTo(expected).Within(1e-15));
        }
    }

    private static double Sig(double x) => 1 / (1 + Math.Exp(-x));

    [Test]
    public void BinaryKd_is_stable_for_extreme_logits()
    {
        using var tape = Tape<double>.NoGrad();
        var zt = Tensor<double>.FromArray([1000, -1000, 1000, 30, -700], 5);
        var zs = Tensor<double>.FromArray([-1000, 1000, 999, 31, -701], 5);
        double v = Op.BinaryKd(zt, zs, 2.0).Item();
        Assert.That(double.IsFinite(v), Is.True);
        // Dominated by the first two elements: KL(1‖σ(−500)) ≈ 500 nats each (T = 2), ·T² / N.
        Assert.That(v, Is.EqualTo((500 + 500 + 0.5 * 0 + 0) * 4 / 5).Within(2));
        var zf = Tensor<float>.FromArray([1000f, -1000f], 2);
        using (Tape<float>.NoGrad())
            Assert.That(float.IsFinite(Op.BinaryKd(zf, Tensor<float>.FromArray([-1000f, 1000f], 2), 1f).Item()), Is.True);
    }

    [Test]
    public void KD_losses_are_zero_with_zero_gradient_when_student_equals_teacher([ValueSource(nameof(Temperatures))] double temperature)
    {
        foreach (int n in new[] { 1, 7, 17, 33 })
        {
            var z = Random(n * 3, 72 + n, -10, 10);
            foreach (bool binary in new[] { true, false })
            {
                var t = Tensor<double>.FromArray(z, n, 3);
                var s = Tensor<double>.FromArray(z, n, 3).RequireGrad();
                using var tape = new Tape<double>();
                var loss = binary ? Op.BinaryKd(t, s, temperature) : Op.SoftmaxKd(t, s, temperature);
                if (binary) Assert.That(loss.Item(), Is.EqualTo(0.0), "BinaryKd must be exactly 0");
                else Assert.That(loss.Item(), Is.EqualTo(0.0).Within(1e-15));
                tape.Backward(loss);
                var g = s.Grad!.ToArray();
                if (binary) Assert.That(g, Is.All.EqualTo(0.0), "BinaryKd gradient must be exactly 0");
                // SoftmaxKd's gradient is T·(softmax_s − softmax_t)/rows up to rounding (Σ exp(log p) is 1 ± ulp).
                else Assert.That(g, Is.All.EqualTo(0.0).Within(1e-14));
            }
        }
    }

    [Test]
    public void Teacher_receives_no_gradient_under_StopGradient_and_does_without_it()
    {
        var zt = Tensor<double>.FromArray(Random(7, 80, -3, 3), 7).RequireGrad();
        var zs = Tensor<double>.FromArray(Random(7, 81, -3, 3), 7).RequireGrad();
        using (var tape = new Tape<double>()) tape.Backward(Op.BinaryKd(Op.StopGradient(zt), zs, 2.0));
        Assert.That(zt.Grad, Is.Null);
        Assert.That(zs.Grad!.ToArray(), Has.Some.Not.EqualTo(0.0));
        using (var tape = new Tape<double>()) tape.Backward(Op.BinaryKd(zt, zs, 2.0));
        Assert.That(zt.Grad!.ToArray(), Has.Some.Not.EqualTo(0.0));
    }

    [TestCase(1)]
    [TestCase(7)]
    [TestCase(17)]
    [TestCase(33)]
    public void Mse_and_SumSquares_gradients(int n)
    {
        static Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T>
            => Op.Add(Op.Mse(x[0], x[1]), Op.Scale(Op.SumSquares(x[0]), T.CreateChecked(0.1)));
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(2 * n, 82), Random(2 * n, 83)], [new Shape(2, n), new Shape(2, n)]));
        using var tape = Tape<double>.NoGrad();
        var a = Tensor<double>.FromArray([1, 2, 3], 3); var b = Tensor<double>.FromArray([1, 0, 6], 3);
        Assert.That(Op.Mse(a, b).Item(), Is.EqualTo((0 + 4 + 9) / 3.0).Within(1e-15));
        Assert.That(Op.SumSquares(a).Item(), Is.EqualTo(14.0));
    }
}
