using System.CommandLine;
using System.Globalization;
using KdEngine.Cli.Options;
using KdEngine.Metrics;
using KdEngine.Pipelines;
using KdEngine.Serving;

namespace KdEngine.Cli.Verbs;

/// <summary>
/// <c>quantize</c>: writes a checkpoint in a serving precision (int8 / bf16 tensors, docs/formats.md) that
/// <c>Predictor.Load</c> serves as stored; with <c>--data</c>, scores the file through the predictor in float32 and in the
/// new precision and prints both AUCs and loglosses, so the precision's cost is measured on the caller's own data.
/// </summary>
internal static class QuantizeVerb
{
    public static Command Create()
    {
        var model = CliOptions.Required("--model", "FILE", "float32 checkpoint (.kde) from train or distill");
        var output = CliOptions.Required("--out", "FILE", "the checkpoint to write");
        var precision = CliOptions.Parsed("--precision", "P",
            "int8 (int8 dense weights per output channel, bf16 embeddings), bf16 (both bf16), fp32, or DENSE+EMB-embeddings (e.g. int8+fp32-embeddings)",
            ServingPrecision.Parse, () => ServingPrecision.Int8);
        var data = CliOptions.Text("--data", "FILE", "optional: a data file to compare float32 and the new precision on (AUC, logloss), read like the model's training data");
        var command = new Command("quantize",
            "Write a checkpoint in a serving precision (int8/bf16 weights stored in the file) and optionally measure its AUC against float32.");
        command.Options.Add(model);
        command.Options.Add(output);
        command.Options.Add(precision);
        command.Options.Add(data);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            var inv = CultureInfo.InvariantCulture;
            string inPath = parse.GetValue(model)!, outPath = parse.GetValue(output)!;
            var target = parse.GetValue(precision)!;
            var loaded = CtrPipeline.Load(inPath);
            if (!loaded.Precision.IsFloat32)
                throw new CliException($"quantize: {Path.GetFileName(inPath)} is already stored in {loaded.Precision}; quantise the float32 checkpoint it came from.");
            // Everything the checkpoint carried besides the model description and preprocessing (the data source, …).
            var extra = loaded.Metadata
                .Where(kv => !kv.Key.StartsWith("kdengine.", StringComparison.Ordinal) && !kv.Key.StartsWith("model.", StringComparison.Ordinal)
                    && kv.Key != ModelCheckpoint.PreprocessingKey && kv.Key != ModelCheckpoint.PrecisionKey)
                .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
            ModelCheckpoint.Save(outPath, loaded.Model, loaded.Preprocessor, extra, target);
            var fp32 = new Predictor(loaded.Model, loaded.Preprocessor);
            var served = Predictor.Load(outPath);
            o.Line($"wrote {outPath}: {target}, {new FileInfo(outPath).Length:N0} bytes on disk (float32: {new FileInfo(inPath).Length:N0}); " +
                   $"the predictor holds {served.WeightBytes:N0} bytes of weights (float32: {fp32.WeightBytes:N0})");
            if (parse.GetValue(data) is { } dataPath)
            {
                var encoded = CtrPipeline.EncodeFor(loaded, dataPath);
                var before = Score(fp32, encoded);
                var after = Score(served, encoded);
                o.Line($"{Path.GetFileName(dataPath)}: {encoded.Count} rows");
                o.Line($"fp32: AUC {before.Auc.ToString("F6", inv)}  logloss {before.LogLoss.ToString("F6", inv)}");
                o.Line($"{target}: AUC {after.Auc.ToString("F6", inv)}  logloss {after.LogLoss.ToString("F6", inv)}  " +
                       $"(Δ AUC {(after.Auc - before.Auc).ToString("+0.000000;-0.000000", inv)}, Δ logloss {(after.LogLoss - before.LogLoss).ToString("+0.000000;-0.000000", inv)})");
            }
            return 0;
        });
        return command;
    }

    private static EvaluationResult Score(Predictor predictor, KdEngine.Data.EncodedDataset data)
    {
        var logits = new float[data.Count];
        const int batch = 1024;
        int columns = predictor.InputColumns;
        for (int start = 0; start < data.Count; start += batch)
        {
            int n = Math.Min(batch, data.Count - start);
            predictor.Predict(data.Ids.AsSpan(start * columns, n * columns), logits.AsSpan(start, n));
        }
        return CtrMetrics.EvaluateLogits(logits, data.Labels);
    }
}
