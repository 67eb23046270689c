namespace KdEngine.Data;

/// <summary>How <see cref="EncodedDataset.Split"/> assigns rows to parts.</summary>
public enum SplitMode
{
    /// <summary>Contiguous parts in file order (time-ordered data such as the Criteo sample).</summary>
    Sequential,
    /// <summary>A seeded random permutation cut at the same boundaries; each part keeps file order.</summary>
    Random,
    /// <summary>
    /// Each row to a part by a seeded 64-bit hash of its ordinal (<see cref="HashSplit"/>): streams without loading the
    /// file; part sizes binomial around the ratios; other parts than <see cref="Random"/> with the same seed.
    /// </summary>
    Hash,
}

/// <summary>The ids of one multi-valued field: row i's ids are <c>Ids[Offsets[i] .. Offsets[i+1])</c> (CSR layout).</summary>
public sealed class MultiValuedColumn
{
    /// <summary>A column from CSR arrays: <paramref name="offsets"/> [rows + 1] starting at 0 and ending at ids.Length, non-decreasing
    /// (an <see cref="ArgumentException"/> otherwise).</summary>
    public MultiValuedColumn(int[] offsets, int[] ids)
    {
        ArgumentNullException.ThrowIfNull(offsets);
        ArgumentNullException.ThrowIfNull(ids);
        if (offsets.Length == 0 || offsets[0] != 0 || offsets[^1] != ids.Length)
            throw new ArgumentException($"MultiValuedColumn: offsets must start at 0 and end at ids.Length = {ids.Length}.");
        for (int i = 1; i < offsets.Length; i++)
            if (offsets[i] < offsets[i - 1]) throw new ArgumentException($"MultiValuedColumn: offsets decrease at row {i - 1}.");
        Offsets = offsets;
        Ids = ids;
    }

    /// <summary>[Count + 1] row starts into <see cref="Ids"/>.</summary>
    public int[] Offsets { get; }

    /// <summary>Every row's ids, concatenated in row order.</summary>
    public int[] Ids { get; }

    /// <summary>The ids of row <paramref name="i"/> (possibly none).</summary>
    public ReadOnlySpan<int> Row(int i) => Ids.AsSpan(Offsets[i], Offsets[i + 1] - Offsets[i]);
}

/// <summary>Ratio splits shared by raw-record lists and <see cref="EncodedDataset"/> (same boundaries for the same input).</summary>
public static class DataSplit
{
    /// <summary>
    /// Part ends for <paramref name="count"/> rows: end_k = ⌊count · (r_1 + … + r_k) / Σr⌋, the last part ending
    /// at count. For 9,999 rows and 8:1:1 this gives 7,999 / 1,000 / 1,000.
    /// </summary>
    public static int[] Boundaries(int count, IReadOnlyList<double> ratios)
    {
        ArgumentNullException.ThrowIfNull(ratios);
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), $"Split: count must be ≥ 0, got {count}.");
        if (ratios.Count == 0) throw new ArgumentException("Split: no ratios given.", nameof(ratios));
        double total = 0;
        foreach (var r in ratios)
        {
            if (!(r > 0) || !double.IsFinite(r)) throw new ArgumentException($"Split: ratios must be positive and finite, got [{string.Join(", ", ratios)}].", nameof(ratios));
            total += r;
        }
        var ends = new int[ratios.Count];
        double cum = 0;
        for (int k = 0; k < ratios.Count; k++)
        {
            cum += ratios[k];
            // The small epsilon keeps exact products (e.g. 10 · 0.8 = 7.999999…) on the intended integer.
            ends[k] = k == ratios.Count - 1 ? count : (int)Math.Min(count, Math.Floor(count * cum / total + 1e-9));
        }
        return ends;
    }

    /// <summary><see cref="Boundaries(int, IReadOnlyList{double})"/> for row counts beyond 2³¹ (streamed files).</summary>
    public static long[] Boundaries(long count, IReadOnlyList<double> ratios)
    {
        ArgumentNullException.ThrowIfNull(ratios);
        if (count <= int.MaxValue) return Boundaries((int)count, ratios).Select(e => (long)e).ToArray();
        double total = ratios.Sum();
        var ends = new long[ratios.Count];
        double cum = 0;
        for (int k = 0; k < ratios.Count; k++)
        {
            if (!(ratios[k] > 0) || !double.IsFinite(ratios[k])) throw new ArgumentException($"Split: ratios must be positive and finite, got [{string.Join(", ", ratios)}].", nameof(ratios));
            cum += ratios[k];
            ends[k] = k == ratios.Count - 1 ? count : (long)Math.Min(count, Math.Floor(count * cum / total + 1e-9));
        }
        return ends;
    }

    /// <summary>Row indices of each part (each sorted ascending); disjoint and together 0..count−1.</summary>
    public static int[][] Indices(int count, IReadOnlyList<double> ratios, SplitMode mode = SplitMode.Sequential, int seed = 0)
    {
        if (mode == SplitMode.Hash) return new HashSplit(ratios, seed).Indices(count);
        var ends = Boundaries(count, ratios);
        var order = new int[count];
        for (int i = 0; i < count; i++) order[i] = i;
        if (mode == SplitMode.Random) new DataRandom(seed).Shuffle(order);
        else if (mode != SplitMode.Sequential) throw new ArgumentOutOfRangeException(nameof(mode), $"Split: unknown mode {mode}.");
        var parts = new int[ends.Length][];
        int start = 0;
        for (int k = 0; k < ends.Length; k++)
        {
            parts[k] = order[start..ends[k]];
            Array.Sort(parts[k]);
            start = ends[k];
        }
        return parts;
    }
}

/// <summary>
/// Encoded rows in memory: <see cref="Ids"/> [Count, F] row-major local ids of the single-valued fields,
/// <see cref="Labels"/> [Count], optional <see cref="DenseValues"/> [Count, F] (1 where a field has no value),
/// multi-valued fields as CSR columns, optional <see cref="UserIds"/> [Count], optional external teacher logits
/// <see cref="TeacherLogits"/> [Count, K] that travel with their rows through every split and batch. Every id is checked
/// against its field's cardinality on construction, so models never index out of a table.
/// </summary>
public sealed class EncodedDataset
{
    /// <summary>
    /// A dataset over <paramref name="featureSpace"/> of <paramref name="count"/> rows: <paramref name="ids"/> [count, F]
    /// row-major, <paramref name="labels"/> [count] in [0, 1], optional <paramref name="denseValues"/> [count, F],
    /// one <paramref name="multi"/> column per multi-valued field and optional <paramref name="userIds"/> [count].
    /// Every length, id range and label is checked; a violation is an <see cref="ArgumentException"/> naming the row
    /// and field. The arrays are kept, not copied.
    /// </summary>
    public EncodedDataset(FeatureSpace featureSpace, int count, int[] ids, float[] labels, float[]? denseValues = null,
        IReadOnlyList<MultiValuedColumn>? multi = null, int[]? userIds = null)
    {
        ArgumentNullException.ThrowIfNull(featureSpace);
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentNullException.ThrowIfNull(labels);
        int f = featureSpace.FieldCount;
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), $"EncodedDataset: count {count} < 0.");
        if (ids.Length != (long)count * f) throw new ArgumentException($"EncodedDataset: ids has {ids.Length} elements, expected [Count={count}, F={f}] = {(long)count * f}.", nameof(ids));
        if (labels.Length != count) throw new ArgumentException($"EncodedDataset: labels has {labels.Length} elements, expected {count}.", nameof(labels));
        if (denseValues is not null && denseValues.Length != ids.Length)
            throw new ArgumentException($"EncodedDataset: denseValues has {denseValues.Length} elements, expected [{count}, {f}].", nameof(denseValues));
        if (userIds is not null && userIds.Length != count) throw new ArgumentException($"EncodedDataset: userIds has {userIds.Length} elements, expected {count}.", nameof(userIds));
        multi ??= Array.Empty<MultiValuedColumn>();
        if (multi.Count != featureSpace.MultiFields.Count)
            throw new ArgumentException($"EncodedDataset: {multi.Count} multi-valued columns, the feature space has {featureSpace.MultiFields.Count}.", nameof(multi));
        for (int i = 0; i < ids.Length; i++)
        {
            int v = featureSpace.SingleFields[i % f].Cardinality;
            if ((uint)ids[i] >= (uint)v)
                throw new ArgumentException($"EncodedDataset: row {i / f}, field '{featureSpace.SingleFields[i % f].Name}': id {ids[i]} is outside [0, {v}).", nameof(ids));
        }
        for (int k = 0; k < multi.Count; k++)
        {
            var col = multi[k];
            var field = featureSpace.MultiFields[k];
            if (col.Offsets.Length != count + 1) throw new ArgumentException($"EncodedDataset: multi-valued field '{field.Name}' has {col.Offsets.Length} offsets, expected {count + 1}.", nameof(multi));
            foreach (int id in col.Ids)
                if ((uint)id >= (uint)field.Cardinality) throw new ArgumentException($"EncodedDataset: multi-valued field '{field.Name}': id {id} is outside [0, {field.Cardinality}).", nameof(multi));
        }
        for (int i = 0; i < labels.Length; i++)
            if (!(labels[i] >= 0 && labels[i] <= 1)) throw new ArgumentException($"EncodedDataset: label {labels[i]} at row {i} is outside [0, 1].", nameof(labels));
        FeatureSpace = featureSpace;
        Count = count;
        Ids = ids;
        Labels = labels;
        DenseValues = denseValues;
        Multi = multi;
        UserIds = userIds;
    }

    /// <summary>The same rows with other teacher logits (the row data is shared, not copied, and not re-validated).</summary>
    private EncodedDataset(EncodedDataset rows, float[]? teacherLogits, int teacherCount)
    {
        FeatureSpace = rows.FeatureSpace;
        Count = rows.Count;
        Ids = rows.Ids;
        Labels = rows.Labels;
        DenseValues = rows.DenseValues;
        Multi = rows.Multi;
        UserIds = rows.UserIds;
        TeacherLogits = teacherLogits;
        TeacherCount = teacherCount;
    }

    /// <summary>The fields and their cardinalities (what a model over this data is built from).</summary>
    public FeatureSpace FeatureSpace { get; }

    /// <summary>Number of rows.</summary>
    public int Count { get; }

    /// <summary>F: the number of single-valued fields (columns of <see cref="Ids"/>).</summary>
    public int FieldCount => FeatureSpace.FieldCount;

    /// <summary>[Count, F] row-major local ids.</summary>
    public int[] Ids { get; }

    /// <summary>[Count] labels in {0, 1}.</summary>
    public float[] Labels { get; }

    /// <summary>[Count, F] embedding scales, or null when no field has a dense value.</summary>
    public float[]? DenseValues { get; }

    /// <summary>One CSR column per multi-valued field (<see cref="FeatureSpace.MultiFields"/> order).</summary>
    public IReadOnlyList<MultiValuedColumn> Multi { get; }

    /// <summary>[Count] user ids for gAUC, or null.</summary>
    public int[]? UserIds { get; }

    /// <summary>
    /// [Count, <see cref="TeacherCount"/>] row-major logits of external teachers (a GBDT, a cached model, any scorer),
    /// or null. Row i's scores stay with row i through <see cref="Select"/>, <see cref="Split"/> and
    /// <see cref="Batches"/>, so a random split or a shuffle can never pair a row with another row's score.
    /// </summary>
    public float[]? TeacherLogits { get; }

    /// <summary>K: the number of external teacher-logit columns (0 when there are none).</summary>
    public int TeacherCount { get; }

    /// <summary>
    /// These rows with external teacher logits attached: <paramref name="logits"/> is [Count, <paramref name="teachers"/>]
    /// row-major (row i's K scores together), every value finite. Replaces any logits attached before; the row data is
    /// shared with this dataset.
    /// </summary>
    public EncodedDataset WithTeacherLogits(float[] logits, int teachers)
    {
        ArgumentNullException.ThrowIfNull(logits);
        if (teachers < 1) throw new ArgumentOutOfRangeException(nameof(teachers), $"WithTeacherLogits: teachers must be ≥ 1, got {teachers}.");
        if (logits.Length != (long)Count * teachers)
            throw new ArgumentException($"WithTeacherLogits: {logits.Length} logits for {Count} rows × {teachers} teachers (expected {(long)Count * teachers}).", nameof(logits));
        for (int i = 0; i < logits.Length; i++)
            if (!float.IsFinite(logits[i]))
                throw new ArgumentException($"WithTeacherLogits: row {i / teachers}, teacher {i % teachers}: the logit is {logits[i]}, not a finite number.", nameof(logits));
        return new EncodedDataset(this, logits, teachers);
    }

    /// <summary>These rows without external teacher logits.</summary>
    public EncodedDataset WithoutTeacherLogits() => TeacherLogits is null ? this : new EncodedDataset(this, null, 0);

    /// <summary>[K] external teacher logits of row <paramref name="row"/> (empty when there are none).</summary>
    public ReadOnlySpan<float> RowTeacherLogits(int row) =>
        TeacherLogits is null ? default : TeacherLogits.AsSpan(row * TeacherCount, TeacherCount);

    /// <summary>Fraction of positive labels.</summary>
    public double LabelRate
    {
        get
        {
            double s = 0;
            foreach (var l in Labels) s += l;
            return Count == 0 ? 0 : s / Count;
        }
    }

    /// <summary>[F] ids of row <paramref name="row"/>.</summary>
    public ReadOnlySpan<int> RowIds(int row) => Ids.AsSpan(row * FieldCount, FieldCount);

    /// <summary>Rows [start, start + count) as a new dataset (copied).</summary>
    public EncodedDataset Slice(int start, int count)
    {
        if (start < 0 || count < 0 || start > Count - count)
            throw new ArgumentOutOfRangeException(nameof(start), $"Slice({start}, {count}) is outside a dataset of {Count} rows.");
        var rows = new int[count];
        for (int i = 0; i < count; i++) rows[i] = start + i;
        return Select(rows);
    }

    /// <summary>The given rows, in the given order, as a new dataset (copied; rows may repeat).</summary>
    public EncodedDataset Select(int[] rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        int f = FieldCount;
        var ids = new int[rows.Length * f];
        var labels = new float[rows.Length];
        var dense = DenseValues is null ? null : new float[ids.Length];
        var users = UserIds is null ? null : new int[rows.Length];
        int k = TeacherCount;
        var teacher = TeacherLogits is null ? null : new float[rows.Length * k];
        for (int i = 0; i < rows.Length; i++)
        {
            int r = rows[i];
            if ((uint)r >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(rows), $"Select: row {r} (position {i}) is outside a dataset of {Count} rows.");
            Ids.AsSpan(r * f, f).CopyTo(ids.AsSpan(i * f, f));
            labels[i] = Labels[r];
            DenseValues?.AsSpan(r * f, f).CopyTo(dense.AsSpan(i * f, f));
            if (users is not null) users[i] = UserIds![r];
            TeacherLogits?.AsSpan(r * k, k).CopyTo(teacher.AsSpan(i * k, k));
        }
        var multi = new MultiValuedColumn[Multi.Count];
        for (int m = 0; m < multi.Length; m++)
        {
            var src = Multi[m];
            var offsets = new int[rows.Length + 1];
            for (int i = 0; i < rows.Length; i++) offsets[i + 1] = offsets[i] + src.Row(rows[i]).Length;
            var mids = new int[offsets[^1]];
            for (int i = 0; i < rows.Length; i++) src.Row(rows[i]).CopyTo(mids.AsSpan(offsets[i]));
            multi[m] = new MultiValuedColumn(offsets, mids);
        }
        var selected = new EncodedDataset(FeatureSpace, rows.Length, ids, labels, dense, multi, users);
        return teacher is null ? selected : new EncodedDataset(selected, teacher, k);
    }

    /// <summary>Splits by ratio (e.g. [8, 1, 1]); see <see cref="DataSplit.Boundaries(int, IReadOnlyList{double})"/> for the exact boundaries.</summary>
    public EncodedDataset[] Split(IReadOnlyList<double> ratios, SplitMode mode = SplitMode.Sequential, int seed = 0) =>
        DataSplit.Indices(Count, ratios, mode, seed).Select(Select).ToArray();

    /// <summary>
    /// Mini-batches covering every row exactly once (the last one smaller unless <paramref name="dropLast"/>), in
    /// file order or a seeded shuffle. The same <see cref="Batch"/> object is yielded every time and overwritten by
    /// the next step: no allocation per batch. Use seed + epoch for a new order per epoch.
    /// </summary>
    public IEnumerable<Batch> Batches(int batchSize, bool shuffle = false, int seed = 0, bool dropLast = false)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), $"Batches: batchSize must be ≥ 1, got {batchSize}.");
        return Iterate(batchSize, shuffle, seed, dropLast);
    }

    private IEnumerable<Batch> Iterate(int batchSize, bool shuffle, int seed, bool dropLast)
    {
        var order = new int[Count];
        for (int i = 0; i < Count; i++) order[i] = i;
        if (shuffle) new DataRandom(seed).Shuffle(order);
        var batch = new Batch(FeatureSpace, batchSize, DenseValues is not null, UserIds is not null, TeacherCount);
        for (int start = 0; start < Count; start += batchSize)
        {
            int n = Math.Min(batchSize, Count - start);
            if (n < batchSize && dropLast) yield break;
            batch.Clear();
            for (int i = 0; i < n; i++) batch.AddRow(this, order[start + i]);
            yield return batch;
        }
    }
}

/// <summary>Accumulates encoded rows into an <see cref="EncodedDataset"/>.</summary>
public sealed class EncodedDatasetBuilder
{
    private readonly FeatureSpace _space;
    private readonly List<int> _ids = new();
    private readonly List<float> _labels = new();
    private readonly List<float>? _dense;
    private readonly List<int>? _users;
    private readonly List<int>[] _multiOffsets;
    private readonly List<int>[] _multiIds;

    /// <summary>An empty builder for rows encoded over <paramref name="space"/>.</summary>
    public EncodedDatasetBuilder(FeatureSpace space)
    {
        ArgumentNullException.ThrowIfNull(space);
        _space = space;
        _dense = space.HasDenseValues ? new List<float>() : null;
        _users = space.HasUserIds ? new List<int>() : null;
        _multiOffsets = space.MultiFields.Select(_ => new List<int> { 0 }).ToArray();
        _multiIds = space.MultiFields.Select(_ => new List<int>()).ToArray();
    }

    /// <summary>Rows added so far.</summary>
    public int Count => _labels.Count;

    /// <summary>Appends a copy of <paramref name="row"/> (the row object can be reused for the next one).</summary>
    public void Add(EncodedRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        if (row.Ids.Length != _space.FieldCount) throw new ArgumentException($"EncodedDatasetBuilder: row has {row.Ids.Length} ids, expected {_space.FieldCount}.", nameof(row));
        _ids.AddRange(row.Ids);
        _labels.Add(row.Label);
        _dense?.AddRange(row.DenseValues);
        _users?.Add(row.UserId);
        for (int k = 0; k < _multiIds.Length; k++)
        {
            foreach (int id in row.MultiIds(k)) _multiIds[k].Add(id);
            _multiOffsets[k].Add(_multiIds[k].Count);
        }
    }

    /// <summary>Appends rows [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>) of a block.</summary>
    public void AddRange(IRowBlock block, int start, int count)
    {
        ArgumentNullException.ThrowIfNull(block);
        for (int r = start; r < start + count; r++)
        {
            var ids = block.RowIds(r);
            if (ids.Length != _space.FieldCount) throw new ArgumentException($"EncodedDatasetBuilder: row has {ids.Length} ids, expected {_space.FieldCount}.", nameof(block));
            foreach (int id in ids) _ids.Add(id);
            _labels.Add(block.Label(r));
            if (_dense is not null) foreach (float v in block.RowDense(r)) _dense.Add(v);
            _users?.Add(block.UserId(r));
            for (int k = 0; k < _multiIds.Length; k++)
            {
                foreach (int id in block.MultiIds(k, r)) _multiIds[k].Add(id);
                _multiOffsets[k].Add(_multiIds[k].Count);
            }
        }
    }

    /// <summary>The dataset of every row added (validated as the <see cref="EncodedDataset"/> constructor does).</summary>
    public EncodedDataset Build() => new(_space, _labels.Count, _ids.ToArray(), _labels.ToArray(), _dense?.ToArray(),
        _multiIds.Select((ids, k) => new MultiValuedColumn(_multiOffsets[k].ToArray(), ids.ToArray())).ToArray(),
        _users?.ToArray());
}
