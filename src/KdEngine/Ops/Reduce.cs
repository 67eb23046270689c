using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>
/// Sum (optionally scaled, which gives Mean) over one axis, or over all elements. x viewed as
/// [outer, axis, inner] → y [outer, inner] (the axis removed; a scalar for "all").
/// </summary>
internal sealed class SumNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T> _x;
    private readonly int _outer, _axis, _inner;
    private readonly T _scale;
    private readonly string _name;

    private SumNode(Tensor<T> x, int outer, int axis, int inner, T scale, string name)
    { _x = x; _outer = outer; _axis = axis; _inner = inner; _scale = scale; _name = name; }

    public override string OpName => _name;

    public static Tensor<T> Forward(Tensor<T> x, int? axis, bool mean)
    {
        string name = mean ? "Mean" : "Sum";
        int outer, len, inner;
        Shape outShape;
        if (axis is null) { outer = 1; len = x.Length; inner = 1; outShape = Shape.Scalar; }
        else
        {
            int a = x.Shape.Axis(axis.Value, name);
            outer = x.Shape.Outer(a); len = x.Shape[a]; inner = x.Shape.Inner(a);
            outShape = x.Shape.Without(a);
        }
        if (mean && len == 0) throw new ArgumentException($"Mean over an empty axis of {x.Describe()}.");
        T scale = mean ? T.One / T.CreateChecked(len) : T.One;
        var y = Tape<T>.NewTensor(outShape, x.Backend, clear: false);
        x.Backend.SumAxis(x.Storage, y.Storage, outer, len, inner, accumulate: false);
        if (mean) x.Backend.Map<ScaleOperator<T>>(y.Storage, y.Storage, y.Length, scale);
        if (Tape<T>.ShouldRecord(x)) Tape<T>.Record(new SumNode<T>(x, outer, len, inner, scale, name), y);
        return y;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        if (!_x.RequiresGrad) return;
        _x.Backend.BroadcastAxisAdd(g.Storage, tape.GradOf(_x).Storage, _outer, _axis, _inner, _scale);
    }
}

public static partial class Op
{
    /// <summary>Sum of all elements (a scalar), or along <paramref name="axis"/> (the axis is removed).</summary>
    public static Tensor<T> Sum<T>(Tensor<T> x, int? axis = null) where T : unmanaged, IFloatingPointIeee754<T>
        => SumNode<T>.Forward(x, axis, mean: false);

    /// <summary>Mean of all elements (a scalar), or along <paramref name="axis"/> (the axis is removed).</summary>
    public static Tensor<T> Mean<T>(Tensor<T> x, int? axis = null) where T : unmanaged, IFloatingPointIeee754<T>
        => SumNode<T>.Forward(x, axis, mean: true);
}
