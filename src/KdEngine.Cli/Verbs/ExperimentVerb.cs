using System.CommandLine;
using System.Globalization;
using KdEngine.Cli.Options;
using KdEngine.Data;
using KdEngine.Experiments;
using KdEngine.Pipelines;
using KdEngine.Training;

namespace KdEngine.Cli.Verbs;

/// <summary>
/// Experiments for the docs: <c>experiment zoo</c> (every zoo model × seeds on the Criteo sample) and
/// <c>experiment kd</c> (every distillation method against the student alone, on Criteo or synthetic data).
/// </summary>
internal static class ExperimentVerb
{
    public static Command Create()
    {
        var command = new Command("experiment", "Experiments for the docs, printed as markdown tables: zoo (the zoo models) and kd (every distillation method vs the student alone).");
        command.Subcommands.Add(Zoo());
        command.Subcommands.Add(Kd());
        command.Subcommands.Add(Defaults());
        return command;
    }

    // ---------------------------------------------------------------- defaults

    private static Command Defaults()
    {
        var seeds = CliOptions.Int("--seeds", "N", "seeds 1..N for every retrained setting", 3, 1, 100);
        var datasets = CliOptions.Parsed("--datasets", "LIST", "comma-separated subset of criteo,criteo-random,synthetic",
            text => CliOptions.Items(text).Select(d => d is "criteo" or "criteo-random" or "synthetic" ? d : throw new CliException($"unknown dataset '{d}' (criteo, criteo-random, synthetic).")).ToArray(),
            () => ["criteo", "criteo-random", "synthetic"]);
        var models = CliOptions.Parsed("--models", "LIST", $"comma-separated subset of {string.Join(",", ZooExperimentConfig.ModelNames)}",
            text => CliOptions.Items(text).Select(m => ZooExperimentConfig.KindOf(m.ToLowerInvariant())).ToArray(),
            () => [KdEngine.Models.ModelKind.Lr, KdEngine.Models.ModelKind.Dnn, KdEngine.Models.ModelKind.Wdl, KdEngine.Models.ModelKind.XDeepFm]);
        var rows = CliOptions.Int("--rows", "N", "rows of the synthetic dataset", 200_000, 1000);
        var trials = CliOptions.OptionalInt("--trials", "N", "at most N trials of each tuning grid (default: the whole grid)", min: 1);
        var command = new Command("defaults",
            "For each dataset and model: the previous defaults, the current defaults and the best of the model's default tune grid " +
            "(chosen on validation), each retrained with seeds 1..N; test AUC/logloss mean ± std and the tuned − defaults gap, as a markdown table.");
        foreach (var option in new Option[] { seeds, datasets, models, rows, trials }) command.Options.Add(option);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            var result = DefaultsExperiment.Run(parse.GetValue(datasets)!, parse.GetValue(models)!, parse.GetValue(seeds), parse.GetValue(rows), parse.GetValue(trials), o.Writer,
                r => o.Line(string.Create(CultureInfo.InvariantCulture, $"  {r.Dataset} {r.Model}: previous {r.Previous.TestAuc.Mean:F4}, current {r.Current.TestAuc.Mean:F4} / {r.Current.TestLogLoss.Mean:F4}, tuned {r.Tuned.TestAuc.Mean:F4} / {r.Tuned.TestLogLoss.Mean:F4} ({r.Tuned.Best.SettingText})")));
            o.Line();
            o.Writer.Write(DefaultsExperiment.Markdown(result));
            return 0;
        });
        return command;
    }

    private const int DefaultSeeds = 5;

    private static Option<int> Seeds() => CliOptions.Int("--seeds", "N", "seeds 1..N", DefaultSeeds, 1, 1000);

    // ---------------------------------------------------------------- zoo

    private static Command Zoo()
    {
        var seeds = Seeds();
        var models = CliOptions.Parsed<string[]?>("--models", "LIST", $"comma-separated subset of {string.Join(",", ZooExperimentConfig.ModelNames)} (default: all)",
            text =>
            {
                var names = CliOptions.Items(text).Select(m => m.ToLowerInvariant()).ToArray();
                foreach (var m in names)
                    if (Array.IndexOf(ZooExperimentConfig.ModelNames, m) < 0)
                        throw new CliException($"unknown model '{m}' (expected {string.Join(",", ZooExperimentConfig.ModelNames)}).");
                return names;
            });
        var config = CliOptions.Text("--config", "FILE", "JSON {\"training\": {…}, \"minCount\": 2, \"models\": {\"dnn\": {…}, …}} (default: every model with embedding 10, DNN 400,400, CIN 100,100; FFM embedding 4)");
        var data = CliOptions.Text("--data", "FILE", "Criteo-format file (default: the bundled sample)");
        var command = new Command("zoo",
            "Train each zoo model for seeds 1..N on the same split (sequential 8:1:1, ⌊ln(v)²⌋ buckets, preprocessing fitted on the " +
            "train part) with each model's training defaults unless --config gives \"training\" (early stopping on validation AUC or logloss, the logloss-guarded best restored), and print test AUC/logloss mean ± std and training time.");
        foreach (var option in new Option[] { seeds, models, config, data }) command.Options.Add(option);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            int n = parse.GetValue(seeds);
            var experiment = parse.GetValue(config) is { } path ? ZooExperimentConfig.Load(path) : new ZooExperimentConfig();
            var names = parse.Given(models) ? parse.GetValue(models)! : ZooExperimentConfig.ModelNames; // an absent list reads as empty, not null
            var prepared = CtrPipeline.Prepare(new DataSource(parse.GetValue(data) ?? DataPaths.FindCriteoSample()) { Format = DataFormat.Criteo },
                new SplitOptions(), new PreprocessorOptions { MinCount = experiment.MinCount });
            Report.Data(o, prepared);
            o.Line($"config {experiment.ToJson().ReplaceLineEndings(" ")}");
            foreach (var m in names) o.Line($"{m}: {experiment.ConfigFor(m, 1).ToJson()}");
            var runs = ZooExperiment.Run(prepared, experiment, names, Enumerable.Range(1, n).ToArray(),
                r => o.Line(string.Create(CultureInfo.InvariantCulture, $"  {r.Model} seed {r.Seed}: test AUC {r.TestAuc:F4} logloss {r.TestLogLoss:F4} (valid AUC {r.ValidAuc:F4}), {r.Seconds:F1} s, {r.Steps} steps")));

            o.Line();
            var rows = new List<string[]>();
            foreach (var m in names)
            {
                var mine = runs.Where(r => r.Model == m).ToArray();
                string Cell(Func<ZooRun, double> f, string fmt)
                {
                    var (mean, std) = ZooExperiment.MeanStd(mine.Select(f).ToArray());
                    return mean.ToString(fmt, CultureInfo.InvariantCulture) + (double.IsNaN(std) ? "" : " ± " + std.ToString(fmt, CultureInfo.InvariantCulture));
                }
                rows.Add([m, Cell(r => r.TestAuc, "F4"), Cell(r => r.TestLogLoss, "F4"), Cell(r => r.Seconds, "F1"), mine[0].Parameters.ToString("N0", CultureInfo.InvariantCulture)]);
            }
            o.Table(["model", $"test AUC (mean ± std, {n} seed{(n == 1 ? "" : "s")})", "test logloss", "training time (s)", "parameters"], rows);
            return 0;
        });
        return command;
    }

    // ---------------------------------------------------------------- kd

    /// <summary>The experiment's settings unless options say otherwise.</summary>
    private static readonly KdExperimentOptions KdDefaults = new();

    /// <summary>The generator <c>experiment kd --dataset synthetic</c> uses unless options say otherwise.</summary>
    private static readonly SyntheticCtrOptions KdSyntheticDefaults = new() { Fields = 20, VocabSize = 2000, PrivilegedFields = 2, Seed = 42 };

    private const int DefaultSyntheticRows = 200_000;

    /// <summary>Criteo: how many fields the validation ablation declares privileged (the sample has 39 fields).</summary>
    private const int DefaultCriteoPrivileged = 5;

    private static Command Kd()
    {
        var dataset = CliOptions.Choice("--dataset", "criteo (the bundled sample, sequential 8:1:1) or synthetic (SyntheticCtr with privileged fields)",
            ["criteo", "synthetic"], "criteo");
        var seeds = Seeds();
        var methods = CliOptions.Text("--methods", "LIST",
            $"subset of {string.Join(",", KdDefaults.Methods)} (default: all; empty: teacher and student alone only)");
        var privileged = CliOptions.Int("--privileged", "N", "Criteo: how many fields the validation ablation declares privileged", DefaultCriteoPrivileged, 1, 38);
        var alpha = CliOptions.Float("--alpha", "X", "KD weight α", KdDefaults.Alpha);
        var temperature = CliOptions.Float("--temperature", "X", "KD temperature T", KdDefaults.Temperature, CliOptions.Positive);
        var rocketLambda = CliOptions.NonNegativeList("--rocket-lambda", "LIST",
            $"Rocket Launching hint weight λ; a list (e.g. 0.01,0.1,1) trains each and keeps, per seed, the λ with the best validation score (default: {CliOptions.Show(KdDefaults.RocketLambdas)})");
        var rocketSelect = CliOptions.Choice("--rocket-select", "how the λ sweep picks: validation logloss or validation AUC", ["logloss", "auc"],
            KdDefaults.RocketSelection == StoppingMetric.Auc ? "auc" : "logloss");
        var ensembleMetric = CliOptions.Choice("--ensemble-metric",
            "what the ensemble and average students stop on and are restored by: kd (the validation KD term, as ECKD) or auc (their own validation AUC, as the other methods)",
            ["kd", "auc"], KdDefaults.EnsembleStopping == StoppingMetric.Auc ? "auc" : "kd");
        var epochs = CliOptions.Int("--epochs", "N", "max epochs, early stopping on validation", KdDefaults.Epochs, 1, 1000);
        var studentDnn = CliOptions.IntList("--student-dnn", "LIST", $"student DNN widths (default: {CliOptions.Show(KdDefaults.Student.Dnn)})");
        var teacherDnn = CliOptions.IntList("--teacher-dnn", "LIST", $"teacher DNN widths, also of the ensemble's DCN and DeepFM teachers (default: {CliOptions.Show(KdDefaults.Teacher.Dnn)})");
        var teacherCin = CliOptions.IntList("--teacher-cin", "LIST", $"teacher CIN sizes (default: {CliOptions.Show(KdDefaults.Teacher.Cin)})");
        var batchSize = CliOptions.Int("--batch-size", "N", "batch size", KdDefaults.BatchSize, 1, 1 << 20);
        var learningRate = CliOptions.Float("--learning-rate", "X", "Adam learning rate of every model", KdDefaults.LearningRate, CliOptions.Positive);
        var rows = CliOptions.Int("--rows", "N", "synthetic: rows, split sequentially 8:1:1", DefaultSyntheticRows, 1000, 100_000_000);
        var fields = CliOptions.Int("--fields", "F", "synthetic: ordinary fields C1..CF", KdSyntheticDefaults.Fields, 1, 10_000);
        var vocab = CliOptions.Int("--vocab", "V", "synthetic: ids per ordinary field", KdSyntheticDefaults.VocabSize, 1, 100_000_000);
        var privilegedFields = CliOptions.Int("--privileged-fields", "K", "synthetic: privileged fields P1..PK, teacher-only in PFD", KdSyntheticDefaults.PrivilegedFields, 0, 10_000);
        var dataSeed = CliOptions.Int("--data-seed", "S", "synthetic: seed of the hidden model and the rows", KdSyntheticDefaults.Seed);
        var shape = new SyntheticShapeOptions(KdSyntheticDefaults, "synthetic: ");
        var config = CliOptions.Text("--config", "FILE",
            "JSON of the experiment's options (teacher, student, ensembleTeachers, teacherTraining, ensembleTeacherTraining, methods, …; keys left out keep their defaults; options given here override it)");

        var command = new Command("kd",
            "Train a teacher, the student alone and the student by every distillation method for seeds 1..N (early stopping on the " +
            "validation split only) and print test AUC/logloss mean ± std as a markdown table.");
        foreach (var option in new Option[] { dataset, config, seeds, methods, privileged, alpha, temperature, rocketLambda, rocketSelect, ensembleMetric, epochs, studentDnn,
                     teacherDnn, teacherCin, batchSize, learningRate, rows, fields, vocab, privilegedFields, dataSeed })
            command.Options.Add(option);
        shape.AddTo(command);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            string which = parse.GetValue(dataset)!;
            var file = KdDefaults;
            if (parse.GetValue(config) is { } path)
            {
                if (!File.Exists(path)) throw new CliException($"{Path.GetFileName(path)}: config file not found ({Path.GetFullPath(path)}).");
                file = KdExperimentOptions.FromJson(File.ReadAllText(path), Path.GetFileName(path));
            }
            T Pick<T>(Option<T> option, T fromFile) => parse.Given(option) ? parse.GetValue(option)! : fromFile;
            var options = file with
            {
                RocketLambdas = parse.Given(rocketLambda) ? parse.GetValue(rocketLambda)! : file.RocketLambdas,
                RocketSelection = parse.Given(rocketSelect) ? (parse.GetValue(rocketSelect) == "auc" ? StoppingMetric.Auc : StoppingMetric.LogLoss) : file.RocketSelection,
                EnsembleStopping = parse.Given(ensembleMetric) ? (parse.GetValue(ensembleMetric) == "auc" ? StoppingMetric.Auc : StoppingMetric.DistillationLoss) : file.EnsembleStopping,
                Alpha = Pick(alpha, file.Alpha),
                Temperature = Pick(temperature, file.Temperature),
                Epochs = Pick(epochs, file.Epochs),
                BatchSize = Pick(batchSize, file.BatchSize),
                LearningRate = Pick(learningRate, file.LearningRate),
            };
            // A list option that was not given reads as an empty array, not null: test Given, never ??.
            int[]? teacherWidths = parse.Given(teacherDnn) ? parse.GetValue(teacherDnn) : null;
            options = options with
            {
                Student = options.Student with { Dnn = parse.Given(studentDnn) ? parse.GetValue(studentDnn)! : options.Student.Dnn },
                Teacher = options.Teacher with { Dnn = teacherWidths ?? options.Teacher.Dnn, Cin = parse.Given(teacherCin) ? parse.GetValue(teacherCin)! : options.Teacher.Cin },
                EnsembleTeachers = options.EnsembleTeachers.Select(t => t with { Dnn = teacherWidths ?? t.Dnn }).ToArray(),
            };
            if (parse.GetValue(methods) is { } list) options = options with { Methods = CliOptions.Items(list) };

            Option[] synthOnly = [rows, fields, vocab, privilegedFields, dataSeed];
            if (which != "synthetic")
            {
                if ((synthOnly.FirstOrDefault(parse.Given)?.Name ?? shape.FirstGiven(parse)) is { } name)
                    throw new CliException($"experiment kd: {name} applies to --dataset synthetic only.");
            }
            else if (parse.Given(privileged))
                throw new CliException("experiment kd: --privileged is the Criteo ablation's count; for synthetic data use --privileged-fields.");

            ExperimentData data = which == "criteo"
                ? Criteo(o, options, parse.GetValue(privileged))
                : Synthetic(o, parse.GetValue(rows), shape.Apply(parse, KdSyntheticDefaults with
                {
                    Fields = parse.GetValue(fields),
                    VocabSize = parse.GetValue(vocab),
                    PrivilegedFields = parse.GetValue(privilegedFields),
                    Seed = parse.GetValue(dataSeed),
                }));

            o.Line($"teacher: {options.Teacher.ToJson()}");
            o.Line($"student: {options.Student.ToJson()}");
            if (options.Methods.Contains("ensemble") || options.Methods.Contains("average"))
                foreach (var t in options.EnsembleTeachers) o.Line($"ensemble teacher: {t.ToJson()}");
            if (options.TeacherTraining is { } teacherTraining) o.Line($"teacher trained alone with: {teacherTraining.ToJson().ReplaceLineEndings(" ")}");
            if (options.Methods.Contains("ensemble") && options.EnsembleTeacherTraining is { } trainings)
                for (int i = 0; i < trainings.Length; i++)
                    if (trainings[i] is { } t) o.Line($"ensemble teacher {i} trained alone with: {t.ToJson().ReplaceLineEndings(" ")}");
            o.Line(string.Create(CultureInfo.InvariantCulture, $"Adam lr {options.LearningRate}, batch {options.BatchSize}, up to {options.Epochs} epochs (patience {options.Patience}), alpha {options.Alpha}, T {options.Temperature}, hint weight {options.HintWeight}, rocket λ {string.Join(",", options.RocketLambdas)}{(options.RocketLambdas.Length > 1 ? $" (picked per seed by validation {options.RocketSelection.ToString().ToLowerInvariant()})" : "")}, PFD λ {options.PfdLambda} after {options.PfdWarmupSteps} steps"));
            var runs = KdExperiment.Run(data, options, Enumerable.Range(1, parse.GetValue(seeds)).ToArray(), o.Writer);
            o.Line();
            o.Line(KdExperiment.Table(runs));
            return 0;
        });
        return command;
    }

    /// <summary>The bundled Criteo sample; for PFD, the privileged fields chosen by an ablation on the validation split.</summary>
    private static ExperimentData Criteo(CliOutput o, KdExperimentOptions options, int privilegedCount)
    {
        var prepared = CtrPipeline.Prepare(new DataSource(DataPaths.FindCriteoSample()) { Format = DataFormat.Criteo },
            new SplitOptions(), new PreprocessorOptions { MinCount = SplitOptionsGroup.DefaultMinCount });
        Report.Data(o, prepared);
        var (fields, columns, _) = KdEngine.Models.ModelInputs.From(prepared.Preprocessor.FeatureSpace);
        var data = new ExperimentData(prepared.Train, prepared.Validation, prepared.Test, fields, columns, new bool[fields.Length], "criteo");
        if (!options.Methods.Contains("pfd")) return data;
        var (chosen, _) = PrivilegedFieldAblation.Choose(data, privilegedCount, seed: 1, o.Writer);
        var privileged = new bool[fields.Length];
        foreach (int f in chosen) privileged[f] = true;
        o.Line($"privileged (validation ablation): {string.Join(", ", chosen.Select(f => fields[f].Name))}");
        return data with { Privileged = privileged };
    }

    /// <summary>Seeded synthetic rows split sequentially 8:1:1, with the Bayes ceilings of the test split printed.</summary>
    private static ExperimentData Synthetic(CliOutput o, int rows, SyntheticCtrOptions generatorOptions)
    {
        var generator = SyntheticShapeOptions.Create(generatorOptions);
        var (all, logits, ordinaryLogits) = generator.GenerateWithLogits(rows);
        var parts = all.Split([8, 1, 1], SplitMode.Sequential);
        var (fields, columns, privileged) = KdEngine.Models.ModelInputs.From(all.FeatureSpace);
        var data = new ExperimentData(parts[0], parts[1], parts[2], fields, columns, privileged, "synthetic");
        o.Line($"generator: {SyntheticShapeOptions.Describe(generatorOptions)}");
        o.Line($"data: synthetic, {rows} rows ({parts[0].Count} / {parts[1].Count} / {parts[2].Count}), {fields.Length} fields of which privileged: " +
            (privileged.Any(p => p) ? string.Join(", ", fields.Where((_, i) => privileged[i]).Select(f => f.Name)) : "none") + $"; click rate {all.LabelRate:F4}");
        // The Bayes ceilings on the test split: ranking by the hidden logit itself (all information), and by its part
        // the ordinary fields determine (the best any model without the privileged fields can do).
        int testStart = DataSplit.Boundaries(rows, [8, 1, 1])[1];
        var testLabels = parts[2].Labels;
        float[] Slice(double[] z) => z[testStart..].Select(x => (float)x).ToArray();
        o.Line(string.Create(CultureInfo.InvariantCulture,
            $"Bayes test AUC: {KdEngine.Metrics.CtrMetrics.Auc(Slice(logits), testLabels):F4} with the hidden logit, " +
            $"{KdEngine.Metrics.CtrMetrics.Auc(Slice(ordinaryLogits), testLabels):F4} with its ordinary-field part (C1..C{generatorOptions.Fields} only)"));
        return data;
    }
}
