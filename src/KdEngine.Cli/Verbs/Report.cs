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

    public static void Outcome(CliOutput o, TrainOutcome r, string who = "")
    {
        o.Line($"trained {r.Report.Steps} steps in {r.Report.Elapsed.TotalSeconds:F1} s{(r.Report.StoppedEarly ? " (stopped early)" : "")}; best validation at step {r.Report.Best?.Step}");
        o.Line($"{who}validation AUC {r.Validation.Auc.ToString("F6", Inv)}  logloss {r.Validation.LogLoss.ToString("F6", Inv)}");
        o.Line($"{who}test AUC {r.Test.Auc.ToString("F6", Inv)}  logloss {r.Test.LogLoss.ToString("F6", Inv)}");
    }
}
