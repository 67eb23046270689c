using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Models;
using KdEngine.Models.Parts;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;
using KdEngine.Training;
using NUnit.Framework;
using static KdEngine.Tests.Autograd.GradCheckTests;

namespace KdEngine.Tests.Models;

/// <summary>FFM's fused pair op and DCN-V2's cross layers: double-precision gradient checks at odd sizes and values
/// against their definitions.</summary>
public class FfmAndDcnV2Tests
{
    // ---------- FFM ----------

    /// <summary>Σ_{f&lt;g} ⟨v_{f,g}, v_{g,f}⟩ straight from the definition, with v_{f,g} at slot (g &lt; f ? g : g − 1).</summary>
    private static double[] FfmByDefinition(double[] x, int batch, int fields, int dim)
    {
        int row = (fields - 1) * dim;
        var z = new double[batch];
        double V(int b, int f, int g, int d) => x[b * fields * row + f * row + (g < f ? g : g - 1) * dim + d];
        for (int b = 0; b < batch; b++)
            for (int f = 0; f < fields; f++)
                for (int g = f + 1; g < fields; g++)
                    for (int d = 0; d < dim; d++) z[b] += V(b, f, g, d) * V(b, g, f, d);
        return z;
    }

    [TestCase(1, 2, 1)]
    [TestCase(3, 5, 7)]
    [TestCase(2, 7, 17)]
    [TestCase(4, 3, 1)]
    public void FieldAwarePairs_gradcheck(int batch, int fields, int dim)
    {
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.FieldAwarePairs(x[0], dim);
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(batch * fields * (fields - 1) * dim, 61)], [new Shape(batch, fields, (fields - 1) * dim)]));
    }

    [TestCase(3, 4, 3)]
    [TestCase(2, 6, 5)]
    public void FieldAwarePairs_values_follow_the_definition(int batch, int fields, int dim)
    {
        var x = Random(batch * fields * (fields - 1) * dim, 62);
        using var tape = Tape<double>.NoGrad();
        var z = Op.FieldAwarePairs(Tensor<double>.FromArray(x, batch, fields, (fields - 1) * dim), dim).ToArray();
        Assert.That(z, Is.EqualTo(FfmByDefinition(x, batch, fields, dim)).Within(1e-12));
    }

    [Test]
    public void FieldAwarePairs_rejects_a_wrong_width_naming_the_shape()
    {
        var e = Assert.Throws<ArgumentException>(() => Op.FieldAwarePairs(Tensor<float>.Zeros(2, 3, 7), 3))!;
        Assert.That(e.Message, Does.Contain("[B, F ≥ 2, (F − 1)·D]").And.Contain("[2, 3, 7]"));
    }

    [Test]
    public void The_ffm_model_is_wide_plus_the_pairs_of_its_own_field_aware_tables()
    {
        var fields = ModelTestData.Fields(4);
        var model = new ZooModel(new ModelConfig { Model = ModelKind.Ffm, EmbeddingDim = 3, EmbeddingInitStd = 0.3f, Seed = 2 }, fields) { Training = false };
        Assert.That(model.Embedding, Is.Null, "FFM reads its own tables, not shared x0");
        var p = model.Parameters().ToDictionary(x => x.Name, x => x.Tensor);
        Assert.That(p["ffm.f2.weight"].Shape.ToArray(), Is.EqualTo(new[] { fields[2].Cardinality, 3 * 3 }));
        foreach (var w in p.Where(kv => kv.Key.StartsWith("linear.", StringComparison.Ordinal))) w.Value.AsSpan().Fill(0.25f);
        var batch = ModelTestData.Batch(fields, 5, seed: 3);
        float[] logits;
        using (Tape<float>.NoGrad()) logits = model.Forward(batch).Logits.ToArray();
        var ids = batch.Ids.Span;
        for (int b = 0; b < 5; b++)
        {
            // Gather each field's row by hand and apply the definition; + wide 4 × 0.25 + bias 0.25.
            var x = new double[4 * 3 * 3];
            for (int f = 0; f < 4; f++)
            {
                var table = p[$"ffm.f{f}.weight"].AsSpan();
                for (int k = 0; k < 9; k++) x[f * 9 + k] = table[ids[b * 4 + f] * 9 + k];
            }
            Assert.That(logits[b], Is.EqualTo(FfmByDefinition(x, 1, 4, 3)[0] + 1.25).Within(1e-5), $"sample {b}");
        }
        Assert.Throws<ConfigException>(() => new ZooModel(new ModelConfig { Model = ModelKind.Ffm }, ModelTestData.Fields(1)));
    }

    [TestCase(1, 2, 1)]
    [TestCase(3, 5, 7)]
    [TestCase(2, 7, 17)]
    public void Normalised_pairs_gradcheck(int batch, int fields, int dim)
    {
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => FfmPart.Pairs(x[0], dim, normalize: true);
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(batch * fields * (fields - 1) * dim, 63)], [new Shape(batch, fields, (fields - 1) * dim)]));
    }

    [Test]
    public void A_normalised_ffm_divides_its_pairs_by_the_field_count()
    {
        var fields = ModelTestData.Fields(5);
        ZooModel Build(bool normalize) => new(new ModelConfig { Model = ModelKind.Ffm, EmbeddingDim = 3, EmbeddingInitStd = 0.3f, FfmNormalize = normalize, Seed = 2 }, fields) { Training = false };
        var plain = Build(false);
        var normalised = Build(true);
        var p = normalised.Parameters().ToDictionary(x => x.Name, x => x.Tensor);
        foreach (var w in p.Where(kv => kv.Key.StartsWith("linear.", StringComparison.Ordinal))) w.Value.AsSpan().Fill(0.25f);
        foreach (var w in plain.Parameters().Where(x => x.Name.StartsWith("linear.", StringComparison.Ordinal))) w.Tensor.AsSpan().Fill(0.25f);
        Assert.That(plain.Parameters().Select(x => x.Tensor.ToArray()), Is.EqualTo(p.Values.Select(x => x.ToArray())), "same seed, same weights");
        var batch = ModelTestData.Batch(fields, 7, seed: 4);
        float[] a, b;
        using (Tape<float>.NoGrad()) { a = plain.Forward(batch).Logits.ToArray(); b = normalised.Forward(batch).Logits.ToArray(); }
        for (int i = 0; i < 7; i++)
            Assert.That(b[i], Is.EqualTo((a[i] - 1.5) / 5 + 1.5).Within(1e-5), $"sample {i}: wide 5 × 0.25 + bias 0.25 stays, the pairs ÷ 5");
        Assert.That(a.Select(x => Math.Abs(x - 1.5)).Max(), Is.GreaterThan(0.05), "the test needs non-trivial pairs");
        Assert.That(ModelConfig.FromJson("""{"model": "ffm", "ffmNormalize": true, "ffmInit": "uniform"}""").FfmInit, Is.EqualTo(FfmInit.Uniform));
        Assert.That(new ModelConfig { Model = ModelKind.Ffm }.ToJson(), Does.Not.Contain("ffmNormalize").And.Not.Contain("ffmInit"), "the defaults leave a config's JSON as it was");
    }

    [Test]
    public void Normalising_refuses_fields_that_are_not_one_hot_naming_the_field()
    {
        var fields = ModelTestData.Fields(3).Select((f, i) => i == 1 ? f with { ScaleByValue = true } : f).ToArray();
        var e = Assert.Throws<ConfigException>(() => new ZooModel(new ModelConfig { Model = ModelKind.Ffm, FfmNormalize = true }, fields))!;
        Assert.That(e.Message, Does.Contain("ffmNormalize").And.Contain($"'{fields[1].Name}'"));
        Assert.DoesNotThrow(() => new ZooModel(new ModelConfig { Model = ModelKind.Ffm }, fields));
    }

    [TestCase(1)]
    [TestCase(4)]
    [TestCase(7)]
    public void The_uniform_init_draws_in_zero_to_one_over_root_d_reproducibly(int dim)
    {
        var fields = ModelTestData.Fields(4);
        float[] Vectors(int seed) => new ZooModel(new ModelConfig { Model = ModelKind.Ffm, EmbeddingDim = dim, FfmInit = FfmInit.Uniform, Seed = seed }, fields)
            .Parameters().Where(x => x.Name.StartsWith("ffm.", StringComparison.Ordinal)).SelectMany(x => x.Tensor.ToArray()).ToArray();
        var v = Vectors(3);
        float bound = 1f / MathF.Sqrt(dim);
        Assert.That(v.Min(), Is.GreaterThanOrEqualTo(0f));
        Assert.That(v.Max(), Is.LessThan(bound));
        Assert.That(v.Average(), Is.EqualTo(bound / 2).Within(bound * 0.1), "uniform: the mean is half the bound");
        Assert.That(Vectors(3), Is.EqualTo(v), "same seed, same vectors");
        Assert.That(Vectors(4), Is.Not.EqualTo(v));
    }

    [Test]
    public void The_uniform_init_radius_replaces_one_over_root_d_and_is_validated()
    {
        var fields = ModelTestData.Fields(4);
        float[] Vectors(float radius) => new ZooModel(new ModelConfig { Model = ModelKind.Ffm, EmbeddingDim = 8, FfmInit = FfmInit.Uniform, FfmInitRadius = radius, Seed = 3 }, fields)
            .Parameters().Where(x => x.Name.StartsWith("ffm.", StringComparison.Ordinal)).SelectMany(x => x.Tensor.ToArray()).ToArray();
        var libffm = Vectors(0f);   // r = 1/√8
        var mlnet = Vectors(0.5f);  // ML.NET's Radius
        Assert.That(mlnet.Max(), Is.LessThan(0.5f).And.GreaterThan(1f / MathF.Sqrt(8)), "draws reach past 1/√8 but stay below r");
        float ratio = 0.5f * MathF.Sqrt(8);
        for (int i = 0; i < libffm.Length; i++)
            Assert.That(mlnet[i], Is.EqualTo(libffm[i] * ratio).Within(1e-6), $"element {i}: the same draws, scaled by r·√D");
        var config = ModelConfig.FromJson("""{"model": "ffm", "embeddingDim": 8, "ffmInit": "uniform", "ffmInitRadius": 0.5}""");
        Assert.That(config.FfmInitRadius, Is.EqualTo(0.5f));
        Assert.That(ModelConfig.FromJson(config.ToJson()).ToJson(), Is.EqualTo(config.ToJson()).And.Contain("\"ffmInitRadius\":0.5"), "round trip");
        Assert.That(new ModelConfig { Model = ModelKind.Ffm, FfmInit = FfmInit.Uniform }.ToJson(), Does.Not.Contain("ffmInitRadius"), "0 is not written");
        var normal = Assert.Throws<ConfigException>(() => ModelConfig.FromJson("""{"model": "ffm", "ffmInitRadius": 0.5}""", "c.json"))!;
        Assert.That(normal.Message, Does.Contain("c.json").And.Contain("ffmInitRadius").And.Contain("uniform"));
        var negative = Assert.Throws<ConfigException>(() => ModelConfig.FromJson("""{"model": "ffm", "ffmInit": "uniform", "ffmInitRadius": -1}""", "c.json"))!;
        Assert.That(negative.Message, Does.Contain("ffmInitRadius = -1"));
    }

    // ---------- DCN-V2 ----------

    /// <summary>Inputs x0 [B, n] then per layer, depending on the form: W [n, n]; or per expert U, V [n, r]; the gate
    /// [K, n] for K &gt; 1; the bias [n].</summary>
    private static (double[][] Inputs, Shape[] Shapes) CrossInputs(int batch, int n, int layers, int rank, int experts, int seed)
    {
        var inputs = new List<double[]> { Random(batch * n, seed) };
        var shapes = new List<Shape> { new(batch, n) };
        void Add(int count, Shape shape) { inputs.Add(Random(count, seed + inputs.Count, -0.8, 0.8)); shapes.Add(shape); }
        for (int l = 0; l < layers; l++)
        {
            if (rank == 0) Add(n * n, new Shape(n, n));
            else
            {
                for (int i = 0; i < experts; i++) { Add(n * rank, new Shape(n, rank)); Add(n * rank, new Shape(n, rank)); }
                if (experts > 1) Add(experts * n, new Shape(experts, n));
            }
            Add(n, new Shape(n));
        }
        return (inputs.ToArray(), shapes.ToArray());
    }

    private static CrossV2Layer<T>[] Layers<T>(Tensor<T>[] x, int layers, int rank, int experts) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int at = 1;
        var result = new CrossV2Layer<T>[layers];
        for (int l = 0; l < layers; l++)
        {
            if (rank == 0) { var w = x[at++]; result[l] = new CrossV2Layer<T>(w, [], [], null, x[at++]); continue; }
            var u = new Tensor<T>[experts];
            var v = new Tensor<T>[experts];
            for (int i = 0; i < experts; i++) { u[i] = x[at++]; v[i] = x[at++]; }
            var gate = experts > 1 ? x[at++] : null;
            result[l] = new CrossV2Layer<T>(null, u, v, gate, x[at++]);
        }
        return result;
    }

    [TestCase(1, 1, 1, 0, 1)]   // B, n, layers, rank, experts
    [TestCase(3, 7, 2, 0, 1)]   // full rank
    [TestCase(2, 17, 2, 3, 1)]  // low rank
    [TestCase(3, 9, 2, 2, 3)]   // mixture of low-rank experts
    [TestCase(1, 5, 1, 1, 2)]
    public void CrossNetworkV2_gradcheck(int batch, int n, int layers, int rank, int experts)
    {
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => CrossNetworkV2.Apply(x[0], Layers(x, layers, rank, experts));
        var (inputs, shapes) = CrossInputs(batch, n, layers, rank, experts, 70);
        AssertPasses(GradCheck.Run(F<double>, F<float>, inputs, shapes));
    }

    private static double[] Apply(double[][] inputs, Shape[] shapes, int batch, int n, int layers, int rank, int experts)
    {
        using var tape = Tape<double>.NoGrad();
        var x = inputs.Select((v, i) => Tensor<double>.FromArray(v, shapes[i])).ToArray();
        return CrossNetworkV2.Apply(x[0], Layers(x, layers, rank, experts)).ToArray();
    }

    [Test]
    public void Full_rank_cross_layers_follow_the_formula()
    {
        // x_{l+1} = x0 ∘ (W_l·x_l + b_l) + x_l, by hand.
        const int batch = 2, n = 3, layers = 2;
        var (inputs, shapes) = CrossInputs(batch, n, layers, 0, 1, 80);
        var expected = new double[batch * n];
        for (int b = 0; b < batch; b++)
        {
            var x0 = inputs[0].AsSpan(b * n, n).ToArray();
            var x = x0.ToArray();
            for (int l = 0; l < layers; l++)
            {
                double[] w = inputs[1 + 2 * l], bias = inputs[2 + 2 * l];
                var next = new double[n];
                for (int i = 0; i < n; i++)
                {
                    double wx = 0;
                    for (int j = 0; j < n; j++) wx += w[i * n + j] * x[j];
                    next[i] = x0[i] * (wx + bias[i]) + x[i];
                }
                x = next;
            }
            x.CopyTo(expected, b * n);
        }
        Assert.That(Apply(inputs, shapes, batch, n, layers, 0, 1), Is.EqualTo(expected).Within(1e-12));
    }

    [Test]
    public void A_low_rank_layer_is_the_full_rank_layer_with_W_equal_U_times_V_transposed()
    {
        const int batch = 3, n = 5, r = 2;
        var (low, lowShapes) = CrossInputs(batch, n, 1, r, 1, 90);
        // W = U·Vᵀ [n, n] from the low-rank inputs (x0, U, V, bias).
        double[] u = low[1], v = low[2];
        var w = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                for (int k = 0; k < r; k++) w[i * n + j] += u[i * r + k] * v[j * r + k];
        double[][] full = [low[0], w, low[3]];
        Shape[] fullShapes = [lowShapes[0], new Shape(n, n), lowShapes[3]];
        Assert.That(Apply(low, lowShapes, batch, n, 1, r, 1), Is.EqualTo(Apply(full, fullShapes, batch, n, 1, 0, 1)).Within(1e-12));
    }

    [Test]
    public void A_mixture_of_identical_experts_is_that_expert_whatever_the_gate()
    {
        const int batch = 3, n = 6, r = 2, k = 3;
        var (mix, mixShapes) = CrossInputs(batch, n, 1, r, k, 100);
        for (int i = 1; i < k; i++) { mix[1 + 2 * i] = mix[1]; mix[2 + 2 * i] = mix[2]; } // every expert = expert 0; the gate stays random
        double[][] one = [mix[0], mix[1], mix[2], mix[^1]];
        Shape[] oneShapes = [mixShapes[0], mixShapes[1], mixShapes[2], mixShapes[^1]];
        Assert.That(Apply(mix, mixShapes, batch, n, 1, r, k), Is.EqualTo(Apply(one, oneShapes, batch, n, 1, r, 1)).Within(1e-12));
        // …and with distinct experts the gate matters: a different gate gives a different output.
        var (distinct, shapes) = CrossInputs(batch, n, 1, r, k, 100);
        var other = distinct.Select(a => a.ToArray()).ToArray();
        other[1 + 2 * k] = other[1 + 2 * k].Select(g => -g).ToArray();
        Assert.That(Apply(other, shapes, batch, n, 1, r, k), Is.Not.EqualTo(Apply(distinct, shapes, batch, n, 1, r, k)));
    }

    [Test]
    public void Dcn_v2_configs_are_validated_naming_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => ModelConfig.FromJson("""{"model":"dcnv2","crossExperts":3}"""))!;
        Assert.That(e.Message, Does.Contain("crossExperts").And.Contain("crossRank"));
        e = Assert.Throws<ConfigException>(() => ModelConfig.FromJson("""{"model":"dcnv2","crossRank":-1}"""))!;
        Assert.That(e.Message, Does.Contain("crossRank"));
        e = Assert.Throws<ConfigException>(() => ModelConfig.FromJson("""{"model":"dcnv2","crossStructure":"sideways"}"""))!;
        Assert.That(e.Message, Does.Contain("crossStructure").Or.Contain("sideways"));
        Assert.That(ModelConfig.FromJson("""{"model":"dcnv2","crossRank":4,"crossExperts":2,"crossStructure":"stacked"}""").CrossStructure, Is.EqualTo(CrossStructure.Stacked));
        var fields = ModelTestData.Fields(2);
        Assert.Throws<ConfigException>(() => new ZooModel(new ModelConfig { Model = ModelKind.DcnV2, EmbeddingDim = 2, CrossRank = 5 }, fields)); // rank > F·D = 4
    }

    private static IEnumerable<TestCaseData> DcnV2Variants() =>
        from rank in new[] { 0, 3 } from experts in rank == 0 ? new[] { 1 } : new[] { 1, 3 } from stacked in new[] { false, true }
        select new TestCaseData(rank, experts, stacked);

    [TestCaseSource(nameof(DcnV2Variants))]
    public void Every_dcn_v2_form_counts_its_parameters_and_learns(int rank, int experts, bool stacked)
    {
        var fields = ModelTestData.Fields(5);
        var config = new ModelConfig
        {
            Model = ModelKind.DcnV2, EmbeddingDim = 4, Dnn = [8, 6], CrossLayers = 2, CrossRank = rank, CrossExperts = experts,
            CrossStructure = stacked ? CrossStructure.Stacked : CrossStructure.Parallel, Seed = 7,
        };
        var model = new ZooModel(config, fields);
        Assert.That(ZooModel.ParameterCount(config, fields), Is.EqualTo(model.ParameterCount()));
        Assert.That(model.Parts.Any(p => p.IsInteractionLayer), Is.True);
        ZooModelTests.AssertLearns(model);
    }

    [Test]
    public void The_ffm_parameter_count_matches_the_built_model()
    {
        var fields = ModelTestData.Fields(6);
        var config = new ModelConfig { Model = ModelKind.Ffm, EmbeddingDim = 3 };
        Assert.That(ZooModel.ParameterCount(config, fields), Is.EqualTo(new ZooModel(config, fields).ParameterCount()));
    }
}

public class KdExperimentConfigTests
{
    [Test]
    public void Experiment_options_read_new_teachers_and_their_training_from_strict_json()
    {
        var o = KdEngine.Experiments.KdExperimentOptions.FromJson("""
            {"teacher": {"model": "ffm", "embeddingDim": 4},
             "ensembleTeachers": [{"model": "dcnv2", "crossRank": 8, "crossExperts": 2}, {"model": "xdeepfm"}],
             "teacherTraining": {"optimizer": "adagrad", "learningRate": 0.05, "l2Embedding": 1e-5},
             "methods": ["logits", "ensemble"]}
            """);
        Assert.That(o.Teacher.Model, Is.EqualTo(ModelKind.Ffm));
        Assert.That(o.EnsembleTeachers[0].CrossExperts, Is.EqualTo(2));
        Assert.That(o.TeacherTraining!.Optimizer, Is.EqualTo(KdEngine.Pipelines.OptimizerKind.Adagrad));
        Assert.That(o.Student.Model, Is.EqualTo(ModelKind.Dnn), "keys left out keep their defaults");
        var e = Assert.Throws<ConfigException>(() => KdEngine.Experiments.KdExperimentOptions.FromJson("""{"teachr": {}}""", "kd.json"))!;
        Assert.That(e.Message, Does.Contain("kd.json").And.Contain("teachr"));
        e = Assert.Throws<ConfigException>(() => KdEngine.Experiments.KdExperimentOptions.FromJson("""{"ensembleTeacherTraining": [{}, {}, {}]}""", "kd.json"))!;
        Assert.That(e.Message, Does.Contain("ensembleTeacherTraining").And.Contain("3 entries"));
        e = Assert.Throws<ConfigException>(() => KdEngine.Experiments.KdExperimentOptions.FromJson("""{"teacher": {"model": "dcnv2", "crossExperts": 2}}""", "kd.json"))!;
        Assert.That(e.Message, Does.Contain("teacher").And.Contain("crossExperts"));
    }

    [Test]
    public void Ensemble_stopping_rule_defaults_to_the_students_auc_and_reads_the_kd_term_from_json()
    {
        Assert.That(new KdEngine.Experiments.KdExperimentOptions().EnsembleStopping, Is.EqualTo(StoppingMetric.Auc));
        var o = KdEngine.Experiments.KdExperimentOptions.FromJson("""{"ensembleStopping": "distillationLoss"}""");
        Assert.That(o.EnsembleStopping, Is.EqualTo(StoppingMetric.DistillationLoss));
        var e = Assert.Throws<ConfigException>(() => KdEngine.Experiments.KdExperimentOptions.FromJson("""{"ensembleStopping": "objectiveLoss"}""", "kd.json"))!;
        Assert.That(e.Message, Does.Contain("kd.json").And.Contain("ensembleStopping"));
    }
}
