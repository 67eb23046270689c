using System.Buffers;

namespace KdEngine.Metrics;

/// <summary>
/// Offline evaluation metrics for binary CTR models: AUC, group AUC, log loss, calibration.
/// </summary>
/// <remarks>
/// <para>Conventions shared by every method:</para>
/// <list type="bullet">
/// <item>Labels are exactly 0 or 1; anything else is an <see cref="ArgumentException"/> naming the index and value.</item>
/// <item>Inputs must have equal lengths and be non-empty; scores, logits and probabilities must not be NaN.</item>
/// <item>Sums are accumulated in double, so the result does not depend on float32 rounding of long sums.</item>
/// <item>AUC and gAUC return <see cref="double.NaN"/> when they are undefined (only one class present): an evaluation
///   set of all-negatives is legitimate data, not a programming error, and NaN propagates visibly into any report.
///   Callers that select models on AUC (early stopping) must treat NaN as "no information".</item>
/// </list>
/// The class is not called <c>Metrics</c> because a type named like its namespace makes <c>Metrics.Auc</c>
/// ambiguous from inside the <c>KdEngine</c> namespace.
/// </remarks>
public static class CtrMetrics
{
    /// <summary>Clipping applied to probabilities in <see cref="LogLoss"/>: p is clamped to [ε, 1 − ε].</summary>
    public const double LogLossEpsilon = 1e-7;

    /// <summary>
    /// Exact ROC AUC: the probability that a random positive scores above a random negative, ties counted as
    /// one half (equivalently the Mann–Whitney U statistic with average ranks, divided by P·N).
    /// O(n log n); rents two pooled buffers for the sort and allocates nothing else.
    /// </summary>
    /// <returns>AUC in [0, 1], or <see cref="double.NaN"/> when only one class is present.</returns>
    public static double Auc(ReadOnlySpan<float> scores, ReadOnlySpan<float> labels)
    {
        CheckPair(nameof(Auc), scores, labels, "scores");
        int n = scores.Length;
        float[] keys = ArrayPool<float>.Shared.Rent(n);
        float[] sortedLabels = ArrayPool<float>.Shared.Rent(n);
        try
        {
            scores.CopyTo(keys);
            labels.CopyTo(sortedLabels);
            Array.Sort(keys, sortedLabels, 0, n);
            return AucOfSorted(keys.AsSpan(0, n), sortedLabels.AsSpan(0, n));
        }
        finally
        {
            ArrayPool<float>.Shared.Return(keys);
            ArrayPool<float>.Shared.Return(sortedLabels);
        }
    }

    /// <summary>
    /// AUC of scores sorted ascending with their labels. Walks groups of equal scores: every positive in a group
    /// beats all negatives below the group and ties with the negatives inside it (half credit).
    /// </summary>
    private static double AucOfSorted(ReadOnlySpan<float> sortedScores, ReadOnlySpan<float> sortedLabels)
    {
        // Twice the winning-pair count, kept exact in integers: p·n can reach 2^62, so 2·p·n needs Int128.
        Int128 twiceWins = 0;
        long negativesBelow = 0, positives = 0;
        int i = 0, n = sortedScores.Length;
        while (i < n)
        {
            int j = i;
            long groupPos = 0, groupNeg = 0;
            float s = sortedScores[i];
            // == groups −0 with +0, which is the right notion of a tie for a score.
            while (j < n && sortedScores[j] == s)
            {
                if (sortedLabels[j] == 1f) groupPos++; else groupNeg++;
                j++;
            }
            twiceWins += (Int128)groupPos * (2 * negativesBelow + groupNeg);
            negativesBelow += groupNeg;
            positives += groupPos;
            i = j;
        }
        long negatives = negativesBelow;
        if (positives == 0 || negatives == 0) return double.NaN;
        return (double)twiceWins / (2.0 * positives * negatives);
    }

    /// <summary>
    /// Group AUC: the AUC of each user's impressions, averaged with weights equal to the user's impression count.
    /// Users whose impressions are all one class have no AUC and are skipped (their impressions do not count in
    /// the weights). O(n log n); rents pooled buffers only.
    /// </summary>
    /// <returns>gAUC in [0, 1], or <see cref="double.NaN"/> when no user has both classes.</returns>
    public static double GroupAuc(ReadOnlySpan<float> scores, ReadOnlySpan<float> labels, ReadOnlySpan<long> userIds)
    {
        CheckPair(nameof(GroupAuc), scores, labels, "scores");
        if (userIds.Length != scores.Length)
            throw new ArgumentException($"GroupAuc: {scores.Length} scores but {userIds.Length} user ids; the lengths must match.", nameof(userIds));
        int n = scores.Length;
        long[] users = ArrayPool<long>.Shared.Rent(n);
        int[] order = ArrayPool<int>.Shared.Rent(n);
        float[] groupScores = ArrayPool<float>.Shared.Rent(n);
        float[] groupLabels = ArrayPool<float>.Shared.Rent(n);
        try
        {
            userIds.CopyTo(users);
            for (int i = 0; i < n; i++) order[i] = i;
            // Sort row indices by user; rows of one user become contiguous. The order inside a user group does not
            // matter because each group is sorted again by score below.
            Array.Sort(users, order, 0, n);
            double weighted = 0;
            long weight = 0;
            int start = 0;
            while (start < n)
            {
                int end = start;
                long u = users[start];
                while (end < n && users[end] == u) end++;
                int m = end - start;
                for (int k = 0; k < m; k++)
                {
                    int row = order[start + k];
                    groupScores[k] = scores[row];
                    groupLabels[k] = labels[row];
                }
                Array.Sort(groupScores, groupLabels, 0, m);
                double auc = AucOfSorted(groupScores.AsSpan(0, m), groupLabels.AsSpan(0, m));
                if (!double.IsNaN(auc))
                {
                    weighted += auc * m;
                    weight += m;
                }
                start = end;
            }
            return weight == 0 ? double.NaN : weighted / weight;
        }
        finally
        {
            ArrayPool<long>.Shared.Return(users);
            ArrayPool<int>.Shared.Return(order);
            ArrayPool<float>.Shared.Return(groupScores);
            ArrayPool<float>.Shared.Return(groupLabels);
        }
    }

    /// <summary>
    /// Mean binary cross-entropy (natural log) of probabilities, each clamped to [1e-7, 1 − 1e-7] so that a
    /// confident wrong prediction costs about 16.1 instead of infinity. Probabilities must lie in [0, 1].
    /// </summary>
    public static double LogLoss(ReadOnlySpan<float> probabilities, ReadOnlySpan<float> labels)
    {
        CheckPair(nameof(LogLoss), probabilities, labels, "probabilities");
        double sum = 0;
        for (int i = 0; i < probabilities.Length; i++)
        {
            double p = CheckProbability(nameof(LogLoss), probabilities[i], i);
            p = Math.Clamp(p, LogLossEpsilon, 1 - LogLossEpsilon);
            sum -= labels[i] == 1f ? Math.Log(p) : Math.Log(1 - p);
        }
        return sum / probabilities.Length;
    }

    /// <summary>
    /// Mean binary cross-entropy computed from logits in the stable form max(z, 0) − z·y + log(1 + e^(−|z|)),
    /// in double: exact for confident predictions where σ(z) rounds to 0 or 1 in float32, and unclipped.
    /// ±∞ logits are allowed (loss 0 when right, +∞ when wrong).
    /// </summary>
    public static double LogLossFromLogits(ReadOnlySpan<float> logits, ReadOnlySpan<float> labels)
    {
        CheckPair(nameof(LogLossFromLogits), logits, labels, "logits");
        double sum = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            double z = logits[i];
            double y = labels[i];
            if (double.IsInfinity(z))
            {
                sum += (z > 0) == (y == 1) ? 0 : double.PositiveInfinity;
                continue;
            }
            // An accurate log1p keeps the tail for confident correct predictions (log(1 + 1e-44) rounds to 0).
            sum += Math.Max(z, 0) - z * y + Log1P(Math.Exp(-Math.Abs(z)));
        }
        return sum / logits.Length;
    }

    /// <summary>
    /// Calibration ratio: mean predicted probability divided by the observed positive rate. 1 is perfectly
    /// calibrated on average; above 1 over-predicts. <see cref="double.NaN"/> when there are no positives (the
    /// observed rate is 0 and the ratio undefined).
    /// </summary>
    public static double Calibration(ReadOnlySpan<float> probabilities, ReadOnlySpan<float> labels)
    {
        CheckPair(nameof(Calibration), probabilities, labels, "probabilities");
        double sumP = 0;
        long positives = 0;
        for (int i = 0; i < probabilities.Length; i++)
        {
            sumP += CheckProbability(nameof(Calibration), probabilities[i], i);
            if (labels[i] == 1f) positives++;
        }
        return positives == 0 ? double.NaN : sumP / positives;
    }

    /// <summary>
    /// AUC, log loss and calibration of a model's logits in one call. AUC is computed on the logits themselves
    /// (σ is monotone, and float32 σ would merge distinct confident logits into false ties); log loss uses the
    /// stable logit form; calibration uses σ(z) evaluated in double.
    /// </summary>
    public static EvaluationResult EvaluateLogits(ReadOnlySpan<float> logits, ReadOnlySpan<float> labels)
    {
        CheckPair(nameof(EvaluateLogits), logits, labels, "logits");
        double sumP = 0;
        long positives = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            double z = logits[i];
            sumP += z >= 0 ? 1 / (1 + Math.Exp(-z)) : Math.Exp(z) / (1 + Math.Exp(z));
            if (labels[i] == 1f) positives++;
        }
        return new EvaluationResult(
            Auc(logits, labels),
            LogLossFromLogits(logits, labels),
            positives == 0 ? double.NaN : sumP / positives,
            logits.Length,
            positives);
    }

    /// <summary>
    /// The standard error of an AUC estimated from <paramref name="positives"/> positives and <paramref name="negatives"/>
    /// negatives (Hanley &amp; McNeil, Radiology 1982, eq. 2): SE² = [A(1 − A) + (P − 1)(Q1 − A²) + (N − 1)(Q2 − A²)] / (P·N)
    /// with Q1 = A / (2 − A) and Q2 = 2A² / (1 + A), the exponential-score approximation of the two rank variances. It
    /// needs only the AUC and the class counts, so a validation point can carry it without its predictions.
    /// </summary>
    /// <returns>The standard error, or NaN when a class is missing or the AUC is NaN.</returns>
    public static double AucStandardError(double auc, long positives, long negatives)
    {
        if (double.IsNaN(auc) || positives <= 0 || negatives <= 0) return double.NaN;
        double q1 = auc / (2 - auc), q2 = 2 * auc * auc / (1 + auc), a2 = auc * auc;
        double variance = (auc * (1 - auc) + (positives - 1) * (q1 - a2) + (negatives - 1) * (q2 - a2)) / ((double)positives * negatives);
        return Math.Sqrt(Math.Max(variance, 0));
    }

    /// <summary>
    /// log(1 + x) accurate for tiny x (Kahan's trick: the rounding error of 1 + x cancels in log(u)·x/(u − 1)).
    /// .NET's double.LogP1 evaluates log(1 + x) directly and returns 0 for x below 1e-16.
    /// </summary>
    private static double Log1P(double x)
    {
        double u = 1 + x;
        return u == 1 ? x : Math.Log(u) * x / (u - 1);
    }

    private static void CheckPair(string metric, ReadOnlySpan<float> values, ReadOnlySpan<float> labels, string valuesName)
    {
        if (values.Length != labels.Length)
            throw new ArgumentException($"{metric}: {values.Length} {valuesName} but {labels.Length} labels; the lengths must match.", nameof(labels));
        if (values.Length == 0)
            throw new ArgumentException($"{metric}: no {valuesName}; a metric over an empty set is undefined.", valuesName);
        for (int i = 0; i < labels.Length; i++)
        {
            float y = labels[i];
            if (y != 0f && y != 1f)
                throw new ArgumentException($"{metric}: label[{i}] = {y}; labels must be exactly 0 or 1.", nameof(labels));
            if (float.IsNaN(values[i]))
                throw new ArgumentException($"{metric}: {valuesName}[{i}] is NaN.", valuesName);
        }
    }

    private static double CheckProbability(string metric, float p, int index)
    {
        if (!(p >= 0f && p <= 1f))
            throw new ArgumentException($"{metric}: probabilities[{index}] = {p} is outside [0, 1]; pass logits to the *FromLogits form.", "probabilities");
        return p;
    }
}

/// <summary>The headline metrics of one evaluation pass.</summary>
/// <param name="Auc">Exact tie-aware AUC, NaN when only one class is present.</param>
/// <param name="LogLoss">Mean binary cross-entropy (natural log).</param>
/// <param name="Calibration">Mean prediction / observed positive rate; NaN when there are no positives.</param>
/// <param name="Count">Number of examples evaluated.</param>
/// <param name="Positives">Rows labelled 1 (−1: not counted).</param>
public sealed record EvaluationResult(double Auc, double LogLoss, double Calibration, long Count, long Positives = -1)
{
    /// <summary>The AUC's standard error (<see cref="CtrMetrics.AucStandardError"/>); NaN when the positives were not counted.</summary>
    public double AucStandardError => Positives < 0 ? double.NaN : CtrMetrics.AucStandardError(Auc, Positives, Count - Positives);
}
