using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;
using NUnit.Framework;

namespace KdEngine.Tests.Autograd;

/// <summary>Gradient checks (double-precision central differences; float32 agreement) on odd sizes.</summary>
public class GradCheckTests
{
    internal static double[] Random(int n, int seed, double lo = -1, double hi = 1)
    {
        var rng = new Random(seed);
        var a = new double[n];
        for (int i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng.NextDouble();
        return a;
    }

    internal static void AssertPasses(GradCheckResult r) =>
        Assert.That(r.Passed, Is.True, $"max analytic/numeric error (in tolerances) {r.MaxAnalyticVsNumericError:G4}, float/double {r.MaxFloatVsDoubleError:G4}\n{r.Report}");

    private static Tensor<T> LinearF<T>(Tensor<T>[] x) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
        => Op.Linear(x[0], x[1], x[2]);

    [TestCase(1, 1, 1)]
    [TestCase(7, 17, 3)]
    [TestCase(17, 33, 19)]
    public void Linear(int batch, int inF, int outF)
    {
        var r = GradCheck.Run(LinearF<double>, LinearF<float>,
            [Random(batch * inF, 1), Random(outF * inF, 2), Random(outF, 3)],
            [new Shape(batch, inF), new Shape(outF, inF), new Shape(outF)]);
        AssertPasses(r);
    }

    [TestCase(false, false)]
    [TestCase(true, false)]
    [TestCase(false, true)]
    [TestCase(true, true)]
    public void MatMul_with_transposes(bool ta, bool tb)
    {
        int m = 7, k = 17, n = 5;
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T> => Op.MatMul(x[0], x[1], ta, tb);
        var r = GradCheck.Run(F<double>, F<float>,
            [Random(m * k, 4), Random(k * n, 5)],
            [ta ? new Shape(k, m) : new Shape(m, k), tb ? new Shape(n, k) : new Shape(k, n)]);
        AssertPasses(r);
    }

    private static Tensor<T> ReluF<T>(Tensor<T>[] x) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T> => Op.Relu(x[0]);

    [TestCase(1)]
    [TestCase(17)]
    [TestCase(33)]
    public void Relu(int n)
    {
        // Keep inputs away from the kink at 0, where the finite difference is meaningless.
        var x = Random(n, 6).Select(v => v >= 0 ? v + 0.05 : v - 0.05).ToArray();
        AssertPasses(GradCheck.Run(ReluF<double>, ReluF<float>, [x], [new Shape(n)]));
    }

    private static Tensor<T> AddRowF<T>(Tensor<T>[] x) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
        => Op.Mul(Op.Add(x[0], x[1]), Op.Sub(x[0], x[2]));

    [TestCase(1, 1)]
    [TestCase(7, 17)]
    [TestCase(3, 33)]
    public void Add_Sub_Mul_with_row_and_scalar_broadcast(int rows, int cols)
    {
        AssertPasses(GradCheck.Run(AddRowF<double>, AddRowF<float>,
            [Random(rows * cols, 7), Random(cols, 8), Random(1, 9)],
            [new Shape(rows, cols), new Shape(cols), Shape.Scalar]));
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(2)]
    public void Sum_and_Mean_along_an_axis(int axis)
    {
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
            => Op.Add(Op.Sum(x[0], axis), Op.Mean(x[0], axis));
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(3 * 7 * 5, 10)], [new Shape(3, 7, 5)]));
    }

    private static Tensor<T> BceF<T>(Tensor<T>[] x) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
        => Op.BceWithLogits(x[0], x[1]);

    [TestCase(1)]
    [TestCase(17)]
    public void BceWithLogits(int n)
    {
        var labels = Random(n, 12, 0, 1).Select(v => v > 0.5 ? 1.0 : 0.0).ToArray();
        AssertPasses(GradCheck.Run(BceF<double>, BceF<float>, [Random(n, 11, -4, 4), labels],
            [new Shape(n), new Shape(n)], constant: [1]));
    }

    [Test]
    public void GradCheck_catches_a_wrong_derivative()
    {
        // A function whose recorded backward is wrong must fail the check: GradScale(x, 2) claims the
        // gradient of x is 2 while the value is x itself.
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
            => Op.GradScale(x[0], T.CreateChecked(2));
        var r = GradCheck.Run(F<double>, F<float>, [Random(5, 13)], [new Shape(5)]);
        Assert.That(r.Passed, Is.False);
    }
}
