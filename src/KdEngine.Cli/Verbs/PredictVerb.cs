using System.CommandLine;
using System.Globalization;
using KdEngine.Cli.Options;
using KdEngine.Pipelines;

namespace KdEngine.Cli.Verbs;

/// <summary><c>predict</c>: one click probability per row of a data file, in file order, to a CSV.</summary>
internal static class PredictVerb
{
    public static Command Create()
    {
        var input = new SavedModelInput("model checkpoint (.kde) from train or distill");
        var output = CliOptions.Required("--out", "FILE", "scores CSV: a header 'probability', then one probability per data row");
        var command = new Command("predict", "Write σ(logit) for every row of a data file, in file order.");
        input.AddTo(command);
        command.Options.Add(output);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            string outPath = parse.GetValue(output)!;
            var loaded = input.Load(parse);
            var data = input.Encode(parse, loaded);
            var logits = CtrPipeline.Logits(loaded.Model, data);
            // Written to a temporary file and renamed: an interrupted run never leaves a partial scores file.
            var tmp = outPath + ".tmp";
            using (var w = new StreamWriter(tmp))
            {
                w.WriteLine("probability");
                foreach (var z in logits) w.WriteLine((1.0 / (1.0 + Math.Exp(-z))).ToString("G9", CultureInfo.InvariantCulture));
            }
            File.Move(tmp, outPath, overwrite: true);
            o.Line($"wrote {logits.Length} probabilities to {outPath}");
            return 0;
        });
        return command;
    }
}
