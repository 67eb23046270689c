using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;
using NUnit.Framework;
using static KdEngine.Tests.Autograd.GradCheckTests;

namespace KdEngine.Tests.Ops;

/// <summary>CIN ops: outer product, channel mix, the fused tiled layer (against the composition), a 2-layer stack, memory.</summary>
public class CinTests
{
    // ---------- values ----------

    [Test]
    public void FieldOuterProduct_and_ChannelMix_values_by_hand()
    {
        // B 1, H 2, F 2, D 2.
        var h = Tensor<double>.FromArray([1.0, 2, 3, 4], 1, 2, 2);
        var x0 = Tensor<double>.FromArray([5.0, 6, 7, 8], 1, 2, 2);
        using var tape = Tape<double>.NoGrad();
        var z = Op.FieldOuterProduct(h, x0); // [1, 4, 2]: rows (i, j) = (0,0), (0,1), (1,0), (1,1)
        Assert.That(z.Shape, Is.EqualTo(new Shape(1, 4, 2)));
        Assert.That(z.ToArray(), Is.EqualTo(new[] { 5.0, 12, 7, 16, 15, 24, 21, 32 }));
        var w = Tensor<double>.FromArray([1.0, 0, 0, 1, 0, 1, 1, 0], 2, 4); // K 2, C 4
        var y = Op.ChannelMix(z, w, Tensor<double>.FromArray([0.5, -1.0], 2));
        // y[0, 0, :] = z row 0 + z row 3 + 0.5; y[0, 1, :] = z row 1 + z row 2 − 1.
        Assert.That(y.ToArray(), Is.EqualTo(new[] { 26.5, 44.5, 21.0, 39.0 }));
        Assert.That(Op.CinLayer(h, x0, w, Tensor<double>.FromArray([0.5, -1.0], 2)).ToArray(), Is.EqualTo(y.ToArray()));
    }

    // ---------- gradient checks ----------

    private static readonly object[] Sizes =
    [
        new object[] { 1, 1, 1, 1 },  // B, H, F, D
        new object[] { 3, 3, 5, 7 },
        new object[] { 1, 3, 7, 17 },
        new object[] { 3, 1, 7, 1 },
        new object[] { 3, 3, 1, 17 },
    ];

    [TestCaseSource(nameof(Sizes))]
    public void FieldOuterProduct_gradcheck(int b, int h, int f, int d)
    {
        static Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.FieldOuterProduct(x[0], x[1]);
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(b * h * d, 1), Random(b * f * d, 2)],
            [new Shape(b, h, d), new Shape(b, f, d)]));
    }

    [TestCase(1, 1, 1)]
    [TestCase(3, 5, 7)]
    public void FieldOuterProduct_of_a_tensor_with_itself_gradcheck(int b, int f, int d)
    {
        // h == x0 (CIN's first layer): both gradient terms must accumulate into the one buffer.
        static Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.FieldOuterProduct(x[0], x[0]);
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(b * f * d, 3)], [new Shape(b, f, d)]));
    }

    [TestCase(1, 1, 1, 1)]  // B, C, D, K
    [TestCase(3, 5, 7, 4)]
    [TestCase(3, 21, 17, 1)]
    [TestCase(1, 7, 17, 4)]
    public void ChannelMix_gradcheck(int b, int c, int d, int k)
    {
        static Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.ChannelMix(x[0], x[1], x[2]);
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(b * c * d, 4), Random(k * c, 5), Random(k, 6)],
            [new Shape(b, c, d), new Shape(k, c), new Shape(k)]));
    }

    [Test]
    public void ChannelMix_without_bias_gradcheck()
    {
        static Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.ChannelMix(x[0], x[1]);
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(3 * 5 * 7, 7), Random(4 * 5, 8)],
            [new Shape(3, 5, 7), new Shape(4, 5)]));
    }

    private static readonly object[] LayerSizes =
    [
        new object[] { 1, 1, 1, 1, 1, 0 },  // B, H, F, D, K, tile (0: the planned tile)
        new object[] { 3, 3, 5, 7, 4, 0 },
        new object[] { 3, 3, 7, 17, 4, 2 },  // tiles of 2 + 1
        new object[] { 3, 1, 5, 1, 1, 1 },   // one sample per tile
        new object[] { 1, 3, 7, 17, 1, 0 },
    ];

    [TestCaseSource(nameof(LayerSizes))]
    public void CinLayer_gradcheck(int b, int h, int f, int d, int k, int tile)
    {
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T>
            => CinLayerNode<T>.Forward(x[0], x[1], x[2], x[3], tile == 0 ? null : tile);
        AssertPasses(GradCheck.Run(F<double>, F<float>,
            [Random(b * h * d, 9), Random(b * f * d, 10), Random(k * h * f, 11), Random(k, 12)],
            [new Shape(b, h, d), new Shape(b, f, d), new Shape(k, h * f), new Shape(k)]));
    }

    [TestCase(3, 5, 7, 4, 2)]
    [TestCase(1, 1, 1, 1, 0)]
    public void CinLayer_first_layer_with_h_equal_to_x0_gradcheck(int b, int f, int d, int k, int tile)
    {
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T>
            => CinLayerNode<T>.Forward(x[0], x[0], x[1], null, tile == 0 ? null : tile);
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(b * f * d, 13), Random(k * f * f, 14)],
            [new Shape(b, f, d), new Shape(k, f * f)]));
    }

    // ---------- fused layer == composition, in float, on a batch with a remainder tile ----------

    private delegate Tensor<float> Layer(Tensor<float> h, Tensor<float> x0, Tensor<float> w, Tensor<float> bias);

    /// <summary>Runs the layer on fresh leaves with loss = Σ r ∘ y; returns y and the gradients of h, x0, w, bias.</summary>
    private static (float[] Y, float[][] Grads) RunLayer(Layer layer, float[][] inputs, Shape[] shapes, float[] r)
    {
        var leaves = inputs.Select((v, i) => Tensor<float>.FromArray(v, shapes[i]).RequireGrad()).ToArray();
        using var tape = new Tape<float>();
        var y = layer(leaves[0], leaves[1], leaves[2], leaves[3]);
        var yv = y.ToArray();
        tape.Backward(Op.Sum(Op.Mul(y, Tensor<float>.FromArray(r, y.Shape))));
        return (yv, leaves.Select(l => l.Grad!.ToArray()).ToArray());
    }

    private static void AssertClose(float[] actual, float[] expected, double rel, string what)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), what);
        double scale = expected.Max(v => Math.Abs((double)v));
        double worst = 0;
        for (int i = 0; i < actual.Length; i++) worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]) / scale);
        Assert.That(worst, Is.LessThanOrEqualTo(rel), $"{what}: worst relative difference {worst:G3}");
    }

    [TestCase(16)]  // 67 = 4 × 16 + 3: a remainder tile
    [TestCase(0)]   // the planned tile
    public void CinLayer_equals_ChannelMix_of_FieldOuterProduct_forward_and_backward(int tile)
    {
        int b = 67, h = 6, f = 9, d = 17, k = 5;
        Shape[] shapes = [new(b, h, d), new(b, f, d), new(k, h * f), new(k)];
        var inputs = shapes.Select((s, i) => Random(s.ElementCount, 100 + i).Select(v => (float)v).ToArray()).ToArray();
        var r = Random(b * k * d, 200).Select(v => (float)v).ToArray();
        var fused = RunLayer((hh, xx, ww, bb) => CinLayerNode<float>.Forward(hh, xx, ww, bb, tile == 0 ? null : tile), inputs, shapes, r);
        var composed = RunLayer((hh, xx, ww, bb) => Op.ChannelMix(Op.FieldOuterProduct(hh, xx), ww, bb), inputs, shapes, r);
        AssertClose(fused.Y, composed.Y, 1e-5, "y");
        string[] names = ["dh", "dx0", "dw", "dbias"];
        for (int i = 0; i < 4; i++) AssertClose(fused.Grads[i], composed.Grads[i], 1e-5, names[i]);
    }

    // ---------- a composed 2-layer CIN stack from embeddings to a loss ----------

    [Test]
    public void Two_layer_CIN_stack_from_field_embeddings_to_BCE_gradcheck()
    {
        // ids [B 3, F 5] into 5 tables [V_f, D 7] → x0 [3, 5, 7]
        // → h1 = CinLayer(x0, x0) [3, 4, 7] → h2 = CinLayer(h1, x0) [3, 3, 7]
        // → sum-pool over D: p1 [3, 4], p2 [3, 3] → logit = p1·v1ᵀ + p2·v2ᵀ [3, 1] → BCE with labels.
        const int batch = 3, fields = 5, width = 7, k1 = 4, k2 = 3;
        int[] vocab = [3, 5, 2, 4, 6];
        var ids = new int[batch * fields];
        var rng = new Random(300);
        for (int n = 0; n < ids.Length; n++) ids[n] = rng.Next(vocab[n % fields]);

        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T>
        {
            var x0 = Op.EmbeddingGatherFields(x[..fields], ids, batch);                      // [B, F, D]
            var h1 = CinLayerNode<T>.Forward(x0, x0, x[fields], x[fields + 1], tileSamples: 2); // [B, K1, D]
            var h2 = Op.CinLayer(h1, x0, x[fields + 2], x[fields + 3]);                     // [B, K2, D]
            var p1 = Op.Sum(h1, axis: 2);                                                    // [B, K1]
            var p2 = Op.Sum(h2, axis: 2);                                                    // [B, K2]
            var logit = Op.Add(Op.Linear(p1, x[fields + 4]), Op.Linear(p2, x[fields + 5])); // [B, 1]
            return Op.BceWithLogits(logit, x[fields + 6]);
        }

        var inputs = vocab.Select((v, f) => Random(v * width, 310 + f, -0.5, 0.5)).ToList();
        var shapes = vocab.Select(v => new Shape(v, width)).ToList();
        inputs.AddRange([Random(k1 * fields * fields, 320, -0.3, 0.3), Random(k1, 321), Random(k2 * k1 * fields, 322, -0.3, 0.3),
            Random(k2, 323), Random(k1, 324), Random(k2, 325), [1.0, 0.0, 1.0]]);
        shapes.AddRange([new Shape(k1, fields * fields), new Shape(k1), new Shape(k2, k1 * fields), new Shape(k2),
            new Shape(1, k1), new Shape(1, k2), new Shape(batch, 1)]);
        AssertPasses(GradCheck.Run(F<double>, F<float>, inputs.ToArray(), shapes.ToArray(), constant: [fields + 6]));
    }

    // ---------- memory: the outer product is never materialised ----------

    [Test]
    public void The_bench_CIN_plans_megabytes_of_scratch_not_gigabytes()
    {
        // Bench config: B 1024, F 39, D 16, CIN [200, 200, 200]. The first layer has H = F = 39, later ones H = 200.
        const int batch = 1024, fields = 39, width = 16, maps = 200;
        long totalPlanned = 0;
        foreach (int h in new[] { fields, maps, maps })
        {
            var (tile, scratch) = CinLayerNode<float>.Plan(batch, h, fields, maps, width);
            long materialised = (long)batch * h * fields * width * sizeof(float);
            Assert.That(tile, Is.InRange(1, batch));
            Assert.That(scratch, Is.LessThanOrEqualTo(CinLayerNode<float>.ScratchBudgetBytes), $"H {h}: scratch {scratch} B");
            Assert.That(scratch * 10, Is.LessThan(materialised), $"H {h}: scratch {scratch} B vs outer product {materialised} B");
            totalPlanned += scratch;
        }
        Assert.That(totalPlanned, Is.LessThan(32L << 20), "three layers' scratch");
        Assert.That(CinLayerNode<float>.Plan(batch, maps, fields, maps, width).TileSamples, Is.EqualTo(8),
            "H·F = 7800, D = 16: (2·7800 + 200)·16·4 B ≈ 1 MB a sample → 8 samples in 8 MB");
    }

    [Test]
    public void A_full_batch_forward_and_backward_allocates_far_less_than_the_outer_product()
    {
        // B 1024, H = F = 39, D 16 (the first bench layer's interaction width); K kept small so the test stays fast
        // whatever GEMM is in place. The materialised outer product alone would be 1024·39·39·16·4 B ≈ 100 MB.
        const int batch = 1024, fields = 39, width = 16, maps = 2;
        var x0 = Tensor<float>.FromArray(Random(batch * fields * width, 400).Select(v => (float)v).ToArray(),
            new Shape(batch, fields, width)).RequireGrad();
        var w = Tensor<float>.FromArray(Random(maps * fields * fields, 401).Select(v => (float)v).ToArray(), new Shape(maps, fields * fields)).RequireGrad();
        var bias = Tensor<float>.Zeros(maps).RequireGrad();
        long materialised = (long)batch * fields * fields * width * sizeof(float);
        long before = GC.GetAllocatedBytesForCurrentThread();
        using (var tape = new Tape<float>())
        {
            var y = Op.CinLayer(x0, x0, w, bias); // [1024, 2, 16]
            tape.Backward(Op.Sum(y));
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        TestContext.Out.WriteLine($"CinLayer B {batch}, H = F {fields}, D {width}: allocated {allocated} B in forward + backward; the outer product is {materialised} B");
        Assert.That(allocated, Is.LessThan(materialised / 3), $"allocated {allocated} B; the outer product is {materialised} B");
        Assert.That(x0.Grad!.ToArray().Any(v => v != 0f), Is.True);
    }

    // ---------- bad shapes ----------

    [Test]
    public void Shape_mismatches_throw_naming_the_shapes()
    {
        using var tape = new Tape<float>();
        var h = Tensor<float>.Zeros(2, 3, 4);
        var x0 = Tensor<float>.Zeros(2, 5, 4);
        Assert.That(Assert.Throws<ArgumentException>(() => Op.FieldOuterProduct(h, Tensor<float>.Zeros(3, 5, 4)))!.Message,
            Does.Contain("FieldOuterProduct").And.Contain("[2, 3, 4]").And.Contain("[3, 5, 4]"));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.FieldOuterProduct(h, Tensor<float>.Zeros(2, 5, 3)))!.Message,
            Does.Contain("[2, 5, 3]"));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.ChannelMix(Tensor<float>.Zeros(2, 15, 4), Tensor<float>.Zeros(6, 14)))!.Message,
            Does.Contain("ChannelMix").And.Contain("[6, 14]").And.Contain("[2, 15, 4]"));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.ChannelMix(Tensor<float>.Zeros(2, 15, 4), Tensor<float>.Zeros(6, 15), Tensor<float>.Zeros(5)))!.Message,
            Does.Contain("bias [5]").And.Contain("[6, 15]"));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.CinLayer(h, x0, Tensor<float>.Zeros(6, 16)))!.Message,
            Does.Contain("CinLayer").And.Contain("[6, 16]").And.Contain("[K, 15]"));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.CinLayer(Tensor<float>.Zeros(2, 3), x0, Tensor<float>.Zeros(6, 15)))!.Message,
            Does.Contain("CinLayer").And.Contain("[2, 3]"));
    }
}
