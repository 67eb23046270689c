using KdEngine.Autograd;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Tensors;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Training;

/// <summary>Early stopping, best-point selection (incl. logloss-guarded AUC), reduce-on-plateau, and the trainer restoring the selected step.</summary>
public class EarlyStoppingTests
{
    private static ValidationPoint P(int step, double auc, double logLoss) => new(step, 1, auc, logLoss, double.NaN, double.NaN);

    /// <summary>Feeds points until a stop; returns the decisions and the index of the point that stopped (or −1).</summary>
    private static (List<StoppingDecision> Decisions, int StoppedAt) Run(EarlyStopping es, params ValidationPoint[] points)
    {
        var decisions = new List<StoppingDecision>();
        for (int i = 0; i < points.Length; i++)
        {
            var d = es.Observe(points[i]);
            decisions.Add(d);
            if (d.Stop) return (decisions, i);
        }
        return (decisions, -1);
    }

    [Test]
    public void Auc_monitor_stops_after_patience_points_without_a_higher_auc_and_selects_the_highest()
    {
        var es = new EarlyStopping(StoppingMetric.Auc, SelectionMetric.Auc, patience: 2);
        var (_, stoppedAt) = Run(es, P(1, .70, .50), P(2, .72, .49), P(3, .71, .48), P(4, .73, .47), P(5, .72, .46), P(6, .73, .45), P(7, .80, .40));
        Assert.That(stoppedAt, Is.EqualTo(5), "a logloss that keeps falling does not count for the AUC monitor; an equal AUC is no improvement");
        Assert.That(es.Selected!.Step, Is.EqualTo(4));
        Assert.That(es.StopReason(), Does.Contain("validation AUC").And.Contain("2 validations"));
    }

    [Test]
    public void LogLoss_monitor_selects_the_lowest_logloss()
    {
        var es = new EarlyStopping(StoppingMetric.LogLoss, SelectionMetric.LogLoss, patience: 2);
        var (_, stoppedAt) = Run(es, P(1, .70, .50), P(2, .72, .48), P(3, .74, .49), P(4, .75, .47), P(5, .76, .47), P(6, .77, .475));
        Assert.That(stoppedAt, Is.EqualTo(5));
        Assert.That(es.Selected!.Step, Is.EqualTo(4));
    }

    [Test]
    public void Both_keeps_going_while_either_metric_improves()
    {
        var es = new EarlyStopping(StoppingMetric.Both, SelectionMetric.GuardedAuc, patience: 2);
        // AUC peaks at 3, logloss keeps improving until 5: neither alone would have carried training to 7.
        var (d, stoppedAt) = Run(es, P(1, .70, .50), P(2, .72, .49), P(3, .74, .485), P(4, .73, .48), P(5, .735, .479), P(6, .73, .48), P(7, .72, .49), P(8, .9, .1));
        Assert.That(d.Select(x => x.Improved), Is.EqualTo(new[] { true, true, true, true, true, false, false }));
        Assert.That(stoppedAt, Is.EqualTo(6));
    }

    [Test]
    public void Guarded_auc_takes_the_best_auc_within_the_logloss_band()
    {
        // Band 0.5 %: the lowest logloss is 0.45, so points up to 0.45225 are eligible; AUC keeps rising as logloss worsens.
        var es = new EarlyStopping(StoppingMetric.Both, SelectionMetric.GuardedAuc, patience: 0, guardBand: 0.005);
        Run(es, P(1, .70, .50), P(2, .74, .45), P(3, .745, .452), P(4, .75, .46), P(5, .76, .47));
        Assert.That(es.Selected!.Step, Is.EqualTo(3));
        // AUC alone would have taken the over-trained tail.
        var byAuc = new EarlyStopping(StoppingMetric.Both, SelectionMetric.Auc, patience: 0);
        Run(byAuc, P(1, .70, .50), P(2, .74, .45), P(3, .745, .452), P(4, .75, .46), P(5, .76, .47));
        Assert.That(byAuc.Selected!.Step, Is.EqualTo(5));
    }

    [Test]
    public void Guarded_auc_falls_back_to_the_lowest_logloss_point_when_the_band_tightens()
    {
        var es = new EarlyStopping(StoppingMetric.Both, SelectionMetric.GuardedAuc, patience: 0, guardBand: 0.005);
        var (d, _) = Run(es, P(1, .70, .50), P(2, .71, .501), P(3, .69, .45), P(4, .72, .451), P(5, .73, .46));
        Assert.That(d[1].Selected, Is.True, "0.501 ≤ 0.50·1.005: eligible, higher AUC");
        Assert.That(d[2].FallbackSelected && d[2].LowestLogLoss && !d[2].Selected, Is.True,
            "the new lowest logloss 0.45 puts step 2 out of the band; step 3 (the fallback) replaces it though its AUC is lower");
        Assert.That(d[3].Selected, Is.True);
        Assert.That(es.Selected!.Step, Is.EqualTo(4), "step 5 (0.46) is outside the band");
    }

    [Test]
    public void Guarded_auc_leaves_the_lowest_logloss_point_only_for_an_auc_gain_above_the_standard_error()
    {
        // Every point carries the standard error of its validation AUC (0.01 here). Step 2 is the lowest logloss;
        // step 3 gains 0.008 AUC (< 1 SE) for a logloss inside the band, step 4 gains 0.012 (> 1 SE), also inside it.
        static ValidationPoint S(int step, double auc, double logLoss) => new(step, 1, auc, logLoss, double.NaN, double.NaN, AucStandardError: 0.01);
        var points = new[] { S(1, .70, .46), S(2, .74, .45), S(3, .748, .451) };
        var strict = new EarlyStopping(StoppingMetric.Both, SelectionMetric.GuardedAuc, patience: 0, guardBand: 0.005, guardStandardErrors: 1);
        var (d, _) = Run(strict, points);
        Assert.That(d[2].Selected, Is.False, "a gain of 0.8 SE does not pay for the logloss given up");
        Assert.That(strict.Selected!.Step, Is.EqualTo(2));
        Assert.That(strict.Observe(S(4, .752, .4515)).Selected, Is.True, "a gain of 1.2 SE inside the band does");
        Assert.That(strict.SelectionText(), Does.Contain("1 AUC standard error"));

        // k = 0 (the default) is the plain band: any higher AUC inside it wins.
        var plain = new EarlyStopping(StoppingMetric.Both, SelectionMetric.GuardedAuc, patience: 0, guardBand: 0.005);
        Run(plain, points);
        Assert.That(plain.Selected!.Step, Is.EqualTo(3));

        // A new lowest logloss re-tests the selected point against its AUC: step 5 (0.745, 0.4495) becomes the
        // reference; step 4 (logloss 0.4515, inside the new band) is only 0.7 SE above it, so step 5 replaces it.
        var after = strict.Observe(S(5, .745, .4495));
        Assert.That(after.Selected || after.FallbackSelected, Is.True);
        Assert.That(strict.Selected!.Step, Is.EqualTo(5));

        // Points without a standard error (older checkpoints, hand-made points) keep the plain band.
        var unknown = new EarlyStopping(StoppingMetric.Both, SelectionMetric.GuardedAuc, patience: 0, guardBand: 0.005, guardStandardErrors: 1);
        Run(unknown, P(2, .74, .45), P(3, .741, .451));
        Assert.That(unknown.Selected!.Step, Is.EqualTo(3));
        Assert.Throws<ArgumentOutOfRangeException>(() => new EarlyStopping(StoppingMetric.Both, SelectionMetric.GuardedAuc, 0, guardStandardErrors: -1));

        // The setting reaches the trainer from a settings file, and a bad value names its key.
        var settings = new KdEngine.Pipelines.TrainingSettings { GuardStandardErrors = 2 };
        Assert.That(settings.ToTrainerOptions().NewEarlyStopping().GuardStandardErrors, Is.EqualTo(2));
        Assert.That(settings.ToJson(), Does.Contain("\"guardStandardErrors\": 2"));
        var bad = Assert.Throws<KdEngine.Models.ConfigException>(() => (settings with { GuardStandardErrors = -1 }).Validate());
        Assert.That(bad!.Message, Does.Contain("guardStandardErrors"));
    }

    [Test]
    public void Min_delta_and_plateau_reduction()
    {
        var es = new EarlyStopping(StoppingMetric.Auc, SelectionMetric.Auc, patience: 3, minDelta: 0.01, plateauFactor: 0.1, plateauPatience: 1);
        var (d, stoppedAt) = Run(es, P(1, .70, .5), P(2, .705, .5), P(3, .72, .5), P(4, .725, .5), P(5, .726, .5), P(6, .727, .5));
        Assert.That(d.Select(x => x.Improved), Is.EqualTo(new[] { true, false, true, false, false, false }), "+0.005 is below min-delta; +0.015 counts");
        Assert.That(d.Select(x => x.ReduceLearningRate), Is.EqualTo(new[] { false, true, false, true, true, true }));
        Assert.That(stoppedAt, Is.EqualTo(5));
        Assert.That(es.Selected!.Step, Is.EqualTo(6), "selection ignores min-delta: the highest AUC is restored");
    }

    [Test]
    public void Nan_auc_never_improves_and_never_wins_the_selection()
    {
        var es = new EarlyStopping(StoppingMetric.Auc, SelectionMetric.Auc, patience: 2);
        var (d, _) = Run(es, P(1, .6, .5), P(2, double.NaN, .4), P(3, .61, .5));
        Assert.That(d[1].Improved || d[1].Selected, Is.False);
        Assert.That(es.Selected!.Step, Is.EqualTo(3));
    }

    [Test]
    public void A_candidate_only_start_can_be_restored_but_patience_and_plateau_count_from_the_first_trained_point()
    {
        // The start (a fitted wide part) is strong; the first trained points are worse.
        var start = new ValidationPoint(0, 0, .75, .45, double.NaN, double.NaN);
        var es = new EarlyStopping(StoppingMetric.Both, SelectionMetric.GuardedAuc, patience: 2, plateauFactor: 0.5, plateauPatience: 1);
        var d0 = es.Observe(start, candidateOnly: true);
        Assert.That((d0.Selected, d0.Improved, d0.ReduceLearningRate, d0.Stop), Is.EqualTo((true, false, false, false)));
        var (d, stoppedAt) = Run(es, P(1, .70, .50), P(2, .69, .51), P(3, .68, .52), P(4, .9, .1));
        Assert.That(d[0].Improved && !d[0].ReduceLearningRate, Is.True, "the first trained point sets the monitor's references");
        Assert.That(d[1].ReduceLearningRate, Is.True);
        Assert.That(stoppedAt, Is.EqualTo(2), "patience 2 counted from point 1");
        Assert.That(es.Selected!.Step, Is.EqualTo(0), "none of them beat the start, which is restored");

        // Observed as an ordinary point, the start would have cut the rate at point 1 and stopped at point 2.
        var plain = new EarlyStopping(StoppingMetric.Both, SelectionMetric.GuardedAuc, patience: 2, plateauFactor: 0.5, plateauPatience: 1);
        var (p, plainStop) = Run(plain, start, P(1, .70, .50), P(2, .69, .51), P(3, .68, .52));
        Assert.That(p[1].ReduceLearningRate, Is.True);
        Assert.That(plainStop, Is.EqualTo(2));
    }

    // ---------- the trainer ----------

    private static readonly EncodedDataset Train = new SyntheticCtr(new SyntheticCtrOptions { Fields = 6, VocabSize = 300, Seed = 21 }).Generate(1200);
    private static readonly EncodedDataset Valid = new SyntheticCtr(new SyntheticCtrOptions { Fields = 6, VocabSize = 300, Seed = 22 }).Generate(400);

    /// <summary>
    /// The selection each rule defines, recomputed from the history: AUC → the first highest AUC; logloss → the first
    /// lowest; guarded → the online rule of <see cref="EarlyStopping"/>'s remarks, written out again here.
    /// </summary>
    private static long ExpectedStep(IReadOnlyList<ValidationPoint> h, SelectionMetric selection, double band, double standardErrors)
    {
        switch (selection)
        {
            case SelectionMetric.Auc: return h.First(p => p.Auc == h.Max(q => q.Auc)).Step;
            case SelectionMetric.LogLoss: return h.First(p => p.LogLoss == h.Min(q => q.LogLoss)).Step;
        }
        ValidationPoint? selected = null, lowest = null;
        foreach (var p in h)
        {
            if (lowest is null || p.LogLoss < lowest.LogLoss) lowest = p;
            double limit = lowest.LogLoss * (1 + band);
            bool Eligible(ValidationPoint q) => q.LogLoss <= limit && (q == lowest || q.Auc - lowest.Auc > standardErrors * lowest.AucStandardError);
            if (selected is not null && !Eligible(selected)) selected = lowest;
            if (Eligible(p) && (selected is null || p.Auc > selected.Auc)) selected = p;
        }
        return selected!.Step;
    }

    [TestCase(StoppingMetric.Auc, SelectionMetric.Auc)]
    [TestCase(StoppingMetric.LogLoss, SelectionMetric.LogLoss)]
    [TestCase(StoppingMetric.Both, SelectionMetric.GuardedAuc)]
    [TestCase(StoppingMetric.Both, SelectionMetric.GuardedAuc, 1.0)]
    [TestCase(StoppingMetric.Both, SelectionMetric.Auc)]
    public void The_trainer_restores_the_weights_of_the_selected_step(StoppingMetric monitor, SelectionMetric expectedSelection, double guardStandardErrors = 0)
    {
        var (fields, columns, _) = ModelInputs.From(Train.FeatureSpace);
        var model = new ZooModel(new ModelConfig { Model = ModelKind.Wdl, EmbeddingDim = 8, Dnn = [32], Seed = 5 }, fields, columns);
        var parameters = model.Parameters();
        var weightsAt = new Dictionary<long, float[][]>();
        var options = new TrainerOptions
        {
            Epochs = 6, BatchSize = 64, EvaluateEvery = 7, Patience = 4, Metric = monitor, Seed = 3,
            RestoreBy = monitor == StoppingMetric.Both ? expectedSelection : null,
            GuardBand = 0.01,
            GuardStandardErrors = guardStandardErrors,
            // Weights as they are when each point is measured (the callback runs right after the validation).
            OnValidation = p => weightsAt[p.Step] = parameters.Select(x => x.Tensor.ToArray()).ToArray(),
        };
        var adam = new Adam(parameters.Select(p => p.Tensor), 0.02f); // fast enough to over-fit within the run
        var report = new Trainer(options).Fit(new SupervisedObjective(model), adam, Train, Valid);

        long expected = ExpectedStep(report.History, expectedSelection, 0.01, guardStandardErrors);
        Assert.That(report.History.All(p => p.AucStandardError > 0), "every point carries its AUC's standard error");
        Assert.That(report.Best!.Step, Is.EqualTo(expected), "the selected point is the one the rule defines");
        Assert.That(report.History[^1].Step, Is.Not.EqualTo(expected), "the run went past its best point (so restoring matters)");
        var restored = parameters.Select(x => x.Tensor.ToArray()).ToArray();
        for (int i = 0; i < restored.Length; i++)
            Assert.That(restored[i], Is.EqualTo(weightsAt[expected][i]), $"{parameters[i].Name} holds the weights of step {expected}");
        Assert.That(report.StopReason, Does.Contain("restored").And.Contain($"step {expected}"));
        if (report.StoppedEarly) Assert.That(report.StopReason, Does.StartWith("no improvement"));
    }

    [Test]
    public void Last_selects_every_new_point_whatever_its_metrics()
    {
        var es = new EarlyStopping(StoppingMetric.Both, SelectionMetric.Last, patience: 0);
        var (d, stoppedAt) = Run(es, P(1, .70, .50), P(2, .74, .45), P(3, .60, .70), P(4, double.NaN, double.NaN));
        Assert.That(stoppedAt, Is.EqualTo(-1), "patience 0 never stops");
        Assert.That(d.Select(x => x.Selected), Is.All.True);
        Assert.That(es.Selected!.Step, Is.EqualTo(4));
        Assert.That(es.SelectionText(), Is.EqualTo("last validation point"));
        Assert.That(KdEngine.Pipelines.TrainingSettings.ParseSelection("last"), Is.EqualTo(SelectionMetric.Last));
    }

    /// <summary>A fixed number of passes (LIBFFM's and ML.NET's way): patience 0 and <see cref="SelectionMetric.Last"/> keep the weights the last epoch ended with.</summary>
    [Test]
    public void The_trainer_keeps_the_last_weights_when_restoring_the_last_point()
    {
        var (fields, columns, _) = ModelInputs.From(Train.FeatureSpace);
        var model = new ZooModel(new ModelConfig { Model = ModelKind.Wdl, EmbeddingDim = 8, Dnn = [32], Seed = 5 }, fields, columns);
        var parameters = model.Parameters();
        float[][]? lastMeasured = null;
        var options = new TrainerOptions
        {
            Epochs = 6, BatchSize = 64, EvaluateEvery = 7, Patience = 0, PlateauFactor = 1, RestoreBy = SelectionMetric.Last, Seed = 3,
            OnValidation = _ => lastMeasured = parameters.Select(x => x.Tensor.ToArray()).ToArray(),
        };
        var report = new Trainer(options).Fit(new SupervisedObjective(model), new Adam(parameters.Select(p => p.Tensor), 0.02f), Train, Valid);
        Assert.That(report.History[^1].Epoch, Is.EqualTo(6), "patience 0: every epoch runs");
        Assert.That(report.Best!.Step, Is.EqualTo(report.History[^1].Step));
        Assert.That(report.History.Max(p => p.Auc), Is.GreaterThan(report.History[^1].Auc), "an earlier epoch was better on validation (so keeping the last one is a choice)");
        for (int i = 0; i < parameters.Count; i++)
            Assert.That(parameters[i].Tensor.ToArray(), Is.EqualTo(lastMeasured![i]), $"{parameters[i].Name} keeps the last epoch's weights");
    }

    [Test]
    public void Validation_runs_every_n_steps_and_at_the_end_of_every_epoch()
    {
        var (fields, columns, _) = ModelInputs.From(Train.FeatureSpace);
        var model = new ZooModel(new ModelConfig { Model = ModelKind.Lr, Seed = 5 }, fields, columns);
        var options = new TrainerOptions { Epochs = 2, BatchSize = 100, EvaluateEvery = 5, Patience = 0 }; // 12 steps per epoch
        var report = new Trainer(options).Fit(new SupervisedObjective(model), new Adam(model.Parameters().Select(p => p.Tensor), 0.01f), Train, Valid);
        Assert.That(report.History.Select(p => p.Step), Is.EqualTo(new long[] { 5, 10, 12, 15, 20, 24 }));
        Assert.That(report.StopReason, Does.StartWith("reached the maximum of 2 epochs"));
    }

    [Test]
    public void A_plateau_lowers_the_learning_rate_and_the_output_says_why_training_stopped()
    {
        var (fields, columns, _) = ModelInputs.From(Train.FeatureSpace);
        var model = new ZooModel(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 8, Dnn = [32], Seed = 5 }, fields, columns);
        var adam = new Adam(model.Parameters().Select(p => p.Tensor), 0.05f);
        var log = new StringWriter();
        var options = new TrainerOptions { Epochs = 30, BatchSize = 64, Patience = 3, Metric = StoppingMetric.Both, PlateauFactor = 0.5 };
        var report = new Trainer(options, log).Fit(new SupervisedObjective(model), adam, Train, Valid);
        Assert.That(report.StoppedEarly, Is.True, log.ToString());
        Assert.That(adam.LearningRate, Is.LessThan(0.05f));
        Assert.That(log.ToString(), Does.Contain("lr → 0.025"));
        Assert.That(log.ToString(), Does.Contain("stopped: no improvement of validation AUC or logloss in the last 3 validations (patience 3); restored best validation AUC within"));
    }

    // ---------- L2 on the looked-up embeddings; dropout ----------

    [Test]
    public void Embedding_output_L2_adds_half_lambda_over_batch_times_the_squared_embeddings_in_training_only()
    {
        var fields = new[] { new InputField("a", 5), new InputField("b", 3) };
        const float lambda = 0.2f;
        var model = new ZooModel(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 3, Dnn = [4], EmbeddingOutputL2 = lambda, EmbeddingInitStd = 0.5f, Seed = 1 }, fields, [0, 1]);
        var batch = new CtrBatch(3, 2, new[] { 1, 0, 1, 2, 4, 0 }, new[] { 1f, 0f, 1f }); // row a.1 twice, b.0 twice
        var terms = new List<Tensor<float>>();
        var table = model.Embedding!.Tables;
        double expected = 0;
        foreach (var (f, id) in new[] { (0, 1), (1, 0), (0, 1), (1, 2), (0, 4), (1, 0) })
            foreach (var x in table[f].AsSpan().Slice(id * 3, 3)) expected += x * x;
        expected *= lambda / (2.0 * 3);
        using (var tape = new Tape<float>())
        {
            model.Training = true;
            model.Forward(batch);
            model.TakeAuxiliaryLosses(terms);
            Assert.That(terms, Has.Count.EqualTo(1));
            Assert.That(terms[0].Item(), Is.EqualTo(expected).Within(1e-6));
            tape.Backward(terms[0]);
            // ∂/∂e = λ/B per occurrence: row a.1 appears twice → 2·λ/3·e.
            var g = table[0].SparseGrad!;
            int slot = g.Rows.ToList().IndexOf(1);
            var e = table[0].AsSpan().Slice(3, 3).ToArray();
            Assert.That(g.Row(slot).ToArray(), Is.EqualTo(e.Select(v => 2 * lambda / 3 * v).ToArray()).Within(1e-6));
            model.ZeroGrad();
        }
        using (Tape<float>.NoGrad())
        {
            model.Training = false;
            model.Forward(batch);
            model.TakeAuxiliaryLosses(terms);
            Assert.That(terms, Is.Empty, "evaluation adds no regularisation");
        }
    }

    [Test]
    public void Dnn_dropout_is_active_in_training_and_off_in_evaluation()
    {
        var fields = new[] { new InputField("a", 5), new InputField("b", 3) };
        var model = new ZooModel(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 4, Dnn = [64, 64], Dropout = 0.5f, EmbeddingInitStd = 0.5f, Seed = 1 }, fields, [0, 1]);
        var batch = new CtrBatch(2, 2, new[] { 1, 0, 3, 2 }, ReadOnlyMemory<float>.Empty);
        float[] Logits(bool training, long step)
        {
            using var tape = Tape<float>.NoGrad();
            model.Training = training;
            model.RandomStep = step;
            return model.Forward(batch).Logits.ToArray();
        }
        var eval = Logits(false, 0);
        Assert.That(Logits(false, 1), Is.EqualTo(eval), "evaluation is deterministic (no dropout)");
        var step1 = Logits(true, 1);
        Assert.That(step1, Is.Not.EqualTo(eval), "training drops units");
        Assert.That(Logits(true, 2), Is.Not.EqualTo(step1), "a new mask every step");
        Assert.That(Logits(true, 1), Is.EqualTo(step1), "the mask is a function of the step");
    }
}
