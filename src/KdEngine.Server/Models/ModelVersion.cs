using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Serving;

namespace KdEngine.Server.Models;

/// <summary>
/// One loaded, validated checkpoint of a served model: immutable. A request takes the version current when it
/// arrives and is scored by it to the end, so a swap never changes a request half-way.
/// </summary>
public sealed class ModelVersion
{
    internal ModelVersion(string name, long version, string path, string checksum, Predictor predictor, RequestSchema schema,
        ModelKind kind, long parameters, IReadOnlyList<string> fieldsRead)
    {
        Name = name;
        Version = version;
        Path = path;
        Checksum = checksum;
        Predictor = predictor;
        Schema = schema;
        Kind = kind;
        Parameters = parameters;
        FieldsRead = fieldsRead;
        LoadedAt = DateTimeOffset.UtcNow;
    }

    /// <summary>The served model's name.</summary>
    public string Name { get; }

    /// <summary>1 for the checkpoint loaded at start, +1 for each accepted reload.</summary>
    public long Version { get; }

    /// <summary>The checkpoint file this version was loaded from.</summary>
    public string Path { get; }

    /// <summary>The checkpoint's data SHA-256 (lowercase hex) as recorded in its header and verified on load.</summary>
    public string Checksum { get; }

    /// <summary>First 16 hex digits of <see cref="Checksum"/>: what responses and metrics report.</summary>
    public string ShortChecksum => Checksum[..16];

    /// <summary>The compiled predictor that scores this version's batches.</summary>
    public Predictor Predictor { get; }

    /// <summary>The fields a request may name, and how they are encoded.</summary>
    public RequestSchema Schema { get; }

    /// <summary>The model kind.</summary>
    public ModelKind Kind { get; }

    /// <summary>Number of parameters.</summary>
    public long Parameters { get; }

    /// <summary>Input fields the model itself reads (a student may skip privileged fields; every field stays optional).</summary>
    public IReadOnlyList<string> FieldsRead { get; }

    /// <summary>When this version was loaded (UTC).</summary>
    public DateTimeOffset LoadedAt { get; }

    /// <summary>Width of one encoded row (<see cref="Predictor.InputColumns"/>).</summary>
    public int Columns => Predictor.InputColumns;
}

/// <summary>
/// What a request may name: the preprocessor's schema fields by name. Input fields (categorical, numeric, multi) are
/// encoded; the label and user-id fields are accepted and ignored (clients may send logged rows).
/// </summary>
public sealed class RequestSchema
{
    private readonly Dictionary<string, int> _byName;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _bySpan;

    /// <summary>The request schema of <paramref name="preprocessor"/>'s fields, with the encoding of an all-missing row precomputed.</summary>
    public RequestSchema(Preprocessor preprocessor)
    {
        ArgumentNullException.ThrowIfNull(preprocessor);
        Preprocessor = preprocessor;
        Schema = preprocessor.Schema;
        _byName = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int f = 0; f < Schema.Count; f++) _byName[Schema[f].Name] = f;
        _bySpan = _byName.GetAlternateLookup<ReadOnlySpan<char>>();
        Columns = preprocessor.FeatureSpace.FieldCount;
        FieldColumns = Enumerable.Range(0, Schema.Count).Select(preprocessor.ColumnOf).ToArray();
        var missing = new EncodedRow(preprocessor.FeatureSpace);
        preprocessor.Encode(new RawRecord(Schema), missing);
        MissingIds = missing.Ids.AsSpan(0, Columns).ToArray();
    }

    /// <summary>[schema fields] the encoded column of each single-valued input field, −1 for the others.</summary>
    public int[] FieldColumns { get; }

    /// <summary>[Columns] the encoding of a row whose every field is missing (where a request's row starts).</summary>
    public int[] MissingIds { get; }

    /// <summary>The preprocessing that encodes request values.</summary>
    public Preprocessor Preprocessor { get; }

    /// <summary>The preprocessor's schema (field names and kinds).</summary>
    public Schema Schema { get; }

    /// <summary>Single-valued columns of an encoded row.</summary>
    public int Columns { get; }

    /// <summary>Schema index of the field called <paramref name="name"/>, or −1.</summary>
    public int IndexOf(ReadOnlySpan<char> name) => _bySpan.TryGetValue(name, out int f) ? f : -1;

    /// <summary>
    /// The part of the schema a client depends on: each input field's name and kind (and a multi-valued field's
    /// separator, which a string value uses). Vocabularies, bucketing and hash sizes may change with a retrained model.
    /// </summary>
    public string Signature() => string.Join(", ", Schema.Fields.Where(f => f.IsInput).Select(f => $"{f.Name}: {Describe(f)}"));

    /// <summary>Differences from <paramref name="other"/>'s client-facing schema, or an empty list.</summary>
    public IReadOnlyList<string> DifferencesFrom(RequestSchema other)
    {
        var mine = Schema.Fields.Where(f => f.IsInput).ToDictionary(f => f.Name, Describe, StringComparer.Ordinal);
        var theirs = other.Schema.Fields.Where(f => f.IsInput).ToDictionary(f => f.Name, Describe, StringComparer.Ordinal);
        var diffs = new List<string>();
        foreach (var (name, d) in theirs)
            if (!mine.TryGetValue(name, out var m)) diffs.Add($"field '{name}' ({d}) is gone");
            else if (m != d) diffs.Add($"field '{name}' was {d}, is now {m}");
        foreach (var (name, m) in mine)
            if (!theirs.ContainsKey(name)) diffs.Add($"field '{name}' ({m}) is new");
        return diffs;
    }

    internal static string KindName(FieldSpec f) => f.Kind switch
    {
        FieldKind.Categorical => "categorical",
        FieldKind.Numeric => "numeric",
        FieldKind.Multi => "multi",
        FieldKind.Label => "label",
        FieldKind.UserId => "userid",
        _ => f.Kind.ToString().ToLowerInvariant(),
    };

    private static string Describe(FieldSpec f) => f.Kind == FieldKind.Multi ? $"multi, separator '{f.Separator}'" : KindName(f);
}
