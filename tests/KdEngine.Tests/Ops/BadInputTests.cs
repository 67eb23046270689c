using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;
using NUnit.Framework;

namespace KdEngine.Tests.Ops;

/// <summary>Every loss rejects NaN/∞ and mismatched shapes with a message naming the op, the tensor and the place.</summary>
public class BadInputTests
{
    private static readonly string[] Losses = ["BceWithLogits", "KlDivergence", "SoftmaxKd", "BinaryKd", "Mse"];

    private static Tensor<double> Call(string op, Tensor<double> a, Tensor<double> b) => op switch
    {
        "BceWithLogits" => Op.BceWithLogits(a, b),
        "KlDivergence" => Op.KlDivergence(a, b),
        "SoftmaxKd" => Op.SoftmaxKd(a, b, 2.0),
        "BinaryKd" => Op.BinaryKd(a, b, 2.0),
        "Mse" => Op.Mse(a, b),
        _ => throw new ArgumentOutOfRangeException(nameof(op)),
    };

    private static double[] Fill(int n) => Enumerable.Range(0, n).Select(i => -0.1 * (i + 1)).ToArray();

    [Test]
    public void NaN_or_infinity_in_either_input_names_the_op_the_tensor_and_the_first_bad_index(
        [ValueSource(nameof(Losses))] string op, [Values(0, 1)] int which, [Values(double.NaN, double.PositiveInfinity, double.NegativeInfinity)] double bad)
    {
        // [3, 17] so the bad value sits past the first vector of 8 doubles: flat 2·17 + 11 = 45 → [2, 11];
        // a second bad value later must not be the one reported.
        var a = Fill(51); var b = Fill(51);
        var target = which == 0 ? a : b;
        target[45] = bad; target[50] = double.NaN;
        var ta = Tensor<double>.FromArray(a, new Shape(3, 17), name: "first");
        var tb = Tensor<double>.FromArray(b, new Shape(3, 17), name: "second");
        using var tape = Tape<double>.NoGrad();
        var ex = Assert.Throws<ArgumentException>(() => Call(op, ta, tb))!;
        Assert.That(ex.Message, Does.StartWith(op + ":"));
        Assert.That(ex.Message, Does.Contain(which == 0 ? "'first' [3, 17]" : "'second' [3, 17]"));
        Assert.That(ex.Message, Does.Contain("[2, 11]").And.Contain("flat 45"));
    }

    [Test]
    public void Shape_mismatch_names_the_op_and_both_shapes([ValueSource(nameof(Losses))] string op)
    {
        var a = Tensor<double>.FromArray(Fill(21), new Shape(3, 7), name: "a");
        var b = Tensor<double>.FromArray(Fill(21), new Shape(7, 3), name: "b");
        using var tape = Tape<double>.NoGrad();
        var ex = Assert.Throws<ArgumentException>(() => Call(op, a, b))!;
        Assert.That(ex.Message, Does.StartWith(op + ":").And.Contain("'a' [3, 7]").And.Contain("'b' [7, 3]"));
    }

    [Test]
    public void Bad_temperatures_are_rejected_by_the_KD_losses([Values(0.0, -1.0, double.NaN, double.PositiveInfinity)] double t)
    {
        var a = Tensor<double>.FromArray(Fill(6), 2, 3);
        Assert.That(Assert.Throws<ArgumentException>(() => Op.SoftmaxKd(a, a, t))!.Message, Does.Contain("SoftmaxKd").And.Contain("temperature"));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.BinaryKd(a, a, t))!.Message, Does.Contain("BinaryKd").And.Contain("temperature"));
    }

    [Test]
    public void SumSquares_rejects_non_finite_input()
    {
        var x = Tensor<float>.FromArray([1f, float.NaN], new Shape(2), name: "w");
        var ex = Assert.Throws<ArgumentException>(() => Op.SumSquares(x))!;
        Assert.That(ex.Message, Does.Contain("SumSquares").And.Contain("'w' [2]").And.Contain("[1]"));
    }
}
