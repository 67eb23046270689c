using KdEngine.Autograd;
using KdEngine.Backends;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Gpu.Tests;

/// <summary>
/// Training on a device and the device-side embedding bounds check, written once: ILGPU's CPU accelerator always
/// (CI), CUDA when a device exists (ignored with a message otherwise).
/// </summary>
public abstract class DeviceTrainingTests
{
    private GpuBackend _device = null!;

    protected abstract string DeviceName { get; }

    [OneTimeSetUp]
    public void SetUp()
    {
        if (!ComputeDevice.IsAvailable(DeviceName, out string reason))
            Assert.Ignore($"No {DeviceName} device on this machine, so the device-training suite did not run: {reason}");
        _device = (GpuBackend)ComputeDevice.Create(DeviceName);
    }

    [OneTimeTearDown]
    public void TearDown() => _device?.Dispose();

    private static InputField[] Fields() => Enumerable.Range(0, 5).Select(i => new InputField($"C{i}", 13 + 3 * i)).ToArray();

    /// <summary>A seeded batch whose label is the parity of field 0's id (10 % noise), so the loss has something to learn.</summary>
    private static CtrBatch Batch(InputField[] fields, int size, int seed)
    {
        var rng = new Random(seed);
        int f = fields.Length;
        var ids = new int[size * f];
        var labels = new float[size];
        for (int b = 0; b < size; b++)
        {
            for (int j = 0; j < f; j++) ids[b * f + j] = rng.Next(fields[j].Cardinality);
            labels[b] = (ids[b * f] % 2 == 0) ^ (rng.NextDouble() < 0.1) ? 1f : 0f;
        }
        return new CtrBatch(size, f, ids, labels);
    }

    /// <summary>50 Adam steps of WDL on <paramref name="backend"/>; returns the loss of every step.</summary>
    private static float[] TrainWdl(IBackend<float> backend, int steps)
    {
        using var scope = DefaultBackend<float>.Use(backend);
        var fields = Fields();
        var model = new ZooModel(new ModelConfig { Model = ModelKind.Wdl, EmbeddingDim = 4, Dnn = [16, 8], Seed = 7 }, fields);
        var objective = new SupervisedObjective(model);
        var optimizer = new Adam(model.Parameters().Select(p => p.Tensor), learningRate: 0.03f) { DenseL2 = 1e-4f, EmbeddingL2 = 1e-4f };
        var losses = new float[steps];
        using var tape = new Tape<float>();
        for (int s = 0; s < steps; s++)
        {
            tape.Reset();
            var loss = objective.Loss(Batch(fields, 32, 1000 + s), s, null);
            losses[s] = loss.Item();
            tape.Backward(loss);
            optimizer.Step();
        }
        return losses;
    }

    [Test]
    public void WdlTrainingOnDeviceFollowsTheCpuLossCurve()
    {
        const int steps = 50;
        var cpu = TrainWdl(CpuBackend<float>.Instance, steps);
        var dev = TrainWdl(_device, steps);
        for (int s = 0; s < steps; s++)
            Assert.That(dev[s], Is.EqualTo(cpu[s]).Within(1e-3f * Math.Max(1f, cpu[s])), $"step {s}: device loss {dev[s]}, CPU loss {cpu[s]}");
        // The curve must actually move, or agreement would prove nothing.
        Assert.That(cpu[^5..].Average(), Is.LessThan(cpu[..5].Average() - 0.02f), "the CPU run did not learn");
    }

    private static IEnumerable<TestCaseData> NewZooModels()
    {
        yield return new TestCaseData(new ModelConfig { Model = ModelKind.Ffm, EmbeddingDim = 3, EmbeddingInitStd = 0.2f, Seed = 4 }).SetName("Ffm");
        // LIBFFM's training form: the pairs ÷ F (instance normalisation of one-hot rows) and the uniform [0, 1/√D) init.
        yield return new TestCaseData(new ModelConfig { Model = ModelKind.Ffm, EmbeddingDim = 3, FfmNormalize = true, FfmInit = FfmInit.Uniform, Seed = 4 })
            .SetName("FfmNormalizedUniformInit");
        var v2 = new ModelConfig { Model = ModelKind.DcnV2, EmbeddingDim = 3, EmbeddingInitStd = 0.2f, Dnn = [7], CrossLayers = 2, Seed = 5 };
        yield return new TestCaseData(v2).SetName("DcnV2FullRankParallel");
        yield return new TestCaseData(v2 with { CrossRank = 2, CrossExperts = 3, CrossStructure = CrossStructure.Stacked }).SetName("DcnV2MixtureStacked");
    }

    /// <summary>One BCE step of a model built with the same seed on <paramref name="backend"/>: its logits and every parameter's
    /// gradient (sparse tables densified), by name.</summary>
    private static (float[] Logits, Dictionary<string, float[]> Grads) Step(IBackend<float> backend, ModelConfig config)
    {
        using var scope = DefaultBackend<float>.Use(backend);
        var fields = Fields();
        var model = new ZooModel(config, fields);
        using var tape = new Tape<float>();
        var batch = Batch(fields, 9, seed: 77);
        var output = model.Forward(batch);
        var logits = output.Logits.ToArray();
        tape.Backward(Op.BceWithLogits(output.Logits, SupervisedObjective.LabelTensor(batch)));
        var grads = model.Parameters().ToDictionary(p => p.Name,
            p => p.Tensor.HasSparseGradient ? p.Tensor.SparseGradOrEmpty().ToDense() : p.Tensor.GradOrZeros().ToArray());
        return (logits, grads);
    }

    [TestCaseSource(nameof(NewZooModels))]
    public void FfmAndDcnV2ForwardAndGradientsOnDeviceMatchTheCpu(ModelConfig config)
    {
        var cpu = Step(CpuBackend<float>.Instance, config);
        var dev = Step(_device, config);
        for (int b = 0; b < cpu.Logits.Length; b++)
            Assert.That(dev.Logits[b], Is.EqualTo(cpu.Logits[b]).Within(1e-4f * Math.Max(1f, Math.Abs(cpu.Logits[b]))), $"logit {b}");
        Assert.That(cpu.Logits.Select(Math.Abs).Max(), Is.GreaterThan(1e-3f), "the logits must not be trivially zero");
        foreach (var (name, g) in cpu.Grads)
        {
            var d = dev.Grads[name];
            float scale = Math.Max(1e-3f, g.Select(Math.Abs).Max());
            for (int i = 0; i < g.Length; i++)
                Assert.That(d[i], Is.EqualTo(g[i]).Within(1e-4f * scale), $"{name}[{i}]");
        }
    }

    [Test]
    public void OutOfRangeIdThatBypassesTheHostCheckIsReportedAtTheBatchBoundary()
    {
        using var table = EmbeddingTable.Create<float>(Enumerable.Range(0, 10 * 3).Select(i => (float)i).ToArray(), 10, 3, "C7.weight", _device);
        using var output = Tensor<float>.Zeros(new Shape(4, 3), _device);
        int[] ids = [1, 9, 10, 2]; // 10 is out of range; the op would reject it, the primitive is called directly
        _device.GatherRows(table.Storage, 3, ids, 1, ids.Length, output.Storage, 0, 3);
        var e = Assert.Throws<DeviceIdOutOfRangeException>(() => output.ToArray())!;
        Assert.That(e.Id, Is.EqualTo(10));
        Assert.That(e.Position, Is.EqualTo(2));
        Assert.That(e.Table, Does.Contain("C7.weight"));
        Assert.That(e.Message, Does.Contain("GatherRows").And.Contain("id 10").And.Contain("0..9"));
        // The error was consumed: the next read succeeds, and the bad row was zero-filled, never read past the table.
        var values = output.ToArray();
        Assert.That(values[6..9], Is.EqualTo(new float[3]));
        Assert.That(values[0..3], Is.EqualTo(new float[] { 3, 4, 5 }));
    }

    [Test]
    public void OutOfRangeBagIdIsReportedWithItsPosition()
    {
        using var table = EmbeddingTable.Create<float>(new float[5 * 2], 5, 2, "tags.weight", _device);
        using var output = Tensor<float>.Zeros(new Shape(2, 2), _device);
        _device.BagSum(table.Storage, 2, [0, -1, 4], [0, 1, 3], mean: false, output.Storage);
        var e = Assert.Throws<DeviceIdOutOfRangeException>(() => _device.Synchronize())!;
        Assert.That((e.Id, e.Position), Is.EqualTo((-1, 1)));
        Assert.That(e.Message, Does.Contain("EmbeddingBag").And.Contain("tags.weight"));
    }

    [Test]
    public void HostCheckStillRejectsBadIdsThroughTheOpApi()
    {
        using var scope = DefaultBackend<float>.Use(_device);
        using var table = EmbeddingTable.Create<float>(new float[4 * 2], 4, 2, "C1.weight", _device);
        Assert.Throws<ArgumentOutOfRangeException>(() => Op.EmbeddingGather(table, new[] { 0, 4 }));
    }

    [Test]
    public void ComputeDeviceNamesItsChoices()
    {
        Assert.That(ComputeDevice.Create("cpu"), Is.SameAs(CpuBackend<float>.Instance));
        var e = Assert.Throws<ArgumentException>(() => ComputeDevice.Create("tpu"))!;
        Assert.That(e.Message, Does.Contain("tpu").And.Contain("ilgpu-cpu"));
    }
}

[TestFixture]
public sealed class IlgpuCpuDeviceTraining : DeviceTrainingTests
{
    protected override string DeviceName => "ilgpu-cpu";
}

[TestFixture]
public sealed class CudaDeviceTraining : DeviceTrainingTests
{
    protected override string DeviceName => "cuda";
}
