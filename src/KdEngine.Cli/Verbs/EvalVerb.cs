using System.CommandLine;
using System.Globalization;
using KdEngine.Cli.Options;
using KdEngine.Metrics;
using KdEngine.Pipelines;

namespace KdEngine.Cli.Verbs;

/// <summary><c>eval</c>: a saved model over whole data files, streamed: rows, AUC, logloss, calibration ratio, ECE and a reliability table.</summary>
internal static class EvalVerb
{
    public static Command Create()
    {
        var input = new SavedModelInput("model checkpoint (.kde) from train or distill");
        var bins = CliOptions.Int("--bins", "N", "bins of the reliability table", 10, min: 1, max: 1000);
        var binning = CliOptions.Choice("--binning", "mass: equal-count bins (informative for skewed click rates); width: equal-width bins over [0, 1]",
            ["mass", "width"], "mass");
        var command = new Command("eval",
            "Evaluate a saved model on whole data files with the model's saved preprocessing (and saved calibration, if any): rows, AUC, " +
            "logloss, calibration ratio (mean prediction / click rate), expected calibration error and a reliability table. The files " +
            "stream (8 bytes per row are kept for the exact AUC and the table).");
        input.AddTo(command);
        command.Options.Add(bins);
        command.Options.Add(binning);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            var loaded = input.Load(parse);
            var data = input.Input(parse, loaded);
            float[] logits = [], labels = [];
            var (result, rows) = StreamingPipeline.Evaluate(loaded.Model, data, loaded.Preprocessor!, input.Options(parse, o), loaded.Calibration,
                (z, y) => (logits, labels) = (z, y));
            var inv = CultureInfo.InvariantCulture;
            o.Line($"model {Path.GetFileName(parse.GetValue(input.Model))} ({loaded.Model.TypeName}) on {data.Name}: {rows} rows" +
                (loaded.Calibration is { } c ? $"; calibration: {c}" : ""));
            o.Line($"AUC {result.Auc.ToString("F6", inv)}  logloss {result.LogLoss.ToString("F6", inv)}  calibration {result.Calibration.ToString("F4", inv)}");
            var reliability = CalibrationMetrics.Reliability(logits, labels, parse.GetValue(bins), parse.GetValue(binning) == "width" ? Binning.EqualWidth : Binning.EqualMass);
            o.Line($"ECE {reliability.Ece.ToString("F4", inv)}  MCE {reliability.MaxCalibrationError.ToString("F4", inv)}  ({reliability.Bins.Count} {(reliability.Binning == Binning.EqualMass ? "equal-mass" : "equal-width")} bins)");
            o.Line("   bin  predictions        rows  mean prediction  click rate");
            foreach (var (b, k) in reliability.Bins.Select((b, k) => (b, k + 1)))
                o.Line($"  {k,4}  [{b.Lower.ToString("F4", inv)}, {b.Upper.ToString("F4", inv)})  {b.Count,8}  {b.MeanPrediction.ToString("F4", inv),15}  {b.ObservedRate.ToString("F4", inv),10}");
            return 0;
        });
        return command;
    }
}
