using BenchmarkDotNet.Attributes;
using KdEngine.Benchmarks;
using KdEngine.Models;

namespace KdEngine.Peers;

/// <summary>
/// Inference latency of one batch, bench config, KdEngine's Predictor against ONNX Runtime (our ONNX export of the same
/// weights) and TorchSharp (the same model in libtorch with the same weights), 1 and 2 intra-op threads. Each method
/// runs in its own process and builds only its own engine; a peer's setup first checks its logits against KdEngine's on
/// the same batch (within 1e-4) and fails the cell if they differ. Ratio (BenchmarkDotNet's column) = time / KdEngine's
/// time, so a ratio above 1 means KdEngine is that many times faster.
/// </summary>
[MemoryDiagnoser]
public class PeerInferenceBenchmarks
{
    [Params(ModelKind.Wdl, ModelKind.XDeepFm)]
    public ModelKind Model { get; set; }

    [Params(1, 16, 128, 1024)]
    public int Batch { get; set; }

    [ParamsSource(nameof(ThreadCounts))]
    public int Threads { get; set; }

    public static IEnumerable<int> ThreadCounts() => PeerSettings.Threads;

    private Scorer _scorer = null!;

    [GlobalSetup(Target = nameof(KdEnginePredictor))]
    public void SetupKdEngine() => _scorer = Build("kdengine");

    [GlobalSetup(Target = nameof(OnnxRuntime))]
    public void SetupOnnxRuntime() => _scorer = Build("onnxruntime");

    [GlobalSetup(Target = nameof(TorchSharpNoGrad))]
    public void SetupTorchSharp() => _scorer = Build("torchsharp");

    private Scorer Build(string engine)
    {
        var model = BenchModels.Build(Model);
        model.Training = false;
        var ids = BenchModels.RandomIds(Batch);
        var scorer = Scorer.Create(engine, model, ids, Batch, Threads);
        if (engine != "kdengine")
        {
            using var reference = new KdEngineScorer(model, ids, Batch, Threads);
            double diff = Scorer.CheckAgreement(reference.Output, scorer.Output, $"{scorer.Engine} {Model} batch {Batch}");
            Console.WriteLine($"// {scorer.Engine} agrees with KdEngine: max |Δlogit| = {diff:E2}");
        }
        scorer.WarmUp();
        return scorer;
    }

    [GlobalCleanup]
    public void Cleanup() => _scorer.Dispose();

    [Benchmark(Baseline = true)]
    public float KdEnginePredictor()
    {
        _scorer.Score();
        return _scorer.Output[0];
    }

    [Benchmark]
    public float OnnxRuntime()
    {
        _scorer.Score();
        return _scorer.Output[0];
    }

    [Benchmark]
    public float TorchSharpNoGrad()
    {
        _scorer.Score();
        return _scorer.Output[0];
    }
}
