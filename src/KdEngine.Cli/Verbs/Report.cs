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

    /// <summary>The same line for streamed data (rows known after the passes; the click rate when a pass or cache gave it).</summary>
    public static void Data(CliOutput o, StreamedData d)
    {
        string name = d.Train.Input.Files.Count == 1 && d.Validation.Input.Files.SequenceEqual(d.Train.Input.Files) ? d.Train.Input.Name : $"train {d.Train.Input.Name}, validation {d.Validation.Input.Name}" + (d.Test is null ? "" : $", test {d.Test.Input.Name}");
        // A part not read yet (a large validation/test part streamed from text; the train part when a teacher fixes the
        // preprocessing, so nothing is fitted) has the row count of the sequential split that cut it, or "?" (an input set).
        static long Known(StreamedPart p) => p.Rows >= 0 ? p.Rows : p.Input.SplitRows ?? -1;
        string Count(long n) => n < 0 ? "?" : n.ToString(CultureInfo.InvariantCulture);
        long[] parts = [Known(d.Train), Known(d.Validation), d.Test is null ? 0 : Known(d.Test)];
        string rows = parts.Any(p => p < 0) ? "?" : parts.Sum().ToString(CultureInfo.InvariantCulture);
        o.Line($"data: {name} ({DataSource.FormatName(d.Source.ResolvedFormat)}), {rows} rows → train {Count(parts[0])} / validation {Count(parts[1])}" + (d.Test is null ? "" : $" / test {Count(parts[2])}") + "; " +
            $"{d.Fields.Count} fields, {d.Fields.Sum(f => (long)f.Cardinality):N0} ids" + (d.TrainClickRate is { } rate ? $"; click rate {rate:F4} (train)" : ""));
    }

    public static void Outcome(CliOutput o, TrainOutcome r, string who = "", bool hasTest = true)
    {
        o.Line($"trained {r.Report.Steps} steps in {r.Report.Elapsed.TotalSeconds:F1} s{(r.Report.StoppedEarly ? " (stopped early)" : "")}; best validation at step {r.Report.Best?.Step}");
        o.Line($"{who}validation AUC {r.Validation.Auc.ToString("F6", Inv)}  logloss {r.Validation.LogLoss.ToString("F6", Inv)}");
        if (hasTest) o.Line($"{who}test AUC {r.Test.Auc.ToString("F6", Inv)}  logloss {r.Test.LogLoss.ToString("F6", Inv)}");
        else o.Line($"{who}test: no --test files given");
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

    /// <summary>As the in-memory <see cref="Calibrate(CliOutput, CtrModel, PreparedData, CalibrationKind, IProcessGroup, string)"/>,
    /// over streamed parts: fitted on the validation part's logits (8 bytes per row kept), its effect shown on the test part.</summary>
    public static LogitCalibration? Calibrate(CliOutput o, CtrModel model, StreamedData data, CalibrationKind kind, string who = "")
    {
        if (kind == CalibrationKind.None) return null;
        var (_, validLogits, validLabels) = Trainer.Evaluate(model, data.Validation.OrderedBatches(1024));
        var calibration = LogitCalibration.Fit(validLogits, validLabels, kind);
        if (data.Test is null)
        {
            o.Line($"{who}calibration: {calibration} (fitted on validation; no test part to show its effect)");
            return calibration;
        }
        var (_, logits, labels) = Trainer.Evaluate(model, data.Test.OrderedBatches(1024));
        double ll = CtrMetrics.LogLossFromLogits(logits, labels), ece = CalibrationMetrics.Reliability(logits, labels).Ece;
        calibration.Apply(logits);
        double ll2 = CtrMetrics.LogLossFromLogits(logits, labels), ece2 = CalibrationMetrics.Reliability(logits, labels).Ece;
        o.Line($"{who}calibration: {calibration} (fitted on validation); test logloss {ll.ToString("F6", Inv)} → {ll2.ToString("F6", Inv)}, " +
            $"ECE {ece.ToString("F4", Inv)} → {ece2.ToString("F4", Inv)} (10 equal-mass bins)");
        return calibration;
    }
}
