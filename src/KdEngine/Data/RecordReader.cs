using System.Globalization;
using System.Text;

namespace KdEngine.Data;

/// <summary>
/// Base of all readers: a re-enumerable stream of <see cref="RawRecord"/>s. Each enumeration reopens the file and
/// reads it line by line (never the whole file), so a file larger than memory can be read any number of times.
/// Lines may end in LF or CRLF; a trailing newline and blank lines are ignored. A file with no data row (empty, or
/// header only) is an error. Malformed rows throw <see cref="DataFormatException"/> with file, line and column, or
/// are skipped and counted under <see cref="BadRowPolicy.Skip"/>.
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
        SkippedRows = 0;
        RowsRead = 0;
        _skippedErrors.Clear();
        if (!File.Exists(FilePath)) throw new FileNotFoundException($"{FileName}: file not found ({FilePath})", FilePath);
        using var reader = new StreamReader(FilePath, Encoding.UTF8, detectEncodingFromByteOrderMarks: true, bufferSize: 1 << 16);
        var lines = new LineSource(reader, Options.MaxLineLength, FileName);
        Begin(lines);
        bool anyLine = lines.LinesRead > 0;
        while (lines.Next(out var line))
        {
            anyLine = true;
            RawRecord? record;
            try
            {
                record = ParseRow(line, lines.LineNumber);
            }
            catch (DataFormatException e) when (Options.BadRows == BadRowPolicy.Skip && e.Line is not null)
            {
                SkippedRows++;
                if (_skippedErrors.Count < Options.KeepSkippedErrors) _skippedErrors.Add(e);
                continue;
            }
            RowsRead++;
            yield return record;
        }
        if (!anyLine) throw new DataFormatException("the file is empty", FileName);
        if (RowsRead == 0 && SkippedRows == 0)
            throw new DataFormatException(HasHeaderLine ? "the file has a header but no data rows" : "the file has no data rows", FileName);
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Whether this reader consumed a header line in <see cref="Begin"/>.</summary>
    protected virtual bool HasHeaderLine => false;

    /// <summary>Called once per enumeration before the rows (reads a header, if any).</summary>
    protected virtual void Begin(LineSource lines) { }

    /// <summary>Parses one non-blank line; throws <see cref="DataFormatException"/> (with <c>line</c>) on a bad row.</summary>
    protected abstract RawRecord ParseRow(string line, long lineNumber);

    /// <summary>A <see cref="DataFormatException"/> for this file at <paramref name="line"/> and <paramref name="column"/> (1-based), field <paramref name="key"/>.</summary>
    protected DataFormatException RowError(long line, int? column, string? key, string problem) =>
        new(problem, FileName, line, column, key);

    /// <summary>Parses a label: 1 → 1; 0 and −1 → 0; anything else is a bad row.</summary>
    protected float ParseLabel(ReadOnlySpan<char> text, long line, int column)
    {
        string key = Schema[Schema.LabelIndex].Name;
        if (text.IsEmpty) throw RowError(line, column, key, "missing label");
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v))
            throw RowError(line, column, key, $"non-numeric label '{text}'");
        if (v == 1) return 1f;
        if (v == 0 || v == -1) return 0f;
        throw RowError(line, column, key, $"label {text} is outside the allowed set {{0, 1}} or {{-1, 1}}");
    }

    /// <summary>Parses a finite number (invariant culture); anything else is a bad row naming <paramref name="line"/>, <paramref name="column"/> and field <paramref name="key"/>.</summary>
    protected double ParseNumber(ReadOnlySpan<char> text, long line, int column, string key)
    {
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v))
            throw RowError(line, column, key, $"non-numeric value '{text}' in a numeric field");
        return v;
    }

    /// <summary>
    /// Reads non-blank lines and counts line numbers (1-based, blank lines included). Line ends are LF, CR or CRLF
    /// (as <see cref="TextReader.ReadLine"/>). A line longer than the limit given at construction (<c>maxLineLength</c>) is
    /// a <see cref="DataFormatException"/> raised after reading at most that many characters of it, so a file
    /// without line breaks (binary data, a wrong delimiter setting) cannot make the reader allocate without bound.
    /// </summary>
    protected sealed class LineSource
    {
        private readonly TextReader _reader;
        private readonly int _maxLineLength;
        private readonly string? _fileName;
        private readonly char[] _buffer = new char[1 << 14];
        private readonly System.Text.StringBuilder _line = new();
        private int _pos, _len;
        private bool _eof;
        private string? _last;
        private bool _pushedBack;

        /// <summary>Lines of <paramref name="reader"/>, each at most <paramref name="maxLineLength"/> characters; <paramref name="fileName"/> names the file in errors.</summary>
        public LineSource(TextReader reader, int maxLineLength = ReaderOptions.DefaultMaxLineLength, string? fileName = null)
        {
            if (maxLineLength < 1) throw new ArgumentOutOfRangeException(nameof(maxLineLength), maxLineLength, "the line length limit must be ≥ 1.");
            _reader = reader;
            _maxLineLength = maxLineLength;
            _fileName = fileName;
        }

        /// <summary>Makes the next <see cref="Next"/> return the last line again (a first line that is data, not a header).</summary>
        public void PushBack() => _pushedBack = _last is not null;

        /// <summary>1-based number of the line last returned (blank lines counted).</summary>
        public long LineNumber { get; private set; }

        /// <summary>Lines consumed so far (= <see cref="LineNumber"/>).</summary>
        public long LinesRead => LineNumber;

        /// <summary>The next non-blank line (without its line end); false at the end of the input.</summary>
        public bool Next(out string line)
        {
            if (_pushedBack) { _pushedBack = false; line = _last!; return true; }
            while (true)
            {
                var l = ReadLine();
                if (l is null) { line = ""; return false; }
                LineNumber++;
                if (l.Length == 0 || string.IsNullOrWhiteSpace(l)) continue;
                line = _last = l;
                return true;
            }
        }

        private string? ReadLine()
        {
            _line.Clear();
            while (true)
            {
                if (_pos == _len)
                {
                    if (_eof || (_len = _reader.Read(_buffer, 0, _buffer.Length)) == 0)
                    {
                        _eof = true;
                        _pos = _len = 0;
                        return _line.Length > 0 ? _line.ToString() : null;
                    }
                    _pos = 0;
                }
                var chunk = _buffer.AsSpan(_pos, _len - _pos);
                int end = chunk.IndexOfAny('\n', '\r');
                int take = end < 0 ? chunk.Length : end;
                if (_line.Length + take > _maxLineLength)
                    throw new DataFormatException(
                        $"line is longer than {_maxLineLength} characters (ReaderOptions.MaxLineLength); is this a text file with line breaks and the right delimiter?",
                        _fileName, LineNumber + 1);
                _line.Append(chunk[..take]);
                _pos += take;
                if (end < 0) continue;
                // A line end: consume CR, LF or CRLF (the LF may be in the next buffer).
                char c = _buffer[_pos++];
                if (c == '\r')
                {
                    if (_pos == _len && !_eof)
                    {
                        _len = _reader.Read(_buffer, 0, _buffer.Length);
                        _pos = 0;
                        if (_len == 0) _eof = true;
                    }
                    if (_pos < _len && _buffer[_pos] == '\n') _pos++;
                }
                return _line.ToString();
            }
        }
    }
}
