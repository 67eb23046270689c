using BenchmarkDotNet.Attributes;
using KdEngine.Kernels.Cpu;

namespace KdEngine.Benchmarks;

/// <summary>
/// The serving products in three precisions: float32 weights (<see cref="Sgemm"/>, the baseline), int8 weights per output
/// channel with the activations quantised to uint8 per row on the fly (<see cref="Int8Gemm"/>, AVX-VNNI; the time includes
/// quantising A), bf16 weights widened as they are read (<see cref="Bf16Gemm"/>). C[m, n] = bias + A[m, k] · B[k, n]
/// (beta = 1, as the predictor runs its layers). Shapes: the bench DNN's first layer (624 × 400) at batch 1, 16 and 1024,
/// the CIN's per-tile product (3,900 × 208) at batch 1 (16 rows) and one 256-row tile, and the Criteo student's layer
/// (390 × 32) at batch 1 and 1,000. Allocated must read 0 B / "-".
/// Run: <c>dotnet run -c Release --project benchmarks/KdEngine.Benchmarks -- --filter '*QuantizedGemmBenchmarks*' --job short</c>
/// </summary>
[MemoryDiagnoser]
public class QuantizedGemmBenchmarks
{
    [Params("1x624x400", "16x624x400", "1024x624x400", "16x3900x208", "256x3900x208", "1x390x32", "1000x390x32")]
    public string Shape { get; set; } = "1x624x400";

    [Params(1, 2)]
    public int Threads { get; set; }

    private int _m, _k, _n;
    private float[] _a = [], _b = [], _c = [];
    private ushort[] _bf16 = [];
    private Int8Weights _int8 = null!;
    private int _savedThreads;

    [GlobalSetup]
    public void Setup()
    {
        var parts = Shape.Split('x').Select(int.Parse).ToArray();
        (_m, _k, _n) = (parts[0], parts[1], parts[2]);
        var rng = new Random(1);
        _a = new float[_m * _k];
        for (int i = 0; i < _a.Length; i++) _a[i] = (float)(rng.NextDouble() * 2 - 1);
        var w = new float[_n * _k];                   // [out, in]
        for (int i = 0; i < w.Length; i++) w[i] = (float)((rng.NextDouble() * 2 - 1) * 0.05);
        _b = new float[_k * _n];                      // [in, out]
        for (int j = 0; j < _n; j++)
            for (int p = 0; p < _k; p++) _b[p * _n + j] = w[j * _k + p];
        _int8 = Int8Weights.Quantize(w, _n, _k);
        _bf16 = new ushort[_b.Length];
        Bf16.FromFloat(_b, _bf16);
        _c = new float[_m * _n];
        _savedThreads = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = Threads;
    }

    [GlobalCleanup]
    public void Cleanup() => CpuParallel.ThreadCount = _savedThreads;

    [Benchmark(Baseline = true)]
    public void Float32() => Sgemm.Multiply(false, false, _m, _n, _k, 1f, _a, _b, 1f, _c);

    [Benchmark]
    public void Int8() => Int8Gemm.Multiply(_a, _m, _int8, _c, accumulate: true);

    [Benchmark]
    public void Bf16Weights() => Bf16Gemm.Multiply(_m, _n, _k, _a, _bf16, _c, accumulate: true);
}
