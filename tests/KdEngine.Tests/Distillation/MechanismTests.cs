using KdEngine.Autograd;
using KdEngine.Distillation;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;
using KdEngine.Tests.Models;
using KdEngine.Training;
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

    // ------------------------------------------------------------------ two-stage ensemble, frozen teachers

    /// <summary>Gradient elements a module tree holds (dense gradients and sparse embedding rows).</summary>
    private static long HeldGradient(KdEngine.Nn.Module module) =>
        module.Parameters().Sum(p => (long)(p.Tensor.Grad?.Length ?? 0) + (p.Tensor.SparseGrad is { } s ? (long)s.Count * s.Width : 0));

    [Test]
    public void Two_stage_gate_on_hidden_layers_leaves_frozen_teachers_without_gradient_and_memory_flat()
    {
        // Large tables and fresh ids every step: were a gradient to reach a frozen teacher, its sparse embedding
        // gradient (never cleared: the teacher is outside the optimizer) would grow with every step.
        var fields = ModelTestData.Fields(4, cardinality: 50_000);
        var t1 = new ZooModel(new ModelConfig { Model = ModelKind.XDeepFm, EmbeddingDim = 8, Dnn = [12, 8], Cin = [4, 2], Seed = 2 }, fields);
        var t2 = new ZooModel(new ModelConfig { Model = ModelKind.Dcn, EmbeddingDim = 8, Dnn = [10], Seed = 3 }, fields);
        var student = new ZooModel(Light, fields);
        var hints = new[] { TeacherStudentObjective.BuildHints(student, t1, [("dnn.0", "dnn.1")], 1)[0], TeacherStudentObjective.BuildHints(student, t2, [("dnn.0", "dnn.0")], 2)[0] };
        var objective = new EnsembleObjective(student, [new ModelTeacher(t1), new ModelTeacher(t2)], EnsembleMode.TwoStage,
            alpha: 0.5f, temperature: 2f, gateHiddenLayers: ["dnn.1", "cross"], hints, hintWeight: 0.5f, seed: 4);
        var optimizer = new Adam(objective.Trainable.Parameters().Select(p => p.Tensor), 1e-2f);
        var gateBefore = objective.Gate!.Parameters().Select(p => p.Tensor.ToArray()).ToArray();
        long memoryAt20 = 0;
        using (var tape = new Tape<float>())
        {
            for (int step = 0; step < 80; step++)
            {
                tape.Reset();
                tape.Backward(objective.Loss(ModelTestData.Batch(fields, 128, 100 + step), step, null));
                optimizer.Step();
                if (step % 10 == 9)
                {
                    Assert.That(HeldGradient(t1) + HeldGradient(t2), Is.Zero, $"a frozen teacher holds gradient after step {step}");
                    if (step == 19) memoryAt20 = GC.GetTotalMemory(forceFullCollection: true);
                }
            }
        }
        long growth = GC.GetTotalMemory(forceFullCollection: true) - memoryAt20;
        Assert.That(growth, Is.LessThan(1 << 20), $"memory grew by {growth:N0} bytes over 60 steps");
        // The gate did learn from the hidden layers it reads.
        var gateAfter = objective.Gate.Parameters().Select(p => p.Tensor.ToArray()).ToArray();
        Assert.That(gateAfter.Zip(gateBefore).Any(w => !w.First.SequenceEqual(w.Second)), Is.True);
    }

    [Test]
    public void A_frozen_model_teacher_returns_every_hidden_layer_under_stop_gradient()
    {
        var fields = ModelTestData.Fields(4);
        var teacher = new ZooModel(Booster, fields);
        using var tape = new Tape<float>();
        var (logits, hidden) = new ModelTeacher(teacher).Run(ModelTestData.Batch(fields, 8, 2));
        Assert.That(hidden.Keys, Does.Contain("dnn.1").And.Contain("cin.pooled").And.Contain("embedding"));
        Assert.That(hidden.Values.Prepend(logits).All(h => !h.RequiresGrad), Is.True);
        // A loss on every output leaves the teacher untouched.
        var other = Tensor<float>.FromArray([1f], 1).RequireGrad(); // something trainable beside the teacher's outputs
        var loss = Op.Add(Op.Sum(other), Op.Add(Op.Sum(logits), hidden.Values.Select(h => Op.Sum(h)).Aggregate(Op.Add)));
        tape.Backward(loss);
        Assert.That(other.Grad!.ToArray(), Is.EqualTo(new[] { 1f }));
        Assert.That(HeldGradient(teacher), Is.Zero);
    }

    // ------------------------------------------------------------------ logits KD

    [Test]
    public void Logits_kd_weighs_the_label_term_by_one_minus_alpha_and_the_kd_term_by_alpha()
    {
        var zs = Tensor<float>.FromArray([0.3f, -1.2f, 2.5f, 0.1f], 4, 1);
        var zt = Tensor<float>.FromArray([-1.5f, 2.0f, 0.5f, 3.0f], 4, 1);
        var y = Tensor<float>.FromArray([1f, 0f, 1f, 0f], 4, 1);
        using var tape = Tape<float>.NoGrad();
        float bce = Op.BceWithLogits(zs, y).Item();
        float kd = Op.BinaryKd(zt, zs, 3f).Item();
        Assert.That(Math.Abs(bce - kd), Is.GreaterThan(0.1f), "the two terms must differ for the test to see a swap");
        foreach (float alpha in new[] { 0f, 0.2f, 0.9f, 1f })
        {
            var terms = new Dictionary<string, float>();
            float loss = KdLosses.Logits(zs, zt, y, alpha, 3f, terms).Item();
            Assert.That(loss, Is.EqualTo((1 - alpha) * bce + alpha * kd).Within(1e-6f), $"alpha = {alpha}");
            Assert.That(terms["bce"], Is.EqualTo(bce).Within(1e-7f));
            Assert.That(terms["kd"], Is.EqualTo(kd).Within(1e-7f));
        }
    }

    [Test]
    public void Logits_kd_stops_the_gradient_of_a_teacher_whose_logits_require_one()
    {
        var zs = Tensor<float>.FromArray([0.3f, -1.2f, 2.5f], 3, 1).RequireGrad();
        var zt = Tensor<float>.FromArray([-1.5f, 2.0f, 0.5f], 3, 1).RequireGrad(); // as if a co-trained teacher's output
        var y = Tensor<float>.FromArray([1f, 0f, 1f], 3, 1);
        using var tape = new Tape<float>();
        tape.Backward(KdLosses.Logits(zs, zt, y, alpha: 0.7f, temperature: 2f));
        Assert.That(zt.Grad is null || zt.Grad.ToArray().All(v => v == 0f), Is.True, "the teacher's logits received a gradient");
        Assert.That(zs.Grad!.ToArray().Any(v => v != 0f), Is.True);
    }

    // ------------------------------------------------------------------ double-DNN

    [Test]
    public void Double_dnn_teacher_learns_from_its_own_bce_only_while_kd_and_hints_train_the_student()
    {
        var fields = ModelTestData.Fields(4);
        var batch = ModelTestData.Batch(fields, 32, 6);
        (ZooModel Student, ZooModel Teacher, DoubleDnnObjective Objective) Build(float alpha, float hintWeight)
        {
            var teacher = new ZooModel(Booster, fields);
            var student = new ZooModel(Light with { EmbeddingDim = Booster.EmbeddingDim }, fields, sharedEmbedding: teacher.Embedding);
            var hints = TeacherStudentObjective.BuildHints(student, teacher, [("dnn.0", "dnn.1"), ("dnn.0", "cin.pooled")], seed: 1);
            return (student, teacher, new DoubleDnnObjective(student, teacher, alpha, 2f, hints, hintWeight));
        }
        var (student, teacher, full) = Build(alpha: 0.7f, hintWeight: 1f);
        var grads = StepGradients(full, batch);

        // The teacher's own BCE alone, on an identical (same seeds) teacher.
        var (_, teacher2, _) = Build(0f, 0f);
        teacher2.ZeroGrad();
        using (var tape = new Tape<float>())
            tape.Backward(Op.BceWithLogits(teacher2.Forward(batch).Logits, SupervisedObjective.LabelTensor(batch)));
        var own = Gradients(teacher2);
        var shared = student.Parameters().Select(p => p.Tensor).ToHashSet();
        int compared = 0;
        foreach (var p in teacher.Parameters().Where(p => !shared.Contains(p.Tensor)))
        {
            Assert.That(grads["teacher." + p.Name], Is.EqualTo(own[p.Name]).Within(1e-6f), $"teacher parameter {p.Name}");
            compared++;
        }
        Assert.That(compared, Is.GreaterThan(5));
        Assert.That(own["cin.0.weight"].Any(v => v != 0f), Is.True, "the teacher's own BCE trains it");

        // The KD and hint terms do train the student.
        var (_, _, bceOnly) = Build(alpha: 0f, hintWeight: 0f);
        var g0 = StepGradients(bceOnly, batch);
        Assert.That(grads["student.dnn.0.weight"], Is.Not.EqualTo(g0["student.dnn.0.weight"]));
    }

    // ------------------------------------------------------------------ joint ECKD

    [Test]
    public void Joint_eckd_kd_and_hint_terms_never_reach_teachers_or_gate_which_learn_from_the_labels()
    {
        var fields = ModelTestData.Fields(4);
        var batch = ModelTestData.Batch(fields, 32, 7);
        Dictionary<string, float[]> Step(float alpha, float temperature, float hintWeight)
        {
            var student = new ZooModel(Light, fields);
            var t1 = new ZooModel(new ModelConfig { Model = ModelKind.XDeepFm, EmbeddingDim = 3, Dnn = [8], Cin = [4, 2], Seed = 2 }, fields);
            var t2 = new ZooModel(new ModelConfig { Model = ModelKind.Dcn, EmbeddingDim = 3, Dnn = [8], Seed = 3 }, fields);
            var hints = new[] { TeacherStudentObjective.BuildHints(student, t1, [("dnn.0", "dnn.0")], 1)[0], TeacherStudentObjective.BuildHints(student, t2, [("dnn.0", "cross")], 2)[0] };
            var objective = new EnsembleObjective(student, [new ModelTeacher(t1), new ModelTeacher(t2)], EnsembleMode.Joint,
                alpha, temperature, gateHiddenLayers: ["dnn.0", "dnn.0"], hints, hintWeight, seed: 5);
            return StepGradients(objective, batch);
        }
        var a = Step(0.5f, 2f, 1f);
        var b = Step(0.9f, 4f, 0f);
        var groups = new[] { "teacher0.", "teacher1.", "gate." };
        foreach (var (name, g) in a.Where(kv => groups.Any(kv.Key.StartsWith)))
            Assert.That(b[name], Is.EqualTo(g).Within(1e-6f), $"{name}: changed with the KD/hint weights");
        foreach (var group in groups)
            Assert.That(a.Where(kv => kv.Key.StartsWith(group, StringComparison.Ordinal)).Any(kv => !AllZero(kv.Value)), Is.True, $"{group} learns nothing");
        Assert.That(a["student.dnn.0.weight"], Is.Not.EqualTo(b["student.dnn.0.weight"]), "the KD and hint terms train the student");
        Assert.That(a.Where(kv => kv.Key.StartsWith("hint", StringComparison.Ordinal)).Any(kv => !AllZero(kv.Value)), Is.True, "the hint projections train");
    }

    // ------------------------------------------------------------------ PFD warm-up

    [Test]
    public void Pfd_lambda_is_zero_for_the_warm_up_steps_and_lambda_from_step_k()
    {
        var fields = ModelTestData.Fields(5);
        var privileged = new[] { false, false, false, false, true };
        var batch = ModelTestData.Batch(fields, 32, 5);
        Dictionary<string, float[]> StudentGrads(float lambda, long warmup, long step)
        {
            var (student, teacher) = PfdObjective.Build(Light, Booster, fields, privileged);
            var objective = new PfdObjective(student, teacher, lambda, warmup);
            return StepGradients(objective, batch, step).Where(kv => kv.Key.StartsWith("student.dnn", StringComparison.Ordinal)).ToDictionary();
        }
        const long k = 10;
        var (s0, t0) = PfdObjective.Build(Light, Booster, fields, privileged);
        var pfd = new PfdObjective(s0, t0, 0.5f, k);
        Assert.That((pfd.LambdaAt(0), pfd.LambdaAt(k - 1), pfd.LambdaAt(k), pfd.LambdaAt(1000)), Is.EqualTo((0f, 0f, 0.5f, 0.5f)));
        var lambdaZero = StudentGrads(0f, 0, 0);
        var lambdaHalf = StudentGrads(0.5f, 0, 0);
        Assert.That(lambdaZero["student.dnn.0.weight"], Is.Not.EqualTo(lambdaHalf["student.dnn.0.weight"]));
        foreach (var (name, g) in StudentGrads(0.5f, k, k - 1)) Assert.That(g, Is.EqualTo(lambdaZero[name]), $"step {k - 1}: {name}");
        foreach (var (name, g) in StudentGrads(0.5f, k, k)) Assert.That(g, Is.EqualTo(lambdaHalf[name]), $"step {k}: {name}");
    }

    // ------------------------------------------------------------------ ECKD early stopping, averaging baseline

    [Test]
    public void Early_stopping_on_the_distillation_loss_restores_the_epoch_with_the_lowest_validation_kd_term()
    {
        var gen = new KdEngine.Data.SyntheticCtr(new KdEngine.Data.SyntheticCtrOptions { Fields = 4, VocabSize = 12, Seed = 3 });
        var (all, _, _) = gen.GenerateWithLogits(1200);
        var parts = all.Split([8, 1, 1]);
        var fields = all.FeatureSpace.SingleFields.Select(f => new InputField(f.Name, f.Cardinality)).ToArray();
        var t1 = new ZooModel(new ModelConfig { Model = ModelKind.Lr, Seed = 1 }, fields);
        var t2 = new ZooModel(new ModelConfig { Model = ModelKind.Fm, EmbeddingDim = 3, Seed = 2 }, fields);
        foreach (var t in new[] { t1, t2 })
            new Trainer(new TrainerOptions { Epochs = 2, BatchSize = 64 }).Fit(new SupervisedObjective(t), new Adam(t.Parameters().Select(p => p.Tensor), 0.05f), parts[0], parts[1]);
        var student = new ZooModel(Light with { Dnn = [16] }, fields);
        var objective = new EnsembleObjective(student, [new ModelTeacher(t1), new ModelTeacher(t2)], EnsembleMode.TwoStage, 0.5f, 2f, null, [], 0f, seed: 1);
        var report = new Trainer(new TrainerOptions { Epochs = 6, BatchSize = 64, Patience = 0, Metric = StoppingMetric.DistillationLoss })
            .Fit(objective, new Adam(objective.Trainable.Parameters().Select(p => p.Tensor), 0.05f), parts[0], parts[1]);
        var kd = report.History.Select(p => p.DistillationLoss).ToArray();
        Assert.That(kd, Has.All.Matches<double>(double.IsFinite));
        Assert.That(kd.Distinct().Count(), Is.GreaterThan(1));
        Assert.That(report.Best!.DistillationLoss, Is.EqualTo(kd.Min()));
        // The weights kept are that validation's: the KD term measured now is the best one.
        Assert.That(Trainer.ObjectiveTerm(objective, parts[1], Trainer.DistillationTerm, 64), Is.EqualTo(kd.Min()).Within(1e-6));

        var plain = new ZooModel(Light, fields);
        var e = Assert.Throws<ArgumentException>(() => new Trainer(new TrainerOptions { Metric = StoppingMetric.DistillationLoss })
            .Fit(new SupervisedObjective(plain), new Adam(plain.Parameters().Select(p => p.Tensor), 1e-3f), parts[0], parts[1]));
        Assert.That(e!.Message, Does.Contain("'kd'").And.Contain("SupervisedObjective"));
    }

    [Test]
    public void Average_mode_distils_the_mean_of_the_teacher_logits_and_trains_only_the_student()
    {
        var fields = ModelTestData.Fields(4);
        var batch = ModelTestData.Batch(fields, 16, 9);
        var t1 = new ZooModel(Booster, fields);
        var t2 = new ZooModel(new ModelConfig { Model = ModelKind.Dcn, EmbeddingDim = 3, Dnn = [8], Seed = 3 }, fields);
        var student = new ZooModel(Light, fields);
        var objective = new EnsembleObjective(student, [new ModelTeacher(t1), new ModelTeacher(t2)], EnsembleMode.Average, 0.4f, 3f, null, [], 0f, seed: 1);
        using var tape = new Tape<float>();
        var terms = new Dictionary<string, float>();
        float loss = objective.Loss(batch, 0, terms).Item();
        t1.Training = t2.Training = student.Training = false;
        var mean = Op.Scale(Op.Add(t1.Forward(batch).Logits, t2.Forward(batch).Logits), 0.5f);
        float expected = KdLosses.Logits(student.Forward(batch).Logits, mean, SupervisedObjective.LabelTensor(batch), 0.4f, 3f).Item();
        Assert.That(loss, Is.EqualTo(expected).Within(1e-6f));
        Assert.That(terms.Keys, Is.EquivalentTo(new[] { "bce", "kd" }), "no gate, no ensemble BCE");
        Assert.That(objective.Trainable.Parameters().Select(p => p.Name), Has.All.StartsWith("student."));
        Assert.Throws<ArgumentException>(() => new EnsembleObjective(new ZooModel(Light, fields), [new ModelTeacher(t1), new ModelTeacher(t2)],
            EnsembleMode.Average, 0.4f, 3f, ["dnn.0", "dnn.0"], [], 0f, seed: 1));
    }

    // ------------------------------------------------------------------ Rocket Launching shared bottom

    [Test]
    public void Rocket_shared_dnn_layers_are_one_module_that_both_nets_update()
    {
        var fields = ModelTestData.Fields(4);
        var batch = ModelTestData.Batch(fields, 32, 12);
        var light = Light with { Dnn = [10, 4] };
        var booster = Booster with { Dnn = [10, 8] };
        (ZooModel Light, ZooModel Booster) Pair() => RocketLaunchingObjective.BuildPair(light, booster, fields, sharedLayers: 1);

        var (l, b) = Pair();
        Assert.That(l.Dnn!.Layers[0], Is.SameAs(b.Dnn!.Layers[0]));
        Assert.That(l.Dnn.Layers[1], Is.Not.SameAs(b.Dnn.Layers[1]));
        var objective = new RocketLaunchingObjective(l, b, hintWeight: 0.5f);
        Assert.That(objective.Trainable.Parameters().Count(p => ReferenceEquals(p.Tensor, l.Dnn.Layers[0].Weight)), Is.EqualTo(1));
        var all = StepGradients(objective, batch);

        var (l1, b1) = Pair();
        var lightOnly = StepGradients(new RocketLaunchingObjective(l1, b1, hintWeight: 0.5f) { BoosterBceWeight = 0 }, batch);
        var (l2, b2) = Pair();
        var boosterOnly = StepGradients(new RocketLaunchingObjective(l2, b2, hintWeight: 0f) { LightBceWeight = 0 }, batch);
        const string shared = "light.dnn.0.weight";
        Assert.That(lightOnly[shared].Any(v => v != 0f), Is.True, "the light net's loss updates the shared layer");
        Assert.That(boosterOnly[shared].Any(v => v != 0f), Is.True, "the booster's loss updates the shared layer");
        var sum = lightOnly[shared].Zip(boosterOnly[shared], (x, y) => x + y).ToArray();
        Assert.That(all[shared], Is.EqualTo(sum).Within(1e-6f), "with both losses the shared layer gets both gradients");

        // EasyRec's variant: the light net reads the shared bottom under StopGradient, so only the booster trains it.
        var (l3, b3) = Pair();
        var easyRec = StepGradients(new RocketLaunchingObjective(l3, b3, hintWeight: 0.5f, lightInputStopGradient: true), batch);
        Assert.That(easyRec[shared], Is.EqualTo(boosterOnly[shared]));
        Assert.That(easyRec["light.dnn.1.weight"], Is.EqualTo(lightOnly["light.dnn.1.weight"]), "the light net's own layers still learn");

        // The exported light net carries the shared layer under its own name and serves like the net inside the pair.
        var path = Path.Combine(Path.GetTempPath(), $"rocket-shared-{Guid.NewGuid():N}.kde");
        KdEngine.Serving.ModelCheckpoint.Save(path, l, null);
        var loaded = KdEngine.Serving.ModelCheckpoint.Load(path).Model;
        Assert.That(loaded.Parameters().Select(p => p.Name), Does.Contain("dnn.0.weight"));
        var predictor = new KdEngine.Serving.Predictor(loaded);
        var served = new float[batch.Size];
        predictor.Predict(batch.Ids.Span, served);
        l.Training = false;
        using var tape = Tape<float>.NoGrad();
        var inside = l.Forward(batch).Logits.ToArray();
        for (int i = 0; i < served.Length; i++) Assert.That(served[i], Is.EqualTo(inside[i]).Within(1e-5f), $"row {i}");
        File.Delete(path);

        var error = Assert.Throws<ConfigException>(() => RocketLaunchingObjective.BuildPair(light with { Dnn = [6, 4] }, booster, fields, sharedLayers: 1));
        Assert.That(error!.Message, Does.Contain("dnn[0]"));
    }
}
