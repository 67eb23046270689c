using System.CommandLine;
using KdEngine.Cli.Options;
using KdEngine.Pipelines;

namespace KdEngine.Cli.Verbs;

/// <summary><c>predict</c>: one click probability per row of data files, in file order, written as it goes.</summary>
internal static class PredictVerb
{
    public static Command Create()
    {
        var input = new SavedModelInput("model checkpoint (.kde) from train or distill");
        var output = CliOptions.Required("--out", "FILE", "scores CSV: a header 'probability', then one probability per data row");
        var command = new Command("predict", "Write σ(logit) for every row of data files, in file order, streaming (a temporary file renamed at the end).");
        input.AddTo(command);
        command.Options.Add(output);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            string outPath = parse.GetValue(output)!;
            var loaded = input.Load(parse);
            long rows = StreamingPipeline.Predict(loaded.Model, input.Input(parse, loaded), loaded.Preprocessor!, outPath, input.Options(parse, o));
            o.Line($"wrote {rows} probabilities to {outPath}");
            return 0;
        });
        return command;
    }
}
