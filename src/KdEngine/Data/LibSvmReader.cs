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
/// format) gives the user id when the schema has a userid field. Error columns count tokens (label = 1). The parsing
/// is <see cref="SparseFormat"/>.
/// </summary>
public abstract class SparseReader : RecordReader
{
    /// <summary>A reader of <paramref name="path"/> with the fields of <paramref name="schema"/>.</summary>
    protected SparseReader(string path, Schema schema, ReaderOptions? options) : base(path, schema, options) { }
}

/// <summary>libSVM / libFM reader (<c>label idx:val …</c>); fields come from <see cref="LibSvmOptions"/> index ranges.</summary>
public sealed class LibSvmReader : SparseReader
{
    /// <summary>A reader of the libSVM/libFM file at <paramref name="path"/>; <paramref name="ranges"/> gives the schema and each field's index range.</summary>
    public LibSvmReader(string path, LibSvmOptions ranges, ReaderOptions? options = null)
        : base(path, (ranges ?? throw new ArgumentNullException(nameof(ranges))).Schema, options)
    {
        Format = new SparseFormat(ranges);
    }

    /// <inheritdoc/>
    public override TextFormat Format { get; }
}

/// <summary>
/// libFFM reader (<c>label field:idx:val …</c>). Field number k (0-based) is the k-th input field of the schema
/// (<see cref="Schema.InputIndices"/>); the index is the categorical value within that field.
/// </summary>
public sealed class LibFfmReader : SparseReader
{
    /// <summary>A reader of the libFFM file at <paramref name="path"/> with the fields of <paramref name="schema"/>.</summary>
    public LibFfmReader(string path, Schema schema, ReaderOptions? options = null) : base(path, schema, options)
    {
        Format = new SparseFormat(schema);
    }

    /// <inheritdoc/>
    public override TextFormat Format { get; }

    /// <summary>A schema of <paramref name="fieldCount"/> categorical fields <c>f0…</c> (values scale the embedding) and a label.</summary>
    public static Schema UniformSchema(int fieldCount, bool scaleByValue = true)
    {
        if (fieldCount < 1) throw new ArgumentException($"UniformSchema: fieldCount must be ≥ 1, got {fieldCount}.");
        var fields = new List<FieldSpec> { FieldSpec.Label() };
        for (int k = 0; k < fieldCount; k++) fields.Add(FieldSpec.Categorical("f" + k) with { ScaleByValue = scaleByValue });
        return new Schema(fields);
    }
}
