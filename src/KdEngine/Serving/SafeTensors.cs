using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Unicode;

namespace KdEngine.Serving;

/// <summary>
/// Reads and writes the safetensors layout (https://github.com/huggingface/safetensors):
/// an 8-byte little-endian header length N, N bytes of UTF-8 JSON header, then the raw little-endian tensor data.
/// See docs/formats.md, "Checkpoint file (safetensors)".
/// </summary>
/// <remarks>
/// Writing is deterministic (tensors sorted by ordinal name, metadata sorted by key, the header padded with spaces
/// to a multiple of 8 bytes as the reference implementation does) and atomic (temporary file, flushed to disk,
/// then renamed over the target). Reading treats the file as untrusted: every structural property is checked from
/// the header before any tensor memory is allocated, and the result is either fully validated or an exception.
/// </remarks>
public static partial class SafeTensorsFile
{
    /// <summary>Largest accepted header, as in the reference implementation.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    /// <summary>Metadata key of the KdEngine layout version (currently "1").</summary>
    public const string FormatVersionKey = "kdengine.format_version";

    /// <summary>Metadata key of the SHA-256 (lowercase hex) of the data section (every byte after the header).</summary>
    public const string DataSha256Key = "kdengine.sha256";

    /// <summary>
    /// Metadata key of the SHA-256 (lowercase hex) of the first 8 + N bytes of the file (length prefix and header,
    /// padding included) computed with this value's 64 hex digits replaced by ASCII '0'. It makes a flipped bit in
    /// a tensor name, shape or user metadata as detectable as one in the data.
    /// </summary>
    public const string HeaderSha256Key = "kdengine.header_sha256";

    /// <summary>The layout version this build writes and reads.</summary>
    public const string FormatVersion = "1";

    /// <summary>Keys under this prefix are reserved for the writer; user metadata may not use them.</summary>
    public const string ReservedPrefix = "kdengine.";

    private const string MetadataKey = "__metadata__";
    private const int DigestHexLength = 64;
    private const int MaxRank = 64;

    /// <summary>The tensors sorted by name (ordinal), after checking none is null, reserved or named twice.</summary>
    private static List<T> SortedByName<T>(string path, IEnumerable<T> tensors, Func<T, string> nameOf) where T : class
    {
        var list = new List<T>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in tensors)
        {
            if (t is null) throw new ArgumentException($"{path}: a tensor in the list is null.", nameof(tensors));
            string name = nameOf(t);
            if (name == MetadataKey) throw new ArgumentException($"{path}: '{MetadataKey}' is reserved by safetensors and cannot name a tensor.", nameof(tensors));
            if (!seen.Add(name)) throw new ArgumentException($"{path}: tensor '{name}' appears twice.", nameof(tensors));
            list.Add(t);
        }
        list.Sort((a, b) => string.CompareOrdinal(nameOf(a), nameOf(b)));
        return list;
    }

    /// <summary>The caller's metadata, sorted, after checking no key uses the reserved prefix and no value is null.</summary>
    private static SortedDictionary<string, string> CheckedMetadata(string path, IReadOnlyDictionary<string, string>? metadata)
    {
        var meta = new SortedDictionary<string, string>(StringComparer.Ordinal);
        if (metadata is not null)
            foreach (var (k, v) in metadata)
            {
                if (k.StartsWith(ReservedPrefix, StringComparison.Ordinal))
                    throw new ArgumentException($"{path}: metadata key '{k}' uses the reserved prefix '{ReservedPrefix}'.", nameof(metadata));
                meta[k] = v ?? throw new ArgumentException($"{path}: metadata key '{k}' has a null value.", nameof(metadata));
            }
        return meta;
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> and <paramref name="metadata"/> to <paramref name="path"/> atomically: the
    /// bytes go to <c>path.tmp-&lt;random&gt;</c>, are flushed to disk, and the temporary file is renamed over
    /// <paramref name="path"/>. If anything fails, a previous file at <paramref name="path"/> is untouched and the
    /// temporary file is removed.
    /// </summary>
    /// <exception cref="ArgumentException">Duplicate or reserved tensor names, or metadata keys starting with "kdengine.".</exception>
    public static void Write(string path, IEnumerable<NamedArray> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        => Write(path, tensors, metadata, wrapStream: null);

    /// <summary><paramref name="wrapStream"/> lets tests inject a stream that fails midway.</summary>
    internal static void Write(string path, IEnumerable<NamedArray> tensors, IReadOnlyDictionary<string, string>? metadata,
        Func<Stream, Stream>? wrapStream)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);

        var list = SortedByName(path, tensors, t => t.Name);
        var meta = CheckedMetadata(path, metadata);

        using (var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            foreach (var t in list) ForEachLittleEndianChunk(t, sha.AppendData);
            meta[DataSha256Key] = Convert.ToHexStringLower(sha.GetHashAndReset());
        }
        meta[FormatVersionKey] = FormatVersion;
        meta[HeaderSha256Key] = new string('0', DigestHexLength);

        byte[] prefix = BuildPrefix(list.Select(t => new HeaderEntry(t.Name, t.DType, t.Shape, t.ByteLength)).ToList(), meta, out int digestOffset);
        byte[] headerDigest = SHA256.HashData(prefix);
        Encoding.ASCII.GetBytes(Convert.ToHexStringLower(headerDigest), prefix.AsSpan(digestOffset, DigestHexLength));

        string tmp = path + ".tmp-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                Stream s = wrapStream?.Invoke(fs) ?? fs;
                s.Write(prefix);
                foreach (var t in list) ForEachLittleEndianChunk(t, s.Write);
                s.Flush();
                // Data must be on disk before the rename makes it visible, or a crash could leave an empty file
                // under the final name.
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    private readonly record struct HeaderEntry(string Name, TensorDType DType, IReadOnlyList<int> Shape, long ByteLength);

    /// <summary>Metadata values longer than this are written in segments of this many chars (see <see cref="BuildPrefix"/>).</summary>
    private const int LongValueChars = 1 << 16;

    /// <summary>
    /// The 8-byte length and the padded JSON header. <paramref name="digestOffset"/> is the file offset of the 64
    /// placeholder digits of <see cref="HeaderSha256Key"/>.
    /// </summary>

    private static byte[] BuildPrefix(List<HeaderEntry> list, SortedDictionary<string, string> meta, out int digestOffset)
    {
        var buffer = new ArrayBufferWriter<byte>();
        digestOffset = -1;
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteStartObject(MetadataKey);
            foreach (var (k, v) in meta)
            {
                if (k == HeaderSha256Key)
                {
                    w.WritePropertyName(k);
                    w.Flush();
                    // The value starts right after `"key":` with its opening quote.
                    digestOffset = 8 + buffer.WrittenCount + 1;
                    w.WriteStringValue(v);
                }
                else if (v.Length <= LongValueChars) w.WriteString(k, v);
                else
                {
                    // A long value (a fitted preprocessing: megabytes of base64 vocabulary hashes) goes in segments: the
                    // writer escapes a value in a scratch buffer sized for the worst case (6 chars per char, 3 bytes
                    // each), which for the whole value at once was hundreds of MB at the end of a large run. Same bytes.
                    w.WritePropertyName(k);
                    int start = 0;
                    while (start < v.Length)
                    {
                        int n = Math.Min(LongValueChars, v.Length - start);
                        if (start + n < v.Length && char.IsHighSurrogate(v[start + n - 1])) n--; // keep a surrogate pair together
                        w.WriteStringValueSegment(v.AsSpan(start, n), isFinalSegment: start + n == v.Length);
                        start += n;
                    }
                }
            }
            w.WriteEndObject();
            long offset = 0;
            foreach (var t in list)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", TensorDTypes.Name(t.DType));
                w.WriteStartArray("shape");
                foreach (int d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                offset += t.ByteLength;
                w.WriteNumberValue(offset);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int json = buffer.WrittenCount;
        int padded = json + (8 - json % 8) % 8;
        var prefix = new byte[8 + padded];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)padded);
        buffer.WrittenSpan.CopyTo(prefix.AsSpan(8));
        prefix.AsSpan(8 + json).Fill((byte)' ');
        return prefix;
    }

    private delegate void ByteSink(ReadOnlySpan<byte> bytes);

    /// <summary>Hands the tensor's bytes in little-endian order to <paramref name="sink"/> (no copy on little-endian machines).</summary>
    private static void ForEachLittleEndianChunk(NamedArray t, ByteSink sink)
    {
        Span<byte> bytes = t.NativeBytes();
        if (BitConverter.IsLittleEndian)
        {
            sink(bytes);
            return;
        }
        int size = TensorDTypes.SizeOf(t.DType);
        byte[] chunk = ArrayPool<byte>.Shared.Rent(1 << 16);
        try
        {
            for (int start = 0; start < bytes.Length; start += 1 << 16)
            {
                int len = Math.Min(1 << 16, bytes.Length - start);
                var c = chunk.AsSpan(0, len);
                bytes.Slice(start, len).CopyTo(c);
                ReverseElements(c, size);
                sink(c);
            }
        }
        finally { ArrayPool<byte>.Shared.Return(chunk); }
    }

    private static void ReverseElements(Span<byte> bytes, int size)
    {
        if (size == 1) return;
        if (size == 2)
        {
            var v = MemoryMarshal.Cast<byte, short>(bytes);
            BinaryPrimitives.ReverseEndianness(v, v);
        }
        else if (size == 4)
        {
            var v = MemoryMarshal.Cast<byte, int>(bytes);
            BinaryPrimitives.ReverseEndianness(v, v);
        }
        else
        {
            var v = MemoryMarshal.Cast<byte, long>(bytes);
            BinaryPrimitives.ReverseEndianness(v, v);
        }
    }

    /// <summary>
    /// Reads and fully validates a safetensors file: structure, then (when the KdEngine checksums are present) the
    /// header and data checksums. Files without KdEngine metadata (written by PyTorch's safetensors) are accepted.
    /// </summary>
    /// <exception cref="CheckpointFormatException">Anything wrong with the file's content; the message names the file and the problem.</exception>
    public static SafeTensorsContent Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        return Read(fs, path);
    }

    /// <summary>
    /// Reads and fully validates safetensors content from a seekable <paramref name="stream"/> that holds exactly
    /// one file (position 0 to its end); <paramref name="sourceName"/> names it in error messages.
    /// </summary>
    /// <exception cref="CheckpointFormatException">Anything wrong with the content.</exception>
    public static SafeTensorsContent Read(Stream stream, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentException.ThrowIfNullOrEmpty(sourceName);
        if (!stream.CanSeek || !stream.CanRead) throw new ArgumentException("Reading safetensors needs a readable, seekable stream.", nameof(stream));
        string path = sourceName;
        stream.Position = 0;
        var header = ReadHeader(path, stream);
        try
        {
            // Read tensors in file order: the layout is contiguous, so this is one sequential pass that also feeds
            // the data checksum.
            var inFileOrder = header.Tensors.OrderBy(e => e.DataBegin).ThenBy(e => e.DataEnd).ToList();
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var arrays = new Dictionary<string, NamedArray>(StringComparer.Ordinal);
            stream.Position = header.DataOffset;
            foreach (var e in inFileOrder)
            {
                var a = NamedArray.Allocate(e.Name, e.DType, e.ShapeArray, checked((int)e.ElementCount));
                Span<byte> bytes = a.NativeBytes();
                stream.ReadExactly(bytes);
                sha.AppendData(bytes);
                if (!BitConverter.IsLittleEndian) ReverseElements(bytes, TensorDTypes.SizeOf(e.DType));
                arrays.Add(e.Name, a);
            }
            if (header.Metadata.TryGetValue(DataSha256Key, out string? expected))
            {
                string actual = Convert.ToHexStringLower(sha.GetHashAndReset());
                if (actual != expected)
                    throw new CheckpointFormatException(path, $"data checksum mismatch: the header records SHA-256 {expected}, the data hashes to {actual}; the file is corrupt.");
            }
            return new SafeTensorsContent(header, arrays);
        }
        catch (EndOfStreamException e)
        {
            throw new CheckpointFormatException(path, "the file ended before its data section did (was it changed while being read?).", e);
        }
    }

    /// <summary>
    /// Reads and validates the header only (structure and header checksum), without reading or verifying the data.
    /// </summary>
    public static SafeTensorsHeader ReadHeaderOnly(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        return ReadHeader(path, fs);
    }

    private static SafeTensorsHeader ReadHeader(string path, Stream fs)
    {
        long fileLength = fs.Length;
        if (fileLength < 8)
            throw new CheckpointFormatException(path, $"the file is {fileLength} bytes, shorter than the 8-byte header length that starts a safetensors file.");
        Span<byte> lengthBytes = stackalloc byte[8];
        fs.ReadExactly(lengthBytes);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (n > MaxHeaderBytes)
            throw new CheckpointFormatException(path, $"header length {n} exceeds the limit of {MaxHeaderBytes} bytes; this is not a safetensors file or it is corrupt.");
        if ((long)n > fileLength - 8)
            throw new CheckpointFormatException(path, $"header length {n} exceeds the {fileLength - 8} bytes that follow it; the file is truncated or corrupt.");
        if (n < 2)
            throw new CheckpointFormatException(path, $"header length {n} is too small to hold a JSON object.");
        var prefix = new byte[8 + (int)n];
        lengthBytes.CopyTo(prefix);
        try { fs.ReadExactly(prefix.AsSpan(8)); }
        catch (EndOfStreamException e) { throw new CheckpointFormatException(path, "the file ended inside its header.", e); }

        var parsed = HeaderParser.Parse(path, prefix.AsSpan(8));
        long dataOffset = 8 + (long)n;
        long dataLength = fileLength - dataOffset;
        var metadata = parsed.Metadata;
        CheckKdEngineMetadata(path, metadata);
        if (metadata.ContainsKey(HeaderSha256Key))
        {
            // The digest must sit verbatim (64 unescaped characters) where the parser saw it, or the bytes hashed
            // with the placeholder would not be the bytes the writer hashed.
            if (parsed.HeaderDigestIndex < 0)
                throw new CheckpointFormatException(path, $"metadata '{HeaderSha256Key}' is not 64 plain hex digits.");
            int at = 8 + parsed.HeaderDigestIndex;
            string expected = Encoding.ASCII.GetString(prefix, at, DigestHexLength);
            prefix.AsSpan(at, DigestHexLength).Fill((byte)'0');
            string actual = Convert.ToHexStringLower(SHA256.HashData(prefix));
            if (actual != expected)
                throw new CheckpointFormatException(path, $"header checksum mismatch: the header records SHA-256 {expected}, the header bytes hash to {actual}; the file is corrupt.");
        }
        var entries = ValidateLayout(path, parsed.Tensors, dataLength);
        return new SafeTensorsHeader(path, metadata, entries, dataOffset, dataLength);
    }

    private static void CheckKdEngineMetadata(string path, IReadOnlyDictionary<string, string> metadata)
    {
        foreach (var k in metadata.Keys)
        {
            if (k.StartsWith(ReservedPrefix, StringComparison.Ordinal) && k is not (FormatVersionKey or DataSha256Key or HeaderSha256Key))
                throw new CheckpointFormatException(path, $"metadata key '{k}' is not one this build knows (keys under '{ReservedPrefix}' are reserved); the file is from a newer version or corrupt.");
        }
        bool version = metadata.TryGetValue(FormatVersionKey, out string? v);
        bool data = metadata.TryGetValue(DataSha256Key, out string? d);
        bool head = metadata.TryGetValue(HeaderSha256Key, out string? h);
        if (!version && !data && !head) return; // a plain safetensors file, e.g. from PyTorch
        if (!(version && data && head))
            throw new CheckpointFormatException(path, $"metadata must hold all of '{FormatVersionKey}', '{DataSha256Key}' and '{HeaderSha256Key}' or none; "
                + $"found {string.Join(", ", new[] { version ? FormatVersionKey : null, data ? DataSha256Key : null, head ? HeaderSha256Key : null }.Where(x => x is not null).Select(x => $"'{x}'"))} only.");
        if (v != FormatVersion)
            throw new CheckpointFormatException(path, $"format version '{Truncate(v!)}' is not supported (this build reads version {FormatVersion}).");
        if (!IsLowerHexDigest(d!))
            throw new CheckpointFormatException(path, $"metadata '{DataSha256Key}' is not 64 lowercase hex digits: '{Truncate(d!)}'.");
        if (!IsLowerHexDigest(h!))
            throw new CheckpointFormatException(path, $"metadata '{HeaderSha256Key}' is not 64 lowercase hex digits: '{Truncate(h!)}'.");
    }

    private static bool IsLowerHexDigest(string s) => s.Length == DigestHexLength && s.All(c => c is >= '0' and <= '9' or >= 'a' and <= 'f');

    /// <summary>
    /// Checks every tensor against its dtype and the data section, then that the tensors tile the data section
    /// exactly (sorted by offset: no overlap, no hole, nothing after the last one), as safetensors requires.
    /// Runs before any tensor memory is allocated.
    /// </summary>
    private static List<TensorEntry> ValidateLayout(string path, List<HeaderParser.RawTensor> raw, long dataLength)
    {
        var entries = new List<TensorEntry>(raw.Count);
        foreach (var r in raw)
        {
            if (!TensorDTypes.TryParse(r.DType, out var dtype))
                throw new CheckpointFormatException(path, $"tensor '{r.Name}' has dtype '{Truncate(r.DType)}'; supported dtypes are F32, F64, I32, I64, BF16, I8.");
            if (r.Shape.Count > MaxRank)
                throw new CheckpointFormatException(path, $"tensor '{r.Name}' has rank {r.Shape.Count}; at most {MaxRank} dimensions are supported.");
            var shape = new int[r.Shape.Count];
            bool hasZero = false;
            for (int i = 0; i < shape.Length; i++)
            {
                if (r.Shape[i] > int.MaxValue)
                    throw new CheckpointFormatException(path, $"tensor '{r.Name}' dimension {i} is {r.Shape[i]}, larger than {int.MaxValue}.");
                shape[i] = (int)r.Shape[i];
                hasZero |= shape[i] == 0;
            }
            long count = 1;
            if (hasZero) count = 0;
            else
            {
                foreach (int d in shape)
                {
                    count *= d; // both factors ≤ 2^31 − 1 and count ≤ Array.MaxLength before this: no overflow
                    if (count > Array.MaxLength)
                        throw new CheckpointFormatException(path, $"tensor '{r.Name}' shape [{string.Join(", ", r.Shape)}] has more elements than an array can hold.");
                }
            }
            int size = TensorDTypes.SizeOf(dtype);
            long bytes = count * size;
            string offsets = $"data_offsets [{r.Begin}, {r.End}]";
            if (r.Begin > r.End)
                throw new CheckpointFormatException(path, $"tensor '{r.Name}' {offsets} end before they begin.");
            if (r.End - r.Begin != (ulong)bytes)
                throw new CheckpointFormatException(path, $"tensor '{r.Name}' {offsets} do not match shape {NamedArray.FormatShape(shape)} of {TensorDTypes.Name(dtype)} ({bytes} bytes).");
            if (r.End > (ulong)dataLength)
                throw new CheckpointFormatException(path, $"tensor '{r.Name}' {offsets} lie outside the data section, which is {dataLength} bytes; the file is truncated or corrupt.");
            entries.Add(new TensorEntry(r.Name, dtype, shape, (long)r.Begin, (long)r.End, count));
        }

        var byOffset = entries.OrderBy(e => e.DataBegin).ThenBy(e => e.DataEnd).ToList();
        long covered = 0;
        TensorEntry? previous = null;
        foreach (var e in byOffset)
        {
            if (e.DataBegin < covered)
                throw new CheckpointFormatException(path, $"tensor '{e.Name}' data_offsets [{e.DataBegin}, {e.DataEnd}] overlap tensor '{previous!.Name}' [{previous.DataBegin}, {previous.DataEnd}].");
            if (e.DataBegin > covered)
                throw new CheckpointFormatException(path, $"bytes [{covered}, {e.DataBegin}) of the data section belong to no tensor (before tensor '{e.Name}'); safetensors allows no holes.");
            covered = e.DataEnd;
            previous = e;
        }
        if (covered != dataLength)
            throw new CheckpointFormatException(path, $"the data section is {dataLength} bytes but the tensors cover only the first {covered}; the file has trailing bytes or is corrupt.");
        entries.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return entries;
    }

    internal static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";

    /// <summary>A strict reader of the header JSON that detects duplicate keys (JsonDocument would accept them).</summary>
    private static class HeaderParser
    {
        internal sealed record RawTensor(string Name, string DType, List<ulong> Shape, ulong Begin, ulong End);

        internal sealed class Result
        {
            public Dictionary<string, string> Metadata { get; } = new(StringComparer.Ordinal);
            public List<RawTensor> Tensors { get; } = [];
            /// <summary>Index in the header of the first of the 64 digits of <see cref="HeaderSha256Key"/>, or −1.</summary>
            public int HeaderDigestIndex { get; set; } = -1;
        }

        public static Result Parse(string path, ReadOnlySpan<byte> json)
        {
            if (!Utf8.IsValid(json))
                throw new CheckpointFormatException(path, "the header is not valid UTF-8.");
            var result = new Result();
            var reader = new Utf8JsonReader(json, new JsonReaderOptions
            {
                CommentHandling = JsonCommentHandling.Disallow,
                AllowTrailingCommas = false,
                MaxDepth = 4,
            });
            try
            {
                if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                    throw new CheckpointFormatException(path, "the header is not a JSON object.");
                var keys = new HashSet<string>(StringComparer.Ordinal);
                while (true)
                {
                    Next(path, ref reader);
                    if (reader.TokenType == JsonTokenType.EndObject) break;
                    string key = reader.GetString()!;
                    if (!keys.Add(key))
                        throw new CheckpointFormatException(path, key == MetadataKey ? $"'{MetadataKey}' appears twice in the header." : $"tensor '{Truncate(key)}' appears twice in the header.");
                    if (key == MetadataKey) ParseMetadata(path, ref reader, result);
                    else if (key.Length == 0) throw new CheckpointFormatException(path, "a tensor has an empty name.");
                    else result.Tensors.Add(ParseTensor(path, ref reader, key));
                }
                // With the whole header as the final block, Read() returns false at the end and throws on any
                // non-whitespace content after the root object.
                if (reader.Read())
                    throw new CheckpointFormatException(path, "the header has content after its JSON object.");
            }
            catch (JsonException e)
            {
                throw new CheckpointFormatException(path, $"the header is not valid JSON: {e.Message}", e);
            }
            catch (InvalidOperationException e)
            {
                throw new CheckpointFormatException(path, $"the header is not valid JSON: {e.Message}", e);
            }
            return result;
        }

        private static void Next(string path, ref Utf8JsonReader reader)
        {
            if (!reader.Read()) throw new CheckpointFormatException(path, "the header JSON ends early.");
        }

        private static void ParseMetadata(string path, ref Utf8JsonReader reader, Result result)
        {
            Next(path, ref reader);
            if (reader.TokenType != JsonTokenType.StartObject)
                throw new CheckpointFormatException(path, $"'{MetadataKey}' must be an object of strings, not {reader.TokenType}.");
            while (true)
            {
                Next(path, ref reader);
                if (reader.TokenType == JsonTokenType.EndObject) return;
                string key = reader.GetString()!;
                Next(path, ref reader);
                if (reader.TokenType != JsonTokenType.String)
                    throw new CheckpointFormatException(path, $"metadata '{Truncate(key)}' must be a string, not {reader.TokenType}.");
                if (key == HeaderSha256Key && !reader.ValueIsEscaped && reader.ValueSpan.Length == DigestHexLength)
                    result.HeaderDigestIndex = checked((int)reader.TokenStartIndex + 1); // skip the opening quote
                if (!result.Metadata.TryAdd(key, reader.GetString()!))
                    throw new CheckpointFormatException(path, $"metadata key '{Truncate(key)}' appears twice.");
            }
        }

        private static RawTensor ParseTensor(string path, ref Utf8JsonReader reader, string name)
        {
            string shown = Truncate(name);
            Next(path, ref reader);
            if (reader.TokenType != JsonTokenType.StartObject)
                throw new CheckpointFormatException(path, $"tensor '{shown}' must be an object with dtype, shape and data_offsets, not {reader.TokenType}.");
            string? dtype = null;
            List<ulong>? shape = null, offsets = null;
            while (true)
            {
                Next(path, ref reader);
                if (reader.TokenType == JsonTokenType.EndObject) break;
                string key = reader.GetString()!;
                switch (key)
                {
                    case "dtype":
                        if (dtype is not null) throw Duplicate();
                        Next(path, ref reader);
                        if (reader.TokenType != JsonTokenType.String)
                            throw new CheckpointFormatException(path, $"tensor '{shown}' dtype must be a string, not {reader.TokenType}.");
                        dtype = reader.GetString()!;
                        break;
                    case "shape":
                        if (shape is not null) throw Duplicate();
                        shape = ParseUIntArray(path, ref reader, shown, "shape");
                        break;
                    case "data_offsets":
                        if (offsets is not null) throw Duplicate();
                        offsets = ParseUIntArray(path, ref reader, shown, "data_offsets");
                        if (offsets.Count != 2)
                            throw new CheckpointFormatException(path, $"tensor '{shown}' data_offsets must be [begin, end], not {offsets.Count} numbers.");
                        break;
                    default:
                        throw new CheckpointFormatException(path, $"tensor '{shown}' has unknown key '{Truncate(key)}' (expected dtype, shape, data_offsets).");
                }

                CheckpointFormatException Duplicate() => new(path, $"tensor '{shown}' has key '{key}' twice.");
            }
            if (dtype is null || shape is null || offsets is null)
                throw new CheckpointFormatException(path, $"tensor '{shown}' lacks {(dtype is null ? "dtype" : shape is null ? "shape" : "data_offsets")}.");
            return new RawTensor(name, dtype, shape, offsets[0], offsets[1]);
        }

        private static List<ulong> ParseUIntArray(string path, ref Utf8JsonReader reader, string tensor, string field)
        {
            Next(path, ref reader);
            if (reader.TokenType != JsonTokenType.StartArray)
                throw new CheckpointFormatException(path, $"tensor '{tensor}' {field} must be an array, not {reader.TokenType}.");
            var values = new List<ulong>();
            while (true)
            {
                Next(path, ref reader);
                if (reader.TokenType == JsonTokenType.EndArray) return values;
                if (reader.TokenType != JsonTokenType.Number || !reader.TryGetUInt64(out ulong v))
                    throw new CheckpointFormatException(path, $"tensor '{tensor}' {field} holds '{Truncate(Encoding.UTF8.GetString(reader.ValueSpan))}', not a non-negative integer.");
                values.Add(v);
            }
        }
    }
}

/// <summary>One tensor as the header describes it. Offsets are relative to the start of the data section, as in the JSON.</summary>
public sealed class TensorEntry
{
    internal TensorEntry(string name, TensorDType dtype, int[] shape, long begin, long end, long elementCount)
    {
        Name = name;
        DType = dtype;
        ShapeArray = shape;
        DataBegin = begin;
        DataEnd = end;
        ElementCount = elementCount;
    }

    internal int[] ShapeArray { get; }
    /// <summary>The tensor's name (PyTorch-style for model parameters, e.g. <c>dnn.0.weight</c>).</summary>
    public string Name { get; }
    /// <summary>The element type.</summary>
    public TensorDType DType { get; }
    /// <summary>The dimensions, outermost first.</summary>
    public IReadOnlyList<int> Shape => ShapeArray;
    /// <summary>Start of the tensor's bytes, relative to the data section.</summary>
    public long DataBegin { get; }
    /// <summary>End (exclusive) of the tensor's bytes, relative to the data section.</summary>
    public long DataEnd { get; }
    /// <summary>Number of elements (product of the shape).</summary>
    public long ElementCount { get; }

    /// <summary>Name, dtype, shape and byte range, for messages.</summary>
    public override string ToString() => $"{Name} {TensorDTypes.Name(DType)} {NamedArray.FormatShape(ShapeArray)} [{DataBegin}, {DataEnd}]";
}

/// <summary>A validated safetensors header.</summary>
public sealed class SafeTensorsHeader
{
    private readonly Dictionary<string, TensorEntry> _byName;

    internal SafeTensorsHeader(string path, IReadOnlyDictionary<string, string> metadata, List<TensorEntry> tensors, long dataOffset, long dataLength)
    {
        Path = path;
        Metadata = metadata;
        Tensors = tensors;
        DataOffset = dataOffset;
        DataLength = dataLength;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>The file as the caller named it.</summary>
    public string Path { get; }

    /// <summary>All <c>__metadata__</c> entries, the <c>kdengine.*</c> ones included.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Tensors sorted by ordinal name.</summary>
    public IReadOnlyList<TensorEntry> Tensors { get; }

    /// <summary>File offset of the data section (8 + header length).</summary>
    public long DataOffset { get; }

    /// <summary>Length in bytes of the data section.</summary>
    public long DataLength { get; }

    /// <summary>The entry of tensor <paramref name="name"/>, when the file has one.</summary>
    public bool TryGet(string name, out TensorEntry entry) => _byName.TryGetValue(name, out entry!);
}

/// <summary>A fully read and validated safetensors file.</summary>
public sealed class SafeTensorsContent
{
    private readonly Dictionary<string, NamedArray> _arrays;

    internal SafeTensorsContent(SafeTensorsHeader header, Dictionary<string, NamedArray> arrays)
    {
        Header = header;
        _arrays = arrays;
        Names = header.Tensors.Select(t => t.Name).ToArray();
    }

    /// <summary>The validated header (names, dtypes, shapes, offsets, metadata).</summary>
    public SafeTensorsHeader Header { get; }
    /// <summary>The file as the caller named it.</summary>
    public string Path => Header.Path;
    /// <summary>All <c>__metadata__</c> entries.</summary>
    public IReadOnlyDictionary<string, string> Metadata => Header.Metadata;

    /// <summary>Tensor names sorted by ordinal order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>True when the file holds a tensor called <paramref name="name"/>.</summary>
    public bool Contains(string name) => _arrays.ContainsKey(name);

    /// <summary>The tensor called <paramref name="name"/>.</summary>
    /// <exception cref="CheckpointFormatException">No tensor has that name.</exception>
    public NamedArray Get(string name) =>
        _arrays.TryGetValue(name, out var a) ? a
            : throw new CheckpointFormatException(Path, $"tensor '{name}' is missing (the file has {Names.Count} tensors{(Names.Count == 0 ? "" : ": " + string.Join(", ", Names.Take(8)) + (Names.Count > 8 ? ", …" : ""))}).");

    /// <summary>The F32 tensor <paramref name="name"/>, checked against <paramref name="expectedShape"/> when given.</summary>
    /// <exception cref="CheckpointFormatException">Missing, of another dtype, or of another shape.</exception>
    public ReadOnlySpan<float> GetFloat32(string name, int[]? expectedShape = null) => Checked(name, TensorDType.F32, expectedShape).AsFloat32();

    /// <summary>The I32 tensor <paramref name="name"/>, checked against <paramref name="expectedShape"/> when given.</summary>
    /// <exception cref="CheckpointFormatException">Missing, of another dtype, or of another shape.</exception>
    public ReadOnlySpan<int> GetInt32(string name, int[]? expectedShape = null) => Checked(name, TensorDType.I32, expectedShape).AsInt32();

    /// <summary>The I64 tensor <paramref name="name"/>, checked against <paramref name="expectedShape"/> when given.</summary>
    /// <exception cref="CheckpointFormatException">Missing, of another dtype, or of another shape.</exception>
    public ReadOnlySpan<long> GetInt64(string name, int[]? expectedShape = null) => Checked(name, TensorDType.I64, expectedShape).AsInt64();

    /// <summary>The BF16 tensor <paramref name="name"/> as bit patterns (see <see cref="GetFloat32"/>).</summary>
    public ReadOnlySpan<ushort> GetBFloat16(string name, int[]? expectedShape = null) => Checked(name, TensorDType.BF16, expectedShape).AsBFloat16();

    /// <summary>The I8 tensor <paramref name="name"/> (see <see cref="GetFloat32"/>).</summary>
    public ReadOnlySpan<sbyte> GetInt8(string name, int[]? expectedShape = null) => Checked(name, TensorDType.I8, expectedShape).AsInt8();

    /// <summary>The dtype of tensor <paramref name="name"/>.</summary>
    /// <exception cref="CheckpointFormatException">Missing.</exception>
    public TensorDType DTypeOf(string name) => Get(name).DType;

    private NamedArray Checked(string name, TensorDType dtype, int[]? expectedShape)
    {
        var a = Get(name);
        if (a.DType != dtype)
            throw new CheckpointFormatException(Path, $"tensor '{name}' is {TensorDTypes.Name(a.DType)}, expected {TensorDTypes.Name(dtype)}.");
        if (expectedShape is not null && !a.ShapeEquals(expectedShape))
            throw new CheckpointFormatException(Path, $"tensor '{name}' has shape {NamedArray.FormatShape(a.Shape)}, expected {NamedArray.FormatShape(expectedShape)}.");
        return a;
    }
}
