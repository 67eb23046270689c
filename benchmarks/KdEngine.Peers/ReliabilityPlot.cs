using System.Globalization;
using KdEngine.Data;
using KdEngine.Metrics;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Training;
using ScottPlot;

namespace KdEngine.Peers;

/// <summary>
/// The reliability plot of docs/results.md (the `reliability` verb): xDeepFM on the bundled Criteo sample (sequential 8:1:1),
/// trained twice — with the previous defaults (early stopping on AUC alone) and with the current ones (AUC or logloss,
/// logloss-guarded restore) — and the current one again with Platt scaling fitted on the validation part. Each curve is the
/// test part's reliability table (10 equal-mass bins): mean prediction against observed click rate; the diagonal is perfect
/// calibration. ECE and logloss are in the legend.
/// </summary>
public static class ReliabilityPlot
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static void Run(string path, TextWriter log, string modelName = "xdeepfm")
    {
        var data = CtrPipeline.Prepare(new DataSource(DataPaths.FindCriteoSample()), new SplitOptions(), new PreprocessorOptions { MinCount = 2 });
        var kind = ZooExperimentConfig.KindOf(modelName);
        var previous = new TrainingSettings { Metric = StoppingMetric.Auc, Patience = 2, Epochs = 10, PlateauFactor = 1 };
        var current = TrainingSettings.For(kind);
        var curves = new List<(string Label, float[] Logits)>();
        foreach (var (label, settings) in new[] { ("previous defaults (stop on AUC)", previous), ("current defaults", current) })
        {
            var model = CtrPipeline.BuildModel(new ModelConfig { Model = kind }, data.Fields);
            var outcome = CtrPipeline.Train(model, data, settings);
            log.WriteLine($"{label}: {outcome.Report.StopReason}");
            curves.Add((label, CtrPipeline.Logits(model, data.Test)));
            if (settings == current)
            {
                var platt = CtrPipeline.FitCalibration(model, data.Validation, CalibrationKind.Platt);
                var calibrated = CtrPipeline.Logits(model, data.Test);
                platt.Apply(calibrated);
                curves.Add(($"current + Platt scaling ({platt})", calibrated));
            }
        }
        var plot = new Plot();
        var diagonal = plot.Add.Line(0, 0, 0.6, 0.6);
        diagonal.LinePattern = LinePattern.Dashed;
        diagonal.Color = Colors.Gray;
        diagonal.LegendText = "perfect calibration";
        var palette = new[] { Colors.C3, Colors.C0, Colors.C2 };
        for (int k = 0; k < curves.Count; k++)
        {
            var (label, logits) = curves[k];
            var r = CalibrationMetrics.Reliability(logits, data.Test.Labels, 10, Binning.EqualMass);
            double ll = CtrMetrics.LogLossFromLogits(logits, data.Test.Labels), auc = CtrMetrics.Auc(logits, data.Test.Labels);
            var sc = plot.Add.Scatter(r.Bins.Select(b => b.MeanPrediction).ToArray(), r.Bins.Select(b => b.ObservedRate).ToArray());
            sc.Color = palette[k % palette.Length];
            sc.LineWidth = 2;
            sc.MarkerSize = 7;
            sc.LegendText = $"{label}: ECE {r.Ece.ToString("F4", Inv)}, logloss {ll.ToString("F4", Inv)}, AUC {auc.ToString("F4", Inv)}";
            log.WriteLine(sc.LegendText);
            foreach (var b in r.Bins) log.WriteLine($"   [{b.Lower:F3}, {b.Upper:F3})  n {b.Count,4}  mean prediction {b.MeanPrediction:F4}  click rate {b.ObservedRate:F4}");
        }
        plot.Axes.Bottom.Label.Text = "mean predicted click probability (bin)";
        plot.Axes.Left.Label.Text = "observed click rate (bin)";
        plot.Title($"Reliability on the Criteo sample's test part: {modelName}, 10 equal-mass bins");
        plot.Legend.Alignment = Alignment.UpperLeft;
        plot.ShowLegend();
        plot.Axes.SetLimits(0, 0.6, 0, 0.6);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        plot.SavePng(path, 900, 700);
        log.WriteLine($"wrote {path}");
    }
}
