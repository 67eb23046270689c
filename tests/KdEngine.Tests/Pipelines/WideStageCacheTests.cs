using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Pipelines;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Pipelines;

/// <summary>A search reuses the wide-first stage its trials share, and every trial ends exactly as if it had trained it.</summary>
public class WideStageCacheTests
{
    private sealed class Parts : EncodedTuneData
    {
        private static readonly EncodedDataset[] Split =
            new SyntheticCtr(new SyntheticCtrOptions { Fields = 5, VocabSize = 60, Seed = 4 }).Generate(3000).Split([8, 1, 1]);

        public override EncodedDataset Train => Split[0];
        public override EncodedDataset Validation => Split[1];
        public override IReadOnlyList<InputField> Fields { get; } = ModelInputs.From(Split[0].FeatureSpace).Fields;
        public override IReadOnlyList<bool> Privileged => Fields.Select(_ => false).ToArray();
        public override EncodedDataset ReadTest() => Split[2];
    }

    private static TuneReport Search(Parts data, TrialConfig baseConfig, string space) =>
        new Tuner(data, baseConfig, Tuner.ZooTrials(data.Fields), new TuneOptions { FinalSeeds = 2 }).Run(new SearchSpace().AddSpec(space.Split(' ')[0]).AddSpec(space.Split(' ')[1]));

    // FTRL wide stages (the defaults: a DNN's logistic regression, WDL's wide part beside Adam) and an Adam wide stage with
    // lazily decayed tables (every setting in the key; the trials differ in dropout only).
    // Hits: every trial after the first (all on seed 1), and the final run on seed 1; seed 2's stage is a new one.
    [TestCase(ModelKind.Dnn, null, "lr=0.003|0.01 weightDecayEmbedding=0|0.01", 4)]
    [TestCase(ModelKind.Wdl, null, "lr=0.003|0.01 dropout=0|0.2", 4)]
    [TestCase(ModelKind.Wdl, OptimizerKind.Adam, "dropout=0|0.2 epochs=3", 2)]
    public void Trials_that_share_the_first_stage_end_bit_for_bit_as_if_each_had_trained_it(ModelKind kind, OptimizerKind? wideOptimizer, string space, int expectedHits)
    {
        var settings = TrainingSettings.For(kind) with { Epochs = 3, BatchSize = 128, Patience = 1 };
        if (wideOptimizer is { } w) settings = settings with { Optimizer = w, WideOptimizer = null, WeightDecayEmbedding = 0.01f, TableUpdate = TableUpdateMode.Lazy };
        var baseConfig = new TrialConfig(new ModelConfig { Model = kind, EmbeddingDim = 4, Dnn = [8, 8] }, settings);
        Assert.That(settings.WideFirst, Is.True);

        var cached = new Parts();
        var plain = new Parts { WideStages = null };
        var withCache = Search(cached, baseConfig, space);
        var without = Search(plain, baseConfig, space);

        Assert.That(withCache.Trials.Select(t => (t.Index, t.ValidAuc, t.ValidLogLoss, t.BestStep)),
            Is.EqualTo(without.Trials.Select(t => (t.Index, t.ValidAuc, t.ValidLogLoss, t.BestStep))), "every trial, exactly");
        Assert.That(withCache.Final.Select(f => (f.Seed, f.ValidAuc, f.TestAuc, f.TestLogLoss)),
            Is.EqualTo(without.Final.Select(f => (f.Seed, f.ValidAuc, f.TestAuc, f.TestLogLoss))), "the final runs too");
        Assert.That(cached.WideStages!.Hits, Is.EqualTo(expectedHits));
    }

    [Test]
    public void The_key_holds_what_the_stage_reads_and_nothing_else()
    {
        var data = new Parts();
        var linear = new ZooModel(new ModelConfig { Model = ModelKind.Lr, Seed = 1 }, data.Fields, ModelInputs.From(data.Train.FeatureSpace).Columns);
        var ftrl = new TrainingSettings { Optimizer = OptimizerKind.Adam, WideOptimizer = OptimizerKind.Ftrl };
        var options = ftrl.ToTrainerOptions();
        string Key(TrainingSettings s, TrainerOptions? o = null) => WideStageCache.KeyOf(s, o ?? options, linear);

        // FTRL reads neither the learning rate nor the other optimizers' L2 and decay, and the two ways of naming it agree.
        Assert.That(Key(ftrl with { LearningRate = 0.01f, WeightDecayEmbedding = 0.1f, L2Dense = 1e-4f }), Is.EqualTo(Key(ftrl)));
        Assert.That(Key(new TrainingSettings { Optimizer = OptimizerKind.Ftrl }), Is.EqualTo(Key(ftrl)));
        // It reads its own settings, and the stage's trainer options.
        Assert.That(Key(ftrl with { FtrlL2 = 1e-3f }), Is.Not.EqualTo(Key(ftrl)));
        Assert.That(Key(ftrl with { FtrlAlpha = 0.5f }), Is.Not.EqualTo(Key(ftrl)));
        Assert.That(Key(ftrl with { ClipNorm = 1f }), Is.Not.EqualTo(Key(ftrl)));
        Assert.That(Key(ftrl, options with { BatchSize = 64 }), Is.Not.EqualTo(Key(ftrl)));
        Assert.That(Key(ftrl, options with { Seed = 2 }), Is.Not.EqualTo(Key(ftrl)));
        Assert.That(Key(ftrl, options with { GuardStandardErrors = 1 }), Is.Not.EqualTo(Key(ftrl)));
        // Any other optimizer: every setting counts.
        var adam = new TrainingSettings { Optimizer = OptimizerKind.Adam };
        Assert.That(Key(adam with { LearningRate = 0.01f }), Is.Not.EqualTo(Key(adam)));
        Assert.That(Key(adam with { WeightDecayEmbedding = 0.1f }), Is.Not.EqualTo(Key(adam)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new WideStageCache(0));
    }
}
