using KdEngine.Data;
using KdEngine.Metrics;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Training;

/// <summary>
/// Logistic regression trained with FTRL-Proximal (per-step L2, the composite objective) converges to the exactly solved
/// L2-regularised logistic regression on the same one-hot features: on the bundled Criteo sample and on synthetic Zipf data,
/// its training objective is within 1e-4 of the optimum and its test AUC and logloss within 0.001 of the exact model's.
/// </summary>
public class FtrlConvergenceTests
{
    private const double Lambda = 3e-3; // near the validation-best λ of the exact solver on both datasets

    private static IEnumerable<TestCaseData> Datasets()
    {
        yield return new TestCaseData("criteo").SetName("Ftrl_LR_converges_to_the_exact_L2_solution_on_the_Criteo_sample");
        yield return new TestCaseData("synthetic").SetName("Ftrl_LR_converges_to_the_exact_L2_solution_on_synthetic_Zipf_data");
    }

    private static (EncodedDataset Train, EncodedDataset Test) Load(string which)
    {
        if (which == "criteo")
        {
            var data = CtrPipeline.Prepare(new DataSource(DataPaths.FindCriteoSample()), new SplitOptions(), new PreprocessorOptions { MinCount = 2 });
            return (data.Train, data.Test);
        }
        var parts = new SyntheticCtr(new SyntheticCtrOptions { Fields = 10, VocabSize = 1000, Seed = 5 }).Generate(20_000).Split([8, 1, 1]);
        return (parts[0], parts[2]);
    }

    [TestCaseSource(nameof(Datasets))]
    public void Converges(string which)
    {
        var (train, test) = Load(which);
        var (exactWeights, optimum) = ExactLogisticRegression.Solve(train, Lambda);
        var exact = CtrMetrics.EvaluateLogits(ExactLogisticRegression.Logits(test, exactWeights), test.Labels);

        var (fields, columns, _) = ModelInputs.From(train.FeatureSpace);
        var model = new ZooModel(new ModelConfig { Model = ModelKind.Lr }, fields, columns);
        var settings = new TrainingSettings
        {
            Optimizer = OptimizerKind.Ftrl, FtrlAlpha = 1f, FtrlBeta = 0.01f, FtrlL2 = (float)Lambda,
            FtrlRegularization = FtrlRegularization.PerStep, BatchSize = 1024,
        };
        var optimizer = settings.BuildOptimizer(model.Parameters().Select(p => p.Tensor));
        // A fixed budget and the last iterate: this checks the optimizer, not early stopping.
        new Trainer(new TrainerOptions { Epochs = 60, BatchSize = 1024, Patience = 0, RestoreBest = false, Seed = 1 })
            .Fit(new SupervisedObjective(model), optimizer, train, null);
        var ours = Trainer.Evaluate(model, test).Result;

        // The trained weights in the solver's layout (fields in order, the intercept last), for the objective.
        var flat = fields.SelectMany(f => model.Parameters().Single(p => p.Name == $"linear.{f.Name}.weight").Tensor.ToArray())
            .Append(model.Parameters().Single(p => p.Name == "linear.bias").Tensor.ToArray()[0]).Select(x => (double)x).ToArray();
        double objective = Objective(train, flat);
        TestContext.Out.WriteLine($"{which}: objective {objective:F6} vs optimum {optimum:F6}; test AUC {ours.Auc:F4} vs {exact.Auc:F4}, logloss {ours.LogLoss:F4} vs {exact.LogLoss:F4}");
        Assert.That(objective - optimum, Is.InRange(0, 1e-4), "the training objective reaches the optimum");
        Assert.That(ours.Auc, Is.EqualTo(exact.Auc).Within(0.001), "test AUC");
        Assert.That(ours.LogLoss, Is.EqualTo(exact.LogLoss).Within(0.001), "test logloss");
    }

    private static double Objective(EncodedDataset data, double[] w)
    {
        var logits = ExactLogisticRegression.Logits(data, w);
        double sum = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            double s = data.Labels[i] == 1f ? logits[i] : -logits[i];
            sum += s > 0 ? Math.Log(1 + Math.Exp(-s)) : -s + Math.Log(1 + Math.Exp(s));
        }
        return sum / logits.Length + Lambda / 2 * w.Sum(x => x * x);
    }

    [Test]
    public void The_wide_part_of_a_deep_model_trains_with_ftrl_beside_adam()
    {
        var parts = new SyntheticCtr(new SyntheticCtrOptions { Fields = 6, VocabSize = 200, Seed = 8 }).Generate(4000).Split([8, 1, 1]);
        var (fields, columns, _) = ModelInputs.From(parts[0].FeatureSpace);
        var model = new ZooModel(new ModelConfig { Model = ModelKind.Wdl, EmbeddingDim = 4, Dnn = [16] }, fields, columns);
        var settings = new TrainingSettings { WideOptimizer = OptimizerKind.Ftrl, FtrlL2 = 1e-3f, ClipNorm = 10f, Epochs = 3 };
        var optimizer = settings.BuildOptimizer(model.Parameters().Select(p => p.Tensor));
        var group = (OptimizerGroup)optimizer;
        Assert.That(group.Members[0], Is.TypeOf<Ftrl>());
        Assert.That(group.Members[0].Parameters.Select(p => p.Name), Is.All.StartWith("linear."));
        Assert.That(group.Members[1], Is.TypeOf<Adam>());
        Assert.That(group.Members[1].Parameters.Select(p => p.Name), Has.None.StartWith("linear."));
        Assert.That(group.Parameters, Has.Count.EqualTo(model.Parameters().Count));
        var report = new Trainer(settings.ToTrainerOptions()).Fit(new SupervisedObjective(model), optimizer, parts[0], parts[1]);
        Assert.That(report.Best!.Auc, Is.GreaterThan(0.6));
        Assert.That(new TrainingSettings { Optimizer = OptimizerKind.Ftrl }.BuildOptimizer(model.Parameters().Select(p => p.Tensor)), Is.TypeOf<Ftrl>(),
            "one rule for everything needs no group");
    }
    [Test]
    public void Wide_models_train_their_wide_part_with_ftrl_beside_adam_1e3_and_every_default_grid_contains_the_default_rate()
    {
        var parts = new SyntheticCtr(new SyntheticCtrOptions { Fields = 4, VocabSize = 50, Seed = 3 }).Generate(200).Split([8, 1, 1]);
        var (fields, columns, _) = ModelInputs.From(parts[0].FeatureSpace);
        foreach (var kind in new[] { ModelKind.Wdl, ModelKind.XDeepFm, ModelKind.DeepFm, ModelKind.Fm })
        {
            var model = new ZooModel(new ModelConfig { Model = kind, EmbeddingDim = 4, Dnn = [8], Cin = [4] }, fields, columns);
            var group = (OptimizerGroup)TrainingSettings.For(kind).BuildOptimizer(model.Parameters().Select(p => p.Tensor));
            Assert.That(group.Members[0], Is.TypeOf<Ftrl>(), $"{kind}: the wide part");
            Assert.That(group.Members[1], Is.TypeOf<Adam>(), $"{kind}: the other parts");
            Assert.That(group.Members[1].LearningRate, Is.EqualTo(1e-3f), $"{kind}: Adam 1e-3");
        }
        foreach (var kind in Enum.GetValues<ModelKind>().Where(k => k != ModelKind.Lr))
        {
            Assert.That(TrainingSettings.For(kind).LearningRate, Is.EqualTo(1e-3f), $"{kind} trains at Adam 1e-3");
            Assert.That(SearchSpace.DefaultFor(kind).Parameters.Single(p => p.Name == "lr").Values.Select(v => (float)v!.GetValue<double>()),
                Does.Contain(TrainingSettings.For(kind).LearningRate), $"tune's {kind} grid contains the default");
        }
    }

    [Test]
    public void Ftrl_defaults_are_alpha_1_l2_1e4_and_a_point_of_tunes_lr_grid()
    {
        var defaults = TrainingSettings.For(ModelKind.Lr);
        Assert.That(defaults.Optimizer, Is.EqualTo(OptimizerKind.Ftrl));
        Assert.That((defaults.FtrlAlpha, defaults.FtrlL2, defaults.FtrlL1, defaults.FtrlBeta), Is.EqualTo((1f, 1e-4f, 0f, 1f)));
        var grid = SearchSpace.DefaultFor(ModelKind.Lr).Parameters.ToDictionary(p => p.Name, p => p.Values.Select(v => (float)v!.GetValue<double>()).ToArray());
        Assert.That(grid["ftrlAlpha"], Does.Contain(defaults.FtrlAlpha));
        Assert.That(grid["ftrlL2"], Does.Contain(defaults.FtrlL2));
        // The wide parts train with the same FTRL settings.
        Assert.That(TrainingSettings.For(ModelKind.Wdl).FtrlL2, Is.EqualTo(defaults.FtrlL2));
    }
}
