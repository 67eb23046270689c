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

    /// <summary>Reads a cache without checking it against data (see <see cref="Load"/>).</summary>
    public static CachedLogits Read(string path)
    {
        string name = Path.GetFileName(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{name}: teacher-logit cache not found ({Path.GetFullPath(path)}).", path);
        var content = SafeTensorsFile.Read(path);
        var meta = content.Metadata;
        string Need(string key) => meta.TryGetValue(key, out var v) ? v
            : throw new CheckpointFormatException(path, $"metadata key '{key}' is missing; this is not a teacher-logit cache.");
        if (Need(FormatKey) != FormatTag) throw new CheckpointFormatException(path, $"{FormatKey} is '{meta[FormatKey]}', not '{FormatTag}'.");
        if (!int.TryParse(Need(RowsKey), NumberStyles.None, CultureInfo.InvariantCulture, out int rows))
            throw new CheckpointFormatException(path, $"{RowsKey} '{meta[RowsKey]}' is not a row count.");
        var logits = content.GetFloat32(LogitsTensor, [rows]).ToArray();
        Preprocessor? pre = null;
        if (meta.TryGetValue(ModelCheckpoint.PreprocessingKey, out var json))
        {
            try { pre = Preprocessor.FromJson(json, name + ": " + ModelCheckpoint.PreprocessingKey); }
            catch (DataFormatException e) { throw new CheckpointFormatException(path, e.Message); }
        }
        return new CachedLogits(logits, Need(DataFileKey), rows, Need(FingerprintKey), meta.TryGetValue(TeacherKey, out var t) ? t : "?", pre);
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
