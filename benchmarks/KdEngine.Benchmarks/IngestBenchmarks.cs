using System.Diagnostics;
using System.Globalization;
using System.Text;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using KdEngine.Data;

namespace KdEngine.Benchmarks;

/// <summary>
/// Ingest throughput: the fit pass (parse + count values) and the encode pass (parse + map to ids) of the streaming
/// pipeline over a generated Criteo-like TSV, on 1 and 2 parsing threads. The file is written by the benchmark into the
/// temp folder and deleted afterwards. Extra columns give MB/s and rows/s (operations are rows).
/// <c>dotnet run -c Release --project benchmarks/KdEngine.Benchmarks -- --filter *Ingest*</c>; for a quick number
/// without BenchmarkDotNet: <c>… -- ingest-probe [rows] [workers] [criteo|synth39]</c>.
/// </summary>
[Config(typeof(IngestConfig))]
[MemoryDiagnoser]
public class IngestBenchmarks
{
    public const int Rows = 200_000;

    [Params("criteo", "synth39")]
    public string Shape { get; set; } = "criteo";

    [Params(1, 2)]
    public int Workers { get; set; } = 1;

    private string _path = "";
    private InputSet _input = null!;
    private Preprocessor _pre = null!;

    [GlobalSetup]
    public void Setup()
    {
        _path = IngestData.Write(Shape, Rows);
        _input = new InputSet([_path], IngestData.Format(Shape));
        _pre = DataPasses.Fit(_input, new PreprocessorOptions { MinCount = 2 }, new PassOptions { Workers = Workers }, out _);
    }

    [GlobalCleanup]
    public void Cleanup() => IngestData.Delete(_path);

    [Benchmark(OperationsPerInvoke = Rows, Description = "fit pass (parse + count)")]
    public long Fit() => DataPasses.Count(_input, new PreprocessorOptions { MinCount = 2 }, new PassOptions { Workers = Workers }, out _).Rows;

    [Benchmark(OperationsPerInvoke = Rows, Description = "encode pass (parse + ids)")]
    public long Encode()
    {
        long rows = 0;
        foreach (var block in DataPasses.Encode(_input, _pre, null, new PassOptions { Workers = Workers })) rows += block.Count;
        return rows;
    }

    private sealed class IngestConfig : ManualConfig
    {
        public IngestConfig() => AddColumn(new ThroughputColumn("MB/s", bytesPerRow: true), new ThroughputColumn("rows/s", bytesPerRow: false));
    }

    /// <summary>MB/s or rows/s from the mean time per row (operations are rows) and the generated file's bytes per row.</summary>
    private sealed class ThroughputColumn(string name, bool bytesPerRow) : IColumn
    {
        public string Id => "Ingest" + name;
        public string ColumnName => name;
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 0;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => bytesPerRow ? "Megabytes of file per second (1 MB = 10^6 bytes)" : "Rows per second";
        public bool IsAvailable(Summary summary) => true;
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            var report = summary[benchmarkCase];
            if (report?.ResultStatistics is not { } stats) return "-";
            double rowsPerSecond = 1e9 / stats.Mean;
            if (!bytesPerRow) return rowsPerSecond.ToString("N0", CultureInfo.InvariantCulture);
            string shape = (string)benchmarkCase.Parameters["Shape"];
            return (rowsPerSecond * IngestData.BytesPerRow(shape) / 1e6).ToString("F0", CultureInfo.InvariantCulture);
        }
    }
}

/// <summary>The generated ingest files: <c>criteo</c> (label, 13 integer columns, 26 hex-token columns) and <c>synth39</c>
/// (what <c>kdengine synth --fields 39 --vocab 100000</c> writes: label and 39 hex tokens, with a header).</summary>
public static class IngestData
{
    private static readonly Dictionary<string, double> SizeCache = new();

    /// <summary>Cap on the ids per categorical column of the criteo shape.</summary>
    public static int CriteoVocabulary { get; set; } = 10_000_000;

    public static RowFileFormat Format(string shape) => shape switch
    {
        "criteo" => new TextFileFormat(new DelimitedFormat(Schema.Criteo(), new DelimitedOptions { HasHeader = false })),
        _ => new TextFileFormat(new DelimitedFormat(Synth39Schema(), new DelimitedOptions { HasHeader = true })),
    };

    public static Schema Synth39Schema() => new(new[] { FieldSpec.Label() }.Concat(Enumerable.Range(1, 39).Select(i => FieldSpec.Categorical("C" + i))));

    /// <summary>Writes <paramref name="rows"/> rows of a shape to a new temp file; returns its path.</summary>
    public static string Write(string shape, long rows)
    {
        string dir = Path.Combine(Path.GetTempPath(), "kdengine-ingest-bench");
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, $"{shape}-{rows}-{Environment.ProcessId}-{Guid.NewGuid():N}.tsv");
        using var w = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 20);
        WriteTo(w, shape, rows);
        return path;
    }

    public static void WriteTo(TextWriter w, string shape, long rows)
    {
        if (shape == "synth39")
        {
            var gen = new SyntheticCtr(new SyntheticCtrOptions { Fields = 39, VocabSize = 100_000, Seed = 1 });
            w.Write(string.Join('\t', gen.Schema.Fields.Select(f => f.Name)) + "\n");
            gen.WriteCriteoTsv(w, rows);
            return;
        }
        // Criteo-like: integer counts (often small, some missing); categorical ids as 8 hex digits, log-uniform
        // (P(id) ∝ 1/id, Zipf s ≈ 1) with cardinalities from 10 (C1) to 10^7 (C26), like the Kaggle file's.
        var rng = new Random(7);
        var sb = new StringBuilder(512);
        for (long r = 0; r < rows; r++)
        {
            sb.Clear();
            sb.Append(rng.Next(4) == 0 ? '1' : '0');
            for (int i = 0; i < 13; i++)
            {
                sb.Append('\t');
                if (rng.Next(5) == 0) continue;
                int v = (int)Math.Floor(Math.Exp(rng.NextDouble() * 8)) - 2;
                sb.Append(v.ToString(CultureInfo.InvariantCulture));
            }
            for (int i = 0; i < 26; i++)
            {
                sb.Append('\t');
                if (rng.Next(12) == 0) continue;
                double cardinality = Math.Min(CriteoVocabulary, Math.Pow(10, 1 + 6.0 * i / 25));
                int id = (int)Math.Floor(Math.Exp(rng.NextDouble() * Math.Log(cardinality + 1))) - 1;
                sb.Append(((uint)(id * 2654435761u + i * 40503u)).ToString("x8", CultureInfo.InvariantCulture));
            }
            sb.Append('\n');
            w.Write(sb);
        }
    }

    /// <summary>Mean bytes per row of a shape (from 20,000 generated rows; the generators are deterministic).</summary>
    public static double BytesPerRow(string shape)
    {
        lock (SizeCache)
        {
            if (SizeCache.TryGetValue(shape, out var v)) return v;
            var counter = new CountingWriter();
            WriteTo(counter, shape, 20_000);
            return SizeCache[shape] = counter.Bytes / 20_000.0;
        }
    }

    public static void Delete(string path)
    {
        try { File.Delete(path); } catch (IOException) { }
    }

    private sealed class CountingWriter : TextWriter
    {
        public long Bytes { get; private set; }
        public override Encoding Encoding => Encoding.UTF8;
        public override void Write(char value) => Bytes += value < 0x80 ? 1 : Encoding.UTF8.GetByteCount([value]);
        public override void Write(string? value) { if (value is not null) Bytes += Encoding.UTF8.GetByteCount(value); }
        public override void Write(StringBuilder? value) { if (value is not null) foreach (var chunk in value.GetChunks()) Bytes += Encoding.UTF8.GetByteCount(chunk.Span); }
    }
}

/// <summary>
/// A quick ingest measurement without BenchmarkDotNet: generates (or takes) a file, runs the fit pass and the encode pass
/// three times each and prints the best MB/s and rows/s. <c>ingest-probe [rows] [workers] [criteo|synth39|FILE]</c>.
/// </summary>
public static class IngestProbe
{
    public static void Run(string[] args)
    {
        long rows = args.Length > 0 ? long.Parse(args[0], CultureInfo.InvariantCulture) : 300_000;
        int workers = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : Environment.ProcessorCount;
        string shape = args.Length > 2 ? args[2] : "criteo";
        bool generated = !File.Exists(shape);
        string path = generated ? IngestData.Write(shape, rows) : shape;
        try
        {
            var format = generated ? IngestData.Format(shape) : IngestData.Format(path.Contains("synth", StringComparison.Ordinal) ? "synth39" : "criteo");
            var input = new InputSet([path], format);
            long bytes = new FileInfo(path).Length;
            Console.WriteLine($"{Path.GetFileName(path)}: {bytes / 1e6:F1} MB, {workers} parsing thread(s), {Environment.ProcessorCount} cores");
            var pass = new PassOptions { Workers = workers };
            var pre = DataPasses.Fit(input, new PreprocessorOptions { MinCount = 2 }, pass, out var fitReport);
            rows = fitReport.Rows;
            Console.WriteLine($"vocabularies: {pre.FeatureSpace.Fields.Sum(f => (long)f.Cardinality):N0} ids");
            Measure("fit pass (parse + count)", () => DataPasses.Count(input, new PreprocessorOptions { MinCount = 2 }, pass, out _).Rows, bytes, rows);
            Measure("encode pass (parse + ids)", () =>
            {
                long n = 0;
                foreach (var b in DataPasses.Encode(input, pre, null, pass)) n += b.Count;
                return n;
            }, bytes, rows);
        }
        finally
        {
            if (generated) IngestData.Delete(path);
        }
    }

    private static void Measure(string name, Func<long> pass, long bytes, long rows)
    {
        // Wall time, and CPU time of the whole process (all threads): on a loaded machine MB per CPU-second is the
        // per-core throughput the code reaches when it runs, which wall time hides.
        double best = double.MaxValue, bestCpu = double.MaxValue;
        var process = Process.GetCurrentProcess();
        for (int i = 0; i < 3; i++)
        {
            process.Refresh();
            var cpu0 = process.TotalProcessorTime;
            var sw = Stopwatch.StartNew();
            long n = pass();
            sw.Stop();
            process.Refresh();
            double cpu = (process.TotalProcessorTime - cpu0).TotalSeconds;
            if (n != rows) throw new InvalidOperationException($"{name}: {n} rows, expected {rows}");
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
            bestCpu = Math.Min(bestCpu, cpu);
        }
        Console.WriteLine($"  {name,-28} {bytes / 1e6 / best,7:F0} MB/s wall  {rows / best,12:N0} rows/s  (best of 3: {best:F2} s)  |  {bytes / 1e6 / bestCpu,5:F0} MB per CPU-second ({bestCpu:F2} CPU-s)");
    }
}

/// <summary>
/// Where ingest time goes, on one thread over a file held in memory: lines only, + parsing, + counting, + encoding
/// (CPU seconds of each stage). <c>ingest-stages [rows] [criteo|synth39]</c>.
/// </summary>
public static class IngestStages
{
    public static void Run(string[] args)
    {
        long rows = args.Length > 0 ? long.Parse(args[0], CultureInfo.InvariantCulture) : 200_000;
        string shape = args.Length > 1 ? args[1] : "criteo";
        if (args.Length > 2) IngestData.CriteoVocabulary = int.Parse(args[2], CultureInfo.InvariantCulture);
        string path = IngestData.Write(shape, rows);
        try
        {
            var bytes = File.ReadAllBytes(path);
            var format = (TextFileFormat)IngestData.Format(shape);
            var layout = format.LayoutOf(path, ReaderOptions.Default);
            var parser = format.Text.CreateParser(layout, "x");
            var schema = format.Schema;
            var row = new RawRow(schema);
            var input = new InputSet([path], format);
            var pre = DataPasses.Fit(input, new PreprocessorOptions { MinCount = 2 }, new PassOptions { Workers = 1 }, out _);
            var encoded = new EncodedRow(pre.FeatureSpace);
            var block = new EncodedBlock(pre.FeatureSpace, 4096);
            Console.WriteLine($"{shape}: {bytes.Length / 1e6:F1} MB, {rows} rows, one thread");
            Stage("lines", bytes, layout, (line, s, n) => { });
            Stage("+ parse", bytes, layout, (line, s, n) => parser.Parse(bytes, s, n, row, line));
            ulong sink = 0;
            Stage("+ parse + hash", bytes, layout, (line, s, n) =>
            {
                parser.Parse(bytes, s, n, row, line);
                for (int f = 1; f < schema.Count; f++)
                {
                    if (!row.Has(f)) continue;
                    sink += schema[f].Kind == FieldKind.Numeric ? NumericBuckets.TokenHash(row.Numbers[f], Bucketing.LogSquared) : StableHash.OfValue(row.Value(f));
                }
            });
            GC.KeepAlive(sink);
            var counts = new PreprocessorCounts(schema, new PreprocessorOptions { MinCount = 2 });
            Stage("+ parse + count", bytes, layout, (line, s, n) => { parser.Parse(bytes, s, n, row, line); counts.Add(row); });
            PreprocessorCounts? fresh = null;
            Stage("+ count, new tables", bytes, layout, (line, s, n) =>
            {
                if (line <= 2) fresh = new PreprocessorCounts(schema, new PreprocessorOptions { MinCount = 2 });
                parser.Parse(bytes, s, n, row, line);
                fresh!.Add(row);
            });
            Stage("+ parse + encode", bytes, layout, (line, s, n) =>
            {
                parser.Parse(bytes, s, n, row, line);
                pre.Encode(row, encoded);
                if (block.Count == 4096) block.Clear();
                block.Add(encoded);
            });
        }
        finally { IngestData.Delete(path); }
    }

    private delegate void LineAction(long line, int start, int length);

    private static void Stage(string name, byte[] bytes, TextLayout layout, LineAction action)
    {
        double best = double.MaxValue;
        var thread = System.Diagnostics.Process.GetCurrentProcess();
        for (int rep = 0; rep < 3; rep++)
        {
            var t0 = CurrentThreadCpu();
            var cursor = new LineCursor(bytes, 1);
            bool header = layout.HeaderConsumed;
            while (cursor.Next(out var l))
            {
                if (LineText.IsBlank(l)) continue;
                if (header) { header = false; continue; }
                action(cursor.LineNumber, cursor.LineStart, l.Length);
            }
            best = Math.Min(best, (CurrentThreadCpu() - t0).TotalSeconds);
        }
        Console.WriteLine($"  {name,-20} {best:F3} CPU-s  {bytes.Length / 1e6 / best,6:F0} MB per CPU-second");
    }

    private static TimeSpan CurrentThreadCpu()
    {
        // /proc/thread-self/stat fields 14 and 15: user and system time of this thread in clock ticks.
        var stat = File.ReadAllText("/proc/thread-self/stat");
        var parts = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        long ticks = long.Parse(parts[11], CultureInfo.InvariantCulture) + long.Parse(parts[12], CultureInfo.InvariantCulture);
        return TimeSpan.FromSeconds(ticks / 100.0);
    }
}
