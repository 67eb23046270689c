using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;
using NUnit.Framework;
using static KdEngine.Tests.Autograd.GradCheckTests;

namespace KdEngine.Tests.Ops;

public class StructuralTests
{
    [TestCase(0)]
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(-1)]
    public void Concat_gradient_along_every_axis(int axis)
    {
        // Three inputs [3,7,5], [3,7,5] with the concat axis resized to 1, 17 and 7 (odd, hits SIMD tails).
        int[] sizes = [1, 17, 7];
        int a = axis < 0 ? axis + 3 : axis;
        var shapes = sizes.Select(s => new Shape(3, 7, 5).With(a, s)).ToArray();
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.Concat(x, axis);
        AssertPasses(GradCheck.Run(F<double>, F<float>,
            shapes.Select((s, k) => Random(s.ElementCount, 40 + k)).ToArray(), shapes));
    }

    [TestCase(1, 33)]
    [TestCase(7, 17)]
    public void Split_gradient_including_an_unused_part(int rows, int cols)
    {
        // Parts [rows, 1], [rows, cols − 8], [rows, 7]; the loss uses parts 0 and 2 only (part 1 gets no gradient
        // and its slice of dx must stay 0), part 2 squared so the gradient depends on the values.
        int[] sizes = [1, cols - 8, 7];
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T>
        {
            var p = Op.Split(x[0], sizes, 1);
            return Op.Concat([p[0], Op.Square(p[2])], -1);
        }
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(rows * cols, 43)], [new Shape(rows, cols)]));
    }

    [Test]
    public void Concat_and_Split_move_the_right_values()
    {
        using var tape = Tape<double>.NoGrad();
        var a = Tensor<double>.FromArray([1, 2, 3, 4], 2, 2);
        var b = Tensor<double>.FromArray([5, 6], 2, 1);
        var c = Op.Concat([a, b], 1);
        Assert.That(c.Shape, Is.EqualTo(new Shape(2, 3)));
        Assert.That(c.ToArray(), Is.EqualTo(new double[] { 1, 2, 5, 3, 4, 6 }));
        var r = Op.Concat([a, Tensor<double>.FromArray([7, 8], 1, 2)], 0);
        Assert.That(r.ToArray(), Is.EqualTo(new double[] { 1, 2, 3, 4, 7, 8 }));
        var parts = Op.Split(c, [1, 2], -1);
        Assert.That(parts[0].ToArray(), Is.EqualTo(new double[] { 1, 3 }));
        Assert.That(parts[1].Shape, Is.EqualTo(new Shape(2, 2)));
        Assert.That(parts[1].ToArray(), Is.EqualTo(new double[] { 2, 5, 4, 6 }));
    }

    [Test]
    public void Split_backward_accumulates_into_x_and_skips_unreached_parts()
    {
        var x = Tensor<double>.FromArray([1, 2, 3, 4, 5, 6], 2, 3).RequireGrad();
        using (var tape = new Tape<double>())
        {
            var p = Op.Split(x, [2, 1], 1);
            tape.Backward(Op.Sum(Op.Scale(p[1], 10.0)));
        }
        Assert.That(x.Grad!.ToArray(), Is.EqualTo(new double[] { 0, 0, 10, 0, 0, 10 }));
    }

    [Test]
    public void Bad_shapes_name_the_op_and_the_shapes()
    {
        var a = Tensor<double>.FromArray(new double[6], 2, 3);
        var b = Tensor<double>.FromArray(new double[8], 2, 4);
        var ex = Assert.Throws<ArgumentException>(() => Op.Concat([a, b], 0))!;
        Assert.That(ex.Message, Does.Contain("Concat").And.Contain("[2, 4]").And.Contain("[2, 3]"));
        ex = Assert.Throws<ArgumentException>(() => Op.Concat([a, Tensor<double>.Zeros(6)], 0))!;
        Assert.That(ex.Message, Does.Contain("Concat").And.Contain("[6]").And.Contain("[2, 3]"));
        Assert.Throws<ArgumentException>(() => Op.Concat(Array.Empty<Tensor<double>>(), 0));
        ex = Assert.Throws<ArgumentException>(() => Op.Split(a, [1, 1], 1))!;
        Assert.That(ex.Message, Does.Contain("Split").And.Contain("[2, 3]").And.Contain("sum to 2"));
        ex = Assert.Throws<ArgumentException>(() => Op.Split(a, [4, -1], 1))!;
        Assert.That(ex.Message, Does.Contain("Split").And.Contain("negative"));
        Assert.Throws<ArgumentOutOfRangeException>(() => Op.Split(a, [1, 1], 2));
    }
}
