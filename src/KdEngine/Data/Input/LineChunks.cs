using System.Runtime.CompilerServices;

namespace KdEngine.Data;

/// <summary>
/// A run of whole lines read from a file: <see cref="Buffer"/>[0, <see cref="Length"/>) holds complete lines (each
/// ending in LF, CRLF or CR; only the file's last line may lack one), never part of a line. Made and refilled by
/// <see cref="LineChunkReader"/>; the buffer is reused.
/// </summary>
public sealed class LineChunk
{
    /// <summary>A chunk whose buffer starts at <paramref name="capacity"/> bytes (it grows for a line longer than that).</summary>
    public LineChunk(int capacity = LineChunkReader.DefaultChunkBytes) => Buffer = new byte[Math.Max(capacity, 64)];

    /// <summary>The chunk's bytes: whole lines in [0, <see cref="Length"/>).</summary>
    public byte[] Buffer { get; internal set; }

    /// <summary>Bytes of whole lines in <see cref="Buffer"/>.</summary>
    public int Length { get; internal set; }

    /// <summary>1-based number of the chunk's first line in its file (blank lines and the header counted), or 0 when unknown
    /// (a byte range read without its base line number; see <see cref="LineChunkReader"/>).</summary>
    public long FirstLine { get; internal set; }

    /// <summary>Offset of <see cref="Buffer"/>[0] in the (uncompressed) file.</summary>
    public long FileOffset { get; internal set; }

    /// <summary>The chunk's lines: <see cref="Buffer"/>[0, <see cref="Length"/>).</summary>
    public ReadOnlySpan<byte> Bytes => Buffer.AsSpan(0, Length);
}

/// <summary>
/// Reads a text file, plain or gzip (detected from its first two bytes), as <see cref="LineChunk"/>s of about
/// <c>chunkBytes</c> bytes of whole lines, or exactly the lines of a byte range of a plain file.
/// <para>Byte ranges [start, end): the range starts at the first line beginning at or after <c>start</c> (a line cut
/// by <c>start</c> belongs to the previous range) and includes the line that straddles <c>end</c>. A line begins at
/// offset 0 (after a UTF-8 byte-order mark) and after each line end (LF, CRLF or CR), so any set of cut points tiles
/// the file: every line is read by exactly one range.</para>
/// <para>A line longer than <c>maxLineLength</c> bytes is a <see cref="DataFormatException"/>, raised after at most
/// that many bytes of it are buffered: memory stays bounded on a file without line breaks.</para>
/// </summary>
public sealed class LineChunkReader : IDisposable
{
    /// <summary>Default chunk size: 1 MiB (about 3,000 Criteo rows).</summary>
    public const int DefaultChunkBytes = 1 << 20;

    private readonly Stream _stream;
    private readonly GzipReader? _gzip;
    private readonly string _fileName;
    private readonly long _end;
    private readonly int _chunkBytes;
    private readonly int _maxLineLength;
    private byte[] _carry = new byte[4096];
    private int _carryLength;
    private long _offset;          // file offset of the next chunk's first byte (= the carry's first byte)
    private long _line;            // line number of the next chunk's first line (0: unknown)
    private bool _skipPartialLine; // a range starting inside a line drops the rest of it first
    private bool _eof, _finished;

    /// <param name="path">The file; gzip when it starts with the gzip magic bytes.</param>
    /// <param name="start">Start of the byte range (plain files only; 0 for gzip).</param>
    /// <param name="end">End of the byte range (exclusive; <see cref="long.MaxValue"/> = the end of the file).</param>
    /// <param name="firstLine">Line number of the range's first line when the caller knows it; 0 = unknown
    /// (computed by <see cref="LineNumberAt"/> only when an error needs it). Ignored (1) when <paramref name="start"/> is 0.</param>
    /// <param name="chunkBytes">Bytes per chunk (a chunk holds whole lines only, so it can be a line longer).</param>
    /// <param name="maxLineLength">Longest line accepted (bytes); a longer one is a <see cref="DataFormatException"/>.</param>
    public LineChunkReader(string path, long start = 0, long end = long.MaxValue, long firstLine = 0,
        int chunkBytes = DefaultChunkBytes, int maxLineLength = ReaderOptions.DefaultMaxLineLength)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (start < 0 || end < start) throw new ArgumentOutOfRangeException(nameof(start), $"byte range [{start}, {end}) is invalid.");
        if (chunkBytes < 64) throw new ArgumentOutOfRangeException(nameof(chunkBytes), chunkBytes, "chunks must be ≥ 64 bytes.");
        if (maxLineLength < 1) throw new ArgumentOutOfRangeException(nameof(maxLineLength), maxLineLength, "the line length limit must be ≥ 1.");
        FilePath = path;
        _fileName = Path.GetFileName(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{_fileName}: file not found ({Path.GetFullPath(path)})", path);
        _end = end;
        _chunkBytes = chunkBytes;
        _maxLineLength = maxLineLength;
        IsGzip = InputFiles.IsGzip(path);
        if (IsGzip)
        {
            if (start > 0) throw new ArgumentException($"{_fileName}: a gzip file cannot be read from byte {start}; read it whole (its byte ranges are not seekable).");
            _gzip = new GzipReader(path);
            _stream = _gzip;
        }
        else
        {
            var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            Length = fs.Length;
            if (start > 0)
            {
                fs.Position = start - 1;
                _offset = start - 1;
                _skipPartialLine = true; // drops bytes up to the first line start ≥ start (see ReadChunk)
            }
            _stream = fs;
        }
        _line = start == 0 ? 1 : Math.Max(firstLine, 0);
        StartOffset = start;
        if (start == 0) SkipByteOrderMark();
    }

    /// <summary>The file read.</summary>
    public string FilePath { get; }

    /// <summary>Whether the file is gzip (it starts with the gzip magic bytes).</summary>
    public bool IsGzip { get; }

    /// <summary>Plain files: the file length; gzip: unknown (−1).</summary>
    public long Length { get; } = -1;

    /// <summary>Start of the byte range read (0 for a whole file).</summary>
    public long StartOffset { get; }

    /// <summary>Bytes of the file consumed so far (compressed bytes for gzip): for progress.</summary>
    public long BytesRead => _gzip is not null ? _gzip.CompressedPosition : _offset + _carryLength;

    /// <summary>Line number of the next line to be read (after the end: of the line after the range), or 0 when unknown.</summary>
    public long NextLine => _line;

    /// <summary>Size of what <see cref="BytesRead"/> counts towards (the compressed size for gzip).</summary>
    public long BytesTotal => _gzip is not null ? _gzip.CompressedLength : Math.Min(Length, _end == long.MaxValue ? Length : _end);

    /// <summary>Fills <paramref name="chunk"/> with the next whole lines; false at the end of the file or range.</summary>
    public bool Read(LineChunk chunk)
    {
        if (_finished) return false;
        var buf = chunk.Buffer;
        if (buf.Length < Math.Max(_chunkBytes, _carryLength + 64)) buf = chunk.Buffer = new byte[Math.Max(_chunkBytes, _carryLength * 2)];
        _carry.AsSpan(0, _carryLength).CopyTo(buf);
        int filled = _carryLength;
        long chunkOffset = _offset;
        while (true)
        {
            // Fill the buffer (a read may return less than asked: keep reading until full or at the end).
            while (!_eof && filled < buf.Length)
            {
                int n = _stream.Read(buf, filled, buf.Length - filled);
                if (n == 0) _eof = true;
                filled += n;
            }
            if (_skipPartialLine)
            {
                int s = FirstLineStartAtOrAfter(buf, 1, filled, _eof);
                if (s < 0)
                {
                    // No line start yet: drop what was read (it belongs to the previous range) but keep a final CR.
                    int keep = filled > 0 && buf[filled - 1] == (byte)'\r' ? 1 : 0;
                    if (keep == 1) buf[0] = (byte)'\r';
                    chunkOffset += filled - keep;
                    filled = keep;
                    if (_eof) { _finished = true; _offset = chunkOffset; _carryLength = 0; return false; }
                    continue;
                }
                buf.AsSpan(s, filled - s).CopyTo(buf);
                chunkOffset += s;
                filled -= s;
                _skipPartialLine = false;
            }
            if (filled == 0) { _finished = true; _offset = chunkOffset; _carryLength = 0; return false; }
            int cut = _eof ? filled : EndOfLastLine(buf.AsSpan(0, filled));
            if (cut == 0)
            {
                // One line fills the buffer: grow it up to the line length limit.
                if (filled > _maxLineLength) throw LineTooLong(_line);
                var bigger = new byte[(int)Math.Min((long)buf.Length * 2, (long)_maxLineLength + 2)];
                buf.AsSpan(0, filled).CopyTo(bigger);
                buf = chunk.Buffer = bigger;
                continue;
            }
            if (_end != long.MaxValue && chunkOffset + cut > _end)
            {
                // Lines starting at or after the range end belong to the next range.
                int r = (int)Math.Max(_end - chunkOffset, 0);
                cut = r == 0 ? 0 : LineStartAtOrAfter(buf, r, cut);
                _finished = true;
            }
            else if (_eof && cut == filled) _finished = true;
            // Keep the rest (a partial line) for the next chunk.
            int rest = filled - cut;
            if (rest > _carry.Length) _carry = new byte[Math.Max(rest, _carry.Length * 2)];
            buf.AsSpan(cut, rest).CopyTo(_carry);
            _carryLength = _finished ? 0 : rest;
            chunk.Length = cut;
            chunk.FileOffset = chunkOffset;
            chunk.FirstLine = _line;
            _offset = chunkOffset + cut;
            if (_line > 0) _line += LineText.CountLineEnds(buf.AsSpan(0, cut));
            if (cut == 0) return false;
            return true;
        }
    }

    /// <summary>
    /// The 1-based number of the line starting at <paramref name="offset"/> of a plain file: counts line ends before it
    /// (one pass over the file up to there; for error messages of byte-range reads that do not know their base).
    /// </summary>
    public static long LineNumberAt(string path, long offset)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        var buf = new byte[1 << 20];
        long lines = 1, pos = 0;
        bool pendingCr = false;
        while (pos < offset)
        {
            int n = fs.Read(buf, 0, (int)Math.Min(buf.Length, offset - pos));
            if (n == 0) break;
            var span = buf.AsSpan(0, n);
            if (pendingCr && span[0] == (byte)'\n') lines--; // the CR counted before was the first half of a CRLF
            lines += LineText.CountLineEnds(span);
            pendingCr = span[^1] == (byte)'\r';
            pos += n;
        }
        return lines;
    }

    private void SkipByteOrderMark()
    {
        Span<byte> bom = stackalloc byte[3];
        int n = 0;
        while (n < 3)
        {
            int r = _stream.Read(bom[n..]);
            if (r == 0) { _eof = true; break; }
            n += r;
        }
        if (n == 3 && bom[0] == 0xEF && bom[1] == 0xBB && bom[2] == 0xBF)
        {
            _offset = 3;
            return;
        }
        // Not a byte-order mark: the bytes are the start of the data.
        bom[..n].CopyTo(_carry);
        _carryLength = n;
    }

    /// <summary>The first line start at or after index <paramref name="from"/> (≥ 1) of buf[0, filled), or −1 if none is certain yet.</summary>
    private static int FirstLineStartAtOrAfter(byte[] buf, int from, int filled, bool eof)
    {
        if (from >= filled) return eof ? filled : -1;
        if (IsLineStartAt(buf, from, filled)) return from;
        return NextLineStart(buf, from, filled, eof);
    }

    // Position p (≥ 1) starts a line when the byte before ends one: LF, or CR not followed by LF.
    private static bool IsLineStartAt(byte[] buf, int p, int filled) =>
        buf[p - 1] == (byte)'\n' || (buf[p - 1] == (byte)'\r' && p < filled && buf[p] != (byte)'\n');

    /// <summary>The start of the line after the one containing index <paramref name="from"/>, or −1 if not in buf[0, filled) yet.</summary>
    private static int NextLineStart(byte[] buf, int from, int filled, bool eof)
    {
        var span = buf.AsSpan(from, filled - from);
        int t = span.IndexOfAny((byte)'\n', (byte)'\r');
        if (t < 0) return eof ? filled : -1;
        int p = from + t;
        if (buf[p] == (byte)'\n') return p + 1;
        if (p + 1 < filled) return buf[p + 1] == (byte)'\n' ? p + 2 : p + 1;
        return eof ? p + 1 : -1;
    }

    /// <summary>Within whole lines buf[0, cut): the first line start at or after <paramref name="r"/> (cut when none).</summary>
    private static int LineStartAtOrAfter(byte[] buf, int r, int cut)
    {
        if (r >= cut) return cut;
        if (buf[r - 1] == (byte)'\n' || (buf[r - 1] == (byte)'\r' && buf[r] != (byte)'\n')) return r;
        int s = NextLineStart(buf, r, cut, eof: true);
        return Math.Min(s, cut);
    }

    /// <summary>Index just after the last complete line end of <paramref name="data"/> (0 if none). A CR at the very end
    /// may be half of a CRLF, so it ends a line only once the next byte is known.</summary>
    private static int EndOfLastLine(ReadOnlySpan<byte> data)
    {
        int limit = data.Length;
        while (true)
        {
            int t = data[..limit].LastIndexOfAny((byte)'\n', (byte)'\r');
            if (t < 0) return 0;
            if (data[t] == (byte)'\n') return t + 1;
            if (t + 1 < data.Length) return t + 1; // a CR followed by a non-LF byte
            limit = t;                             // a final CR: undecided, look before it
        }
    }

    private DataFormatException LineTooLong(long line) => new(
        $"line is longer than {_maxLineLength} bytes (ReaderOptions.MaxLineLength); is this a text file with line breaks and the right delimiter?",
        _fileName, line > 0 ? line : null);

    /// <summary>Closes the file.</summary>
    public void Dispose() => _stream.Dispose();
}

/// <summary>Line helpers over UTF-8 bytes.</summary>
public static class LineText
{
    /// <summary>Number of line ends (LF, CRLF, or a lone CR) in <paramref name="bytes"/> (vectorized counts).</summary>
    public static long CountLineEnds(ReadOnlySpan<byte> bytes)
    {
        long lf = bytes.Count((byte)'\n');
        int crAt = bytes.IndexOf((byte)'\r');
        if (crAt < 0) return lf;
        long cr = bytes[crAt..].Count((byte)'\r');
        long crlf = 0;
        var rest = bytes[crAt..];
        while (true)
        {
            int i = rest.IndexOf("\r\n"u8);
            if (i < 0) break;
            crlf++;
            rest = rest[(i + 2)..];
        }
        return lf + cr - crlf;
    }

    /// <summary>True when the line holds only whitespace (ASCII, or any Unicode whitespace once decoded).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsBlank(ReadOnlySpan<byte> line)
    {
        if (line.IsEmpty) return true;
        byte b = line[0];
        if (b > 0x20 && b < 0x80) return false; // the common case: a line starting with a visible ASCII character
        return IsBlankSlow(line);
    }

    private static bool IsBlankSlow(ReadOnlySpan<byte> line)
    {
        foreach (byte b in line)
        {
            if (b is (byte)' ' or (byte)'\t' or (byte)'\v' or (byte)'\f') continue;
            if (b < 0x80) return false;
            return string.IsNullOrWhiteSpace(System.Text.Encoding.UTF8.GetString(line));
        }
        return true;
    }
}

/// <summary>Walks the lines of a <see cref="LineChunk"/> (or any buffer of whole lines), counting line numbers.</summary>
public ref struct LineCursor
{
    private readonly ReadOnlySpan<byte> _data;
    private int _pos;

    /// <summary>A cursor over <paramref name="data"/> (whole lines) whose first line has number <paramref name="firstLine"/>.</summary>
    public LineCursor(ReadOnlySpan<byte> data, long firstLine)
    {
        _data = data;
        _pos = 0;
        LineNumber = firstLine - 1;
        LineStart = 0;
    }

    /// <summary>Number of the line last returned (0-based count + first line; 0-based garbage when the first line is unknown (0)).</summary>
    public long LineNumber { get; private set; }

    /// <summary>Offset of the line last returned within the data.</summary>
    public int LineStart { get; private set; }

    /// <summary>Offset just after the last returned line's end (where the next line starts).</summary>
    public readonly int Position => _pos;

    /// <summary>The next line (without its line end), blank lines included; false at the end.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Next(out ReadOnlySpan<byte> line)
    {
        if (_pos >= _data.Length) { line = default; return false; }
        var rest = _data[_pos..];
        int t = rest.IndexOfAny((byte)'\n', (byte)'\r');
        LineNumber++;
        LineStart = _pos;
        if (t < 0)
        {
            line = rest;
            _pos = _data.Length;
            return true;
        }
        line = rest[..t];
        _pos += t + (rest[t] == (byte)'\r' && t + 1 < rest.Length && rest[t + 1] == (byte)'\n' ? 2 : 1);
        return true;
    }
}

/// <summary>Expands input patterns (files, globs, brace ranges) and tells plain from gzip files.</summary>
public static class InputFiles
{
    /// <summary>True when the file starts with the gzip magic bytes 1f 8b.</summary>
    public static bool IsGzip(string path)
    {
        Span<byte> magic = stackalloc byte[2];
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
        return fs.Read(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    }

    /// <summary>
    /// Expands each pattern, in order, into files: brace alternatives and ranges first (<c>day_{0..20}.tsv.gz</c>,
    /// <c>{a,b}.csv</c>, zero-padded <c>{00..09}</c>), then <c>*</c> and <c>?</c> in the file-name part (matches sorted
    /// ordinally). A pattern with no wildcard must name an existing file; a wildcard that matches nothing is an error
    /// naming the pattern. A file named twice is read twice.
    /// </summary>
    public static IReadOnlyList<string> Expand(IEnumerable<string> patterns)
    {
        ArgumentNullException.ThrowIfNull(patterns);
        var files = new List<string>();
        foreach (var pattern in patterns)
        {
            if (string.IsNullOrWhiteSpace(pattern)) throw new ArgumentException("an input pattern is empty.");
            foreach (var p in ExpandBraces(pattern))
            {
                if (p.IndexOfAny(['*', '?']) < 0)
                {
                    if (!File.Exists(p)) throw new FileNotFoundException($"{Path.GetFileName(p)}: data file not found ({Path.GetFullPath(p)}).", p);
                    files.Add(p);
                    continue;
                }
                var dir = Path.GetDirectoryName(p);
                var name = Path.GetFileName(p);
                if (dir is not null && dir.IndexOfAny(['*', '?']) >= 0)
                    throw new ArgumentException($"input pattern '{pattern}': wildcards are supported in the file name only, not in folders.");
                string folder = string.IsNullOrEmpty(dir) ? "." : dir;
                if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"input pattern '{pattern}': folder '{folder}' not found.");
                var matches = Directory.GetFiles(folder, name).Where(f => WildcardMatch(Path.GetFileName(f), name))
                    .Select(f => string.IsNullOrEmpty(dir) ? Path.GetFileName(f) : Path.Combine(dir, Path.GetFileName(f)))
                    .Order(StringComparer.Ordinal).ToArray();
                if (matches.Length == 0) throw new FileNotFoundException($"input pattern '{pattern}' matches no file.");
                files.AddRange(matches);
            }
        }
        if (files.Count == 0) throw new ArgumentException("no input file given.");
        return files;
    }

    /// <summary>Expands the first brace group of <paramref name="pattern"/> recursively (bash style).</summary>
    public static IEnumerable<string> ExpandBraces(string pattern)
    {
        int open = pattern.IndexOf('{');
        if (open < 0) return [pattern];
        int close = pattern.IndexOf('}', open);
        if (close < 0) throw new ArgumentException($"input pattern '{pattern}': '{{' without a closing '}}'.");
        string head = pattern[..open], body = pattern[(open + 1)..close], tail = pattern[(close + 1)..];
        var alternatives = new List<string>();
        int dots = body.IndexOf("..", StringComparison.Ordinal);
        if (dots > 0 && !body.Contains(','))
        {
            string a = body[..dots], b = body[(dots + 2)..];
            if (!long.TryParse(a, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long from)
                || !long.TryParse(b, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long to))
                throw new ArgumentException($"input pattern '{pattern}': '{{{body}}}' is not a range of integers like {{0..20}}.");
            if (Math.Abs(to - from) > 1_000_000) throw new ArgumentException($"input pattern '{pattern}': the range {{{body}}} is too long.");
            int width = (a.Length > 1 && a[0] == '0') || (b.Length > 1 && b[0] == '0') ? Math.Max(a.Length, b.Length) : 0;
            long step = from <= to ? 1 : -1;
            for (long v = from; ; v += step)
            {
                alternatives.Add(width > 0 ? v.ToString("D" + width, System.Globalization.CultureInfo.InvariantCulture) : v.ToString(System.Globalization.CultureInfo.InvariantCulture));
                if (v == to) break;
            }
        }
        else alternatives.AddRange(body.Split(','));
        return alternatives.SelectMany(alt => ExpandBraces(head + alt + tail));
    }

    private static bool WildcardMatch(string name, string pattern)
    {
        // Directory.GetFiles also matches 8.3 short names and has quirks with '?'; match again exactly.
        int n = 0, p = 0, star = -1, mark = 0;
        while (n < name.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || pattern[p] == name[n])) { n++; p++; }
            else if (p < pattern.Length && pattern[p] == '*') { star = p++; mark = n; }
            else if (star >= 0) { p = star + 1; n = ++mark; }
            else return false;
        }
        while (p < pattern.Length && pattern[p] == '*') p++;
        return p == pattern.Length;
    }
}
