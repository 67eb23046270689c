using BenchmarkDotNet.Attributes;
using KdEngine.Benchmarks;
using KdEngine.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace KdEngine.Peers;

/// <summary>
/// One TorchSharp training step (forward + BCE-with-logits + backward + optimizer) on <see cref="TorchCtr"/>, holding the
/// same initial weights as KdEngine's <see cref="TrainingBenchmarks"/> model. TorchSharp's best configuration for these
/// models: one fused embedding table with sparse gradients updated by <see cref="SparseAdam"/>, Adam on the dense
/// parameters (dense Adam would rewrite all 44 M embedding weights every step).
/// </summary>
public sealed class TorchTrainer : IDisposable
{
    private readonly TorchCtr _model;
    private readonly optim.Optimizer _adam;
    private readonly SparseAdam _sparseAdam;
    private readonly Tensor _ids, _labels;

    public TorchTrainer(ZooModel source, int[] ids, float[] labels, int threads)
    {
        torch.set_num_threads(threads);
        _model = new TorchCtr(source);
        _model.train();
        var (sparse, dense) = _model.ParameterGroups();
        _adam = optim.Adam(dense, lr: 1e-3);
        _sparseAdam = new SparseAdam(sparse, lr: 1e-3);
        _ids = torch.tensor(Scorer.ToInt64(ids), new long[] { labels.Length, BenchModels.Fields });
        _labels = torch.tensor(labels, new long[] { labels.Length, 1 });
    }

    /// <summary>One step; returns the loss before the update.</summary>
    public float Step()
    {
        using var scope = torch.NewDisposeScope();
        _adam.zero_grad();
        _sparseAdam.zero_grad();
        var loss = nn.functional.binary_cross_entropy_with_logits(_model.forward(_ids), _labels);
        loss.backward();
        _adam.step();
        _sparseAdam.step();
        return loss.item<float>();
    }

    public void Dispose()
    {
        _ids.Dispose(); _labels.Dispose(); _model.Dispose();
    }
}

/// <summary>TorchSharp's training step at batch 1024 (see <see cref="TorchTrainer"/>); pairs with KdEngine's TrainingBenchmarks.</summary>
[WarmupCount(1), IterationCount(5)] // as TrainingBenchmarks
public class TorchTrainingBenchmarks
{
    [Params(TrainingStep.Wdl, TrainingStep.XDeepFm)]
    public TrainingStep Step { get; set; }

    [ParamsSource(nameof(ThreadCounts))]
    public int Threads { get; set; }

    public static IEnumerable<int> ThreadCounts() => PeerSettings.Threads;

    private TorchTrainer _trainer = null!;

    [GlobalSetup]
    public void Setup()
    {
        var kind = Step == TrainingStep.Wdl ? ModelKind.Wdl : ModelKind.XDeepFm;
        var batch = TrainingBenchmarks.BenchBatch();
        _trainer = new TorchTrainer(BenchModels.Build(kind), batch.Ids.ToArray(), batch.Labels.ToArray(), Threads);
        for (int i = 0; i < TrainingBenchmarks.WarmUpSteps; i++) _trainer.Step();
    }

    [GlobalCleanup]
    public void Cleanup() => _trainer.Dispose();

    [Benchmark]
    public float TorchSharpSparseAdam() => _trainer.Step();
}
