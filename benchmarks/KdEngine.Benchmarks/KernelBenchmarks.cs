using BenchmarkDotNet.Attributes;
using KdEngine.Kernels.Cpu;
using KdEngine.Ops;
using KdEngine.Training;

namespace KdEngine.Benchmarks;

/// <summary>
/// The SIMD driver loops below the ops, alone: the elementwise maps (an activation layer of a DNN at batch 1024,
/// [1024, 400]) and the short-row loops the embedding and CIN kernels run millions of times (1024 rows × 39 fields at
/// embedding widths 10 and 16). They change only when the loops themselves do, so a before/after pair of runs
/// (benchmarks/before-after.sh) shows whether a rewrite of the loops costs speed. Single-threaded by construction.
/// <c>dotnet run -c Release --project benchmarks/KdEngine.Benchmarks -- --filter '*KernelBenchmarks*' --job short</c>
/// </summary>
[MemoryDiagnoser]
public class ElementwiseKernelBenchmarks
{
    private const int Rows = 1024, Width = 400, N = Rows * Width;
    private float[] _x = [], _y = [], _g = [], _gx = [], _bias = [], _labels = [], _z = [];

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(3);
        _x = Enumerable.Range(0, N).Select(_ => (float)(rng.NextDouble() * 8 - 4)).ToArray();
        _y = new float[N];
        _g = Enumerable.Range(0, N).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        _gx = new float[N];
        _bias = Enumerable.Range(0, Width).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        _labels = Enumerable.Range(0, N).Select(_ => rng.NextDouble() < 0.25 ? 1f : 0f).ToArray();
        _z = new float[N];
        ElementwiseKernels.Map<float, SigmoidOperator<float>>(_x, _y, 1f);
    }

    /// <summary>ReLU forward: one max per element.</summary>
    [Benchmark] public void Relu() => ElementwiseKernels.Map<float, ReluOperator<float>>(_x, _z, 0f);

    /// <summary>Sigmoid forward: a vector exp per element.</summary>
    [Benchmark] public void Sigmoid() => ElementwiseKernels.Map<float, SigmoidOperator<float>>(_x, _z, 1f);

    /// <summary>Tanh forward.</summary>
    [Benchmark] public void Tanh() => ElementwiseKernels.Map<float, TanhOperator<float>>(_x, _z, 0f);

    /// <summary>Sigmoid backward: gx += g·y·(1 − y).</summary>
    [Benchmark] public void SigmoidBackward() => ElementwiseKernels.MapBackward<float, SigmoidOperator<float>>(_x, _y, _g, _gx, 1f);

    /// <summary>A bias row [400] added to every row of [1024, 400].</summary>
    [Benchmark] public void BiasAdd() => ElementwiseKernels.Map2<float, AddOperator<float>>(_x, _bias, _z);

    /// <summary>A scalar added to every element.</summary>
    [Benchmark] public void ScalarAdd() => ElementwiseKernels.Map2<float, AddOperator<float>>(_x, _bias.AsSpan(0, 1), _z);

    /// <summary>Stable BCE with logits per element (exp and log).</summary>
    [Benchmark] public void BceWithLogits() => ElementwiseKernels.Map2<float, BceWithLogitsOperator<float>>(_x, _labels, _z);

    /// <summary>Bernoulli KL between two logits (two softplus and a sigmoid per element).</summary>
    [Benchmark] public void BernoulliKl() => ElementwiseKernels.Map2<float, BernoulliKlOperator<float>>(_x, _g, _z);
}

/// <summary>
/// The short-row loops of <see cref="RowSimd"/> over 1024 × 39 rows of width <see cref="Width"/> (an embedding: 10 is
/// the paper's D, 16 the bench config's), as the embedding gather/scatter and the CIN kernels call them.
/// </summary>
[MemoryDiagnoser]
public class RowKernelBenchmarks
{
    private const int Rows = 1024 * 39;

    [Params(10, 16)] public int Width;

    private float[] _table = [], _other = [], _out = [];
    private float _sink;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(5);
        _table = Enumerable.Range(0, Rows * Width).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        _other = Enumerable.Range(0, Rows * Width).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        _out = new float[Rows * Width];
    }

    /// <summary>acc[d] += s·x[d] into one accumulator row (a sum-pooled bag, an embedding gradient scatter).</summary>
    [Benchmark]
    public void ScaleAdd()
    {
        for (int r = 0; r < Rows; r++)
            RowSimd.ScaleAdd(ref RowSimd.At(_table.AsSpan(), r * Width), 0.5f, ref RowSimd.At(_out.AsSpan(), 0), Width);
    }

    /// <summary>dst = s·x per row (a scaled embedding).</summary>
    [Benchmark]
    public void Scale()
    {
        for (int r = 0; r < Rows; r++)
            RowSimd.Scale(ref RowSimd.At(_table.AsSpan(), r * Width), 0.5f, ref RowSimd.At(_out.AsSpan(), r * Width), Width);
    }

    /// <summary>dst = a ∘ b per row (the CIN's Hadamard products).</summary>
    [Benchmark]
    public void Multiply()
    {
        for (int r = 0; r < Rows; r++)
            RowSimd.Multiply(ref RowSimd.At(_table.AsSpan(), r * Width), ref RowSimd.At(_other.AsSpan(), r * Width), ref RowSimd.At(_out.AsSpan(), r * Width), Width);
    }

    /// <summary>acc += a ∘ b per row (the CIN backward).</summary>
    [Benchmark]
    public void MultiplyAdd()
    {
        for (int r = 0; r < Rows; r++)
            RowSimd.MultiplyAdd(ref RowSimd.At(_table.AsSpan(), r * Width), ref RowSimd.At(_other.AsSpan(), r * Width), ref RowSimd.At(_out.AsSpan(), r * Width), Width);
    }

    /// <summary>⟨a, b⟩ per row (FM and cross-network dot products).</summary>
    [Benchmark]
    public float Dot()
    {
        float sum = 0;
        for (int r = 0; r < Rows; r++)
            sum += RowSimd.Dot(ref RowSimd.At(_table.AsSpan(), r * Width), ref RowSimd.At(_other.AsSpan(), r * Width), Width);
        return _sink = sum;
    }
}

/// <summary>
/// The fused optimizer update loops of <see cref="UpdateKernels"/> over 409,600 parameters, called once per block of
/// <see cref="Width"/> elements: 16 is an embedding table's touched row (one 512-bit vector, the sparse-row case), 400
/// a dense layer's row (25 vectors). Each call reads the gradient and the state and writes weights and state in place,
/// so the numbers drift from call to call; the loops do the same work whatever the values.
/// </summary>
[MemoryDiagnoser]
public class UpdateKernelBenchmarks
{
    private const int N = 1024 * 400;

    [Params(16, 400)] public int Width;

    private float[] _w = [], _g = [], _s1 = [], _s2 = [];

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(7);
        _w = Enumerable.Range(0, N).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        _g = Enumerable.Range(0, N).Select(_ => (float)(rng.NextDouble() - 0.5) * 0.1f).ToArray();
        _s1 = Enumerable.Range(0, N).Select(_ => (float)(rng.NextDouble() - 0.5) * 0.1f).ToArray();
        _s2 = Enumerable.Range(0, N).Select(_ => (float)rng.NextDouble() * 0.01f).ToArray();
    }

    /// <summary>Plain SGD with L2 and decoupled decay.</summary>
    [Benchmark]
    public void Sgd()
    {
        for (int o = 0; o < N; o += Width)
            UpdateKernels.Sgd(_w.AsSpan(o, Width), _g.AsSpan(o, Width), 1f, 1e-4f, 1e-3f, 0.9999f);
    }

    /// <summary>Nesterov momentum.</summary>
    [Benchmark]
    public void SgdMomentum()
    {
        for (int o = 0; o < N; o += Width)
            UpdateKernels.SgdMomentum(_w.AsSpan(o, Width), _g.AsSpan(o, Width), _s1.AsSpan(o, Width), 1f, 1e-4f, 1e-3f, 0.9f, true, 0.9999f);
    }

    /// <summary>AdamW (two moments, a square root and a division per element).</summary>
    [Benchmark]
    public void Adam()
    {
        for (int o = 0; o < N; o += Width)
            UpdateKernels.Adam(_w.AsSpan(o, Width), _g.AsSpan(o, Width), _s1.AsSpan(o, Width), _s2.AsSpan(o, Width), 1f, 0f,
                1e-3f, 0.9f, 0.999f, 1f, 1e-8f, 0.9999f);
    }

    /// <summary>Adagrad.</summary>
    [Benchmark]
    public void Adagrad()
    {
        for (int o = 0; o < N; o += Width)
            UpdateKernels.Adagrad(_w.AsSpan(o, Width), _g.AsSpan(o, Width), _s2.AsSpan(o, Width), 1f, 1e-4f, 1e-2f, 1e-10f, 0.9999f);
    }

    /// <summary>FTRL-Proximal (two square roots, a division and the L1 select per element).</summary>
    [Benchmark]
    public void Ftrl()
    {
        for (int o = 0; o < N; o += Width)
            UpdateKernels.Ftrl(_w.AsSpan(o, Width), _g.AsSpan(o, Width), _s1.AsSpan(o, Width), _s2.AsSpan(o, Width), 1f, 20f, 1f, 0.01f, 1e-4f);
    }
}
