using System.Globalization;

namespace KdEngine.Data;

/// <summary>A half-open range [Start, End) of libSVM feature indices that makes up one schema field.</summary>
public readonly record struct IndexRange(string Field, long Start, long End);

/// <summary>
/// How libSVM/libFM indices map to fields. libSVM has no field column, so fields are implied by index ranges:
/// each input field of the schema owns one range [Start, End) of indices. In a row, a categorical field's value is
/// its index (as text) and the <c>val</c> is kept in <see cref="RawRecord.Scales"/> (used when the field has
/// <see cref="FieldSpec.ScaleByValue"/>); a numeric field's value is the <c>val</c>; a multi-valued field collects
/// all its indices. Two indices of one single-valued field in a row is a bad row. Fields with no index in a row are
/// missing.
/// </summary>
public sealed class LibSvmOptions
{
    /// <summary>
    /// The ranges of every input field of <paramref name="schema"/>. Each input field needs exactly one range; ranges
    /// must be non-empty, non-negative and must not overlap, and name input fields of the schema — otherwise an
    /// <see cref="ArgumentException"/> naming the range.
    /// </summary>
    public LibSvmOptions(Schema schema, IEnumerable<IndexRange> ranges)
    {
        ArgumentNullException.ThrowIfNull(schema);
        ArgumentNullException.ThrowIfNull(ranges);
        Schema = schema;
        var list = ranges.OrderBy(r => r.Start).ToArray();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < list.Length; i++)
        {
            var r = list[i];
            int f = schema.IndexOf(r.Field);
            if (f < 0) throw new ArgumentException($"libSVM range for '{r.Field}': no such schema field.", nameof(ranges));
            if (!schema[f].IsInput) throw new ArgumentException($"libSVM range for '{r.Field}': the field is a {Schema.KindName(schema[f].Kind)}, not an input.", nameof(ranges));
            if (r.Start < 0 || r.End <= r.Start) throw new ArgumentException($"libSVM range for '{r.Field}': [{r.Start}, {r.End}) is empty or negative.", nameof(ranges));
            if (!seen.Add(r.Field)) throw new ArgumentException($"libSVM ranges: field '{r.Field}' has two ranges.", nameof(ranges));
            if (i > 0 && r.Start < list[i - 1].End)
                throw new ArgumentException($"libSVM ranges for '{list[i - 1].Field}' [{list[i - 1].Start}, {list[i - 1].End}) and '{r.Field}' [{r.Start}, {r.End}) overlap.", nameof(ranges));
        }
        foreach (int f in schema.InputIndices)
            if (!seen.Contains(schema[f].Name))
                throw new ArgumentException($"libSVM ranges: input field '{schema[f].Name}' has no index range.", nameof(ranges));
        Ranges = list;
        RangeFieldIndex = list.Select(r => schema.IndexOf(r.Field)).ToArray();
    }

    /// <summary>The schema whose input fields the ranges cover.</summary>
    public Schema Schema { get; }

    /// <summary>The ranges sorted by start.</summary>
    public IReadOnlyList<IndexRange> Ranges { get; }

    internal int[] RangeFieldIndex { get; }

    /// <summary>
    /// <paramref name="fieldCount"/> categorical fields <c>f0, f1, …</c>, field k owning indices
    /// [k·<paramref name="indicesPerField"/> + <paramref name="firstIndex"/>, (k+1)·… ), values scaling the embedding
    /// when <paramref name="scaleByValue"/> (libFM semantics); the label field is <c>label</c>.
    /// </summary>
    public static LibSvmOptions Uniform(int fieldCount, long indicesPerField, bool scaleByValue = true, long firstIndex = 0)
    {
        if (fieldCount < 1 || indicesPerField < 1) throw new ArgumentException($"Uniform libSVM fields: need fieldCount ≥ 1 and indicesPerField ≥ 1, got {fieldCount}, {indicesPerField}.");
        var fields = new List<FieldSpec> { FieldSpec.Label() };
        var ranges = new List<IndexRange>();
        for (int k = 0; k < fieldCount; k++)
        {
            fields.Add(FieldSpec.Categorical("f" + k) with { ScaleByValue = scaleByValue });
            ranges.Add(new IndexRange("f" + k, firstIndex + k * indicesPerField, firstIndex + (k + 1) * indicesPerField));
        }
        return new LibSvmOptions(new Schema(fields), ranges);
    }

    internal int FieldOf(long index)
    {
        int lo = 0, hi = Ranges.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            var r = Ranges[mid];
            if (index < r.Start) hi = mid - 1;
            else if (index >= r.End) lo = mid + 1;
            else return RangeFieldIndex[mid];
        }
        return -1;
    }
}

/// <summary>
/// Shared parsing of the sparse formats: whitespace-separated tokens, the first is the label ({0,1} or {−1,1}),
/// then <c>idx:val</c> (libSVM/libFM) or <c>field:idx:val</c> (libFFM). A <c>qid:ID</c> token (libSVM ranking
/// format) gives the user id when the schema has a userid field. Error columns count tokens (label = 1).
/// </summary>
public abstract class SparseReader : RecordReader
{
    private readonly char[] _separators = [' ', '\t'];

    /// <summary>A reader of <paramref name="path"/> with the fields of <paramref name="schema"/>.</summary>
    protected SparseReader(string path, Schema schema, ReaderOptions? options) : base(path, schema, options) { }

    /// <summary>Number of colon-separated parts of a feature token (2 for libSVM, 3 for libFFM).</summary>
    protected abstract int Parts { get; }

    /// <summary>The format's name for messages (<c>libSVM</c>, <c>libFFM</c>).</summary>
    protected abstract string FormatName { get; }

    /// <summary>Schema field index of a feature, or −1 when it belongs to no field.</summary>
    protected abstract int FieldOf(long field, long index, out string problem);

    /// <inheritdoc/>
    protected override RawRecord ParseRow(string line, long lineNumber)
    {
        var tokens = line.Split(_separators, StringSplitOptions.RemoveEmptyEntries);
        var r = new RawRecord(Schema) { File = FileName, Line = lineNumber };
        r.Label = ParseLabel(tokens[0], lineNumber, 1);
        var scales = new float[Schema.Count];
        scales.AsSpan().Fill(float.NaN);
        r.Scales = scales;
        for (int t = 1; t < tokens.Length; t++)
        {
            var tok = tokens[t];
            int col = t + 1;
            if (tok.StartsWith("qid:", StringComparison.Ordinal) && Schema.UserIdIndex >= 0)
            {
                if (tok.Length == 4) throw RowError(lineNumber, col, null, $"malformed {FormatName} token '{tok}': empty qid");
                r.Values[Schema.UserIdIndex] = tok[4..];
                continue;
            }
            var parts = tok.Split(':');
            if (parts.Length != Parts)
                throw RowError(lineNumber, col, null,
                    $"malformed {FormatName} token '{tok}' (expected {(Parts == 2 ? "idx:val" : "field:idx:val")})");
            long field = 0;
            if (Parts == 3 && !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out field))
                throw RowError(lineNumber, col, null, $"malformed {FormatName} token '{tok}': field '{parts[0]}' is not a non-negative integer");
            var idxText = parts[Parts - 2];
            if (!long.TryParse(idxText, NumberStyles.None, CultureInfo.InvariantCulture, out long index))
                throw RowError(lineNumber, col, null, $"malformed {FormatName} token '{tok}': index '{idxText}' is not a non-negative integer");
            var valText = parts[Parts - 1];
            if (!double.TryParse(valText, NumberStyles.Float, CultureInfo.InvariantCulture, out double val) || !double.IsFinite(val))
                throw RowError(lineNumber, col, null, $"malformed {FormatName} token '{tok}': value '{valText}' is not a number");
            int f = FieldOf(field, index, out var problem);
            if (f < 0) throw RowError(lineNumber, col, null, $"{FormatName} token '{tok}': {problem}");
            var spec = Schema[f];
            switch (spec.Kind)
            {
                case FieldKind.Numeric:
                    if (!double.IsNaN(r.Numbers[f])) throw RowError(lineNumber, col, spec.Name, $"{FormatName} token '{tok}': numeric field '{spec.Name}' already has a value in this row");
                    r.Numbers[f] = val;
                    r.Values[f] = valText;
                    break;
                case FieldKind.Multi:
                    r.Values[f] = r.Values[f] is null ? idxText : r.Values[f] + spec.Separator + idxText;
                    break;
                default:
                    if (r.Values[f] is not null)
                        throw RowError(lineNumber, col, spec.Name,
                            $"{FormatName} token '{tok}': field '{spec.Name}' already has index {r.Values[f]} in this row (declare it multi-valued)");
                    r.Values[f] = idxText;
                    scales[f] = (float)val;
                    break;
            }
        }
        return r;
    }
}

/// <summary>libSVM / libFM reader (<c>label idx:val …</c>); fields come from <see cref="LibSvmOptions"/> index ranges.</summary>
public sealed class LibSvmReader : SparseReader
{
    private readonly LibSvmOptions _ranges;

    /// <summary>A reader of the libSVM/libFM file at <paramref name="path"/>; <paramref name="ranges"/> gives the schema and each field's index range.</summary>
    public LibSvmReader(string path, LibSvmOptions ranges, ReaderOptions? options = null)
        : base(path, (ranges ?? throw new ArgumentNullException(nameof(ranges))).Schema, options)
    {
        _ranges = ranges;
    }

    /// <inheritdoc/>
    protected override int Parts => 2;

    /// <inheritdoc/>
    protected override string FormatName => "libSVM";

    /// <inheritdoc/>
    protected override int FieldOf(long field, long index, out string problem)
    {
        int f = _ranges.FieldOf(index);
        problem = f < 0 ? $"index {index} is in no field's index range" : "";
        return f;
    }
}

/// <summary>
/// libFFM reader (<c>label field:idx:val …</c>). Field number k (0-based) is the k-th input field of the schema
/// (<see cref="Schema.InputIndices"/>); the index is the categorical value within that field.
/// </summary>
public sealed class LibFfmReader : SparseReader
{
    /// <summary>A reader of the libFFM file at <paramref name="path"/> with the fields of <paramref name="schema"/>.</summary>
    public LibFfmReader(string path, Schema schema, ReaderOptions? options = null) : base(path, schema, options) { }

    /// <inheritdoc/>
    protected override int Parts => 3;

    /// <inheritdoc/>
    protected override string FormatName => "libFFM";

    /// <inheritdoc/>
    protected override int FieldOf(long field, long index, out string problem)
    {
        if (field >= Schema.InputIndices.Count)
        {
            problem = $"field {field} is out of range (the schema has {Schema.InputIndices.Count} input fields, 0..{Schema.InputIndices.Count - 1})";
            return -1;
        }
        problem = "";
        return Schema.InputIndices[(int)field];
    }

    /// <summary>A schema of <paramref name="fieldCount"/> categorical fields <c>f0…</c> (values scale the embedding) and a label.</summary>
    public static Schema UniformSchema(int fieldCount, bool scaleByValue = true)
    {
        if (fieldCount < 1) throw new ArgumentException($"UniformSchema: fieldCount must be ≥ 1, got {fieldCount}.");
        var fields = new List<FieldSpec> { FieldSpec.Label() };
        for (int k = 0; k < fieldCount; k++) fields.Add(FieldSpec.Categorical("f" + k) with { ScaleByValue = scaleByValue });
        return new Schema(fields);
    }
}
