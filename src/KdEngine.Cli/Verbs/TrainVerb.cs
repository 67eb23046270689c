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

        var command = new Command("train",
            "Train a zoo model (lr|fm|dnn|wdl|deepfm|dcn|xdeepfm) on a data file. Reads the file, splits it, fits the preprocessing on " +
            "the train part only, trains with early stopping on validation AUC (best weights restored), prints validation and test " +
            "AUC/logloss and saves the model with its preprocessing.");
        command.Options.Add(model);
        command.Options.Add(config);
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
            var settings = training.SettingsFrom(parse, new TrainingSettings());
            var source = data.Source(parse);
            return distributed.Run(parse, o, settings.BatchSize, (group, o) =>
            {
                var prepared = CtrPipeline.PrepareShard(source, group, split.SplitFrom(parse, settings.Seed), split.PreprocessingFrom(parse));
                Report.Data(o, prepared, group);
                var zoo = CtrPipeline.BuildModel(modelConfig, prepared.Fields);
                o.Line($"model: {zoo.TypeName}, {zoo.ParameterCount():N0} parameters; config {modelConfig.ToJson()}");
                var outcome = o.Progress("training " + zoo.TypeName, (w, interactive) => CtrPipeline.Train(zoo, prepared, settings, w, interactive, group));
                Report.Outcome(o, outcome);
                if (group.Rank == 0)
                {
                    CtrPipeline.Save(outPath, zoo, prepared.Preprocessor, prepared.Source);
                    o.Line($"saved {outPath}");
                }
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
