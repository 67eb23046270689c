using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;
using NUnit.Framework;

namespace KdEngine.Tests.Autograd;

public class TapeTests
{
    [Test]
    public void StopGradient_blocks_one_path_while_the_other_path_still_delivers()
    {
        // loss = Σ (w·x) + Σ sg(w·x)·3 → dloss/dw = x only (the stopped path contributes nothing).
        var w = Tensor<double>.FromArray([2.0, -1.0, 0.5], 3).RequireGrad();
        var x = Tensor<double>.FromArray([1.0, 2.0, 3.0], 3);
        using (var tape = new Tape<double>())
        {
            var wx = Op.Mul(w, x);
            var stopped = Op.Scale(Op.StopGradient(wx), 3.0);
            var loss = Op.Add(Op.Sum(wx), Op.Sum(stopped));
            tape.Backward(loss);
        }
        Assert.That(w.Grad!.ToArray(), Is.EqualTo(new[] { 1.0, 2.0, 3.0 }));

        // A parameter reached only through StopGradient gets exactly zero gradient (no buffer at all).
        var v = Tensor<double>.FromArray([1.0, 1.0, 1.0], 3).RequireGrad();
        var u = Tensor<double>.FromArray([1.0, 1.0, 1.0], 3).RequireGrad();
        using (var tape = new Tape<double>())
        {
            var loss = Op.Add(Op.Sum(Op.StopGradient(Op.Mul(v, x))), Op.Sum(u));
            tape.Backward(loss);
        }
        Assert.That(v.Grad, Is.Null, "no gradient may cross StopGradient");
        Assert.That(u.Grad!.ToArray(), Is.EqualTo(new[] { 1.0, 1.0, 1.0 }));
    }

    [Test]
    public void GradScale_is_identity_forward_and_scales_the_gradient()
    {
        var w = Tensor<double>.FromArray([1.5, -2.0], 2).RequireGrad();
        double value;
        using (var tape = new Tape<double>())
        {
            var loss = Op.Sum(Op.GradScale(w, 4.0));
            value = loss.Item();
            tape.Backward(loss);
        }
        Assert.That(value, Is.EqualTo(-0.5));
        Assert.That(w.Grad!.ToArray(), Is.EqualTo(new[] { 4.0, 4.0 }));
    }

    [Test]
    public void NoGrad_tape_records_nothing()
    {
        var w = Tensor<float>.FromArray([1f, 2f], 2).RequireGrad();
        using var tape = Tape<float>.NoGrad();
        var y = Op.Relu(w);
        Assert.That(tape.NodeCount, Is.EqualTo(0));
        Assert.That(y.RequiresGrad, Is.False);
    }

    [Test]
    public void Branches_that_need_no_gradient_are_not_recorded()
    {
        var data = Tensor<float>.FromArray([1f, -2f, 3f], 3);
        var w = Tensor<float>.FromArray([1f, 1f, 1f], 3).RequireGrad();
        using var tape = new Tape<float>();
        var constantBranch = Op.Relu(Op.Scale(data, 2f)); // depends on data only
        Assert.That(tape.NodeCount, Is.EqualTo(0));
        var loss = Op.Sum(Op.Mul(w, constantBranch));
        Assert.That(tape.NodeCount, Is.EqualTo(2));
        tape.Backward(loss);
        Assert.That(w.Grad!.ToArray(), Is.EqualTo(new[] { 2f, 0f, 6f }));
    }

    [Test]
    public void Tensors_made_inside_a_tape_are_released_when_it_is_disposed()
    {
        Tensor<float> y;
        using (var tape = Tape<float>.NoGrad())
        {
            y = Op.Relu(Tensor<float>.FromArray([1f, -1f], 2));
            Assert.That(y.ToArray(), Is.EqualTo(new[] { 1f, 0f }));
        }
        Assert.Throws<ObjectDisposedException>(() => y.AsSpan());
    }
}
