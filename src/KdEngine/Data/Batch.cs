namespace KdEngine.Data;

/// <summary>
/// A reusable mini-batch view: <see cref="Ids"/> [B, F] row-major, <see cref="Labels"/> [B], optional
/// <see cref="DenseValues"/> [B, F] and <see cref="UserIds"/> [B], multi-valued fields as CSR
/// (<see cref="MultiOffsets"/> [B + 1] into <see cref="MultiIds"/>), optional external teacher logits
/// <see cref="TeacherLogits"/> [B, K], and <see cref="Rows"/> [B] (the dataset row, or for streams the 0-based ordinal
/// of the record in the input). Its buffers are sized once and overwritten by
/// the next batch; copy whatever must outlive the step.
/// </summary>
public sealed class Batch
{
    private readonly int _f;
    private readonly int[] _ids;
    private readonly float[] _labels;
    private readonly float[]? _dense;
    private readonly int[]? _users;
    private readonly long[] _rows;
    private readonly int[][] _multiOffsets;
    private readonly int[][] _multiIds;
    private readonly float[]? _teacher;

    internal Batch(FeatureSpace space, int capacity, bool dense, bool users, int teachers = 0)
    {
        Space = space;
        Capacity = capacity;
        _f = space.FieldCount;
        _ids = new int[capacity * _f];
        _labels = new float[capacity];
        _dense = dense ? new float[capacity * _f] : null;
        _users = users ? new int[capacity] : null;
        _rows = new long[capacity];
        TeacherCount = teachers;
        _teacher = teachers > 0 ? new float[capacity * teachers] : null;
        _multiOffsets = space.MultiFields.Select(_ => new int[capacity + 1]).ToArray();
        _multiIds = space.MultiFields.Select(_ => new int[capacity * 4]).ToArray();
    }

    /// <summary>The fields the ids are encoded for (column f of <see cref="Ids"/> is single-valued field f).</summary>
    public FeatureSpace Space { get; }

    /// <summary>Rows in this batch (B ≤ <see cref="Capacity"/>).</summary>
    public int Size { get; private set; }

    /// <summary>The most rows the buffers hold (the batch size they were made for).</summary>
    public int Capacity { get; }

    /// <summary>F: single-valued fields per row.</summary>
    public int FieldCount => _f;

    /// <summary>[B, F] row-major ids of the single-valued fields.</summary>
    public ReadOnlySpan<int> Ids => _ids.AsSpan(0, Size * _f);

    /// <summary>[B] labels, 0 or 1.</summary>
    public ReadOnlySpan<float> Labels => _labels.AsSpan(0, Size);

    /// <summary>True when the batch carries <see cref="DenseValues"/> (some field scales its embedding by a value).</summary>
    public bool HasDenseValues => _dense is not null;

    /// <summary>[B, F] scales; empty when the dataset has none (treat as all ones).</summary>
    public ReadOnlySpan<float> DenseValues => _dense is null ? default : _dense.AsSpan(0, Size * _f);

    /// <summary>[B] user ids; empty when the dataset has none.</summary>
    public ReadOnlySpan<int> UserIds => _users is null ? default : _users.AsSpan(0, Size);

    /// <summary>[B] the dataset row of each batch row (for streams: the record's 0-based ordinal in the input).</summary>
    public ReadOnlySpan<long> Rows => _rows.AsSpan(0, Size);

    /// <summary>K: external teacher-logit columns per row (0 when the data carries none).</summary>
    public int TeacherCount { get; }

    /// <summary>[B, K] external teacher logits, row-major; empty when the data carries none.</summary>
    public ReadOnlySpan<float> TeacherLogits => _teacher is null ? default : _teacher.AsSpan(0, Size * TeacherCount);

    /// <summary>[B + 1] starts of each row's ids in <see cref="MultiIds"/> for multi-valued field <paramref name="k"/>.</summary>
    public ReadOnlySpan<int> MultiOffsets(int k) => _multiOffsets[k].AsSpan(0, Size + 1);

    /// <summary>The ids of multi-valued field <paramref name="k"/> for all B rows, row r's at <c>MultiOffsets(k)[r] .. MultiOffsets(k)[r + 1]</c>.</summary>
    public ReadOnlySpan<int> MultiIds(int k) => _multiIds[k].AsSpan(0, _multiOffsets[k][Size]);

    internal void Clear()
    {
        Size = 0;
        foreach (var o in _multiOffsets) o[0] = 0;
    }

    internal void AddRow(EncodedDataset data, int row)
    {
        int b = Size;
        data.Ids.AsSpan(row * _f, _f).CopyTo(_ids.AsSpan(b * _f, _f));
        _labels[b] = data.Labels[row];
        if (_dense is not null) data.DenseValues!.AsSpan(row * _f, _f).CopyTo(_dense.AsSpan(b * _f, _f));
        if (_users is not null) _users[b] = data.UserIds![row];
        if (_teacher is not null) data.RowTeacherLogits(row).CopyTo(_teacher.AsSpan(b * TeacherCount, TeacherCount));
        _rows[b] = row;
        for (int k = 0; k < _multiIds.Length; k++) AppendMulti(k, b, data.Multi[k].Row(row));
        Size = b + 1;
    }

    internal void AddRow(ReadOnlySpan<int> ids, float label, ReadOnlySpan<float> dense, int userId, long rowNumber, ShuffleBuffer store, int slot)
    {
        int b = Size;
        ids.CopyTo(_ids.AsSpan(b * _f, _f));
        _labels[b] = label;
        if (_dense is not null) dense.CopyTo(_dense.AsSpan(b * _f, _f));
        if (_users is not null) _users[b] = userId;
        _rows[b] = rowNumber;
        for (int k = 0; k < _multiIds.Length; k++) AppendMulti(k, b, store.MultiIds(k, slot));
        Size = b + 1;
    }

    /// <summary>
    /// Fills every row's <see cref="TeacherLogits"/> from <paramref name="scores"/>: batch row b gets the scores of row
    /// <paramref name="rowOffset"/> + <see cref="Rows"/>[b] (a part's ordinal shifted to its row in the whole file).
    /// </summary>
    internal void FillTeacherLogits(TeacherScoreTable scores, long rowOffset)
    {
        int k = TeacherCount;
        if (_teacher is null || scores.Count != k)
            throw new InvalidOperationException($"Batch: made for {k} teacher-logit columns, given {scores.Count}.");
        for (int b = 0; b < Size; b++) scores.Read(rowOffset + _rows[b], _teacher.AsSpan(b * k, k));
    }

    private void AppendMulti(int k, int b, ReadOnlySpan<int> values)
    {
        int start = _multiOffsets[k][b];
        // Grows only until the largest batch seen so far fits: allocation stops in steady state.
        if (start + values.Length > _multiIds[k].Length) Array.Resize(ref _multiIds[k], Math.Max(_multiIds[k].Length * 2, start + values.Length));
        values.CopyTo(_multiIds[k].AsSpan(start));
        _multiOffsets[k][b + 1] = start + values.Length;
    }
}

/// <summary>N encoded rows held by <see cref="Streaming.Batches(IEnumerable{IRowBlock}, FeatureSpace, int, int, int, bool)"/> while it shuffles a stream.</summary>
internal sealed class ShuffleBuffer
{
    private readonly int _f;
    public readonly int[] Ids;
    public readonly float[] Labels;
    public readonly float[] Dense;
    public readonly int[] Users;
    public readonly long[] RowNumbers;
    private readonly bool _hasDense;
    private readonly int[][][] _multi;   // [k][slot] → ids (grown as needed)
    private readonly int[][] _multiCount; // [k][slot]

    public ShuffleBuffer(FeatureSpace space, int capacity)
    {
        _f = space.FieldCount;
        _hasDense = space.HasDenseValues;
        Ids = new int[(long)capacity * _f];
        Labels = new float[capacity];
        Dense = _hasDense ? new float[(long)capacity * _f] : [];
        Users = new int[capacity];
        RowNumbers = new long[capacity];
        _multi = space.MultiFields.Select(_ => Enumerable.Range(0, capacity).Select(_ => new int[4]).ToArray()).ToArray();
        _multiCount = space.MultiFields.Select(_ => new int[capacity]).ToArray();
    }

    public void Store(int slot, IRowBlock block, int row)
    {
        block.RowIds(row).CopyTo(Ids.AsSpan(slot * _f, _f));
        if (_hasDense) block.RowDense(row).CopyTo(Dense.AsSpan(slot * _f, _f));
        Labels[slot] = block.Label(row);
        Users[slot] = block.UserId(row);
        RowNumbers[slot] = block.FirstRow + row;
        for (int k = 0; k < _multi.Length; k++)
        {
            var src = block.MultiIds(k, row);
            if (_multi[k][slot].Length < src.Length) _multi[k][slot] = new int[Math.Max(src.Length, _multi[k][slot].Length * 2)];
            src.CopyTo(_multi[k][slot]);
            _multiCount[k][slot] = src.Length;
        }
    }

    public ReadOnlySpan<int> MultiIds(int k, int slot) => _multi[k][slot].AsSpan(0, _multiCount[k][slot]);

    /// <summary>A buffer of <paramref name="capacity"/> slots holding the first <paramref name="filled"/> slots of <paramref name="old"/>.</summary>
    public static ShuffleBuffer Grow(ShuffleBuffer? old, FeatureSpace space, int filled, int capacity)
    {
        var b = new ShuffleBuffer(space, capacity);
        if (old is null) return b;
        int f = b._f;
        old.Ids.AsSpan(0, filled * f).CopyTo(b.Ids);
        if (b._hasDense) old.Dense.AsSpan(0, filled * f).CopyTo(b.Dense);
        old.Labels.AsSpan(0, filled).CopyTo(b.Labels);
        old.Users.AsSpan(0, filled).CopyTo(b.Users);
        old.RowNumbers.AsSpan(0, filled).CopyTo(b.RowNumbers);
        for (int k = 0; k < b._multi.Length; k++)
        {
            Array.Copy(old._multi[k], b._multi[k], filled);
            old._multiCount[k].AsSpan(0, filled).CopyTo(b._multiCount[k]);
        }
        return b;
    }

    public int Capacity => Labels.Length;

    public void EmitTo(Batch batch, int slot) =>
        batch.AddRow(Ids.AsSpan(slot * _f, _f), Labels[slot], _hasDense ? Dense.AsSpan(slot * _f, _f) : default, Users[slot], RowNumbers[slot], this, slot);
}

/// <summary>One pass over a stream larger than memory, in mini-batches, with a seeded shuffle buffer.</summary>
public static class Streaming
{
    /// <summary>
    /// Reads <paramref name="records"/> once (e.g. a <see cref="RecordReader"/>), encodes each row with
    /// <paramref name="preprocessor"/> and yields reusable batches, shuffled as
    /// <see cref="Batches(IEnumerable{IRowBlock}, FeatureSpace, int, int, int, bool)"/> does.
    /// </summary>
    public static IEnumerable<Batch> Batches(IEnumerable<RawRecord> records, Preprocessor preprocessor, int batchSize,
        int shuffleBuffer, int seed = 0, bool dropLast = false)
    {
        ArgumentNullException.ThrowIfNull(records);
        ArgumentNullException.ThrowIfNull(preprocessor);
        return Batches(Blocks(records, preprocessor), preprocessor.FeatureSpace, batchSize, shuffleBuffer, seed, dropLast);
    }

    private static IEnumerable<IRowBlock> Blocks(IEnumerable<RawRecord> records, Preprocessor pre)
    {
        var block = new EncodedBlock(pre.FeatureSpace, 256);
        var row = new EncodedRow(pre.FeatureSpace);
        long first = 0;
        IEnumerable<RawRow> rows = records is RecordReader reader ? reader.Rows() : records.Select(ToRow(pre.Schema));
        foreach (var r in rows)
        {
            pre.Encode(r, row);
            block.Add(row);
            if (block.Count == 256)
            {
                block.FirstRow = first;
                yield return block;
                first += block.Count;
                block.Clear();
            }
        }
        if (block.Count > 0)
        {
            block.FirstRow = first;
            yield return block;
        }
    }

    private static Func<RawRecord, RawRow> ToRow(Schema schema)
    {
        var row = new RawRow(schema);
        return r => { row.From(r); return row; };
    }

    /// <summary>
    /// Mini-batches over a stream of encoded blocks, one pass. Shuffling: a buffer of <paramref name="shuffleBuffer"/>
    /// rows is filled; then each incoming row replaces a uniformly chosen buffered row, which is emitted; at the end the
    /// remaining rows are emitted in a seeded random order. Every row is emitted exactly once; the order depends only on
    /// the seed and the input. A buffer of 0 or 1 keeps the input order. When the buffer holds every row, the order is
    /// exactly <see cref="EncodedDataset.Batches"/>' shuffle with the same seed (a Fisher–Yates permutation of all rows).
    /// <see cref="Batch.Rows"/> carries each row's <see cref="IRowBlock.FirstRow"/>-based ordinal.
    /// Memory: O(shuffleBuffer + batchSize) rows.
    /// </summary>
    public static IEnumerable<Batch> Batches(IEnumerable<IRowBlock> blocks, FeatureSpace space, int batchSize, int shuffleBuffer,
        int seed = 0, bool dropLast = false) => Batches(blocks, space, batchSize, shuffleBuffer, seed, dropLast, expectedRows: 0);

    /// <summary>
    /// As <see cref="Batches(IEnumerable{IRowBlock}, FeatureSpace, int, int, int, bool)"/>, with the number of rows the
    /// stream is expected to hold (0: unknown). When it is known the shuffle buffer is allocated once, at
    /// min(<paramref name="shuffleBuffer"/>, <paramref name="expectedRows"/>) rows, instead of growing by doubling from
    /// 1,024 rows: the grown-out copies (together as large as the final buffer) would stay in the large-object heap as
    /// garbage next to it. The order of the batches is the same either way; a stream longer than expected still works.
    /// </summary>
    public static IEnumerable<Batch> Batches(IEnumerable<IRowBlock> blocks, FeatureSpace space, int batchSize, int shuffleBuffer,
        int seed, bool dropLast, long expectedRows)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        ArgumentNullException.ThrowIfNull(space);
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), $"Streaming.Batches: batchSize must be ≥ 1, got {batchSize}.");
        if (shuffleBuffer < 0) throw new ArgumentOutOfRangeException(nameof(shuffleBuffer), $"Streaming.Batches: shuffleBuffer must be ≥ 0, got {shuffleBuffer}.");
        return Iterate(blocks, space, batchSize, Math.Max(1, shuffleBuffer), seed, dropLast, Math.Max(0, expectedRows), teacherCount: 0);
    }

    /// <summary>
    /// As <see cref="Batches(IEnumerable{IRowBlock}, FeatureSpace, int, int, int, bool, long)"/>, each batch carrying its
    /// rows' external teacher logits looked up in <paramref name="teacherScores"/> by ordinal (row
    /// <paramref name="teacherRowOffset"/> + <see cref="Batch.Rows"/>[b]) when it is emitted: the shuffle buffer holds
    /// no scores, so it costs no memory per row.
    /// </summary>
    public static IEnumerable<Batch> Batches(IEnumerable<IRowBlock> blocks, FeatureSpace space, int batchSize, int shuffleBuffer,
        int seed, bool dropLast, long expectedRows, TeacherScoreTable teacherScores, long teacherRowOffset)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        ArgumentNullException.ThrowIfNull(space);
        ArgumentNullException.ThrowIfNull(teacherScores);
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), $"Streaming.Batches: batchSize must be ≥ 1, got {batchSize}.");
        if (shuffleBuffer < 0) throw new ArgumentOutOfRangeException(nameof(shuffleBuffer), $"Streaming.Batches: shuffleBuffer must be ≥ 0, got {shuffleBuffer}.");
        ArgumentOutOfRangeException.ThrowIfNegative(teacherRowOffset);
        return Iterate(blocks, space, batchSize, Math.Max(1, shuffleBuffer), seed, dropLast, Math.Max(0, expectedRows), teacherScores, teacherRowOffset);
    }

    private static IEnumerable<Batch> Iterate(IEnumerable<IRowBlock> blocks, FeatureSpace space, int batchSize, int capacity, int seed, bool dropLast, long expectedRows,
        TeacherScoreTable? teachers, long teacherRowOffset)
    {
        foreach (var batch in Iterate(blocks, space, batchSize, capacity, seed, dropLast, expectedRows, teachers?.Count ?? 0))
        {
            if (teachers is not null) batch.FillTeacherLogits(teachers, teacherRowOffset);
            yield return batch;
        }
    }

    private static IEnumerable<Batch> Iterate(IEnumerable<IRowBlock> blocks, FeatureSpace space, int batchSize, int capacity, int seed, bool dropLast, long expectedRows,
        int teacherCount)
    {
        var batch = new Batch(space, batchSize, space.HasDenseValues, space.HasUserIds, teacherCount);
        var rng = new DataRandom(seed);
        batch.Clear();
        if (capacity == 1)
        {
            // No shuffling: rows go straight from the blocks into batches.
            var one = new ShuffleBuffer(space, 1);
            foreach (var block in blocks)
                for (int i = 0; i < block.Count; i++)
                {
                    one.Store(0, block, i);
                    one.EmitTo(batch, 0);
                    if (batch.Size == batchSize)
                    {
                        yield return batch;
                        batch.Clear();
                    }
                }
            if (batch.Size > 0 && !dropLast) yield return batch;
            yield break;
        }
        ShuffleBuffer? buffer = null;
        int filled = 0;
        foreach (var block in blocks)
        {
            // The buffer grows with the input up to its capacity, so a small input never allocates a large buffer.
            for (int i = 0; i < block.Count; i++)
            {
                if (filled < capacity)
                {
                    if (buffer is null || filled == buffer.Capacity)
                        buffer = ShuffleBuffer.Grow(buffer, space, filled, (int)Math.Min(capacity, Math.Max(buffer is null && expectedRows > 0 ? expectedRows : 1024L, filled * 2L)));
                    buffer.Store(filled++, block, i);
                    continue;
                }
                int j = rng.NextInt(capacity);
                buffer!.EmitTo(batch, j);
                buffer.Store(j, block, i);
                if (batch.Size == batchSize)
                {
                    yield return batch;
                    batch.Clear();
                }
            }
        }
        var rest = new int[filled];
        for (int i = 0; i < filled; i++) rest[i] = i;
        rng.Shuffle(rest);
        foreach (int slot in rest)
        {
            buffer!.EmitTo(batch, slot);
            if (batch.Size == batchSize)
            {
                yield return batch;
                batch.Clear();
            }
        }
        if (batch.Size > 0 && !dropLast) yield return batch;
    }

}
