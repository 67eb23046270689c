using System.Globalization;

namespace KdEngine.Data;

/// <summary>
/// Base of all readers: a re-enumerable stream of <see cref="RawRecord"/>s. Each enumeration reopens the file (plain or
/// gzip) and reads it chunk by chunk (never the whole file), so a file larger than memory can be read any number of
/// times. Lines may end in LF, CRLF or CR; a trailing newline and blank lines are ignored. A file with no data row
/// (empty, or header only) is an error. Malformed rows throw <see cref="DataFormatException"/> with file, line and
/// column, or are skipped and counted under <see cref="BadRowPolicy.Skip"/>.
/// <para>The parsing itself is a <see cref="TextFormat"/> over UTF-8 bytes (<see cref="Format"/>);
/// <see cref="Rows"/> yields the reused span-based <see cref="RawRow"/> without a string per cell, while enumerating
/// <see cref="RawRecord"/>s copies each row into strings (convenient for small files and tests).</para>
/// </summary>
public abstract class RecordReader : IEnumerable<RawRecord>
{
    private readonly List<DataFormatException> _skippedErrors = new();

    /// <summary>A reader of <paramref name="path"/> with the fields of <paramref name="schema"/> (the file is opened on each enumeration).</summary>
    protected RecordReader(string path, Schema schema, ReaderOptions? options)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(schema);
        FilePath = path;
        FileName = System.IO.Path.GetFileName(path);
        Schema = schema;
        Options = options ?? ReaderOptions.Default;
    }

    /// <summary>The path as given.</summary>
    public string FilePath { get; }

    /// <summary>The file name used in error messages.</summary>
    public string FileName { get; }

    /// <summary>The fields each record is read into.</summary>
    public Schema Schema { get; }

    /// <summary>Bad-row policy and line-length limit.</summary>
    public ReaderOptions Options { get; }

    /// <summary>The span parser behind this reader (also used by the parallel pipeline).</summary>
    public abstract TextFormat Format { get; }

    /// <summary>Rows skipped by the last (or current) enumeration under <see cref="BadRowPolicy.Skip"/>.</summary>
    public long SkippedRows { get; private set; }

    /// <summary>Data rows returned by the last (or current) enumeration.</summary>
    public long RowsRead { get; private set; }

    /// <summary>The first <see cref="ReaderOptions.KeepSkippedErrors"/> errors of skipped rows.</summary>
    public IReadOnlyList<DataFormatException> SkippedErrors => _skippedErrors;

    /// <summary>
    /// Opens the file and reads it row by row. Throws <see cref="FileNotFoundException"/> for a missing file and
    /// <see cref="DataFormatException"/> for an empty file, a file without data rows, or a bad row (unless skipped).
    /// </summary>
    public IEnumerator<RawRecord> GetEnumerator()
    {
        foreach (var row in Rows()) yield return row.ToRecord();
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>
    /// The rows as one reused <see cref="RawRow"/> (overwritten by the next row): the allocation-free way to read.
    /// Same checks and counts as enumerating records.
    /// </summary>
    public IEnumerable<RawRow> Rows()
    {
        SkippedRows = 0;
        RowsRead = 0;
        _skippedErrors.Clear();
        if (!File.Exists(FilePath)) throw new FileNotFoundException($"{FileName}: file not found ({FilePath})", FilePath);
        return Iterate();
    }

    /// <summary>
    /// The rows of the lines that begin in bytes [<paramref name="start"/>, <paramref name="end"/>) of the file, which
    /// must both be line starts (or the file's end); <paramref name="linesBefore"/> lines precede the range, so errors
    /// name the file's own line numbers. A header, when the format has one, is read from the start of the file (and
    /// is a row of no range). An empty range yields nothing: it is one range of many, checked as a whole by the caller.
    /// This is the reading half of a byte-range split (each process of a data-parallel run reads only its range).
    /// </summary>
    public IEnumerable<RawRecord> ReadRange(long start, long end, long linesBefore)
    {
        if (start < 0 || end < start) throw new ArgumentOutOfRangeException(nameof(start), $"{FileName}: byte range [{start}, {end}) is not a range.");
        SkippedRows = 0;
        RowsRead = 0;
        _skippedErrors.Clear();
        if (!File.Exists(FilePath)) throw new FileNotFoundException($"{FileName}: file not found ({FilePath})", FilePath);
        return IterateRange(start, end, linesBefore);
    }

    private IEnumerable<RawRecord> IterateRange(long start, long end, long linesBefore)
    {
        if (start == end) yield break;
        using var reader = new TextRowReader(FilePath, Format, Options, start, end, firstLine: linesBefore + 1);
        var row = new RawRow(Schema);
        while (true)
        {
            bool more;
            try { more = reader.Next(row); }
            finally
            {
                SkippedRows = reader.SkippedRows;
                for (int i = _skippedErrors.Count; i < reader.SkippedErrors.Count; i++) _skippedErrors.Add(reader.SkippedErrors[i]);
            }
            if (!more) break;
            RowsRead = reader.RowsRead;
            yield return row.ToRecord();
        }
    }

    private IEnumerable<RawRow> Iterate()
    {
        using var reader = new TextRowReader(FilePath, Format, Options);
        var row = new RawRow(Schema);
        while (true)
        {
            bool more;
            try { more = reader.Next(row); }
            finally
            {
                SkippedRows = reader.SkippedRows;
                for (int i = _skippedErrors.Count; i < reader.SkippedErrors.Count; i++) _skippedErrors.Add(reader.SkippedErrors[i]);
            }
            if (!more) break;
            RowsRead = reader.RowsRead;
            yield return row;
        }
        if (!reader.AnyLine) throw new DataFormatException("the file is empty", FileName);
        if (RowsRead == 0 && SkippedRows == 0)
            throw new DataFormatException(reader.HeaderSeen ? "the file has a header but no data rows" : "the file has no data rows", FileName);
    }
}
