using System.Globalization;
using System.Text.Json;

namespace KdEngine.Metrics;

/// <summary>How predictions are grouped into bins for a reliability table.</summary>
public enum Binning
{
    /// <summary>Bins of equal width over [0, 1] (Guo et al.'s ECE). With CTR data most predictions fall in the first bins.</summary>
    EqualWidth,
    /// <summary>Bins of (nearly) equal count, cut at the quantiles of the predictions: every bin is informative for skewed CTRs.</summary>
    EqualMass,
}

/// <summary>One row of a reliability table: the predictions in [Lower, Upper), their mean and the observed click rate.</summary>
public sealed record ReliabilityBin(double Lower, double Upper, long Count, double MeanPrediction, double ObservedRate);

/// <summary>
/// Expected calibration error and its reliability table. ECE = Σ_b (n_b / N)·|mean prediction_b − observed rate_b| over the
/// bins (a perfectly calibrated model has 0); MCE is the largest bin gap.
/// </summary>
public sealed record CalibrationReport(Binning Binning, double Ece, double MaxCalibrationError, IReadOnlyList<ReliabilityBin> Bins);

/// <summary>Calibration diagnostics over logits (probabilities are σ(z), computed in double).</summary>
public static class CalibrationMetrics
{
    /// <summary>The reliability table and ECE of <paramref name="logits"/> against 0/1 <paramref name="labels"/>.</summary>
    public static CalibrationReport Reliability(ReadOnlySpan<float> logits, ReadOnlySpan<float> labels, int bins = 10, Binning binning = Binning.EqualMass)
    {
        if (logits.Length != labels.Length) throw new ArgumentException($"Reliability: {logits.Length} logits but {labels.Length} labels.");
        if (logits.Length == 0) throw new ArgumentException("Reliability: no predictions.");
        if (bins < 1) throw new ArgumentOutOfRangeException(nameof(bins), bins, $"Reliability: bins = {bins}; expected ≥ 1.");
        if (!Enum.IsDefined(binning)) throw new ArgumentOutOfRangeException(nameof(binning), binning, "Reliability: unknown binning.");
        int n = logits.Length;
        var p = new double[n];
        var y = new double[n];
        for (int i = 0; i < n; i++)
        {
            if (float.IsNaN(logits[i])) throw new ArgumentException($"Reliability: logits[{i}] is NaN.");
            if (labels[i] is not (0f or 1f)) throw new ArgumentException($"Reliability: label[{i}] = {labels[i]}; labels must be 0 or 1.");
            p[i] = Sigmoid(logits[i]);
            y[i] = labels[i];
        }
        Array.Sort(p, y);
        // Cut points: equal width at k/bins, or at the k/bins quantiles (ties stay in one bin: a cut moves past equal values).
        var starts = new List<int> { 0 };
        for (int k = 1; k < bins; k++)
        {
            int at = binning == Binning.EqualWidth ? LowerBound(p, (double)k / bins) : (int)((long)n * k / bins);
            if (binning == Binning.EqualMass) while (at > 0 && at < n && p[at] == p[at - 1]) at++;
            if (at > starts[^1] && at < n) starts.Add(at);
        }
        var result = new List<ReliabilityBin>(starts.Count);
        double ece = 0, mce = 0;
        for (int b = 0; b < starts.Count; b++)
        {
            int from = starts[b], to = b + 1 < starts.Count ? starts[b + 1] : n;
            double sumP = 0, sumY = 0;
            for (int i = from; i < to; i++) { sumP += p[i]; sumY += y[i]; }
            int count = to - from;
            double meanP = sumP / count, rate = sumY / count, gap = Math.Abs(meanP - rate);
            double lower = binning == Binning.EqualWidth ? Math.Min(bins - 1, Math.Floor(p[from] * bins)) / bins : p[from];
            double upper = binning == Binning.EqualWidth ? Math.Min(1, lower + 1.0 / bins) : (to < n ? p[to] : 1);
            result.Add(new ReliabilityBin(lower, upper, count, meanP, rate));
            ece += gap * count / n;
            mce = Math.Max(mce, gap);
        }
        return new CalibrationReport(binning, ece, mce, result);
    }

    private static int LowerBound(double[] sorted, double value)
    {
        int lo = 0, hi = sorted.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (sorted[mid] < value) lo = mid + 1; else hi = mid;
        }
        return lo;
    }

    internal static double Sigmoid(double z) => z >= 0 ? 1 / (1 + Math.Exp(-z)) : Math.Exp(z) / (1 + Math.Exp(z));
}

/// <summary>Post-hoc calibration methods, fitted on validation logits.</summary>
public enum CalibrationKind
{
    /// <summary>No calibration: z′ = z.</summary>
    None,
    /// <summary>Temperature scaling (Guo et al. 2017): z′ = z / T, one parameter; keeps the ranking and the decision at z = 0.</summary>
    Temperature,
    /// <summary>Platt scaling: z′ = a·z + b, a logistic regression on the logit; keeps the ranking (a &gt; 0), also shifts the base rate.</summary>
    Platt,
}

/// <summary>
/// A fitted post-hoc calibration: a scalar affine map of the logit, z′ = <see cref="Scale"/>·z + <see cref="Bias"/>, applied
/// before the sigmoid. It never changes the ranking (Scale &gt; 0), so AUC is unchanged; logloss and ECE improve on data like
/// the validation split it was fitted on.
/// </summary>
public sealed record LogitCalibration(CalibrationKind Kind, double Scale, double Bias)
{
    /// <summary>The map that changes nothing (z′ = z).</summary>
    public static readonly LogitCalibration Identity = new(CalibrationKind.None, 1, 0);

    /// <summary>Whether the map is the identity.</summary>
    public bool IsIdentity => Scale == 1 && Bias == 0;

    /// <summary>z′ = Scale·z + Bias in place.</summary>
    public void Apply(Span<float> logits)
    {
        if (IsIdentity) return;
        float a = (float)Scale, b = (float)Bias;
        for (int i = 0; i < logits.Length; i++) logits[i] = MathF.FusedMultiplyAdd(a, logits[i], b);
    }

    /// <summary>
    /// Fits the map on validation logits and labels by minimising the mean logloss of σ(a·z + b) in double with Newton's
    /// method (a convex problem in (a, b); temperature fixes b = 0). A fit that would flip the ranking (a ≤ 0: the logits are
    /// anti-correlated with the labels) or has only one class throws, naming it.
    /// </summary>
    public static LogitCalibration Fit(ReadOnlySpan<float> logits, ReadOnlySpan<float> labels, CalibrationKind kind)
    {
        if (!Enum.IsDefined(kind)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "calibration: unknown kind.");
        if (kind == CalibrationKind.None) return Identity;
        if (logits.Length != labels.Length || logits.Length == 0)
            throw new ArgumentException($"calibration: {logits.Length} logits and {labels.Length} labels; need equal, non-zero counts.");
        int n = logits.Length;
        double positives = 0;
        for (int i = 0; i < n; i++)
        {
            if (!float.IsFinite(logits[i])) throw new ArgumentException($"calibration: logits[{i}] = {logits[i]} is not finite.");
            if (labels[i] is not (0f or 1f)) throw new ArgumentException($"calibration: label[{i}] = {labels[i]}; labels must be 0 or 1.");
            positives += labels[i];
        }
        if (positives == 0 || positives == n) throw new ArgumentException("calibration: the validation labels hold one class only; nothing to fit.");
        bool platt = kind == CalibrationKind.Platt;
        double a = 1, b = 0;
        for (int it = 0; it < 100; it++)
        {
            // Gradient and Hessian of mean logloss in (a, b): g = Σ (p − y)·[z, 1] / n, H = Σ p(1 − p)·[z, 1][z, 1]ᵀ / n.
            double ga = 0, gb = 0, haa = 0, hab = 0, hbb = 0;
            for (int i = 0; i < n; i++)
            {
                double z = logits[i], p = CalibrationMetrics.Sigmoid(a * z + b), r = p - labels[i], w = p * (1 - p);
                ga += r * z; gb += r; haa += w * z * z; hab += w * z; hbb += w;
            }
            double da, db;
            if (platt)
            {
                double det = haa * hbb - hab * hab;
                if (!(det > 1e-300)) break;
                da = -(hbb * ga - hab * gb) / det;
                db = -(haa * gb - hab * ga) / det;
            }
            else
            {
                if (!(haa > 1e-300)) break;
                da = -ga / haa;
                db = 0;
            }
            // Damped Newton: halve the step until the loss does not grow (the loss is convex, so this terminates).
            double before = Loss(logits, labels, a, b), step = 1;
            while (step > 1e-10 && Loss(logits, labels, a + step * da, b + step * db) > before) step /= 2;
            a += step * da;
            b += step * db;
            if (Math.Abs(step * da) < 1e-12 && Math.Abs(step * db) < 1e-12) break;
        }
        if (!(a > 0) || !double.IsFinite(a) || !double.IsFinite(b))
            throw new ArgumentException($"calibration: the fitted scale is {a.ToString("G4", CultureInfo.InvariantCulture)}; the logits do not rank the validation labels (a ≤ 0 would invert the ranking).");
        return new LogitCalibration(kind, a, b);
    }

    private static double Loss(ReadOnlySpan<float> logits, ReadOnlySpan<float> labels, double a, double b)
    {
        double sum = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            double z = a * logits[i] + b, s = labels[i] == 1f ? z : -z;
            sum += s > 0 ? Math.Log(1 + Math.Exp(-s)) : -s + Math.Log(1 + Math.Exp(s));
        }
        return sum / logits.Length;
    }

    /// <summary>The checkpoint form: <c>{"kind":"platt","scale":…,"bias":…}</c> (doubles round-trip exactly).</summary>
    public string ToJson() => string.Create(CultureInfo.InvariantCulture,
        $"{{\"kind\":\"{Kind.ToString().ToLowerInvariant()}\",\"scale\":{Scale.ToString("R", CultureInfo.InvariantCulture)},\"bias\":{Bias.ToString("R", CultureInfo.InvariantCulture)}}}");

    /// <summary>Parses <see cref="ToJson"/>'s form; anything else throws a <see cref="FormatException"/> naming the key.</summary>
    public static LogitCalibration FromJson(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new FormatException("calibration: expected an object {kind, scale, bias}.");
        CalibrationKind? kind = null;
        double? scale = null, bias = null;
        foreach (var p in root.EnumerateObject())
        {
            switch (p.Name)
            {
                case "kind":
                    kind = ParseKind(p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : throw new FormatException("calibration: 'kind' must be a string."));
                    break;
                case "scale": scale = p.Value.TryGetDouble(out var s) ? s : throw new FormatException("calibration: 'scale' must be a number."); break;
                case "bias": bias = p.Value.TryGetDouble(out var c) ? c : throw new FormatException("calibration: 'bias' must be a number."); break;
                default: throw new FormatException($"calibration: unknown key '{p.Name}' (expected kind, scale, bias).");
            }
        }
        if (kind is null || scale is null || bias is null) throw new FormatException("calibration: 'kind', 'scale' and 'bias' are all required.");
        if (!(scale > 0) || !double.IsFinite(scale.Value) || !double.IsFinite(bias.Value))
            throw new FormatException($"calibration: scale {scale} must be a positive finite number and bias {bias} finite.");
        return new LogitCalibration(kind.Value, scale.Value, bias.Value);
    }

    /// <summary>none|temperature|platt (case-insensitive).</summary>
    public static CalibrationKind ParseKind(string text) => text.ToLowerInvariant() switch
    {
        "none" => CalibrationKind.None,
        "temperature" => CalibrationKind.Temperature,
        "platt" => CalibrationKind.Platt,
        _ => throw new FormatException($"unknown calibration '{text}' (expected none|temperature|platt)."),
    };

    /// <summary>The map in words, e.g. <c>platt a = 0.65141, b = -0.33813</c>.</summary>
    public override string ToString() => Kind switch
    {
        CalibrationKind.None => "none",
        CalibrationKind.Temperature => string.Create(CultureInfo.InvariantCulture, $"temperature T = {1 / Scale:G5}"),
        _ => string.Create(CultureInfo.InvariantCulture, $"platt a = {Scale:G5}, b = {Bias:G5}"),
    };
}
