using System.Text;
using System.Text.Json;

namespace KdEngine.Data;

/// <summary>What a column of the input is.</summary>
public enum FieldKind
{
    /// <summary>The click label (exactly one per schema). Raw values 0/1, or −1/1 with −1 read as 0.</summary>
    Label,
    /// <summary>One categorical value per row (e.g. a Criteo hex hash).</summary>
    Categorical,
    /// <summary>A number: bucketized into a categorical id, or a dense value that scales the field's embedding.</summary>
    Numeric,
    /// <summary>Several categorical values per row, separated by <see cref="FieldSpec.Separator"/>; pooled by the model.</summary>
    Multi,
    /// <summary>A user identifier, kept for gAUC only; never a model input.</summary>
    UserId,
}

/// <summary>How a numeric field enters the model.</summary>
public enum NumericEncoding
{
    /// <summary>Bucketized (see <see cref="Bucketing"/>) into a categorical id with its own embedding row.</summary>
    Bucketize,
    /// <summary>One embedding row for the field, scaled by the value (missing → the missing row, scale 1).</summary>
    Dense,
}

/// <summary>Bucketization of numeric values v: values ≤ 2 (negatives included) are each their own bucket (⌊v⌋).</summary>
public enum Bucketing
{
    /// <summary>v &gt; 2 → ⌊ln(v)²⌋ (Criteo Kaggle winners).</summary>
    LogSquared,
    /// <summary>v &gt; 2 → ⌊log2 v⌋ (BARS).</summary>
    Log2,
}

/// <summary>How a model pools the embeddings of a multi-valued field.</summary>
public enum Pooling
{
    /// <summary>The sum of the ids' embeddings.</summary>
    Sum,
    /// <summary>The mean of the ids' embeddings (a row with no id gives zeros).</summary>
    Mean,
}

/// <summary>
/// One typed field of a <see cref="Schema"/>. Options that do not apply to the kind must keep their defaults
/// (the schema rejects, e.g., a bucketing on a categorical field).
/// </summary>
public sealed record FieldSpec(string Name, FieldKind Kind)
{
    /// <summary>Seen by a teacher only (privileged-feature distillation); any input kind may be privileged.</summary>
    public bool Privileged { get; init; }

    /// <summary>Numeric fields only.</summary>
    public NumericEncoding Encoding { get; init; } = NumericEncoding.Bucketize;

    /// <summary>Numeric bucketized fields only.</summary>
    public Bucketing Bucketing { get; init; } = Bucketing.LogSquared;

    /// <summary>Multi-valued fields only: the character separating values inside the column.</summary>
    public char Separator { get; init; } = '|';

    /// <summary>Multi-valued fields only.</summary>
    public Pooling Pooling { get; init; } = Pooling.Sum;

    /// <summary>
    /// Categorical fields only: the value attached to the id by libSVM/libFM/libFFM (<c>idx:val</c>) scales the
    /// embedding. Without it the value is ignored (one-hot).
    /// </summary>
    public bool ScaleByValue { get; init; }

    /// <summary>Per-field override of <see cref="PreprocessorOptions.MinCount"/> (vocabulary fields).</summary>
    public int? MinCount { get; init; }

    /// <summary>Per-field override of <see cref="PreprocessorOptions.HashBuckets"/> (categorical/multi fields; 0 = vocabulary).</summary>
    public int? HashBuckets { get; init; }

    /// <summary>Per-field override of <see cref="PreprocessorOptions.MaxVocab"/> (vocabulary fields; 0 = unlimited).</summary>
    public int? MaxVocab { get; init; }

    /// <summary>True for the kinds a model reads (categorical, numeric, multi-valued); false for the label and the user id.</summary>
    public bool IsInput => Kind is FieldKind.Categorical or FieldKind.Numeric or FieldKind.Multi;

    /// <summary>The label field (0/1, or −1/1).</summary>
    public static FieldSpec Label(string name = "label") => new(name, FieldKind.Label);
    /// <summary>A categorical field (a vocabulary fitted on the train split).</summary>
    public static FieldSpec Categorical(string name) => new(name, FieldKind.Categorical);
    /// <summary>A numeric field bucketized with <paramref name="bucketing"/>.</summary>
    public static FieldSpec Numeric(string name, Bucketing bucketing = Bucketing.LogSquared) =>
        new(name, FieldKind.Numeric) { Bucketing = bucketing };
    /// <summary>A numeric field kept as a value that scales its embedding (no bucketing).</summary>
    public static FieldSpec DenseNumeric(string name) => new(name, FieldKind.Numeric) { Encoding = NumericEncoding.Dense };
    /// <summary>A multi-valued field: values separated by <paramref name="separator"/>, embeddings pooled by <paramref name="pooling"/>.</summary>
    public static FieldSpec Multi(string name, char separator = '|', Pooling pooling = Pooling.Sum) =>
        new(name, FieldKind.Multi) { Separator = separator, Pooling = pooling };
    /// <summary>The user id column (for gAUC; never a model input).</summary>
    public static FieldSpec UserId(string name) => new(name, FieldKind.UserId);
}

/// <summary>
/// An immutable, validated list of typed fields: exactly one label, at most one user id, at least one model input,
/// unique names. Built in code or loaded from JSON (<see cref="FromJson"/>); JSON with an unknown key or value is
/// rejected with the key path named.
/// </summary>
public sealed class Schema
{
    private readonly FieldSpec[] _fields;
    private readonly Dictionary<string, int> _byName;

    /// <summary>A validated schema of <paramref name="fields"/> (see the class summary); a violation is a <see cref="DataFormatException"/> naming the field.</summary>
    public Schema(IEnumerable<FieldSpec> fields) : this(fields, source: null) { }

    private Schema(IEnumerable<FieldSpec> fields, string? source)
    {
        ArgumentNullException.ThrowIfNull(fields);
        _fields = fields.ToArray();
        _byName = new Dictionary<string, int>(StringComparer.Ordinal);
        LabelIndex = -1;
        UserIdIndex = -1;
        var inputs = new List<int>();
        for (int i = 0; i < _fields.Length; i++)
        {
            var f = _fields[i] ?? throw new DataFormatException("null field", source, key: $"fields[{i}]");
            string at = $"fields[{i}]";
            if (string.IsNullOrWhiteSpace(f.Name)) throw new DataFormatException("empty field name", source, key: at + ".name");
            if (!_byName.TryAdd(f.Name, i))
                throw new DataFormatException($"duplicate field name '{f.Name}' (also fields[{_byName[f.Name]}])", source, key: at + ".name");
            if (!System.Enum.IsDefined(f.Kind)) throw new DataFormatException($"unknown kind {(int)f.Kind}", source, key: at + ".kind");
            Check(f.Kind == FieldKind.Numeric || f.Encoding == NumericEncoding.Bucketize, "encoding", "numeric");
            Check(f.Kind == FieldKind.Numeric || f.Bucketing == Bucketing.LogSquared, "bucketing", "numeric");
            Check(f.Kind == FieldKind.Multi || f.Separator == '|', "separator", "multi");
            Check(f.Kind == FieldKind.Multi || f.Pooling == Pooling.Sum, "pooling", "multi");
            Check(f.Kind == FieldKind.Categorical || !f.ScaleByValue, "scaleByValue", "categorical");
            Check(f.IsInput || !f.Privileged, "privileged", "categorical, numeric and multi");
            Check(f.Kind is FieldKind.Categorical or FieldKind.Multi || f.HashBuckets is null, "hashBuckets", "categorical and multi");
            Check(f.IsInput && !(f.Kind == FieldKind.Numeric && f.Encoding == NumericEncoding.Dense) || f.MinCount is null,
                "minCount", "categorical, multi and bucketized numeric");
            Check(f.IsInput && !(f.Kind == FieldKind.Numeric && f.Encoding == NumericEncoding.Dense) || f.MaxVocab is null,
                "maxVocab", "categorical, multi and bucketized numeric");
            if (f.MaxVocab is < 0) throw new DataFormatException($"maxVocab must be ≥ 0, got {f.MaxVocab}", source, key: at + ".maxVocab");
            if (f.MinCount is < 1) throw new DataFormatException($"minCount must be ≥ 1, got {f.MinCount}", source, key: at + ".minCount");
            if (f.HashBuckets is < 0) throw new DataFormatException($"hashBuckets must be ≥ 0, got {f.HashBuckets}", source, key: at + ".hashBuckets");
            if (f.Kind == FieldKind.Multi && (f.Separator is '\n' or '\r' or '"'))
                throw new DataFormatException($"separator '{f.Separator}' is not allowed", source, key: at + ".separator");
            switch (f.Kind)
            {
                case FieldKind.Label:
                    if (LabelIndex >= 0) throw new DataFormatException($"second label field (first is '{_fields[LabelIndex].Name}')", source, key: at + ".kind");
                    LabelIndex = i;
                    break;
                case FieldKind.UserId:
                    if (UserIdIndex >= 0) throw new DataFormatException($"second userid field (first is '{_fields[UserIdIndex].Name}')", source, key: at + ".kind");
                    UserIdIndex = i;
                    break;
                default:
                    inputs.Add(i);
                    break;
            }

            void Check(bool ok, string key, string kinds)
            {
                if (!ok) throw new DataFormatException($"'{key}' is only valid for {kinds} fields (field '{f.Name}' is {KindName(f.Kind)})", source, key: at + "." + key);
            }
        }
        if (LabelIndex < 0) throw new DataFormatException("the schema has no label field", source, key: "fields");
        if (inputs.Count == 0) throw new DataFormatException("the schema has no input field (categorical, numeric or multi)", source, key: "fields");
        InputIndices = inputs.ToArray();
    }

    /// <summary>The fields in column order.</summary>
    public IReadOnlyList<FieldSpec> Fields => _fields;

    /// <summary>Number of fields.</summary>
    public int Count => _fields.Length;

    /// <summary>Field number <paramref name="index"/>.</summary>
    public FieldSpec this[int index] => _fields[index];

    /// <summary>Index of the label field.</summary>
    public int LabelIndex { get; }

    /// <summary>Index of the user-id field, or −1.</summary>
    public int UserIdIndex { get; }

    /// <summary>Indices of the model-input fields (categorical, numeric, multi), in schema order.</summary>
    public IReadOnlyList<int> InputIndices { get; }

    /// <summary>Index of the field called <paramref name="name"/>, or −1.</summary>
    public int IndexOf(string name) => _byName.TryGetValue(name, out int i) ? i : -1;

    /// <summary>The Criteo layout: label, I1–I13 numeric (bucketized with <paramref name="bucketing"/>), C1–C26 categorical.</summary>
    public static Schema Criteo(Bucketing bucketing = Bucketing.LogSquared)
    {
        var fields = new List<FieldSpec> { FieldSpec.Label("label") };
        for (int i = 1; i <= 13; i++) fields.Add(FieldSpec.Numeric("I" + i, bucketing));
        for (int i = 1; i <= 26; i++) fields.Add(FieldSpec.Categorical("C" + i));
        return new Schema(fields);
    }

    /// <summary>Loads a schema JSON file (see <see cref="FromJson"/>); errors name the file.</summary>
    public static Schema Load(string path) => FromJson(File.ReadAllText(path), Path.GetFileName(path));

    /// <summary>
    /// Parses <c>{"fields": [{"name": "C1", "kind": "categorical", ...}, ...]}</c>. Field keys: <c>name</c>,
    /// <c>kind</c> (categorical|numeric|multi|label|userid), <c>privileged</c>, <c>encoding</c> (bucketize|dense),
    /// <c>bucketing</c> (logSquared|log2), <c>separator</c> (one character), <c>pooling</c> (sum|mean),
    /// <c>scaleByValue</c>, <c>minCount</c>, <c>hashBuckets</c>, <c>maxVocab</c>. Unknown keys and values are rejected.
    /// </summary>
    public static Schema FromJson(string json, string source = "schema.json")
    {
        var sj = new StrictJson(source);
        using var doc = sj.Parse(json);
        return Parse(sj, doc.RootElement, "");
    }

    internal static Schema Parse(StrictJson sj, JsonElement root, string path)
    {
        sj.Object(root, path, "fields");
        var arrPath = StrictJson.Join(path, "fields");
        var arr = sj.Array(sj.Required(root, path, "fields"), arrPath);
        var fields = new List<FieldSpec>();
        int i = 0;
        foreach (var e in arr.EnumerateArray())
        {
            string at = $"{arrPath}[{i}]";
            sj.Object(e, at, "name", "kind", "privileged", "encoding", "bucketing", "separator", "pooling",
                "scaleByValue", "minCount", "hashBuckets", "maxVocab");
            var name = sj.String(sj.Required(e, at, "name"), at + ".name");
            var kind = sj.Enum(sj.Required(e, at, "kind"), at + ".kind",
                ("categorical", FieldKind.Categorical), ("numeric", FieldKind.Numeric), ("multi", FieldKind.Multi),
                ("label", FieldKind.Label), ("userid", FieldKind.UserId));
            var f = new FieldSpec(name, kind);
            if (sj.TryGet(e, "privileged", out var v)) f = f with { Privileged = sj.Bool(v, at + ".privileged") };
            if (sj.TryGet(e, "encoding", out v))
                f = f with { Encoding = sj.Enum(v, at + ".encoding", ("bucketize", NumericEncoding.Bucketize), ("dense", NumericEncoding.Dense)) };
            if (sj.TryGet(e, "bucketing", out v))
                f = f with { Bucketing = sj.Enum(v, at + ".bucketing", ("logSquared", Bucketing.LogSquared), ("log2", Bucketing.Log2)) };
            if (sj.TryGet(e, "separator", out v))
            {
                var s = sj.String(v, at + ".separator");
                if (s.Length != 1) throw sj.Error(at + ".separator", $"expected one character, found '{s}'");
                f = f with { Separator = s[0] };
            }
            if (sj.TryGet(e, "pooling", out v))
                f = f with { Pooling = sj.Enum(v, at + ".pooling", ("sum", Pooling.Sum), ("mean", Pooling.Mean)) };
            if (sj.TryGet(e, "scaleByValue", out v)) f = f with { ScaleByValue = sj.Bool(v, at + ".scaleByValue") };
            if (sj.TryGet(e, "minCount", out v)) f = f with { MinCount = sj.Int(v, at + ".minCount", 1) };
            if (sj.TryGet(e, "hashBuckets", out v)) f = f with { HashBuckets = sj.Int(v, at + ".hashBuckets", 0) };
            if (sj.TryGet(e, "maxVocab", out v)) f = f with { MaxVocab = sj.Int(v, at + ".maxVocab", 0) };
            fields.Add(f);
            i++;
        }
        return new Schema(fields, sj.Source);
    }

    /// <summary>Writes the JSON form read by <see cref="FromJson"/> (defaults omitted).</summary>
    public string ToJson()
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
            Write(w);
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    internal void Write(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteStartArray("fields");
        foreach (var f in _fields)
        {
            w.WriteStartObject();
            w.WriteString("name", f.Name);
            w.WriteString("kind", KindName(f.Kind));
            if (f.Privileged) w.WriteBoolean("privileged", true);
            if (f.Encoding != NumericEncoding.Bucketize) w.WriteString("encoding", "dense");
            if (f.Bucketing != Bucketing.LogSquared) w.WriteString("bucketing", "log2");
            if (f.Separator != '|') w.WriteString("separator", f.Separator.ToString());
            if (f.Pooling != Pooling.Sum) w.WriteString("pooling", "mean");
            if (f.ScaleByValue) w.WriteBoolean("scaleByValue", true);
            if (f.MinCount is int mc) w.WriteNumber("minCount", mc);
            if (f.HashBuckets is int hb) w.WriteNumber("hashBuckets", hb);
            if (f.MaxVocab is int mv) w.WriteNumber("maxVocab", mv);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    internal static string KindName(FieldKind k) => k switch
    {
        FieldKind.Label => "label",
        FieldKind.Categorical => "categorical",
        FieldKind.Numeric => "numeric",
        FieldKind.Multi => "multi",
        FieldKind.UserId => "userid",
        _ => k.ToString(),
    };
}
