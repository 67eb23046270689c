using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using KdEngine.Kernels.Cpu;

namespace KdEngine.Benchmarks;

/// <summary>
/// SGEMM C[M,N] = A[M,K]·B[K,N] (N = 400): the packed kernel (B row-major, and B transposed as Linear's
/// W[out,in] uses it) against a naive triple loop and one TensorPrimitives.Dot per output element, on 1 and 2
/// threads. The GFLOP/s column is 2·M·N·K / mean time. Reproduce with (see docs/benchmarks.md):
/// <c>dotnet run -c Release --project benchmarks/KdEngine.Benchmarks -- --filter '*Sgemm*' --job short</c>
/// </summary>
[MemoryDiagnoser]
[Config(typeof(GflopsConfig))]
public class SgemmBenchmarks
{
    [Params(1, 16, 128, 1024)] public int M;
    [Params(624, 400)] public int K;
    [Params(1, 2)] public int Threads;
    public const int N = 400;

    private float[] _a = [], _b = [], _bt = [], _c = [];

    [GlobalSetup]
    public void Setup()
    {
        CpuParallel.ThreadCount = Threads;
        var rng = new Random(42);
        _a = Fill(rng, M * K);
        _b = Fill(rng, K * N);
        _bt = new float[N * K]; // B transposed ([N,K]): rows contiguous along K for the dot baseline / TransB
        for (int p = 0; p < K; p++)
        for (int j = 0; j < N; j++) _bt[j * K + p] = _b[p * N + j];
        _c = new float[M * N];
    }

    private static float[] Fill(Random rng, int length)
    {
        var x = new float[length];
        for (int i = 0; i < length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    [Benchmark(Baseline = true, Description = "Naive triple loop")]
    public void Naive() => Gemm<float>.Reference(false, false, M, N, K, 1f, _a, _b, 0f, _c);

    [Benchmark(Description = "TensorPrimitives.Dot per element")]
    public void DotPerElement()
    {
        for (int i = 0; i < M; i++)
        {
            var row = new ReadOnlySpan<float>(_a, i * K, K);
            for (int j = 0; j < N; j++) _c[i * N + j] = TensorPrimitives.Dot(row, new ReadOnlySpan<float>(_bt, j * K, K));
        }
    }

    /// <summary>
    /// The machine's FMA ceiling at this moment, in the same run: 24 independent FMA chains on register operands
    /// (no loads), as many vector FMAs as the product needs (M·N·K / W, rounded up to whole rounds of 24). The
    /// "% of FMA peak" column divides each row's GFLOP/s by this row's — a ratio measured minutes apart in one
    /// run, which the nominal 267 GFLOP/s (a 4.17 GHz clock assumed sustained) is not.
    /// </summary>
    [Benchmark(Description = FmaPeakDescription)]
    public float FmaPeak() => FmaChains.Run(FmaPeakRounds(M, K));

    public const string FmaPeakDescription = "FMA peak (registers only)";

    /// <summary>Rounds of 24 vector FMAs that match M·N·K multiply-adds (W = 16 floats per FMA).</summary>
    public static long FmaPeakRounds(int m, int k) => Math.Max(1, ((long)m * N * k + 24 * 16 - 1) / (24 * 16));

    [Benchmark(Description = "Sgemm A·B")]
    public void Sgemm() => KdEngine.Kernels.Cpu.Sgemm.Multiply(false, false, M, N, K, 1f, _a, _b, 0f, _c);

    [Benchmark(Description = "Sgemm A·Bᵀ (Linear)")]
    public void SgemmTransB() => KdEngine.Kernels.Cpu.Sgemm.Multiply(false, true, M, N, K, 1f, _a, _bt, 0f, _c);
}

/// <summary>24 independent chains of 512-bit (else 256-bit) FMAs on registers: the core's arithmetic ceiling.</summary>
public static class FmaChains
{
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    public static float Run(long rounds)
    {
        // x·y + acc with x = 1, y = 1e-9: the accumulators stay finite and the loop cannot be folded away.
        var x = System.Runtime.Intrinsics.Vector512.Create(1f);
        var y = System.Runtime.Intrinsics.Vector512.Create(1e-9f);
        System.Runtime.Intrinsics.Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default,
            a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default, a12 = default, a13 = default,
            a14 = default, a15 = default, a16 = default, a17 = default, a18 = default, a19 = default, a20 = default, a21 = default,
            a22 = default, a23 = default;
        for (long i = 0; i < rounds; i++)
        {
            a0 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a0); a1 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a1);
            a2 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a2); a3 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a3);
            a4 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a4); a5 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a5);
            a6 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a6); a7 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a7);
            a8 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a8); a9 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a9);
            a10 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a10); a11 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a11);
            a12 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a12); a13 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a13);
            a14 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a14); a15 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a15);
            a16 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a16); a17 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a17);
            a18 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a18); a19 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a19);
            a20 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a20); a21 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a21);
            a22 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a22); a23 = System.Runtime.Intrinsics.Vector512.FusedMultiplyAdd(x, y, a23);
        }
        var sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11 + a12 + a13 + a14 + a15 + a16 + a17 + a18 + a19 + a20 + a21 + a22 + a23;
        return System.Runtime.Intrinsics.Vector512.Sum(sum);
    }
}

/// <summary>Adds the GFLOP/s column (2·M·N·K per operation) and the ratio to the same run's FMA peak.</summary>
public sealed class GflopsConfig : ManualConfig
{
    public GflopsConfig()
    {
        AddColumn(new GflopsColumn());
        AddColumn(new PeakShareColumn());
    }
}

/// <summary>
/// GFLOP/s of a row ÷ GFLOP/s of the <see cref="SgemmBenchmarks.FmaPeak"/> row with the same M and K, one
/// thread: the share of the core's arithmetic ceiling, both measured in this run.
/// </summary>
public sealed class PeakShareColumn : IColumn
{
    public string Id => "PeakShare";
    public string ColumnName => "% of FMA peak";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 1;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "GFLOP/s ÷ the same run's one-thread FMA peak row (same M, K), in percent";
    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double? row = GflopsColumn.Gflops(summary, benchmarkCase);
        var peakCase = summary.BenchmarksCases.FirstOrDefault(c =>
            c.Descriptor.WorkloadMethod.Name == nameof(SgemmBenchmarks.FmaPeak)
            && Equals(c.Parameters["M"], benchmarkCase.Parameters["M"]) && Equals(c.Parameters["K"], benchmarkCase.Parameters["K"])
            && Equals(c.Parameters["Threads"], 1));
        double? peak = peakCase is null ? null : GflopsColumn.Gflops(summary, peakCase);
        return row is { } r && peak is { } p && p > 0 ? (100 * r / p).ToString("F0") : "-";
    }
}

public sealed class GflopsColumn : IColumn
{
    public string Id => "GFLOPS";
    public string ColumnName => "GFLOP/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "2·M·N·K floating-point operations / mean time, in 1e9 per second";
    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        => Gflops(summary, benchmarkCase) is { } g ? g.ToString("F1") : "-";

    /// <summary>2·M·N·K / mean (the FMA peak row: 2·16·24 flops per round it ran), null without results.</summary>
    public static double? Gflops(Summary summary, BenchmarkCase benchmarkCase)
    {
        var stats = summary[benchmarkCase]?.ResultStatistics;
        if (stats is null) return null;
        int m = Convert.ToInt32(benchmarkCase.Parameters["M"]), k = Convert.ToInt32(benchmarkCase.Parameters["K"]);
        double flops = benchmarkCase.Descriptor.WorkloadMethod.Name == nameof(SgemmBenchmarks.FmaPeak)
            ? 2.0 * 16 * 24 * SgemmBenchmarks.FmaPeakRounds(m, k)
            : 2.0 * m * SgemmBenchmarks.N * k;
        return flops / stats.Mean; // Mean is in ns → flop/ns = GFLOP/s
    }
}
