using System.Buffers.Binary;

namespace KdEngine.Data;

/// <summary>
/// The counts a vocabulary fit needs: per vocabulary field, how often each value (by the 64-bit hash of its UTF-8 bytes,
/// <see cref="StableHash.OfValue(ReadOnlySpan{byte})"/>) occurs, and the number of rows. Counts are mergeable: count
/// each part of the data on its own (a byte range, a thread's chunks, another process), <see cref="Merge"/> the parts
/// in any order, then <see cref="Preprocessor.Fit(PreprocessorCounts)"/> finalizes the vocabularies. The result does not
/// depend on how the data was cut or in which order the parts were merged (sums are exact; ties sort by hash).
/// Memory: one 16-byte slot per distinct value per field, at most half full (≈ 32 bytes per distinct value); freed
/// when the fit is done. <see cref="WriteTo"/>/<see cref="ReadFrom"/> move counts between processes.
/// </summary>
public sealed class PreprocessorCounts
{
    private const uint Magic = 0x4B44_5043; // "KDPC"
    private readonly HashMap64<long>?[] _counts; // per plan; null for hashed and dense fields

    /// <summary>Empty counts for the input fields of <paramref name="schema"/> under <paramref name="options"/> (which fix each field's encoding).</summary>
    public PreprocessorCounts(Schema schema, PreprocessorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(schema);
        options ??= new PreprocessorOptions();
        options.Validate();
        Schema = schema;
        Options = options;
        Plans = FieldPlan.For(schema, options);
        _counts = Plans.Select(p => p.Encoding == FieldEncoding.Vocabulary ? new HashMap64<long>(1024) : null).ToArray();
        CountsAnything = _counts.Any(c => c is not null);
    }

    /// <summary>The schema counted.</summary>
    public Schema Schema { get; }

    /// <summary>The options the preprocessing will be fitted with.</summary>
    public PreprocessorOptions Options { get; }

    internal FieldPlan[] Plans { get; }

    /// <summary>Whether any field has a vocabulary to count (false: every field is hashed or dense; no pass is needed).</summary>
    public bool CountsAnything { get; }

    /// <summary>Rows counted.</summary>
    public long Rows { get; private set; }

    /// <summary>Rows counted with label 1 (the click rate is <see cref="Positives"/> / <see cref="Rows"/>).</summary>
    public long Positives { get; private set; }

    /// <summary>Bytes held by the count tables.</summary>
    public long Bytes => _counts.Sum(c => c?.Bytes ?? 0);

    /// <summary>Distinct values counted for a vocabulary field (−1 for other fields).</summary>
    public long DistinctValues(string field)
    {
        for (int i = 0; i < Plans.Length; i++)
            if (Plans[i].Name == field) return _counts[i]?.Count ?? -1;
        throw new KeyNotFoundException($"PreprocessorCounts: no input field '{field}'.");
    }

    /// <summary>Counts the values of one row.</summary>
    public void Add(RawRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        var plans = Plans;
        Span<ulong> hashes = plans.Length <= 256 ? stackalloc ulong[plans.Length] : new ulong[plans.Length];
        Span<byte> present = plans.Length <= 256 ? stackalloc byte[plans.Length] : new byte[plans.Length];
        Prepare(row, hashes, present);
        Finish(row, hashes, present);
    }

    /// <summary>Number of input fields (the length of the <see cref="Prepare"/> buffers).</summary>
    internal int InputCount => Plans.Length;

    /// <summary>
    /// First phase of <see cref="Add(RawRow)"/>: value hashes of single-valued vocabulary fields, starting each count
    /// slot's load (see <see cref="Preprocessor.Prepare"/> for why there are two phases).
    /// </summary>
    internal void Prepare(RawRow row, Span<ulong> hashes, Span<byte> present)
    {
        var plans = Plans;
        for (int i = 0; i < plans.Length; i++)
        {
            present[i] = 0;
            var table = _counts[i];
            if (table is null) continue;
            var plan = plans[i];
            int f = plan.SchemaIndex;
            if (plan.Mode == EncodeMode.Bucketized)
            {
                double v = Preprocessor.NumberOf(row, f);
                if (double.IsNaN(v)) continue;
                hashes[i] = NumericBuckets.TokenHash(v, plan.Bucketing);
            }
            else if (plan.Mode == EncodeMode.Categorical && row.Has(f)) hashes[i] = StableHash.OfValue(row.Value(f));
            else continue;
            present[i] = 1;
            table.Prefetch(hashes[i]);
        }
    }

    /// <summary>Second phase of <see cref="Add(RawRow)"/>: the increments, after <see cref="Prepare"/>.</summary>
    internal void Finish(RawRow row, ReadOnlySpan<ulong> hashes, ReadOnlySpan<byte> present)
    {
        Rows++;
        if (row.Label == 1) Positives++;
        var plans = Plans;
        for (int i = 0; i < plans.Length; i++)
        {
            var table = _counts[i];
            if (table is null) continue;
            if (present[i] != 0) { table.GetOrAdd(hashes[i], out _)++; continue; }
            var plan = plans[i];
            if (plan.Mode != EncodeMode.Multi || !row.Has(plan.SchemaIndex)) continue;
            var rest = row.Value(plan.SchemaIndex);
            var sep = plan.Separator;
            while (true)
            {
                int k = rest.IndexOf(sep);
                var part = k < 0 ? rest : rest[..k];
                if (!part.IsEmpty) table.GetOrAdd(StableHash.OfValue(part), out _)++;
                if (k < 0) break;
                rest = rest[(k + sep.Length)..];
            }
        }
    }

    [ThreadStatic] private static RawRow? t_bridge;

    /// <summary>Counts the values of one record.</summary>
    public void Add(RawRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (!ReferenceEquals(record.Schema, Schema) && record.Schema.Count != Schema.Count)
            throw new ArgumentException($"Preprocessor: record has {record.Schema.Count} fields, the schema {Schema.Count}.");
        var bridge = t_bridge;
        if (bridge is null || !ReferenceEquals(bridge.Schema, Schema)) t_bridge = bridge = new RawRow(Schema);
        bridge.From(record);
        Add(bridge);
    }

    /// <summary>Adds <paramref name="other"/>'s counts (same schema and options) to these.</summary>
    public void Merge(PreprocessorCounts other)
    {
        ArgumentNullException.ThrowIfNull(other);
        CheckCompatible(other.Schema, other.Options);
        Rows += other.Rows;
        Positives += other.Positives;
        for (int i = 0; i < _counts.Length; i++)
        {
            var mine = _counts[i];
            if (mine is null) continue;
            foreach (var (key, count) in other._counts[i]!.Entries()) mine.GetOrAdd(key, out _) += count;
        }
    }

    private void CheckCompatible(Schema schema, PreprocessorOptions options)
    {
        if (!ReferenceEquals(schema, Schema) && schema.ToJson() != Schema.ToJson())
            throw new ArgumentException("PreprocessorCounts: counts of another schema cannot be merged.");
        if (options != Options) throw new ArgumentException($"PreprocessorCounts: counts made with other options ({options}) cannot be merged with {Options}.");
    }

    /// <summary>
    /// Field <paramref name="plan"/>'s vocabulary: values counted ≥ min-count times, most frequent first, ties by hash,
    /// the first max-vocab of them.
    /// </summary>
    internal ulong[] Vocabulary(int plan)
    {
        var table = _counts[plan]!;
        int minCount = Plans[plan].MinCount, maxVocab = Plans[plan].MaxVocab;
        var keys = new ulong[table.Count];
        var counts = new long[table.Count];
        table.CopyTo(keys, counts);
        var kept = new (long Count, ulong Hash)[keys.Length];
        int n = 0;
        for (int i = 0; i < keys.Length; i++)
            if (counts[i] >= minCount) kept[n++] = (counts[i], keys[i]);
        var span = kept.AsSpan(0, n);
        span.Sort(static (a, b) => a.Count != b.Count ? b.Count.CompareTo(a.Count) : a.Hash.CompareTo(b.Hash));
        int size = maxVocab > 0 ? Math.Min(n, maxVocab) : n;
        var hashes = new ulong[size];
        for (int i = 0; i < size; i++) hashes[i] = span[i].Hash;
        return hashes;
    }

    /// <summary>
    /// Writes the counts (little-endian: magic "KDPC", version 1, rows, positives, then per plan field its entry count and
    /// (hash, count) pairs sorted by hash, so equal counts write equal bytes).
    /// </summary>
    public void WriteTo(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var w = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        w.Write(Magic);
        w.Write(1);
        w.Write(Rows);
        w.Write(Positives);
        w.Write(_counts.Length);
        foreach (var table in _counts)
        {
            if (table is null) { w.Write(-1L); continue; }
            var keys = new ulong[table.Count];
            var counts = new long[table.Count];
            table.CopyTo(keys, counts);
            Array.Sort(keys, counts);
            w.Write((long)keys.Length);
            for (int i = 0; i < keys.Length; i++) { w.Write(keys[i]); w.Write(counts[i]); }
        }
    }

    /// <summary>Reads counts written by <see cref="WriteTo"/> for the same schema and options.</summary>
    public static PreprocessorCounts ReadFrom(Stream stream, Schema schema, PreprocessorOptions? options = null)
    {
        var counts = new PreprocessorCounts(schema, options);
        using var r = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        try
        {
            if (r.ReadUInt32() != Magic || r.ReadInt32() != 1) throw new InvalidDataException("not KdEngine preprocessor counts (version 1)");
            counts.Rows = r.ReadInt64();
            counts.Positives = r.ReadInt64();
            int fields = r.ReadInt32();
            if (fields != counts._counts.Length) throw new InvalidDataException($"counts of {fields} fields, the schema has {counts._counts.Length} input fields");
            for (int i = 0; i < fields; i++)
            {
                long n = r.ReadInt64();
                var table = counts._counts[i];
                if ((n < 0) != (table is null)) throw new InvalidDataException($"field '{counts.Plans[i].Name}' is counted in one and not the other (other options?)");
                for (long j = 0; j < n; j++) table!.GetOrAdd(r.ReadUInt64(), out _) = r.ReadInt64();
            }
        }
        catch (EndOfStreamException e) { throw new InvalidDataException("preprocessor counts are cut short", e); }
        return counts;
    }
}
