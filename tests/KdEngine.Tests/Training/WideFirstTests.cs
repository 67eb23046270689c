using KdEngine.Autograd;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Models.Parts;
using KdEngine.Nn;
using KdEngine.Pipelines;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Training;

/// <summary>
/// Validation at step 0 (the starting weights as a restore candidate) and wide-first training: the logistic regression
/// fitted first becomes the wide part, the other parts' output layers start at zero, so the joint start scores exactly
/// as that logistic regression.
/// </summary>
public class WideFirstTests
{
    private static readonly EncodedDataset Train = new SyntheticCtr(new SyntheticCtrOptions { Fields = 6, VocabSize = 300, Seed = 21 }).Generate(1200);
    private static readonly EncodedDataset Valid = new SyntheticCtr(new SyntheticCtrOptions { Fields = 6, VocabSize = 300, Seed = 22 }).Generate(400);

    private static ZooModel Build(ModelKind kind, EncodedDataset data) =>
        CtrPipeline.BuildModel(new ModelConfig { Model = kind, EmbeddingDim = 4, Dnn = [16], Cin = [4], CrossLayers = 1, Seed = 5 }, CtrPipeline.InputFields(data.FeatureSpace));

    [Test]
    public void Validating_at_the_start_makes_the_starting_weights_a_candidate_and_restores_them_when_nothing_beats_them()
    {
        // Validation rows are the training rows with every label flipped: whatever training learns makes validation worse,
        // so the starting point is the best by AUC and by logloss, and restoring it must give back the weights bit for bit.
        var flipped = new SyntheticCtr(new SyntheticCtrOptions { Fields = 6, VocabSize = 300, Seed = 21 }).Generate(1200);
        for (int i = 0; i < flipped.Labels.Length; i++) flipped.Labels[i] = 1 - flipped.Labels[i];
        var model = Build(ModelKind.Wdl, Train);
        var parameters = model.Parameters();
        var start = parameters.Select(p => p.Tensor.ToArray()).ToArray();
        var options = new TrainerOptions { Epochs = 3, BatchSize = 64, Patience = 0, Metric = StoppingMetric.Both, ValidateAtStart = true, Seed = 3 };
        var report = new Trainer(options).Fit(new SupervisedObjective(model), new Adam(parameters.Select(p => p.Tensor), 0.02f), Train, flipped);

        Assert.That(report.History[0].Step, Is.EqualTo(0));
        Assert.That(report.History[0].Epoch, Is.EqualTo(0));
        Assert.That(double.IsNaN(report.History[0].TrainLoss), Is.True, "no step has trained yet");
        Assert.That(report.History.Count, Is.EqualTo(4), "point 0 and one per epoch");
        Assert.That(report.History.Skip(1).All(p => p.LogLoss > report.History[0].LogLoss), Is.True, "training on flipped labels only makes validation worse");
        Assert.That(report.Best!.Step, Is.EqualTo(0));
        Assert.That(report.StopReason, Does.Contain("step 0 (epoch 0"));
        for (int i = 0; i < parameters.Count; i++)
            Assert.That(parameters[i].Tensor.ToArray(), Is.EqualTo(start[i]), $"{parameters[i].Name} is back at its starting weights");

        // Without the option the first point is after the first epoch, and the start cannot be restored.
        var other = Build(ModelKind.Wdl, Train);
        var plain = new Trainer(options with { ValidateAtStart = false }).Fit(new SupervisedObjective(other), new Adam(other.Parameters().Select(p => p.Tensor), 0.02f), Train, flipped);
        Assert.That(plain.History[0].Step, Is.GreaterThan(0));
        Assert.That(plain.Best!.Step, Is.GreaterThan(0));
    }

    [TestCase(ModelKind.Wdl)]
    [TestCase(ModelKind.XDeepFm)]
    public void The_joint_model_starts_as_the_fitted_logistic_regression(ModelKind kind)
    {
        var model = Build(kind, Train);
        var settings = TrainingSettings.For(kind) with { Epochs = 4, BatchSize = 64, Patience = 1, WideFirst = true, Seed = 2 };
        var optimizer = settings.BuildOptimizer(model.Parameters().Select(p => p.Tensor));
        var calls = new List<(TrainerOptions Options, CtrModel Model)>();
        Dictionary<string, float[]>? fittedWide = null;
        Dictionary<string, float[]>? jointStart = null;
        IOptimizer? wideStageOptimizer = null;
        Dictionary<string, float[]>? jointWideState = null;
        var log = new StringWriter();
        var report = WideFirst.Fit(new SupervisedObjective(model), optimizer, settings, settings.ToTrainerOptions() with { CheckpointPath = "never.ckpt" },
            (options, objective, stageOptimizer) =>
            {
                calls.Add((options, objective.Predictor));
                if (calls.Count == 1) wideStageOptimizer = stageOptimizer;
                if (calls.Count == 2)
                {
                    jointStart = objective.Predictor.Parameters().ToDictionary(p => p.Name, p => p.Tensor.ToArray());
                    jointWideState = ((OptimizerGroup)stageOptimizer).Members[0].ExportState().ToDictionary(e => e.Name, e => e.Data);
                }
                var r = new Trainer(options).Fit(objective, stageOptimizer, Train, Valid);
                if (calls.Count == 1)
                    fittedWide = objective.Predictor.Parameters().ToDictionary(p => p.Name, p => p.Tensor.ToArray());
                return r;
            }, log);

        Assert.That(calls, Has.Count.EqualTo(2));
        Assert.That(calls[0].Model.Config.Model, Is.EqualTo(ModelKind.Lr), "stage 1 trains a logistic regression");
        Assert.That(calls[0].Model.Parameters().Select(p => p.Name), Is.All.StartsWith("linear."));
        Assert.That(calls[0].Options.ValidateAtStart, Is.False);
        Assert.That(calls[0].Options.CheckpointPath, Is.Null, "the first stage writes no training checkpoint over the joint run's");
        Assert.That(calls[1].Model, Is.SameAs(model));
        Assert.That(calls[1].Options.ValidateAtStart, Is.True);
        Assert.That(calls[1].Options.CheckpointPath, Is.EqualTo("never.ckpt"));

        foreach (var (name, values) in jointStart!)
        {
            if (name.StartsWith("linear.", StringComparison.Ordinal))
                Assert.That(values, Is.EqualTo(fittedWide![name]), $"{name} starts as the fitted logistic regression's");
            else if (name.StartsWith("dnn_out.", StringComparison.Ordinal) || name.StartsWith("cin_out.", StringComparison.Ordinal))
                Assert.That(values, Is.All.EqualTo(0f), $"{name} starts at zero");
        }
        Assert.That(jointStart!.Keys.Count(n => n.EndsWith("_out.weight", StringComparison.Ordinal)), Is.EqualTo(kind == ModelKind.XDeepFm ? 2 : 1));
        // Every part reading the embedding starts silent, so the fitted wide weights also start column 0 of the embedding.
        foreach (var field in model.Embedding!.Fields)
        {
            var table = jointStart[$"embedding.{field.Name}.weight"];
            var w = fittedWide![$"linear.{field.Name}.weight"];
            Assert.That(Enumerable.Range(0, w.Length).Select(v => table[v * 4]), Is.EqualTo(w), $"column 0 of embedding.{field.Name}");
        }

        // The wide part's FTRL goes on from the stage's state: the same n (per-coordinate rates) and step count.
        var stageState = wideStageOptimizer!.ExportState().ToDictionary(e => e.Name, e => e.Data);
        Assert.That(stageState.Keys.Where(k => k.EndsWith(".n", StringComparison.Ordinal)).ToList(), Is.Not.Empty);
        foreach (var (name, data) in stageState.Where(e => e.Key.EndsWith(".n", StringComparison.Ordinal) || e.Key == "step"))
            Assert.That(jointWideState![name], Is.EqualTo(data), name);

        // The start scores as the logistic regression did at the point its stage restored.
        var wide = report.WideStage!;
        Assert.That(report.History[0].Step, Is.EqualTo(0));
        Assert.That(report.History[0].Auc, Is.EqualTo(wide.Best!.Auc).Within(1e-9));
        Assert.That(report.History[0].LogLoss, Is.EqualTo(wide.Best!.LogLoss).Within(1e-7));
        // And the model returned is the point the guarded rule chose, the start among the candidates.
        var final = Trainer.Evaluate(model, Valid).Result;
        Assert.That(final.LogLoss, Is.EqualTo(report.Best!.LogLoss).Within(1e-7));
        Assert.That(final.LogLoss, Is.LessThanOrEqualTo(report.History.Min(p => p.LogLoss) * (1 + settings.GuardBand) + 1e-12));
        Assert.That(log.ToString(), Does.Contain("wide part first: logistic regression on the same features (ftrl α 1 λ2 0.0001)")
            .And.Contain("joint training from the fitted wide part (Dnn").And.Contain("its weights also start column 0 of the embedding"));
    }

    [Test]
    public void A_wide_part_fitted_with_lazy_weight_decay_carries_over_with_its_decay_applied()
    {
        // Adam with decoupled decay on the tables defers each row's missed decay until it is read: the copy must read the
        // rows' true values, so that the start still scores exactly as the fitted logistic regression.
        var model = Build(ModelKind.Wdl, Train);
        var settings = TrainingSettings.For(ModelKind.Wdl) with
        {
            WideOptimizer = OptimizerKind.Adam, WideLearningRate = 0.01f, WeightDecayEmbedding = 0.5f, Epochs = 3, BatchSize = 64, Patience = 1, WideFirst = true,
        };
        var report = WideFirst.Fit(new SupervisedObjective(model), settings.BuildOptimizer(model.Parameters().Select(p => p.Tensor)), settings,
            settings.ToTrainerOptions(), (o, objective, optimizer) => new Trainer(o).Fit(objective, optimizer, Train, Valid));
        Assert.That(report.History[0].Step, Is.EqualTo(0));
        Assert.That(report.History[0].LogLoss, Is.EqualTo(report.WideStage!.Best!.LogLoss).Within(1e-6));
        Assert.That(report.History[0].Auc, Is.EqualTo(report.WideStage.Best!.Auc).Within(1e-9));
    }

    [Test]
    public void A_model_whose_embedding_products_cannot_be_silenced_keeps_its_embedding_as_initialised()
    {
        // DeepFM's FM term multiplies embeddings: LR weights in column 0 would add Σ w_i·w_j to the start, so they are not written.
        var model = Build(ModelKind.DeepFm, Train);
        var initial = model.Embedding!.Tables.Select(t => t.ToArray()).ToArray();
        var settings = TrainingSettings.For(ModelKind.DeepFm) with { Epochs = 2, BatchSize = 128, Patience = 1, WideFirst = true };
        float[][]? atJointStart = null;
        var log = new StringWriter();
        WideFirst.Fit(new SupervisedObjective(model), settings.BuildOptimizer(model.Parameters().Select(p => p.Tensor)), settings, settings.ToTrainerOptions(),
            (o, objective, optimizer) =>
            {
                if (o.ValidateAtStart) atJointStart = model.Embedding.Tables.Select(t => t.ToArray()).ToArray();
                return new Trainer(o).Fit(objective, optimizer, Train, Valid);
            }, log);
        Assert.That(atJointStart, Is.EqualTo(initial));
        Assert.That(log.ToString(), Does.Contain("joint training from the fitted wide part").And.Not.Contain("column 0 of the embedding"));
    }

    private sealed class Parts : EncodedTuneData
    {
        public override EncodedDataset Train => WideFirstTests.Train;
        public override EncodedDataset Validation => Valid;
        public override IReadOnlyList<InputField> Fields { get; } = CtrPipeline.InputFields(WideFirstTests.Train.FeatureSpace);
        public override IReadOnlyList<bool> Privileged => Fields.Select(_ => false).ToArray();
        public override EncodedDataset ReadTest() => throw new InvalidOperationException("not read here");
    }

    [Test]
    public void The_in_memory_and_tune_paths_train_wide_part_first()
    {
        var settings = TrainingSettings.For(ModelKind.DeepFm) with { Epochs = 3, BatchSize = 128, Patience = 1, WideFirst = true };
        var model = Build(ModelKind.DeepFm, Train);
        var data = new PreparedData(null!, null!, Train, Valid, Valid, CtrPipeline.InputFields(Train.FeatureSpace), [], Train); // Fit reads the three parts only
        var outcome = CtrPipeline.Train(model, data, settings);
        Assert.That(outcome.Report.WideStage, Is.Not.Null);
        Assert.That(outcome.Report.History[0].Step, Is.EqualTo(0));

        var tuneModel = Build(ModelKind.DeepFm, Train);
        var objective = new SupervisedObjective(tuneModel);
        var report = new Parts().Fit(settings, objective, settings.BuildOptimizer(tuneModel.Parameters().Select(p => p.Tensor)));
        Assert.That(report.WideStage, Is.Not.Null);
        Assert.That(report.History[0].Step, Is.EqualTo(0));
        Assert.That(report.History.Select(p => (p.Auc, p.LogLoss)), Is.EqualTo(outcome.Report.History.Select(p => (p.Auc, p.LogLoss))),
            "the same model, data and settings train the same way on both paths");
    }

    [Test]
    public void Tune_can_search_it()
    {
        var space = new SearchSpace().AddSpec("wideFirst=true|false");
        var trial = new TrialConfig(new ModelConfig { Model = ModelKind.Wdl }, TrainingSettings.For(ModelKind.Wdl));
        var settings = space.Grid().Select(s => trial.With(s).Training.WideFirst).ToArray();
        Assert.That(settings, Is.EqualTo(new[] { true, false }));
        Assert.That(TrainingSettings.For(ModelKind.Wdl).Describe(), Does.Contain("wide part fitted first"));
        Assert.That((TrainingSettings.For(ModelKind.Wdl) with { WideFirst = false }).Describe(), Does.Not.Contain("wide part fitted first"));
    }

    /// <summary>The defaults docs/results.md ("Wide part first", "The DNN from a logistic regression") chose: on for every
    /// model with a wide part beside others, and for the DNN.</summary>
    [Test]
    public void The_defaults_train_wide_part_first_wherever_a_model_has_a_wide_part_beside_others_and_for_the_dnn_and_dcns()
    {
        foreach (var kind in Enum.GetValues<ModelKind>())
            Assert.That(TrainingSettings.For(kind).WideFirst,
                Is.EqualTo(kind is ModelKind.Fm or ModelKind.Wdl or ModelKind.DeepFm or ModelKind.XDeepFm or ModelKind.Ffm or ModelKind.Dnn or ModelKind.Dcn or ModelKind.DcnV2), kind.ToString());
        Assert.That(new TrainingSettings().WideFirst, Is.False);
    }

    [Test]
    public void Off_is_one_plain_run_with_the_options_given()
    {
        var model = Build(ModelKind.Wdl, Train);
        var settings = TrainingSettings.For(ModelKind.Wdl) with { WideFirst = false };
        var options = settings.ToTrainerOptions();
        var seen = new List<TrainerOptions>();
        WideFirst.Fit(new SupervisedObjective(model), settings.BuildOptimizer(model.Parameters().Select(p => p.Tensor)), settings, options,
            (o, _, _) => { seen.Add(o); return new TrainingReport([], null, 0, TimeSpan.Zero, false); });
        Assert.That(seen, Has.Count.EqualTo(1));
        Assert.That(seen[0], Is.SameAs(options));
    }

    /// <summary>Runs WideFirst.Fit with a recording fit; asserts it was one joint run with the options given, and returns the log.</summary>
    private static string OnePlainRun(ZooModel model, TrainingSettings settings)
    {
        var options = settings.ToTrainerOptions();
        var seen = new List<TrainerOptions>();
        var log = new StringWriter();
        WideFirst.Fit(new SupervisedObjective(model), settings.BuildOptimizer(model.Parameters().Select(p => p.Tensor)), settings, options,
            (o, _, _) => { seen.Add(o); return new TrainingReport([], null, 0, TimeSpan.Zero, false); }, log);
        Assert.That(seen, Has.Count.EqualTo(1));
        Assert.That(seen[0], Is.SameAs(options), "one joint run with the options given");
        return log.ToString();
    }

    [Test]
    public void With_row_sharded_tables_it_is_not_applied_and_says_so()
    {
        var placement = new KdEngine.Sharding.TablePlacement(KdEngine.Sharding.EmbeddingSharding.Row, SingleProcess.Instance);
        ZooModel model;
        using (placement.Use()) model = Build(ModelKind.Wdl, Train);
        var settings = TrainingSettings.For(ModelKind.Wdl);
        Assert.That(OnePlainRun(model, settings), Does.Contain("wide part first: not applied — the tables are row-sharded"));
    }

    [TestCase(ModelKind.Lr, "lr has nothing beside its wide part")]
    public void Models_without_a_wide_part_beside_others_are_refused_before_anything_trains(ModelKind kind, string message)
    {
        var model = Build(kind, Train);
        var settings = TrainingSettings.For(kind) with { WideFirst = true };
        int calls = 0;
        var e = Assert.Throws<ConfigException>(() => WideFirst.Fit(new SupervisedObjective(model), settings.BuildOptimizer(model.Parameters().Select(p => p.Tensor)),
            settings, settings.ToTrainerOptions(), (_, _, _) => { calls++; return new TrainingReport([], null, 0, TimeSpan.Zero, false); }));
        Assert.That(e!.Message, Does.Contain("wideFirst").And.Contain(message));
        Assert.That(calls, Is.Zero);
        Assert.That(WideFirst.Supports(kind), Is.False);
        foreach (var k in new[] { ModelKind.Wdl, ModelKind.DeepFm, ModelKind.XDeepFm, ModelKind.Fm, ModelKind.Ffm, ModelKind.Dnn, ModelKind.Dcn, ModelKind.DcnV2 })
            Assert.That(WideFirst.Supports(k), Is.True, k.ToString());
    }

    [TestCase(ModelKind.Dnn)]
    [TestCase(ModelKind.Dcn)]
    [TestCase(ModelKind.DcnV2)]
    public void A_dnn_written_from_a_logistic_regression_scores_exactly_as_it(ModelKind kind)
    {
        // Odd sizes, a value-scaled field and a mean-pooled bag: column 0 of every embedding must pool and scale as the
        // LR's weight does, and three hidden layers must pass relu(s) − relu(−s) = s through.
        InputField[] fields =
        [
            new("a", 5),
            new("b", 4) { ScaleByValue = true },
            new("tags", 7) { IsMultiValued = true, Pooling = KdEngine.Ops.PoolingMode.Mean },
            new("c", 3),
        ];
        int[] columns = [0, 1, 0, 2];
        var lr = new ZooModel(new ModelConfig { Model = ModelKind.Lr, Seed = 1 }, fields, columns);
        var rng = new Random(11);
        foreach (var p in lr.Parameters()) // a fitted LR's weights: both signs, some large
        {
            var values = p.Tensor.ToArray();
            for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 6 - 3);
            p.Tensor.Backend.Upload(values, p.Tensor.Storage);
        }
        // DCN: the cross network beside the MLP reads the same x0 (column 0 now the LR's weights); its outputs start silent.
        var dnn = new ZooModel(new ModelConfig { Model = kind, EmbeddingDim = 5, Dnn = [13, 9, 3], CrossLayers = 2, Seed = 4 }, fields, columns);
        var untouched = dnn.Parameters().Single(p => p.Name == "embedding.a.weight").Tensor.ToArray();
        LinearInDnn.Write(dnn, lr.Parameters().ToDictionary(p => p.Name, p => p.Tensor));

        const int n = 37;
        var ids = new int[n * 3];
        var dense = new float[n * 3];
        var offsets = new int[n + 1];
        var bag = new List<int>();
        for (int b = 0; b < n; b++)
        {
            ids[b * 3] = rng.Next(5); ids[b * 3 + 1] = rng.Next(4); ids[b * 3 + 2] = rng.Next(3);
            dense[b * 3] = 1; dense[b * 3 + 1] = (float)(rng.NextDouble() * 4 - 2); dense[b * 3 + 2] = 1;
            int count = rng.Next(4); // empty bags included
            for (int t = 0; t < count; t++) bag.Add(rng.Next(7));
            offsets[b + 1] = bag.Count;
        }
        var batch = new CtrBatch(n, 3, ids, new float[n]) { DenseValues = dense, Bags = [new BagColumn(offsets, bag.ToArray())] };
        lr.Training = false;
        dnn.Training = false;
        float[] expected, actual;
        using (Tape<float>.NoGrad())
        {
            expected = lr.Forward(batch).Logits.ToArray();
            actual = dnn.Forward(batch).Logits.ToArray();
        }
        Assert.That(expected.Select(Math.Abs).Max(), Is.GreaterThan(1f), "the logits are not all near zero");
        for (int b = 0; b < n; b++) Assert.That(actual[b], Is.EqualTo(expected[b]).Within(1e-4f + 1e-5f * Math.Abs(expected[b])), $"row {b}");

        // Only column 0 of the tables changed; the other columns keep their initial values.
        var written = dnn.Parameters().Single(p => p.Name == "embedding.a.weight").Tensor.ToArray();
        var lrA = lr.Parameters().Single(p => p.Name == "linear.a.weight").Tensor.ToArray();
        for (int v = 0; v < 5; v++)
        for (int d = 0; d < 5; d++)
            Assert.That(written[v * 5 + d], Is.EqualTo(d == 0 ? lrA[v] : untouched[v * 5 + d]), $"row {v} column {d}");
    }

    [Test]
    public void A_dnn_trains_logistic_regression_first_with_ftrl_and_starts_from_it()
    {
        var model = CtrPipeline.BuildModel(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 3, Dnn = [11, 5], Seed = 5 }, CtrPipeline.InputFields(Train.FeatureSpace));
        var settings = TrainingSettings.For(ModelKind.Dnn) with { Epochs = 3, BatchSize = 64, Patience = 1, WideFirst = true, Seed = 2 };
        var stages = new List<(ModelKind Model, IOptimizer Optimizer, bool AtStart)>();
        var log = new StringWriter();
        var report = WideFirst.Fit(new SupervisedObjective(model), settings.BuildOptimizer(model.Parameters().Select(p => p.Tensor)), settings, settings.ToTrainerOptions(),
            (options, objective, optimizer) =>
            {
                stages.Add((((ZooModel)objective.Predictor).Config.Model, optimizer, options.ValidateAtStart));
                return new Trainer(options).Fit(objective, optimizer, Train, Valid);
            }, log);
        Assert.That(stages.Select(s => s.Model), Is.EqualTo(new[] { ModelKind.Lr, ModelKind.Dnn }));
        Assert.That(stages[0].Optimizer, Is.InstanceOf<Ftrl>(), "the DNN's logistic regression trains with FTRL, not the DNN's Adam");
        Assert.That(stages[1].Optimizer, Is.InstanceOf<Adam>());
        Assert.That(stages[1].AtStart, Is.True);
        Assert.That(report.History[0].Step, Is.EqualTo(0));
        Assert.That(report.History[0].Auc, Is.EqualTo(report.WideStage!.Best!.Auc).Within(1e-9), "the start scores as the fitted logistic regression");
        Assert.That(report.History[0].LogLoss, Is.EqualTo(report.WideStage.Best!.LogLoss).Within(1e-6));
        var final = Trainer.Evaluate(model, Valid).Result;
        Assert.That(final.LogLoss, Is.EqualTo(report.Best!.LogLoss).Within(1e-7));
        Assert.That(log.ToString(), Does.Contain("wide part first: logistic regression on the same features (ftrl α 1 λ2 0.0001)")
            .And.Contain("written into the DNN"));
    }

    [TestCase("tanh", "dnnActivation is tanh")]
    [TestCase("narrow", "has a layer narrower than 2")]
    [TestCase("stacked", "crossStructure is stacked")]
    public void A_dnn_that_cannot_carry_a_logistic_regression_trains_jointly_and_says_why(string what, string message)
    {
        var config = what switch
        {
            "tanh" => new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 3, Dnn = [8], DnnActivation = Activation.Tanh, Seed = 5 },
            "narrow" => new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 3, Dnn = [8, 1], Seed = 5 },
            _ => new ModelConfig { Model = ModelKind.DcnV2, EmbeddingDim = 3, Dnn = [8], CrossStructure = CrossStructure.Stacked, Seed = 5 },
        };
        var model = CtrPipeline.BuildModel(config, CtrPipeline.InputFields(Train.FeatureSpace));
        var settings = TrainingSettings.For(config.Model) with { WideFirst = true };
        Assert.That(OnePlainRun(model, settings), Does.Contain("wide part first: not applied").And.Contain(message));
        var e = Assert.Throws<ConfigException>(() => LinearInDnn.Write(model, new Dictionary<string, KdEngine.Tensors.Tensor<float>>()));
        Assert.That(e!.Message, Does.Contain(message), "writing it directly is refused with the reason");
    }

    [TestCase(ModelKind.Fm)]
    [TestCase(ModelKind.Ffm)]
    public void Fm_and_ffm_train_wide_part_first_with_their_interaction_terms_left_as_initialised(ModelKind kind)
    {
        var model = Build(kind, Train);
        var settings = TrainingSettings.For(kind) with { Epochs = 2, BatchSize = 128, Patience = 1, WideFirst = true };
        var report = WideFirst.Fit(new SupervisedObjective(model), settings.BuildOptimizer(model.Parameters().Select(p => p.Tensor)), settings,
            settings.ToTrainerOptions(), (o, objective, optimizer) => new Trainer(o).Fit(objective, optimizer, Train, Valid));
        Assert.That(report.WideStage!.Best, Is.Not.Null);
        Assert.That(report.History[0].Step, Is.EqualTo(0));
        // The interaction term is not zero at the start, so the start is near, not at, the logistic regression.
        Assert.That(report.History[0].LogLoss, Is.EqualTo(report.WideStage.Best!.LogLoss).Within(0.01));
    }


    [Test]
    public void Output_layers_that_can_be_zeroed_are_and_embedding_products_are_left_alone()
    {
        foreach (var kind in new[] { ModelKind.Wdl, ModelKind.XDeepFm, ModelKind.Dcn, ModelKind.DcnV2, ModelKind.DeepFm, ModelKind.Fm, ModelKind.Dnn })
        {
            var model = Build(kind, Train);
            foreach (var part in model.Parts)
            {
                bool zeroed = part.ZeroOutputLayer();
                bool expected = part is DnnPart or CinPart or DcnPart or DcnV2Part;
                Assert.That(zeroed, Is.EqualTo(expected), $"{kind}: {part.GetType().Name}");
            }
            var outputs = model.Parameters().Where(p => p.Name.Contains("_out.", StringComparison.Ordinal)).ToList();
            Assert.That(outputs.Count > 0, Is.EqualTo(kind != ModelKind.Fm), $"{kind}: output layers");
            foreach (var p in outputs) Assert.That(p.Tensor.ToArray(), Is.All.EqualTo(0f), $"{kind}: {p.Name}");
            if (kind == ModelKind.Dnn)
            {
                // The DNN alone has no other term: zeroed, its logit is 0 for every row.
                var logits = CtrPipeline.Logits(model, Valid);
                Assert.That(logits, Is.All.EqualTo(0f));
            }
        }
    }
}
