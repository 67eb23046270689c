using System.Globalization;
using KdEngine.Pipelines;
using KdEngine.Training;

namespace KdEngine.Cli.Verbs;

/// <summary>The lines several verbs print about their data and training outcome (tests and docs read them).</summary>
internal static class Report
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static void Data(CliOutput o, PreparedData d, IProcessGroup group)
    {
        if (group.Size > 1) o.Writer.Write($"rank {group.Rank}'s shard of ");
        Data(o, d);
    }

    public static void Data(CliOutput o, PreparedData d) =>
        o.Line($"data: {d.Source.FileName} ({DataSource.FormatName(d.Source.ResolvedFormat)}), {d.Rows} rows → train {d.Train.Count} / validation {d.Validation.Count} / test {d.Test.Count}; " +
            $"{d.Fields.Count} fields, {d.Fields.Sum(f => (long)f.Cardinality):N0} ids; click rate {d.Train.LabelRate:F4} (train)");

    /// <summary>The same line for streamed data (rows known after the passes; the click rate when a pass or cache gave it).</summary>
    public static void Data(CliOutput o, StreamedData d)
    {
        string name = d.Train.Input.Files.Count == 1 && d.Validation.Input.Files.SequenceEqual(d.Train.Input.Files) ? d.Train.Input.Name : $"train {d.Train.Input.Name}, validation {d.Validation.Input.Name}" + (d.Test is null ? "" : $", test {d.Test.Input.Name}");
        // A large validation/test part streamed from text has not been counted yet: "?".
        string Count(long n) => n < 0 ? "?" : n.ToString(CultureInfo.InvariantCulture);
        long[] parts = [d.Train.Rows, d.Validation.Rows, d.Test?.Rows ?? 0];
        string rows = parts.Any(p => p < 0) ? "?" : parts.Sum().ToString(CultureInfo.InvariantCulture);
        o.Line($"data: {name} ({DataSource.FormatName(d.Source.ResolvedFormat)}), {rows} rows → train {Count(d.Train.Rows)} / validation {Count(d.Validation.Rows)}" + (d.Test is null ? "" : $" / test {Count(d.Test.Rows)}") + "; " +
            $"{d.Fields.Count} fields, {d.Fields.Sum(f => (long)f.Cardinality):N0} ids" + (d.TrainClickRate is { } rate ? $"; click rate {rate:F4} (train)" : ""));
    }

    public static void Outcome(CliOutput o, TrainOutcome r, string who = "", bool hasTest = true)
    {
        o.Line($"trained {r.Report.Steps} steps in {r.Report.Elapsed.TotalSeconds:F1} s{(r.Report.StoppedEarly ? " (stopped early)" : "")}; best validation at step {r.Report.Best?.Step}");
        o.Line($"{who}validation AUC {r.Validation.Auc.ToString("F6", Inv)}  logloss {r.Validation.LogLoss.ToString("F6", Inv)}");
        if (hasTest) o.Line($"{who}test AUC {r.Test.Auc.ToString("F6", Inv)}  logloss {r.Test.LogLoss.ToString("F6", Inv)}");
        else o.Line($"{who}test: no --test files given");
    }
}
