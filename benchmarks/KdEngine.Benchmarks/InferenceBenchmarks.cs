using BenchmarkDotNet.Attributes;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Serving;

namespace KdEngine.Benchmarks;

/// <summary>
/// WDL vs xDeepFM inference latency through <see cref="Predictor"/> (the inference-only plan: no tape, no tensors,
/// zero allocation — the Allocated column must read 0 B / "-"). Configurations from docs/models.md:
/// <list type="bullet">
/// <item><b>bench</b>: F = 39, D = 16, 65,536 buckets per field, DNN [400, 400, 400], CIN [200, 200, 200] split-half.</item>
/// <item><b>paper</b>: F = 39, D = 10, DNN [400, 400, 400], CIN [200, 200, 200] (no split-half, identity activation, as
/// in the xDeepFM paper); the paper's vocabulary is data-driven — 65,536 rows per field here (the table size only
/// changes the gather's cache misses).</item>
/// </list>
/// Threads: the predictor runs on the calling thread; the SGEMM may use more (intra-op) through
/// <c>CpuParallel.ThreadCount</c> (1 or 2).
/// Run: <c>dotnet run -c Release --project benchmarks/KdEngine.Benchmarks -- --filter '*InferenceBenchmarks*' --job short</c>
/// </summary>
[MemoryDiagnoser]
public class InferenceBenchmarks
{

    private Predictor _predictor = null!;
    private int[] _ids = [];
    private float[] _output = [];
    private int? _savedThreads;

    [Params("bench", "paper")]
    public string Config { get; set; } = "bench";

    [Params(ModelKind.Wdl, ModelKind.XDeepFm)]
    public ModelKind Model { get; set; }

    [Params(1, 16, 128, 1024)]
    public int Batch { get; set; }

    [ParamsSource(nameof(ThreadCounts))]
    public int Threads { get; set; }

    public static IEnumerable<int> ThreadCounts() => [1, 2];

    public static ModelConfig ConfigFor(string name, ModelKind kind) => BenchModels.ConfigFor(name, kind);

    public const int Fields = BenchModels.Fields;
    public const int Buckets = BenchModels.Buckets;

    [GlobalSetup]
    public void Setup()
    {
        var fields = Enumerable.Range(0, Fields).Select(i => new InputField($"C{i + 1}", Buckets)).ToArray();
        var model = new ZooModel(ConfigFor(Config, Model), fields) { Training = false };
        _predictor = new Predictor(model);
        var rng = new Random(42);
        _ids = new int[Batch * Fields];
        for (int i = 0; i < _ids.Length; i++) _ids[i] = rng.Next(Buckets);
        _output = new float[Batch];
        _savedThreads = KdEngine.Kernels.Cpu.CpuParallel.ThreadCount;
        KdEngine.Kernels.Cpu.CpuParallel.ThreadCount = Threads;
        _predictor.Predict(_ids, _output); // grows this thread's workspace before measuring
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_savedThreads is { } t) KdEngine.Kernels.Cpu.CpuParallel.ThreadCount = t;
    }

    [Benchmark]
    public float Predict()
    {
        _predictor.Predict(_ids, _output);
        return _output[0];
    }
}
