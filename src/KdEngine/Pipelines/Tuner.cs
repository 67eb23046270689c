using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using KdEngine.Data;
using KdEngine.Metrics;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Training;

namespace KdEngine.Pipelines;

/// <summary>
/// The data a search sees: it trains on the train part with early stopping on the validation part, scores models on
/// validation, and scores the final models on the test part through <see cref="ScoreTest"/> — which the tuner calls
/// once, after every trial and every final run, to report. The parts may be in memory (<see cref="EncodedTuneData"/>)
/// or streamed from files of any size (<see cref="StreamedTuneData"/>).
/// </summary>
public interface ITuneData
{
    /// <summary>The model input fields of the encoded data.</summary>
    IReadOnlyList<InputField> Fields { get; }
    /// <summary>Per input field: teacher-only (privileged)?</summary>
    IReadOnlyList<bool> Privileged { get; }
    /// <summary>Rows of the train part (−1 when not known before the first pass).</summary>
    long TrainRows { get; }
    /// <summary>Rows of the validation part (−1 when not known before the first pass).</summary>
    long ValidationRows { get; }
    /// <summary>Trains <paramref name="objective"/> with <paramref name="settings"/> on the train part, validating on the validation part.</summary>
    TrainingReport Fit(TrainingSettings settings, IObjective objective, IOptimizer optimizer);
    /// <summary>Scores the validation part in order (evaluation mode): metrics, one logit and one label per row.</summary>
    (EvaluationResult Result, float[] Logits, float[] Labels) ScoreValidation(CtrModel model);
    /// <summary>Scores every model on the test part, in order; called once, for the final report.</summary>
    IReadOnlyList<(float[] Logits, float[] Labels)> ScoreTest(IReadOnlyList<CtrModel> models);
}

/// <summary>Parts held in memory as <see cref="EncodedDataset"/>s: the test part is reached only through <see cref="ReadTest"/>.</summary>
public abstract class EncodedTuneData : ITuneData
{
    /// <summary>The train part (every trial trains on it).</summary>
    public abstract EncodedDataset Train { get; }
    /// <summary>The validation part (early stopping, ranking, calibration).</summary>
    public abstract EncodedDataset Validation { get; }
    /// <inheritdoc/>
    public abstract IReadOnlyList<InputField> Fields { get; }
    /// <inheritdoc/>
    public abstract IReadOnlyList<bool> Privileged { get; }
    /// <summary>The test part; called once, by <see cref="ScoreTest"/>.</summary>
    public abstract EncodedDataset ReadTest();

    /// <inheritdoc/>
    public long TrainRows => Train.Count;
    /// <inheritdoc/>
    public long ValidationRows => Validation.Count;
    /// <summary>First stages of wide-first trials, reused across trials that share them (see <see cref="WideStageCache"/>); null trains every stage.</summary>
    public WideStageCache? WideStages { get; init; } = new();
    /// <inheritdoc/>
    public TrainingReport Fit(TrainingSettings settings, IObjective objective, IOptimizer optimizer) =>
        WideFirst.Fit(objective, optimizer, settings, settings.ToTrainerOptions(),
            (options, stageObjective, stageOptimizer) => new Trainer(options).Fit(stageObjective, stageOptimizer, Train, Validation), cache: WideStages);
    /// <inheritdoc/>
    public (EvaluationResult Result, float[] Logits, float[] Labels) ScoreValidation(CtrModel model)
    {
        var (result, logits) = Trainer.Evaluate(model, Validation);
        return (result, logits, Validation.Labels);
    }
    /// <inheritdoc/>
    public IReadOnlyList<(float[] Logits, float[] Labels)> ScoreTest(IReadOnlyList<CtrModel> models)
    {
        var test = ReadTest();
        return models.Select(m => (CtrPipeline.Logits(m, test), test.Labels)).ToList();
    }
}

/// <summary>Prepared data as <see cref="ITuneData"/>.</summary>
public sealed class PreparedTuneData(PreparedData data) : EncodedTuneData
{
    /// <inheritdoc/>
    public override EncodedDataset Train => data.Train;
    /// <inheritdoc/>
    public override EncodedDataset Validation => data.Validation;
    /// <inheritdoc/>
    public override IReadOnlyList<InputField> Fields => data.Fields;
    /// <inheritdoc/>
    public override IReadOnlyList<bool> Privileged => data.Privileged;
    /// <inheritdoc/>
    public override EncodedDataset ReadTest() => data.Test;
}

/// <summary>How a search runs.</summary>
public sealed record TuneOptions
{
    /// <summary>Grid search (every setting in order) or random search (settings of the grid in a seeded random order, no repeats).</summary>
    public bool Random { get; init; }
    /// <summary>At most this many trials; null: the whole grid (grid search) or 20 (random search).</summary>
    public int? MaxTrials { get; init; }
    /// <summary>No trial starts after this much time; null: no time limit.</summary>
    public TimeSpan? TimeBudget { get; init; }
    /// <summary>Seed of the random order.</summary>
    public int SearchSeed { get; init; } = 1;
    /// <summary>How trials are ranked on validation: AUC, logloss, or the best AUC among trials within <see cref="GuardBand"/> of the lowest logloss.</summary>
    public SelectionMetric RankBy { get; init; } = SelectionMetric.GuardedAuc;
    /// <summary>The logloss band of guarded-AUC ranking, relative to the lowest validation logloss.</summary>
    public double GuardBand { get; init; } = 0.005;
    /// <summary>Seeds the best setting is retrained with (1…N), each evaluated on validation, then all on test once.</summary>
    public int FinalSeeds { get; init; } = 3;
    /// <summary>Post-hoc calibration fitted on validation for each final model (reported on test with and without).</summary>
    public CalibrationKind Calibration { get; init; } = CalibrationKind.None;
    /// <summary>Where trials.json, trials.csv and final.json go (rewritten after every trial); null: nowhere.</summary>
    public string? OutputDirectory { get; init; }

    /// <summary>Checks every option; a bad one is an <see cref="ArgumentException"/> naming it.</summary>
    public void Validate()
    {
        if (MaxTrials is < 1) throw new ConfigException($"tune: maxTrials = {MaxTrials}; expected ≥ 1.");
        if (TimeBudget is { } t && t <= TimeSpan.Zero) throw new ConfigException($"tune: the time budget {t} must be positive.");
        if (FinalSeeds < 1) throw new ConfigException($"tune: finalSeeds = {FinalSeeds}; expected ≥ 1.");
        if (!(GuardBand >= 0)) throw new ConfigException($"tune: guardBand = {GuardBand}; expected ≥ 0.");
        if (RankBy is not (SelectionMetric.Auc or SelectionMetric.LogLoss or SelectionMetric.GuardedAuc)) throw new ConfigException("tune: trials are ranked by auc, logloss or guarded AUC.");
    }
}

/// <summary>One trial: the setting and the validation metrics of its restored (selected) point.</summary>
public sealed record Trial(int Index, IReadOnlyList<(string Name, JsonNode? Value)> Setting, double ValidAuc, double ValidLogLoss,
    long BestStep, int BestEpoch, long Steps, double Seconds, string? Error = null)
{
    /// <summary>The setting as name=value pairs.</summary>
    public string SettingText => SearchSpace.Describe(Setting);
}

/// <summary>The best setting retrained with one seed: validation metrics, then test metrics (read once, at the end).</summary>
public sealed record FinalRun(int Seed, double ValidAuc, double ValidLogLoss, double TestAuc, double TestLogLoss, double TestEce,
    double CalibratedTestLogLoss, double CalibratedTestEce, long Steps, string StopReason);

/// <summary>What a search found.</summary>
public sealed record TuneReport(IReadOnlyList<Trial> Trials, Trial Best, TrialConfig BestConfig, IReadOnlyList<FinalRun> Final,
    IReadOnlyList<ZooModel> FinalModels, IReadOnlyList<LogitCalibration> FinalCalibrations)
{
    /// <summary>Test AUC over the final seeds: mean and sample standard deviation.</summary>
    public (double Mean, double Std) TestAuc => ZooExperiment.MeanStd(Final.Select(r => r.TestAuc).ToArray());
    /// <summary>Test logloss over the final seeds: mean and sample standard deviation.</summary>
    public (double Mean, double Std) TestLogLoss => ZooExperiment.MeanStd(Final.Select(r => r.TestLogLoss).ToArray());
}

/// <summary>What one trial trains: the objective and the model it evaluates and exports.</summary>
public sealed record TrialBuild(IObjective Objective, ZooModel Model);

/// <summary>
/// Validation-only hyper-parameter search (the shape of FuxiCTR's autotuner): every trial trains on the train part with
/// early stopping on the validation part and is ranked by its validation metric; the table of trials (sorted) is printed
/// after each trial and written as JSON and CSV; then the best setting is retrained with several seeds and only then is the
/// test part read — once — to report test AUC, logloss and ECE (mean ± std over the seeds). Nothing before the final report
/// touches the test part (<see cref="ITuneData.ScoreTest"/>).
/// </summary>
public sealed class Tuner(ITuneData data, TrialConfig baseConfig, Func<TrialConfig, TrialBuild> build, TuneOptions options,
    TextWriter? output = null)
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Called after every trial (a live table of a UI, tests).</summary>
    public Action<Trial>? OnTrial { get; init; }
    /// <summary>Called after every final run, before the test part is read.</summary>
    public Action<int, double, double>? OnFinalSeed { get; init; }

    /// <summary>A search over zoo models: each trial trains <c>new ZooModel(config.Model, fields)</c> with BCE.</summary>
    public static Func<TrialConfig, TrialBuild> ZooTrials(IReadOnlyList<InputField> fields) => config =>
    {
        var model = CtrPipeline.BuildModel(config.Model, fields);
        return new TrialBuild(new SupervisedObjective(model), model);
    };

    /// <summary>
    /// A search over a distillation method: each trial builds the method's objective from the trial's
    /// <see cref="TrialConfig.Distill"/> (student settings, α, T, λ, …) over the same frozen teachers.
    /// </summary>
    public static Func<TrialConfig, TrialBuild> DistillTrials(DistillMethod method, ITuneData data, IReadOnlyList<Distillation.ITeacher> teachers) => config =>
    {
        var distill = config.Distill ?? throw new ConfigException("tune distill: the trial has no distillation config.");
        var run = DistillPipeline.Build(method, distill, data.Fields, data.Privileged, teachers);
        return new TrialBuild(run.Objective, run.Student);
    };

    /// <summary>Runs the search on validation, retrains the best setting with the final seeds, then reads the test part once.</summary>
    public TuneReport Run(SearchSpace space)
    {
        ArgumentNullException.ThrowIfNull(space);
        options.Validate();
        if (space.Parameters.Count == 0) throw new ConfigException("tune: the search space is empty; give at least one parameter.");
        // Every setting is checked before any training: a misspelt name fails now, not after an hour.
        foreach (var setting in space.Grid().Take(10_000)) baseConfig.With(setting);
        int maxTrials = options.MaxTrials ?? (options.Random ? 20 : (int)Math.Min(space.GridSize, int.MaxValue));
        var settings = (options.Random ? space.Random(options.SearchSeed) : space.Grid()).Take(maxTrials);
        output?.WriteLine($"tune: {(options.Random ? "random" : "grid")} search over {space.Parameters.Count} parameters ({space.GridSize} settings), " +
            $"at most {maxTrials} trials{(options.TimeBudget is { } tb ? $" or {tb.TotalMinutes.ToString("G3", Inv)} min" : "")}; ranked by validation {RankName()}; " +
            $"{Rows(data.TrainRows)} train / {Rows(data.ValidationRows)} validation rows (the test part is read once, at the end)");

        var trials = new List<Trial>();
        var clock = Stopwatch.StartNew();
        foreach (var setting in settings)
        {
            if (options.TimeBudget is { } budget && clock.Elapsed >= budget)
            {
                output?.WriteLine($"tune: the time budget ({budget.TotalMinutes.ToString("G3", Inv)} min) is spent after {trials.Count} trials.");
                break;
            }
            var trial = RunTrial(trials.Count + 1, setting);
            trials.Add(trial);
            OnTrial?.Invoke(trial);
            var ranked = Rank(trials);
            WriteTable(output, ranked, trial.Index);
            WriteTrialFiles(ranked);
        }
        var rankedTrials = Rank(trials);
        var best = rankedTrials.FirstOrDefault(t => t.Error is null)
            ?? throw new InvalidOperationException("tune: every trial failed; see the errors in the table.");
        var bestConfig = baseConfig.With(best.Setting);
        output?.WriteLine($"tune: best trial #{best.Index}: {best.SettingText} (validation AUC {best.ValidAuc.ToString("F4", Inv)}, logloss {best.ValidLogLoss.ToString("F5", Inv)}); " +
            $"retraining it with seeds 1…{options.FinalSeeds}");

        // Final runs: validation only; the models are kept for the one test read below.
        var models = new List<ZooModel>();
        var calibrations = new List<LogitCalibration>();
        var partial = new List<(int Seed, double Auc, double LogLoss, long Steps, string Reason)>();
        for (int seed = 1; seed <= options.FinalSeeds; seed++)
        {
            var config = bestConfig.WithSeed(seed);
            var run = build(config);
            var report = Train(run, config);
            var (valid, validLogits, validLabels) = data.ScoreValidation(run.Model);
            models.Add(run.Model);
            calibrations.Add(options.Calibration == CalibrationKind.None ? LogitCalibration.Identity
                : LogitCalibration.Fit(validLogits, validLabels, options.Calibration));
            partial.Add((seed, valid.Auc, valid.LogLoss, report.Steps, report.StopReason));
            OnFinalSeed?.Invoke(seed, valid.Auc, valid.LogLoss);
            output?.WriteLine($"  seed {seed}: validation AUC {valid.Auc.ToString("F4", Inv)}, logloss {valid.LogLoss.ToString("F5", Inv)} ({report.Steps} steps; {report.StopReason})");
        }

        var scored = data.ScoreTest(models); // the only read of the test part
        var final = new List<FinalRun>();
        for (int k = 0; k < models.Count; k++)
        {
            var (logits, labels) = scored[k];
            var raw = CtrMetrics.EvaluateLogits(logits, labels);
            double ece = CalibrationMetrics.Reliability(logits, labels).Ece;
            calibrations[k].Apply(logits);
            double calibratedLogLoss = CtrMetrics.LogLossFromLogits(logits, labels);
            double calibratedEce = CalibrationMetrics.Reliability(logits, labels).Ece;
            var p = partial[k];
            final.Add(new FinalRun(p.Seed, p.Auc, p.LogLoss, raw.Auc, raw.LogLoss, ece, calibratedLogLoss, calibratedEce, p.Steps, p.Reason));
        }
        var result = new TuneReport(rankedTrials, best, bestConfig, final, models, calibrations);
        var (auc, aucStd) = result.TestAuc;
        var (ll, llStd) = result.TestLogLoss;
        output?.WriteLine($"tune: test (read once) over {final.Count} seeds: AUC {auc.ToString("F4", Inv)} ± {aucStd.ToString("F4", Inv)}, " +
            $"logloss {ll.ToString("F4", Inv)} ± {llStd.ToString("F4", Inv)}, ECE {final.Average(r => r.TestEce).ToString("F4", Inv)}" +
            (options.Calibration == CalibrationKind.None ? "" : $"; with {options.Calibration.ToString().ToLowerInvariant()} scaling fitted on validation: " +
                $"logloss {final.Average(r => r.CalibratedTestLogLoss).ToString("F4", Inv)}, ECE {final.Average(r => r.CalibratedTestEce).ToString("F4", Inv)}"));
        WriteFinal(result);
        return result;
    }

    private Trial RunTrial(int index, IReadOnlyList<(string Name, JsonNode? Value)> setting)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            var config = baseConfig.With(setting).WithSeed(1);
            var run = build(config);
            var report = Train(run, config);
            var best = report.Best ?? throw new InvalidOperationException("no validation point");
            return new Trial(index, setting, best.Auc, best.LogLoss, best.Step, best.Epoch, report.Steps, clock.Elapsed.TotalSeconds);
        }
        catch (Exception e) when (e is TrainingDivergedException or ConfigException or ArgumentException or InvalidOperationException)
        {
            return new Trial(index, setting, double.NaN, double.NaN, 0, 0, 0, clock.Elapsed.TotalSeconds, e.Message);
        }
    }

    private TrainingReport Train(TrialBuild run, TrialConfig config)
    {
        var optimizer = config.Training.BuildOptimizer(run.Objective.Trainable.Parameters().Select(p => p.Tensor));
        return data.Fit(config.Training, run.Objective, optimizer);
    }

    private static string Rows(long rows) => rows < 0 ? "?" : rows.ToString("N0", Inv);

    /// <summary>Trials best first: by AUC, by logloss, or (guarded) by AUC among those within the band of the lowest logloss, then the rest by AUC; failures last.</summary>
    private List<Trial> Rank(List<Trial> trials) => Rank(trials, options.RankBy, options.GuardBand);

    internal static List<Trial> Rank(IReadOnlyList<Trial> trials, SelectionMetric rankBy, double guardBand)
    {
        var ok = trials.Where(t => t.Error is null && !double.IsNaN(t.ValidLogLoss)).ToList();
        double lowest = ok.Count == 0 ? double.NaN : ok.Min(t => t.ValidLogLoss);
        bool Eligible(Trial t) => t.ValidLogLoss <= lowest * (1 + guardBand);
        IEnumerable<Trial> ordered = rankBy switch
        {
            SelectionMetric.LogLoss => ok.OrderBy(t => t.ValidLogLoss).ThenBy(t => t.Index),
            SelectionMetric.Auc => ok.OrderByDescending(t => t.ValidAuc).ThenBy(t => t.Index),
            _ => ok.OrderBy(t => Eligible(t) ? 0 : 1).ThenByDescending(t => t.ValidAuc).ThenBy(t => t.Index),
        };
        return ordered.Concat(trials.Where(t => !ok.Contains(t))).ToList();
    }

    private string RankName() => options.RankBy switch
    {
        SelectionMetric.Auc => "AUC",
        SelectionMetric.LogLoss => "logloss",
        _ => $"AUC within {(options.GuardBand * 100).ToString("G3", Inv)}% of the lowest logloss",
    };

    private static void WriteTable(TextWriter? output, List<Trial> ranked, int latest)
    {
        if (output is null) return;
        var t = ranked.First(x => x.Index == latest);
        output.WriteLine($"trial {t.Index,3}: {(t.Error is null ? $"AUC {t.ValidAuc.ToString("F4", Inv)}  logloss {t.ValidLogLoss.ToString("F5", Inv)}  best at epoch {t.BestEpoch}" : "failed: " + t.Error)}  ({t.Seconds.ToString("F1", Inv)} s)  {t.SettingText}");
        output.WriteLine("   rank  trial  valid AUC  logloss   setting");
        foreach (var (x, r) in ranked.Take(5).Select((x, i) => (x, i + 1)))
            output.WriteLine($"   {r,4}  {x.Index,5}  {(x.Error is null ? x.ValidAuc.ToString("F4", Inv) : "failed")}     {(x.Error is null ? x.ValidLogLoss.ToString("F5", Inv) : "")}   {x.SettingText}");
    }

    private void WriteTrialFiles(List<Trial> ranked)
    {
        if (options.OutputDirectory is not { } dir) return;
        Directory.CreateDirectory(dir);
        var json = new JsonArray(ranked.Select((t, i) => (JsonNode)TrialJson(t, i + 1)).ToArray());
        WriteAtomic(Path.Combine(dir, "trials.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        var names = ranked.SelectMany(t => t.Setting.Select(p => p.Name)).Distinct().ToArray();
        var csv = new StringBuilder("rank,trial,valid_auc,valid_logloss,best_step,best_epoch,steps,seconds," + string.Join(",", names.Select(Csv)) + ",error\n");
        foreach (var (t, r) in ranked.Select((t, i) => (t, i + 1)))
        {
            csv.Append(string.Create(Inv, $"{r},{t.Index},{t.ValidAuc:R},{t.ValidLogLoss:R},{t.BestStep},{t.BestEpoch},{t.Steps},{t.Seconds:F2},"));
            csv.Append(string.Join(",", names.Select(n => Csv(SearchSpace.Text(t.Setting.FirstOrDefault(p => p.Name == n).Value)))));
            csv.Append(',').Append(Csv(t.Error ?? "")).Append('\n');
        }
        WriteAtomic(Path.Combine(dir, "trials.csv"), csv.ToString());
    }

    private static JsonObject TrialJson(Trial t, int rank)
    {
        var setting = new JsonObject();
        foreach (var (name, value) in t.Setting) setting[name] = value?.DeepClone();
        return new JsonObject
        {
            ["rank"] = rank, ["trial"] = t.Index, ["setting"] = setting,
            ["validAuc"] = Number(t.ValidAuc), ["validLogLoss"] = Number(t.ValidLogLoss),
            ["bestStep"] = t.BestStep, ["bestEpoch"] = t.BestEpoch, ["steps"] = t.Steps, ["seconds"] = Math.Round(t.Seconds, 2),
            ["error"] = t.Error,
        };
    }

    private void WriteFinal(TuneReport r)
    {
        if (options.OutputDirectory is not { } dir) return;
        var (auc, aucStd) = r.TestAuc;
        var (ll, llStd) = r.TestLogLoss;
        var json = new JsonObject
        {
            ["best"] = TrialJson(r.Best, 1),
            ["model"] = JsonNode.Parse(r.BestConfig.Model.ToJson()),
            ["training"] = JsonSerializer.SerializeToNode(r.BestConfig.Training, TrainingSettings.Json),
            ["distill"] = r.BestConfig.Distill is null ? null : JsonSerializer.SerializeToNode(r.BestConfig.Distill, TrainingSettings.Json),
            ["final"] = new JsonArray(r.Final.Select(f => (JsonNode)new JsonObject
            {
                ["seed"] = f.Seed, ["validAuc"] = Number(f.ValidAuc), ["validLogLoss"] = Number(f.ValidLogLoss),
                ["testAuc"] = Number(f.TestAuc), ["testLogLoss"] = Number(f.TestLogLoss), ["testEce"] = Number(f.TestEce),
                ["calibratedTestLogLoss"] = Number(f.CalibratedTestLogLoss), ["calibratedTestEce"] = Number(f.CalibratedTestEce),
                ["steps"] = f.Steps, ["stopReason"] = f.StopReason,
            }).ToArray()),
            ["testAuc"] = new JsonObject { ["mean"] = Number(auc), ["std"] = Number(aucStd) },
            ["testLogLoss"] = new JsonObject { ["mean"] = Number(ll), ["std"] = Number(llStd) },
        };
        WriteAtomic(Path.Combine(dir, "final.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    private static JsonNode? Number(double x) => double.IsFinite(x) ? JsonValue.Create(x) : null;

    private static string Csv(string s) => s.Contains(',') || s.Contains('"') || s.Contains('\n') ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;

    private static void WriteAtomic(string path, string text)
    {
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }
}
