using System.CommandLine;
using KdEngine.Cli.Options;
using KdEngine.Distillation;

namespace KdEngine.Cli.Verbs;

/// <summary><c>cache-logits</c>: a teacher's logits over a data file, computed once and stored for <c>distill --teacher-logits</c>.</summary>
internal static class CacheLogitsVerb
{
    public static Command Create()
    {
        var input = new SavedModelInput("teacher checkpoint (.kde)");
        var output = CliOptions.Text("--out", "FILE", "cache file (default: DATA.TEACHER.logits.safetensors beside the data)");
        var command = new Command("cache-logits",
            "Compute a teacher's logits over every row of a data file once and store them (safetensors, with a fingerprint of the " +
            "data) for 'distill --teacher-logits'. Streams: two passes over the data (count, then score), memory bounded by the model.");
        input.AddTo(command);
        command.Options.Add(output);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            string modelPath = parse.GetValue(input.Model)!, dataPath = input.FirstData(parse);
            string outPath = parse.GetValue(output) ?? TeacherLogitCache.DefaultPath(dataPath, modelPath);
            var loaded = input.Load(parse);
            // Streamed: a pass counting the rows, then one scoring them; memory does not grow with the rows.
            long rows = TeacherLogitCache.ComputeStreamed(outPath, loaded.Model, input.Input(parse, loaded), loaded.Preprocessor!,
                Path.GetFileName(dataPath), Path.GetFileName(modelPath), input.Options(parse, o));
            o.Line($"cached {rows} teacher logits of {Path.GetFileName(modelPath)} over {Path.GetFileName(dataPath)} in {outPath}");
            return 0;
        });
        return command;
    }
}
