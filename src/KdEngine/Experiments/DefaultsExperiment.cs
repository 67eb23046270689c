using System.Globalization;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Training;

namespace KdEngine.Experiments;

/// <summary>One (dataset, model) line of the defaults experiment: the previous defaults, the current ones and the tuned best, each retrained with the same seeds.</summary>
public sealed record DefaultsRow(string Dataset, string Model, TuneReport Previous, TuneReport Current, TuneReport Tuned)
{
    /// <summary>Tuned mean test AUC minus the current defaults' (the target: ≤ 0.005).</summary>
    public double Gap => Tuned.TestAuc.Mean - Current.TestAuc.Mean;
}

/// <summary>
/// Are the defaults good on data nobody tuned them for? For each dataset and model: <c>kdengine train</c>'s previous defaults
/// and current defaults, each retrained with seeds 1…K, and the best setting of the model's default search grid
/// (<see cref="SearchSpace.DefaultFor"/>; chosen on validation with seed 1, then retrained with the same seeds) — all through
/// <see cref="Tuner"/>, so every choice is made on validation and the test part is read once per run. Datasets:
/// <c>criteo</c> (the bundled sample, sequential 8:1:1), <c>criteo-random</c> (random 8:1:1, seed 1) and <c>synthetic</c>
/// (<see cref="SyntheticOptions"/>: Zipf ids with a long tail of rare ids).
/// </summary>
public static class DefaultsExperiment
{
    /// <summary>The training settings <c>kdengine train</c> used before the current defaults: at most 10 epochs, early stopping on AUC with patience 2, Adam for every model.</summary>
    public static TrainingSettings PreviousDefaults => new()
    {
        Epochs = 10, Patience = 2, Metric = StoppingMetric.Auc, Optimizer = OptimizerKind.Adam, LearningRate = 1e-3f, PlateauFactor = 1,
    };

    /// <summary>The synthetic data: 20 fields of 20,000 Zipf(1.1) ids each (most ids rare), the generator's default interactions.</summary>
    public static SyntheticCtrOptions SyntheticOptions => new() { Fields = 20, VocabSize = 20_000, ZipfExponent = 1.1, Seed = 7 };

    /// <summary>Prepared data for a dataset name; synthetic rows are generated, split sequentially 8:1:1.</summary>
    public static ITuneData Load(string dataset, int syntheticRows)
    {
        switch (dataset)
        {
            case "criteo":
            case "criteo-random":
                var split = dataset == "criteo" ? new SplitOptions() : new SplitOptions { Mode = SplitMode.Random, Seed = 1 };
                return new PreparedTuneData(CtrPipeline.Prepare(new DataSource(DataPaths.FindCriteoSample()), split, new PreprocessorOptions { MinCount = 2 }));
            case "synthetic":
                var parts = new SyntheticCtr(SyntheticOptions).Generate(syntheticRows).Split([8, 1, 1]);
                return new SplitTuneData(parts[0], parts[1], parts[2]);
            default:
                throw new ArgumentException($"unknown dataset '{dataset}' (expected criteo, criteo-random or synthetic).");
        }
    }

    /// <summary>Runs every (dataset, model): previous defaults, current defaults and the tuned best, each retrained with seeds 1…<paramref name="seeds"/>.</summary>
    public static IReadOnlyList<DefaultsRow> Run(IReadOnlyList<string> datasets, IReadOnlyList<ModelKind> models, int seeds, int syntheticRows,
        int? maxTrials, TextWriter? log, Action<DefaultsRow>? onRow = null)
    {
        var rows = new List<DefaultsRow>();
        foreach (var dataset in datasets)
        {
            var data = Load(dataset, syntheticRows);
            log?.WriteLine($"{dataset}: {data.TrainRows} train / {data.ValidationRows} validation rows, {data.Fields.Sum(f => (long)f.Cardinality):N0} ids");
            foreach (var kind in models)
            {
                var model = new ModelConfig { Model = kind };
                var build = Tuner.ZooTrials(data.Fields);
                // A one-point space (the default value itself) runs a setting as-is with the tuner's seeds and single test read.
                var fixedPoint = new SearchSpace().AddSpec($"epochs={TrainingSettings.For(kind).Epochs}");
                var once = new TuneOptions { FinalSeeds = seeds };
                log?.WriteLine($"  {kind}: previous defaults");
                var previous = new Tuner(data, new TrialConfig(model, PreviousDefaults), build, once).Run(new SearchSpace().AddSpec($"epochs={PreviousDefaults.Epochs}"));
                log?.WriteLine($"  {kind}: current defaults");
                var current = new Tuner(data, new TrialConfig(model, TrainingSettings.For(kind)), build, once).Run(fixedPoint);
                log?.WriteLine($"  {kind}: tuned over " + string.Join(", ", SearchSpace.DefaultFor(kind).Parameters.Select(p => $"{p.Name} ∈ {{{string.Join(", ", p.Values.Select(SearchSpace.Text))}}}")));
                var tuned = new Tuner(data, new TrialConfig(model, TrainingSettings.For(kind)), build, once with { MaxTrials = maxTrials }, log)
                    .Run(SearchSpace.DefaultFor(kind));
                var row = new DefaultsRow(dataset, kind.ToString().ToLowerInvariant(), previous, current, tuned);
                rows.Add(row);
                onRow?.Invoke(row);
            }
        }
        return rows;
    }

    /// <summary>The markdown table of docs/results.md.</summary>
    public static string Markdown(IReadOnlyList<DefaultsRow> rows)
    {
        var inv = CultureInfo.InvariantCulture;
        string Cell((double Mean, double Std) x) => x.Mean.ToString("F4", inv) + (double.IsNaN(x.Std) ? "" : " ± " + x.Std.ToString("F4", inv));
        var lines = new List<string>
        {
            "| dataset | model | previous defaults: test AUC | logloss | current defaults: test AUC | logloss | tuned (chosen on validation) | test AUC | logloss | tuned − current AUC |",
            "|---|---|---|---|---|---|---|---|---|---|",
        };
        foreach (var r in rows)
            lines.Add($"| {r.Dataset} | {r.Model} | {Cell(r.Previous.TestAuc)} | {Cell(r.Previous.TestLogLoss)} | {Cell(r.Current.TestAuc)} | {Cell(r.Current.TestLogLoss)} | " +
                $"{r.Tuned.Best.SettingText} | {Cell(r.Tuned.TestAuc)} | {Cell(r.Tuned.TestLogLoss)} | {(r.Gap >= 0 ? "+" : "")}{r.Gap.ToString("F4", inv)} |");
        return string.Join("\n", lines) + "\n";
    }
}

/// <summary>Three encoded parts as <see cref="ITuneData"/> (no schema-privileged fields).</summary>
public sealed class SplitTuneData(EncodedDataset train, EncodedDataset validation, EncodedDataset test) : EncodedTuneData
{
    /// <inheritdoc/>
    public override EncodedDataset Train => train;
    /// <inheritdoc/>
    public override EncodedDataset Validation => validation;
    /// <inheritdoc/>
    public override IReadOnlyList<Nn.InputField> Fields { get; } = ModelInputs.From(train.FeatureSpace).Fields;
    /// <inheritdoc/>
    public override IReadOnlyList<bool> Privileged => train.FeatureSpace.Fields.Select(f => f.Privileged).ToArray();
    /// <inheritdoc/>
    public override EncodedDataset ReadTest() => test;
}
