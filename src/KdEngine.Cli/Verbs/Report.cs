using System.Globalization;
using KdEngine.Metrics;
using KdEngine.Models;
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

    /// <summary>
    /// Fits the post-hoc calibration on the validation part (when asked) and prints what it does to the test logloss and
    /// ECE. Several ranks hold shards of the validation part, so the fit refuses to run data-parallel.
    /// </summary>
    public static LogitCalibration? Calibrate(CliOutput o, CtrModel model, PreparedData data, CalibrationKind kind, IProcessGroup group, string who = "")
    {
        if (kind == CalibrationKind.None) return null;
        if (group.Size > 1) throw new CliException("--calibration fits on the whole validation part; run it without --distributed (or calibrate the saved model's run on one process).");
        var calibration = CtrPipeline.FitCalibration(model, data.Validation, kind);
        var logits = CtrPipeline.Logits(model, data.Test);
        double ll = CtrMetrics.LogLossFromLogits(logits, data.Test.Labels), ece = CalibrationMetrics.Reliability(logits, data.Test.Labels).Ece;
        calibration.Apply(logits);
        double ll2 = CtrMetrics.LogLossFromLogits(logits, data.Test.Labels), ece2 = CalibrationMetrics.Reliability(logits, data.Test.Labels).Ece;
        o.Line($"{who}calibration: {calibration} (fitted on validation); test logloss {ll.ToString("F6", Inv)} → {ll2.ToString("F6", Inv)}, " +
            $"ECE {ece.ToString("F4", Inv)} → {ece2.ToString("F4", Inv)} (10 equal-mass bins)");
        return calibration;
    }
}
