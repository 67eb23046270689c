using KdEngine.Metrics;
using KdEngine.Models;
using KdEngine.Serving;
using KdEngine.Tests.Serving;
using NUnit.Framework;

namespace KdEngine.Tests.Metrics;

/// <summary>ECE and reliability tables; temperature and Platt scaling fitted on validation, stored in the checkpoint, applied by the predictor.</summary>
public class CalibrationTests
{
    private static float Logit(double p) => (float)Math.Log(p / (1 - p));

    [Test]
    public void Ece_and_the_reliability_table_of_a_hand_example()
    {
        // Four predictions at 0.15 (one click) and four at 0.75 (two clicks). Equal-width bins of 0.1:
        //   [0.1, 0.2): mean 0.15, rate 0.25, gap 0.1;  [0.7, 0.8): mean 0.75, rate 0.5, gap 0.25
        //   ECE = ½·0.1 + ½·0.25 = 0.175, MCE = 0.25.
        float[] logits = [Logit(0.15), Logit(0.15), Logit(0.15), Logit(0.15), Logit(0.75), Logit(0.75), Logit(0.75), Logit(0.75)];
        float[] labels = [1, 0, 0, 0, 1, 1, 0, 0];
        var r = CalibrationMetrics.Reliability(logits, labels, bins: 10, Binning.EqualWidth);
        Assert.That(r.Bins, Has.Count.EqualTo(2));
        Assert.That(r.Bins[0].Lower, Is.EqualTo(0.1).Within(1e-9));
        Assert.That(r.Bins[0].MeanPrediction, Is.EqualTo(0.15).Within(1e-6));
        Assert.That(r.Bins[0].ObservedRate, Is.EqualTo(0.25));
        Assert.That(r.Bins[1].Count, Is.EqualTo(4));
        Assert.That(r.Bins[1].ObservedRate, Is.EqualTo(0.5));
        Assert.That(r.Ece, Is.EqualTo(0.175).Within(1e-6));
        Assert.That(r.MaxCalibrationError, Is.EqualTo(0.25).Within(1e-6));
        // Equal-mass bins of 4: the same two groups (ties never split across bins).
        var m = CalibrationMetrics.Reliability(logits, labels, bins: 3, Binning.EqualMass);
        Assert.That(m.Bins.Select(b => b.Count), Is.EqualTo(new long[] { 4, 4 }));
        Assert.That(m.Ece, Is.EqualTo(0.175).Within(1e-6));
    }

    [Test]
    public void Reliability_rejects_bad_input_naming_it()
    {
        Assert.Throws<ArgumentException>(() => CalibrationMetrics.Reliability([0f], [0f, 1f]));
        Assert.That(Assert.Throws<ArgumentException>(() => CalibrationMetrics.Reliability([0f, 1f], [0f, 0.5f]))!.Message, Does.Contain("label[1]"));
        Assert.Throws<ArgumentOutOfRangeException>(() => CalibrationMetrics.Reliability([0f], [1f], bins: 0));
    }

    /// <summary>Labels drawn with P(y = 1) = σ(a·z + b): the fit recovers (a, b) and lowers ECE and logloss.</summary>
    [TestCase(CalibrationKind.Temperature, 0.5, 0.0)]
    [TestCase(CalibrationKind.Platt, 0.7, -0.8)]
    public void Fits_recover_the_map_that_generated_the_labels(CalibrationKind kind, double a, double b)
    {
        var rng = new Random(3);
        int n = 40_000;
        var logits = new float[n];
        var labels = new float[n];
        for (int i = 0; i < n; i++)
        {
            logits[i] = (float)(rng.NextDouble() * 8 - 4);
            labels[i] = rng.NextDouble() < 1 / (1 + Math.Exp(-(a * logits[i] + b))) ? 1f : 0f;
        }
        var fit = LogitCalibration.Fit(logits, labels, kind);
        Assert.That(fit.Kind, Is.EqualTo(kind));
        Assert.That(fit.Scale, Is.EqualTo(a).Within(0.03));
        Assert.That(fit.Bias, Is.EqualTo(b).Within(kind == CalibrationKind.Temperature ? 0 : 0.05));
        var calibrated = (float[])logits.Clone();
        fit.Apply(calibrated);
        Assert.That(CtrMetrics.LogLossFromLogits(calibrated, labels), Is.LessThan(CtrMetrics.LogLossFromLogits(logits, labels)));
        Assert.That(CalibrationMetrics.Reliability(calibrated, labels).Ece, Is.LessThan(CalibrationMetrics.Reliability(logits, labels).Ece / 3));
        Assert.That(CtrMetrics.Auc(calibrated, labels), Is.EqualTo(CtrMetrics.Auc(logits, labels)), "a monotone map keeps AUC");
    }

    [Test]
    public void A_fit_that_would_invert_the_ranking_or_sees_one_class_is_refused()
    {
        float[] logits = [-2, -1, 1, 2];
        Assert.Throws<ArgumentException>(() => LogitCalibration.Fit(logits, [1f, 1f, 0f, 0f], CalibrationKind.Platt), "anti-correlated");
        Assert.Throws<ArgumentException>(() => LogitCalibration.Fit(logits, [1f, 1f, 1f, 1f], CalibrationKind.Temperature), "one class");
        Assert.That(LogitCalibration.Fit(logits, [0f, 1f, 0f, 1f], CalibrationKind.None), Is.SameAs(LogitCalibration.Identity));
    }

    [Test]
    public void The_checkpoint_stores_the_calibration_and_the_predictor_applies_it()
    {
        var fields = ServingTestModels.Fields(4);
        var model = ServingTestModels.Random(ServingTestModels.Config(ModelKind.Wdl), fields, seed: 2);
        var calibration = new LogitCalibration(CalibrationKind.Platt, 0.625, -0.25);
        string path = Path.Combine(Path.GetTempPath(), $"kdengine-cal-{Guid.NewGuid():N}.kde");
        try
        {
            ModelCheckpoint.Save(path, model, calibration: calibration);
            var loaded = ModelCheckpoint.Load(path);
            Assert.That(loaded.Calibration, Is.EqualTo(calibration), "doubles round-trip exactly");
            var ids = ServingTestModels.Ids(fields, 9, seed: 4);
            var raw = new float[9];
            new Predictor(model).Predict(ids, raw);
            var served = new float[9];
            Predictor.Load(path).Predict(ids, served);
            var expected = raw.Select(z => MathF.FusedMultiplyAdd(0.625f, z, -0.25f)).ToArray();
            Assert.That(served, Is.EqualTo(expected));
            var probabilities = new float[9];
            Predictor.Load(path).Predict(ids, probabilities, probabilities: true);
            Assert.That(probabilities, Is.EqualTo(expected.Select(z => 1 / (1 + MathF.Exp(-z)))).Within(1e-6));

            // No calibration: no metadata key, identity in the predictor.
            ModelCheckpoint.Save(path, model);
            Assert.That(ModelCheckpoint.Load(path).Calibration, Is.Null);
            Assert.That(Predictor.Load(path).Calibration.IsIdentity, Is.True);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestCase("{\"kind\":\"platt\",\"scale\":-1,\"bias\":0}", "scale")]
    [TestCase("{\"kind\":\"platt\",\"scale\":1}", "required")]
    [TestCase("{\"kind\":\"isotonic\",\"scale\":1,\"bias\":0}", "isotonic")]
    [TestCase("{\"kind\":\"platt\",\"scale\":1,\"bias\":0,\"extra\":1}", "extra")]
    public void A_bad_calibration_in_a_checkpoint_is_a_clear_error(string json, string named)
    {
        var fields = ServingTestModels.Fields(3);
        var model = ServingTestModels.Random(ServingTestModels.Config(ModelKind.Lr), fields, seed: 1);
        string path = Path.Combine(Path.GetTempPath(), $"kdengine-cal-{Guid.NewGuid():N}.kde");
        try
        {
            ModelCheckpoint.Save(path, model, extra: new Dictionary<string, string> { ["calibration"] = json });
            var e = Assert.Throws<CheckpointFormatException>(() => ModelCheckpoint.Load(path))!;
            Assert.That(e.Message, Does.Contain("calibration").And.Contain(named));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
