using System.Globalization;
using KdEngine.Data;
using KdEngine.Pipelines;

namespace KdEngine.Cli;

/// <summary>Experiments for the docs: <c>experiment zoo</c> (every zoo model × seeds on the Criteo sample, a markdown table).</summary>
internal static class Experiment
{
    private static readonly CliOption[] ZooOptions =
    [
        new("seeds", "N", "seeds 1..N per model (default 5)"),
        new("models", "LIST", "comma-separated subset of lr,fm,dnn,wdl,deepfm,dcn,xdeepfm (default all)"),
        new("config", "FILE", "JSON {\"training\": {…}, \"minCount\": 2, \"models\": {\"dnn\": {…}, …}} (default: the issue's anchors)"),
        new("data", "FILE", "Criteo-format file (default: the bundled sample)"),
    ];

    public static int Run(string[] args, TextWriter o)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h")
        {
            o.WriteLine("usage: kdengine experiment zoo [--seeds N] [--models lr,dnn,…] [--config FILE]" + Environment.NewLine +
                "       kdengine experiment kd --dataset criteo|synthetic [--seeds N] [--methods …] [--rows N]" + Environment.NewLine + Environment.NewLine +
                CliArgs.Help("kdengine experiment zoo [options]", "Experiments: zoo = each zoo model on the Criteo sample (sequential 8:1:1), test AUC/logloss mean ± std over seeds and training time, as a markdown table.", ZooOptions));
            return args.Length == 0 ? 1 : 0;
        }
        if (args[0] == "kd") return RunKd(args[1..], o);
        if (args[0] != "zoo") throw new CliException($"experiment: unknown experiment '{args[0]}' (expected zoo or kd).");
        var a = CliArgs.Parse("experiment zoo", args[1..], ZooOptions);
        if (a.Flag("help"))
        {
            o.WriteLine(CliArgs.Help("kdengine experiment zoo [options]",
                "Trains each model for seeds 1..N on the same split (sequential 8:1:1, ⌊ln(v)²⌋ buckets, preprocessing fitted on the\n" +
                "train part) with early stopping on validation AUC, and prints test AUC/logloss mean ± std and training time.", ZooOptions));
            return 0;
        }
        int seeds = a.Int("seeds", 5, 1, 1000);
        var config = a.String("config") is { } path ? ZooExperimentConfig.Load(path) : new ZooExperimentConfig();
        var models = a.String("models") is { } list
            ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(m => m.ToLowerInvariant()).ToArray()
            : ZooExperimentConfig.ModelNames;
        foreach (var m in models)
            if (Array.IndexOf(ZooExperimentConfig.ModelNames, m) < 0)
                throw new CliException($"experiment zoo: unknown model '{m}' in --models (expected {string.Join(",", ZooExperimentConfig.ModelNames)}).");

        var data = CtrPipeline.Prepare(new DataSource(a.String("data") ?? DataPaths.FindCriteoSample()) { Format = DataFormat.Criteo },
            new SplitOptions(), new PreprocessorOptions { MinCount = config.MinCount });
        Commands.PrintData(o, data);
        o.WriteLine($"config {config.ToJson().ReplaceLineEndings(" ")}");
        foreach (var m in models) o.WriteLine($"{m}: {config.ConfigFor(m, 1).ToJson()}");
        var runs = ZooExperiment.Run(data, config, models, Enumerable.Range(1, seeds).ToArray(),
            r => o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {r.Model} seed {r.Seed}: test AUC {r.TestAuc:F4} logloss {r.TestLogLoss:F4} (valid AUC {r.ValidAuc:F4}), {r.Seconds:F1} s, {r.Steps} steps")));

        o.WriteLine();
        o.WriteLine($"| model | test AUC (mean ± std, {seeds} seed{(seeds == 1 ? "" : "s")}) | test logloss | training time (s) | parameters |");
        o.WriteLine("| --- | --- | --- | --- | --- |");
        foreach (var m in models)
        {
            var mine = runs.Where(r => r.Model == m).ToArray();
            string Cell(Func<ZooRun, double> f, string fmt)
            {
                var (mean, std) = ZooExperiment.MeanStd(mine.Select(f).ToArray());
                return mean.ToString(fmt, CultureInfo.InvariantCulture) + (double.IsNaN(std) ? "" : " ± " + std.ToString(fmt, CultureInfo.InvariantCulture));
            }
            o.WriteLine($"| {m} | {Cell(r => r.TestAuc, "F4")} | {Cell(r => r.TestLogLoss, "F4")} | {Cell(r => r.Seconds, "F1")} | {mine[0].Parameters:N0} |");
        }
        return 0;
    }

    /// <summary>The generator <c>experiment kd --dataset synthetic</c> uses unless options say otherwise.</summary>
    private static readonly SyntheticCtrOptions KdSyntheticDefaults = new() { Fields = 20, VocabSize = 2000, PrivilegedFields = 2, Seed = 42 };

    private static readonly CliOption[] KdOptions =
    [
        new("dataset", "NAME", "criteo (the bundled sample, sequential 8:1:1) or synthetic (SyntheticCtr with privileged fields)"),
        new("seeds", "N", "seeds 1..N (default 5)"),
        new("methods", "LIST", "subset of logits,hint,rocket,double-dnn,pfd,ensemble,average (default all; empty: teacher and student alone only)"),
        new("privileged", "N", "Criteo: how many fields the validation ablation declares privileged (default 5)"),
        new("alpha", "X", "KD weight α (default 0.5)"),
        new("temperature", "X", "KD temperature T (default 2)"),
        new("rocket-lambda", "LIST", "Rocket Launching hint weight λ; a list (e.g. 0.01,0.1,1) trains each and keeps, per seed, the λ with the best validation score (default 1)"),
        new("rocket-select", "METRIC", "how the λ sweep picks: logloss (validation logloss, default) or auc (validation AUC)"),
        new("epochs", "N", "max epochs, early stopping on validation (default 10)"),
        new("student-dnn", "LIST", "student DNN widths (default 32)"),
        new("teacher-dnn", "LIST", "teacher DNN widths, also of the ensemble's DCN and DeepFM teachers (default 400,400)"),
        new("teacher-cin", "LIST", "teacher CIN sizes (default 100,100)"),
        new("batch-size", "N", "batch size (default 256)"),
        new("learning-rate", "X", "Adam learning rate of every model (default 0.001)"),
        new("rows", "N", "synthetic: rows, split sequentially 8:1:1 (default 200000)"),
        new("fields", "F", $"synthetic: ordinary fields C1..CF (default {KdSyntheticDefaults.Fields})"),
        new("vocab", "V", $"synthetic: ids per ordinary field (default {KdSyntheticDefaults.VocabSize})"),
        new("privileged-fields", "K", $"synthetic: privileged fields P1..PK, teacher-only in PFD (default {KdSyntheticDefaults.PrivilegedFields})"),
        new("data-seed", "S", $"synthetic: seed of the hidden model and the rows (default {KdSyntheticDefaults.Seed})"),
        .. SyntheticCli.ShapeOptions(KdSyntheticDefaults).Select(o => o with { Help = "synthetic: " + o.Help }),
    ];

    /// <summary>experiment kd: every distillation method against the same student alone, on Criteo or synthetic data.</summary>
    private static int RunKd(string[] args, TextWriter o)
    {
        var a = CliArgs.Parse("experiment kd", args, KdOptions);
        if (a.Flag("help"))
        {
            o.WriteLine(CliArgs.Help("kdengine experiment kd [options]",
                "Trains a teacher, the student alone and the student by every distillation method for seeds 1..N (early stopping on the\n" +
                "validation split only) and prints test AUC/logloss mean ± std as a markdown table.", KdOptions));
            return 0;
        }
        int seeds = a.Int("seeds", 5, 1, 1000);
        string dataset = a.String("dataset") ?? "criteo";
        int[] Widths(string key, int[] fallback) => a.String(key) is { } t
            ? t.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(x =>
                int.TryParse(x, NumberStyles.Integer, CultureInfo.InvariantCulture, out int w) && w > 0
                    ? w : throw new CliException($"experiment kd: --{key} expects positive integers separated by commas, got '{x}'.")).ToArray()
            : fallback;
        float[] rocketLambdas = a.String("rocket-lambda") is { } rl
            ? rl.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(x =>
                float.TryParse(x, NumberStyles.Float, CultureInfo.InvariantCulture, out float v) && float.IsFinite(v) && v >= 0
                    ? v : throw new CliException($"experiment kd: --rocket-lambda expects numbers ≥ 0 separated by commas, got '{x}'.")).Distinct().ToArray()
            : [1f];
        if (rocketLambdas.Length == 0) throw new CliException("experiment kd: --rocket-lambda is empty.");
        var rocketSelect = (a.String("rocket-select") ?? "logloss").ToLowerInvariant() switch
        {
            "logloss" => KdEngine.Training.StoppingMetric.LogLoss,
            "auc" => KdEngine.Training.StoppingMetric.Auc,
            var other => throw new CliException($"experiment kd: unknown --rocket-select '{other}' (expected logloss or auc)."),
        };
        var options = new KdEngine.Experiments.KdExperimentOptions
        {
            RocketLambdas = rocketLambdas,
            RocketSelection = rocketSelect,
            Alpha = a.Float("alpha") ?? 0.5f,
            Temperature = a.Float("temperature") ?? 2f,
            Epochs = a.Int("epochs", 10, 1, 1000),
            BatchSize = a.Int("batch-size", 256, 1, 1 << 20),
            LearningRate = a.Float("learning-rate") is { } lr ? (lr > 0 ? lr : throw new CliException($"experiment kd: --learning-rate = {lr} must be > 0.")) : 1e-3f,
        };
        options = options with
        {
            Student = options.Student with { Dnn = Widths("student-dnn", options.Student.Dnn) },
            Teacher = options.Teacher with { Dnn = Widths("teacher-dnn", options.Teacher.Dnn), Cin = Widths("teacher-cin", options.Teacher.Cin) },
            EnsembleTeachers = options.EnsembleTeachers.Select(t => t with { Dnn = Widths("teacher-dnn", t.Dnn) }).ToArray(),
        };
        if (a.String("methods") is { } methods)
            options = options with { Methods = methods.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) };

        KdEngine.Experiments.ExperimentData data;
        if (dataset != "synthetic")
        {
            var synthOnly = new[] { "rows", "fields", "vocab", "privileged-fields", "data-seed" }.FirstOrDefault(a.Has) ?? SyntheticCli.AnyShapeOption(a);
            if (synthOnly is not null) throw new CliException($"experiment kd: --{synthOnly} applies to --dataset synthetic only.");
        }
        else if (a.Has("privileged"))
            throw new CliException("experiment kd: --privileged is the Criteo ablation's count; for synthetic data use --privileged-fields.");
        if (dataset == "criteo")
        {
            var prepared = CtrPipeline.Prepare(new DataSource(DataPaths.FindCriteoSample()) { Format = DataFormat.Criteo },
                new SplitOptions(), new PreprocessorOptions { MinCount = 2 });
            Commands.PrintData(o, prepared);
            var (fields, columns, _) = KdEngine.Models.ModelInputs.From(prepared.Preprocessor.FeatureSpace);
            data = new KdEngine.Experiments.ExperimentData(prepared.Train, prepared.Validation, prepared.Test, fields, columns, new bool[fields.Length], "criteo");
            if (options.Methods.Contains("pfd"))
            {
                var (chosen, _) = KdEngine.Experiments.PrivilegedFieldAblation.Choose(data, a.Int("privileged", 5, 1, 38), seed: 1, o);
                var privileged = new bool[fields.Length];
                foreach (int f in chosen) privileged[f] = true;
                o.WriteLine($"privileged (validation ablation): {string.Join(", ", chosen.Select(f => fields[f].Name))}");
                data = data with { Privileged = privileged };
            }
        }
        else if (dataset == "synthetic")
        {
            int rows = a.Int("rows", 200_000, 1000, 100_000_000);
            var generatorOptions = SyntheticCli.ApplyShape(a, KdSyntheticDefaults with
            {
                Fields = a.Int("fields", KdSyntheticDefaults.Fields, 1, 10_000),
                VocabSize = a.Int("vocab", KdSyntheticDefaults.VocabSize, 1, 100_000_000),
                PrivilegedFields = a.Int("privileged-fields", KdSyntheticDefaults.PrivilegedFields, 0, 10_000),
                Seed = a.Int("data-seed", KdSyntheticDefaults.Seed),
            });
            var generator = SyntheticCli.Create(generatorOptions);
            var (all, logits, ordinaryLogits) = generator.GenerateWithLogits(rows);
            var parts = all.Split([8, 1, 1], SplitMode.Sequential);
            var (fields, columns, privileged) = KdEngine.Models.ModelInputs.From(all.FeatureSpace);
            data = new KdEngine.Experiments.ExperimentData(parts[0], parts[1], parts[2], fields, columns, privileged, "synthetic");
            o.WriteLine($"generator: {SyntheticCli.Describe(generatorOptions)}");
            o.WriteLine($"data: synthetic, {rows} rows ({parts[0].Count} / {parts[1].Count} / {parts[2].Count}), {fields.Length} fields of which privileged: " +
                (privileged.Any(p => p) ? string.Join(", ", fields.Where((_, i) => privileged[i]).Select(f => f.Name)) : "none") + $"; click rate {all.LabelRate:F4}");
            // The Bayes ceilings on the test split: ranking by the hidden logit itself (all information), and by its part
            // the ordinary fields determine (the best any model without the privileged fields can do).
            int testStart = DataSplit.Boundaries(rows, [8, 1, 1])[1];
            var testLabels = parts[2].Labels;
            float[] Slice(double[] z) => z[testStart..].Select(x => (float)x).ToArray();
            o.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"Bayes test AUC: {KdEngine.Metrics.CtrMetrics.Auc(Slice(logits), testLabels):F4} with the hidden logit, " +
                $"{KdEngine.Metrics.CtrMetrics.Auc(Slice(ordinaryLogits), testLabels):F4} with its ordinary-field part (C1..C{generatorOptions.Fields} only)"));
        }
        else throw new CliException($"experiment kd: unknown dataset '{dataset}' (expected criteo or synthetic).");

        o.WriteLine($"teacher: {options.Teacher.ToJson()}");
        o.WriteLine($"student: {options.Student.ToJson()}");
        if (options.Methods.Contains("ensemble") || options.Methods.Contains("average"))
            foreach (var t in options.EnsembleTeachers) o.WriteLine($"ensemble teacher: {t.ToJson()}");
        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Adam lr {options.LearningRate}, batch {options.BatchSize}, up to {options.Epochs} epochs (patience {options.Patience}), alpha {options.Alpha}, T {options.Temperature}, hint weight {options.HintWeight}, rocket λ {string.Join(",", options.RocketLambdas)}{(options.RocketLambdas.Length > 1 ? $" (picked per seed by validation {options.RocketSelection.ToString().ToLowerInvariant()})" : "")}, PFD λ {options.PfdLambda} after {options.PfdWarmupSteps} steps"));
        var runs = KdEngine.Experiments.KdExperiment.Run(data, options, Enumerable.Range(1, seeds).ToArray(), o);
        o.WriteLine();
        o.WriteLine(KdEngine.Experiments.KdExperiment.Table(runs));
        return 0;
    }
}
