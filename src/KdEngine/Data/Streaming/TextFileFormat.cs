using System.Collections.Concurrent;

namespace KdEngine.Data;

/// <summary>
/// Text files (any <see cref="TextFormat"/>: CSV/TSV, libSVM, libFFM), plain or gzip, for the streaming pipeline. A
/// plain file is cut into byte-range units; a gzip file is one unit. Each file's layout (header, delimiter, column map)
/// is read once from its first line, so units after the first parse with the header's column map.
/// </summary>
public sealed class TextFileFormat : RowFileFormat
{
    private readonly ConcurrentDictionary<string, TextLayout> _layouts = new(StringComparer.Ordinal);
    private readonly ConcurrentBag<LineChunk> _pool = new();

    /// <summary>Files of text in <paramref name="format"/> (plain or gzip).</summary>
    public TextFileFormat(TextFormat format) : base((format ?? throw new ArgumentNullException(nameof(format))).Schema)
    {
        Text = format;
    }

    /// <summary>The text format of every file.</summary>
    public TextFormat Text { get; }

    /// <inheritdoc/>
    public override string Name => Text.Name;

    /// <summary>The layout of a file (read from its first non-blank line once).</summary>
    public TextLayout LayoutOf(string path, ReaderOptions options) =>
        _layouts.GetOrAdd(Path.GetFullPath(path), _ => TextRowReader.LayoutOf(path, Text, options));

    /// <inheritdoc/>
    public override void Check(string path) => LayoutOf(path, ReaderOptions.Default);

    /// <inheritdoc/>
    public override IReadOnlyList<InputUnit> Units(string path, int fileIndex, long unitBytes)
    {
        long length = new FileInfo(path).Length;
        if (InputFiles.IsGzip(path) || length <= unitBytes) return [new InputUnit(fileIndex, 0, length)];
        var units = new List<InputUnit>();
        for (long s = 0; s < length; s += unitBytes) units.Add(new InputUnit(fileIndex, s, Math.Min(length, s + unitBytes)));
        return units;
    }

    /// <inheritdoc/>
    public override IEnumerable<RowChunk> ReadUnit(string path, int unitIndex, InputUnit unit, long firstLine, ReaderOptions options,
        int chunkBytes, Action<long>? nextLine)
    {
        var layout = LayoutOf(path, options);
        string name = Path.GetFileName(path);
        bool gzip = InputFiles.IsGzip(path);
        using var reader = new LineChunkReader(path, gzip ? 0 : unit.Start, gzip ? long.MaxValue : unit.End, firstLine, chunkBytes, options.MaxLineLength);
        bool headerPending = unit.Start == 0 && layout.HeaderConsumed;
        long rowInUnit = 0;      // data rows seen so far (row windows only)
        long ordinal = unit.FirstOrdinal; // the next chunk's first data row (hash-split units only)
        long consumed = reader.BytesRead;
        while (true)
        {
            var chunk = Rent(chunkBytes);
            if (!reader.Read(chunk)) { Return(chunk); break; }
            int start = 0, end = chunk.Length;
            long line = chunk.FirstLine;
            if (headerPending || unit.HasRowWindow)
            {
                // Walk the lines on this thread: drop the header, keep only the rows of the window.
                var cursor = new LineCursor(chunk.Bytes, 1);
                int keepFrom = -1, keepTo = end;
                long lineAtKeep = 0;
                bool windowDone = false;
                while (cursor.Next(out var l))
                {
                    if (LineText.IsBlank(l)) continue;
                    if (headerPending) { headerPending = false; continue; }
                    if (!unit.HasRowWindow) { keepFrom = cursor.LineStart; lineAtKeep = cursor.LineNumber; break; }
                    long r = rowInUnit++;
                    if (r < unit.RowFrom) continue;
                    if (r >= unit.RowTo) { keepTo = cursor.LineStart; windowDone = true; break; }
                    if (keepFrom < 0) { keepFrom = cursor.LineStart; lineAtKeep = cursor.LineNumber; }
                }
                if (keepFrom < 0) keepFrom = keepTo;
                start = keepFrom;
                end = Math.Max(keepTo, keepFrom);
                line = chunk.FirstLine == 0 ? 0 : chunk.FirstLine + lineAtKeep - 1;
                if (windowDone)
                {
                    long bytesW = reader.BytesRead - consumed;
                    consumed = reader.BytesRead;
                    if (end > start) yield return new TextChunk(this, chunk, start, end, line, layout, path, name, 0, null) { File = unit.File, Unit = unitIndex, SourceBytes = bytesW };
                    else Return(chunk);
                    break;
                }
            }
            long bytes = reader.BytesRead - consumed;
            consumed = reader.BytesRead;
            long first = ordinal;
            // A hash-split unit numbers its data rows here, on the reading thread, so each worker knows its rows' ordinals.
            if (unit.Filter is not null) ordinal += CountDataLines(chunk.Bytes[start..end]);
            if (end > start) yield return new TextChunk(this, chunk, start, end, line, layout, path, name, first, unit.Filter) { File = unit.File, Unit = unitIndex, SourceBytes = bytes };
            else Return(chunk);
        }
        nextLine?.Invoke(reader.NextLine);
    }

    /// <inheritdoc/>
    public override long UnitBytes(string path, InputUnit unit) => unit.End - unit.Start;

    /// <summary>Non-blank lines in <paramref name="bytes"/> (the data rows of a chunk whose header is already dropped).</summary>
    private static long CountDataLines(ReadOnlySpan<byte> bytes)
    {
        var cursor = new LineCursor(bytes, 1);
        long n = 0;
        while (cursor.Next(out var l))
            if (!LineText.IsBlank(l)) n++;
        return n;
    }

    private LineChunk Rent(int bytes)
    {
        if (_pool.TryTake(out var c)) return c;
        return new LineChunk(bytes);
    }

    internal void Return(LineChunk chunk)
    {
        if (_pool.Count < 64) _pool.Add(chunk);
    }

    /// <summary>
    /// One fast pass over a text file without parsing: the number of data rows (non-blank lines after the header), and
    /// functions giving the byte offset and line number where data row i starts (from an index kept every 4,096 rows,
    /// then a short scan). For gzip the offsets are not available (the file cannot be cut by bytes).
    /// </summary>
    internal (long Rows, Func<long, long> OffsetOf, Func<long, long> LineOf, bool Gzip) DataRowOffsets(string path, ReaderOptions options)
    {
        const int Every = 4096;
        var layout = LayoutOf(path, options);
        bool gzip = InputFiles.IsGzip(path);
        var offsets = new List<long>();
        var lines = new List<long>();
        long rows = 0;
        using (var reader = new LineChunkReader(path, 0, long.MaxValue, 1, LineChunkReader.DefaultChunkBytes, options.MaxLineLength))
        {
            var chunk = new LineChunk();
            bool header = layout.HeaderConsumed;
            while (reader.Read(chunk))
            {
                var cursor = new LineCursor(chunk.Bytes, chunk.FirstLine);
                while (cursor.Next(out var l))
                {
                    if (LineText.IsBlank(l)) continue;
                    if (header) { header = false; continue; }
                    if (rows % Every == 0)
                    {
                        offsets.Add(chunk.FileOffset + cursor.LineStart);
                        lines.Add(cursor.LineNumber);
                    }
                    rows++;
                }
            }
        }
        if (gzip) return (rows, _ => throw new NotSupportedException("gzip files are not cut by bytes."), _ => 0, true);

        // Offset and line number of data row i: from the index entry at or before it, count rows forward.
        (long Offset, long Line) Locate(long i)
        {
            int k = (int)(i / Every);
            long offset = offsets[k], line = lines[k], row = (long)k * Every;
            if (row == i) return (offset, line);
            using var reader = new LineChunkReader(path, offset, long.MaxValue, line, 1 << 16, options.MaxLineLength);
            var chunk = new LineChunk(1 << 16);
            while (reader.Read(chunk))
            {
                var cursor = new LineCursor(chunk.Bytes, chunk.FirstLine);
                while (cursor.Next(out var l))
                {
                    if (LineText.IsBlank(l)) continue;
                    if (row == i) return (chunk.FileOffset + cursor.LineStart, cursor.LineNumber);
                    row++;
                }
            }
            throw new InvalidOperationException($"data row {i} not found in {Path.GetFileName(path)} (the file changed while it was read?)");
        }
        return (rows, i => Locate(i).Offset, i => Locate(i).Line, false);
    }

    /// <summary>Lines [Start, End) of a pooled line chunk, parsed by a worker with the file's layout.</summary>
    private sealed class TextChunk(TextFileFormat owner, LineChunk chunk, int start, int end, long firstLine, TextLayout layout, string path, string fileName,
        long firstOrdinal, HashPartFilter? filter) : RowChunk
    {
        public override void Parse(ChunkWorker worker, IRowSink sink)
        {
            var parser = worker.Cached(layout, () => owner.Text.CreateParser(layout, fileName));
            var row = worker.Row;
            var buffer = chunk.Buffer;
            int max = worker.Options.MaxLineLength;
            var cursor = new LineCursor(buffer.AsSpan(start, end - start), 1);
            long baseLine = firstLine; // 0: unknown until an error needs it
            long ordinal = firstOrdinal;
            while (cursor.Next(out var line))
            {
                long lineNumber = baseLine == 0 ? 0 : baseLine + cursor.LineNumber - 1;
                int lineStart = start + cursor.LineStart;
                if (line.Length > max)
                    throw Located(new DataFormatException($"line is longer than {max} bytes (ReaderOptions.MaxLineLength); is this a text file with line breaks and the right delimiter?", fileName), lineStart);
                if (LineText.IsBlank(line)) continue;
                // A hash split's part neither parses nor counts the rows of the other parts.
                if (filter is not null && !filter.Keeps(ordinal++)) continue;
                try
                {
                    parser.Parse(buffer, lineStart, line.Length, row, lineNumber);
                }
                catch (DataFormatException e)
                {
                    worker.BadRow(e.Line is null ? Located(e, lineStart) : e);
                    continue;
                }
                worker.Rows++;
                sink.Row(row);
                row = worker.Flip();
            }
            sink.Flush();

            DataFormatException Located(DataFormatException e, int lineStart)
            {
                if (e.Line is not null) return e;
                if (baseLine == 0)
                {
                    // A range read without its first line number: count the file's lines up to this chunk (errors only).
                    baseLine = LineChunkReader.LineNumberAt(path, chunk.FileOffset) + LineText.CountLineEnds(buffer.AsSpan(0, start));
                }
                long line = baseLine + LineText.CountLineEnds(buffer.AsSpan(start, lineStart - start));
                return new DataFormatException(e.Problem, e.File ?? fileName, line, e.Column, e.Key, e.InnerException);
            }
        }

        public override void Release() => owner.Return(chunk);
    }
}
