using System.CommandLine;
using KdEngine.Cli.Options;
using KdEngine.Pipelines;
using KdEngine.Serving;

namespace KdEngine.Cli.Verbs;

/// <summary>
/// <c>predict</c>: one click probability per row of data files, in file order, written as it goes — computed as the
/// service computes it.
/// </summary>
internal static class PredictVerb
{
    public static Command Create()
    {
        var input = new SavedModelInput("model checkpoint (.kde) from train or distill");
        var output = CliOptions.Required("--out", "FILE", "scores CSV: a header 'probability', then one probability per data row");
        var command = new Command("predict", "Write σ(logit) for every row of data files, in file order, streaming (a temporary file renamed at the end), " +
            "with the model's saved calibration, if any. " +
            "When the model compiles to the Predictor it is scored as kdengine serve scores it (1,024 rows per call, the same probabilities).");
        input.AddTo(command);
        command.Options.Add(output);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            string outPath = parse.GetValue(output)!;
            var loaded = input.Load(parse);
            long rows = StreamingPipeline.Predict(loaded.Model, input.Input(parse, loaded), loaded.Preprocessor!, outPath, input.Options(parse, o),
                ServingPredictor(loaded), Batch, loaded.Calibration);
            o.Line($"wrote {rows} probabilities to {outPath}");
            return 0;
        });
        return command;
    }

    /// <summary>Rows per Predictor call: the service's default largest batch, so both score a file's rows in the same batches.</summary>
    internal const int Batch = 1024;

    /// <summary>
    /// The serving path when the model compiles to a <see cref="Predictor"/> on the CPU: rows in batches of
    /// <see cref="Batch"/>, so <c>kdengine serve</c> (whose largest batch is also 1,024) gives the same bits for the same
    /// rows sent as one request. Otherwise (multi-valued or value-scaled fields, a GPU device) null: the training forward, no-grad.
    /// </summary>
    private static Predictor? ServingPredictor(LoadedModel loaded) =>
        KdEngine.Backends.DefaultBackend<float>.Current is not KdEngine.Backends.CpuBackend<float>
        || loaded.Model.Fields.Any(f => f.IsMultiValued || f.ScaleByValue)
            ? null
            : Predictor.FromLoaded(loaded); // its saved calibration and precision, as the service scores
}
