using System.Diagnostics;
using KdEngine.Benchmarks;
using KdEngine.Models;
using TorchSharp;

namespace KdEngine.Peers;

/// <summary>
/// The `torch-cin-probe` verb: times TorchSharp's xDeepFM inference (1 thread) with the CIN as one large GEMM per layer
/// (the benchmark's form) and in the batched-matmul / Conv1d form, after checking both give the same logits, so the peer
/// runs its faster formulation. Best of 5 calls per cell.
/// </summary>
public static class TorchCinProbe
{
    public static void Run(TextWriter o)
    {
        torch.set_num_threads(1);
        var zoo = BenchModels.Build(ModelKind.XDeepFm, embeddingStd: 0.5f);
        using var model = TorchScorer.CreateModel(zoo, 1);
        foreach (int batch in new[] { 16, 128, 1024 })
        {
            using var ids = torch.tensor(Scorer.ToInt64(BenchModels.RandomIds(batch)), new long[] { batch, BenchModels.Fields });
            var results = new Dictionary<bool, (double Ms, float[] Logits)>();
            foreach (bool batched in new[] { false, true })
            {
                model.CinBatchedForm = batched;
                double best = double.MaxValue;
                float[] logits = [];
                for (int i = 0; i < 5; i++)
                {
                    var sw = Stopwatch.StartNew();
                    using var scope = torch.NewDisposeScope();
                    using var noGrad = torch.no_grad();
                    logits = model.forward(ids).data<float>().ToArray();
                    best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
                }
                results[batched] = (best, logits);
            }
            model.CinBatchedForm = false;
            double diff = Scorer.CheckAgreement(results[false].Logits, results[true].Logits, $"CIN forms, batch {batch}");
            o.WriteLine($"batch {batch,4}: one GEMM per layer {results[false].Ms,9:F1} ms   batched matmul (Conv1d form) {results[true].Ms,9:F1} ms   (max |Δ| {diff:E1})");
        }
    }
}
