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

    [Benchmark(Description = "Sgemm A·B")]
    public void Sgemm() => KdEngine.Kernels.Cpu.Sgemm.Multiply(false, false, M, N, K, 1f, _a, _b, 0f, _c);

    [Benchmark(Description = "Sgemm A·Bᵀ (Linear)")]
    public void SgemmTransB() => KdEngine.Kernels.Cpu.Sgemm.Multiply(false, true, M, N, K, 1f, _a, _bt, 0f, _c);
}

/// <summary>Adds the GFLOP/s column (2·M·N·K per operation).</summary>
public sealed class GflopsConfig : ManualConfig
{
    public GflopsConfig() => AddColumn(new GflopsColumn());
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
    {
        var stats = summary[benchmarkCase]?.ResultStatistics;
        if (stats is null) return "-";
        double m = Convert.ToDouble(benchmarkCase.Parameters["M"]), k = Convert.ToDouble(benchmarkCase.Parameters["K"]);
        double flops = 2.0 * m * SgemmBenchmarks.N * k;
        return (flops / stats.Mean).ToString("F1"); // Mean is in ns → flop/ns = GFLOP/s
    }
}
