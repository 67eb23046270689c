using System.Buffers.Binary;
using System.IO.Compression;

namespace KdEngine.Data;

/// <summary>
/// Reads a gzip file (RFC 1952), one member after another (concatenated members, as written by <c>cat a.gz b.gz</c>
/// or bgzip, are one stream), and checks every member's trailer: its CRC-32 and length must match the bytes
/// decompressed. <see cref="GZipStream"/> alone accepts a file cut short (a partial download) silently and returns
/// fewer bytes; here the end of a member without its trailer is a <see cref="DataFormatException"/> naming the file,
/// the compressed offset where the member started and where the data ends, and how many bytes were decompressed.
/// </summary>
/// <remarks>
/// Each member's deflate data is inflated by <see cref="DeflateStream"/> (the runtime's zlib) over
/// <see cref="TrackingStream"/>, which remembers which compressed bytes it handed out. When the inflater stops, the
/// 8-byte trailer lies in the last bytes handed out (the inflater reads ahead into its buffer), so it is found by
/// trying each candidate position there: a candidate is the trailer when both its CRC-32 and its length match
/// (a chance match is ~2⁻⁶⁴) and it is followed by the end of the file, zero padding or the next member's header.
/// </remarks>
public sealed class GzipReader : Stream
{
    private readonly FileStream _file;
    private readonly string _fileName;
    private readonly long _length;
    private TrackingStream? _tracking;
    private DeflateStream? _inflater;
    private long _memberStart;
    private uint _crc;
    private long _memberBytes;
    private long _totalBytes;
    private bool _done;

    /// <summary>Opens the gzip file at <paramref name="path"/> (read through a buffer of <paramref name="bufferSize"/> bytes).</summary>
    public GzipReader(string path, int bufferSize = 1 << 16)
    {
        ArgumentNullException.ThrowIfNull(path);
        _fileName = System.IO.Path.GetFileName(path);
        _file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize, FileOptions.SequentialScan);
        _length = _file.Length;
        if (_length == 0) _done = true; // an empty .gz file reads as empty (the reader reports "the file is empty")
        else StartMember(0);
    }

    /// <summary>Uncompressed bytes returned so far.</summary>
    public long UncompressedPosition => _totalBytes;

    /// <summary>Compressed bytes read from the file so far (for progress: the file's size is the total).</summary>
    public long CompressedPosition => _tracking?.Position ?? _length;

    /// <summary>The compressed file's length.</summary>
    public long CompressedLength => _length;

    /// <inheritdoc/>
    public override bool CanRead => true;
    /// <inheritdoc/>
    public override bool CanSeek => false;
    /// <inheritdoc/>
    public override bool CanWrite => false;
    /// <inheritdoc/>
    public override long Length => throw new NotSupportedException();
    /// <inheritdoc/>
    public override long Position { get => _totalBytes; set => throw new NotSupportedException(); }
    /// <inheritdoc/>
    public override void Flush() { }
    /// <inheritdoc/>
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    /// <inheritdoc/>
    public override void SetLength(long value) => throw new NotSupportedException();
    /// <inheritdoc/>
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    /// <inheritdoc/>
    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    /// <inheritdoc/>
    public override int Read(Span<byte> destination)
    {
        while (!_done)
        {
            int n;
            try { n = _inflater!.Read(destination); }
            catch (InvalidDataException e)
            {
                throw Error($"corrupt gzip data in the member starting at byte {_memberStart} (compressed offset ≈ {_tracking!.Position}, after {_totalBytes} uncompressed bytes): {e.Message}", e);
            }
            if (n > 0)
            {
                _crc = Crc32.Update(_crc, destination[..n]);
                _memberBytes += n;
                _totalBytes += n;
                return n;
            }
            FinishMember();
        }
        return 0;
    }

    private void StartMember(long start)
    {
        _memberStart = start;
        long dataStart = ParseHeader(start);
        _tracking = new TrackingStream(_file, dataStart);
        _inflater?.Dispose();
        _inflater = new DeflateStream(_tracking, CompressionMode.Decompress, leaveOpen: true);
        _crc = 0;
        _memberBytes = 0;
    }

    /// <summary>The inflater stopped: find this member's trailer, then the next member (or the end).</summary>
    private void FinishMember()
    {
        var t = _tracking!;
        // The deflate data ends inside the last chunk handed out (or exactly at its end).
        long from = Math.Max(t.DataStart, t.LastChunkStart), to = t.Position;
        Span<byte> trailer = stackalloc byte[8];
        for (long p = from; p <= to; p++)
        {
            if (p + 8 > _length) break;
            RandomAccess.Read(_file.SafeFileHandle, trailer, p);
            if (BinaryPrimitives.ReadUInt32LittleEndian(trailer) != _crc) continue;
            if (BinaryPrimitives.ReadUInt32LittleEndian(trailer[4..]) != (uint)_memberBytes) continue;
            long next = p + 8;
            if (next == _length || IsZeroPadding(next)) { _done = true; return; }
            if (!StartsMember(next)) continue;
            StartMember(next);
            return;
        }
        if (_length >= 8)
        {
            RandomAccess.Read(_file.SafeFileHandle, trailer, _length - 8);
            if (BinaryPrimitives.ReadUInt32LittleEndian(trailer[4..]) == (uint)_memberBytes && BinaryPrimitives.ReadUInt32LittleEndian(trailer) != _crc)
                throw Error($"corrupt gzip data: the CRC-32 in the trailer at byte {_length - 8} does not match the {_memberBytes} bytes of the member starting at byte {_memberStart}");
        }
        if (to >= _length)
            throw Error($"truncated gzip data: the member starting at byte {_memberStart} has no trailer; the file ends at byte {_length} " +
                $"after {_totalBytes} uncompressed bytes (an interrupted download or copy?)");
        throw Error($"corrupt gzip data: the member starting at byte {_memberStart} ends near byte {to} without a valid trailer (CRC-32 / length mismatch) " +
            $"after {_totalBytes} uncompressed bytes");
    }

    private bool IsZeroPadding(long from)
    {
        Span<byte> buf = stackalloc byte[4096];
        for (long p = from; p < _length; p += buf.Length)
        {
            int n = RandomAccess.Read(_file.SafeFileHandle, buf, p);
            if (n <= 0) break;
            if (buf[..n].ContainsAnyExcept((byte)0)) return false;
        }
        return true;
    }

    private bool StartsMember(long at)
    {
        Span<byte> magic = stackalloc byte[3];
        return RandomAccess.Read(_file.SafeFileHandle, magic, at) == 3 && magic[0] == 0x1f && magic[1] == 0x8b && magic[2] == 8;
    }

    /// <summary>Parses a member header at <paramref name="at"/>; returns where its deflate data starts.</summary>
    private long ParseHeader(long at)
    {
        Span<byte> h = stackalloc byte[10];
        if (RandomAccess.Read(_file.SafeFileHandle, h, at) < 10)
            throw Error($"truncated gzip data: the member header at byte {at} is cut off (the file ends at byte {_length})");
        if (h[0] != 0x1f || h[1] != 0x8b)
            throw Error(at == 0 ? "not a gzip file (no 1f 8b magic bytes at the start)" : $"corrupt gzip data: no member header at byte {at} (trailing bytes after the last member?)");
        if (h[2] != 8) throw Error($"gzip member at byte {at}: compression method {h[2]} is not deflate (8)");
        byte flags = h[3];
        if ((flags & 0xE0) != 0) throw Error($"gzip member at byte {at}: reserved header flags 0x{flags:x2} are set");
        long p = at + 10;
        Span<byte> two = stackalloc byte[2];
        if ((flags & 0x04) != 0) // FEXTRA: 2-byte length, then that many bytes
        {
            if (RandomAccess.Read(_file.SafeFileHandle, two, p) < 2) throw Error($"truncated gzip data: the member header at byte {at} is cut off");
            p += 2 + BinaryPrimitives.ReadUInt16LittleEndian(two);
        }
        if ((flags & 0x08) != 0) p = SkipZeroTerminated(p, at); // FNAME
        if ((flags & 0x10) != 0) p = SkipZeroTerminated(p, at); // FCOMMENT
        if ((flags & 0x02) != 0) p += 2;                        // FHCRC
        if (p > _length) throw Error($"truncated gzip data: the member header at byte {at} is cut off (the file ends at byte {_length})");
        return p;
    }

    private long SkipZeroTerminated(long p, long member)
    {
        Span<byte> buf = stackalloc byte[256];
        while (true)
        {
            int n = RandomAccess.Read(_file.SafeFileHandle, buf, p);
            if (n <= 0) throw Error($"truncated gzip data: the member header at byte {member} is cut off");
            int z = buf[..n].IndexOf((byte)0);
            if (z >= 0) return p + z + 1;
            p += n;
        }
    }

    private DataFormatException Error(string problem, Exception? inner = null) => new(problem, _fileName, inner: inner);

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _inflater?.Dispose();
            _file.Dispose();
        }
        base.Dispose(disposing);
    }

    /// <summary>A read-only view of the file from a start offset that remembers the range of the last read.</summary>
    private sealed class TrackingStream(FileStream file, long dataStart) : Stream
    {
        public long DataStart { get; } = dataStart;
        public long LastChunkStart { get; private set; } = dataStart;
        private long _position = dataStart;

        public override long Position { get => _position; set => throw new NotSupportedException(); }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> destination)
        {
            if (file.Position != _position) file.Position = _position;
            int n = file.Read(destination);
            if (n > 0)
            {
                LastChunkStart = _position;
                _position += n;
            }
            return n;
        }
    }
}

/// <summary>CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) as gzip uses it; slicing-by-8 tables.</summary>
internal static class Crc32
{
    private static readonly uint[] Table = Build();

    private static uint[] Build()
    {
        var t = new uint[8 * 256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        for (int i = 0; i < 256; i++)
            for (int s = 1; s < 8; s++)
                t[s * 256 + i] = (t[(s - 1) * 256 + i] >> 8) ^ t[t[(s - 1) * 256 + i] & 0xFF];
        return t;
    }

    /// <summary>Continues a CRC (0 to start) over <paramref name="data"/>.</summary>
    public static uint Update(uint crc, ReadOnlySpan<byte> data)
    {
        var t = Table;
        uint c = ~crc;
        int i = 0;
        for (; i + 8 <= data.Length; i += 8)
        {
            uint lo = BinaryPrimitives.ReadUInt32LittleEndian(data[i..]) ^ c;
            uint hi = BinaryPrimitives.ReadUInt32LittleEndian(data[(i + 4)..]);
            c = t[7 * 256 + (lo & 0xFF)] ^ t[6 * 256 + ((lo >> 8) & 0xFF)] ^ t[5 * 256 + ((lo >> 16) & 0xFF)] ^ t[4 * 256 + (lo >> 24)]
              ^ t[3 * 256 + (hi & 0xFF)] ^ t[2 * 256 + ((hi >> 8) & 0xFF)] ^ t[1 * 256 + ((hi >> 16) & 0xFF)] ^ t[hi >> 24];
        }
        for (; i < data.Length; i++) c = t[(c ^ data[i]) & 0xFF] ^ (c >> 8);
        return ~c;
    }
}
