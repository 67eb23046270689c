using System.CommandLine;
using System.Globalization;
using KdEngine.Cli.Options;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Pipelines;

namespace KdEngine.Cli.Verbs;

/// <summary><c>train</c>: one zoo model on data of any size, early stopping on validation, saved with its preprocessing.</summary>
internal static class TrainVerb
{
    public static Command Create()
    {
        var model = CliOptions.Parsed<ModelKind?>("--model", string.Join("|", ZooExperimentConfig.ModelNames),
            "the model to train (overrides the config's model)", text => ZooExperimentConfig.KindOf(text.ToLowerInvariant()));
        var config = CliOptions.Text("--config", "FILE", "ModelConfig JSON (embeddingDim, dnn, cin, …; unknown keys rejected)");
        var data = new DataOptions(inputSets: true);
        var split = new SplitOptionsGroup();
        var streaming = new StreamingOptionsGroup();
        var training = new TrainingOptions();
        var distributed = new DistributedOptions();
        var output = CliOptions.Required("--out", "FILE", "where to save the model checkpoint (.kde, safetensors)");
        var dropout = CliOptions.OptionalFloat("--dropout", "X", "DNN dropout rate (overrides the config's)", v => v is >= 0 and < 1 ? null : $"= {CliOptions.Show(v)} must be in [0, 1).");
        var outputL2 = CliOptions.OptionalFloat("--embedding-output-l2", "X", "L2 on the batch's looked-up embeddings, DeepCTR's l2_reg_embedding (overrides the config's)", CliOptions.NonNegative);

        var command = new Command("train",
            $"Train a zoo model ({string.Join("|", ZooExperimentConfig.ModelNames)}) on data of any size. The data is one file cut by --split, or " +
            "--train/--valid/--test input sets (files or globs, plain or gzip, CSV/TSV/libSVM/libFFM/Parquet). Every pass streams: " +
            "the preprocessing is fitted in one pass over the train part only, training reads the train part once per epoch " +
            "through a shuffle buffer (memory: the model, the vocabularies and the buffer, never the rows), with early stopping " +
            "on validation (best weights restored; the reason it stopped is printed); prints validation and test AUC/logloss, " +
            "optionally fits a post-hoc calibration on validation, and saves the model with its preprocessing. A random split " +
            "(--split-mode random) and --distributed mpi read the file into memory.");
        command.Options.Add(model);
        command.Options.Add(config);
        command.Options.Add(dropout);
        command.Options.Add(outputL2);
        data.AddTo(command);
        split.AddTo(command);
        streaming.AddTo(command);
        training.AddTo(command);
        distributed.AddTo(command);
        command.Options.Add(output);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            string outPath = parse.GetValue(output)!;
            var modelConfig = ModelConfigFrom(parse, config, model, training.Seed);
            if (parse.GetValue(dropout) is { } rate) modelConfig = modelConfig with { Dropout = rate };
            if (parse.GetValue(outputL2) is { } l2) modelConfig = modelConfig with { EmbeddingOutputL2 = l2 };
            var settings = distributed.Apply(parse, training.SettingsFrom(parse, TrainingSettings.For(modelConfig.Model)));
            TrainingOptions.RequireNoDistillationMetric(settings, "train");
            var splitOptions = split.SplitFrom(parse, settings.Seed);
            bool mpi = parse.GetValue(distributed.Mode) == "mpi";
            // Row-sharded tables fetch each batch's rows from their owners, which the in-memory trainer and evaluator do.
            bool rowSharded = settings.EmbeddingSharding == KdEngine.Sharding.EmbeddingSharding.Row;
            if (!mpi && !rowSharded && splitOptions.Mode != SplitMode.Random)
                return Streamed(parse, o, data, split, streaming, training, modelConfig, settings, splitOptions, outPath);
            if (data.HasInputSets(parse))
                throw new CliException(mpi || rowSharded ? "--distributed mpi and --embedding-sharding row train from --data (in-memory shards); --train/--valid/--test input sets train in one process with replicated tables."
                    : "--split-mode random applies to --data; --train/--valid/--test are already separate parts.");
            // In memory: a random split of one file, or this rank's shard for data-parallel training.
            var source = data.Source(parse);
            return distributed.Run(parse, o, settings.BatchSize, (group, o) =>
            {
                var prepared = distributed.Prepare(parse, source, group, splitOptions, split.PreprocessingFrom(parse));
                Report.Data(o, prepared, group);
                var placement = settings.TablePlacement(group);
                ZooModel zoo;
                using (placement.Use()) zoo = CtrPipeline.BuildModel(modelConfig, prepared.Fields);
                o.Line($"model: {zoo.TypeName}, {ZooModel.ParameterCount(modelConfig, prepared.Fields):N0} parameters; config {modelConfig.ToJson()}");
                o.Line(DistributedOptions.Describe(placement, group));
                o.Line($"training: {settings.Describe()}");
                var outcome = o.Progress("training " + zoo.TypeName, (w, interactive) => CtrPipeline.Train(zoo, prepared, settings, w, interactive, group));
                Report.Outcome(o, outcome);
                var calibration = Report.Calibrate(o, zoo, prepared, parse.GetValue(training.Calibration), group);
                // Every rank: rank 0 writes; with row-sharded tables the others stream their rows to it.
                CtrPipeline.Save(outPath, zoo, prepared.Preprocessor, prepared.Source, null, group, calibration);
                if (group.Rank == 0) o.Line($"saved {outPath}");
                return 0;
            });
        });
        return command;
    }

    /// <summary>The streaming path: input sets or a file cut by row count, never loaded.</summary>
    private static int Streamed(ParseResult parse, CliOutput o, DataOptions data, SplitOptionsGroup split, StreamingOptionsGroup streaming,
        TrainingOptions training, ModelConfig modelConfig, TrainingSettings settings, SplitOptions splitOptions, string outPath)
    {
        StreamingInputs inputs;
        if (data.HasInputSets(parse))
        {
            var (train, valid, test) = data.InputSets(parse);
            inputs = StreamingInputs.Separate(train, valid, test);
        }
        else inputs = StreamingInputs.SplitOf(data.Source(parse), splitOptions.Ratios, splitOptions.Mode, splitOptions.Seed);
        var options = streaming.OptionsFrom(parse, data.Reader(parse), o.Writer, o.IsTerminal);
        using var streamed = StreamingPipeline.Prepare(inputs, split.PreprocessingFrom(parse), options);
        Report.Data(o, streamed);
        foreach (var pass in streamed.Passes)
            foreach (var line in pass.SkipSummary()) o.Line(line);
        // One process: the table layout and its budget apply as on one rank.
        var group = KdEngine.Training.SingleProcess.Instance;
        var placement = settings.TablePlacement(group);
        ZooModel zoo;
        using (placement.Use()) zoo = CtrPipeline.BuildModel(modelConfig, streamed.Fields);
        o.Line($"model: {zoo.TypeName}, {ZooModel.ParameterCount(modelConfig, streamed.Fields):N0} parameters; config {modelConfig.ToJson()}");
        o.Line(DistributedOptions.Describe(placement, group));
        o.Line($"training: {settings.Describe()}");
        var outcome = o.Progress("training " + zoo.TypeName, (w, interactive) => StreamingPipeline.Train(zoo, streamed, settings, options.ShuffleBuffer, w, interactive));
        Report.Outcome(o, outcome, hasTest: streamed.Test is not null);
        var r = outcome.Report;
        o.Line(string.Create(CultureInfo.InvariantCulture,
            $"input: {r.InputTime.TotalSeconds:F1} s of {r.Elapsed.TotalSeconds:F1} s training waited for batches ({100 * r.InputTime.TotalSeconds / Math.Max(r.Elapsed.TotalSeconds, 1e-9):F1} %), validation {r.ValidationTime.TotalSeconds:F1} s; train rows from {streamed.Train.Origin}"));
        var calibration = Report.Calibrate(o, zoo, streamed, parse.GetValue(training.Calibration));
        CtrPipeline.Save(outPath, zoo, streamed.Preprocessor, streamed.Source, null, group, calibration);
        o.Line($"saved {outPath}");
        return 0;
    }

    /// <summary>The config file's model (or the defaults), with --model and --seed (when given) applied.</summary>
    private static ModelConfig ModelConfigFrom(ParseResult parse, Option<string?> configOption, Option<ModelKind?> modelOption, Option<int> seedOption)
    {
        ModelConfig config;
        if (parse.GetValue(configOption) is { } path)
        {
            if (!File.Exists(path)) throw new CliException($"{Path.GetFileName(path)}: config file not found ({Path.GetFullPath(path)}).");
            config = ModelConfig.FromJson(File.ReadAllText(path), Path.GetFileName(path));
        }
        else if (!parse.Given(modelOption)) throw new CliException("train: give --model KIND or --config FILE (see 'kdengine train --help').");
        else config = new ModelConfig();
        if (parse.GetValue(modelOption) is { } kind) config = config with { Model = kind };
        if (parse.Given(seedOption)) config = config with { Seed = parse.GetValue(seedOption) };
        config.Validate();
        return config;
    }
}
