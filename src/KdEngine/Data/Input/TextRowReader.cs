namespace KdEngine.Data;

/// <summary>
/// Reads the data rows of one text file, or of a byte range of a plain file (see <see cref="LineChunkReader"/> for the
/// range rule), one at a time into a reused <see cref="RawRow"/>: blank lines skipped, a header consumed, bad rows
/// thrown or skipped and counted by <see cref="ReaderOptions.BadRows"/>. Single-threaded; the parallel pipeline
/// (<see cref="DataPasses"/>) runs the same parsers over chunks.
/// </summary>
public sealed class TextRowReader : IDisposable
{
    private readonly LineChunkReader _chunks;
    private readonly LineChunk _chunk = new();
    private readonly TextFormat _format;
    private readonly ReaderOptions _options;
    private readonly string _fileName;
    private readonly List<DataFormatException> _skippedErrors = new();
    private TextLayout? _layout;
    private TextRowParser? _parser;
    private int _pos, _end;          // the current chunk's unread lines: [_pos, _end)
    private long _lineOfPos;         // line number of the line at _pos (0: unknown)
    private long _chunkFirstLine;    // line number of the chunk's first line (0: unknown)
    private bool _headerPending;

    /// <param name="path">The file (plain or gzip).</param>
    /// <param name="format">How its lines are parsed.</param>
    /// <param name="options">Bad-row policy and line-length limit (null = <see cref="ReaderOptions.Default"/>).</param>
    /// <param name="start">Start of the byte range (plain files; 0 = the whole file).</param>
    /// <param name="end">End of the byte range (exclusive; <see cref="long.MaxValue"/> = the end of the file).</param>
    /// <param name="firstLine">Line number of the range's first line when known (0 = unknown).</param>
    /// <param name="chunkBytes">Bytes read per chunk.</param>
    /// <param name="layout">The file's layout when already known (byte ranges after the first: the header is at the
    /// file's start, outside the range). Null: read from the file's first non-blank line (which, when it is a header, is
    /// consumed); for a range starting past 0 it is read from the start of the file.</param>
    public TextRowReader(string path, TextFormat format, ReaderOptions? options = null, long start = 0, long end = long.MaxValue,
        long firstLine = 0, TextLayout? layout = null, int chunkBytes = 1 << 16)
    {
        ArgumentNullException.ThrowIfNull(format);
        _options = options ?? ReaderOptions.Default;
        _format = format;
        _fileName = Path.GetFileName(path);
        FilePath = path;
        _chunks = new LineChunkReader(path, start, end, firstLine, chunkBytes, _options.MaxLineLength);
        if (start > 0)
        {
            _layout = layout ?? LayoutOf(path, format, _options);
            if (_layout.HeaderConsumed) HeaderSeen = true;
        }
        else
        {
            _layout = layout;
            _headerPending = layout?.HeaderConsumed == true; // a known layout: its header line is still at the start
        }
        if (_layout is not null) _parser = format.CreateParser(_layout, _fileName);
    }

    /// <summary>The file read.</summary>
    public string FilePath { get; }

    /// <summary>The file's layout (known after the first non-blank line).</summary>
    public TextLayout? Layout => _layout;

    /// <summary>Data rows returned so far.</summary>
    public long RowsRead { get; private set; }

    /// <summary>Rows skipped so far (<see cref="BadRowPolicy.Skip"/>).</summary>
    public long SkippedRows { get; private set; }

    /// <summary>The first <see cref="ReaderOptions.KeepSkippedErrors"/> errors of skipped rows.</summary>
    public IReadOnlyList<DataFormatException> SkippedErrors => _skippedErrors;

    /// <summary>Whether any non-blank line was seen (a header counts).</summary>
    public bool AnyLine { get; private set; }

    /// <summary>Whether the file's first line was a header.</summary>
    public bool HeaderSeen { get; private set; }

    /// <summary>Bytes of the file consumed (compressed bytes for gzip) and their total: for progress.</summary>
    public long BytesRead => _chunks.BytesRead;

    /// <summary>Bytes of the file or range to read (compressed bytes for gzip).</summary>
    public long BytesTotal => _chunks.BytesTotal;

    /// <summary>The layout of <paramref name="path"/> from its first non-blank line (reads only that line).</summary>
    public static TextLayout LayoutOf(string path, TextFormat format, ReaderOptions? options = null)
    {
        options ??= ReaderOptions.Default;
        using var chunks = new LineChunkReader(path, 0, long.MaxValue, 1, 1 << 16, options.MaxLineLength);
        var chunk = new LineChunk(1 << 16);
        while (chunks.Read(chunk))
        {
            var cursor = new LineCursor(chunk.Bytes, chunk.FirstLine);
            while (cursor.Next(out var line))
            {
                CheckLength(line, cursor.LineNumber, options.MaxLineLength, Path.GetFileName(path));
                if (!LineText.IsBlank(line)) return format.Inspect(line, cursor.LineNumber, Path.GetFileName(path));
            }
        }
        throw new DataFormatException("the file is empty", Path.GetFileName(path));
    }

    internal static void CheckLength(ReadOnlySpan<byte> line, long lineNumber, int max, string fileName)
    {
        if (line.Length > max)
            throw new DataFormatException(
                $"line is longer than {max} bytes (ReaderOptions.MaxLineLength); is this a text file with line breaks and the right delimiter?",
                fileName, lineNumber > 0 ? lineNumber : null);
    }

    /// <summary>Reads the next data row into <paramref name="row"/>; false at the end.</summary>
    public bool Next(RawRow row)
    {
        while (true)
        {
            if (_pos >= _end)
            {
                // The next chunk; a range that learned its line numbers (after an error) keeps counting them.
                long next = _chunkFirstLine == 0 ? 0 : _chunkFirstLine + LineText.CountLineEnds(_chunk.Buffer.AsSpan(0, _end));
                if (!_chunks.Read(_chunk)) return false;
                _pos = 0;
                _end = _chunk.Length;
                _chunkFirstLine = _chunk.FirstLine != 0 ? _chunk.FirstLine : next;
                _lineOfPos = _chunkFirstLine;
            }
            // The cursor numbers lines from 1 within [_pos, _end); _lineOfPos (0: unknown) makes them absolute.
            var cursor = new LineCursor(_chunk.Buffer.AsSpan(_pos, _end - _pos), 1);
            while (cursor.Next(out var line))
            {
                long lineNumber = _lineOfPos == 0 ? 0 : _lineOfPos + cursor.LineNumber - 1;
                int lineStart = _pos + cursor.LineStart;
                if (line.Length > _options.MaxLineLength)
                    throw Locate(new DataFormatException($"line is longer than {_options.MaxLineLength} bytes (ReaderOptions.MaxLineLength); is this a text file with line breaks and the right delimiter?",
                        _fileName, lineNumber == 0 ? null : lineNumber), lineStart);
                if (LineText.IsBlank(line)) continue;
                AnyLine = true;
                if (_headerPending) { _headerPending = false; HeaderSeen = true; continue; }
                if (_parser is null)
                {
                    // The file's first non-blank line: a header or the first row (an error here is never skipped).
                    _layout = _format.Inspect(line, lineNumber, _fileName);
                    _parser = _format.CreateParser(_layout, _fileName);
                    if (_layout.HeaderConsumed) { HeaderSeen = true; continue; }
                }
                try
                {
                    _parser.Parse(_chunk.Buffer, lineStart, line.Length, row, lineNumber);
                }
                catch (DataFormatException e)
                {
                    var located = Locate(e, lineStart);
                    if (_options.BadRows == BadRowPolicy.Skip && located.Line is not null)
                    {
                        SkippedRows++;
                        if (_skippedErrors.Count < _options.KeepSkippedErrors) _skippedErrors.Add(located);
                        continue;
                    }
                    throw located;
                }
                _lineOfPos = _lineOfPos == 0 ? 0 : _lineOfPos + cursor.LineNumber;
                _pos += cursor.Position;
                RowsRead++;
                return true;
            }
            _pos = _end;
        }
    }

    /// <summary>Fills in the line number of an error in a range that does not know its first line: the lines before
    /// the chunk are counted once, and the reader knows its line numbers from then on.</summary>
    private DataFormatException Locate(DataFormatException e, int lineStartInChunk)
    {
        if (e.Line is not null) return e;
        if (_chunkFirstLine == 0)
        {
            _chunkFirstLine = LineChunkReader.LineNumberAt(FilePath, _chunk.FileOffset);
            _lineOfPos = _chunkFirstLine + LineText.CountLineEnds(_chunk.Buffer.AsSpan(0, _pos));
        }
        long line = _chunkFirstLine + LineText.CountLineEnds(_chunk.Buffer.AsSpan(0, lineStartInChunk));
        return new DataFormatException(e.Problem, e.File ?? _fileName, line, e.Column, e.Key, e.InnerException);
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _chunks.Dispose();
}
