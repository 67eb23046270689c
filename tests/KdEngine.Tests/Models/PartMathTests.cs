using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Serving;
using KdEngine.Tensors;
using NUnit.Framework;
using static KdEngine.Tests.Autograd.GradCheckTests;

namespace KdEngine.Tests.Models;

/// <summary>The parts' own math, generic like the ops: double-precision gradient checks at odd sizes (SIMD tails) and
/// values against the formulas.</summary>
public class PartMathTests
{
    [TestCase(1, 1, 1)]
    [TestCase(3, 5, 7)]
    [TestCase(2, 3, 17)]
    [TestCase(1, 7, 1)]
    public void FmInteraction_gradcheck(int batch, int fields, int dim)
    {
        static Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => FmInteraction.Forward(x[0]);
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(batch * fields * dim, 31)], [new Shape(batch, fields, dim)]));
    }

    [TestCase(1, 1, 1)]
    [TestCase(3, 17, 2)]
    [TestCase(2, 5, 3)]
    [TestCase(5, 33, 1)]
    public void CrossNetwork_gradcheck(int batch, int width, int layers)
    {
        // Inputs: x0 [B, n], then (w_l [n, 1], b_l [n]) per layer — the input and every weight are checked.
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> =>
            CrossNetwork.Apply(x[0], Enumerable.Range(0, layers).Select(l => x[1 + 2 * l]).ToArray(), Enumerable.Range(0, layers).Select(l => x[2 + 2 * l]).ToArray());
        var inputs = new List<double[]> { Random(batch * width, 40) };
        var shapes = new List<Shape> { new(batch, width) };
        for (int l = 0; l < layers; l++)
        {
            inputs.Add(Random(width, 41 + l));
            shapes.Add(new Shape(width, 1));
            inputs.Add(Random(width, 51 + l));
            shapes.Add(new Shape(width));
        }
        AssertPasses(GradCheck.Run(F<double>, F<float>, inputs.ToArray(), shapes.ToArray()));
    }

    [Test]
    public void CrossNetwork_values_follow_the_formula()
    {
        // x_{l+1} = x0 ∘ (x_l · w_l) + b_l + x_l, two layers, by hand in double.
        const int batch = 2, n = 3;
        double[] x0 = [1, -2, 0.5, 3, 1, -1];
        double[] w0 = [0.5, 1, -1], b0 = [0.1, 0.2, 0.3], w1 = [-1, 0.25, 2], b1 = [1, 0, -1];
        var expected = new double[batch * n];
        for (int b = 0; b < batch; b++)
        {
            var x = x0.AsSpan(b * n, n).ToArray();
            foreach (var (w, bias) in new[] { (w0, b0), (w1, b1) })
            {
                double s = 0;
                for (int i = 0; i < n; i++) s += x[i] * w[i];
                var next = new double[n];
                for (int i = 0; i < n; i++) next[i] = x0[b * n + i] * s + bias[i] + x[i];
                x = next;
            }
            x.CopyTo(expected, b * n);
        }
        using var tape = Tape<double>.NoGrad();
        var actual = CrossNetwork.Apply(Tensor<double>.FromArray(x0, batch, n),
            [Tensor<double>.FromArray(w0, n, 1), Tensor<double>.FromArray(w1, n, 1)],
            [Tensor<double>.FromArray(b0, n), Tensor<double>.FromArray(b1, n)]).ToArray();
        Assert.That(actual, Is.EqualTo(expected).Within(1e-12));
        // Layer 1 of sample 0 by hand: s = 1·0.5 − 2·1 − 0.5 = −2; x1 = x0·(−2) + b0 + x0 = [−0.9, 2.2, −0.2].
        Assert.That(expected[0], Is.Not.EqualTo(x0[0]));
    }
}

public class DnnOutputBiasTests
{
    private static readonly InputField[] Fields = ModelTestData.Fields(4);

    private static ZooModel Dnn(int seed = 3) => new(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 3, Dnn = [5], Seed = seed }, Fields) { Training = false };

    [Test]
    public void The_dnn_model_has_an_output_bias_and_the_others_do_not()
    {
        Assert.That(Dnn().Parameters().Select(p => p.Name), Does.Contain("dnn_out.bias"));
        foreach (var kind in new[] { ModelKind.Wdl, ModelKind.DeepFm, ModelKind.XDeepFm })
            Assert.That(new ZooModel(new ModelConfig { Model = kind, EmbeddingDim = 3, Dnn = [5], Cin = [4] }, Fields).Parameters().Select(p => p.Name),
                Does.Not.Contain("dnn_out.bias"), $"{kind}: the wide bias is the model's bias");
    }

    [Test]
    public void The_bias_is_added_to_the_logit_by_every_face()
    {
        var model = Dnn();
        var bias = model.Parameters().Single(p => p.Name == "dnn_out.bias").Tensor;
        var batch = ModelTestData.Batch(Fields, 9, seed: 4);
        float[] Logits()
        {
            using var tape = Tape<float>.NoGrad();
            return model.Forward(batch).Logits.ToArray();
        }
        float[] Served()
        {
            var o = new float[batch.Size];
            new Predictor(model).Predict(batch.Ids.Span, o);
            return o;
        }
        var before = Logits();
        var servedBefore = Served();
        bias.AsSpan()[0] += 1.5f;
        var after = Logits();
        var servedAfter = Served();
        for (int b = 0; b < batch.Size; b++)
        {
            Assert.That(after[b] - before[b], Is.EqualTo(1.5f).Within(1e-5f), "training forward");
            Assert.That(servedAfter[b] - servedBefore[b], Is.EqualTo(1.5f).Within(1e-5f), "predictor");
        }
    }

    [Test]
    public void An_older_dnn_checkpoint_without_the_bias_loads_with_a_zero_bias()
    {
        var model = Dnn();
        string dir = Path.Combine(Path.GetTempPath(), $"kd-dnnbias-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string path = Path.Combine(dir, "new.kde");
            ModelCheckpoint.Save(path, model);
            // The file as the previous version wrote it: every tensor but dnn_out.bias, the same metadata.
            var content = SafeTensorsFile.Read(path);
            var meta = content.Metadata.Where(kv => !kv.Key.StartsWith("kdengine.", StringComparison.Ordinal)).ToDictionary(kv => kv.Key, kv => kv.Value);
            string old = Path.Combine(dir, "old.kde");
            SafeTensorsFile.Write(old, content.Names.Where(n => n != "dnn_out.bias").Select(content.Get), meta);

            var loaded = ModelCheckpoint.Load(old).Model;
            Assert.That(loaded.Parameters().Single(p => p.Name == "dnn_out.bias").Tensor.ToArray(), Is.EqualTo(new[] { 0f }));
            model.Parameters().Single(p => p.Name == "dnn_out.bias").Tensor.AsSpan().Clear();
            var ids = ModelTestData.Batch(Fields, 6, seed: 2).Ids.ToArray();
            var expected = new float[6];
            var actual = new float[6];
            new Predictor(model).Predict(ids, expected);
            new Predictor(loaded).Predict(ids, actual);
            Assert.That(actual, Is.EqualTo(expected));

            // Any other missing tensor is still an error naming it.
            string broken = Path.Combine(dir, "broken.kde");
            SafeTensorsFile.Write(broken, content.Names.Where(n => n != "dnn_out.weight").Select(content.Get), meta);
            var e = Assert.Throws<CheckpointFormatException>(() => ModelCheckpoint.Load(broken))!;
            Assert.That(e.Message, Does.Contain(broken));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
