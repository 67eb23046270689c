using System.Diagnostics;
using KdEngine.Autograd;
using KdEngine.Benchmarks;
using KdEngine.Models;
using KdEngine.Training;

namespace KdEngine.Peers;

/// <summary>
/// The agreement checks run before any timing (the `verify` verb, first step of `all`). For WDL and xDeepFM, bench
/// config: ONNX Runtime's and TorchSharp's logits must equal KdEngine's within 1e-4 (relative above 1) at batches
/// 1/16/128/1024 on the benchmark's own weights, and again with embeddings drawn at std 0.5 instead of 0.01 — with the
/// bench init the CIN's share of the logit is ~1e-4, too small for a wrong CIN to show. The TorchSharp training step
/// (embedding std 0.5) must follow KdEngine's: same loss at step 0 within 1e-4 and within 1e-3 over the next two steps (the two Adams place
/// ε slightly differently). Throws on the first disagreement.
/// </summary>
public static class Verify
{
    public static void Run(TextWriter o, int threads = 1)
    {
        foreach (var kind in new[] { ModelKind.Wdl, ModelKind.XDeepFm })
        foreach (float? std in new float?[] { null, 0.5f })
        {
            var sw = Stopwatch.StartNew();
            var model = BenchModels.Build(kind, embeddingStd: std);
            model.Training = false;
            string weights = std is null ? "bench weights (embedding std 0.01)" : $"embedding std {std}";
            o.WriteLine($"{kind}, {weights}: {model.ParameterCount():N0} weights, built in {sw.Elapsed.TotalSeconds:F1} s");
            sw.Restart();
            using var session = OrtScorer.CreateSession(model, threads);
            o.WriteLine($"  ONNX export + session in {sw.Elapsed.TotalSeconds:F1} s");
            sw.Restart();
            using var torchModel = TorchScorer.CreateModel(model, threads);
            o.WriteLine($"  TorchSharp model in {sw.Elapsed.TotalSeconds:F1} s");
            foreach (int batch in std is null ? new[] { 1, 16, 128, 1024 } : new[] { 16, 1024 })
            {
                var ids = BenchModels.RandomIds(batch);
                using var kd = new KdEngineScorer(model, ids, batch, threads);
                double meanAbs = kd.Output.Average(x => Math.Abs(x));
                foreach (var engine in new[] { "onnxruntime", "torchsharp" })
                {
                    sw.Restart();
                    using Scorer peer = engine == "onnxruntime"
                        ? new OrtScorer(session, ids, batch, ownsSession: false)
                        : new TorchScorer(torchModel, ids, batch, ownsModel: false);
                    double diff = Scorer.CheckAgreement(kd.Output, peer.Output, $"{peer.Engine} {kind} batch {batch} ({weights})");
                    o.WriteLine($"  batch {batch,4}  {peer.Engine,-12} max |Δlogit| = {diff:E2}  (mean |logit| {meanAbs:E2})");
                }
            }
        }
        foreach (var kind in new[] { ModelKind.Wdl, ModelKind.XDeepFm })
            CheckTraining(o, kind, 0.5f, threads, steps: 3);
        o.WriteLine("verify: every peer computes the same model as KdEngine.");
    }

    private static void CheckTraining(TextWriter o, ModelKind kind, float? std, int threads, int steps)
    {
        var batch = TrainingBenchmarks.BenchBatch();
        var kdLosses = new float[steps];
        var objective = new SupervisedObjective(BenchModels.Build(kind, embeddingStd: std));
        var optimizer = new Adam(objective.Trainable.Parameters().Select(p => p.Tensor), learningRate: 1e-3f);
        KdEngine.Kernels.Cpu.CpuParallel.ThreadCount = threads;
        using (var tape = new Tape<float>())
        {
            for (int s = 0; s < steps; s++)
            {
                tape.Reset();
                var loss = objective.Loss(batch, s, null);
                kdLosses[s] = loss.Item();
                tape.Backward(loss);
                optimizer.Step();
            }
        }
        using var torch = new TorchTrainer(BenchModels.Build(kind, embeddingStd: std), batch.Ids.ToArray(), batch.Labels.ToArray(), threads);
        for (int s = 0; s < steps; s++)
        {
            float t = torch.Step();
            double tolerance = s == 0 ? 1e-4 : 1e-3;
            double diff = Math.Abs(t - kdLosses[s]);
            o.WriteLine($"  train {kind,-8} (embedding std {std ?? 0.01f}) step {s}: KdEngine loss {kdLosses[s]:F6}  TorchSharp {t:F6}  |Δ| = {diff:E2}");
            if (!(diff <= tolerance * Math.Max(1, Math.Abs(kdLosses[s]))))
                throw new InvalidOperationException($"TorchSharp {kind} training step {s}: loss {t:R} vs KdEngine {kdLosses[s]:R} (|Δ| {diff:E2} > {tolerance:E0}): not the same training step.");
        }
    }
}
