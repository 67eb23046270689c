using BenchmarkDotNet.Attributes;
using KdEngine.Kernels.Cpu;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Serving;

namespace KdEngine.Benchmarks;

/// <summary>
/// The <see cref="Predictor"/> in each serving precision (fp32, bf16, int8 = int8 dense weights + bf16 embeddings), per call
/// at batch 1 / 100 / 1,000 on 1 and 2 threads:
/// <list type="bullet">
/// <item><b>student</b>: docs/results.md's distilled student shape — DNN [32], D 10 over 39 fields with the Criteo sample's
/// 11,466 ids (294 per field here; latency does not depend on trained weight values);</item>
/// <item><b>wdl-bench</b>, <b>xdeepfm-bench</b>: the bench config (39 × 65,536 ids, D 16, DNN [400, 400, 400], CIN
/// [200, 200, 200] split-half).</item>
/// </list>
/// Allocated must read 0 B / "-". Target: int8/bf16 ≥ 1.5× fp32 at batch 1 and 1,000 (Ratio column, baseline fp32).
/// Run: <c>dotnet run -c Release --project benchmarks/KdEngine.Benchmarks -- --filter '*ServingPrecisionBenchmarks*' --job short</c>
/// (<c>KDENGINE_PRECISION_MODELS=student</c> for the student only).
/// </summary>
[MemoryDiagnoser]
public class ServingPrecisionBenchmarks
{
    [ParamsSource(nameof(Models))]
    public string Model { get; set; } = "student";

    /// <summary>Every model, or the comma-separated list in KDENGINE_PRECISION_MODELS (e.g. <c>student</c> for the
    /// reduced run of benchmarks/run-serving.sh).</summary>
    public static IEnumerable<string> Models() =>
        Environment.GetEnvironmentVariable("KDENGINE_PRECISION_MODELS") is { Length: > 0 } list
            ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            : ["student", "wdl-bench", "xdeepfm-bench"];

    [Params(1, 100, 1000)]
    public int Batch { get; set; }

    [Params(1, 2)]
    public int Threads { get; set; }

    private Predictor _fp32 = null!, _bf16 = null!, _int8 = null!;
    private int[] _ids = [];
    private float[] _output = [];
    private int _savedThreads;

    [GlobalSetup]
    public void Setup()
    {
        (ModelConfig config, InputField[] fields) = Model switch
        {
            "student" => (new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 10, Dnn = [32], Seed = 1 },
                Enumerable.Range(0, BenchModels.Fields).Select(i => new InputField($"C{i + 1}", 294)).ToArray()),
            "wdl-bench" => (BenchModels.ConfigFor("bench", ModelKind.Wdl), BenchModels.InputFields()),
            "xdeepfm-bench" => (BenchModels.ConfigFor("bench", ModelKind.XDeepFm), BenchModels.InputFields()),
            _ => throw new ArgumentException($"unknown model '{Model}'"),
        };
        var model = new ZooModel(config, fields) { Training = false };
        _fp32 = new Predictor(model);
        _bf16 = new Predictor(model, precision: ServingPrecision.BFloat16);
        _int8 = new Predictor(model, precision: ServingPrecision.Int8);
        var rng = new Random(42);
        _ids = new int[Batch * fields.Length];
        for (int b = 0; b < Batch; b++)
            for (int f = 0; f < fields.Length; f++) _ids[b * fields.Length + f] = rng.Next(fields[f].Cardinality);
        _output = new float[Batch];
        _savedThreads = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = Threads;
        foreach (var p in new[] { _fp32, _bf16, _int8 }) p.Predict(_ids, _output); // grow the workspaces before measuring
    }

    [GlobalCleanup]
    public void Cleanup() => CpuParallel.ThreadCount = _savedThreads;

    [Benchmark(Baseline = true)]
    public float Fp32()
    {
        _fp32.Predict(_ids, _output);
        return _output[0];
    }

    [Benchmark]
    public float Bf16()
    {
        _bf16.Predict(_ids, _output);
        return _output[0];
    }

    [Benchmark]
    public float Int8()
    {
        _int8.Predict(_ids, _output);
        return _output[0];
    }
}
