using System.Globalization;
using System.Text;
using System.Text.Json;

namespace KdEngine.Data;

/// <summary>Defaults for fitting a <see cref="Preprocessor"/>; a field's own <see cref="FieldSpec.MinCount"/>/<see cref="FieldSpec.HashBuckets"/> win.</summary>
public sealed record PreprocessorOptions
{
    /// <summary>A vocabulary token seen fewer times than this in the training data maps to the OOV id.</summary>
    public int MinCount { get; init; } = 1;

    /// <summary>0: vocabulary per field; N &gt; 0: categorical and multi-valued fields hash into N buckets (no fitting needed).</summary>
    public int HashBuckets { get; init; }

    /// <summary>
    /// Largest vocabulary per field, 0 = unlimited: the <c>MaxVocab</c> most frequent values (at least min-count times)
    /// get ids, the rest map to the OOV id. A field's own <see cref="FieldSpec.MaxVocab"/> wins.
    /// </summary>
    public int MaxVocab { get; init; }

    internal void Validate()
    {
        if (MinCount < 1) throw new ArgumentOutOfRangeException(nameof(MinCount), $"PreprocessorOptions.MinCount must be ≥ 1, got {MinCount}.");
        if (HashBuckets < 0) throw new ArgumentOutOfRangeException(nameof(HashBuckets), $"PreprocessorOptions.HashBuckets must be ≥ 0, got {HashBuckets}.");
        if (MaxVocab < 0) throw new ArgumentOutOfRangeException(nameof(MaxVocab), $"PreprocessorOptions.MaxVocab must be ≥ 0, got {MaxVocab}.");
    }
}

/// <summary>One encoded row, reused between calls to <see cref="Preprocessor.Encode(RawRow, EncodedRow)"/> (no allocation in steady state).</summary>
public sealed class EncodedRow
{
    private readonly int[][] _multi;
    private readonly int[] _multiCount;

    /// <summary>An empty row for <paramref name="space"/>, with room for its fields (multi-valued buffers grow on demand).</summary>
    public EncodedRow(FeatureSpace space)
    {
        ArgumentNullException.ThrowIfNull(space);
        Space = space;
        Ids = new int[space.FieldCount];
        DenseValues = new float[space.FieldCount];
        _multi = new int[space.MultiFields.Count][];
        for (int k = 0; k < _multi.Length; k++) _multi[k] = new int[8];
        _multiCount = new int[_multi.Length];
    }

    /// <summary>The fields this row is encoded for.</summary>
    public FeatureSpace Space { get; }

    /// <summary>0 or 1.</summary>
    public float Label { get; set; }

    /// <summary>User id for gAUC (−1 when the schema has none or the value is missing).</summary>
    public int UserId { get; set; } = -1;

    /// <summary>[F] local ids of the single-valued fields.</summary>
    public int[] Ids { get; }

    /// <summary>[F] embedding scales (1 where a field has no dense value or the value is missing).</summary>
    public float[] DenseValues { get; }

    /// <summary>Ids of multi-valued field <paramref name="k"/> (at least one: an empty list encodes as the missing id).</summary>
    public ReadOnlySpan<int> MultiIds(int k) => _multi[k].AsSpan(0, _multiCount[k]);

    internal void ClearMulti() => Array.Clear(_multiCount);

    internal void AddMulti(int k, int id)
    {
        if (_multiCount[k] == _multi[k].Length) Array.Resize(ref _multi[k], _multi[k].Length * 2);
        _multi[k][_multiCount[k]++] = id;
    }
}

/// <summary>
/// Maps raw rows to ids, fitted on the training data only (<see cref="Fit(PreprocessorCounts)"/>). Per field:
/// numeric → bucket token (<see cref="NumericBuckets.Token"/>) → vocabulary; categorical/multi → vocabulary (min-count,
/// OOV, max-vocab) or stable hash buckets; dense numeric → one id scaled by the value. A value is known by the 64-bit
/// hash of its UTF-8 bytes (<see cref="StableHash.OfValue(ReadOnlySpan{byte})"/>): vocabularies hold hashes, never
/// strings. At serving time an unseen category (or one rarer than min-count, or past max-vocab, in training) gets the
/// OOV id 1, a missing value the missing id 0 (hashed fields hash every value, so they have no OOV).
/// <see cref="ToJson"/>/<see cref="FromJson"/> save it with a model so serving maps rows exactly as training did
/// (<see cref="IdOf(string, string)"/> maps one value). User ids: an integer value is used as is, other text is
/// stably hashed to a non-negative int.
/// </summary>
public sealed class Preprocessor
{
    private const string FormatTag = "kdengine.preprocessor";
    private const int FormatVersion = 2;
    private readonly Encoder[] _encoders;
    private readonly Dictionary<string, Encoder> _byName;
    [ThreadStatic] private static RawRow? t_bridge;
    private readonly Encoder?[] _bySchemaIndex;

    private Preprocessor(Schema schema, Encoder[] encoders)
    {
        Schema = schema;
        _encoders = encoders;
        _byName = encoders.ToDictionary(e => e.Plan.Name, StringComparer.Ordinal);
        _bySchemaIndex = new Encoder?[schema.Count];
        foreach (var e in encoders) _bySchemaIndex[e.Plan.SchemaIndex] = e;
        int single = 0, multi = 0;
        var fields = new List<FeatureField>();
        foreach (var e in encoders)
        {
            var spec = schema[e.Plan.SchemaIndex];
            int slot = spec.Kind == FieldKind.Multi ? multi++ : single++;
            e.Slot = slot;
            fields.Add(new FeatureField(spec.Name, spec.Kind, e.Plan.Encoding, e.Cardinality, spec.Privileged, slot)
            {
                Pooling = spec.Pooling,
                HasDenseValue = e.Plan.Encoding == FieldEncoding.Dense || spec.ScaleByValue,
            });
        }
        FeatureSpace = new FeatureSpace(fields, schema.UserIdIndex >= 0);
    }

    /// <summary>The schema the preprocessor was fitted for (the fields it reads from raw records).</summary>
    public Schema Schema { get; }

    /// <summary>The encoded fields and their cardinalities: what models over this preprocessing are built from.</summary>
    public FeatureSpace FeatureSpace { get; }

    /// <summary>The fitted vocabulary of a vocabulary field (entry i has id i + 2), or null for hashed/dense fields and unknown names.</summary>
    public FieldVocabulary? VocabularyOf(string field) => _byName.TryGetValue(field, out var e) ? e.Vocabulary : null;

    /// <summary>
    /// Fits vocabularies on <paramref name="train"/> (one streaming pass; skipped when every field is hashed or dense).
    /// Record readers are read through their span rows (<see cref="RecordReader.Rows"/>).
    /// </summary>
    public static Preprocessor Fit(Schema schema, IEnumerable<RawRecord> train, PreprocessorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(schema);
        ArgumentNullException.ThrowIfNull(train);
        var counts = new PreprocessorCounts(schema, options);
        if (counts.CountsAnything)
        {
            if (train is RecordReader reader) foreach (var row in reader.Rows()) counts.Add(row);
            else foreach (var r in train) counts.Add(r);
        }
        return Fit(counts);
    }

    /// <summary>Fits vocabularies on span rows (e.g. <see cref="RecordReader.Rows"/>).</summary>
    public static Preprocessor Fit(Schema schema, IEnumerable<RawRow> train, PreprocessorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        var counts = new PreprocessorCounts(schema, options);
        if (counts.CountsAnything) foreach (var row in train) counts.Add(row);
        return Fit(counts);
    }

    /// <summary>
    /// Finalizes vocabularies from value counts (possibly merged from several readers, threads or processes): per
    /// field, the values counted at least min-count times, most frequent first, ties by hash value, at most max-vocab.
    /// </summary>
    public static Preprocessor Fit(PreprocessorCounts counts)
    {
        ArgumentNullException.ThrowIfNull(counts);
        var encoders = new Encoder[counts.Plans.Length];
        for (int i = 0; i < encoders.Length; i++)
        {
            var plan = counts.Plans[i];
            encoders[i] = new Encoder(plan, plan.Encoding == FieldEncoding.Vocabulary
                ? new FieldVocabulary(plan.Name, plan.MinCount, plan.MaxVocab, counts.Vocabulary(i))
                : null);
        }
        return new Preprocessor(counts.Schema, encoders);
    }

    /// <summary>Number of input fields (the length of the <see cref="Prepare"/> buffers).</summary>
    internal int InputCount => _encoders.Length;

    /// <summary>Encodes <paramref name="row"/> into <paramref name="encoded"/> (reused; allocates nothing for single-valued fields).</summary>
    public void Encode(RawRow row, EncodedRow encoded)
    {
        ArgumentNullException.ThrowIfNull(row);
        ArgumentNullException.ThrowIfNull(encoded);
        if (!ReferenceEquals(encoded.Space, FeatureSpace)) throw new ArgumentException("Encode: the EncodedRow was made for another FeatureSpace.", nameof(encoded));
        if (!ReferenceEquals(row.Schema, Schema) && row.Schema.Count != Schema.Count)
            throw new ArgumentException($"Preprocessor: row has {row.Schema.Count} fields, the schema {Schema.Count}.");
        var encoders = _encoders;
        Span<ulong> hashes = encoders.Length <= 256 ? stackalloc ulong[encoders.Length] : new ulong[encoders.Length];
        Span<byte> present = encoders.Length <= 256 ? stackalloc byte[encoders.Length] : new byte[encoders.Length];
        Prepare(row, hashes, present);
        Finish(row, hashes, present, encoded);
    }

    /// <summary>
    /// First phase of <see cref="Encode(RawRow, EncodedRow)"/>: every single-valued field's value hash (into
    /// <paramref name="hashes"/>; <paramref name="present"/> 0 = missing, 1 = hashed, 2 = handled in the second phase),
    /// starting the load of its vocabulary slot. A caller that prepares the next row before finishing this one (the
    /// parallel pipeline) overlaps a row's ~40 table reads, most of them cache misses on large vocabularies, with work.
    /// </summary>
    internal void Prepare(RawRow row, Span<ulong> hashes, Span<byte> present)
    {
        var encoders = _encoders;
        for (int i = 0; i < encoders.Length; i++)
        {
            var e = encoders[i];
            var plan = e.Plan;
            int f = plan.SchemaIndex;
            switch (plan.Mode)
            {
                case EncodeMode.Categorical:
                    if (!row.Has(f)) { present[i] = 0; break; }
                    hashes[i] = StableHash.OfValue(row.Value(f));
                    present[i] = 1;
                    e.Vocabulary?.Prefetch(hashes[i]);
                    break;
                case EncodeMode.Bucketized:
                {
                    double v = NumberOf(row, f);
                    if (double.IsNaN(v)) { present[i] = 0; break; }
                    hashes[i] = NumericBuckets.TokenHash(v, plan.Bucketing);
                    present[i] = 1;
                    e.Vocabulary?.Prefetch(hashes[i]);
                    break;
                }
                default:
                    present[i] = 2;
                    break;
            }
        }
    }

    /// <summary>Second phase of <see cref="Encode(RawRow, EncodedRow)"/>: the lookups, after <see cref="Prepare"/>.</summary>
    internal void Finish(RawRow row, ReadOnlySpan<ulong> hashes, ReadOnlySpan<byte> present, EncodedRow encoded)
    {
        encoded.Label = row.Label;
        int uid = Schema.UserIdIndex;
        encoded.UserId = uid >= 0 ? (row.Has(uid) ? UserIdOf(row.Value(uid)) : -1) : -1;
        encoded.ClearMulti();
        var ids = encoded.Ids;
        var dense = encoded.DenseValues;
        var encoders = _encoders;
        for (int i = 0; i < encoders.Length; i++)
        {
            var e = encoders[i];
            var plan = e.Plan;
            int f = plan.SchemaIndex;
            switch (plan.Mode)
            {
                case EncodeMode.Categorical:
                {
                    if (present[i] == 0) { ids[e.Slot] = 0; dense[e.Slot] = 1f; break; }
                    ids[e.Slot] = e.IdOfHash(hashes[i]);
                    float s = plan.ScaleByValue && row.Scales is { } sc ? sc[f] : float.NaN;
                    dense[e.Slot] = float.IsNaN(s) ? 1f : s;
                    break;
                }
                case EncodeMode.Bucketized:
                    ids[e.Slot] = present[i] == 0 ? 0 : e.IdOfHash(hashes[i]);
                    dense[e.Slot] = 1f;
                    break;
                case EncodeMode.Dense:
                {
                    double v = NumberOf(row, f);
                    ids[e.Slot] = double.IsNaN(v) ? 0 : 1;
                    dense[e.Slot] = double.IsNaN(v) ? 1f : (float)v;
                    break;
                }
                default: // multi-valued
                {
                    int before = encoded.MultiIds(e.Slot).Length;
                    if (row.Has(f))
                    {
                        var rest = row.Value(f);
                        var sep = plan.Separator;
                        while (true)
                        {
                            int k = rest.IndexOf(sep);
                            var part = k < 0 ? rest : rest[..k];
                            if (!part.IsEmpty) encoded.AddMulti(e.Slot, e.IdOfHash(StableHash.OfValue(part)));
                            if (k < 0) break;
                            rest = rest[(k + sep.Length)..];
                        }
                    }
                    if (encoded.MultiIds(e.Slot).Length == before) encoded.AddMulti(e.Slot, 0); // empty list = missing
                    break;
                }
            }
        }
    }

    /// <summary>Encodes <paramref name="record"/> into <paramref name="row"/> (through a per-thread span row).</summary>
    public void Encode(RawRecord record, EncodedRow row)
    {
        ArgumentNullException.ThrowIfNull(record);
        ArgumentNullException.ThrowIfNull(row);
        if (!ReferenceEquals(record.Schema, Schema) && record.Schema.Count != Schema.Count)
            throw new ArgumentException($"Preprocessor: record has {record.Schema.Count} fields, the schema {Schema.Count}.");
        var bridge = t_bridge;
        if (bridge is null || !ReferenceEquals(bridge.Schema, Schema)) t_bridge = bridge = new RawRow(Schema);
        bridge.From(record);
        Encode(bridge, row);
    }

    /// <summary>
    /// The column of <see cref="EncodedRow.Ids"/> that single-valued input field <paramref name="field"/> (a schema index)
    /// encodes into, or −1 for a multi-valued field, the label or the user id.
    /// </summary>
    public int ColumnOf(int field) =>
        (uint)field < (uint)_bySchemaIndex.Length && _bySchemaIndex[field] is { } e && Schema[field].Kind != FieldKind.Multi ? e.Slot : -1;

    /// <summary>
    /// The id one raw text value of single-valued input field <paramref name="field"/> (a schema index) encodes to: what
    /// <see cref="Encode(RawRow, EncodedRow)"/> writes into its column for a record holding that text — a category's vocabulary id (OOV when
    /// unseen) or hash bucket, a numeric field's bucket (the text parsed with the invariant culture). Empty text is a
    /// missing value, as in the readers. Allocates nothing: a service can encode values straight from its request bytes.
    /// </summary>
    /// <exception cref="ArgumentException">The field is not a single-valued input field.</exception>
    /// <exception cref="DataFormatException">Non-numeric text in a numeric field.</exception>
    public int EncodeValue(int field, ReadOnlySpan<char> text)
    {
        var e = SingleEncoder(field);
        if (text.IsEmpty) return 0;
        Span<byte> stack = stackalloc byte[256];
        int max = Encoding.UTF8.GetMaxByteCount(text.Length);
        Span<byte> bytes = max <= stack.Length ? stack : new byte[Encoding.UTF8.GetByteCount(text)];
        int n = Encoding.UTF8.GetBytes(text, bytes);
        return IdOf(e, bytes[..n]);
    }

    /// <summary>
    /// The id a number encodes to in numeric input field <paramref name="field"/>, as <see cref="Encode(RawRow, EncodedRow)"/> encodes it
    /// (NaN = missing). Allocates nothing.
    /// </summary>
    public int EncodeValue(int field, double value)
    {
        var e = SingleEncoder(field);
        if (Schema[field].Kind != FieldKind.Numeric)
            throw new ArgumentException($"Preprocessor.EncodeValue: field '{Schema[field].Name}' is {Schema.KindName(Schema[field].Kind)}, not numeric; give its text.", nameof(field));
        return IdOfNumber(e, value);
    }

    private Encoder SingleEncoder(int field)
    {
        if ((uint)field >= (uint)_bySchemaIndex.Length || _bySchemaIndex[field] is not { } e || Schema[field].Kind == FieldKind.Multi)
            throw new ArgumentException($"Preprocessor.EncodeValue: schema field {field} is not a single-valued input field (categorical or numeric).", nameof(field));
        return e;
    }

    /// <summary>Encodes every record into an in-memory dataset (for samples and tests; streams the input once).</summary>
    public EncodedDataset EncodeAll(IEnumerable<RawRecord> records)
    {
        ArgumentNullException.ThrowIfNull(records);
        if (records is RecordReader reader) return EncodeAll(reader.Rows());
        var builder = new EncodedDatasetBuilder(FeatureSpace);
        var row = new EncodedRow(FeatureSpace);
        foreach (var r in records)
        {
            Encode(r, row);
            builder.Add(row);
        }
        return builder.Build();
    }

    /// <summary>Encodes every span row into an in-memory dataset.</summary>
    public EncodedDataset EncodeAll(IEnumerable<RawRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var builder = new EncodedDatasetBuilder(FeatureSpace);
        var encoded = new EncodedRow(FeatureSpace);
        foreach (var r in rows)
        {
            Encode(r, encoded);
            builder.Add(encoded);
        }
        return builder.Build();
    }

    /// <summary>
    /// The id of one raw value of input field <paramref name="field"/>, exactly as <see cref="Encode(RawRow, EncodedRow)"/>
    /// maps it: a categorical value (or one value of a multi-valued field), a numeric field's text (parsed with the
    /// invariant culture, then bucketized; dense fields give 1). Null or empty = missing (0); an unseen value → OOV (1).
    /// </summary>
    public int IdOf(string field, string? value)
    {
        if (value is null) return 0;
        Span<byte> stack = stackalloc byte[256];
        int max = Encoding.UTF8.GetMaxByteCount(value.Length);
        Span<byte> bytes = max <= stack.Length ? stack : new byte[max];
        int n = Encoding.UTF8.GetBytes(value, bytes);
        return IdOf(field, bytes[..n]);
    }

    /// <summary><see cref="IdOf(string, string)"/> of a value given as UTF-8 bytes.</summary>
    public int IdOf(string field, ReadOnlySpan<byte> utf8) => IdOf(EncoderOf(field), utf8);

    private static int IdOf(Encoder e, ReadOnlySpan<byte> utf8)
    {
        if (utf8.IsEmpty) return 0;
        switch (e.Plan.Mode)
        {
            case EncodeMode.Bucketized:
            case EncodeMode.Dense:
                if (!NumberText.TryParse(utf8, out double v))
                    throw new DataFormatException($"non-numeric value '{Encoding.UTF8.GetString(utf8)}' in a numeric field", key: e.Plan.Name);
                return IdOfNumber(e, v);
            default:
                return e.IdOfHash(StableHash.OfValue(utf8));
        }
    }

    /// <summary>The id of numeric value <paramref name="value"/> of field <paramref name="field"/> (NaN = missing = 0).</summary>
    public int IdOfNumber(string field, double value) => IdOfNumber(EncoderOf(field), value);

    private static int IdOfNumber(Encoder e, double value)
    {
        if (double.IsNaN(value)) return 0;
        return e.Plan.Mode switch
        {
            EncodeMode.Dense => 1,
            EncodeMode.Bucketized => e.IdOfHash(NumericBuckets.TokenHash(value, e.Plan.Bucketing)),
            _ => throw new ArgumentException($"Preprocessor.IdOfNumber: field '{e.Plan.Name}' is {Schema.KindName(e.Plan.Kind)}, not numeric; use IdOf(field, text)."),
        };
    }

    private Encoder EncoderOf(string field) => _byName.TryGetValue(field, out var e) ? e
        : throw new KeyNotFoundException($"Preprocessor: no input field '{field}' (fields: {string.Join(", ", _byName.Keys)}).");

    internal static double NumberOf(RawRow r, int f)
    {
        double v = r.Numbers[f];
        if (!double.IsNaN(v) || !r.Has(f)) return v;
        if (!NumberText.TryParse(r.Value(f), out v))
            throw new DataFormatException($"non-numeric value '{r.ValueString(f)}' in a numeric field", r.File, r.Line == 0 ? null : r.Line, key: r.Schema[f].Name);
        return v;
    }

    /// <summary>An integer user id as is; other text stably hashed to [0, 2³¹); missing → −1.</summary>
    public static int UserIdOf(string? text)
    {
        if (text is null) return -1;
        if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int id) && id >= 0) return id;
        return (int)(StableHash.Mix(StableHash.Fnv1a64(text)) & 0x7FFFFFFF);
    }

    /// <summary><see cref="UserIdOf(string)"/> of UTF-8 text.</summary>
    public static int UserIdOf(ReadOnlySpan<byte> utf8)
    {
        if (int.TryParse(utf8, NumberStyles.Integer, CultureInfo.InvariantCulture, out int id) && id >= 0) return id;
        return (int)(StableHash.OfValue(utf8) & 0x7FFFFFFF);
    }

    /// <summary>
    /// JSON: <c>{"format":"kdengine.preprocessor","version":2,"schema":{…},"fields":[{"name":"C1","encoding":
    /// "vocabulary","minCount":2,"size":V,"hashes":"…"},{"name":"C2","encoding":"hash","buckets":N},
    /// {"name":"I1","encoding":"dense"}]}</c>. <c>hashes</c> is base64 of the V value hashes (uint64 little-endian) in id
    /// order: entry i has id i + 2; <c>maxVocab</c> is written when set. Version 1 (string vocabularies) still loads.
    /// </summary>
    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = false }))
        {
            w.WriteStartObject();
            w.WriteString("format", FormatTag);
            w.WriteNumber("version", FormatVersion);
            w.WritePropertyName("schema");
            Schema.Write(w);
            w.WriteStartArray("fields");
            foreach (var e in _encoders)
            {
                w.WriteStartObject();
                w.WriteString("name", e.Plan.Name);
                switch (e.Plan.Encoding)
                {
                    case FieldEncoding.Vocabulary:
                        var vocab = e.Vocabulary!;
                        w.WriteString("encoding", "vocabulary");
                        w.WriteNumber("minCount", vocab.MinCount);
                        if (vocab.MaxVocab > 0) w.WriteNumber("maxVocab", vocab.MaxVocab);
                        w.WriteNumber("size", vocab.Count);
                        w.WriteBase64String("hashes", System.Runtime.InteropServices.MemoryMarshal.AsBytes(LittleEndian(vocab.Hashes)));
                        break;
                    case FieldEncoding.Hash:
                        w.WriteString("encoding", "hash");
                        w.WriteNumber("buckets", e.Plan.Buckets);
                        break;
                    default:
                        w.WriteString("encoding", "dense");
                        break;
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static ReadOnlySpan<ulong> LittleEndian(ReadOnlySpan<ulong> values)
    {
        if (BitConverter.IsLittleEndian) return values;
        var copy = values.ToArray();
        for (int i = 0; i < copy.Length; i++) copy[i] = System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(copy[i]);
        return copy;
    }

    /// <summary>
    /// Reads <see cref="ToJson"/> output strictly (unknown keys, wrong types, fields not matching the schema are errors).
    /// Version 1 (each vocabulary a list of strings, from before vocabularies were hashed) loads too and encodes exactly as before:
    /// its strings are hashed on load, keeping their ids.
    /// </summary>
    public static Preprocessor FromJson(string json, string source = "preprocessor.json")
    {
        ArgumentNullException.ThrowIfNull(json);
        var sj = new StrictJson(source);
        using var doc = sj.Parse(json);
        var root = doc.RootElement;
        sj.Object(root, "", "format", "version", "schema", "fields");
        var tag = sj.String(sj.Required(root, "", "format"), "format");
        if (tag != FormatTag) throw sj.Error("format", $"expected '{FormatTag}', found '{tag}'");
        int version = sj.Int(sj.Required(root, "", "version"), "version", 1, FormatVersion);
        var schema = Schema.Parse(sj, sj.Required(root, "", "schema"), "schema");
        var arr = sj.Array(sj.Required(root, "", "fields"), "fields");
        if (arr.GetArrayLength() != schema.InputIndices.Count)
            throw sj.Error("fields", $"expected {schema.InputIndices.Count} entries (one per input field of the schema), found {arr.GetArrayLength()}");
        var plans = FieldPlan.For(schema, new PreprocessorOptions());
        var encoders = new Encoder[schema.InputIndices.Count];
        int i = 0;
        foreach (var e in arr.EnumerateArray())
        {
            string at = $"fields[{i}]";
            int f = schema.InputIndices[i];
            var spec = schema[f];
            sj.Object(e, at, "name", "encoding", "minCount", "maxVocab", "vocabulary", "size", "hashes", "buckets");
            var name = sj.String(sj.Required(e, at, "name"), at + ".name");
            if (name != spec.Name) throw sj.Error(at + ".name", $"expected '{spec.Name}' (input field {i} of the schema), found '{name}'");
            var enc = sj.Enum(sj.Required(e, at, "encoding"), at + ".encoding",
                ("vocabulary", FieldEncoding.Vocabulary), ("hash", FieldEncoding.Hash), ("dense", FieldEncoding.Dense));
            bool dense = spec.Kind == FieldKind.Numeric && spec.Encoding == NumericEncoding.Dense;
            if (dense != (enc == FieldEncoding.Dense) || (enc == FieldEncoding.Hash && spec.Kind == FieldKind.Numeric))
                throw sj.Error(at + ".encoding", $"encoding does not fit the {Schema.KindName(spec.Kind)} field '{spec.Name}'");
            string[] allowed = enc switch
            {
                FieldEncoding.Vocabulary => version == 1 ? ["name", "encoding", "minCount", "vocabulary"] : ["name", "encoding", "minCount", "maxVocab", "size", "hashes"],
                FieldEncoding.Hash => ["name", "encoding", "buckets"],
                _ => ["name", "encoding"],
            };
            sj.Object(e, at, allowed);
            var plan = plans[i];
            if (enc == FieldEncoding.Vocabulary)
            {
                int minCount = sj.Int(sj.Required(e, at, "minCount"), at + ".minCount", 1);
                int maxVocab = version >= 2 && sj.TryGet(e, "maxVocab", out var mv) ? sj.Int(mv, at + ".maxVocab", 1) : 0;
                ulong[] hashes;
                if (version == 1)
                {
                    var vocabEl = sj.Array(sj.Required(e, at, "vocabulary"), at + ".vocabulary");
                    hashes = new ulong[vocabEl.GetArrayLength()];
                    int j = 0;
                    foreach (var t in vocabEl.EnumerateArray()) hashes[j] = StableHash.OfValue(sj.String(t, $"{at}.vocabulary[{j++}]").AsSpan());
                }
                else
                {
                    int size = sj.Int(sj.Required(e, at, "size"), at + ".size", 0);
                    var h = sj.Required(e, at, "hashes");
                    if (h.ValueKind != JsonValueKind.String || !h.TryGetBytesFromBase64(out var bytes))
                        throw sj.Error(at + ".hashes", "expected a base64 string");
                    if (bytes.Length != (long)size * 8)
                        throw sj.Error(at + ".hashes", $"holds {bytes.Length} bytes, expected {size} hashes of 8 bytes");
                    hashes = new ulong[size];
                    for (int j = 0; j < size; j++) hashes[j] = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(j * 8));
                }
                plan = plan with { Encoding = FieldEncoding.Vocabulary, MinCount = minCount, MaxVocab = maxVocab, Mode = plan.Kind == FieldKind.Numeric ? EncodeMode.Bucketized : plan.Mode };
                FieldVocabulary vocab;
                try { vocab = new FieldVocabulary(name, minCount, maxVocab, hashes); }
                catch (ArgumentException ex) { throw sj.Error(at + (version == 1 ? ".vocabulary" : ".hashes"), ex.Message); }
                encoders[i] = new Encoder(plan, vocab);
            }
            else if (enc == FieldEncoding.Hash)
                encoders[i] = new Encoder(plan with { Encoding = FieldEncoding.Hash, Buckets = sj.Int(sj.Required(e, at, "buckets"), at + ".buckets", 1) }, null);
            else
                encoders[i] = new Encoder(plan with { Encoding = FieldEncoding.Dense }, null);
            i++;
        }
        return new Preprocessor(schema, encoders);
    }

    private sealed class Encoder(FieldPlan plan, FieldVocabulary? vocabulary)
    {
        public FieldPlan Plan { get; } = plan;
        public FieldVocabulary? Vocabulary { get; } = vocabulary;
        private readonly ulong _buckets = (ulong)Math.Max(plan.Buckets, 1);
        private readonly bool _hashed = plan.Encoding == FieldEncoding.Hash;
        public int Slot { get; set; }

        public int Cardinality => Plan.Encoding switch
        {
            FieldEncoding.Vocabulary => 2 + Vocabulary!.Count,
            FieldEncoding.Hash => 1 + Plan.Buckets,
            _ => 2,
        };

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public int IdOfHash(ulong hash) => _hashed ? 1 + (int)(hash % _buckets) : Vocabulary!.IdOfHash(hash);
    }
}

/// <summary>How an input field's values become ids (fixed by the schema and options before fitting).</summary>
internal enum EncodeMode { Categorical, Bucketized, Dense, Multi }

/// <summary>What preprocessing does with one input field: encoding, min-count, max-vocab, buckets.</summary>
internal sealed record FieldPlan(string Name, int SchemaIndex, FieldKind Kind, FieldEncoding Encoding, EncodeMode Mode)
{
    public int Buckets { get; init; }
    public int MinCount { get; init; }
    public int MaxVocab { get; init; }
    public Bucketing Bucketing { get; init; }
    public bool ScaleByValue { get; init; }
    /// <summary>Multi-valued fields: the separator's UTF-8 bytes.</summary>
    public byte[] Separator { get; init; } = [];

    public static FieldPlan[] For(Schema schema, PreprocessorOptions options)
    {
        var plans = new FieldPlan[schema.InputIndices.Count];
        for (int i = 0; i < plans.Length; i++)
        {
            int f = schema.InputIndices[i];
            var spec = schema[f];
            var mode = spec.Kind switch
            {
                FieldKind.Multi => EncodeMode.Multi,
                FieldKind.Numeric => spec.Encoding == NumericEncoding.Dense ? EncodeMode.Dense : EncodeMode.Bucketized,
                _ => EncodeMode.Categorical,
            };
            FieldEncoding encoding =
                mode == EncodeMode.Dense ? FieldEncoding.Dense
                : spec.Kind != FieldKind.Numeric && (spec.HashBuckets ?? options.HashBuckets) > 0 ? FieldEncoding.Hash
                : FieldEncoding.Vocabulary;
            plans[i] = new FieldPlan(spec.Name, f, spec.Kind, encoding, mode)
            {
                Buckets = encoding == FieldEncoding.Hash ? spec.HashBuckets ?? options.HashBuckets : 0,
                MinCount = encoding == FieldEncoding.Vocabulary ? spec.MinCount ?? options.MinCount : 0,
                MaxVocab = encoding == FieldEncoding.Vocabulary ? spec.MaxVocab ?? options.MaxVocab : 0,
                Bucketing = spec.Bucketing,
                ScaleByValue = spec.ScaleByValue,
                Separator = System.Text.Encoding.UTF8.GetBytes(spec.Separator.ToString()),
            };
        }
        return plans;
    }
}

/// <summary>
/// The fitted vocabulary of one field: value hashes in id order (entry i has id i + 2; 0 is missing, 1 is OOV). A value
/// is looked up by the 64-bit hash of its UTF-8 bytes, so two values with the same hash would share an id; for V values
/// the chance that any two of them collide is about V²/2⁶⁵ (10⁷ values: 3·10⁻⁶).
/// </summary>
public sealed class FieldVocabulary
{
    private readonly ulong[] _hashes;
    private readonly HashMap64<int> _ids;

    internal FieldVocabulary(string field, int minCount, int maxVocab, ulong[] hashes)
    {
        Field = field;
        MinCount = minCount;
        MaxVocab = maxVocab;
        _hashes = hashes;
        _ids = new HashMap64<int>(hashes.Length);
        for (int i = 0; i < hashes.Length; i++)
        {
            ref int id = ref _ids.GetOrAdd(hashes[i], out bool existed);
            if (existed) throw new ArgumentException($"vocabulary entries {id - 2} and {i} of field '{field}' have the same 64-bit hash 0x{hashes[i]:x16}");
            id = i + 2;
        }
    }

    /// <summary>The field's name.</summary>
    public string Field { get; }

    /// <summary>Values seen fewer times than this in training are OOV.</summary>
    public int MinCount { get; }

    /// <summary>The size cap the vocabulary was fitted with (0 = none).</summary>
    public int MaxVocab { get; }

    /// <summary>Number of values with their own id (ids 2 .. Count + 1).</summary>
    public int Count => _hashes.Length;

    /// <summary>The value hashes in id order (<see cref="StableHash.OfValue(ReadOnlySpan{byte})"/>).</summary>
    public ReadOnlySpan<ulong> Hashes => _hashes;

    /// <summary>The id of a value given as UTF-8 bytes: its vocabulary id, or 1 (OOV).</summary>
    public int IdOf(ReadOnlySpan<byte> utf8) => IdOfHash(StableHash.OfValue(utf8));

    /// <summary>The id of a value: its vocabulary id, or 1 (OOV).</summary>
    public int IdOf(string value) => IdOfHash(StableHash.OfValue((value ?? throw new ArgumentNullException(nameof(value))).AsSpan()));

    /// <summary>Whether the value has its own id.</summary>
    public bool Contains(string value) => IdOf(value) >= 2;

    /// <summary>The id of a value given by its hash (<see cref="StableHash.OfValue(ReadOnlySpan{byte})"/>): its vocabulary id, or 1 (OOV).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public int IdOfHash(ulong hash) => _ids.TryGetValue(hash, out int id) ? id : 1;

    /// <summary>Starts loading the slot of a hash (a hint before <see cref="IdOfHash"/>).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal void Prefetch(ulong hash) => _ids.Prefetch(hash);
}
