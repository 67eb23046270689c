using System.Diagnostics;
using KdEngine.Kernels.Cpu;

namespace KdEngine.Benchmarks;

/// <summary>
/// A quick peak probe for a noisy shared machine: the best of 300 single warm calls (Stopwatch) per shape and
/// thread count after a 0.5 s warm-up, large shapes also with A and B forced through packing (the pre-in-place path). The minimum is the run least disturbed by other processes, which BenchmarkDotNet's mean is not.
/// <c>dotnet run -c Release --project benchmarks/KdEngine.Benchmarks -- sgemm-probe</c>
/// </summary>
public static class SgemmProbe
{
    /// <param name="args">Variants for tuning: <c>--kc N</c> (largest K slice), <c>--no-prefetch</c> (C tile prefetch off),
    /// <c>--large</c> (the 1024- and 128-row shapes only).</param>
    public static void Run(string[] args)
    {
        for (int i = 0; i < args.Length; i++)
            switch (args[i])
            {
                case "--kc": Sgemm.KcMax = int.Parse(args[++i]); break;
                case "--no-prefetch": SgemmKernels.PrefetchC = false; break;
                case "--large": break;
                default: throw new ArgumentException($"sgemm-probe: unknown option '{args[i]}' (expected --kc N, --no-prefetch, --large).");
            }
        Console.WriteLine($"K slice ≤ {Sgemm.KcMax}, C prefetch {(SgemmKernels.PrefetchC ? "on" : "off")}");
        var shapes = new (int M, int K, int N, bool TransB)[]
        {
            (1024, 624, 400, false), (1024, 624, 400, true), (128, 624, 400, false), (16, 400, 400, false),
            (16, 624, 400, true), (1, 624, 400, false), (1, 624, 400, true),
        };
        int saved = CpuParallel.ThreadCount;
        foreach (var (m, k, n, tb) in args.Contains("--large") ? shapes.Where(s => s.M >= 128) : shapes)
        foreach (int threads in new[] { 1, 2 })
        foreach (bool packAll in m > Sgemm.SmallM ? new[] { false, true } : new[] { false })
        {
            Sgemm.ForcePacking = packAll;
            CpuParallel.ThreadCount = threads;
            var rng = new Random(1);
            var a = new float[m * k];
            var b = new float[k * n];
            var c = new float[m * n];
            for (int i = 0; i < a.Length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
            for (int i = 0; i < b.Length; i++) b[i] = (float)(rng.NextDouble() * 2 - 1);
            // Warm up for 0.5 s first: tiered compilation promotes a method ~100 ms after its 30th call, and 300
            // calls of a small shape finish sooner, so without this the small rows timed tier-0 code.
            long warm = Stopwatch.GetTimestamp();
            while (Stopwatch.GetElapsedTime(warm).TotalSeconds < 0.5) Sgemm.Multiply(false, tb, m, n, k, 1f, a, b, 0f, c);
            double best = double.MaxValue;
            for (int t = 0; t < 300; t++)
            {
                long start = Stopwatch.GetTimestamp();
                Sgemm.Multiply(false, tb, m, n, k, 1f, a, b, 0f, c);
                best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
            }
            double gflops = 2.0 * m * n * k / best / 1e9;
            Console.WriteLine($"{m}x{k}x{n} transB={tb} threads={threads}{(packAll ? " packed" : "")}: best {best * 1e6:F1} us, {gflops:F1} GFLOP/s ({100 * gflops / 267:F0} % of one core's 267)");
        }
        CpuParallel.ThreadCount = saved;
        Sgemm.ForcePacking = false;
    }
}
