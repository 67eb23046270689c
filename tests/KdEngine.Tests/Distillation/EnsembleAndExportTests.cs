using KdEngine.Autograd;
using KdEngine.Distillation;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Serving;
using KdEngine.Tensors;
using KdEngine.Tests.Autograd;
using KdEngine.Tests.Models;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Distillation;

public class EnsembleAndExportTests
{
    private static Tensor<T> GateLoss<T>(Tensor<T>[] x) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        // inputs: v0 [B,2], v1 [B,1], v2 [B,3]; weights w_i [1, |v_i|]; biases b_i [1]; logits z_i [B,1].
        var (alpha, logit) = TeacherGate.Combine<T>([x[0], x[1], x[2]], [x[3], x[4], x[5]], [x[6], x[7], x[8]], [x[9], x[10], x[11]]);
        return KdEngine.Ops.Op.Add(KdEngine.Ops.Op.Sum(logit), KdEngine.Ops.Op.Sum(KdEngine.Ops.Op.Mul(alpha, alpha)));
    }

    [Test]
    public void Gate_passes_a_gradient_check()
    {
        const int b = 7;
        int[] widths = [2, 1, 3];
        var inputs = new List<double[]>();
        var shapes = new List<Shape>();
        int seed = 20;
        foreach (int w in widths) { inputs.Add(GradCheckTests.Random(b * w, seed++)); shapes.Add(new Shape(b, w)); }
        foreach (int w in widths) { inputs.Add(GradCheckTests.Random(w, seed++)); shapes.Add(new Shape(1, w)); }
        foreach (int _ in widths) { inputs.Add(GradCheckTests.Random(1, seed++)); shapes.Add(new Shape(1)); }
        foreach (int _ in widths) { inputs.Add(GradCheckTests.Random(b, seed++, -3, 3)); shapes.Add(new Shape(b, 1)); }
        GradCheckTests.AssertPasses(GradCheck.Run(GateLoss<double>, GateLoss<float>, inputs.ToArray(), shapes.ToArray()));
    }

    private static (CtrBatch Batch, float[] Informative, float[] Noise) TeacherLogits(int n, int seed)
    {
        var fields = ModelTestData.Fields(3);
        var batch = ModelTestData.Batch(fields, n, seed);
        var rng = new Random(seed + 1);
        var labels = batch.Labels.Span;
        var informative = new float[n];
        var noise = new float[n];
        for (int i = 0; i < n; i++)
        {
            informative[i] = (labels[i] * 2 - 1) * 2.5f + (float)(rng.NextDouble() - 0.5);
            noise[i] = (float)(rng.NextDouble() * 6 - 3);
        }
        return (batch, informative, noise);
    }

    [Test]
    public void Gate_weights_sum_to_one_and_move_to_the_informative_teacher()
    {
        var (batch, informative, noise) = TeacherLogits(256, 3);
        var student = new ZooModel(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 3, Dnn = [6], Seed = 4 }, ModelTestData.Fields(3));
        var objective = new EnsembleObjective(student, [new CachedTeacher(noise), new CachedTeacher(informative)], EnsembleMode.TwoStage,
            alpha: 0.5f, temperature: 1f, gateHiddenLayers: null, hints: [], hintWeight: 0f, seed: 7);
        var before = objective.GateWeights(batch);
        var optimizer = new Adam(objective.Trainable.Parameters().Select(p => p.Tensor), learningRate: 0.05f);
        using (var tape = new Tape<float>())
        {
            for (int step = 0; step < 150; step++)
            {
                tape.Reset();
                tape.Backward(objective.Loss(batch, step, null));
                optimizer.Step();
            }
        }
        var weights = objective.GateWeights(batch);
        for (int i = 0; i < batch.Size; i++)
            Assert.That(weights[2 * i] + weights[2 * i + 1], Is.EqualTo(1f).Within(1e-5f), $"row {i}");
        double meanBefore = Enumerable.Range(0, batch.Size).Average(i => before[2 * i + 1]);
        double meanAfter = Enumerable.Range(0, batch.Size).Average(i => weights[2 * i + 1]);
        Assert.That(meanAfter, Is.GreaterThan(0.8), $"weight on the informative teacher: {meanBefore:F3} → {meanAfter:F3}");
    }

    [Test]
    public void Joint_mode_trains_teachers_gate_and_student_together()
    {
        var fields = ModelTestData.Fields(4);
        var batch = ModelTestData.Batch(fields, 64, 8);
        var student = new ZooModel(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 3, Dnn = [6], Seed = 1 }, fields);
        var t1 = new ZooModel(new ModelConfig { Model = ModelKind.XDeepFm, EmbeddingDim = 3, Dnn = [8], Cin = [4, 2], Seed = 2 }, fields);
        var t2 = new ZooModel(new ModelConfig { Model = ModelKind.Dcn, EmbeddingDim = 3, Dnn = [8], Seed = 3 }, fields);
        var hints = new[] { TeacherStudentObjective.BuildHints(student, t1, [("dnn.0", "dnn.0")], 1)[0], TeacherStudentObjective.BuildHints(student, t2, [("dnn.0", "dnn.0")], 2)[0] };
        var objective = new EnsembleObjective(student, [new ModelTeacher(t1), new ModelTeacher(t2)], EnsembleMode.Joint,
            alpha: 0.5f, temperature: 2f, gateHiddenLayers: ["dnn.0", "dnn.0"], hints, hintWeight: 0.1f, seed: 5);
        var names = objective.Trainable.Parameters().Select(p => p.Name).ToList();
        Assert.That(names.Any(n => n.StartsWith("teacher0.", StringComparison.Ordinal)), Is.True);
        Assert.That(names.Any(n => n.StartsWith("gate.", StringComparison.Ordinal)), Is.True);
        var terms = new Dictionary<string, float>();
        objective.Trainable.ZeroGrad();
        using var tape = new Tape<float>();
        tape.Backward(objective.Loss(batch, 0, terms));
        Assert.That(terms.Keys, Is.SupersetOf(new[] { "bce_teacher0", "bce_teacher1", "bce_ensemble", "bce", "kd", "hint0", "hint1" }));
        foreach (var p in objective.Trainable.Parameters().Where(p => p.Name.Contains("dnn.0.weight", StringComparison.Ordinal) || p.Name.StartsWith("gate.", StringComparison.Ordinal)))
            Assert.That(p.Tensor.Grad!.ToArray().Any(v => v != 0), Is.True, $"{p.Name} received no gradient");
    }

    [Test]
    public void Exported_light_net_holds_no_booster_parameter_and_predicts_exactly_as_inside_the_pair()
    {
        var fields = ModelTestData.Fields(4);
        var booster = new ZooModel(new ModelConfig { Model = ModelKind.XDeepFm, EmbeddingDim = 4, Dnn = [10], Cin = [4, 2], Seed = 2 }, fields);
        var light = new ZooModel(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 4, Dnn = [6], Seed = 1 }, fields, sharedEmbedding: booster.Embedding);
        var objective = new RocketLaunchingObjective(light, booster, hintWeight: 0.5f);
        var batch = ModelTestData.Batch(fields, 32, 11);
        var optimizer = new Adam(objective.Trainable.Parameters().Select(p => p.Tensor), learningRate: 0.02f);
        using (var tape = new Tape<float>())
            for (int step = 0; step < 5; step++) { tape.Reset(); tape.Backward(objective.Loss(batch, step, null)); optimizer.Step(); }

        float[] inside;
        light.Training = false;
        using (Tape<float>.NoGrad()) inside = light.Forward(batch).Logits.ToArray();

        string path = Path.Combine(Path.GetTempPath(), $"kd-light-{Guid.NewGuid():N}.kde");
        try
        {
            ModelCheckpoint.Save(path, light);
            var loaded = ModelCheckpoint.Load(path).Model;
            var boosterOnly = booster.Parameters().Where(p => !p.Name.StartsWith("embedding.", StringComparison.Ordinal)).Select(p => p.Tensor).ToHashSet();
            Assert.That(loaded.Parameters().Select(p => p.Name), Has.None.StartsWith("cin"));
            Assert.That(light.Parameters().Any(p => boosterOnly.Contains(p.Tensor)), Is.False);
            float[] exported;
            using (Tape<float>.NoGrad()) exported = loaded.Forward(batch).Logits.ToArray();
            Assert.That(exported, Is.EqualTo(inside), "bit-identical predictions");
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void Exported_pfd_student_needs_no_privileged_field()
    {
        var fields = ModelTestData.Fields(5);
        var (student, teacher) = PfdObjective.Build(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 3, Dnn = [6] },
            new ModelConfig { Model = ModelKind.XDeepFm, EmbeddingDim = 3, Dnn = [8], Cin = [4, 2] }, fields, [false, false, true, false, true]);
        var batch = ModelTestData.Batch(fields, 16, 2);
        student.Training = false;
        float[] inside;
        using (Tape<float>.NoGrad()) inside = student.Forward(batch).Logits.ToArray();
        string path = Path.Combine(Path.GetTempPath(), $"kd-pfd-{Guid.NewGuid():N}.kde");
        try
        {
            ModelCheckpoint.Save(path, student);
            var loaded = ModelCheckpoint.Load(path).Model;
            Assert.That(loaded.Parameters().Select(p => p.Name), Has.None.Contains("f2").And.None.Contains("f4").And.None.StartsWith("cin"));
            using (Tape<float>.NoGrad()) Assert.That(loaded.Forward(batch).Logits.ToArray(), Is.EqualTo(inside));
        }
        finally { File.Delete(path); }
    }
}

public class NewTeacherTests
{
    [Test]
    public void Ffm_and_dcn_v2_teach_a_dnn_student_in_the_gated_ensemble_jointly_with_a_gate_on_their_hidden_layers()
    {
        var fields = ModelTestData.Fields(4);
        var batch = ModelTestData.Batch(fields, 64, 9);
        var student = new ZooModel(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 3, Dnn = [6], Seed = 1 }, fields);
        var ffm = new ZooModel(new ModelConfig { Model = ModelKind.Ffm, EmbeddingDim = 3, Seed = 2 }, fields);
        var dcnV2 = new ZooModel(new ModelConfig { Model = ModelKind.DcnV2, EmbeddingDim = 3, Dnn = [8], CrossRank = 2, CrossExperts = 2, Seed = 3 }, fields);
        var objective = new EnsembleObjective(student, [new ModelTeacher(ffm), new ModelTeacher(dcnV2)], EnsembleMode.Joint,
            alpha: 0.5f, temperature: 2f, gateHiddenLayers: ["ffm", "cross"], hints: [], hintWeight: 0f, seed: 5);
        var optimizer = new Adam(objective.Trainable.Parameters().Select(p => p.Tensor), learningRate: 0.02f);
        float first = 0, last = 0;
        using (var tape = new Tape<float>())
            for (int step = 0; step < 60; step++)
            {
                tape.Reset();
                var loss = objective.Loss(batch, step, null);
                if (step == 0) first = loss.Item();
                last = loss.Item();
                tape.Backward(loss);
                optimizer.Step();
            }
        Assert.That(last, Is.LessThan(first * 0.8f), $"ensemble objective {first} → {last}");
        foreach (var name in new[] { "teacher0.ffm.f1.weight", "teacher1.cross.0.u.1" })
            Assert.That(objective.Trainable.Parameters().Any(p => p.Name == name), Is.True, $"{name} trains jointly");
    }

    [Test]
    public void A_dcn_v2_teacher_is_a_double_dnn_teacher_and_ffm_is_not()
    {
        var fields = ModelTestData.Fields(4);
        var teacher = new ZooModel(new ModelConfig { Model = ModelKind.DcnV2, EmbeddingDim = 3, Dnn = [8], Seed = 3 }, fields);
        var student = new ZooModel(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 3, Dnn = [8], Seed = 1 }, fields, sharedEmbedding: teacher.Embedding);
        var objective = new DoubleDnnObjective(student, teacher, 0.5f, 2f, TeacherStudentObjective.BuildHints(student, teacher, [("dnn.0", "dnn.0")], 1), 0.1f);
        using var tape = new Tape<float>();
        Assert.That(float.IsFinite(objective.Loss(ModelTestData.Batch(fields, 16, 2), 0, null).Item()), Is.True);
        var ffm = new ZooModel(new ModelConfig { Model = ModelKind.Ffm, EmbeddingDim = 3 }, fields);
        Assert.Throws<ArgumentException>(() => new DoubleDnnObjective(student, ffm, 0.5f, 2f, [], 0f));
    }
}
