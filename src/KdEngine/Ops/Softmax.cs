using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>
/// y = softmax(x/T), or with <c>log</c> y = log softmax(x/T) = x/T − max − log Σ exp(x/T − max) (finite for finite x,
/// however extreme), along one axis; x viewed as [outer, axis, inner]. Max-subtracted inside the backend's fused
/// <c>Softmax</c> primitive. Backward from the output alone: dx += (1/T)·y∘(g − Σ_axis g∘y) for softmax,
/// dx += (1/T)·(g − exp(y)·Σ_axis g) for log softmax.
/// </summary>
internal sealed class SoftmaxNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T> _x;
    private readonly int _outer, _axis, _inner;
    private readonly T _invT;
    private readonly bool _log;

    private SoftmaxNode(Tensor<T> x, int outer, int axis, int inner, T invT, bool log)
    {
        _x = x; _outer = outer; _axis = axis; _inner = inner; _invT = invT; _log = log;
    }

    public override string OpName => _log ? "LogSoftmax" : "Softmax";

    public static Tensor<T> Forward(Tensor<T> x, int axis, T? temperature, bool log)
    {
        var (outer, len, inner, invT) = SoftmaxGeometry.Of(x, axis, temperature, log ? "LogSoftmax" : "Softmax");
        var y = Tape<T>.NewTensor(x.Shape, x.Backend, clear: false);
        x.Backend.Softmax(x.Storage, y.Storage, outer, len, inner, invT, log);
        if (Tape<T>.ShouldRecord(x)) Tape<T>.Record(new SoftmaxNode<T>(x, outer, len, inner, invT, log), y);
        return y;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        if (!_x.RequiresGrad) return;
        _x.Backend.SoftmaxBackward(Output.Storage, g.Storage, tape.GradOf(_x).Storage, _outer, _axis, _inner, _invT, _log);
    }
}

internal static class SoftmaxGeometry
{
    /// <summary>x as [outer, axis, inner] around the (normalised) axis, and 1/T (T defaults to 1).</summary>
    public static (int Outer, int Axis, int Inner, T InvT) Of<T>(Tensor<T> x, int axis, T? temperature, string op)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (x.Rank == 0) throw new ArgumentException($"{op}: needs a tensor of rank ≥ 1; got the scalar {x.Describe()}.");
        int a = x.Shape.Axis(axis, op);
        if (x.Shape[a] == 0) throw new ArgumentException($"{op}: axis {a} of {x.Describe()} is empty (softmax over no classes).");
        T invT = temperature is { } t ? OpChecks.InverseTemperature(t, op) : T.One;
        return (x.Shape.Outer(a), x.Shape[a], x.Shape.Inner(a), invT);
    }
}

public static partial class Op
{
    /// <summary>
    /// softmax(x/T) along <paramref name="axis"/> (default: the last), any number of classes; the maximum is
    /// subtracted first, so logits of ±1000 are fine. <paramref name="temperature"/> defaults to 1.
    /// </summary>
    public static Tensor<T> Softmax<T>(Tensor<T> x, int axis = -1, T? temperature = null) where T : unmanaged, IFloatingPointIeee754<T>
        => SoftmaxNode<T>.Forward(x, axis, temperature, log: false);

    /// <summary>log softmax(x/T) along <paramref name="axis"/>: finite for finite x (never log of an underflowed 0).</summary>
    public static Tensor<T> LogSoftmax<T>(Tensor<T> x, int axis = -1, T? temperature = null) where T : unmanaged, IFloatingPointIeee754<T>
        => SoftmaxNode<T>.Forward(x, axis, temperature, log: true);
}
