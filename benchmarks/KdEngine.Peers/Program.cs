using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using KdEngine.Benchmarks;
using KdEngine.Peers;
using Perfolizer.Horology;

// Verbs (run from the repository root; benchmarks/run-peers.sh does `all`):
//   all [--quick] [--threads 1,2] [BenchmarkDotNet args]  verify, benchmarks, then report (tables into docs/benchmarks.md, chart)
//   verify                                                the agreement checks only
//   bench [--quick] [--threads 1,2] [BenchmarkDotNet args] the benchmarks only (default filter: every peer suite)
//   report [--no-docs]                                    tables + chart from BenchmarkDotNet.Artifacts/results
//   accuracy [--datasets criteo,criteo-random,synthetic] [--models lr,dnn,wdl,xdeepfm] [--engines kdengine,torchsharp,kdengine-defaults]
//            [--seeds 5] [--synthetic-rows 200000] [--epochs 30] [--threads 1]
//                                                         KdEngine vs TorchSharp test accuracy (see Accuracy.cs); resumable
//   reliability [--model xdeepfm] [--out docs/img/reliability.png]   the reliability plot of docs/results.md
// --quick: a 1-warm-up, 3-iteration job (a smoke test; its numbers are not for the write-up).
// BenchmarkDotNet args pass through, e.g. --filter '*PeerInference*' or --filter '*TrainingBenchmarks*'.
const string Artifacts = "BenchmarkDotNet.Artifacts";
string results = Path.Combine(Artifacts, "results");
string runInfoPath = Path.Combine(results, "peers-run.md");
const string ChartPath = "docs/img/peer-latency.png";
const string DocPath = "docs/benchmarks.md";

var rest = args.ToList();
string verb = rest.Count > 0 && !rest[0].StartsWith('-') ? rest[0] : "all";
if (rest.Count > 0 && rest[0] == verb) rest.RemoveAt(0);
bool quick = rest.Remove("--quick");
bool noDocs = rest.Remove("--no-docs");
int ti = rest.IndexOf("--threads");
if (ti >= 0 && ti + 1 < rest.Count)
{
    PeerSettings.Threads = rest[ti + 1].Split(',').Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
    TrainingBenchmarks.ThreadList = PeerSettings.Threads;
    rest.RemoveRange(ti, 2);
}

string? Arg(string name)
{
    int i = rest.IndexOf(name);
    if (i < 0 || i + 1 >= rest.Count) return null;
    string v = rest[i + 1];
    rest.RemoveRange(i, 2);
    return v;
}

switch (verb)
{
    case "accuracy":
    {
        var defaults = new Accuracy.Options();
        string[]? List(string name) => Arg(name)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var options = new Accuracy.Options
        {
            Datasets = List("--datasets") ?? defaults.Datasets,
            Models = List("--models") ?? defaults.Models,
            Engines = List("--engines") ?? defaults.Engines,
            Seeds = Arg("--seeds") is { } s ? int.Parse(s, CultureInfo.InvariantCulture) : defaults.Seeds,
            SyntheticRows = Arg("--synthetic-rows") is { } r ? int.Parse(r, CultureInfo.InvariantCulture) : defaults.SyntheticRows,
            MaxEpochs = Arg("--epochs") is { } e ? int.Parse(e, CultureInfo.InvariantCulture) : defaults.MaxEpochs,
            Threads = PeerSettings.Threads.Length == 1 ? PeerSettings.Threads[0] : 1,
            OutputDirectory = Arg("--out-dir") ?? defaults.OutputDirectory,
            Progress = Console.Out,
        };
        Accuracy.Run(options, Console.Out);
        return 0;
    }
    case "reliability":
        ReliabilityPlot.Run(Arg("--out") ?? "docs/img/reliability.png", Console.Out, Arg("--model") ?? "xdeepfm");
        return 0;
    case "torch-cin-probe":
        TorchCinProbe.Run(Console.Out);
        return 0;
    case "verify":
        Verify.Run(Console.Out);
        return 0;
    case "bench":
        return Bench();
    case "report":
        return ReportAll();
    case "all":
        Verify.Run(Console.Out);
        int rc = Bench();
        return rc != 0 ? rc : ReportAll();
    default:
        Console.Error.WriteLine($"unknown verb '{verb}' (all, verify, bench, report, accuracy, reliability)");
        return 2;
}

int Bench()
{
    if (!Environment.CurrentDirectory.Equals(RepoRoot(), StringComparison.Ordinal))
        Console.Error.WriteLine($"note: run from the repository root ({RepoRoot()}) so that reports and docs land there.");
    var job = (quick
            ? Job.Default.WithWarmupCount(1).WithIterationCount(3).WithIterationTime(TimeInterval.FromMilliseconds(50)).WithId("PeersQuick")
            : Job.Default.WithWarmupCount(3).WithIterationCount(8).WithIterationTime(TimeInterval.FromMilliseconds(200)).WithId("Peers"))
        .WithLaunchCount(1)
        // BenchmarkDotNet's generated project copies libLibTorchSharp.so from the NuGet cache again: patch that copy too.
        .WithArguments([new MsBuildArgument($"/p:CustomAfterMicrosoftCommonTargets={Path.Combine(RepoRoot(), "benchmarks", "KdEngine.Peers", "PatchLibTorchSharp.targets")}")]);
    var config = DefaultConfig.Instance
        .AddJob(job)
        .AddExporter(JsonExporter.Brief)
        .AddColumn(StatisticColumn.Median)
        .WithArtifactsPath(Artifacts)
        .WithOptions(ConfigOptions.DisableLogFile);
    string load0 = LoadAverage();
    var started = DateTime.UtcNow;
    var bdnArgs = rest.Contains("--filter") ? rest.ToArray() : rest.Concat(["--filter", "*"]).ToArray();
    var summaries = BenchmarkSwitcher
        .FromTypes([typeof(PeerInferenceBenchmarks), typeof(TrainingBenchmarks), typeof(TorchTrainingBenchmarks)])
        .Run(bdnArgs, config)
        .ToList();
    Directory.CreateDirectory(results);
    File.WriteAllText(runInfoPath,
        $"Run: {started:yyyy-MM-dd HH:mm} UTC, {(DateTime.UtcNow - started).TotalMinutes:F0} min; job {job.Id} (inference: 3 warm-ups + 8 iterations of ≥ 200 ms; training: 1 + 5"
        + $"{(quick ? "; QUICK smoke job: inference 1 warm-up + 3 iterations of ≥ 50 ms — not for the write-up" : "")}); "
        + $"load average (1/5/15 min) before: {load0}, after: {LoadAverage()}. Machine: {Machine()}.");
    bool failed = summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success));
    if (failed) Console.Error.WriteLine("some benchmark cells failed (see the log above); the report will leave them out.");
    return failed ? 1 : 0;
}

int ReportAll()
{
    var all = Report.Load(results);
    if (all.Count == 0)
    {
        Console.Error.WriteLine($"no BenchmarkDotNet results under {results}; run the `bench` verb first.");
        return 1;
    }
    string? runInfo = File.Exists(runInfoPath) ? File.ReadAllText(runInfoPath).Trim() : null;
    Report.Chart(all, ChartPath, runInfo is null ? null : "load average " + LoadFrom(runInfo));
    string md = Report.Markdown(all, runInfo, "img/peer-latency.png");
    File.WriteAllText(Path.Combine(results, "peers-tables.md"), md);
    Console.WriteLine(md);
    if (!noDocs && File.Exists(DocPath))
    {
        Report.UpdateDoc(DocPath, md);
        Console.WriteLine($"updated {DocPath} (between the peers markers) and {ChartPath}");
    }
    return 0;
}

static string LoadAverage()
{
    try { return string.Join(" / ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
    catch (IOException) { return "n/a"; }
}

static string LoadFrom(string runInfo)
{
    int i = runInfo.IndexOf("before: ", StringComparison.Ordinal);
    int j = runInfo.IndexOf(". Machine", StringComparison.Ordinal);
    return i >= 0 && j > i ? runInfo[i..j] : "n/a";
}

static string Machine()
{
    string cpu = "unknown CPU";
    try
    {
        cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? cpu;
    }
    catch (IOException) { }
    return $"{cpu}, {Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}";
}

static string RepoRoot()
{
    var dir = new DirectoryInfo(AppContext.BaseDirectory);
    while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "KdEngine.sln"))) dir = dir.Parent;
    return dir?.FullName ?? Environment.CurrentDirectory;
}
