using System.CommandLine;
using System.Globalization;
using KdEngine.Training;

namespace KdEngine.Cli.Verbs;

/// <summary><c>eval</c>: a saved model over a whole data file: rows, AUC, logloss, calibration.</summary>
internal static class EvalVerb
{
    public static Command Create()
    {
        var input = new SavedModelInput("model checkpoint (.kde) from train or distill");
        var command = new Command("eval",
            "Evaluate a saved model on a whole data file with the model's saved preprocessing: rows, AUC, logloss, calibration " +
            "(mean prediction / click rate).");
        input.AddTo(command);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            var loaded = input.Load(parse);
            var data = input.Encode(parse, loaded);
            var result = Trainer.Evaluate(loaded.Model, data).Result;
            var inv = CultureInfo.InvariantCulture;
            o.Line($"model {Path.GetFileName(parse.GetValue(input.Model))} ({loaded.Model.TypeName}) on {Path.GetFileName(parse.GetValue(input.Data))}: {data.Count} rows");
            o.Line($"AUC {result.Auc.ToString("F6", inv)}  logloss {result.LogLoss.ToString("F6", inv)}  calibration {result.Calibration.ToString("F4", inv)}");
            return 0;
        });
        return command;
    }
}
