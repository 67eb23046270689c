namespace KdEngine.Data;

/// <summary>Options of <see cref="DelimitedReader"/>.</summary>
public sealed record DelimitedOptions
{
    /// <summary>Column separator; null = detect from the first line (a tab → TSV, otherwise a comma).</summary>
    public char? Delimiter { get; init; }

    /// <summary>
    /// True: the first line names the columns, schema fields are matched by name, extra columns are ignored
    /// (e.g. Avazu's <c>id</c>). False: columns map to schema fields by position and their count must match.
    /// </summary>
    public bool HasHeader { get; init; } = true;

    /// <summary>
    /// Decide per file: the first non-blank line is a header when it starts with the label field's name (Criteo's
    /// Kaggle CSV has one, the original TSV has not). Overrides <see cref="HasHeader"/>.
    /// </summary>
    public bool DetectHeader { get; init; }
}

/// <summary>
/// CSV/TSV reader for Criteo (with or without header) and any delimited file described by a <see cref="Schema"/>.
/// <para>Quoting (minimal RFC 4180): a field that starts with <c>"</c> runs to the closing <c>"</c>, may contain the
/// delimiter, and writes a quote as <c>""</c>; the closing quote must be followed by the delimiter or the end of
/// the line. Quoted fields spanning lines are not supported (reported as an unterminated quote). An empty field
/// is a missing value; other whitespace is kept (numbers may have surrounding spaces). The parsing is
/// <see cref="DelimitedFormat"/>.</para>
/// </summary>
public sealed class DelimitedReader : RecordReader
{
    /// <summary>A reader of the delimited file at <paramref name="path"/> with the fields of <paramref name="schema"/> (the file is opened on each enumeration, not here).</summary>
    public DelimitedReader(string path, Schema schema, DelimitedOptions? delimited = null, ReaderOptions? options = null)
        : base(path, schema, options)
    {
        Format = new DelimitedFormat(schema, delimited);
    }

    /// <inheritdoc/>
    public override TextFormat Format { get; }
}

/// <summary>Opens Criteo files: the Kaggle CSV with header <c>label,I1..I13,C1..C26</c> or the original headerless TSV.</summary>
public static class CriteoReader
{
    /// <summary>
    /// Opens <paramref name="path"/> with <see cref="Schema.Criteo"/>. A first line starting with <c>label</c> is a
    /// header (matched by name); otherwise the 40 columns are positional. The delimiter is detected (tab or comma).
    /// </summary>
    public static DelimitedReader Open(string path, ReaderOptions? options = null, Bucketing bucketing = Bucketing.LogSquared) =>
        new(path, Schema.Criteo(bucketing), new DelimitedOptions { DetectHeader = true }, options);
}
