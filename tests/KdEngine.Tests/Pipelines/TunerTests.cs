using System.Text.Json.Nodes;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Pipelines;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Pipelines;

/// <summary>The validation-only search: search spaces, parameter names, ranking, output files, and the test part read once at the end.</summary>
public class TunerTests
{
    /// <summary>Synthetic data whose test part can be read only through <see cref="ReadTest"/>, which logs (or refuses) the read.</summary>
    private sealed class GuardedData(List<string> events, bool refuse) : EncodedTuneData
    {
        private static readonly EncodedDataset[] Parts =
            new SyntheticCtr(new SyntheticCtrOptions { Fields = 5, VocabSize = 50, Seed = 9 }).Generate(3000).Split([8, 1, 1]);

        public override EncodedDataset Train => Parts[0];
        public override EncodedDataset Validation => Parts[1];
        public override IReadOnlyList<InputField> Fields { get; } = ModelInputs.From(Parts[0].FeatureSpace).Fields;
        public override IReadOnlyList<bool> Privileged => Fields.Select(_ => false).ToArray();
        public int TestReads { get; private set; }

        public override EncodedDataset ReadTest()
        {
            events.Add("test");
            TestReads++;
            return refuse ? throw new InvalidDataException("the test part was read") : Parts[2];
        }
    }

    private static TrialConfig Base() => new(
        new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 4, Dnn = [8] },
        new TrainingSettings { Epochs = 2, BatchSize = 128, Patience = 1 });

    private static SearchSpace Space() => new SearchSpace().AddSpec("lr=0.003|0.01").AddSpec("dropout=0|0.2");

    [Test]
    public void The_test_part_is_read_once_after_every_trial_and_every_final_run()
    {
        var events = new List<string>();
        var data = new GuardedData(events, refuse: false);
        string dir = Path.Combine(Path.GetTempPath(), $"kdengine-tune-{Guid.NewGuid():N}");
        try
        {
            var tuner = new Tuner(data, Base(), Tuner.ZooTrials(data.Fields), new TuneOptions { FinalSeeds = 2, OutputDirectory = dir })
            {
                OnTrial = t => events.Add($"trial {t.Index}"),
                OnFinalSeed = (seed, _, _) => events.Add($"final {seed}"),
            };
            var report = tuner.Run(Space());
            Assert.That(events, Is.EqualTo(new[] { "trial 1", "trial 2", "trial 3", "trial 4", "final 1", "final 2", "test" }));
            Assert.That(data.TestReads, Is.EqualTo(1));
            Assert.That(report.Trials, Has.Count.EqualTo(4));
            Assert.That(report.Final.Select(f => f.Seed), Is.EqualTo(new[] { 1, 2 }));
            Assert.That(report.Final.All(f => f.TestAuc > 0.5 && double.IsFinite(f.TestLogLoss)), Is.True);
            Assert.That(report.Best, Is.EqualTo(report.Trials[0]), "the best trial heads the sorted table");
            // Files: the sorted table as JSON and CSV, and the final report.
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "trials.json")))!.AsArray();
            Assert.That(json.Select(t => (int)t!["trial"]!), Is.EqualTo(report.Trials.Select(t => t.Index)));
            var csv = File.ReadAllLines(Path.Combine(dir, "trials.csv"));
            Assert.That(csv[0], Does.StartWith("rank,trial,valid_auc,valid_logloss").And.Contain(",lr,dropout,"));
            Assert.That(csv, Has.Length.EqualTo(5));
            var final = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "final.json")))!;
            Assert.That((double)final["testAuc"]!["mean"]!, Is.EqualTo(report.TestAuc.Mean).Within(1e-12));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void A_data_source_that_refuses_the_test_part_fails_only_at_the_final_report()
    {
        var events = new List<string>();
        var data = new GuardedData(events, refuse: true);
        var tuner = new Tuner(data, Base(), Tuner.ZooTrials(data.Fields), new TuneOptions { FinalSeeds = 2, Random = true, MaxTrials = 3 })
        {
            OnTrial = t => events.Add("trial"),
            OnFinalSeed = (_, _, _) => events.Add("final"),
        };
        Assert.Throws<InvalidDataException>(() => tuner.Run(Space()));
        Assert.That(events, Is.EqualTo(new[] { "trial", "trial", "trial", "final", "final", "test" }));
    }

    [Test]
    public void Grid_and_random_orders_and_the_command_line_form()
    {
        var space = new SearchSpace().AddSpec("dnn=[400,400]|[200]").AddSpec("optimizer=adam|adagrad|sgd");
        Assert.That(space.GridSize, Is.EqualTo(6));
        var grid = space.Grid().Select(SearchSpace.Describe).ToArray();
        Assert.That(grid[0], Is.EqualTo("dnn=[400,400], optimizer=adam"));
        Assert.That(grid[1], Is.EqualTo("dnn=[400,400], optimizer=adagrad"));
        Assert.That(grid[5], Is.EqualTo("dnn=[200], optimizer=sgd"));
        var random = space.Random(3).Select(SearchSpace.Describe).ToArray();
        Assert.That(random, Is.EquivalentTo(grid), "random search visits each setting once");
        Assert.That(space.Random(3).Select(SearchSpace.Describe), Is.EqualTo(random), "seeded");
        Assert.Throws<ArgumentException>(() => new SearchSpace().AddSpec("lr"));
        Assert.Throws<ArgumentException>(() => new SearchSpace().AddSpec("lr=0.1").AddSpec("lr=0.2"));
        var fromJson = SearchSpace.FromJson("{\"lr\": [0.001, 0.003], \"dnn\": [[64], [32, 16]]}");
        Assert.That(fromJson.Grid().Select(SearchSpace.Describe).Last(), Is.EqualTo("lr=0.003, dnn=[32,16]"));
        Assert.Throws<ConfigException>(() => SearchSpace.FromJson("{\"lr\": 0.001}"));
    }

    [Test]
    public void Parameter_names_resolve_to_training_model_and_distillation_settings()
    {
        var zoo = Base()
            .With("lr", JsonValue.Create(0.02))
            .With("dnn", JsonNode.Parse("[32, 16]"))
            .With("dim", JsonValue.Create(6))
            .With("optimizer", JsonValue.Create("adagrad"))
            .With("weightDecayEmbedding", JsonValue.Create(0.5))
            .With("embeddingOutputL2", JsonValue.Create(1e-4))
            .With("tableUpdate", JsonValue.Create("dense"));
        Assert.That(zoo.Training.LearningRate, Is.EqualTo(0.02f));
        Assert.That(zoo.Model.Dnn, Is.EqualTo(new[] { 32, 16 }));
        Assert.That(zoo.Model.EmbeddingDim, Is.EqualTo(6));
        Assert.That(zoo.Training.Optimizer, Is.EqualTo(OptimizerKind.Adagrad));
        Assert.That(zoo.Training.WeightDecayEmbedding, Is.EqualTo(0.5f));
        Assert.That(zoo.Model.EmbeddingOutputL2, Is.EqualTo(1e-4f));
        Assert.That(zoo.Training.TableUpdate, Is.EqualTo(TableUpdateMode.Dense));
        Assert.That(Assert.Throws<ConfigException>(() => Base().With("learningrat", JsonValue.Create(1)))!.Message,
            Does.Contain("'learningrat'").And.Contain("learningRate"));
        Assert.That(Assert.Throws<ConfigException>(() => Base().With("dropout", JsonValue.Create(2)))!.Message, Does.Contain("dropout"));
        Assert.That(Assert.Throws<ConfigException>(() => Base().With("optimizer", JsonValue.Create("lbfgs")))!.Message, Does.Contain("lbfgs"));
        Assert.Throws<ConfigException>(() => Base().With("seed", JsonValue.Create(3)));

        var student = new ModelConfig { Model = ModelKind.Dnn, Dnn = [16] };
        var kd = new TrialConfig(student, new TrainingSettings(), new DistillConfig { Student = student })
            .With("alpha", JsonValue.Create(0.3))
            .With("T", JsonValue.Create(4))
            .With("dnn", JsonNode.Parse("[64]"))
            .With("teacher.dnn", JsonNode.Parse("[100]"))
            .With("lambda", JsonValue.Create(0.1));
        Assert.That(kd.Distill!.Alpha, Is.EqualTo(0.3f));
        Assert.That(kd.Distill.Temperature, Is.EqualTo(4f));
        Assert.That(kd.Distill.Student.Dnn, Is.EqualTo(new[] { 64 }), "model keys mean the student's in a distillation search");
        Assert.That(kd.Model.Dnn, Is.EqualTo(new[] { 64 }));
        Assert.That(kd.Distill.Teacher.Dnn, Is.EqualTo(new[] { 100 }));
        Assert.That(kd.Distill.Lambda, Is.EqualTo(0.1f));
        var seeded = kd.WithSeed(7);
        Assert.That((seeded.Model.Seed, seeded.Training.Seed, seeded.Distill!.Student.Seed, seeded.Distill.Seed), Is.EqualTo((7, 7, 7, 7)));
    }

    private static Trial T(int index, double auc, double logLoss) => new(index, [], auc, logLoss, 0, 0, 0, 0);

    [Test]
    public void Guarded_ranking_prefers_the_best_auc_within_the_logloss_band()
    {
        var trials = new[] { T(1, 0.80, 0.500), T(2, 0.81, 0.460), T(3, 0.79, 0.450), T(4, 0.805, 0.452), new Trial(5, [], double.NaN, double.NaN, 0, 0, 0, 0, "diverged") };
        Assert.That(Tuner.Rank(trials, SelectionMetric.GuardedAuc, 0.005).Select(t => t.Index), Is.EqualTo(new[] { 4, 3, 2, 1, 5 }));
        Assert.That(Tuner.Rank(trials, SelectionMetric.Auc, 0.005).Select(t => t.Index), Is.EqualTo(new[] { 2, 4, 1, 3, 5 }));
        Assert.That(Tuner.Rank(trials, SelectionMetric.LogLoss, 0.005).Select(t => t.Index), Is.EqualTo(new[] { 3, 4, 2, 1, 5 }));
    }

    [Test]
    public void Distillation_searches_build_the_method_from_each_trial()
    {
        var events = new List<string>();
        var data = new GuardedData(events, refuse: false);
        var student = new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 4, Dnn = [8] };
        var baseConfig = new TrialConfig(student, new TrainingSettings { Epochs = 1, BatchSize = 256 },
            new DistillConfig { Student = student, Teacher = new ModelConfig { Model = ModelKind.Wdl, EmbeddingDim = 4, Dnn = [16] }, Lambda = 0.1f });
        var tuner = new Tuner(data, baseConfig, Tuner.DistillTrials(DistillMethod.Rocket, data, []), new TuneOptions { FinalSeeds = 1 });
        var report = tuner.Run(new SearchSpace().AddSpec("lambda=0.01|1"));
        Assert.That(report.Trials, Has.Count.EqualTo(2));
        Assert.That(report.FinalModels[0].Config.Dnn, Is.EqualTo(new[] { 8 }), "the exported model is the student");
        Assert.That(data.TestReads, Is.EqualTo(1));
    }
}
