using System.Numerics;
using System.Runtime.Intrinsics;
using KdEngine.Autograd;
using KdEngine.Backends;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>
/// The node of every elementwise unary op: forward y = TOp(x, p), backward dx += g·TOp'(x, y, p). The
/// math of each op is its operator struct below (forward and derivative side by side).
/// </summary>
internal sealed class MapNode<T, TOp> : Node<T>
    where T : unmanaged, IFloatingPointIeee754<T> where TOp : IUnaryOperator<T>
{
    private readonly Tensor<T> _x;
    private readonly T _p;
    private readonly string _name;

    private MapNode(Tensor<T> x, T p, string name) { _x = x; _p = p; _name = name; }

    public override string OpName => _name;

    public static Tensor<T> Forward(Tensor<T> x, T p, string name)
    {
        var y = Tape<T>.NewTensor(x.Shape, x.Backend, clear: false);
        x.Backend.Map<TOp>(x.Storage, y.Storage, x.Length, p);
        if (Tape<T>.ShouldRecord(x)) Tape<T>.Record(new MapNode<T, TOp>(x, p, name), y);
        return y;
    }

    protected internal override void Backward(Tensor<T> gradOutput, Tape<T> tape)
    {
        if (!_x.RequiresGrad) return;
        var gx = tape.GradOf(_x);
        _x.Backend.MapBackward<TOp>(_x.Storage, Output.Storage, gradOutput.Storage, gx.Storage, _x.Length, _p);
    }
}

/// <summary>ReLU: max(x, 0); derivative 1 where x &gt; 0, else 0.</summary>
public readonly struct ReluOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T x, T p) => x > T.Zero ? x : T.Zero;
    /// <inheritdoc/>
    public static T Derivative(T x, T y, T p) => x > T.Zero ? T.One : T.Zero;
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> x, Vector512<T> p) => Vector512.Max(x, Vector512<T>.Zero);
    /// <inheritdoc/>
    public static Vector512<T> Derivative(Vector512<T> x, Vector512<T> y, Vector512<T> p)
        => Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<T>.Zero), Vector512<T>.One, Vector512<T>.Zero);
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> x, Vector256<T> p) => Vector256.Max(x, Vector256<T>.Zero);
    /// <inheritdoc/>
    public static Vector256<T> Derivative(Vector256<T> x, Vector256<T> y, Vector256<T> p)
        => Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256<T>.Zero), Vector256<T>.One, Vector256<T>.Zero);
}

public static partial class Op
{
    /// <summary>max(x, 0), elementwise.</summary>
    public static Tensor<T> Relu<T>(Tensor<T> x) where T : unmanaged, IFloatingPointIeee754<T>
        => MapNode<T, ReluOperator<T>>.Forward(x, T.Zero, "Relu");
}

/// <summary>y = p·x (a constant scale); derivative p.</summary>
public readonly struct ScaleOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T x, T p) => x * p;
    /// <inheritdoc/>
    public static T Derivative(T x, T y, T p) => p;
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> x, Vector512<T> p) => x * p;
    /// <inheritdoc/>
    public static Vector512<T> Derivative(Vector512<T> x, Vector512<T> y, Vector512<T> p) => p;
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> x, Vector256<T> p) => x * p;
    /// <inheritdoc/>
    public static Vector256<T> Derivative(Vector256<T> x, Vector256<T> y, Vector256<T> p) => p;
}

public static partial class Op
{
    /// <summary>c·x, elementwise, with gradient c·g.</summary>
    public static Tensor<T> Scale<T>(Tensor<T> x, T c) where T : unmanaged, IFloatingPointIeee754<T>
        => MapNode<T, ScaleOperator<T>>.Forward(x, c, "Scale");
}
