using System.Globalization;
using KdEngine.Data;
using KdEngine.Pipelines;

namespace KdEngine.Cli;

/// <summary>Experiments for the docs: <c>experiment zoo</c> (every zoo model × seeds on the Criteo sample, a markdown table).</summary>
internal static class Experiment
{
    private static readonly CliOption[] ZooOptions =
    [
        new("seeds", "N", "seeds 1..N per model (default 5)"),
        new("models", "LIST", "comma-separated subset of lr,fm,dnn,wdl,deepfm,dcn,xdeepfm (default all)"),
        new("config", "FILE", "JSON {\"training\": {…}, \"minCount\": 2, \"models\": {\"dnn\": {…}, …}} (default: the issue's anchors)"),
        new("data", "FILE", "Criteo-format file (default: the bundled sample)"),
    ];

    public static int Run(string[] args, TextWriter o)
    {
        if (args.Length == 0 || args[0] is "--help" or "-h")
        {
            o.WriteLine("usage: kdengine experiment zoo [--seeds N] [--models lr,dnn,…] [--config FILE]" + Environment.NewLine + Environment.NewLine +
                CliArgs.Help("kdengine experiment zoo [options]", "Experiments: zoo = each zoo model on the Criteo sample (sequential 8:1:1), test AUC/logloss mean ± std over seeds and training time, as a markdown table.", ZooOptions));
            return args.Length == 0 ? 1 : 0;
        }
        if (args[0] != "zoo") throw new CliException($"experiment: unknown experiment '{args[0]}' (expected zoo).");
        var a = CliArgs.Parse("experiment zoo", args[1..], ZooOptions);
        if (a.Flag("help"))
        {
            o.WriteLine(CliArgs.Help("kdengine experiment zoo [options]",
                "Trains each model for seeds 1..N on the same split (sequential 8:1:1, ⌊ln(v)²⌋ buckets, preprocessing fitted on the\n" +
                "train part) with early stopping on validation AUC, and prints test AUC/logloss mean ± std and training time.", ZooOptions));
            return 0;
        }
        int seeds = a.Int("seeds", 5, 1, 1000);
        var config = a.String("config") is { } path ? ZooExperimentConfig.Load(path) : new ZooExperimentConfig();
        var models = a.String("models") is { } list
            ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(m => m.ToLowerInvariant()).ToArray()
            : ZooExperimentConfig.ModelNames;
        foreach (var m in models)
            if (Array.IndexOf(ZooExperimentConfig.ModelNames, m) < 0)
                throw new CliException($"experiment zoo: unknown model '{m}' in --models (expected {string.Join(",", ZooExperimentConfig.ModelNames)}).");

        var data = CtrPipeline.Prepare(new DataSource(a.String("data") ?? DataPaths.FindCriteoSample()) { Format = DataFormat.Criteo },
            new SplitOptions(), new PreprocessorOptions { MinCount = config.MinCount });
        Commands.PrintData(o, data);
        o.WriteLine($"config {config.ToJson().ReplaceLineEndings(" ")}");
        foreach (var m in models) o.WriteLine($"{m}: {config.ConfigFor(m, 1).ToJson()}");
        var runs = ZooExperiment.Run(data, config, models, Enumerable.Range(1, seeds).ToArray(),
            r => o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {r.Model} seed {r.Seed}: test AUC {r.TestAuc:F4} logloss {r.TestLogLoss:F4} (valid AUC {r.ValidAuc:F4}), {r.Seconds:F1} s, {r.Steps} steps")));

        o.WriteLine();
        o.WriteLine($"| model | test AUC (mean ± std, {seeds} seed{(seeds == 1 ? "" : "s")}) | test logloss | training time (s) | parameters |");
        o.WriteLine("| --- | --- | --- | --- | --- |");
        foreach (var m in models)
        {
            var mine = runs.Where(r => r.Model == m).ToArray();
            string Cell(Func<ZooRun, double> f, string fmt)
            {
                var (mean, std) = ZooExperiment.MeanStd(mine.Select(f).ToArray());
                return mean.ToString(fmt, CultureInfo.InvariantCulture) + (double.IsNaN(std) ? "" : " ± " + std.ToString(fmt, CultureInfo.InvariantCulture));
            }
            o.WriteLine($"| {m} | {Cell(r => r.TestAuc, "F4")} | {Cell(r => r.TestLogLoss, "F4")} | {Cell(r => r.Seconds, "F1")} | {mine[0].Parameters:N0} |");
        }
        return 0;
    }
}
