using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Serving;
using KdEngine.Training;

namespace KdEngine.Distillation;

/// <summary>A teacher-logit cache read back: the logits and what they were computed over.</summary>
public sealed record CachedLogits(float[] Logits, string DataFile, int Rows, string Fingerprint, string Teacher, Preprocessor? Preprocessor);

/// <summary>
/// A teacher-logit cache's header without its logits (<see cref="TeacherLogitCache.ReadHeader"/>): what it was computed
/// over, and where its <c>logits</c> tensor [Rows] of float32 lies in the file (<see cref="LogitsOffset"/>), so that a
/// streamed run reads them in place.
/// </summary>
public sealed record TeacherLogitCacheHeader(string Path, string DataFile, int Rows, string Fingerprint, string Teacher, Preprocessor? Preprocessor,
    long LogitsOffset, SafeTensorsHeader File);

/// <summary>
/// A frozen teacher's logits computed once over a data file and stored beside it, so any number of student runs can
/// distil from it without the teacher in memory (<see cref="CachedTeacher"/>). The file is safetensors: one F32
/// tensor <c>logits</c> [N] (row i = row i of the file) and metadata <c>cache.format</c>, <c>cache.data_file</c>,
/// <c>cache.rows</c>, <c>cache.fingerprint</c> (SHA-256 of the encoded ids and labels, see <see cref="Fingerprint"/>),
/// <c>cache.teacher</c> and the teacher's <c>preprocessing</c> (the encoding the fingerprint was taken with).
/// Loading against other data fails with a message naming both.
/// </summary>
public static class TeacherLogitCache
{
    /// <summary>The value of <see cref="FormatKey"/> in every cache file.</summary>
    public const string FormatTag = "kdengine.teacher-logits";
    /// <summary>Metadata key marking the file as a teacher-logit cache.</summary>
    public const string FormatKey = "cache.format";
    /// <summary>Metadata key: the data file's name.</summary>
    public const string DataFileKey = "cache.data_file";
    /// <summary>Metadata key: the number of rows.</summary>
    public const string RowsKey = "cache.rows";
    /// <summary>Metadata key: the SHA-256 fingerprint of the encoded rows.</summary>
    public const string FingerprintKey = "cache.fingerprint";
    /// <summary>Metadata key: the teacher checkpoint's name.</summary>
    public const string TeacherKey = "cache.teacher";
    /// <summary>Name of the logits tensor [N].</summary>
    public const string LogitsTensor = "logits";

    /// <summary>The default cache path beside the data: <c>data.csv.teacher.logits.safetensors</c>.</summary>
    public static string DefaultPath(string dataPath, string teacherPath) =>
        $"{dataPath}.{Path.GetFileNameWithoutExtension(teacherPath)}.logits.safetensors";

    /// <summary>The teacher's logits over every row of <paramref name="data"/> (evaluation mode, no tape).</summary>
    public static float[] Compute(CtrModel teacher, EncodedDataset data, int batchSize = 1024) =>
        Trainer.Evaluate(teacher, data, batchSize).Logits;

    /// <summary>
    /// SHA-256 (hex) over the row count, the field count, every encoded id (int32 little-endian, row-major) and
    /// every label (float32 little-endian): the same file encoded the same way gives the same fingerprint.
    /// </summary>
    public static string Fingerprint(EncodedDataset data)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> buf = stackalloc byte[4096];
        BinaryPrimitives.WriteInt32LittleEndian(buf, data.Count);
        BinaryPrimitives.WriteInt32LittleEndian(buf[4..], data.FieldCount);
        sha.AppendData(buf[..8]);
        Append(sha, data.Ids, buf, (b, v) => BinaryPrimitives.WriteInt32LittleEndian(b, v));
        Append(sha, data.Labels, buf, (b, v) => BinaryPrimitives.WriteSingleLittleEndian(b, v));
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    private static void Append<T>(IncrementalHash sha, T[] values, Span<byte> buf, SpanWriter<T> write)
    {
        int per = buf.Length / 4, i = 0;
        while (i < values.Length)
        {
            int n = Math.Min(per, values.Length - i);
            for (int k = 0; k < n; k++) write(buf.Slice(k * 4, 4), values[i + k]);
            sha.AppendData(buf[..(n * 4)]);
            i += n;
        }
    }

    private delegate void SpanWriter<T>(Span<byte> destination, T value);

    /// <summary>Writes a cache for <paramref name="logits"/> computed over <paramref name="data"/> (encoded with <paramref name="preprocessor"/>).</summary>
    public static void Save(string path, float[] logits, EncodedDataset data, string dataFileName, string teacherName, Preprocessor? preprocessor)
    {
        if (logits.Length != data.Count)
            throw new ArgumentException($"teacher-logit cache: {logits.Length} logits for {data.Count} rows.");
        var meta = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [FormatKey] = FormatTag,
            [DataFileKey] = dataFileName,
            [RowsKey] = data.Count.ToString(CultureInfo.InvariantCulture),
            [FingerprintKey] = Fingerprint(data),
            [TeacherKey] = teacherName,
        };
        if (preprocessor is not null) meta[ModelCheckpoint.PreprocessingKey] = preprocessor.ToJson();
        SafeTensorsFile.Write(path, [NamedArray.Float32(LogitsTensor, logits, logits.Length)], meta);
    }

    /// <summary>
    /// Computes a teacher's logits over every row of <paramref name="input"/> (encoded with <paramref name="preprocessor"/>)
    /// and writes the cache to <paramref name="path"/> streaming: memory is bounded by the model and the pipeline's
    /// buffers, never by the number of rows. Two passes over the input: the first counts the rows (the fingerprint starts
    /// with the row count), the second scores them in file order, hashing the ids as they go while the labels and logits go
    /// to temporary files beside <paramref name="path"/>; then the labels finish the fingerprint and the logits are copied
    /// into the safetensors file (itself written to a temporary file and renamed). The file equals
    /// <see cref="Save"/>'s for the same rows (same logits, fingerprint and metadata). Returns the rows cached.
    /// </summary>
    public static long ComputeStreamed(string path, CtrModel teacher, InputSet input, Preprocessor preprocessor, string dataFileName, string teacherName,
        StreamingOptions? options = null, int batchSize = 1024)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(teacher);
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(preprocessor);
        options ??= new StreamingOptions();
        long rows = 0;
        foreach (var block in DataPasses.Encode(input, preprocessor, null, options.Pass($"count {input.Name}"))) rows += block.Count;
        if (rows > int.MaxValue) throw new ArgumentException($"{input.Name}: {rows:N0} rows; a teacher-logit cache holds at most {int.MaxValue:N0} (split the data into several files).");

        string stem = path + ".tmp-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        string labelsPath = stem + ".labels", logitsPath = stem + ".logits";
        try
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            Span<byte> head = stackalloc byte[8];
            BinaryPrimitives.WriteInt32LittleEndian(head, (int)rows);
            BinaryPrimitives.WriteInt32LittleEndian(head[4..], preprocessor.FeatureSpace.FieldCount);
            sha.AppendData(head);
            var buffer = new byte[1 << 16];
            long scored;
            using (var labels = new FileStream(labelsPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            using (var logits = new FileStream(logitsPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                scored = StreamingPipeline.Score(teacher, input, preprocessor, (z, batch) =>
                {
                    // Ids [B, F] row-major, as Fingerprint hashes an EncodedDataset's; labels and logits wait in files.
                    LittleEndian(batch.Ids, buffer, bytes => sha.AppendData(bytes), (b, v) => BinaryPrimitives.WriteInt32LittleEndian(b, v));
                    LittleEndian(batch.Labels, buffer, bytes => labels.Write(bytes), (b, v) => BinaryPrimitives.WriteSingleLittleEndian(b, v));
                    LittleEndian(z, buffer, bytes => logits.Write(bytes), (b, v) => BinaryPrimitives.WriteSingleLittleEndian(b, v));
                }, options, batchSize);
            }
            if (scored != rows)
                throw new ArgumentException($"{input.Name}: {rows:N0} rows on the first pass but {scored:N0} on the second; was the data changed while the cache was computed?");
            using (var labels = new FileStream(labelsPath, FileMode.Open, FileAccess.Read, FileShare.None, 1 << 16))
            {
                int n;
                while ((n = labels.Read(buffer)) > 0) sha.AppendData(buffer, 0, n);
            }
            var meta = new Dictionary<string, string>(StringComparer.Ordinal)
            {
                [FormatKey] = FormatTag,
                [DataFileKey] = dataFileName,
                [RowsKey] = rows.ToString(CultureInfo.InvariantCulture),
                [FingerprintKey] = Convert.ToHexStringLower(sha.GetHashAndReset()),
                [TeacherKey] = teacherName,
                [ModelCheckpoint.PreprocessingKey] = preprocessor.ToJson(),
            };
            SafeTensorsFile.WriteStreamed(path, [new StreamedTensor(LogitsTensor, [(int)rows], sink =>
            {
                using var logits = new FileStream(logitsPath, FileMode.Open, FileAccess.Read, FileShare.None, 1 << 16);
                int n;
                while ((n = logits.Read(buffer)) > 0) sink(buffer.AsSpan(0, n));
            })], meta);
        }
        finally
        {
            foreach (var tmp in new[] { labelsPath, logitsPath })
                try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        return rows;
    }

    /// <summary>Hands <paramref name="values"/> to <paramref name="sink"/> as little-endian bytes, through <paramref name="buffer"/>.</summary>
    private static void LittleEndian<T>(ReadOnlySpan<T> values, byte[] buffer, Action<ReadOnlySpan<byte>> sink, SpanWriter<T> write)
    {
        int per = buffer.Length / 4, i = 0;
        while (i < values.Length)
        {
            int n = Math.Min(per, values.Length - i);
            for (int k = 0; k < n; k++) write(buffer.AsSpan(k * 4, 4), values[i + k]);
            sink(buffer.AsSpan(0, n * 4));
            i += n;
        }
    }

    /// <summary>
    /// Reads a cache's header only (structure, header checksum and metadata; no logits, no data checksum): memory does not
    /// depend on the rows. <see cref="VerifyStreamed"/> checks the logits in one pass; <see cref="Read"/> loads them.
    /// </summary>
    public static TeacherLogitCacheHeader ReadHeader(string path)
    {
        string name = Path.GetFileName(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{name}: teacher-logit cache not found ({Path.GetFullPath(path)}).", path);
        var header = SafeTensorsFile.ReadHeaderOnly(path);
        var m = ReadMetadata(path, header.Metadata);
        int rows = m.Rows;
        if (!header.TryGet(LogitsTensor, out var entry))
            throw new CheckpointFormatException(path, $"no tensor '{LogitsTensor}'; this is not a teacher-logit cache.");
        if (entry.DType != TensorDType.F32 || entry.Shape.Count != 1 || entry.Shape[0] != rows)
            throw new CheckpointFormatException(path, $"tensor '{LogitsTensor}' is {entry}, expected F32 [{rows}] ({RowsKey} {rows}).");
        return new TeacherLogitCacheHeader(path, m.DataFile, rows, m.Fingerprint, m.Teacher, m.Preprocessor, header.DataOffset + entry.DataBegin, header);
    }

    /// <summary>
    /// Checks a cache's logits in one streaming pass (64 KiB at a time): the data checksum the writer recorded (a mismatch
    /// is reported first), and that every logit is finite — a NaN or infinite logit is refused naming the cache and the
    /// first such row. Memory: the buffer.
    /// </summary>
    public static void VerifyStreamed(TeacherLogitCacheHeader cache)
    {
        ArgumentNullException.ThrowIfNull(cache);
        string path = cache.Path;
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 16];
        fs.Position = cache.File.DataOffset;
        long remaining = cache.File.DataLength, position = 0, first = cache.LogitsOffset - cache.File.DataOffset, end = first + 4L * cache.Rows;
        long badRow = -1;
        float badValue = 0;
        try
        {
            while (remaining > 0)
            {
                int n = (int)Math.Min(buffer.Length, remaining);
                fs.ReadExactly(buffer, 0, n);
                sha.AppendData(buffer, 0, n);
                // The logits lie at [first, end) of the data section; buffers are multiples of 4 and the tensor starts at a multiple of 4.
                for (long at = Math.Max(position, first); badRow < 0 && at + 4 <= Math.Min(position + n, end); at += 4)
                {
                    float v = BinaryPrimitives.ReadSingleLittleEndian(buffer.AsSpan((int)(at - position), 4));
                    if (!float.IsFinite(v)) (badRow, badValue) = ((at - first) / 4, v);
                }
                position += n;
                remaining -= n;
            }
        }
        catch (EndOfStreamException e) { throw new CheckpointFormatException(path, "the file ended before its data section did (was it changed while being read?).", e); }
        if (cache.File.Metadata.TryGetValue(SafeTensorsFile.DataSha256Key, out string? expected))
        {
            string actual = Convert.ToHexStringLower(sha.GetHashAndReset());
            if (actual != expected)
                throw new CheckpointFormatException(path, $"data checksum mismatch: the header records SHA-256 {expected}, the data hashes to {actual}; the file is corrupt.");
        }
        // Reported after the checksum: a corrupt file is called corrupt, a well-written file names its first bad row.
        if (badRow >= 0)
            throw new DataFormatException($"the cached teacher logit of data row {badRow} is {badValue.ToString(CultureInfo.InvariantCulture)}, not a finite number; recompute the cache with a teacher that scores finitely",
                Path.GetFileName(path));
    }

    /// <summary>
    /// The fingerprint (<see cref="Fingerprint"/>) of encoded rows given in file order, in one streaming pass: the ids are
    /// hashed as they come while the labels wait in a temporary file in <paramref name="tempDirectory"/> (4 bytes per
    /// row on disk; the fingerprint hashes every id before the first label). The fingerprint starts with the row count,
    /// which is not known before the pass: <paramref name="expectedRows"/> (the cache's) is hashed, and the rows counted
    /// are returned beside it — when they differ, the fingerprint is not that of the rows and the counts already tell the
    /// data apart.
    /// </summary>
    public static (string Fingerprint, long Rows) FingerprintStreamed(IEnumerable<IRowBlock> blocks, int expectedRows, int fieldCount, string tempDirectory)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> head = stackalloc byte[8];
        BinaryPrimitives.WriteInt32LittleEndian(head, expectedRows);
        BinaryPrimitives.WriteInt32LittleEndian(head[4..], fieldCount);
        sha.AppendData(head);
        string labelsPath = Path.Combine(tempDirectory, "kdengine-fingerprint-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)) + ".labels");
        var buffer = new byte[1 << 16];
        long rows = 0;
        try
        {
            using (var labels = new FileStream(labelsPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                Span<byte> label = stackalloc byte[4];
                // Ids [rows, F] row-major as little-endian int32, gathered into the buffer and hashed when it is full.
                if (buffer.Length < 4 * fieldCount) buffer = new byte[4 * fieldCount];
                int used = 0;
                foreach (var block in blocks)
                    for (int r = 0; r < block.Count; r++)
                    {
                        var ids = block.RowIds(r);
                        if (ids.Length != fieldCount) throw new ArgumentException($"FingerprintStreamed: a row has {ids.Length} ids, expected {fieldCount}.");
                        if (used + 4 * fieldCount > buffer.Length) { sha.AppendData(buffer, 0, used); used = 0; }
                        for (int k = 0; k < ids.Length; k++) BinaryPrimitives.WriteInt32LittleEndian(buffer.AsSpan(used + 4 * k, 4), ids[k]);
                        used += 4 * fieldCount;
                        BinaryPrimitives.WriteSingleLittleEndian(label, block.Label(r));
                        labels.Write(label);
                        rows++;
                    }
                sha.AppendData(buffer, 0, used);
            }
            using (var labels = new FileStream(labelsPath, FileMode.Open, FileAccess.Read, FileShare.None, 1 << 16))
            {
                int n;
                while ((n = labels.Read(buffer)) > 0) sha.AppendData(buffer, 0, n);
            }
        }
        finally
        {
            try { File.Delete(labelsPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        return (Convert.ToHexStringLower(sha.GetHashAndReset()), rows);
    }

    /// <summary>
    /// Throws <see cref="ArgumentException"/> unless <paramref name="cache"/> was computed over rows with
    /// <paramref name="rows"/> rows and <paramref name="fingerprint"/> (<see cref="FingerprintStreamed"/>); the messages
    /// are <see cref="Check(string, CachedLogits, EncodedDataset, string)"/>'s.
    /// </summary>
    public static void Check(TeacherLogitCacheHeader cache, long rows, string fingerprint, string dataFileName)
    {
        ArgumentNullException.ThrowIfNull(cache);
        string name = Path.GetFileName(cache.Path);
        if (cache.Rows != rows)
            throw new ArgumentException($"{name}: the teacher-logit cache was made for '{cache.DataFile}' ({cache.Rows} rows), but '{dataFileName}' has {rows} rows; recompute it with cache-logits.");
        if (!string.Equals(fingerprint, cache.Fingerprint, StringComparison.Ordinal))
            throw new ArgumentException($"{name}: the teacher-logit cache was made for other data ('{cache.DataFile}', fingerprint {Short(cache.Fingerprint)}), not for '{dataFileName}' (fingerprint {Short(fingerprint)}): same row count, different ids or labels; recompute it with cache-logits.");
    }

    /// <summary>A cache's metadata, checked: the format tag, the row count, the data file, the fingerprint, the teacher and the preprocessing.</summary>
    private static (int Rows, string DataFile, string Fingerprint, string Teacher, Preprocessor? Preprocessor) ReadMetadata(string path,
        IReadOnlyDictionary<string, string> meta)
    {
        string name = Path.GetFileName(path);
        string Need(string key) => meta.TryGetValue(key, out var v) ? v
            : throw new CheckpointFormatException(path, $"metadata key '{key}' is missing; this is not a teacher-logit cache.");
        if (Need(FormatKey) != FormatTag) throw new CheckpointFormatException(path, $"{FormatKey} is '{meta[FormatKey]}', not '{FormatTag}'.");
        if (!int.TryParse(Need(RowsKey), NumberStyles.None, CultureInfo.InvariantCulture, out int rows))
            throw new CheckpointFormatException(path, $"{RowsKey} '{meta[RowsKey]}' is not a row count.");
        Preprocessor? pre = null;
        if (meta.TryGetValue(ModelCheckpoint.PreprocessingKey, out var json))
        {
            try { pre = Preprocessor.FromJson(json, name + ": " + ModelCheckpoint.PreprocessingKey); }
            catch (DataFormatException e) { throw new CheckpointFormatException(path, e.Message); }
        }
        return (rows, Need(DataFileKey), Need(FingerprintKey), meta.TryGetValue(TeacherKey, out var t) ? t : "?", pre);
    }

    /// <summary>Reads a cache without checking it against data (see <see cref="Load"/>).</summary>
    public static CachedLogits Read(string path)
    {
        string name = Path.GetFileName(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{name}: teacher-logit cache not found ({Path.GetFullPath(path)}).", path);
        var content = SafeTensorsFile.Read(path);
        var m = ReadMetadata(path, content.Metadata);
        var logits = content.GetFloat32(LogitsTensor, [m.Rows]).ToArray();
        return new CachedLogits(logits, m.DataFile, m.Rows, m.Fingerprint, m.Teacher, m.Preprocessor);
    }

    /// <summary>
    /// Reads a cache and checks it was made for <paramref name="data"/> (same row count and fingerprint of ids and
    /// labels); returns the logits for <see cref="CachedTeacher"/>. A cache made for other data is rejected naming both.
    /// </summary>
    public static float[] Load(string path, EncodedDataset data, string dataFileName)
    {
        var cache = Read(path);
        Check(path, cache, data, dataFileName);
        return cache.Logits;
    }

    /// <summary>Throws <see cref="ArgumentException"/> unless <paramref name="cache"/> was computed over <paramref name="data"/>.</summary>
    public static void Check(string path, CachedLogits cache, EncodedDataset data, string dataFileName)
    {
        string name = Path.GetFileName(path);
        if (cache.Rows != data.Count)
            throw new ArgumentException($"{name}: the teacher-logit cache was made for '{cache.DataFile}' ({cache.Rows} rows), but '{dataFileName}' has {data.Count} rows; recompute it with cache-logits.");
        var fp = Fingerprint(data);
        if (!string.Equals(fp, cache.Fingerprint, StringComparison.Ordinal))
            throw new ArgumentException($"{name}: the teacher-logit cache was made for other data ('{cache.DataFile}', fingerprint {Short(cache.Fingerprint)}), not for '{dataFileName}' (fingerprint {Short(fp)}): same row count, different ids or labels; recompute it with cache-logits.");
    }

    private static string Short(string fingerprint) => fingerprint.Length > 12 ? fingerprint[..12] + "…" : fingerprint;
}
