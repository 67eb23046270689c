using System.CommandLine;
using KdEngine.Cli.Options;
using KdEngine.Models;
using KdEngine.Pipelines;

namespace KdEngine.Cli.Verbs;

/// <summary><c>train</c>: one zoo model on a data file, early stopping on validation, saved with its preprocessing.</summary>
internal static class TrainVerb
{
    public static Command Create()
    {
        var model = CliOptions.Parsed<ModelKind?>("--model", string.Join("|", ZooExperimentConfig.ModelNames),
            "the model to train (overrides the config's model)", text => ZooExperimentConfig.KindOf(text.ToLowerInvariant()));
        var config = CliOptions.Text("--config", "FILE", "ModelConfig JSON (embeddingDim, dnn, cin, …; unknown keys rejected)");
        var data = new DataOptions();
        var split = new SplitOptionsGroup();
        var training = new TrainingOptions();
        var distributed = new DistributedOptions();
        var output = CliOptions.Required("--out", "FILE", "where to save the model checkpoint (.kde, safetensors)");
        var dropout = CliOptions.OptionalFloat("--dropout", "X", "DNN dropout rate (overrides the config's)", v => v is >= 0 and < 1 ? null : $"= {CliOptions.Show(v)} must be in [0, 1).");
        var outputL2 = CliOptions.OptionalFloat("--embedding-output-l2", "X", "L2 on the batch's looked-up embeddings, DeepCTR's l2_reg_embedding (overrides the config's)", CliOptions.NonNegative);

        var command = new Command("train",
            $"Train a zoo model ({string.Join("|", ZooExperimentConfig.ModelNames)}) on a data file. Reads the file, splits it, fits the preprocessing on " +
            "the train part only, trains with early stopping on validation (best weights restored; the reason it stopped is printed), " +
            "prints validation and test AUC/logloss, optionally fits a post-hoc calibration on validation, and saves the model with " +
            "its preprocessing.");
        command.Options.Add(model);
        command.Options.Add(config);
        command.Options.Add(dropout);
        command.Options.Add(outputL2);
        data.AddTo(command);
        split.AddTo(command);
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
            var source = data.Source(parse);
            return distributed.Run(parse, o, settings.BatchSize, (group, o) =>
            {
                var prepared = distributed.Prepare(parse, source, group, split.SplitFrom(parse, settings.Seed), split.PreprocessingFrom(parse));
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
