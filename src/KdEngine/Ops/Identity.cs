using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Backends;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>
/// GradScale: identity forward (a view, no copy), gradient multiplied by c in backward. Realises T² and
/// loss weights without touching the forward value.
/// </summary>
internal sealed class GradScaleNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T> _x;
    private readonly T _c;
    private GradScaleNode(Tensor<T> x, T c) { _x = x; _c = c; }
    public override string OpName => "GradScale";

    public static Tensor<T> Forward(Tensor<T> x, T c)
    {
        var y = Tape<T>.NewView(x.Shape, x);
        if (Tape<T>.ShouldRecord(x)) Tape<T>.Record(new GradScaleNode<T>(x, c), y);
        return y;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        if (_x.RequiresGrad) _x.Backend.Axpy(_c, g.Storage, tape.GradOf(_x).Storage, _x.Length);
    }
}

/// <summary>Reshape: the same storage under another shape with the same element count (a view, no copy).</summary>
internal sealed class ReshapeNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T> _x;
    private ReshapeNode(Tensor<T> x) { _x = x; }
    public override string OpName => "Reshape";

    public static Tensor<T> Forward(Tensor<T> x, Shape shape)
    {
        if (shape.ElementCount != x.Length)
            throw new ArgumentException($"Reshape: cannot view {x.Describe()} ({x.Length} elements) as {shape} ({shape.ElementCount} elements).");
        var y = Tape<T>.NewView(shape, x);
        if (Tape<T>.ShouldRecord(x)) Tape<T>.Record(new ReshapeNode<T>(x), y);
        return y;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        if (_x.RequiresGrad) _x.Backend.Axpy(T.One, g.Storage, tape.GradOf(_x).Storage, _x.Length);
    }
}

public static partial class Op
{
    /// <summary>
    /// Identity forward; no gradient ever flows back through it to <paramref name="x"/>. The result is a
    /// leaf the backward walk cannot cross — the building block of Rocket Launching's gradient block and of
    /// privileged-feature distillation's "the teacher ignores the distillation loss" rule.
    /// </summary>
    public static Tensor<T> StopGradient<T>(Tensor<T> x) where T : unmanaged, IFloatingPointIeee754<T>
        => Tape<T>.NewView(x.Shape, x); // a fresh leaf: RequiresGrad = false, no creator

    /// <summary>
    /// A tensor holding a copy of <paramref name="values"/> (data: it never requires a gradient), owned by the
    /// current tape if there is one.
    /// </summary>
    public static Tensor<T> Constant<T>(ReadOnlySpan<T> values, Shape shape, IBackend<T>? backend = null)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (values.Length != shape.ElementCount)
            throw new ArgumentException($"Constant: {values.Length} values do not fill shape {shape}.");
        var t = Tape<T>.NewTensor(shape, backend ?? DefaultBackend<T>.Current, clear: false);
        t.Backend.Upload(values, t.Storage);
        return t;
    }

    /// <summary>Identity forward; the gradient is multiplied by <paramref name="c"/> on the way back.</summary>
    public static Tensor<T> GradScale<T>(Tensor<T> x, T c) where T : unmanaged, IFloatingPointIeee754<T>
        => GradScaleNode<T>.Forward(x, c);

    /// <summary>A view of x with another shape of the same element count; one dimension may be −1 (inferred).</summary>
    public static Tensor<T> Reshape<T>(Tensor<T> x, params int[] dims) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int infer = Array.IndexOf(dims, -1);
        if (infer >= 0)
        {
            int known = 1;
            for (int i = 0; i < dims.Length; i++) if (i != infer) known *= dims[i];
            if (known == 0 || x.Length % known != 0)
                throw new ArgumentException($"Reshape: cannot infer a dimension to view {x.Describe()} as [{string.Join(", ", dims)}].");
            dims = (int[])dims.Clone();
            dims[infer] = x.Length / known;
        }
        return ReshapeNode<T>.Forward(x, new Shape(dims));
    }

    /// <summary>[B, d1, d2, …] → [B, d1·d2·…].</summary>
    public static Tensor<T> Flatten<T>(Tensor<T> x) where T : unmanaged, IFloatingPointIeee754<T>
        => Reshape(x, x.Rank == 0 ? 1 : x.Shape[0], -1);
}
