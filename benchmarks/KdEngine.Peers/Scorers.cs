using KdEngine.Benchmarks;
using KdEngine.Kernels.Cpu;
using KdEngine.Models;
using KdEngine.Onnx;
using KdEngine.Serving;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;

namespace KdEngine.Peers;

/// <summary>One engine scoring one fixed batch of bench-config ids into <see cref="Output"/> (logits [B]).</summary>
public abstract class Scorer : IDisposable
{
    protected Scorer(int batch) => Output = new float[batch];

    public float[] Output { get; }
    public abstract string Engine { get; }

    /// <summary>Scores the batch (the timed call).</summary>
    public abstract void Score();

    /// <summary>
    /// Calls <see cref="Score"/> for at least 0.5 s and 100 calls (at most 5 s), so the .NET code on every engine's call
    /// path (all of KdEngine, the managed wrappers of the peers) has reached tier-1 before BenchmarkDotNet measures: a
    /// short job could otherwise time tier-0 code, which no long-running server runs.
    /// </summary>
    public void WarmUp()
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        int calls = 0;
        while ((calls < 100 || sw.ElapsedMilliseconds < 500) && sw.ElapsedMilliseconds < 5000) { Score(); calls++; }
    }

    public virtual void Dispose() => GC.SuppressFinalize(this);

    /// <summary>Builds the scorer for an engine: "kdengine", "onnxruntime" or "torchsharp".</summary>
    public static Scorer Create(string engine, ZooModel model, int[] ids, int batch, int threads) => engine switch
    {
        "kdengine" => new KdEngineScorer(model, ids, batch, threads),
        "onnxruntime" => new OrtScorer(OrtScorer.CreateSession(model, threads), ids, batch, ownsSession: true),
        "torchsharp" => new TorchScorer(TorchScorer.CreateModel(model, threads), ids, batch, ownsModel: true),
        _ => throw new ArgumentException($"unknown engine '{engine}' (kdengine, onnxruntime, torchsharp)"),
    };

    public static long[] ToInt64(int[] ids) => ids.Select(x => (long)x).ToArray();

    /// <summary>
    /// Throws unless <paramref name="actual"/> equals <paramref name="expected"/> within <paramref name="tolerance"/>
    /// (absolute, or relative for logits above 1 in magnitude); returns the largest difference.
    /// </summary>
    public static double CheckAgreement(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what, double tolerance = 1e-4)
    {
        if (expected.Length != actual.Length) throw new InvalidOperationException($"{what}: {actual.Length} outputs, expected {expected.Length}.");
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double diff = Math.Abs((double)expected[i] - actual[i]);
            if (!(diff <= tolerance * Math.Max(1.0, Math.Abs(expected[i]))))
                throw new InvalidOperationException($"{what}: output {i} is {actual[i]:R}, KdEngine gives {expected[i]:R} (difference {diff:E2} > {tolerance:E0}). The peer does not compute the same model: its timings would mean nothing.");
            worst = Math.Max(worst, diff);
        }
        return worst;
    }
}

/// <summary>KdEngine's compiled <see cref="Predictor"/> (no tape, zero allocation); intra-op threads = <c>CpuParallel.ThreadCount</c>.</summary>
public sealed class KdEngineScorer : Scorer
{
    private readonly Predictor _predictor;
    private readonly int[] _ids;

    public KdEngineScorer(ZooModel model, int[] ids, int batch, int threads) : base(batch)
    {
        CpuParallel.ThreadCount = threads;
        _predictor = new Predictor(model);
        _ids = ids;
        Score(); // grows this thread's workspace
    }

    public override string Engine => "KdEngine";
    public override void Score() => _predictor.Predict(_ids, Output);
}

/// <summary>
/// ONNX Runtime on KdEngine's own ONNX export of the same model (OnnxExporter, opset 17): all graph optimisations
/// (ORT_ENABLE_ALL), intra-op threads = ours, one inter-op thread, sequential execution; input and output bound once
/// to pinned buffers (IoBinding), so a call does no tensor allocation or copy on the managed side. Ids are int64 (the
/// graph's input type), converted once at setup.
/// </summary>
public sealed class OrtScorer : Scorer
{
    private readonly InferenceSession _session;
    private readonly RunOptions _run;
    private readonly OrtIoBinding _binding;
    private readonly OrtValue _input, _output;

    private readonly bool _ownsSession;

    /// <summary>A session on the model's ONNX export: all graph optimisations, <paramref name="threads"/> intra-op threads.</summary>
    public static InferenceSession CreateSession(ZooModel model, int threads)
    {
        using var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
        };
        return new InferenceSession(OnnxExporter.ToBytes(model), options);
    }

    public OrtScorer(InferenceSession session, int[] ids, int batch, bool ownsSession) : base(batch)
    {
        _session = session;
        _ownsSession = ownsSession;
        _run = new RunOptions();
        _input = OrtValue.CreateTensorValueFromMemory(ToInt64(ids), [batch, BenchModels.Fields]);
        _output = OrtValue.CreateTensorValueFromMemory(Output, [batch, 1]);
        _binding = _session.CreateIoBinding();
        _binding.BindInput(OnnxExporter.InputName, _input);
        _binding.BindOutput(OnnxExporter.OutputName, _output);
        Score();
    }

    public override string Engine => "ONNX Runtime";
    public override void Score() => _session.RunWithBinding(_run, _binding);

    public override void Dispose()
    {
        _binding.Dispose(); _input.Dispose(); _output.Dispose(); _run.Dispose();
        if (_ownsSession) _session.Dispose();
        base.Dispose();
    }
}

/// <summary>
/// TorchSharp (libtorch 2.10 CPU): <see cref="TorchCtr"/> with the same weights (xDeepFM: the faster of two CIN forms
/// for the batch, chosen at setup), eval mode, under no_grad, in a dispose
/// scope per call (TorchSharp's way of freeing intermediates deterministically); torch.set_num_threads = ours. The
/// logits are copied into <see cref="Scorer.Output"/> as the other engines write theirs.
/// </summary>
public sealed class TorchScorer : Scorer
{
    private readonly TorchCtr _model;
    private readonly Tensor _ids;

    private readonly bool _ownsModel;

    /// <summary>The model in TorchSharp (eval mode) with <paramref name="threads"/> libtorch threads.</summary>
    public static TorchCtr CreateModel(ZooModel model, int threads)
    {
        torch.set_num_threads(threads);
        var m = new TorchCtr(model);
        m.eval();
        return m;
    }

    public TorchScorer(TorchCtr model, int[] ids, int batch, bool ownsModel) : base(batch)
    {
        _model = model;
        _ownsModel = ownsModel;
        _ids = torch.tensor(ToInt64(ids), new long[] { batch, BenchModels.Fields });
        if (model.IsXDeepFm) ChooseCinForm(batch);
        Score();
    }

    /// <summary>
    /// Gives TorchSharp its faster CIN formulation for this batch (like cudnn.benchmark): times the one-GEMM-per-layer form
    /// and the batched-matmul (Conv1d) form, best of 3 calls (1 call each at batch ≥ 512), and keeps the faster.
    /// </summary>
    private void ChooseCinForm(int batch)
    {
        int calls = batch >= 512 ? 1 : 3;
        double Best(bool batched)
        {
            _model.CinBatchedForm = batched;
            Score(); // first call of a form allocates
            double best = double.MaxValue;
            for (int i = 0; i < calls; i++)
            {
                var sw = System.Diagnostics.Stopwatch.StartNew();
                Score();
                best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
            }
            return best;
        }
        double gemm = Best(false), bmm = Best(true);
        _model.CinBatchedForm = bmm < gemm;
        Console.WriteLine($"// TorchSharp CIN form at batch {batch}: {(bmm < gemm ? "batched matmul" : "one GEMM per layer")} (one GEMM {gemm:F2} ms, batched {bmm:F2} ms)");
    }

    public override string Engine => "TorchSharp";

    public override void Score()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var z = _model.forward(_ids);
        z.data<float>().CopyTo(Output);
    }

    public override void Dispose()
    {
        _ids.Dispose();
        if (_ownsModel) _model.Dispose();
        base.Dispose();
    }
}
