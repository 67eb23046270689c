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
}

/// <summary>One encoded row, reused between calls to <see cref="Preprocessor.Encode"/> (no allocation in steady state).</summary>
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
/// Maps raw records to ids, fitted on the training split only (<see cref="Fit"/>). Per field:
/// numeric → bucket token (<see cref="NumericBuckets.Token"/>) → vocabulary; categorical/multi → vocabulary (min-count,
/// OOV) or stable hash buckets; dense numeric → one id scaled by the value. At serving time an unseen category (or
/// one rarer than min-count in training) gets the OOV id 1, a missing value the missing id 0 (hashed fields hash every
/// value, so they have no OOV). <see cref="ToJson"/>/<see cref="FromJson"/> save it with a model so serving maps rows
/// exactly as training did. User ids: an integer value is used as is, other text is stably hashed to a non-negative int.
/// </summary>
public sealed class Preprocessor
{
    private const string FormatTag = "kdengine.preprocessor";
    private const int FormatVersion = 1;
    private readonly Encoder[] _encoders;
    private readonly Encoder?[] _bySchemaIndex;

    private Preprocessor(Schema schema, Encoder[] encoders)
    {
        Schema = schema;
        _encoders = encoders;
        _bySchemaIndex = new Encoder?[schema.Count];
        foreach (var e in encoders) _bySchemaIndex[e.SchemaIndex] = e;
        int single = 0, multi = 0;
        var fields = new List<FeatureField>();
        foreach (var e in encoders)
        {
            var spec = schema[e.SchemaIndex];
            int slot = spec.Kind == FieldKind.Multi ? multi++ : single++;
            e.Slot = slot;
            fields.Add(new FeatureField(spec.Name, spec.Kind, e.Encoding, e.Cardinality, spec.Privileged, slot)
            {
                Pooling = spec.Pooling,
                HasDenseValue = e.Encoding == FieldEncoding.Dense || spec.ScaleByValue,
            });
        }
        FeatureSpace = new FeatureSpace(fields, schema.UserIdIndex >= 0);
    }

    /// <summary>The schema the preprocessor was fitted for (the fields it reads from raw records).</summary>
    public Schema Schema { get; }

    /// <summary>The encoded fields and their cardinalities: what models over this preprocessing are built from.</summary>
    public FeatureSpace FeatureSpace { get; }

    /// <summary>The fitted vocabulary of a vocabulary field (entry i has id i + 2), or null for hashed/dense fields.</summary>
    public IReadOnlyList<string>? VocabularyOf(string field) =>
        _encoders.FirstOrDefault(e => e.Name == field)?.Vocabulary;

    /// <summary>Fits vocabularies on <paramref name="train"/> (one streaming pass; skipped when every field is hashed or dense).</summary>
    public static Preprocessor Fit(Schema schema, IEnumerable<RawRecord> train, PreprocessorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(schema);
        ArgumentNullException.ThrowIfNull(train);
        options ??= new PreprocessorOptions();
        if (options.MinCount < 1) throw new ArgumentOutOfRangeException(nameof(options), $"PreprocessorOptions.MinCount must be ≥ 1, got {options.MinCount}.");
        if (options.HashBuckets < 0) throw new ArgumentOutOfRangeException(nameof(options), $"PreprocessorOptions.HashBuckets must be ≥ 0, got {options.HashBuckets}.");
        var encoders = new Encoder[schema.InputIndices.Count];
        for (int i = 0; i < encoders.Length; i++)
        {
            int f = schema.InputIndices[i];
            var spec = schema[f];
            if (spec.Kind == FieldKind.Numeric && spec.Encoding == NumericEncoding.Dense)
                encoders[i] = new Encoder(spec.Name, f, FieldEncoding.Dense, 0, 0, null);
            else if (spec.Kind != FieldKind.Numeric && (spec.HashBuckets ?? options.HashBuckets) > 0)
                encoders[i] = new Encoder(spec.Name, f, FieldEncoding.Hash, spec.HashBuckets ?? options.HashBuckets, 0, null);
            else
                encoders[i] = new Encoder(spec.Name, f, FieldEncoding.Vocabulary, 0, spec.MinCount ?? options.MinCount, null);
        }
        var counting = encoders.Where(e => e.Encoding == FieldEncoding.Vocabulary).ToArray();
        if (counting.Length > 0)
        {
            var counts = counting.Select(_ => new Dictionary<string, int>(StringComparer.Ordinal)).ToArray();
            var tokens = new List<string>();
            foreach (var r in train)
            {
                CheckSchema(schema, r);
                for (int i = 0; i < counting.Length; i++)
                {
                    Tokens(schema, counting[i].SchemaIndex, r, tokens);
                    foreach (var t in tokens)
                        counts[i][t] = counts[i].TryGetValue(t, out int c) ? c + 1 : 1;
                }
            }
            for (int i = 0; i < counting.Length; i++)
            {
                // Deterministic id order: most frequent first, ties by ordinal token order.
                var vocab = counts[i].Where(kv => kv.Value >= counting[i].MinCount)
                    .OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal)
                    .Select(kv => kv.Key).ToArray();
                counting[i].SetVocabulary(vocab);
            }
        }
        return new Preprocessor(schema, encoders);
    }

    /// <summary>Encodes <paramref name="record"/> into <paramref name="row"/> (reused; allocates nothing for single-valued fields).</summary>
    public void Encode(RawRecord record, EncodedRow row)
    {
        ArgumentNullException.ThrowIfNull(record);
        ArgumentNullException.ThrowIfNull(row);
        if (!ReferenceEquals(row.Space, FeatureSpace)) throw new ArgumentException("Encode: the EncodedRow was made for another FeatureSpace.", nameof(row));
        CheckSchema(Schema, record);
        row.Label = record.Label;
        row.UserId = Schema.UserIdIndex >= 0 ? UserIdOf(record.Values[Schema.UserIdIndex]) : -1;
        row.ClearMulti();
        foreach (var e in _encoders)
        {
            var spec = Schema[e.SchemaIndex];
            switch (spec.Kind)
            {
                case FieldKind.Multi:
                {
                    var text = record.Values[e.SchemaIndex];
                    int before = row.MultiIds(e.Slot).Length;
                    if (text is not null)
                        foreach (var part in text.Split(spec.Separator, StringSplitOptions.RemoveEmptyEntries))
                            row.AddMulti(e.Slot, e.IdOf(part));
                    if (row.MultiIds(e.Slot).Length == before) row.AddMulti(e.Slot, 0); // empty list = missing
                    break;
                }
                case FieldKind.Numeric when e.Encoding == FieldEncoding.Dense:
                {
                    double v = NumberOf(record, e.SchemaIndex);
                    row.Ids[e.Slot] = double.IsNaN(v) ? 0 : 1;
                    row.DenseValues[e.Slot] = double.IsNaN(v) ? 1f : (float)v;
                    break;
                }
                case FieldKind.Numeric:
                {
                    double v = NumberOf(record, e.SchemaIndex);
                    Span<char> token = stackalloc char[NumericBuckets.MaxTokenLength];
                    row.Ids[e.Slot] = double.IsNaN(v) ? 0 : e.IdOf(NumericBuckets.FormatToken(v, spec.Bucketing, token)); // no string per value
                    row.DenseValues[e.Slot] = 1f;
                    break;
                }
                default:
                {
                    var text = record.Values[e.SchemaIndex];
                    row.Ids[e.Slot] = text is null ? 0 : e.IdOf(text);
                    float s = spec.ScaleByValue && text is not null && record.Scales is { } sc ? sc[e.SchemaIndex] : float.NaN;
                    row.DenseValues[e.Slot] = float.IsNaN(s) ? 1f : s;
                    break;
                }
            }
        }
    }

    /// <summary>
    /// The column of <see cref="EncodedRow.Ids"/> that single-valued input field <paramref name="field"/> (a schema index)
    /// encodes into, or −1 for a multi-valued field, the label or the user id.
    /// </summary>
    public int ColumnOf(int field) =>
        (uint)field < (uint)_bySchemaIndex.Length && _bySchemaIndex[field] is { } e && Schema[field].Kind != FieldKind.Multi ? e.Slot : -1;

    /// <summary>
    /// The id one raw text value of single-valued input field <paramref name="field"/> (a schema index) encodes to: what
    /// <see cref="Encode"/> writes into its column for a record holding that text — a category's vocabulary id (OOV when
    /// unseen) or hash bucket, a numeric field's bucket (the text parsed with the invariant culture). Empty text is a
    /// missing value, as in the readers. Allocates nothing: a service can encode values straight from its request bytes.
    /// </summary>
    /// <exception cref="ArgumentException">The field is not a single-valued input field.</exception>
    /// <exception cref="DataFormatException">Non-numeric text in a numeric field.</exception>
    public int EncodeValue(int field, ReadOnlySpan<char> text)
    {
        var e = SingleEncoder(field);
        if (text.IsEmpty) return 0;
        if (Schema[field].Kind == FieldKind.Numeric)
        {
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v))
                throw new DataFormatException($"non-numeric value '{text}' in a numeric field", key: Schema[field].Name);
            return EncodeValue(field, v);
        }
        return e.IdOf(text);
    }

    /// <summary>
    /// The id a number encodes to in numeric input field <paramref name="field"/>, as <see cref="Encode"/> encodes it
    /// (NaN = missing). Allocates nothing.
    /// </summary>
    public int EncodeValue(int field, double value)
    {
        var e = SingleEncoder(field);
        if (Schema[field].Kind != FieldKind.Numeric)
            throw new ArgumentException($"Preprocessor.EncodeValue: field '{Schema[field].Name}' is {Schema.KindName(Schema[field].Kind)}, not numeric; give its text.", nameof(field));
        if (double.IsNaN(value)) return 0;
        if (e.Encoding == FieldEncoding.Dense) return 1;
        Span<char> token = stackalloc char[NumericBuckets.MaxTokenLength];
        return e.IdOf(NumericBuckets.FormatToken(value, Schema[field].Bucketing, token));
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
        var builder = new EncodedDatasetBuilder(FeatureSpace);
        var row = new EncodedRow(FeatureSpace);
        foreach (var r in records)
        {
            Encode(r, row);
            builder.Add(row);
        }
        return builder.Build();
    }

    private static void CheckSchema(Schema schema, RawRecord r)
    {
        if (!ReferenceEquals(r.Schema, schema) && r.Schema.Count != schema.Count)
            throw new ArgumentException($"Preprocessor: record has {r.Schema.Count} fields, the schema {schema.Count}.");
    }

    private static double NumberOf(RawRecord r, int f)
    {
        double v = r.Numbers[f];
        if (!double.IsNaN(v) || r.Values[f] is not { } text) return v;
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out v) || !double.IsFinite(v))
            throw new DataFormatException($"non-numeric value '{text}' in a numeric field", r.File, r.Line == 0 ? null : r.Line, key: r.Schema[f].Name);
        return v;
    }

    private static void Tokens(Schema schema, int f, RawRecord r, List<string> tokens)
    {
        tokens.Clear();
        var spec = schema[f];
        if (spec.Kind == FieldKind.Numeric)
        {
            double v = NumberOf(r, f);
            if (!double.IsNaN(v)) tokens.Add(NumericBuckets.Token(v, spec.Bucketing));
        }
        else if (r.Values[f] is { } text)
        {
            if (spec.Kind == FieldKind.Multi) tokens.AddRange(text.Split(spec.Separator, StringSplitOptions.RemoveEmptyEntries));
            else tokens.Add(text);
        }
    }

    /// <summary>An integer user id as is; other text stably hashed to [0, 2³¹); missing → −1.</summary>
    public static int UserIdOf(string? text)
    {
        if (text is null) return -1;
        if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int id) && id >= 0) return id;
        return (int)(StableHash.Mix(StableHash.Fnv1a64(text)) & 0x7FFFFFFF);
    }

    /// <summary>
    /// JSON: <c>{"format":"kdengine.preprocessor","version":1,"schema":{…},"fields":[{"name":"C1","encoding":
    /// "vocabulary","minCount":2,"vocabulary":["…",…]},{"name":"C2","encoding":"hash","buckets":N},
    /// {"name":"I1","encoding":"dense"}]}</c>; vocabulary entry i has id i + 2.
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
                w.WriteString("name", e.Name);
                switch (e.Encoding)
                {
                    case FieldEncoding.Vocabulary:
                        w.WriteString("encoding", "vocabulary");
                        w.WriteNumber("minCount", e.MinCount);
                        w.WriteStartArray("vocabulary");
                        foreach (var t in e.Vocabulary!) w.WriteStringValue(t);
                        w.WriteEndArray();
                        break;
                    case FieldEncoding.Hash:
                        w.WriteString("encoding", "hash");
                        w.WriteNumber("buckets", e.Buckets);
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

    /// <summary>Reads <see cref="ToJson"/> output strictly (unknown keys, wrong types, fields not matching the schema are errors).</summary>
    public static Preprocessor FromJson(string json, string source = "preprocessor.json")
    {
        ArgumentNullException.ThrowIfNull(json);
        var sj = new StrictJson(source);
        using var doc = sj.Parse(json);
        var root = doc.RootElement;
        sj.Object(root, "", "format", "version", "schema", "fields");
        var tag = sj.String(sj.Required(root, "", "format"), "format");
        if (tag != FormatTag) throw sj.Error("format", $"expected '{FormatTag}', found '{tag}'");
        sj.Int(sj.Required(root, "", "version"), "version", FormatVersion, FormatVersion);
        var schema = Schema.Parse(sj, sj.Required(root, "", "schema"), "schema");
        var arr = sj.Array(sj.Required(root, "", "fields"), "fields");
        if (arr.GetArrayLength() != schema.InputIndices.Count)
            throw sj.Error("fields", $"expected {schema.InputIndices.Count} entries (one per input field of the schema), found {arr.GetArrayLength()}");
        var encoders = new Encoder[schema.InputIndices.Count];
        int i = 0;
        foreach (var e in arr.EnumerateArray())
        {
            string at = $"fields[{i}]";
            int f = schema.InputIndices[i];
            var spec = schema[f];
            sj.Object(e, at, "name", "encoding", "minCount", "vocabulary", "buckets");
            var name = sj.String(sj.Required(e, at, "name"), at + ".name");
            if (name != spec.Name) throw sj.Error(at + ".name", $"expected '{spec.Name}' (input field {i} of the schema), found '{name}'");
            var enc = sj.Enum(sj.Required(e, at, "encoding"), at + ".encoding",
                ("vocabulary", FieldEncoding.Vocabulary), ("hash", FieldEncoding.Hash), ("dense", FieldEncoding.Dense));
            bool dense = spec.Kind == FieldKind.Numeric && spec.Encoding == NumericEncoding.Dense;
            if (dense != (enc == FieldEncoding.Dense) || (enc == FieldEncoding.Hash && spec.Kind == FieldKind.Numeric))
                throw sj.Error(at + ".encoding", $"encoding does not fit the {Schema.KindName(spec.Kind)} field '{spec.Name}'");
            string[] allowed = enc switch
            {
                FieldEncoding.Vocabulary => ["name", "encoding", "minCount", "vocabulary"],
                FieldEncoding.Hash => ["name", "encoding", "buckets"],
                _ => ["name", "encoding"],
            };
            sj.Object(e, at, allowed);
            if (enc == FieldEncoding.Vocabulary)
            {
                int minCount = sj.Int(sj.Required(e, at, "minCount"), at + ".minCount", 1);
                var vocabEl = sj.Array(sj.Required(e, at, "vocabulary"), at + ".vocabulary");
                var vocab = new string[vocabEl.GetArrayLength()];
                int j = 0;
                foreach (var t in vocabEl.EnumerateArray()) { vocab[j] = sj.String(t, $"{at}.vocabulary[{j}]"); j++; }
                var enc2 = new Encoder(name, f, enc, 0, minCount, null);
                try { enc2.SetVocabulary(vocab); }
                catch (ArgumentException ex) { throw sj.Error(at + ".vocabulary", ex.Message); }
                encoders[i] = enc2;
            }
            else if (enc == FieldEncoding.Hash)
                encoders[i] = new Encoder(name, f, enc, sj.Int(sj.Required(e, at, "buckets"), at + ".buckets", 1), 0, null);
            else
                encoders[i] = new Encoder(name, f, enc, 0, 0, null);
            i++;
        }
        return new Preprocessor(schema, encoders);
    }

    private sealed class Encoder(string name, int schemaIndex, FieldEncoding encoding, int buckets, int minCount, string[]? vocabulary)
    {
        private Dictionary<string, int>? _index;
        private Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;

        public string Name { get; } = name;
        public int SchemaIndex { get; } = schemaIndex;
        public FieldEncoding Encoding { get; } = encoding;
        public int Buckets { get; } = buckets;
        public int MinCount { get; } = minCount;
        public string[]? Vocabulary { get; private set; } = vocabulary;
        public int Slot { get; set; }

        public int Cardinality => Encoding switch
        {
            FieldEncoding.Vocabulary => 2 + Vocabulary!.Length,
            FieldEncoding.Hash => 1 + Buckets,
            _ => 2,
        };

        public void SetVocabulary(string[] vocab)
        {
            var index = new Dictionary<string, int>(vocab.Length, StringComparer.Ordinal);
            for (int i = 0; i < vocab.Length; i++)
                if (!index.TryAdd(vocab[i], i + 2)) throw new ArgumentException($"duplicate vocabulary entry '{vocab[i]}' (entries {index[vocab[i]] - 2} and {i})");
            Vocabulary = vocab;
            _index = index;
            _lookup = index.GetAlternateLookup<ReadOnlySpan<char>>();
        }

        /// <summary>A value's id without making a string (a numeric bucket token, or a category's text).</summary>
        public int IdOf(ReadOnlySpan<char> token) => Encoding == FieldEncoding.Hash
            ? 1 + StableHash.Bucket(token, Buckets)
            : _lookup.TryGetValue(token, out int id) ? id : 1;

        public int IdOf(string token) => Encoding == FieldEncoding.Hash
            ? 1 + StableHash.Bucket(token, Buckets)
            : _index!.TryGetValue(token, out int id) ? id : 1;
    }
}
