namespace KdEngine.Data;

/// <summary>
/// One row as read from a file, before preprocessing. Arrays are indexed by schema field; a missing value is
/// <c>null</c> in <see cref="Values"/> and NaN in <see cref="Numbers"/>/<see cref="Scales"/>.
/// </summary>
public sealed class RawRecord
{
    /// <summary>An empty record for <paramref name="schema"/>: every value missing.</summary>
    public RawRecord(Schema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        Schema = schema;
        Values = new string?[schema.Count];
        Numbers = new double[schema.Count];
        Numbers.AsSpan().Fill(double.NaN);
    }

    /// <summary>The fields the arrays are indexed by.</summary>
    public Schema Schema { get; }

    /// <summary>0 or 1 (a −1 label was already mapped to 0).</summary>
    public float Label { get; set; }

    /// <summary>Raw text per field (categorical value, multi-valued list with its separator, number text, user id).</summary>
    public string?[] Values { get; }

    /// <summary>Parsed value per numeric field (NaN = missing or not numeric).</summary>
    public double[] Numbers { get; }

    /// <summary>libSVM/libFM/libFFM only: the <c>val</c> of each categorical field's <c>idx:val</c> (NaN = none); else null.</summary>
    public float[]? Scales { get; set; }

    /// <summary>File name and 1-based line the row came from (for error messages); null/0 when built in code.</summary>
    public string? File { get; init; }

    /// <summary>1-based line the row came from; 0 when the record was built in code.</summary>
    public long Line { get; init; }
}

/// <summary>What a reader does with a malformed row.</summary>
public enum BadRowPolicy
{
    /// <summary>Throw a <see cref="DataFormatException"/> naming file, line and column (the default).</summary>
    Throw,
    /// <summary>Skip the row and count it (<see cref="RecordReader.SkippedRows"/>, available after enumeration).</summary>
    Skip,
}

/// <summary>Options shared by all readers.</summary>
public sealed record ReaderOptions
{
    /// <summary>What to do with a malformed row: throw (the default) or skip and count it.</summary>
    public BadRowPolicy BadRows { get; init; } = BadRowPolicy.Throw;

    /// <summary>With <see cref="BadRowPolicy.Skip"/>: how many of the skipped rows' errors to keep for a report.</summary>
    public int KeepSkippedErrors { get; init; } = 20;

    /// <summary>Default of <see cref="MaxLineLength"/>: 1 MiB (a Criteo row is about 200 bytes).</summary>
    public const int DefaultMaxLineLength = 1 << 20;

    /// <summary>
    /// Longest accepted line, in bytes of UTF-8. A longer line fails with a <see cref="DataFormatException"/> after at
    /// most this many bytes are read (under every <see cref="BadRowPolicy"/>), which bounds the memory a
    /// reader uses on a file without line breaks. It also bounds a header's column count.
    /// </summary>
    public int MaxLineLength
    {
        get => _maxLineLength;
        init => _maxLineLength = value >= 1 ? value
            : throw new ArgumentOutOfRangeException(nameof(MaxLineLength), value, $"ReaderOptions.MaxLineLength must be ≥ 1, got {value}.");
    }

    private readonly int _maxLineLength = DefaultMaxLineLength;

    /// <summary>The default options: throw on a bad row, lines up to <see cref="DefaultMaxLineLength"/> characters.</summary>
    public static ReaderOptions Default { get; } = new();
}
