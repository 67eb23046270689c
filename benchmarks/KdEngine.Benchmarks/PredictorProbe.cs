using System.Diagnostics;
using KdEngine.Kernels.Cpu;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Serving;

namespace KdEngine.Benchmarks;

/// <summary>
/// The profile behind docs/benchmarks.md's peer analysis: best and median latency of the bench-config
/// <see cref="Predictor"/> per batch, next to the same model's dense GEMMs alone (DNN for WDL; the fused CIN's
/// per-tile GEMMs for xDeepFM, with the CIN width as stored, 208, and unpadded, 200), so what is not GEMM shows.
/// <c>dotnet run -c Release --project benchmarks/KdEngine.Benchmarks -- predictor-probe [wdl|xdeepfm] [threads]</c>
/// </summary>
public static class PredictorProbe
{
    public static void Run(string[] args)
    {
        var kind = args.Length > 0 && args[0] == "xdeepfm" ? ModelKind.XDeepFm : ModelKind.Wdl;
        int threads = args.Length > 1 ? int.Parse(args[1]) : 1;
        int saved = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = threads;
        try
        {
            var fields = Enumerable.Range(0, InferenceBenchmarks.Fields).Select(i => new InputField($"C{i + 1}", InferenceBenchmarks.Buckets)).ToArray();
            var predictor = new Predictor(new ZooModel(InferenceBenchmarks.ConfigFor("bench", kind), fields) { Training = false });
            Console.WriteLine($"{kind}, bench config, {threads} thread(s)");
            foreach (int batch in new[] { 1, 16, 128, 1024 })
            {
                var rng = new Random(42);
                var ids = new int[batch * fields.Length];
                for (int i = 0; i < ids.Length; i++) ids[i] = rng.Next(InferenceBenchmarks.Buckets);
                var output = new float[batch];
                var (best, median) = Time(() => predictor.Predict(ids, output), Math.Max(5, 20_000 / batch / (kind == ModelKind.XDeepFm ? 20 : 1)));
                Console.WriteLine($"  batch {batch,4}: predictor best {best * 1e6,10:F1} µs, median {median * 1e6,10:F1} µs");
            }
            if (kind == ModelKind.Wdl) DnnGemms(); else CinGemms();
        }
        finally
        {
            CpuParallel.ThreadCount = saved;
        }
    }

    private static (double Best, double Median) Time(Action call, int reps)
    {
        // Warm up for 0.5 s: tiered compilation promotes a method ~100 ms after its 30th call, and a shape's first
        // large-path GEMMs would otherwise be timed partly in tier-0 code (it doubled the batch-128 median).
        long warm = Stopwatch.GetTimestamp();
        do call(); while (Stopwatch.GetElapsedTime(warm).TotalSeconds < 0.5);
        var times = new double[reps];
        for (int t = 0; t < reps; t++)
        {
            long start = Stopwatch.GetTimestamp();
            call();
            times[t] = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        Array.Sort(times);
        return (times[0], times[reps / 2]);
    }

    /// <summary>WDL's DNN: [B, 624] · [624, 400], then two [B, 400] · [400, 400].</summary>
    private static void DnnGemms()
    {
        foreach (int batch in new[] { 1, 16, 128, 1024 })
        {
            float[] x = new float[batch * 624], w0 = new float[624 * 400], w1 = new float[400 * 400], y0 = new float[batch * 400], y1 = new float[batch * 400];
            var (best, _) = Time(() =>
            {
                Sgemm.Multiply(false, false, batch, 400, 624, 1f, x, w0, 1f, y0);
                Sgemm.Multiply(false, false, batch, 400, 400, 1f, y0, w1, 1f, y1);
                Sgemm.Multiply(false, false, batch, 400, 400, 1f, y1, w1, 1f, y0);
            }, Math.Max(5, 20_000 / batch));
            Console.WriteLine($"  batch {batch,4}: DNN GEMMs alone best {best * 1e6,10:F1} µs");
        }
    }

    /// <summary>The fused CIN's GEMMs at batch 1024: 64 tiles of 16 samples (m = 256), k = 1,521 / 3,900 / 3,900.</summary>
    private static void CinGemms()
    {
        const int m = 256;
        int[] ks = [1521, 3900, 3900];
        foreach (int n in new[] { 208, 200 })
        {
            float[] z = new float[m * 3900], w = new float[3900 * 208], y = new float[m * 208];
            var (best, _) = Time(() =>
            {
                for (int tile = 0; tile < 64; tile++)
                    foreach (int k in ks) Sgemm.Multiply(false, false, m, n, k, 1f, z, w, 1f, y);
            }, 5);
            double flop = 64.0 * 2 * m * n * ks.Sum();
            Console.WriteLine($"  batch 1024: CIN GEMMs alone, width {n}{(n % 16 == 0 ? " (B in place)" : " (B packed per call)")}: best {best * 1e3:F1} ms ({flop / best / 1e9:F0} GFLOP/s)");
        }
    }
}
