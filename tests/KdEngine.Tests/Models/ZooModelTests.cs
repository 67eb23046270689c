using KdEngine.Autograd;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Models;

public class ZooModelTests
{
    private static ModelConfig Small(ModelKind kind) => new()
    {
        Model = kind, EmbeddingDim = 4, Dnn = [8, 6], Cin = [6, 4], CrossLayers = 2, Seed = 3,
    };

    [TestCase(ModelKind.Lr)]
    [TestCase(ModelKind.Fm)]
    [TestCase(ModelKind.Dnn)]
    [TestCase(ModelKind.Wdl)]
    [TestCase(ModelKind.DeepFm)]
    [TestCase(ModelKind.Dcn)]
    [TestCase(ModelKind.XDeepFm)]
    [TestCase(ModelKind.Ffm)]
    [TestCase(ModelKind.DcnV2)]
    public void Every_model_returns_logits_and_learns_a_small_task(ModelKind kind)
    {
        var fields = ModelTestData.Fields(5);
        var model = new ZooModel(Small(kind), fields);
        AssertLearns(model);
    }

    /// <summary>60 Adam steps on a small learnable batch: logits [64, 1], and the loss falls by 20 %.</summary>
    internal static void AssertLearns(ZooModel model)
    {
        var batch = ModelTestData.Batch(model.Fields.ToArray(), 64, seed: 1);
        var objective = new SupervisedObjective(model);
        var optimizer = new Adam(model.Parameters().Select(p => p.Tensor).ToList(), learningRate: 0.05f);
        float first = 0, last = 0;
        using var tape = new Tape<float>();
        for (int step = 0; step < 60; step++)
        {
            tape.Reset();
            var loss = objective.Loss(batch, step, null);
            if (step == 0)
            {
                var logits = model.Forward(batch).Logits;
                Assert.That(logits.Shape.ToArray(), Is.EqualTo(new[] { 64, 1 }));
                first = loss.Item();
            }
            last = loss.Item();
            tape.Backward(loss);
            optimizer.Step();
        }
        Assert.That(last, Is.LessThan(first * 0.8f), $"{model.TypeName}: loss {first} → {last}");
    }

    [Test]
    public void Parameter_names_follow_the_documented_pytorch_style()
    {
        var fields = ModelTestData.Fields(3);
        var names = new ZooModel(Small(ModelKind.XDeepFm), fields).Parameters().Select(p => p.Name).ToList();
        Assert.That(names, Does.Contain("linear.f0.weight"));
        Assert.That(names, Does.Contain("linear.bias"));
        Assert.That(names, Does.Contain("embedding.f2.weight"));
        Assert.That(names, Does.Contain("dnn.0.weight"));
        Assert.That(names, Does.Contain("dnn.1.bias"));
        Assert.That(names, Does.Contain("dnn_out.weight"));
        Assert.That(names, Does.Contain("cin.0.weight"));
        Assert.That(names, Does.Contain("cin_out.weight"));
        var model = new ZooModel(Small(ModelKind.XDeepFm), fields);
        var w = model.Parameters().Single(p => p.Name == "cin.1.weight").Tensor;
        // split-half: layer 0 has 6 maps, 3 go on; layer 1 weight is [4, 3·F].
        Assert.That(w.Shape.ToArray(), Is.EqualTo(new[] { 4, 3 * 3 }));
        Assert.That(model.Parameters().Single(p => p.Name == "dnn.0.weight").Tensor.Shape.ToArray(), Is.EqualTo(new[] { 8, 3 * 4 }));
    }

    [Test]
    public void Hidden_representations_are_exposed_by_name()
    {
        var fields = ModelTestData.Fields(4);
        var model = new ZooModel(Small(ModelKind.XDeepFm), fields);
        using var tape = Tape<float>.NoGrad();
        var output = model.Forward(ModelTestData.Batch(fields, 5, 2));
        Assert.That(output.Hidden["embedding"].Shape.ToArray(), Is.EqualTo(new[] { 5, 16 }));
        Assert.That(output.Hidden["dnn.0"].Shape.ToArray(), Is.EqualTo(new[] { 5, 8 }));
        Assert.That(output.Hidden["dnn.1"].Shape.ToArray(), Is.EqualTo(new[] { 5, 6 }));
        Assert.That(output.Hidden["cin.0"].Shape.ToArray(), Is.EqualTo(new[] { 5, 6, 4 }));
        Assert.That(output.Hidden["cin.pooled"].Shape.ToArray(), Is.EqualTo(new[] { 5, 3 + 4 }));
    }

    [Test]
    public void Config_rejects_a_misspelt_key_naming_it()
    {
        var e = Assert.Throws<ConfigException>(() => ModelConfig.FromJson("""{"model":"xdeepfm","cin_layer_units":[10]}""", "teacher.json"));
        Assert.That(e!.Message, Does.Contain("teacher.json").And.Contain("cin_layer_units"));
    }

    [Test]
    public void Config_rejects_bad_values_naming_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => ModelConfig.FromJson("""{"model":"dnn","dnn":[400,-3]}"""));
        Assert.That(e!.Message, Does.Contain("dnn[1]"));
        e = Assert.Throws<ConfigException>(() => ModelConfig.FromJson("""{"model":"xdeepfm","cin":[5,4],"cinSplitHalf":true}"""));
        Assert.That(e!.Message, Does.Contain("cin[0]"));
        e = Assert.Throws<ConfigException>(() => ModelConfig.FromJson("""{"model":"deepcrossing"}"""));
        Assert.That(e!.Message, Does.Contain("model"));
    }

    [Test]
    public void Config_json_round_trips()
    {
        var config = Small(ModelKind.Dcn) with { Dropout = 0.25f };
        Assert.That(ModelConfig.FromJson(config.ToJson()).ToJson(), Is.EqualTo(config.ToJson()));
    }

    [Test]
    public void Fm_term_matches_the_pairwise_definition()
    {
        // ½·Σ_d[(Σ_f x)² − Σ_f x²] = Σ_{f<g} <x_f, x_g>.
        var x = new float[2 * 3 * 2] { 1, 2, 3, 4, 5, 6, -1, 0.5f, 2, -2, 0, 1 };
        using var tape = Tape<float>.NoGrad();
        var z = KdEngine.Nn.FmInteraction.Forward(Op.Constant<float>(x, new KdEngine.Tensors.Shape(2, 3, 2))).ToArray();
        float Pair(int b, int f, int g) => x[b * 6 + f * 2] * x[b * 6 + g * 2] + x[b * 6 + f * 2 + 1] * x[b * 6 + g * 2 + 1];
        for (int b = 0; b < 2; b++)
            Assert.That(z[b], Is.EqualTo(Pair(b, 0, 1) + Pair(b, 0, 2) + Pair(b, 1, 2)).Within(1e-5));
    }
}

public class MixedFieldTests
{
    [Test]
    public void Multi_valued_and_value_scaled_fields_feed_every_part_and_train()
    {
        // Fields: two single-valued (the second scaled by a dense value) and one multi-valued bag (mean pooling).
        InputField[] fields =
        [
            new("a", 5),
            new("b", 4) { ScaleByValue = true },
            new("tags", 7) { IsMultiValued = true, Pooling = KdEngine.Ops.PoolingMode.Mean },
        ];
        int[] columns = [0, 1, 0]; // tags reads bag column 0
        var rng = new Random(5);
        const int n = 48;
        var ids = new int[n * 2];
        var dense = new float[n * 2];
        var offsets = new int[n + 1];
        var bagIds = new List<int>();
        var labels = new float[n];
        for (int b = 0; b < n; b++)
        {
            ids[b * 2] = rng.Next(5); ids[b * 2 + 1] = rng.Next(4);
            dense[b * 2] = 1; dense[b * 2 + 1] = (float)rng.NextDouble() * 2;
            int count = rng.Next(4); // 0..3 tags, empty bags included
            bool hot = false;
            for (int t = 0; t < count; t++) { int tag = rng.Next(7); hot |= tag == 3; bagIds.Add(tag); }
            offsets[b + 1] = bagIds.Count;
            labels[b] = hot ? 1 : 0;
        }
        var batch = new CtrBatch(n, 2, ids, labels) { DenseValues = dense, Bags = [new BagColumn(offsets, bagIds.ToArray())] };
        var model = new ZooModel(new ModelConfig { Model = ModelKind.XDeepFm, EmbeddingDim = 3, Dnn = [8], Cin = [4, 2], Seed = 2 }, fields, columns);
        using (var probe = Tape<float>.NoGrad())
        {
            var x0 = model.Forward(batch).Hidden["embedding"];
            Assert.That(x0.Shape.ToArray(), Is.EqualTo(new[] { n, 3 * 3 }));
        }
        var optimizer = new Adam(model.Parameters().Select(p => p.Tensor), learningRate: 0.05f);
        var objective = new SupervisedObjective(model);
        float first = 0, last = 0;
        using var tape = new Tape<float>();
        for (int step = 0; step < 80; step++)
        {
            tape.Reset();
            var loss = objective.Loss(batch, step, null);
            if (step == 0) first = loss.Item();
            last = loss.Item();
            tape.Backward(loss);
            optimizer.Step();
        }
        Assert.That(last, Is.LessThan(first * 0.7f), $"loss {first} → {last}: the bag field carries the label");
        var tags = model.Parameters().Single(p => p.Name == "embedding.tags.weight").Tensor;
        Assert.That(tags.HasSparseGradient, Is.True);
    }
}

public class MixedFieldCheckpointTests
{
    [Test]
    public void A_checkpoint_keeps_multi_valued_and_scaled_fields_and_predicts_identically()
    {
        InputField[] fields =
        [
            new("a", 5),
            new("b", 4) { ScaleByValue = true },
            new("tags", 7) { IsMultiValued = true, Pooling = KdEngine.Ops.PoolingMode.Mean },
        ];
        var model = new ZooModel(new ModelConfig { Model = ModelKind.DeepFm, EmbeddingDim = 3, Dnn = [5], Seed = 9 }, fields, [0, 1, 0]);
        var batch = new CtrBatch(3, 2, new[] { 1, 2, 0, 3, 4, 1 }, new float[] { 1, 0, 1 })
        {
            DenseValues = new float[] { 1, 0.5f, 1, 2f, 1, -1f },
            Bags = [new BagColumn(new[] { 0, 2, 2, 5 }, new[] { 1, 6, 0, 3, 3 })],
        };
        model.Training = false;
        float[] before;
        using (Tape<float>.NoGrad()) before = model.Forward(batch).Logits.ToArray();
        string path = Path.Combine(Path.GetTempPath(), $"kd-mixed-{Guid.NewGuid():N}.kde");
        try
        {
            KdEngine.Serving.ModelCheckpoint.Save(path, model);
            var loaded = KdEngine.Serving.ModelCheckpoint.Load(path).Model;
            Assert.That(loaded.Fields, Is.EqualTo(fields));
            using (Tape<float>.NoGrad()) Assert.That(loaded.Forward(batch).Logits.ToArray(), Is.EqualTo(before));
        }
        finally { File.Delete(path); }
    }
}
