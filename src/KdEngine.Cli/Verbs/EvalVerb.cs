using System.CommandLine;
using System.Globalization;
using KdEngine.Pipelines;

namespace KdEngine.Cli.Verbs;

/// <summary><c>eval</c>: a saved model over whole data files, streamed: rows, AUC, logloss, calibration.</summary>
internal static class EvalVerb
{
    public static Command Create()
    {
        var input = new SavedModelInput("model checkpoint (.kde) from train or distill");
        var command = new Command("eval",
            "Evaluate a saved model on whole data files with the model's saved preprocessing: rows, AUC, logloss, calibration " +
            "(mean prediction / click rate). The files stream (8 bytes per row are kept for the exact AUC).");
        input.AddTo(command);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            var loaded = input.Load(parse);
            var data = input.Input(parse, loaded);
            var (result, rows) = StreamingPipeline.Evaluate(loaded.Model, data, loaded.Preprocessor!, input.Options(parse, o));
            var inv = CultureInfo.InvariantCulture;
            o.Line($"model {Path.GetFileName(parse.GetValue(input.Model))} ({loaded.Model.TypeName}) on {data.Name}: {rows} rows");
            o.Line($"AUC {result.Auc.ToString("F6", inv)}  logloss {result.LogLoss.ToString("F6", inv)}  calibration {result.Calibration.ToString("F4", inv)}");
            return 0;
        });
        return command;
    }
}
