using KdEngine.Autograd;
using KdEngine.Backends;
using KdEngine.Ops;
using KdEngine.Tensors;
using NUnit.Framework;

namespace KdEngine.Gpu.Tests;

/// <summary>
/// The backend-parity suite, written once: every op's forward and backward through the public <see cref="Op"/> API
/// with tensors on the device under test, against the CPU backend, within 1e-4 relative. Thin subclasses pick the
/// device (<see cref="IlgpuCpuParity"/> always runs; <see cref="CudaParity"/> is ignored without a CUDA device).
/// Sizes are small and odd: ILGPU's CPU accelerator is a slow simulator, and odd sizes catch tail/tile edges.
/// </summary>
public abstract class BackendParity
{
    private const float Tolerance = 1e-4f;
    private IBackend<float>? _device;

    /// <summary>Creates the device backend, or calls Assert.Ignore with the reason when it does not exist here.</summary>
    protected abstract IBackend<float> CreateDevice();

    protected IBackend<float> Device => _device ?? throw new InvalidOperationException("no device");

    [OneTimeSetUp]
    public void SetUpDevice() => _device = CreateDevice();

    [OneTimeTearDown]
    public void TearDownDevice() => (_device as IDisposable)?.Dispose();

    protected sealed record Input(float[] Data, int[] Shape, bool Grad = true, bool Table = false);

    protected static Input Rand(int seed, params int[] shape) => new(Values(seed, Count(shape), -1.5f, 1.5f), shape);
    protected static Input Positive(int seed, params int[] shape) => new(Values(seed, Count(shape), 0.2f, 3f), shape);
    protected static Input Labels(int seed, params int[] shape) => new(Values(seed, Count(shape), 0f, 1f), shape, Grad: false);

    private static int Count(int[] shape) => shape.Aggregate(1, (a, b) => a * b);

    private static float[] Values(int seed, int n, float lo, float hi)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => lo + (float)rng.NextDouble() * (hi - lo)).ToArray();
    }

    /// <summary>Runs f on the CPU and on the device; compares the outputs and every input gradient.</summary>
    protected void Check(Func<Tensor<float>[], Tensor<float>> f, params Input[] inputs)
    {
        var cpu = Run(CpuBackend<float>.Instance, f, inputs);
        var dev = Run(Device, f, inputs);
        AssertClose(dev.Output, cpu.Output, "forward");
        for (int i = 0; i < inputs.Length; i++)
        {
            Assert.That(dev.Grads[i] is null, Is.EqualTo(cpu.Grads[i] is null), $"gradient presence of input {i}");
            if (cpu.Grads[i] is { } g) AssertClose(dev.Grads[i]!, g, $"gradient of input {i}");
        }
    }

    private static (float[] Output, float[]?[] Grads) Run(IBackend<float> backend, Func<Tensor<float>[], Tensor<float>> f, Input[] inputs)
    {
        using var scope = DefaultBackend<float>.Use(backend);
        var leaves = inputs.Select((x, i) =>
        {
            var t = x.Table
                ? EmbeddingTable.Create<float>(x.Data, x.Shape[0], x.Shape[1], $"table{i}", backend)
                : Tensor<float>.FromArray(x.Data, new Shape(x.Shape), backend, $"input{i}");
            return x.Grad ? t.RequireGrad() : t;
        }).ToArray();
        try
        {
            float[] output;
            using (var tape = new Tape<float>())
            {
                var y = f(leaves);
                output = y.ToArray();
                using var w = Tensor<float>.FromArray(Values(99, y.Length, -1f, 1f), y.Shape, backend);
                tape.Backward(Op.Sum(Op.Mul(y, w)));
            }
            var grads = leaves.Select(l => l.HasSparseGradient ? l.SparseGrad?.ToDense() : l.Grad?.ToArray()).ToArray();
            return (output, grads);
        }
        finally
        {
            foreach (var l in leaves) l.Dispose();
        }
    }

    private static void AssertClose(float[] actual, float[] expected, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        for (int i = 0; i < expected.Length; i++)
        {
            float tol = Tolerance * Math.Max(1f, Math.Abs(expected[i]));
            if (!(Math.Abs(actual[i] - expected[i]) <= tol))
                Assert.Fail($"{what}: element {i} is {actual[i]} on the device, {expected[i]} on the CPU (tolerance {tol}).");
        }
    }

    // ---- elementwise (operator structs through Map / Map2) ----
    [Test] public void Relu() => Check(x => Op.Relu(x[0]), Rand(1, 5, 7));
    [Test] public void LeakyRelu() => Check(x => Op.LeakyRelu(x[0], 0.1f), Rand(2, 5, 7));
    [Test] public void Sigmoid() => Check(x => Op.Sigmoid(x[0]), new Input(Values(3, 37, -40f, 40f), [37]));
    [Test] public void SigmoidWithTemperature() => Check(x => Op.SigmoidWithTemperature(x[0], 3f), Rand(4, 37));
    [Test] public void Tanh() => Check(x => Op.Tanh(x[0]), new Input(Values(5, 41, -5f, 5f), [41]));
    [Test] public void Exp() => Check(x => Op.Exp(x[0]), Rand(6, 3, 11));
    [Test] public void Log() => Check(x => Op.Log(x[0]), Positive(7, 3, 11));
    [Test] public void Neg() => Check(x => Op.Neg(x[0]), Rand(8, 13));
    [Test] public void Square() => Check(x => Op.Square(x[0]), Rand(9, 13));
    [Test] public void Scale() => Check(x => Op.Scale(x[0], -2.5f), Rand(10, 13));
    [Test] public void AddSameShape() => Check(x => Op.Add(x[0], x[1]), Rand(11, 4, 9), Rand(12, 4, 9));
    [Test] public void AddRowBroadcast() => Check(x => Op.Add(x[0], x[1]), Rand(13, 6, 5), Rand(14, 5));
    [Test] public void SubScalarBroadcast() => Check(x => Op.Sub(x[0], x[1]), Rand(15, 6, 5), Rand(16, 1));
    [Test] public void MulRowBroadcast() => Check(x => Op.Mul(x[0], x[1]), Rand(17, 3, 4, 5), Rand(18, 4, 5));

    // ---- reductions and losses ----
    [Test] public void SumAll() => Check(x => Op.Sum(x[0]), Rand(20, 7, 9));
    [Test] public void SumAxis() => Check(x => Op.Sum(x[0], axis: 1), Rand(21, 3, 5, 4));
    [Test] public void MeanAxis0() => Check(x => Op.Mean(x[0], axis: 0), Rand(22, 5, 6));
    [Test] public void BceWithLogits() => Check(x => Op.BceWithLogits(x[0], x[1]), new Input(Values(23, 33, -30f, 30f), [33, 1]), Labels(24, 33, 1));
    [Test] public void Mse() => Check(x => Op.Mse(x[0], x[1]), Rand(25, 17), Rand(26, 17));
    [Test] public void SumSquares() => Check(x => Op.SumSquares(x[0]), Rand(27, 4, 5));

    // ---- GEMM ----
    [TestCase(false, false)]
    [TestCase(true, false)]
    [TestCase(false, true)]
    [TestCase(true, true)]
    public void MatMul(bool ta, bool tb)
    {
        int m = 19, k = 21, n = 17; // not multiples of the 16-wide tile
        Check(x => Op.MatMul(x[0], x[1], ta, tb), Rand(30, ta ? [k, m] : [m, k]), Rand(31, tb ? [n, k] : [k, n]));
    }

    [Test] public void Linear() => Check(x => Op.Linear(x[0], x[1], x[2]), Rand(32, 9, 13), Rand(33, 7, 13), Rand(34, 7));

    // ---- softmax family and distillation losses ----
    [Test] public void SoftmaxLastAxis() => Check(x => Op.Softmax(x[0], -1, 2f), Rand(40, 5, 7));
    [Test] public void LogSoftmaxMiddleAxis() => Check(x => Op.LogSoftmax(x[0], 1, 0.5f), Rand(41, 3, 5, 4));
    [Test] public void SoftmaxExtremeLogits() => Check(x => Op.Softmax(x[0]), new Input(Values(42, 12, -1000f, 1000f), [3, 4]));
    [Test] public void KlDivergence() => Check(x => Op.KlDivergence(Op.LogSoftmax(x[0]), Op.LogSoftmax(x[1])), Rand(43, 4, 5), Rand(44, 4, 5));
    [Test] public void SoftmaxKd() => Check(x => Op.SoftmaxKd(x[0], x[1], 3f), Rand(45, 4, 5), Rand(46, 4, 5));
    [Test] public void BinaryKd() => Check(x => Op.BinaryKd(x[0], x[1], 2f), Rand(47, 9, 1), Rand(48, 9, 1));

    // ---- structure, identity, dropout ----
    [Test] public void Concat() => Check(x => Op.Concat([x[0], x[1]], 1), Rand(50, 3, 2, 4), Rand(51, 3, 5, 4));
    [Test] public void Split() => Check(x => { var p = Op.Split(x[0], [2, 3], 1); return Op.Mul(Op.Sum(p[0], 1), Op.Sum(Op.Square(p[1]), 1)); }, Rand(52, 4, 5));
    [Test] public void StopGradientAndGradScale() => Check(x => Op.Add(Op.StopGradient(x[0]), Op.GradScale(x[1], -3f)), Rand(53, 4, 3), Rand(54, 4, 3));
    [Test] public void ReshapeFlatten() => Check(x => Op.Relu(Op.Flatten(Op.Reshape(x[0], 3, -1, 2))), Rand(55, 6, 4));
    [Test] public void Dropout() => Check(x => Op.Dropout(x[0], 0.3f, 1234UL, training: true), Rand(56, 7, 11));

    // ---- embeddings ----
    private static readonly int[] Ids = [3, 0, 6, 3, 1, 6, 6, 2];

    [Test] public void EmbeddingGatherSparseTable() =>
        Check(x => Op.EmbeddingGather(x[0], Ids), new Input(Values(60, 7 * 5, -1f, 1f), [7, 5], Table: true));

    [Test] public void EmbeddingGatherDenseTable() =>
        Check(x => Op.EmbeddingGather(x[0], Ids, new Shape(4, 2, 5)), Rand(61, 7, 5));

    [Test] public void EmbeddingGatherFields()
    {
        int[] ids = [0, 4, 2, 2, 1, 3, 0, 0, 2]; // [batch 3, fields 3]
        Check(x => Op.EmbeddingGatherFields([x[0], x[1], x[2]], ids, 3),
            new Input(Values(62, 3 * 4, -1f, 1f), [3, 4], Table: true),
            new Input(Values(63, 5 * 4, -1f, 1f), [5, 4], Table: true),
            new Input(Values(64, 4 * 4, -1f, 1f), [4, 4], Table: true));
    }

    [TestCase(PoolingMode.Sum, true)]
    [TestCase(PoolingMode.Mean, true)]
    [TestCase(PoolingMode.Mean, false)]
    public void EmbeddingBag(PoolingMode mode, bool sparse) =>
        Check(x => Op.EmbeddingBag(x[0], Ids, new[] { 0, 3, 3, 8 }, mode), new Input(Values(65, 7 * 5, -1f, 1f), [7, 5], Table: sparse));

    [Test] public void MulColumn() => Check(x => Op.MulColumn(x[0], x[1]), Rand(66, 3, 4, 5), Rand(67, 3, 4));

    [Test]
    public void UploadRowsWritesOnlyTheGivenRows()
    {
        float[] Apply(IBackend<float> backend)
        {
            using var table = Tensor<float>.FromArray(Values(80, 6 * 3, -1f, 1f), new Shape(6, 3), backend);
            backend.UploadRows(table.Storage, 3, [4, 1], [10, 11, 12, 20, 21, 22]);
            return table.ToArray();
        }
        var cpu = Apply(CpuBackend<float>.Instance);
        Assert.That(cpu[12..15], Is.EqualTo(new float[] { 10, 11, 12 }));
        Assert.That(cpu[3..6], Is.EqualTo(new float[] { 20, 21, 22 }));
        Assert.That(Apply(Device), Is.EqualTo(cpu));
        Assert.Throws<ArgumentOutOfRangeException>(() => Apply2(Device));
        static void Apply2(IBackend<float> backend)
        {
            using var t = Tensor<float>.Zeros(new Shape(2, 3), backend);
            backend.UploadRows(t.Storage, 3, [2], [1, 2, 3]);
        }
    }

    // ---- CIN ----
    [Test] public void FieldOuterProduct() => Check(x => Op.FieldOuterProduct(x[0], x[1]), Rand(70, 3, 2, 5), Rand(71, 3, 4, 5));
    [Test] public void FieldOuterProductSelf() => Check(x => Op.FieldOuterProduct(x[0], x[0]), Rand(72, 3, 4, 5));
    [Test] public void ChannelMix() => Check(x => Op.ChannelMix(x[0], x[1], x[2]), Rand(73, 3, 6, 5), Rand(74, 4, 6), Rand(75, 4));
    // ---- FFM ----
    [Test] public void FieldAwarePairs() => Check(x => Op.FieldAwarePairs(x[0], 3), Rand(90, 4, 5, 4 * 3));      // B 4, F 5, D 3
    [Test] public void FieldAwarePairsTwoFields() => Check(x => Op.FieldAwarePairs(x[0], 7), Rand(91, 3, 2, 7)); // one pair, D 7

    [Test] public void CinLayer() => Check(x => Op.CinLayer(x[0], x[1], x[2], x[3]), Rand(76, 5, 3, 4), Rand(77, 5, 2, 4), Rand(78, 6, 6), Rand(79, 6));
}

/// <summary>The parity suite on ILGPU's CPU accelerator (always available: it simulates a GPU on the CPU).</summary>
[TestFixture]
public sealed class IlgpuCpuParity : BackendParity
{
    protected override IBackend<float> CreateDevice() => ComputeDevice.Create("ilgpu-cpu");
}

/// <summary>The parity suite on the first CUDA GPU; ignored (with the reason) on machines without one.</summary>
[TestFixture]
public sealed class CudaParity : BackendParity
{
    protected override IBackend<float> CreateDevice()
    {
        try
        {
            return ComputeDevice.Create("cuda");
        }
        catch (DeviceUnavailableException e)
        {
            Assert.Ignore($"No CUDA device on this machine, so the CUDA parity suite did not run: {e.Message}");
            throw; // unreachable: Assert.Ignore throws
        }
    }
}
