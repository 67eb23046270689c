using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace KdEngine.Serving;

/// <summary>Receives a tensor's bytes, in order, while a streamed safetensors file is written.</summary>
public delegate void ByteSink(ReadOnlySpan<byte> bytes);

/// <summary>Receives <paramref name="values"/>: consecutive rows of a 2-D F32 tensor starting at row <paramref name="firstRow"/>.</summary>
public delegate void RowChunkSink(long firstRow, ReadOnlySpan<float> values);

/// <summary>
/// An F32 tensor of a streamed safetensors file: its name, its shape, and a producer that hands all of its bytes
/// (little-endian, row-major) to the sink, in any number of chunks. The producer may gather them from elsewhere
/// (other processes' shards of an embedding table) while the file is written, so the whole tensor never needs to
/// be in memory at once.
/// </summary>
public sealed record StreamedTensor(string Name, int[] Shape, Action<ByteSink> Produce)
{
    /// <summary>The tensor's bytes in the file (4 per element).</summary>
    public long ByteLength
    {
        get
        {
            long n = sizeof(float);
            foreach (int d in Shape) n *= d;
            return n;
        }
    }
}

public static partial class SafeTensorsFile
{
    /// <summary>
    /// Writes a file like <see cref="Write(string, IEnumerable{NamedArray}, IReadOnlyDictionary{string, string}?)"/>
    /// (same layout, checksums and atomic rename), but with tensors produced while they are written: the header
    /// goes first with placeholder digests, the tensors follow in name order (each producer called once), then the
    /// header is rewritten with the data digest — digests have a fixed length, so the header's size does not change.
    /// Memory stays bounded by the producers' chunks.
    /// </summary>
    /// <exception cref="InvalidOperationException">A producer handed more or fewer bytes than its shape holds.</exception>
    public static void WriteStreamed(string path, IEnumerable<StreamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var list = SortedByName(path, tensors, t => t.Name);
        var meta = CheckedMetadata(path, metadata);
        meta[FormatVersionKey] = FormatVersion;
        meta[DataSha256Key] = new string('0', DigestHexLength);
        meta[HeaderSha256Key] = new string('0', DigestHexLength);
        var entries = list.Select(t => new HeaderEntry(t.Name, TensorDType.F32, t.Shape, t.ByteLength)).ToList();
        byte[] placeholder = BuildPrefix(entries, meta, out _);

        string tmp = path + ".tmp-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16))
            {
                fs.Write(placeholder);
                using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                foreach (var t in list)
                {
                    long written = 0;
                    t.Produce(bytes =>
                    {
                        if (BitConverter.IsLittleEndian)
                        {
                            sha.AppendData(bytes);
                            fs.Write(bytes);
                        }
                        else
                        {
                            var copy = bytes.ToArray();
                            ReverseElements(copy, sizeof(float));
                            sha.AppendData(copy);
                            fs.Write(copy);
                        }
                        written += bytes.Length;
                    });
                    if (written != t.ByteLength)
                        throw new InvalidOperationException($"{path}: tensor '{t.Name}' {NamedArray.FormatShape(t.Shape)} should hold {t.ByteLength} bytes but its producer wrote {written}.");
                }
                meta[DataSha256Key] = Convert.ToHexStringLower(sha.GetHashAndReset());
                byte[] prefix = BuildPrefix(entries, meta, out int digestOffset);
                if (prefix.Length != placeholder.Length) throw new InvalidOperationException("safetensors header changed size when its digests were filled in.");
                byte[] headerDigest = SHA256.HashData(prefix);
                Encoding.ASCII.GetBytes(Convert.ToHexStringLower(headerDigest), prefix.AsSpan(digestOffset, DigestHexLength));
                fs.Position = 0;
                fs.Write(prefix);
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

    /// <summary>
    /// Streams the whole data section of a file whose header was read with <see cref="ReadHeaderOnly"/> and checks it
    /// against the recorded data digest (a file without KdEngine checksums passes). Reads in 1 MiB chunks.
    /// </summary>
    /// <exception cref="CheckpointFormatException">The data does not hash to the recorded digest, or the file is shorter than its header says.</exception>
    public static void VerifyData(SafeTensorsHeader header)
    {
        ArgumentNullException.ThrowIfNull(header);
        if (!header.Metadata.TryGetValue(DataSha256Key, out string? expected)) return;
        using var fs = new FileStream(header.Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        if (fs.Length != header.DataOffset + header.DataLength)
            throw new CheckpointFormatException(header.Path, $"the file is {fs.Length} bytes now but was {header.DataOffset + header.DataLength} when its header was read (was it changed while being read?).");
        fs.Position = header.DataOffset;
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        long left = header.DataLength;
        try
        {
            while (left > 0)
            {
                int n = (int)Math.Min(buffer.Length, left);
                fs.ReadExactly(buffer, 0, n);
                sha.AppendData(buffer, 0, n);
                left -= n;
            }
        }
        catch (EndOfStreamException e)
        {
            throw new CheckpointFormatException(header.Path, "the file ended before its data section did (was it changed while being read?).", e);
        }
        string actual = Convert.ToHexStringLower(sha.GetHashAndReset());
        if (actual != expected)
            throw new CheckpointFormatException(header.Path, $"data checksum mismatch: the header records SHA-256 {expected}, the data hashes to {actual}; the file is corrupt.");
    }

    /// <summary>
    /// Reads the rows of a 2-D F32 tensor (a 1-D one counts as one row per element) from the file of
    /// <paramref name="header"/>, handing them to <paramref name="sink"/> in order, at most about 1 MiB at a time,
    /// so a table larger than memory can be read to keep only some of its rows. Does not verify the data digest
    /// (see <see cref="VerifyData"/>).
    /// </summary>
    /// <exception cref="CheckpointFormatException">The tensor is missing, not F32, or not the expected shape.</exception>
    public static void ReadRows(SafeTensorsHeader header, string name, int[] expectedShape, RowChunkSink sink)
    {
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(sink);
        if (!header.TryGet(name, out var entry)) throw new CheckpointFormatException(header.Path, $"tensor '{name}' is missing.");
        if (entry.DType != TensorDType.F32)
            throw new CheckpointFormatException(header.Path, $"tensor '{name}' is {TensorDTypes.Name(entry.DType)}, expected F32.");
        if (!entry.ShapeArray.AsSpan().SequenceEqual(expectedShape))
            throw new CheckpointFormatException(header.Path, $"tensor '{name}' has shape {NamedArray.FormatShape(entry.ShapeArray)}, expected {NamedArray.FormatShape(expectedShape)}.");
        long rows = expectedShape.Length == 0 ? 1 : expectedShape[0];
        long width = rows == 0 ? 0 : entry.ElementCount / rows;
        if (entry.ElementCount == 0) return;
        long rowsPerChunk = Math.Max(1, (1 << 20) / (width * sizeof(float)));
        var buffer = new float[rowsPerChunk * width];
        using var fs = new FileStream(header.Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        fs.Position = header.DataOffset + entry.DataBegin;
        try
        {
            for (long row = 0; row < rows; row += rowsPerChunk)
            {
                int n = (int)(Math.Min(rowsPerChunk, rows - row) * width);
                var bytes = MemoryMarshal.AsBytes(buffer.AsSpan(0, n));
                fs.ReadExactly(bytes);
                if (!BitConverter.IsLittleEndian) ReverseElements(bytes, sizeof(float));
                sink(row, buffer.AsSpan(0, n));
            }
        }
        catch (EndOfStreamException e)
        {
            throw new CheckpointFormatException(header.Path, $"the file ended inside tensor '{name}' (was it changed while being read?).", e);
        }
    }
}
