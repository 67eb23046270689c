using System.CommandLine;
using KdEngine.Cli.Options;
using KdEngine.Data;
using KdEngine.Metrics;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Training;

namespace KdEngine.Cli.Verbs;

/// <summary>
/// <c>tune</c>: a validation-only hyper-parameter search for a zoo model (or, with <c>--method</c>, for a distillation),
/// then the best setting retrained with several seeds and the test part read once.
/// </summary>
internal static class TuneVerb
{
    public static Command Create()
    {
        var model = CliOptions.Parsed<ModelKind?>("--model", string.Join("|", ZooExperimentConfig.ModelNames),
            "the model to tune (overrides the config's model)", text => ZooExperimentConfig.KindOf(text.ToLowerInvariant()));
        var config = CliOptions.Text("--config", "FILE", "the base: a ModelConfig JSON, or with --method a kd.json DistillConfig");
        var method = CliOptions.Parsed<DistillMethod?>("--method", "logits|hint|rocket|double-dnn|pfd|ensemble",
            "tune a distillation instead: parameters are the student's settings and the method's (alpha, T, lambda, …)", text => DistillConfig.ParseMethod(text));
        var teachers = CliOptions.Repeated("--teacher", "FILE", "with --method: a frozen teacher checkpoint (repeat for an ensemble)");
        var teacherLogits = CliOptions.Repeated("--teacher-logits", "FILE", "with --method: a teacher-logit cache (repeat for an ensemble)");
        var space = CliOptions.Text("--space", "FILE", "search space JSON: {\"lr\": [0.001, 0.003], \"dnn\": [[400,400], [200,200]], …}");
        var param = CliOptions.Repeated("--param", "NAME=V|V…", "one searched parameter, e.g. lr=0.001|0.003 or dnn=[400,400]|[200] (repeat; adds to --space)");
        var search = CliOptions.Choice("--search", "grid: every setting in order; random: settings of the grid in a seeded random order", ["grid", "random"], "grid");
        var trials = CliOptions.OptionalInt("--trials", "N", "at most N trials (default: the whole grid; 20 for random search)", min: 1);
        var minutes = CliOptions.Double("--minutes", "M", "start no trial after M minutes (0 = no limit)", 0, CliOptions.NonNegative);
        var seeds = CliOptions.Int("--seeds", "K", "retrain the best setting with seeds 1…K, then read the test part once", 3, min: 1, max: 100);
        var rankBy = CliOptions.Parsed("--rank-by", "auc|logloss|guarded-auc", "how trials are ranked on validation",
            text => TrainingSettings.ParseSelection(text), () => SelectionMetric.GuardedAuc);
        var outDir = CliOptions.Text("--out-dir", "DIR", "where trials.json, trials.csv and final.json go (default: tune-out)");
        var output = CliOptions.Text("--out", "FILE", "save the best setting's seed-1 model here (with its calibration, if any)");
        var data = new DataOptions(inputSets: true);
        var split = new SplitOptionsGroup();
        var streaming = new StreamingOptionsGroup();
        var training = new TrainingOptions();

        var command = new Command("tune",
            "Search hyper-parameters on the validation split only (grid or random, a budget in trials or minutes). Every trial trains on " +
            "the train part with early stopping on validation; the table of trials sorted by the validation metric is printed after each " +
            "trial and written as JSON and CSV. Then the best setting is retrained with --seeds seeds and only then is the test part read, " +
            "once, to report test AUC/logloss/ECE (mean ± std). Parameters: any TrainingSettings or ModelConfig key (camelCase; lr, dim " +
            "short for learningRate, embeddingDim); with --method also the DistillConfig's (alpha, T, lambda, …; model keys mean the student's, " +
            "teacher.KEY the co-trained teacher's). Without --space/--param a default grid for the model or method is searched. The " +
            "search streams its data as 'train' and 'distill' do (one file cut by a sequential or hash --split, or --train/--valid/--test input " +
            "sets; memory: one trial's models and the shuffle buffer, never the rows; --cache DIR spares every trial after the first the text); " +
            "a random split reads the data into memory.");
        foreach (var option in new Option[] { model, config, method, teachers, teacherLogits, space, param, search, trials, minutes, seeds, rankBy, outDir, output })
            command.Options.Add(option);
        data.AddTo(command);
        split.AddTo(command);
        streaming.AddTo(command);
        training.AddTo(command);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            var distill = parse.GetValue(method);
            var searchSpace = parse.GetValue(space) is { } path ? LoadSpace(path) : new SearchSpace();
            foreach (var spec in parse.GetValue(param)!) searchSpace.AddSpec(spec);

            TrialConfig baseConfig;
            DistillInputs? inputs = null;
            if (distill is { } m)
            {
                if (parse.Given(model)) throw new CliException("tune: --model is for zoo models; with --method the student is the config's (student settings are searched by name).");
                var kd = parse.GetValue(config) is { } kdPath ? DistillConfig.Load(kdPath) : new DistillConfig();
                inputs = DistillInputs.Load(parse.GetValue(teachers)!, parse.GetValue(teacherLogits)!);
                // A DNN, DCN or DCN-V2 student keeps its distillation defaults: its LR-first start (TrainingSettings.For) was
                // chosen for supervised training and is not measured under distillation; --wide-first on asks for it.
                var studentDefaults = TrainingSettings.For(kd.Student.Model);
                if (kd.Student.Model is ModelKind.Dnn or ModelKind.Dcn or ModelKind.DcnV2) studentDefaults = studentDefaults with { WideFirst = false };
                var settings = training.SettingsFrom(parse, studentDefaults); // ECKD's KD-term rule: --metric kd
                baseConfig = new TrialConfig(kd.Student, settings, kd);
                if (searchSpace.Parameters.Count == 0) searchSpace = SearchSpace.DefaultForDistill(m);
            }
            else
            {
                if (parse.Given(teachers) || parse.Given(teacherLogits)) throw new CliException("tune: --teacher/--teacher-logits need --method.");
                ModelConfig modelConfig;
                if (parse.GetValue(config) is { } cfg)
                {
                    if (!File.Exists(cfg)) throw new CliException($"{Path.GetFileName(cfg)}: config file not found ({Path.GetFullPath(cfg)}).");
                    modelConfig = ModelConfig.FromJson(File.ReadAllText(cfg), Path.GetFileName(cfg));
                }
                else if (!parse.Given(model)) throw new CliException("tune: give --model KIND, --config FILE or --method M (see 'kdengine tune --help').");
                else modelConfig = new ModelConfig();
                if (parse.GetValue(model) is { } kind) modelConfig = modelConfig with { Model = kind };
                baseConfig = new TrialConfig(modelConfig, training.SettingsFrom(parse, TrainingSettings.For(modelConfig.Model)));
                TrainingOptions.RequireNoDistillationMetric(baseConfig.Training, "tune");
                if (searchSpace.Parameters.Count == 0) searchSpace = SearchSpace.DefaultFor(modelConfig.Model);
            }

            var splitOptions = split.SplitFrom(parse, baseConfig.Training.Seed);
            // The search streams as train and distill do; a random split holds the parts in memory.
            bool stream = splitOptions.Mode != SplitMode.Random;
            if (!stream && data.HasInputSets(parse))
                throw new CliException("--split-mode random applies to --data; --train/--valid/--test are already separate parts.");
            StreamedData? streamed = null;
            PreparedData? prepared = null;
            ITuneData tuneData;
            Func<TrialConfig, TrialBuild> build;
            if (stream)
            {
                if (data.HasInputSets(parse) && data.InputSets(parse).Test is null)
                    throw new CliException("tune: give --test FILE… too; the final report reads the test part once.");
                StreamingInputs ZooInputs() => data.HasInputSets(parse) && data.InputSets(parse) is var (train, valid, test)
                    ? StreamingInputs.Separate(train, valid, test)
                    : StreamingInputs.SplitOf(data.Source(parse), splitOptions.Ratios, splitOptions.Mode, splitOptions.Seed);
                var streamingOptions = streaming.OptionsFrom(parse, data.Reader(parse), o.Writer, o.IsTerminal);
                // Distillation trials: the teachers' preprocessing, their cached logits checked and read in place.
                streamed = inputs is not null ? inputs.PrepareStreamed(parse, data, split, splitOptions, streamingOptions, [], "tune")
                    : StreamingPipeline.Prepare(ZooInputs(), split.PreprocessingFrom(parse), streamingOptions);
                Report.Data(o, streamed);
                foreach (var pass in streamed.Passes)
                    foreach (var line in pass.SkipSummary()) o.Line(line);
                tuneData = new StreamedTuneData(streamed, streamingOptions.ShuffleBuffer);
                build = distill is { } dm
                    ? Tuner.DistillTrials(dm, tuneData, inputs!.StreamedTeachers(streamed))
                    : Tuner.ZooTrials(streamed.Fields);
            }
            else
            {
                prepared = inputs is not null ? inputs.Prepare(parse, data, null, split, splitOptions, SingleProcess.Instance)
                    : CtrPipeline.Prepare(data.Source(parse), splitOptions, split.PreprocessingFrom(parse));
                Report.Data(o, prepared);
                // Caches travel with their rows as columns of the data, so the teachers are made before the tuner sees it.
                var frozenTeachers = inputs?.Teachers(ref prepared, SingleProcess.Instance, o: o);
                tuneData = new PreparedTuneData(prepared);
                build = distill is { } dm
                    ? Tuner.DistillTrials(dm, tuneData, frozenTeachers!)
                    : Tuner.ZooTrials(prepared.Fields);
            }
            using var streamedScope = streamed;
            double limit = parse.GetValue(minutes);
            var options = new TuneOptions
            {
                Random = parse.GetValue(search) == "random",
                MaxTrials = parse.GetValue(trials),
                TimeBudget = limit > 0 ? TimeSpan.FromMinutes(limit) : null,
                SearchSeed = baseConfig.Training.Seed,
                RankBy = parse.GetValue(rankBy),
                GuardBand = baseConfig.Training.GuardBand,
                FinalSeeds = parse.GetValue(seeds),
                Calibration = parse.GetValue(training.Calibration),
                OutputDirectory = parse.GetValue(outDir) ?? "tune-out",
            };
            o.Line($"base: {(distill is { } x ? $"distill {DistillPipeline.Name(x)}, student " : "")}{baseConfig.Model.ToJson()}; search: {string.Join(", ", searchSpace.Parameters.Select(p => $"{p.Name} ∈ {{{string.Join(", ", p.Values.Select(SearchSpace.Text))}}}"))}");
            var report = new Tuner(tuneData, baseConfig, build, options, o.Writer).Run(searchSpace);
            var stages = tuneData switch { EncodedTuneData e => e.WideStages, StreamedTuneData st => st.WideStages, _ => null };
            if (stages is { Hits: > 0 })
                o.Line($"tune: {stages.Hits} run(s) reused a wide-first stage an earlier run had trained with the same inputs (the same weights and optimizer state: results as if trained again)");
            o.Line($"wrote {Path.Combine(options.OutputDirectory, "trials.json")}, trials.csv and final.json");
            if (parse.GetValue(output) is { } outPath)
            {
                CtrPipeline.Save(outPath, report.FinalModels[0], streamed?.Preprocessor ?? prepared!.Preprocessor, streamed?.Source ?? prepared!.Source, new Dictionary<string, string>
                {
                    ["tune.setting"] = report.Best.SettingText,
                }, report.FinalCalibrations[0]);
                o.Line($"saved the best setting's seed-1 model {outPath}");
            }
            return 0;
        });
        return command;
    }

    private static SearchSpace LoadSpace(string path)
    {
        if (!File.Exists(path)) throw new CliException($"{Path.GetFileName(path)}: search space file not found ({Path.GetFullPath(path)}).");
        return SearchSpace.FromJson(File.ReadAllText(path), Path.GetFileName(path));
    }
}
