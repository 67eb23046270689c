using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using KdEngine.Autograd;
using KdEngine.Distillation;
using KdEngine.Kernels.Cpu;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Training;

namespace KdEngine.Benchmarks;

/// <summary>The training steps measured by <see cref="TrainingBenchmarks"/>.</summary>
public enum TrainingStep
{
    /// <summary>WDL: forward + backward + Adam (lazy Adam on the embedding rows the batch touched).</summary>
    Wdl,
    /// <summary>xDeepFM: forward + backward + Adam.</summary>
    XDeepFm,
    /// <summary>Logits KD: frozen xDeepFM teacher forward (no gradient) + DNN student forward/backward + Adam on the student.</summary>
    LogitsKd,
    /// <summary>Rocket Launching: DNN light net + xDeepFM booster sharing the embeddings, both forward/backward, Adam on all.</summary>
    RocketLaunching,
}

/// <summary>
/// Training-step throughput at batch 1024, bench config (<see cref="BenchModels"/>): one step is exactly what
/// <see cref="Trainer"/> does per batch — reset the reused tape, build the objective's loss, read it, backward, Adam —
/// without the data loader and the trainer's per-step NaN scan. The Examples/s column is 1024 / mean time.
/// Distillation steps: teacher/booster xDeepFM, student/light DNN [400, 400, 400] (D = 16); logits KD with α = 0.5,
/// T = 2; Rocket Launching with λ = 0.03, the paper's gradient flow (both BCE terms train the shared embeddings).
/// This file is linked into benchmarks/KdEngine.Peers too, where TorchSharp's training step runs in the same session.
/// Run: <c>dotnet run -c Release --project benchmarks/KdEngine.Benchmarks -- --filter '*TrainingBenchmarks*' --job short</c>
/// </summary>
[MemoryDiagnoser]
[Config(typeof(ExamplesPerSecondConfig))]
[WarmupCount(1), IterationCount(5)] // steps take 0.05-3 s: few iterations keep the suite short (BenchmarkDotNet warns; medians are robust)
public class TrainingBenchmarks
{
    public const int Batch = 1024;

    [Params(TrainingStep.Wdl, TrainingStep.XDeepFm, TrainingStep.LogitsKd, TrainingStep.RocketLaunching)]
    public TrainingStep Step { get; set; }

    [ParamsSource(nameof(ThreadCounts))]
    public int Threads { get; set; }

    public static IEnumerable<int> ThreadCounts() => ThreadList;

    /// <summary>The thread counts measured (1 and 2; the peer program's --threads option narrows it).</summary>
    public static int[] ThreadList { get; set; } = [1, 2];

    private IObjective _objective = null!;
    private Optimizer _optimizer = null!;
    private Tape<float>? _tape;
    private CtrBatch _batch;
    private long _step;
    private int? _savedThreads;

    /// <summary>Builds the objective for <paramref name="step"/> (public so the peer project can check losses against it).</summary>
    public static IObjective BuildObjective(TrainingStep step) => step switch
    {
        TrainingStep.Wdl => new SupervisedObjective(BenchModels.Build(ModelKind.Wdl)),
        TrainingStep.XDeepFm => new SupervisedObjective(BenchModels.Build(ModelKind.XDeepFm)),
        TrainingStep.LogitsKd => new TeacherStudentObjective(
            BenchModels.Build(ModelKind.Dnn, seed: 2), new ModelTeacher(BenchModels.Build(ModelKind.XDeepFm)), alpha: 0.5f, temperature: 2f),
        TrainingStep.RocketLaunching => RocketLaunching(),
        _ => throw new ArgumentOutOfRangeException(nameof(step)),
    };

    private static RocketLaunchingObjective RocketLaunching()
    {
        var booster = BenchModels.Build(ModelKind.XDeepFm);
        var light = BenchModels.Build(ModelKind.Dnn, seed: 2, sharedEmbedding: booster.Embedding);
        return new RocketLaunchingObjective(light, booster, hintWeight: 0.03f);
    }

    /// <summary>The benchmark batch: seeded random ids and labels, 1024 rows.</summary>
    public static CtrBatch BenchBatch() =>
        new(Batch, BenchModels.Fields, BenchModels.RandomIds(Batch), BenchModels.RandomLabels(Batch));

    [GlobalSetup]
    public void Setup()
    {
        _savedThreads = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = Threads;
        _objective = BuildObjective(Step);
        _optimizer = new Adam(_objective.Trainable.Parameters().Select(p => p.Tensor), learningRate: 1e-3f);
        _batch = BenchBatch();
        _step = 0;
        for (int i = 0; i < WarmUpSteps; i++) TrainStep(); // tier-1 code and grown pools/optimizer state before measuring
    }

    /// <summary>Steps run in the setup, before BenchmarkDotNet's own warm-up (same count for the TorchSharp step).</summary>
    public const int WarmUpSteps = 1;

    [GlobalCleanup]
    public void Cleanup()
    {
        _tape?.Dispose();
        _tape = null;
        if (_savedThreads is { } t) CpuParallel.ThreadCount = t;
    }

    [Benchmark]
    public float TrainStep()
    {
        // One tape reused across steps (as Trainer does), created on the thread that runs the steps.
        if (_tape is null || !ReferenceEquals(Tape<float>.Current, _tape))
        {
            _tape?.Dispose();
            _tape = new Tape<float>();
        }
        _tape.Reset();
        _objective.Trainable.RandomStep = _step;
        var loss = _objective.Loss(_batch, _step, null);
        float value = loss.Item();
        _tape.Backward(loss);
        _optimizer.Step();
        _step++;
        return value;
    }
}

/// <summary>Adds an Examples/s column: the benchmark's batch (1024) / mean time.</summary>
public sealed class ExamplesPerSecondConfig : ManualConfig
{
    public ExamplesPerSecondConfig() => AddColumn(new ExamplesPerSecondColumn(TrainingBenchmarks.Batch));
}

public sealed class ExamplesPerSecondColumn(int batch) : IColumn
{
    public string Id => "ExamplesPerSecond";
    public string ColumnName => "Examples/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => $"Training examples per second: {batch} / mean time of one step";
    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } stats || stats.Mean <= 0) return "NA";
        return (batch / (stats.Mean * 1e-9)).ToString("N0", System.Globalization.CultureInfo.InvariantCulture);
    }
}
