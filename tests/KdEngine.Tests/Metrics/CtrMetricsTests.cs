using KdEngine.Metrics;
using NUnit.Framework;

namespace KdEngine.Tests.Metrics;

public class CtrMetricsTests
{
    /// <summary>O(n²) definition of AUC: over all (positive, negative) pairs, 1 if the positive scores higher, ½ on a tie.</summary>
    private static double PairCountingAuc(float[] s, float[] y)
    {
        double wins = 0;
        long pairs = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (y[i] != 1f) continue;
            for (int j = 0; j < s.Length; j++)
            {
                if (y[j] != 0f) continue;
                pairs++;
                if (s[i] > s[j]) wins += 1;
                else if (s[i] == s[j]) wins += 0.5;
            }
        }
        return pairs == 0 ? double.NaN : wins / pairs;
    }

    [Test]
    public void Auc_hand_computed_without_ties()
    {
        // Positives at 0.8 and 0.4; negatives at 0.6 and 0.2. Pairs: (0.8>0.6) (0.8>0.2) (0.4<0.6) (0.4>0.2) → 3/4.
        float[] s = [0.8f, 0.6f, 0.4f, 0.2f];
        float[] y = [1, 0, 1, 0];
        Assert.That(CtrMetrics.Auc(s, y), Is.EqualTo(0.75));
    }

    [Test]
    public void Auc_hand_computed_with_ties()
    {
        // Positives: 0.5, 0.5, 0.9; negatives: 0.5, 0.1.
        // 0.5 vs 0.5 → ½, 0.5 vs 0.1 → 1 (twice: 3 total for the two 0.5 positives); 0.9 beats both → 2. Total 5 / 6.
        float[] s = [0.5f, 0.5f, 0.9f, 0.5f, 0.1f];
        float[] y = [1, 1, 1, 0, 0];
        Assert.That(CtrMetrics.Auc(s, y), Is.EqualTo(5.0 / 6.0).Within(1e-15));
    }

    [Test]
    public void Auc_perfect_and_inverted()
    {
        float[] y = [0, 0, 1, 1];
        Assert.That(CtrMetrics.Auc([1f, 2f, 3f, 4f], y), Is.EqualTo(1.0));
        Assert.That(CtrMetrics.Auc([4f, 3f, 2f, 1f], y), Is.EqualTo(0.0));
    }

    [Test]
    public void Auc_of_all_equal_scores_is_one_half()
    {
        var y = new float[101];
        for (int i = 0; i < y.Length; i++) y[i] = i % 3 == 0 ? 1 : 0;
        Assert.That(CtrMetrics.Auc(Enumerable.Repeat(0.3f, y.Length).ToArray(), y), Is.EqualTo(0.5));
    }

    [Test]
    public void Auc_treats_negative_and_positive_zero_as_a_tie()
    {
        Assert.That(CtrMetrics.Auc([-0f, 0f], [1, 0]), Is.EqualTo(0.5));
        Assert.That(CtrMetrics.Auc([0f, -0f], [1, 0]), Is.EqualTo(0.5));
    }

    [Test]
    public void Auc_is_nan_when_one_class_is_missing()
    {
        Assert.That(CtrMetrics.Auc([0.1f, 0.2f], [1, 1]), Is.NaN);
        Assert.That(CtrMetrics.Auc([0.1f, 0.2f], [0, 0]), Is.NaN);
    }

    [TestCase(2, 1, 3)]
    [TestCase(17, 5, 4)]
    [TestCase(500, 7, 5)]
    [TestCase(1000, 100000, 6)]
    public void Auc_agrees_with_pair_counting_on_random_data(int n, int distinctScores, int seed)
    {
        // Few distinct score values → many ties; also infinities.
        var rng = new Random(seed);
        var s = new float[n];
        var y = new float[n];
        for (int i = 0; i < n; i++)
        {
            s[i] = rng.Next(distinctScores) / (float)distinctScores;
            if (rng.Next(50) == 0) s[i] = rng.Next(2) == 0 ? float.PositiveInfinity : float.NegativeInfinity;
            y[i] = rng.NextDouble() < 0.3 + 0.4 * s[i] ? 1 : 0;
        }
        y[0] = 1; y[1] = 0; // both classes present
        Assert.That(CtrMetrics.Auc(s, y), Is.EqualTo(PairCountingAuc(s, y)).Within(1e-12));
    }

    [Test]
    public void Auc_is_invariant_to_permutation_and_to_monotone_transforms()
    {
        var rng = new Random(11);
        int n = 777;
        var s = new float[n];
        var y = new float[n];
        for (int i = 0; i < n; i++)
        {
            s[i] = rng.Next(40) * 0.25f - 5f;
            y[i] = rng.Next(2);
        }
        double reference = CtrMetrics.Auc(s, y);
        var perm = Enumerable.Range(0, n).OrderBy(_ => rng.Next()).ToArray();
        Assert.That(CtrMetrics.Auc(perm.Select(i => s[i]).ToArray(), perm.Select(i => y[i]).ToArray()), Is.EqualTo(reference));
        // A strictly increasing map keeps the order and the ties: same AUC, bit for bit.
        Assert.That(CtrMetrics.Auc(s.Select(v => 3f * v + 1f).ToArray(), y), Is.EqualTo(reference));
        // Flipping scores turns AUC into 1 − AUC.
        Assert.That(CtrMetrics.Auc(s.Select(v => -v).ToArray(), y), Is.EqualTo(1 - reference).Within(1e-15));
    }

    [Test]
    public void Auc_rejects_bad_input_with_a_clear_message()
    {
        var ex = Assert.Throws<ArgumentException>(() => CtrMetrics.Auc([0.1f, 0.2f], [1f]))!;
        Assert.That(ex.Message, Does.Contain("2 scores but 1 labels"));
        ex = Assert.Throws<ArgumentException>(() => CtrMetrics.Auc([0.1f, 0.2f], [1f, 0.5f]))!;
        Assert.That(ex.Message, Does.Contain("label[1] = 0.5"));
        ex = Assert.Throws<ArgumentException>(() => CtrMetrics.Auc([0.1f, float.NaN], [1f, 0f]))!;
        Assert.That(ex.Message, Does.Contain("scores[1] is NaN"));
        Assert.Throws<ArgumentException>(() => CtrMetrics.Auc([], []));
        ex = Assert.Throws<ArgumentException>(() => CtrMetrics.Auc([0.1f, 0.2f], [-1f, 1f]))!;
        Assert.That(ex.Message, Does.Contain("label[0] = -1"));
    }

    [Test]
    public void GroupAuc_small_hand_example()
    {
        // user 1: scores 0.9(+) 0.2(−) 0.5(−) → positive beats both → AUC 1, 3 impressions
        // user 2: scores 0.3(+) 0.6(−) 0.3(−) 0.7(+) → pairs: 0.3v0.6 0, 0.3v0.3 ½, 0.7v0.6 1, 0.7v0.3 1 → 2.5/4, 4 impressions
        // user 3: all negative → skipped; user 4: single impression → skipped
        // gAUC = (3·1 + 4·0.625) / 7 = 5.5 / 7
        float[] s = [0.9f, 0.3f, 0.2f, 0.6f, 0.1f, 0.3f, 0.5f, 0.7f, 0.4f, 0.8f];
        float[] y = [1, 1, 0, 0, 0, 0, 0, 1, 0, 1];
        long[] u = [1, 2, 1, 2, 3, 2, 1, 2, 3, 4];
        Assert.That(CtrMetrics.GroupAuc(s, y, u), Is.EqualTo(5.5 / 7).Within(1e-15));
    }

    [Test]
    public void GroupAuc_matches_per_user_pair_counting_on_random_data()
    {
        var rng = new Random(21);
        int n = 2000;
        var s = new float[n];
        var y = new float[n];
        var u = new long[n];
        for (int i = 0; i < n; i++)
        {
            s[i] = rng.Next(10) / 10f;
            y[i] = rng.NextDouble() < 0.2 + 0.5 * s[i] ? 1 : 0;
            u[i] = rng.Next(60) * 1_000_000_007L - 5; // large and negative ids too
        }
        double num = 0, den = 0;
        foreach (var g in Enumerable.Range(0, n).GroupBy(i => u[i]))
        {
            var idx = g.ToArray();
            double a = PairCountingAuc(idx.Select(i => s[i]).ToArray(), idx.Select(i => y[i]).ToArray());
            if (double.IsNaN(a)) continue;
            num += a * idx.Length;
            den += idx.Length;
        }
        Assert.That(den, Is.GreaterThan(0));
        Assert.That(CtrMetrics.GroupAuc(s, y, u), Is.EqualTo(num / den).Within(1e-12));
    }

    [Test]
    public void GroupAuc_is_nan_when_no_user_has_both_classes_and_checks_lengths()
    {
        Assert.That(CtrMetrics.GroupAuc([0.1f, 0.9f, 0.5f], [1, 0, 1], [1, 2, 1]), Is.NaN);
        var ex = Assert.Throws<ArgumentException>(() => CtrMetrics.GroupAuc([0.1f, 0.9f], [1, 0], [1]))!;
        Assert.That(ex.Message, Does.Contain("2 scores but 1 user ids"));
    }

    [Test]
    public void LogLoss_hand_computed_and_clipped()
    {
        // −(ln 0.8 + ln(1 − 0.4)) / 2
        Assert.That(CtrMetrics.LogLoss([0.8f, 0.4f], [1, 0]),
            Is.EqualTo(-(Math.Log((double)0.8f) + Math.Log(1 - (double)0.4f)) / 2).Within(1e-15));
        // p = 0 for a positive is clipped to 1e-7: −ln(1e-7) ≈ 16.118.
        Assert.That(CtrMetrics.LogLoss([0f], [1]), Is.EqualTo(-Math.Log(1e-7)).Within(1e-12));
        Assert.That(CtrMetrics.LogLoss([1f], [0]), Is.EqualTo(-Math.Log(1e-7)).Within(1e-6));
        Assert.That(CtrMetrics.LogLoss([1f], [1]), Is.EqualTo(-Math.Log(1 - 1e-7)).Within(1e-15));
        var ex = Assert.Throws<ArgumentException>(() => CtrMetrics.LogLoss([0.5f, 1.5f], [1, 0]))!;
        Assert.That(ex.Message, Does.Contain("probabilities[1] = 1.5"));
    }

    [Test]
    public void LogLossFromLogits_matches_the_probability_form_and_is_stable()
    {
        var rng = new Random(5);
        int n = 333;
        var z = new float[n];
        var p = new float[n];
        var y = new float[n];
        for (int i = 0; i < n; i++)
        {
            z[i] = (float)(rng.NextDouble() * 8 - 4);
            p[i] = (float)(1 / (1 + Math.Exp(-(double)z[i])));
            y[i] = rng.Next(2);
        }
        Assert.That(CtrMetrics.LogLossFromLogits(z, y), Is.EqualTo(CtrMetrics.LogLoss(p, y)).Within(1e-6));
        // A logit of −100 for a positive: loss is exactly 100 (+ log1p(e^-100)), no clipping, no overflow.
        Assert.That(CtrMetrics.LogLossFromLogits([-100f], [1]), Is.EqualTo(100.0).Within(1e-12));
        Assert.That(CtrMetrics.LogLossFromLogits([100f], [1]), Is.EqualTo(Math.Exp(-100)).Within(1e-50));
        Assert.That(CtrMetrics.LogLossFromLogits([float.PositiveInfinity, float.NegativeInfinity], [1, 0]), Is.EqualTo(0.0));
        Assert.That(CtrMetrics.LogLossFromLogits([float.NegativeInfinity], [1]), Is.EqualTo(double.PositiveInfinity));
        // log 2 at z = 0 whatever the label.
        Assert.That(CtrMetrics.LogLossFromLogits([0f, 0f], [1, 0]), Is.EqualTo(Math.Log(2)).Within(1e-15));
    }

    [Test]
    public void Calibration_is_mean_prediction_over_observed_rate()
    {
        // mean p = (0.2 + 0.4 + 0.6 + 0.2) / 4 = 0.35; observed rate 1/4 → 1.4.
        Assert.That(CtrMetrics.Calibration([0.2f, 0.4f, 0.6f, 0.2f], [0, 1, 0, 0]),
            Is.EqualTo(((double)0.2f + 0.4f + 0.6f + 0.2f) / 4 / 0.25).Within(1e-12));
        Assert.That(CtrMetrics.Calibration([0.2f, 0.4f], [0, 0]), Is.NaN);
    }

    [Test]
    public void EvaluateLogits_combines_the_metrics()
    {
        float[] z = [2f, -1f, 0.5f, -3f, 0.5f];
        float[] y = [1, 0, 0, 0, 1];
        var r = CtrMetrics.EvaluateLogits(z, y);
        var p = z.Select(v => (float)(1 / (1 + Math.Exp(-(double)v)))).ToArray();
        Assert.That(r.Count, Is.EqualTo(5));
        Assert.That(r.Auc, Is.EqualTo(PairCountingAuc(z, y)));
        Assert.That(r.LogLoss, Is.EqualTo(CtrMetrics.LogLossFromLogits(z, y)));
        Assert.That(r.Calibration, Is.EqualTo(CtrMetrics.Calibration(p, y)).Within(1e-7));
        Assert.That(r.Positives, Is.EqualTo(2));
        Assert.That(r.AucStandardError, Is.EqualTo(CtrMetrics.AucStandardError(r.Auc, 2, 3)));
    }

    [Test]
    public void Auc_standard_error_hand_computed_and_against_resampling()
    {
        // A = 0.75, P = 100, N = 300: Q1 = 0.75/1.25 = 0.6, Q2 = 2·0.5625/1.75 = 0.642857…;
        // SE² = (0.1875 + 99·0.0375 + 299·0.080357…) / 30000 → SE = 0.0305105…
        Assert.That(CtrMetrics.AucStandardError(0.75, 100, 300), Is.EqualTo(0.0305105368).Within(1e-9));
        Assert.That(CtrMetrics.AucStandardError(0.75, 0, 300), Is.NaN);
        Assert.That(CtrMetrics.AucStandardError(double.NaN, 10, 10), Is.NaN);

        // The formula is exact for exponential scores (negatives ~ Exp(1), positives ~ Exp(1/3): P(pos > neg) = 0.75);
        // the spread of the AUC over 2,000 drawn sets of 100 positives and 300 negatives must match it within 8 %.
        var rng = new Random(5);
        var scores = new float[400];
        var labels = new float[400];
        for (int i = 0; i < 100; i++) labels[i] = 1;
        double sum = 0, sumSq = 0;
        const int Draws = 2000;
        for (int draw = 0; draw < Draws; draw++)
        {
            for (int i = 0; i < 400; i++) scores[i] = (float)(-Math.Log(1 - rng.NextDouble()) * (i < 100 ? 3 : 1));
            double auc = CtrMetrics.Auc(scores, labels);
            sum += auc; sumSq += auc * auc;
        }
        double mean = sum / Draws, spread = Math.Sqrt((sumSq - Draws * mean * mean) / (Draws - 1));
        Assert.That(mean, Is.EqualTo(0.75).Within(0.003));
        Assert.That(spread / CtrMetrics.AucStandardError(0.75, 100, 300), Is.EqualTo(1).Within(0.08));
    }
}
