namespace KdEngine.Data;

/// <summary>
/// Read access to a run of encoded rows (an <see cref="EncodedBlock"/> built by the parallel pipeline, or a row group of
/// a memory-mapped <see cref="EncodedCache"/>): per row, F ids, a label, optional F dense scales and a user id, and the
/// ids of each multi-valued field.
/// </summary>
public interface IRowBlock
{
    /// <summary>Rows in the block.</summary>
    int Count { get; }

    /// <summary>Ordinal of the block's first row in its input (its <see cref="Batch.Rows"/> value).</summary>
    long FirstRow { get; }

    /// <summary>[F] ids of row <paramref name="row"/>.</summary>
    ReadOnlySpan<int> RowIds(int row);

    /// <summary>The label of row <paramref name="row"/>.</summary>
    float Label(int row);

    /// <summary>[F] scales of the row; empty when the feature space has no dense values.</summary>
    ReadOnlySpan<float> RowDense(int row);

    /// <summary>The row's user id (−1 when none).</summary>
    int UserId(int row);

    /// <summary>The ids of multi-valued field <paramref name="field"/> in row <paramref name="row"/>.</summary>
    ReadOnlySpan<int> MultiIds(int field, int row);
}

/// <summary>
/// Encoded rows in growable column arrays: <see cref="Ids"/> [Count, F] row-major, <see cref="Labels"/> [Count],
/// <see cref="Dense"/> [Count, F] when the feature space has dense values, <see cref="Users"/> [Count] when it has
/// user ids, and per multi-valued field a CSR pair (offsets [Count + 1] into ids). Reused from a pool: capacity grows
/// to the largest chunk seen, then stops allocating.
/// </summary>
public sealed class EncodedBlock : IRowBlock
{
    private readonly int _f;
    private int[] _ids;
    private float[] _labels;
    private float[]? _dense;
    private int[]? _users;
    private readonly int[][] _multiOffsets;
    private readonly int[][] _multiIds;

    /// <summary>An empty block for rows of <paramref name="space"/>, with room for <paramref name="capacity"/> rows before it grows.</summary>
    public EncodedBlock(FeatureSpace space, int capacity = 1024)
    {
        ArgumentNullException.ThrowIfNull(space);
        Space = space;
        _f = space.FieldCount;
        capacity = Math.Max(capacity, 16);
        _ids = new int[capacity * _f];
        _labels = new float[capacity];
        _dense = space.HasDenseValues ? new float[capacity * _f] : null;
        _users = space.HasUserIds ? new int[capacity] : null;
        _multiOffsets = space.MultiFields.Select(_ => new int[capacity + 1]).ToArray();
        _multiIds = space.MultiFields.Select(_ => new int[capacity * 2]).ToArray();
    }

    /// <summary>The feature space of the rows.</summary>
    public FeatureSpace Space { get; }

    /// <inheritdoc/>
    public int Count { get; private set; }

    /// <inheritdoc/>
    public long FirstRow { get; set; }

    /// <summary>[Count, F] ids (row-major).</summary>
    public ReadOnlySpan<int> Ids => _ids.AsSpan(0, Count * _f);

    /// <summary>[Count] labels.</summary>
    public ReadOnlySpan<float> Labels => _labels.AsSpan(0, Count);

    /// <summary>[Count, F] scales, or empty.</summary>
    public ReadOnlySpan<float> Dense => _dense is null ? default : _dense.AsSpan(0, Count * _f);

    /// <summary>[Count] user ids, or empty.</summary>
    public ReadOnlySpan<int> Users => _users is null ? default : _users.AsSpan(0, Count);

    /// <summary>[Count + 1] starts of each row's ids of multi-valued field <paramref name="field"/> in <see cref="MultiIdsOf"/>.</summary>
    public ReadOnlySpan<int> MultiOffsets(int field) => _multiOffsets[field].AsSpan(0, Count + 1);

    /// <summary>Every row's ids of multi-valued field <paramref name="field"/>, one after another.</summary>
    public ReadOnlySpan<int> MultiIdsOf(int field) => _multiIds[field].AsSpan(0, _multiOffsets[field][Count]);

    /// <summary>Empties the block (its buffers are kept).</summary>
    public void Clear()
    {
        Count = 0;
        foreach (var o in _multiOffsets) o[0] = 0;
    }

    /// <summary>Appends an encoded row.</summary>
    public void Add(EncodedRow row)
    {
        int i = Count;
        if (i == _labels.Length) Grow();
        row.Ids.AsSpan(0, _f).CopyTo(_ids.AsSpan(i * _f, _f));
        _labels[i] = row.Label;
        if (_dense is not null) row.DenseValues.AsSpan(0, _f).CopyTo(_dense.AsSpan(i * _f, _f));
        if (_users is not null) _users[i] = row.UserId;
        for (int k = 0; k < _multiIds.Length; k++) AppendMulti(k, i, row.MultiIds(k));
        Count = i + 1;
    }

    /// <summary>Appends row <paramref name="row"/> of another block (same feature space).</summary>
    public void Add(IRowBlock block, int row)
    {
        int i = Count;
        if (i == _labels.Length) Grow();
        block.RowIds(row).CopyTo(_ids.AsSpan(i * _f, _f));
        _labels[i] = block.Label(row);
        if (_dense is not null) block.RowDense(row).CopyTo(_dense.AsSpan(i * _f, _f));
        if (_users is not null) _users[i] = block.UserId(row);
        for (int k = 0; k < _multiIds.Length; k++) AppendMulti(k, i, block.MultiIds(k, row));
        Count = i + 1;
    }

    private void AppendMulti(int k, int i, ReadOnlySpan<int> values)
    {
        int start = _multiOffsets[k][i];
        if (start + values.Length > _multiIds[k].Length) Array.Resize(ref _multiIds[k], Math.Max(_multiIds[k].Length * 2, start + values.Length));
        values.CopyTo(_multiIds[k].AsSpan(start));
        _multiOffsets[k][i + 1] = start + values.Length;
    }

    private void Grow()
    {
        int capacity = _labels.Length * 2;
        Array.Resize(ref _ids, capacity * _f);
        Array.Resize(ref _labels, capacity);
        if (_dense is not null) Array.Resize(ref _dense, capacity * _f);
        if (_users is not null) Array.Resize(ref _users, capacity);
        for (int k = 0; k < _multiOffsets.Length; k++) Array.Resize(ref _multiOffsets[k], capacity + 1);
    }

    /// <inheritdoc/>
    public ReadOnlySpan<int> RowIds(int row) => _ids.AsSpan(row * _f, _f);

    /// <inheritdoc/>
    public float Label(int row) => _labels[row];

    /// <inheritdoc/>
    public ReadOnlySpan<float> RowDense(int row) => _dense is null ? default : _dense.AsSpan(row * _f, _f);

    /// <inheritdoc/>
    public int UserId(int row) => _users is null ? -1 : _users[row];

    /// <inheritdoc/>
    public ReadOnlySpan<int> MultiIds(int field, int row) =>
        _multiIds[field].AsSpan(_multiOffsets[field][row], _multiOffsets[field][row + 1] - _multiOffsets[field][row]);

    /// <summary>The rows as an in-memory dataset (copied).</summary>
    public EncodedDataset ToDataset()
    {
        var builder = new EncodedDatasetBuilder(Space);
        builder.AddRange(this, 0, Count);
        return builder.Build();
    }
}

/// <summary>Rows [Start, Start + Count) of another block (a unit's share of a cache row group).</summary>
public sealed class RowBlockSlice(IRowBlock block, int start, int count) : IRowBlock
{
    /// <summary>The block sliced.</summary>
    public IRowBlock Block { get; } = block;
    /// <summary>The slice's first row in <see cref="Block"/>.</summary>
    public int Start { get; } = start;
    /// <inheritdoc/>
    public int Count { get; } = count;
    /// <inheritdoc/>
    public long FirstRow => Block.FirstRow + Start;
    /// <inheritdoc/>
    public ReadOnlySpan<int> RowIds(int row) => Block.RowIds(Start + row);
    /// <inheritdoc/>
    public float Label(int row) => Block.Label(Start + row);
    /// <inheritdoc/>
    public ReadOnlySpan<float> RowDense(int row) => Block.RowDense(Start + row);
    /// <inheritdoc/>
    public int UserId(int row) => Block.UserId(Start + row);
    /// <inheritdoc/>
    /// <inheritdoc/>
    public ReadOnlySpan<int> MultiIds(int field, int row) => Block.MultiIds(field, Start + row);
}
