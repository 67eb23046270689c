using System.CommandLine;
using System.Globalization;
using KdEngine.Cli.Options;
using KdEngine.Data;
using KdEngine.Pipelines;
using KdEngine.Server.Batching;
using KdEngine.Serving;

namespace KdEngine.Cli.Verbs;

/// <summary><c>predict</c>: one click probability per row of a data file, in file order, to a CSV — computed as the service computes it.</summary>
internal static class PredictVerb
{
    public static Command Create()
    {
        var input = new SavedModelInput("model checkpoint (.kde) from train or distill");
        var output = CliOptions.Required("--out", "FILE", "scores CSV: a header 'probability', then one probability per data row");
        var command = new Command("predict", "Write σ(logit) for every row of a data file, in file order (with the model's saved calibration, if any). " +
            "When the model compiles to the Predictor it is scored as kdengine serve scores it (1,024 rows per call, the same probabilities).");
        input.AddTo(command);
        command.Options.Add(output);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            string outPath = parse.GetValue(output)!;
            var loaded = input.Load(parse);
            var data = input.Encode(parse, loaded);
            var logits = Logits(loaded, data); // with the saved calibration, as the Predictor serves
            // Written to a temporary file and renamed: an interrupted run never leaves a partial scores file.
            var tmp = outPath + ".tmp";
            using (var w = new StreamWriter(tmp))
            {
                w.WriteLine("probability");
                // The service's probability (σ in double, rounded once to float), in the shortest text that parses back to it.
                foreach (var z in logits) w.WriteLine(Probabilities.FromLogit(z).ToString("R", CultureInfo.InvariantCulture));
            }
            File.Move(tmp, outPath, overwrite: true);
            o.Line($"wrote {logits.Length} probabilities to {outPath}");
            return 0;
        });
        return command;
    }

    /// <summary>Rows per Predictor call: the service's default largest batch, so both score a file's rows in the same batches.</summary>
    internal const int Batch = 1024;

    /// <summary>
    /// The serving path's logits when the model compiles to a <see cref="Predictor"/> on the CPU: rows in batches of
    /// <see cref="Batch"/>, so <c>kdengine serve</c> (whose largest batch is also 1,024) gives the same bits for the same
    /// rows sent as one request. Otherwise (multi-valued or value-scaled fields, a GPU device) the training forward, no-grad.
    /// </summary>
    internal static float[] Logits(LoadedModel loaded, EncodedDataset data)
    {
        if (KdEngine.Backends.DefaultBackend<float>.Current is not KdEngine.Backends.CpuBackend<float>
            || loaded.Model.Fields.Any(f => f.IsMultiValued || f.ScaleByValue))
            return CtrPipeline.Logits(loaded, data); // applies the saved calibration
        var predictor = Predictor.FromLoaded(loaded);
        var logits = new float[data.Count];
        int c = data.FieldCount;
        for (int b0 = 0; b0 < data.Count; b0 += Batch)
        {
            int n = Math.Min(Batch, data.Count - b0);
            predictor.Predict(data.Ids.AsSpan(b0 * c, n * c), logits.AsSpan(b0, n));
        }
        return logits;
    }
}
