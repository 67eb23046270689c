using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using KdEngine.Data;
using KdEngine.Distillation;

namespace KdEngine.Pipelines;

/// <summary>
/// External teacher scores for streamed data: teacher-logit caches and external scores (a column of the data file, a
/// side file aligned by row or keyed by an id column) become a <see cref="TeacherScoreTable"/> over the file's rows,
/// which every part's batches read by row ordinal. Nothing is held per row in memory:
/// <list type="bullet">
/// <item>a cache is checked in one streaming pass over the encoded rows (the fingerprint of ids and labels; the labels
/// wait in a temporary file, 4 bytes per row) and one over its logits (data checksum, finiteness), then read in place
/// from its own file, memory-mapped;</item>
/// <item>external scores are read in one pass over the data file's records beside the side files
/// (<see cref="TeacherScores.Open"/>: the same validation as the in-memory path, errors naming file, line and data row)
/// and written to a temporary file of [rows, K] float32 (4 bytes per row and source, on disk), memory-mapped and deleted
/// when the data is disposed. A keyed side file keeps its id → score map in memory, bounded by
/// <see cref="TeacherScoreSource.MaxKeys"/>.</item>
/// </list>
/// The scores index the rows of one file, so the parts must be one file cut by a sequential split (train, validation and
/// test tile it in order: part row i is file row offset + i, the offset being the rows of the parts before it).
/// </summary>
public static class StreamedTeacherScores
{
    /// <summary>
    /// Checks and attaches <paramref name="caches"/> (teacher-logit cache files, computed over the whole data file) and
    /// <paramref name="external"/> score sources, in that order, as the K teacher-logit columns of every part's batches;
    /// returns the table (owned by <paramref name="data"/>). <paramref name="options"/>: progress, bad-row policy, and
    /// the folder for temporary files (<see cref="StreamingOptions.TemporaryDirectory"/>).
    /// </summary>
    public static TeacherScoreTable Attach(StreamedData data, IReadOnlyList<string> caches, IReadOnlyList<TeacherScoreSource> external, StreamingOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(caches);
        ArgumentNullException.ThrowIfNull(external);
        options ??= new StreamingOptions();
        if (caches.Count + external.Count == 0) throw new ArgumentException("teacher scores: no cache and no external source given.");
        string dataName = data.Source.FileName;
        if (!data.SplitOfOneFile)
            throw new ArgumentException($"teacher scores index the rows of one data file: give one --data file cut by a sequential --split (not a hash split, not --train/--valid/--test input sets; {dataName}).");
        StreamedPart[] parts = data.Test is null ? [data.Train, data.Validation] : [data.Train, data.Validation, data.Test];
        string tempDirectory = options.TemporaryDirectory ?? options.CacheDirectory ?? Path.GetTempPath();
        Directory.CreateDirectory(tempDirectory);

        var headers = caches.Select(TeacherLogitCache.ReadHeader).ToArray();
        string json = data.Preprocessor.ToJson();
        foreach (var h in headers)
            if (h.Preprocessor is null || h.Preprocessor.ToJson() != json)
                throw new ArgumentException($"{Path.GetFileName(h.Path)}: the teacher-logit cache was made with other preprocessing than the data is encoded with; encode the data with the cache's preprocessing (or recompute it with cache-logits).");

        long rows;
        if (headers.Length > 0 || parts.Any(p => p.Rows < 0))
        {
            // One pass over the encoded rows in file order (train, validation, test): it counts every part (teaching
            // streamed parts their units' rows) and fingerprints the rows for the caches.
            var (fingerprint, counted) = TeacherLogitCache.FingerprintStreamed(parts.SelectMany(p => p.Blocks()),
                headers.Length > 0 ? headers[0].Rows : 0, data.Preprocessor.FeatureSpace.FieldCount, tempDirectory);
            rows = counted;
            foreach (var h in headers)
            {
                // A second cache with another row count is refused by the count; with the same count the fingerprint is right for it too.
                TeacherLogitCache.Check(h, rows, h.Rows == headers[0].Rows ? fingerprint : "", dataName);
                TeacherLogitCache.VerifyStreamed(h);
                options.Progress?.WriteLine($"teacher-logit cache {Path.GetFileName(h.Path)}: {h.Rows:N0} rows, fingerprint and logits checked");
            }
        }
        else rows = parts.Sum(p => p.Rows);
        if (parts.Sum(p => p.Rows) != rows)
            throw new InvalidOperationException($"{dataName}: the parts hold {parts.Sum(p => p.Rows)} rows after a pass that counted {rows}.");

        var columns = new List<TeacherScoreTable.ColumnFile>();
        foreach (var h in headers) columns.Add(new(h.Path, h.LogitsOffset, 4, Path.GetFileName(h.Path)));
        string? scoresPath = null;
        try
        {
            if (external.Count > 0)
            {
                scoresPath = Path.Combine(tempDirectory, "kdengine-teacher-scores-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)) + ".f32");
                long read = WriteExternal(data.Source with { ReaderOptions = options.Reader }, external, scoresPath, options.Progress);
                if (read != rows)
                    throw new DataFormatException($"the teacher scores were read for {read} data rows, but the streamed passes encoded {rows}", dataName);
                for (int k = 0; k < external.Count; k++)
                    columns.Add(new(scoresPath, 4L * k, 4 * external.Count, external[k].ToString(), DeleteOnClose: k == 0));
            }
        }
        catch
        {
            if (scoresPath is not null) try { File.Delete(scoresPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
        var table = TeacherScoreTable.Map(columns, rows);
        data.UseTeacherScores(table);
        long offset = 0;
        foreach (var part in parts)
        {
            part.UseTeacherScores(table, offset);
            offset += part.Rows;
        }
        return table;
    }

    /// <summary>
    /// One pass over the data file's records beside the score sources: each record's K logits, validated, written to
    /// <paramref name="path"/> as [rows, K] little-endian float32. Returns the records read.
    /// </summary>
    private static long WriteExternal(DataSource source, IReadOnlyList<TeacherScoreSource> external, string path, TextWriter? progress)
    {
        progress?.WriteLine($"reading teacher scores: {string.Join("; ", external.Select(e => e.ToString()))}");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var reader = source.Open();
        using var scores = TeacherScores.Open(external, reader.FilePath, reader.Schema);
        int k = external.Count;
        var row = new float[k];
        var bytes = new byte[4 * k];
        long n = 0;
        using (var output = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
        {
            foreach (var record in reader)
            {
                scores.Next(record, row);
                for (int c = 0; c < k; c++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * c, 4), row[c]);
                output.Write(bytes);
                n++;
            }
            scores.Finish(reader.SkippedRows);
        }
        progress?.WriteLine(string.Create(CultureInfo.InvariantCulture, $"teacher scores: {n:N0} rows × {k} checked in {clock.Elapsed.TotalSeconds:F1} s"));
        return n;
    }
}
