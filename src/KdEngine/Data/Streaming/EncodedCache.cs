using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace KdEngine.Data;

/// <summary>A cache that no longer matches its data files or preprocessing; the message says what changed.</summary>
public sealed class StaleCacheException(string message) : Exception(message);

/// <summary>
/// The encoded rows of an input set in one binary file (layout in docs/formats.md): a 64-byte preamble, row groups of
/// fixed-width little-endian columns (labels, ids, dense scales, user ids, multi-valued CSR), and a JSON header at the
/// end describing the source files (path, size, modification time, SHA-256 of their first and last 64 KiB), the units,
/// the preprocessing (its SHA-256, and its JSON so a later run can skip fitting) and the row groups. Opened memory-mapped:
/// reading a batch copies rows straight from the page cache, and no text is parsed again. <see cref="CheckFresh"/>
/// refuses a cache whose files or preprocessing changed (<see cref="StaleCacheException"/>): a stale cache is never used
/// silently. Written to a temporary file and renamed, so a cache is complete or absent.
/// </summary>
public sealed unsafe class EncodedCache : IDisposable
{
    /// <summary>The cache files' extension.</summary>
    public const string Extension = ".kdcache";
    private const ulong Magic = 0x4548_4341_4345_444B; // "KDECACHE" little-endian
    private const int PreambleBytes = 64;
    private const int FormatVersion = 1;
    private const int FingerprintBytes = 64 << 10;

    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly CacheGroup[] _groups;
    private readonly long[] _groupStarts; // first row of each group, then the total

    private EncodedCache(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* basePtr, CacheHeader header, FeatureSpace space)
    {
        Path = path;
        _map = map;
        _view = view;
        _base = basePtr;
        Header = header;
        Space = space;
        _groups = new CacheGroup[header.RowGroups.Length];
        _groupStarts = new long[_groups.Length + 1];
        for (int g = 0; g < _groups.Length; g++)
        {
            _groups[g] = new CacheGroup(this, header.RowGroups[g], _groupStarts[g]);
            _groupStarts[g + 1] = _groupStarts[g] + header.RowGroups[g].Rows;
        }
    }

    /// <summary>The cache file.</summary>
    public string Path { get; }

    /// <summary>The feature space of the cached rows.</summary>
    public FeatureSpace Space { get; }

    internal CacheHeader Header { get; }

    /// <summary>Encoded rows in the cache.</summary>
    public long Rows => Header.Rows;

    /// <summary>The preprocessing the rows were encoded with (JSON), when the cache stores it.</summary>
    public string? PreprocessingJson => Header.Preprocessing;

    /// <summary>The options the stored preprocessing was fitted with (null when not stored).</summary>
    public PreprocessorOptions? FitOptions => Header.FitOptions is { } o ? new PreprocessorOptions { MinCount = o[0], MaxVocab = o[1], HashBuckets = o[2] } : null;

    // ---------------------------------------------------------------- writing

    /// <summary>
    /// Writes the blocks (in file order: the rows of <paramref name="input"/>, encoded with <paramref name="preprocessor"/>)
    /// as a cache at <paramref name="path"/>. <paramref name="fitOptions"/>: the options the preprocessing was fitted with on
    /// this very input (stored, so a later run with the same options can reuse it); null when it was fitted elsewhere.
    /// </summary>
    public static long Write(string path, InputSet input, Preprocessor preprocessor, IEnumerable<IRowBlock> blocks, PreprocessorOptions? fitOptions = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(preprocessor);
        ArgumentNullException.ThrowIfNull(blocks);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("the encoded cache is written on little-endian machines only.");
        var space = preprocessor.FeatureSpace;
        int f = space.FieldCount, multi = space.MultiFields.Count;
        string tmp = path + ".tmp-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        var groups = new List<CacheRowGroup>();
        long rows = 0;
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                fs.Write(new byte[PreambleBytes]);
                var scratch = new GroupScratch();
                foreach (var block in blocks)
                {
                    int n = block.Count;
                    if (n == 0) continue;
                    long offset = fs.Position;
                    var multiCounts = new long[multi];
                    // Each column of the group, 64-byte aligned: labels [n], ids [n, F], dense [n, F], users [n], then per
                    // multi-valued field its offsets [n + 1] (relative to the group) and ids.
                    var labels = scratch.Floats(n);
                    for (int i = 0; i < n; i++) labels[i] = block.Label(i);
                    WriteSection(fs, System.Runtime.InteropServices.MemoryMarshal.AsBytes(labels.AsSpan(0, n)));
                    var ids = scratch.Ints((long)n * f);
                    for (int i = 0; i < n; i++) block.RowIds(i).CopyTo(ids.AsSpan(i * f, f));
                    WriteSection(fs, System.Runtime.InteropServices.MemoryMarshal.AsBytes(ids.AsSpan(0, n * f)));
                    if (space.HasDenseValues)
                    {
                        var dense = scratch.Floats((long)n * f);
                        for (int i = 0; i < n; i++) block.RowDense(i).CopyTo(dense.AsSpan(i * f, f));
                        WriteSection(fs, System.Runtime.InteropServices.MemoryMarshal.AsBytes(dense.AsSpan(0, n * f)));
                    }
                    if (space.HasUserIds)
                    {
                        var users = scratch.Ints(n);
                        for (int i = 0; i < n; i++) users[i] = block.UserId(i);
                        WriteSection(fs, System.Runtime.InteropServices.MemoryMarshal.AsBytes(users.AsSpan(0, n)));
                    }
                    for (int k = 0; k < multi; k++)
                    {
                        var offsets = scratch.Offsets(n + 1);
                        offsets[0] = 0;
                        for (int i = 0; i < n; i++) offsets[i + 1] = checked(offsets[i] + block.MultiIds(k, i).Length);
                        WriteSection(fs, System.Runtime.InteropServices.MemoryMarshal.AsBytes(offsets.AsSpan(0, n + 1)));
                        int m = offsets[n];
                        var values = scratch.Ints(m);
                        for (int i = 0; i < n; i++) block.MultiIds(k, i).CopyTo(values.AsSpan(offsets[i]));
                        WriteSection(fs, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan(0, m)));
                        multiCounts[k] = m;
                    }
                    Pad(fs);
                    groups.Add(new CacheRowGroup(offset, n, multiCounts));
                    rows += n;
                }
                if (input.Rows is null) throw new InvalidOperationException("EncodedCache.Write: the input's unit row counts are unknown; write the cache from a pass in file order.");
                long headerOffset = fs.Position;
                var header = new CacheHeader
                {
                    Rows = rows,
                    Fields = f,
                    Dense = space.HasDenseValues,
                    UserIds = space.HasUserIds,
                    MultiFields = multi,
                    Source = SourceOf(input),
                    PreprocessingSha256 = Sha256(preprocessor.ToJson()),
                    Preprocessing = fitOptions is null ? null : preprocessor.ToJson(),
                    FitOptions = fitOptions is null ? null : [fitOptions.MinCount, fitOptions.MaxVocab, fitOptions.HashBuckets],
                    RowGroups = groups.ToArray(),
                };
                var json = JsonSerializer.SerializeToUtf8Bytes(header, HeaderJson);
                fs.Write(json);
                // The preamble last: a file whose preamble is still zeros is not a cache.
                var pre = new byte[PreambleBytes];
                BinaryPrimitives.WriteUInt64LittleEndian(pre, Magic);
                BinaryPrimitives.WriteInt32LittleEndian(pre.AsSpan(8), FormatVersion);
                BinaryPrimitives.WriteInt64LittleEndian(pre.AsSpan(16), headerOffset);
                BinaryPrimitives.WriteInt64LittleEndian(pre.AsSpan(24), json.Length);
                BinaryPrimitives.WriteInt64LittleEndian(pre.AsSpan(32), rows);
                BinaryPrimitives.WriteInt32LittleEndian(pre.AsSpan(40), f);
                BinaryPrimitives.WriteInt32LittleEndian(pre.AsSpan(44), multi);
                BinaryPrimitives.WriteInt32LittleEndian(pre.AsSpan(48), (space.HasDenseValues ? 1 : 0) | (space.HasUserIds ? 2 : 0));
                fs.Position = 0;
                fs.Write(pre);
                fs.Flush(true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
        return rows;
    }

    /// <summary>Reusable column buffers for writing a row group.</summary>
    private sealed class GroupScratch
    {
        private float[] _floats = [];
        private int[] _ints = [];

        public float[] Floats(long n) => _floats.Length >= n ? _floats : _floats = new float[Math.Max(n, _floats.Length * 2)];

        private int[] _offsets = [];

        public int[] Ints(long n) => _ints.Length >= n ? _ints : _ints = new int[Math.Max(n, _ints.Length * 2)];

        public int[] Offsets(long n) => _offsets.Length >= n ? _offsets : _offsets = new int[Math.Max(n, _offsets.Length * 2)];
    }

    private static void WriteSection(FileStream fs, ReadOnlySpan<byte> bytes)
    {
        Pad(fs);
        fs.Write(bytes);
    }

    /// <summary>Zero bytes up to the next multiple of 64 (each column starts cache-line aligned).</summary>
    private static void Pad(FileStream fs)
    {
        int pad = (int)((64 - fs.Position % 64) % 64);
        if (pad > 0) fs.Write(stackalloc byte[pad]);
    }

    // ---------------------------------------------------------------- opening and checking

    /// <summary>
    /// The preprocessing a cache stores with the options it was fitted with (both null when it stores none), read from the
    /// header alone: a later run compares the options and, when they match, needs no fit.
    /// </summary>
    public static (string? Json, PreprocessorOptions? FitOptions) StoredPreprocessing(string path)
    {
        var (header, _, _) = ReadHeader(path);
        return header.Preprocessing is null || header.FitOptions is not { Length: 3 } o ? (null, null)
            : (header.Preprocessing, new PreprocessorOptions { MinCount = o[0], MaxVocab = o[1], HashBuckets = o[2] });
    }

    /// <summary>Opens a cache (memory-mapped) for <paramref name="space"/>; a damaged or foreign file is an error naming it.</summary>
    public static EncodedCache Open(string path, FeatureSpace space)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(space);
        string name = System.IO.Path.GetFileName(path);
        var (header, headerOffset, f) = ReadHeader(path);
        int multi = header.MultiFields;
        if (f != space.FieldCount || multi != space.MultiFields.Count || header.Dense != space.HasDenseValues || header.UserIds != space.HasUserIds)
            throw new StaleCacheException($"{name}: the cache holds {f} fields + {multi} multi-valued ({(header.Dense ? "with" : "without")} dense values), the preprocessing gives {space.FieldCount} + {space.MultiFields.Count}.");
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* ptr = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref ptr);
        return new EncodedCache(path, map, view, ptr + view.PointerOffset, header, space);
    }

    /// <summary>Reads and checks the preamble, the JSON header and the row-group table.</summary>
    private static (CacheHeader Header, long HeaderOffset, int Fields) ReadHeader(string path)
    {
        string name = System.IO.Path.GetFileName(path);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("the encoded cache is read on little-endian machines only.");
        long length = new FileInfo(path).Length;
        if (length < PreambleBytes) throw new StaleCacheException($"{name}: not an encoded cache (too short).");
        var pre = new byte[PreambleBytes];
        using (var fs = File.OpenRead(path)) fs.ReadExactly(pre);
        if (BinaryPrimitives.ReadUInt64LittleEndian(pre) != Magic) throw new StaleCacheException($"{name}: not an encoded cache (no KDECACHE magic).");
        int version = BinaryPrimitives.ReadInt32LittleEndian(pre.AsSpan(8));
        if (version != FormatVersion) throw new StaleCacheException($"{name}: cache format version {version}, this build reads {FormatVersion}.");
        long headerOffset = BinaryPrimitives.ReadInt64LittleEndian(pre.AsSpan(16)), headerLength = BinaryPrimitives.ReadInt64LittleEndian(pre.AsSpan(24));
        if (headerOffset < PreambleBytes || headerLength <= 0 || headerOffset + headerLength != length)
            throw new StaleCacheException($"{name}: damaged cache (header at {headerOffset}, {headerLength} bytes, in a file of {length}).");
        CacheHeader header;
        try
        {
            var json = new byte[headerLength];
            using (var fs = File.OpenRead(path)) { fs.Position = headerOffset; fs.ReadExactly(json); }
            header = JsonSerializer.Deserialize<CacheHeader>(json, HeaderJson) ?? throw new JsonException("null header");
        }
        catch (JsonException e) { throw new StaleCacheException($"{name}: damaged cache header ({e.Message})."); }
        long rows = BinaryPrimitives.ReadInt64LittleEndian(pre.AsSpan(32));
        int f = BinaryPrimitives.ReadInt32LittleEndian(pre.AsSpan(40)), multi = BinaryPrimitives.ReadInt32LittleEndian(pre.AsSpan(44));
        if (header.Rows != rows || header.Fields != f || header.MultiFields != multi)
            throw new StaleCacheException($"{name}: damaged cache (preamble and header disagree).");
        // Every row group must lie inside the data section with the sizes its counts imply.
        long sum = 0, end = PreambleBytes;
        foreach (var g in header.RowGroups)
        {
            if (g.Rows <= 0 || g.Offset < end || g.MultiIds.Length != multi || g.MultiIds.Any(m => m < 0))
                throw new StaleCacheException($"{name}: damaged cache (row group at {g.Offset}).");
            end = g.Offset + GroupBytes(g, f, header.Dense, header.UserIds);
            if (end > headerOffset) throw new StaleCacheException($"{name}: damaged cache (row group at {g.Offset} runs past the data).");
            sum += g.Rows;
        }
        if (sum != rows) throw new StaleCacheException($"{name}: damaged cache (row groups hold {sum} rows, the header says {rows}).");
        if (header.Source.Units.Sum(u => u.Rows) != rows || header.Source.Units.Any(u => u.Rows < 0))
            throw new StaleCacheException($"{name}: damaged cache (the units' rows do not add up to {rows}).");
        return (header, headerOffset, f);
    }

    /// <summary>
    /// Throws <see cref="StaleCacheException"/> unless the cache was made from exactly these files and units (same paths,
    /// sizes, modification times and first/last 64 KiB) and encoded with <paramref name="preprocessorJson"/>.
    /// </summary>
    public void CheckFresh(InputSet input, string preprocessorJson)
    {
        string name = System.IO.Path.GetFileName(Path);
        var now = SourceOf(input);
        var then = Header.Source;
        if (then.Files.Length != now.Files.Length)
            throw new StaleCacheException($"{name} is stale: it was made from {then.Files.Length} file(s), the input now has {now.Files.Length}.");
        for (int i = 0; i < now.Files.Length; i++)
        {
            var a = then.Files[i];
            var b = now.Files[i];
            string what = a.Path != b.Path ? $"file {i + 1} was {a.Path}, now {b.Path}"
                : a.Size != b.Size ? $"{b.Path} changed size ({a.Size} → {b.Size} bytes)"
                : a.Modified != b.Modified ? $"{b.Path} was modified ({a.Modified} → {b.Modified})"
                : a.HeadSha256 != b.HeadSha256 || a.TailSha256 != b.TailSha256 ? $"{b.Path} changed content"
                : "";
            if (what.Length > 0) throw new StaleCacheException($"{name} is stale: {what}.");
        }
        if (!then.Units.Select(u => u with { Rows = 0 }).SequenceEqual(now.Units.Select(u => u with { Rows = 0 }))) throw new StaleCacheException($"{name} is stale: the input is cut into other units (another split or unit size).");
        if (Header.PreprocessingSha256 != Sha256(preprocessorJson)) throw new StaleCacheException($"{name} is stale: it was encoded with other preprocessing.");
    }

    // ---------------------------------------------------------------- reading

    /// <summary>
    /// The rows in <paramref name="unitOrder"/> of the input units (null: file order), as views of the mapped row groups
    /// (valid while the cache is open). The units' rows are those the cache was written with, so the order and the
    /// <see cref="IRowBlock.FirstRow"/> ordinals equal those of <see cref="DataPasses.Encode"/> over the text.
    /// </summary>
    public IEnumerable<IRowBlock> Blocks(int[]? unitOrder = null)
    {
        if (unitOrder is null)
        {
            foreach (var g in _groups) yield return g;
            yield break;
        }
        var units = Header.Source.Units;
        var starts = new long[units.Length + 1];
        for (int u = 0; u < units.Length; u++) starts[u + 1] = starts[u] + units[u].Rows;
        foreach (int u in unitOrder)
        {
            long from = starts[u], to = starts[u + 1];
            int g = Array.BinarySearch(_groupStarts, from);
            if (g < 0) g = ~g - 1;
            for (; from < to && g < _groups.Length; g++)
            {
                long gs = _groupStarts[g], ge = _groupStarts[g + 1];
                if (ge <= from) continue;
                int s = (int)(from - gs), n = (int)(Math.Min(ge, to) - from);
                yield return s == 0 && n == _groups[g].Count ? _groups[g] : new RowBlockSlice(_groups[g], s, n);
                from += n;
            }
        }
    }

    /// <summary>The rows of each unit as the cache records them (for shuffling units and progress).</summary>
    public long[] UnitRows => Header.Source.Units.Select(u => u.Rows).ToArray();

    /// <summary>Unmaps and closes the file.</summary>
    public void Dispose()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }

    private static long GroupBytes(CacheRowGroup g, int f, bool dense, bool users)
    {
        long n = g.Rows, size = 0;
        size = Align(size + 4 * n);                 // labels
        size = Align(size + 4 * n * f);             // ids
        if (dense) size = Align(size + 4 * n * f);
        if (users) size = Align(size + 4 * n);
        foreach (long m in g.MultiIds) size = Align(Align(size + 4 * (n + 1)) + 4 * m);
        return size;
    }

    private static long Align(long v) => (v + 63) & ~63L;

    /// <summary>A row group mapped in memory: column pointers into the file.</summary>
    private sealed class CacheGroup : IRowBlock
    {
        private readonly int _f;
        private readonly float* _labels;
        private readonly int* _ids;
        private readonly float* _dense;
        private readonly int* _users;
        private readonly int*[] _multiOffsets;
        private readonly int*[] _multiIds;

        public CacheGroup(EncodedCache cache, CacheRowGroup g, long firstRow)
        {
            _f = cache.Header.Fields;
            Count = g.Rows;
            FirstRow = firstRow;
            byte* p = cache._base + g.Offset;
            long at = 0, n = g.Rows;
            _labels = (float*)(p + at); at = Align(at + 4 * n);
            _ids = (int*)(p + at); at = Align(at + 4 * n * _f);
            if (cache.Header.Dense) { _dense = (float*)(p + at); at = Align(at + 4 * n * _f); }
            if (cache.Header.UserIds) { _users = (int*)(p + at); at = Align(at + 4 * n); }
            _multiOffsets = new int*[g.MultiIds.Length];
            _multiIds = new int*[g.MultiIds.Length];
            for (int k = 0; k < g.MultiIds.Length; k++)
            {
                _multiOffsets[k] = (int*)(p + at); at = Align(at + 4 * (n + 1));
                _multiIds[k] = (int*)(p + at); at = Align(at + 4 * g.MultiIds[k]);
            }
        }

        public int Count { get; }
        public long FirstRow { get; }
        public ReadOnlySpan<int> RowIds(int row) => new(_ids + (long)row * _f, _f);
        public float Label(int row) => _labels[row];
        public ReadOnlySpan<float> RowDense(int row) => _dense is null ? default : new ReadOnlySpan<float>(_dense + (long)row * _f, _f);
        public int UserId(int row) => _users is null ? -1 : _users[row];
        public ReadOnlySpan<int> MultiIds(int field, int row)
        {
            int s = _multiOffsets[field][row], e = _multiOffsets[field][row + 1];
            return new ReadOnlySpan<int>(_multiIds[field] + s, e - s);
        }
    }

    // ---------------------------------------------------------------- header

    internal static CacheSource SourceOf(InputSet input)
    {
        var files = input.Files.Select(FileFingerprint).ToArray();
        var units = input.Units.Select((u, i) => new CacheUnit(u.File, u.Start, u.End, u.RowFrom, u.RowTo == long.MaxValue ? -1 : u.RowTo, input.RowsOf(i))).ToArray();
        return new CacheSource(input.Format.Name, files, units);
    }

    private static CacheFile FileFingerprint(string path)
    {
        var info = new FileInfo(path);
        using var fs = File.OpenRead(path);
        var head = new byte[(int)Math.Min(FingerprintBytes, info.Length)];
        fs.ReadExactly(head);
        var tail = new byte[(int)Math.Min(FingerprintBytes, info.Length)];
        fs.Position = info.Length - tail.Length;
        fs.ReadExactly(tail);
        return new CacheFile(System.IO.Path.GetFullPath(path), info.Length, info.LastWriteTimeUtc.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
            Convert.ToHexStringLower(SHA256.HashData(head)), Convert.ToHexStringLower(SHA256.HashData(tail)));
    }

    private static string Sha256(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    private static readonly JsonSerializerOptions HeaderJson = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
    };
}

internal sealed record CacheHeader
{
    public string Format { get; init; } = "kdengine.encoded-cache";
    public int Version { get; init; } = 1;
    public long Rows { get; init; }
    public int Fields { get; init; }
    public bool Dense { get; init; }
    public bool UserIds { get; init; }
    public int MultiFields { get; init; }
    public CacheSource Source { get; init; } = new("", [], []);
    public string PreprocessingSha256 { get; init; } = "";
    public string? Preprocessing { get; init; }
    /// <summary>[minCount, maxVocab, hashBuckets] the stored preprocessing was fitted with on this input.</summary>
    public int[]? FitOptions { get; init; }
    public CacheRowGroup[] RowGroups { get; init; } = [];
}

internal sealed record CacheSource(string Format, CacheFile[] Files, CacheUnit[] Units);

internal sealed record CacheFile(string Path, long Size, string Modified, string HeadSha256, string TailSha256);

/// <summary>A source unit and the rows it gave (rowTo −1 = to the end).</summary>
internal sealed record CacheUnit(int File, long Start, long End, long RowFrom, long RowTo, long Rows);

/// <summary>One row group: where it starts, its rows, and the id count of each multi-valued field.</summary>
internal sealed record CacheRowGroup(long Offset, int Rows, long[] MultiIds)
{
    public bool Equals(CacheRowGroup? other) => other is not null && Offset == other.Offset && Rows == other.Rows && MultiIds.SequenceEqual(other.MultiIds);
    public override int GetHashCode() => HashCode.Combine(Offset, Rows);
}
