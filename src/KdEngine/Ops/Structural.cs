using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>
/// Concat along an axis. Every input k is viewed as [outer, a_k·inner] and the output as [outer, A·inner]
/// (A = Σ a_k): input k fills columns [off_k·inner, (off_k + a_k)·inner) of each output row — one strided
/// block copy per input. Backward copies the same column range of the gradient back (+=) into each input.
/// </summary>
internal sealed class ConcatNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T>[] _xs;
    private readonly int[] _offsets;
    private readonly int _outer, _total, _inner;

    private ConcatNode(Tensor<T>[] xs, int[] offsets, int outer, int total, int inner)
    { _xs = xs; _offsets = offsets; _outer = outer; _total = total; _inner = inner; }

    public override string OpName => "Concat";

    public static Tensor<T> Forward(IReadOnlyList<Tensor<T>> inputs, int axis)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (inputs.Count == 0) throw new ArgumentException("Concat: the list of tensors is empty.");
        var xs = inputs.ToArray();
        var first = xs[0];
        if (first.Rank == 0) throw new ArgumentException($"Concat: tensors must have rank ≥ 1; got the scalar {first.Describe()}.");
        int a = first.Shape.Axis(axis, "Concat");
        var offsets = new int[xs.Length];
        int total = 0;
        for (int k = 0; k < xs.Length; k++)
        {
            var x = xs[k] ?? throw new ArgumentException($"Concat: tensor {k} is null.");
            if (x.Backend != first.Backend)
                throw new ArgumentException($"Concat: tensor {k} {x.Describe()} lives on backend '{x.Backend.Name}', tensor 0 {first.Describe()} on '{first.Backend.Name}'.");
            bool ok = x.Rank == first.Rank;
            for (int d = 0; ok && d < x.Rank; d++) ok = d == a || x.Shape[d] == first.Shape[d];
            if (!ok)
                throw new ArgumentException(
                    $"Concat: tensor {k} {x.Describe()} does not match tensor 0 {first.Describe()} outside axis {a} (shapes must agree on every other dimension).");
            offsets[k] = total;
            total += x.Shape[a];
        }
        int outer = first.Shape.Outer(a), inner = first.Shape.Inner(a);
        var y = Tape<T>.NewTensor(first.Shape.With(a, total), first.Backend, clear: false);
        var be = first.Backend;
        for (int k = 0; k < xs.Length; k++)
        {
            int len = xs[k].Shape[a] * inner;
            be.CopyBlocks(xs[k].Storage, 0, len, y.Storage, offsets[k] * inner, total * inner, len, outer, accumulate: false);
        }
        if (Tape<T>.ShouldRecord(xs)) Tape<T>.Record(new ConcatNode<T>(xs, offsets, outer, total, inner), y);
        return y;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        for (int k = 0; k < _xs.Length; k++)
        {
            var x = _xs[k];
            if (!x.RequiresGrad) continue;
            int len = x.Length / Math.Max(_outer, 1);
            x.Backend.CopyBlocks(g.Storage, _offsets[k] * _inner, _total * _inner, tape.GradOf(x).Storage, 0, len, len, _outer, accumulate: true);
        }
    }
}

/// <summary>
/// One part of a Split: x viewed as [outer, A·inner], the part as [outer, size·inner] taken from columns
/// [offset·inner, (offset + size)·inner). Each part is its own node, so a part that no gradient reaches costs
/// nothing in backward; the parts that do reach add (+=) into their column range of x's gradient.
/// </summary>
internal sealed class SplitNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T> _x;
    private readonly int _offset, _size, _outer, _total, _inner;

    private SplitNode(Tensor<T> x, int offset, int size, int outer, int total, int inner)
    { _x = x; _offset = offset; _size = size; _outer = outer; _total = total; _inner = inner; }

    public override string OpName => "Split";

    public static Tensor<T>[] Forward(Tensor<T> x, int[] sizes, int axis)
    {
        ArgumentNullException.ThrowIfNull(sizes);
        if (x.Rank == 0) throw new ArgumentException($"Split: cannot split the scalar {x.Describe()}.");
        int a = x.Shape.Axis(axis, "Split");
        if (sizes.Length == 0) throw new ArgumentException($"Split: no sizes given for {x.Describe()}.");
        long sum = 0;
        foreach (int s in sizes)
        {
            if (s < 0) throw new ArgumentException($"Split: sizes [{string.Join(", ", sizes)}] contain a negative size (splitting {x.Describe()} along axis {a}).");
            sum += s;
        }
        if (sum != x.Shape[a])
            throw new ArgumentException(
                $"Split: sizes [{string.Join(", ", sizes)}] sum to {sum}, but axis {a} of {x.Describe()} has {x.Shape[a]} elements.");
        int outer = x.Shape.Outer(a), inner = x.Shape.Inner(a), total = x.Shape[a];
        var parts = new Tensor<T>[sizes.Length];
        int offset = 0;
        bool record = Tape<T>.ShouldRecord(x);
        for (int k = 0; k < sizes.Length; k++)
        {
            int len = sizes[k] * inner;
            var part = Tape<T>.NewTensor(x.Shape.With(a, sizes[k]), x.Backend, clear: false);
            x.Backend.CopyBlocks(x.Storage, offset * inner, total * inner, part.Storage, 0, len, len, outer, accumulate: false);
            if (record) Tape<T>.Record(new SplitNode<T>(x, offset, sizes[k], outer, total, inner), part);
            parts[k] = part;
            offset += sizes[k];
        }
        return parts;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        if (!_x.RequiresGrad) return;
        int len = _size * _inner;
        _x.Backend.CopyBlocks(g.Storage, 0, len, tape.GradOf(_x).Storage, _offset * _inner, _total * _inner, len, _outer, accumulate: true);
    }
}

public static partial class Op
{
    /// <summary>
    /// Joins tensors along <paramref name="axis"/> (negative counts from the end); all other dimensions must agree.
    /// The result is a new tensor (a copy); gradients flow back to every input that requires one.
    /// </summary>
    public static Tensor<T> Concat<T>(IReadOnlyList<Tensor<T>> xs, int axis) where T : unmanaged, IFloatingPointIeee754<T>
        => ConcatNode<T>.Forward(xs, axis);

    /// <summary>
    /// Cuts x along <paramref name="axis"/> into parts of the given sizes (which must sum to that dimension).
    /// Each part is a copy; the gradient of every part flows back into its slice of x.
    /// </summary>
    public static Tensor<T>[] Split<T>(Tensor<T> x, int[] sizes, int axis) where T : unmanaged, IFloatingPointIeee754<T>
        => SplitNode<T>.Forward(x, sizes, axis);
}
