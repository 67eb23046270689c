using KdEngine.Autograd;
using KdEngine.Distillation;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;
using KdEngine.Tests.Models;
using NUnit.Framework;

namespace KdEngine.Tests.Distillation;

/// <summary>Each test fails if the mechanism it names is broken (a gradient leaks, a term is missing…).</summary>
public class MechanismTests
{
    private static readonly ModelConfig Light = new() { Model = ModelKind.Dnn, EmbeddingDim = 4, Dnn = [6], Seed = 1 };
    private static readonly ModelConfig Booster = new() { Model = ModelKind.XDeepFm, EmbeddingDim = 4, Dnn = [10, 8], Cin = [6, 4], Seed = 2 };

    private static (ZooModel Light, ZooModel Booster) RocketPair(InputField[] fields)
    {
        var booster = new ZooModel(Booster, fields);
        var light = new ZooModel(Light, fields, sharedEmbedding: booster.Embedding);
        return (light, booster);
    }

    private static Dictionary<string, float[]> Gradients(KdEngine.Nn.Module module)
    {
        var result = new Dictionary<string, float[]>();
        foreach (var p in module.Parameters())
        {
            var t = p.Tensor;
            float[]? g = t.SparseGrad is { Count: > 0 } s ? s.ToDense() : t.Grad?.ToArray();
            result[p.Name] = g ?? new float[t.Length];
        }
        return result;
    }

    private static Dictionary<string, float[]> StepGradients(KdEngine.Training.IObjective objective, CtrBatch batch, long step = 0)
    {
        objective.Trainable.ZeroGrad();
        using var tape = new Tape<float>();
        tape.Backward(objective.Loss(batch, step, null));
        return Gradients(objective.Trainable);
    }

    private static bool AllZero(float[] g) => g.All(v => v == 0f);

    [Test]
    public void Rocket_hint_term_alone_never_reaches_the_booster()
    {
        var fields = ModelTestData.Fields(4);
        var (light, booster) = RocketPair(fields);
        var objective = new RocketLaunchingObjective(light, booster, hintWeight: 1f) { LightBceWeight = 0, BoosterBceWeight = 0 };
        var grads = StepGradients(objective, ModelTestData.Batch(fields, 16, 3));
        var boosterOnly = booster.Parameters().Select(p => p.Name).Where(n => !n.StartsWith("embedding.", StringComparison.Ordinal)).ToList();
        Assert.That(boosterOnly, Is.Not.Empty);
        foreach (var p in booster.Parameters())
        {
            if (p.Name.StartsWith("embedding.", StringComparison.Ordinal)) continue;
            string name = "booster." + p.Name;
            Assert.That(AllZero(grads[name]), Is.True, $"booster parameter {name} received gradient through the hint term");
        }
        Assert.That(grads.Where(kv => kv.Key.StartsWith("light.dnn", StringComparison.Ordinal)).Any(kv => !AllZero(kv.Value)), Is.True,
            "the light net must learn from the hint term");
    }

    [Test]
    public void Rocket_light_input_stop_gradient_leaves_the_shared_bottom_to_the_booster()
    {
        var fields = ModelTestData.Fields(4);
        var batch = ModelTestData.Batch(fields, 16, 4);

        var (light, booster) = RocketPair(fields);
        var full = new RocketLaunchingObjective(light, booster, hintWeight: 0.5f, lightInputStopGradient: true);
        var withAll = StepGradients(full, batch);

        var (light2, booster2) = RocketPair(fields);
        var boosterOnly = new RocketLaunchingObjective(light2, booster2, hintWeight: 0f) { LightBceWeight = 0 };
        var fromBooster = StepGradients(boosterOnly, batch);

        var embeddingNames = withAll.Keys.Where(k => k.Contains(".embedding.", StringComparison.Ordinal) || k.StartsWith("light.embedding", StringComparison.Ordinal)).ToList();
        Assert.That(embeddingNames, Is.Not.Empty);
        foreach (var name in embeddingNames)
            Assert.That(withAll[name], Is.EqualTo(fromBooster[name]), $"{name}: the shared bottom must be trained by the booster only");

        // And in the paper's default the light net's BCE does reach the shared bottom.
        var (light3, booster3) = RocketPair(fields);
        var paper = StepGradients(new RocketLaunchingObjective(light3, booster3, hintWeight: 0.5f), batch);
        Assert.That(embeddingNames.Any(n => !paper[n].SequenceEqual(fromBooster[n])), Is.True);
    }

    [Test]
    public void Pfd_teacher_gradients_are_identical_with_lambda_zero_and_half()
    {
        var fields = ModelTestData.Fields(5);
        var privileged = new[] { false, false, false, false, true };
        var batch = ModelTestData.Batch(fields, 32, 5);
        // The teacher's own parameters (all but the common-field tables it shares with the student, which the
        // student's loss rightly trains) must see exactly the same gradient whatever λ is.
        Dictionary<string, float[]> TeacherGrads(float lambda)
        {
            var (student, teacher) = PfdObjective.Build(Light, Booster, fields, privileged);
            var objective = new PfdObjective(student, teacher, lambda, warmupSteps: 0);
            StepGradients(objective, batch, step: 10);
            var shared = student.Parameters().Select(p => p.Tensor).ToHashSet();
            var own = teacher.Parameters().Where(p => !shared.Contains(p.Tensor)).Select(p => p.Name).ToHashSet();
            return Gradients(teacher).Where(kv => own.Contains(kv.Key)).ToDictionary();
        }
        var g0 = TeacherGrads(0f);
        var g5 = TeacherGrads(0.5f);
        Assert.That(g0.Keys, Does.Contain("embedding.f4.weight"), "the privileged field's table belongs to the teacher alone");
        Assert.That(g0.Keys, Does.Contain("cin.0.weight"));
        Assert.That(g0.Values.Any(g => !AllZero(g)), Is.True);
        foreach (var (name, g) in g0) Assert.That(g5[name], Is.EqualTo(g), $"teacher parameter {name}");

        // The distillation term does reach the student.
        var (s1, t1) = PfdObjective.Build(Light, Booster, fields, privileged);
        var a = StepGradients(new PfdObjective(s1, t1, 0f, 0), batch, 10);
        var (s2, t2) = PfdObjective.Build(Light, Booster, fields, privileged);
        var b = StepGradients(new PfdObjective(s2, t2, 0.5f, 0), batch, 10);
        Assert.That(a["student.dnn.0.weight"], Is.Not.EqualTo(b["student.dnn.0.weight"]));
    }

    [Test]
    public void Pfd_student_never_reads_privileged_fields_and_shares_common_tables()
    {
        var fields = ModelTestData.Fields(5);
        var (student, teacher) = PfdObjective.Build(Light, Booster, fields, [false, true, false, false, true]);
        Assert.That(student.Fields.Select(f => f.Name), Is.EqualTo(new[] { "f0", "f2", "f3" }));
        var studentTables = student.Parameters().Where(p => p.Name.StartsWith("embedding.", StringComparison.Ordinal)).Select(p => p.Tensor);
        var teacherTables = teacher.Parameters().Where(p => p.Name.StartsWith("embedding.", StringComparison.Ordinal)).Select(p => p.Tensor).ToHashSet();
        Assert.That(studentTables.All(teacherTables.Contains), Is.True, "common-field tables are shared");
        // Changing a privileged id changes the teacher's output but never the student's.
        var batch = ModelTestData.Batch(fields, 4, 9);
        var ids = batch.Ids.ToArray();
        for (int b = 0; b < 4; b++) ids[b * 5 + 1] = (ids[b * 5 + 1] + 1) % fields[1].Cardinality;
        var changed = batch with { Ids = ids };
        using var tape = Tape<float>.NoGrad();
        student.Training = false; teacher.Training = false;
        Assert.That(student.Forward(changed).Logits.ToArray(), Is.EqualTo(student.Forward(batch).Logits.ToArray()));
        Assert.That(teacher.Forward(changed).Logits.ToArray(), Is.Not.EqualTo(teacher.Forward(batch).Logits.ToArray()));
    }

    [Test]
    public void Logits_kd_is_zero_with_zero_gradient_when_student_equals_teacher()
    {
        foreach (float temperature in new[] { 1f, 2f, 5f })
        {
            var zs = Tensor<float>.FromArray([0.3f, -1.2f, 2.5f], 3, 1).RequireGrad();
            var zt = Tensor<float>.FromArray([0.3f, -1.2f, 2.5f], 3, 1);
            using var tape = new Tape<float>();
            var kd = Op.BinaryKd(Op.StopGradient(zt), zs, temperature);
            Assert.That(kd.Item(), Is.EqualTo(0f).Within(1e-7), $"T = {temperature}");
            tape.Backward(kd);
            Assert.That(zs.Grad!.ToArray(), Is.All.EqualTo(0f).Within(1e-7), $"T = {temperature}");
        }
    }

    [Test]
    public void Teacher_student_objective_never_updates_a_frozen_teacher()
    {
        var fields = ModelTestData.Fields(4);
        var teacher = new ZooModel(Booster, fields);
        var student = new ZooModel(Light, fields);
        var hints = TeacherStudentObjective.BuildHints(student, teacher, [("dnn.0", "dnn.1")], seed: 1);
        var objective = new TeacherStudentObjective(student, new ModelTeacher(teacher), alpha: 0.5f, temperature: 2f, hints, hintWeight: 1f);
        var grads = StepGradients(objective, ModelTestData.Batch(fields, 8, 1));
        Assert.That(grads.Keys.Any(k => k.StartsWith("teacher", StringComparison.Ordinal)), Is.False);
        foreach (var p in teacher.Parameters())
            Assert.That(p.Tensor.Grad is null && p.Tensor.SparseGrad is not { Count: > 0 }, Is.True, $"teacher {p.Name} got a gradient");
        Assert.That(grads.Keys, Does.Contain("hint0.proj.weight")); // widths 6 → 8 need a projection
        Assert.That(AllZero(grads["hint0.proj.weight"]), Is.False);
    }
}
