using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>How <see cref="Op.EmbeddingBag{T}"/> pools the rows of one bag.</summary>
public enum PoolingMode
{
    /// <summary>The sum of the bag's rows.</summary>
    Sum,

    /// <summary>The mean of the bag's rows (an empty bag still gives zeros).</summary>
    Mean,
}

/// <summary>Host-side checks shared by the embedding ops: every id is validated before a kernel runs.</summary>
internal static class EmbeddingChecks
{
    public static void Table<T>(string op, Tensor<T> table, string what = "table") where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (table.Rank != 2)
            throw new ArgumentException($"{op}: the {what} must be 2-D [rows, width]; got {table.Describe()}.");
    }

    /// <summary>Throws naming the op, the table, the offending id and its position when an id is outside [0, rows).</summary>
    public static void Ids<T>(string op, Tensor<T> table, ReadOnlySpan<int> ids) where T : unmanaged, IFloatingPointIeee754<T>
    {
        uint rows = (uint)table.Shape[0];
        for (int n = 0; n < ids.Length; n++)
            if ((uint)ids[n] >= rows)
                throw new ArgumentOutOfRangeException(nameof(ids),
                    $"{op}: id {ids[n]} at position {n} is out of range for table {table.Describe()} (valid ids are 0..{table.Shape[0] - 1}).");
    }
}

/// <summary>
/// EmbeddingGather: out[n, :] = table[ids[n], :]. The backward scatters each output row's gradient back to
/// its table row — row-sparse (touched rows only, duplicates summed) for a table made by
/// <see cref="EmbeddingTable"/>, dense (into the table's <see cref="Tensor{T}.Grad"/>) for any other tensor.
/// </summary>
internal sealed class EmbeddingGatherNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T> _table;
    private readonly ReadOnlyMemory<int> _ids;

    private EmbeddingGatherNode(Tensor<T> table, ReadOnlyMemory<int> ids) { _table = table; _ids = ids; }

    public override string OpName => "EmbeddingGather";

    public static Tensor<T> Forward(Tensor<T> table, ReadOnlyMemory<int> ids, Shape? outputShape)
    {
        const string op = "EmbeddingGather";
        EmbeddingChecks.Table(op, table);
        int n = ids.Length, width = table.Shape[1];
        var shape = outputShape ?? new Shape(n, width); // default output [N, D]
        if ((long)shape.ElementCount != (long)n * width)
            throw new ArgumentException($"{op}: output shape {shape} has {shape.ElementCount} elements but {n} ids × width {width} of table {table.Describe()} give {(long)n * width}.");
        EmbeddingChecks.Ids(op, table, ids.Span);
        table.DeferredRows?.Apply(ids.Span, 1, n);
        var y = Tape<T>.NewTensor(shape, table.Backend, clear: false);
        table.Backend.GatherRows(table.Storage, width, ids.Span, 1, n, y.Storage, 0, width);
        if (Tape<T>.ShouldRecord(table)) Tape<T>.Record(new EmbeddingGatherNode<T>(table, ids), y);
        return y;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        if (!_table.RequiresGrad) return;
        int width = _table.Shape[1];
        if (_table.HasSparseGradient)
            _table.Backend.ScatterAddRowsSparse(g.Storage, 0, width, width, _ids.Span, 1, _ids.Length, EmbeddingGrad.Sparse(_table));
        else
            _table.Backend.ScatterAddRows(g.Storage, 0, width, width, _ids.Span, 1, _ids.Length, tape.GradOf(_table).Storage);
    }
}

internal static class EmbeddingGrad
{
    /// <summary>The table's row-sparse gradient, created on first use.</summary>
    public static SparseRowGradient<T> Sparse<T>(Tensor<T> table) where T : unmanaged, IFloatingPointIeee754<T>
        => table.SparseGrad ??= new SparseRowGradient<T>(table.Shape[0], table.Shape[1]);
}

/// <summary>
/// EmbeddingGatherFields: the CTR input layer in one pass. F per-field tables (same width D, own vocabulary
/// V_f), ids [batch, F] row-major → x0 [batch, F, D] with x0[b, f, :] = tables[f][ids[b, f], :].
/// </summary>
internal sealed class EmbeddingGatherFieldsNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T>[] _tables;
    private readonly ReadOnlyMemory<int> _ids;
    private readonly int _batch;

    private EmbeddingGatherFieldsNode(Tensor<T>[] tables, ReadOnlyMemory<int> ids, int batch) { _tables = tables; _ids = ids; _batch = batch; }

    public override string OpName => "EmbeddingGatherFields";

    public static Tensor<T> Forward(IReadOnlyList<Tensor<T>> tableList, ReadOnlyMemory<int> ids, int batch)
    {
        const string op = "EmbeddingGatherFields";
        ArgumentNullException.ThrowIfNull(tableList);
        int fields = tableList.Count;
        if (fields == 0) throw new ArgumentException($"{op}: at least one field table is needed.", nameof(tableList));
        if (batch < 0) throw new ArgumentOutOfRangeException(nameof(batch), $"{op}: batch {batch} is negative.");
        var tables = tableList.ToArray();
        for (int f = 0; f < fields; f++) EmbeddingChecks.Table(op, tables[f], $"table of field {f}");
        int width = tables[0].Shape[1];
        for (int f = 1; f < fields; f++)
        {
            if (tables[f].Shape[1] != width)
                throw new ArgumentException($"{op}: field {f} table {tables[f].Describe()} has width {tables[f].Shape[1]}, field 0 table {tables[0].Describe()} has {width}; all fields must share D.");
            if (tables[f].Backend != tables[0].Backend)
                throw new ArgumentException($"{op}: field {f} table {tables[f].Describe()} lives on backend '{tables[f].Backend.Name}', field 0 on '{tables[0].Backend.Name}'.");
        }
        if ((long)batch * fields != ids.Length)
            throw new ArgumentException($"{op}: {ids.Length} ids do not form [batch {batch}, fields {fields}] ({(long)batch * fields} ids expected).", nameof(ids));
        var span = ids.Span;
        for (int n = 0; n < span.Length; n++)
        {
            int f = n % fields;
            if ((uint)span[n] >= (uint)tables[f].Shape[0])
                throw new ArgumentOutOfRangeException(nameof(ids),
                    $"{op}: field {f} (table {tables[f].Describe()}): id {span[n]} at position {n} (sample {n / fields}, field {f}) is out of range (valid ids are 0..{tables[f].Shape[0] - 1}).");
        }
        if (batch > 0)
            for (int f = 0; f < fields; f++) tables[f].DeferredRows?.Apply(span[f..], fields, batch);
        var be = tables[0].Backend;
        var x0 = Tape<T>.NewTensor(new Shape(batch, fields, width), be, clear: false); // x0 [B, F, D]
        if (batch > 0)
            for (int f = 0; f < fields; f++) // column f of ids [B, F] → slots x0[:, f, :] (stride F·D)
                be.GatherRows(tables[f].Storage, width, span[f..], fields, batch, x0.Storage, f * width, fields * width);
        if (Tape<T>.ShouldRecord(tables)) Tape<T>.Record(new EmbeddingGatherFieldsNode<T>(tables, ids, batch), x0);
        return x0;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        if (_batch == 0) return;
        int fields = _tables.Length, width = _tables[0].Shape[1];
        var span = _ids.Span;
        for (int f = 0; f < fields; f++)
        {
            var t = _tables[f];
            if (!t.RequiresGrad) continue;
            // g [B, F, D]: field f's rows sit at offset f·D with stride F·D; their ids at f with stride F.
            if (t.HasSparseGradient)
                t.Backend.ScatterAddRowsSparse(g.Storage, f * width, fields * width, width, span[f..], fields, _batch, EmbeddingGrad.Sparse(t));
            else
                t.Backend.ScatterAddRows(g.Storage, f * width, fields * width, width, span[f..], fields, _batch, tape.GradOf(t).Storage);
        }
    }
}

/// <summary>
/// EmbeddingBag: pooled rows for multi-valued categorical fields. Bag b covers ids[offsets[b] .. offsets[b+1]);
/// out[b, :] = Σ (or mean of) its rows; an empty bag gives zeros. out is [batch, D] with batch = offsets.Length − 1.
/// </summary>
internal sealed class EmbeddingBagNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T> _table;
    private readonly ReadOnlyMemory<int> _ids, _offsets;
    private readonly bool _mean;

    private EmbeddingBagNode(Tensor<T> table, ReadOnlyMemory<int> ids, ReadOnlyMemory<int> offsets, bool mean)
    { _table = table; _ids = ids; _offsets = offsets; _mean = mean; }

    public override string OpName => "EmbeddingBag";

    public static Tensor<T> Forward(Tensor<T> table, ReadOnlyMemory<int> ids, ReadOnlyMemory<int> offsets, PoolingMode mode)
    {
        const string op = "EmbeddingBag";
        EmbeddingChecks.Table(op, table);
        if (mode is not (PoolingMode.Sum or PoolingMode.Mean))
            throw new ArgumentOutOfRangeException(nameof(mode), $"{op}: unknown pooling mode {(int)mode}.");
        var off = offsets.Span;
        if (off.Length < 1)
            throw new ArgumentException($"{op}: offsets must have batch + 1 entries (at least 1); got none.", nameof(offsets));
        if (off[0] != 0 || off[^1] != ids.Length)
            throw new ArgumentException($"{op}: offsets must start at 0 and end at the id count {ids.Length}; got {off[0]} … {off[^1]}.", nameof(offsets));
        for (int b = 0; b + 1 < off.Length; b++)
            if (off[b + 1] < off[b])
                throw new ArgumentException($"{op}: offsets decrease at bag {b}: offsets[{b}] = {off[b]}, offsets[{b + 1}] = {off[b + 1]}.", nameof(offsets));
        EmbeddingChecks.Ids(op, table, ids.Span);
        int batch = off.Length - 1, width = table.Shape[1];
        table.DeferredRows?.Apply(ids.Span, 1, ids.Length);
        var y = Tape<T>.NewTensor(new Shape(batch, width), table.Backend, clear: false); // y [batch, D]
        bool mean = mode == PoolingMode.Mean;
        table.Backend.BagSum(table.Storage, width, ids.Span, off, mean, y.Storage);
        if (Tape<T>.ShouldRecord(table)) Tape<T>.Record(new EmbeddingBagNode<T>(table, ids, offsets, mean), y);
        return y;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        if (!_table.RequiresGrad) return;
        int width = _table.Shape[1];
        if (_table.HasSparseGradient)
            _table.Backend.BagSumBackwardSparse(g.Storage, width, _ids.Span, _offsets.Span, _mean, EmbeddingGrad.Sparse(_table));
        else
            _table.Backend.BagSumBackward(g.Storage, width, _ids.Span, _offsets.Span, _mean, tape.GradOf(_table).Storage);
    }
}

/// <summary>
/// MulColumn: y[…, d] = x[…, d] · s[…] — each row of x (its last axis) scaled by one value of s, whose shape is
/// x's shape without the last axis (x [N, D] with s [N]; x [B, F, D] with s [B, F]). The way a dense numeric
/// value scales its field's embedding. Gradients flow to both x and s.
/// </summary>
internal sealed class MulColumnNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T> _x, _s;
    private MulColumnNode(Tensor<T> x, Tensor<T> s) { _x = x; _s = s; }
    public override string OpName => "MulColumn";

    public static Tensor<T> Forward(Tensor<T> x, Tensor<T> s)
    {
        if (x.Rank < 1 || s.Shape != x.Shape.Without(x.Rank - 1))
            throw new ArgumentException(
                $"MulColumn: scales {s.Describe()} must have x's shape without its last axis; x is {x.Describe()}{(x.Rank >= 1 ? $" (expected {x.Shape.Without(x.Rank - 1)})" : "")}.");
        if (x.Backend != s.Backend)
            throw new ArgumentException($"MulColumn: x {x.Describe()} and s {s.Describe()} live on different backends.");
        int rows = s.Length, width = x.Shape[x.Rank - 1]; // x viewed as [rows, width]
        var y = Tape<T>.NewTensor(x.Shape, x.Backend, clear: false);
        x.Backend.ScaleRows(x.Storage, s.Storage, y.Storage, rows, width);
        if (Tape<T>.ShouldRecord(x, s)) Tape<T>.Record(new MulColumnNode<T>(x, s), y);
        return y;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        var gx = _x.RequiresGrad ? tape.GradOf(_x).Storage : null;
        var gs = _s.RequiresGrad ? tape.GradOf(_s).Storage : null;
        _x.Backend.ScaleRowsBackward(_x.Storage, _s.Storage, g.Storage, gx, gs, _s.Length, _x.Shape[_x.Rank - 1]);
    }
}

public static partial class Op
{
    /// <summary>
    /// Looks up rows of <paramref name="table"/> [V, D]: N ids → [N, D], or <paramref name="outputShape"/> (any shape of
    /// N·D elements, e.g. [B, F, D]). Ids are validated on the host (an id outside [0, V) throws
    /// <see cref="ArgumentOutOfRangeException"/> naming the table, the id and its position). A table made by
    /// <see cref="EmbeddingTable"/> receives a row-sparse gradient in <see cref="Tensor{T}.SparseGrad"/>; any other
    /// tensor a dense one. The ids are read again in backward: do not change them before the backward pass.
    /// </summary>
    public static Tensor<T> EmbeddingGather<T>(Tensor<T> table, ReadOnlyMemory<int> ids, Shape? outputShape = null)
        where T : unmanaged, IFloatingPointIeee754<T>
        => EmbeddingGatherNode<T>.Forward(table, ids, outputShape);

    /// <summary>
    /// The CTR input layer: <paramref name="tables"/>[f] [V_f, D] per field, ids [batch, F] row-major →
    /// x0 [batch, F, D] with x0[b, f, :] = tables[f][ids[b·F + f], :]. One node, one pass; each table gets its own
    /// (row-sparse for <see cref="EmbeddingTable"/> tables) gradient.
    /// </summary>
    public static Tensor<T> EmbeddingGatherFields<T>(IReadOnlyList<Tensor<T>> tables, ReadOnlyMemory<int> ids, int batch)
        where T : unmanaged, IFloatingPointIeee754<T>
        => EmbeddingGatherFieldsNode<T>.Forward(tables, ids, batch);

    /// <summary>
    /// Pools bags of rows (multi-valued categorical fields): bag b covers ids[offsets[b] .. offsets[b+1]);
    /// offsets has batch + 1 entries, starts at 0 and ends at ids.Length. → [batch, D]; an empty bag gives zeros.
    /// </summary>
    public static Tensor<T> EmbeddingBag<T>(Tensor<T> table, ReadOnlyMemory<int> ids, ReadOnlyMemory<int> offsets, PoolingMode mode)
        where T : unmanaged, IFloatingPointIeee754<T>
        => EmbeddingBagNode<T>.Forward(table, ids, offsets, mode);

    /// <summary>
    /// x[…, d] · s[…]: every row (last axis) of x scaled by the matching value of s, whose shape is x's without
    /// the last axis (x [N, D], s [N]; or x [B, F, D], s [B, F]).
    /// </summary>
    public static Tensor<T> MulColumn<T>(Tensor<T> x, Tensor<T> s) where T : unmanaged, IFloatingPointIeee754<T>
        => MulColumnNode<T>.Forward(x, s);
}
