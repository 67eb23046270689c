using System.Globalization;
using KdEngine.Data;

namespace KdEngine.Cli;

/// <summary>
/// The <see cref="SyntheticCtrOptions"/> knobs as CLI options, shared by <c>synth</c> and <c>experiment kd --dataset synthetic</c>
/// (each verb adds its own names for the field counts and the seed), with validation that names the option.
/// </summary>
internal static class SyntheticCli
{
    private static readonly SyntheticCtrOptions Defaults = new();

    private static string D(double x) => x.ToString(CultureInfo.InvariantCulture);

    /// <summary>The shape of the hidden model and of the ids (not the field counts or the seed).</summary>
    public static CliOption[] ShapeOptions(SyntheticCtrOptions defaults) =>
    [
        new("zipf", "S", $"Zipf exponent of the ids, P(id = r) ∝ (r+1)^−S, 0 = uniform (default {D(defaults.ZipfExponent)})"),
        new("base-ctr", "P", $"target mean click rate in (0, 1) (default {D(defaults.BaseCtr)})"),
        new("first-order-scale", "X", $"std of the summed per-field logit terms (default {D(defaults.FirstOrderScale)})"),
        new("pairwise-scale", "X", $"std of the summed pairwise terms <v_f, v_g> over all field pairs (default {D(defaults.PairwiseScale)})"),
        new("rank", "K", $"rank of the pairwise factors v_f[id] (default {defaults.Rank})"),
        new("third-order-terms", "N", $"random field triples with a term a[id_a]·b[id_b]·c[id_c] (default {defaults.ThirdOrderTerms})"),
        new("third-order-scale", "X", $"std of the summed third-order terms (default {D(defaults.ThirdOrderScale)})"),
        new("privileged-signal", "X", $"std of the hidden per-row term the privileged fields reveal (default {D(defaults.PrivilegedSignal)})"),
        new("privileged-noise", "X", $"std of the noise each privileged field adds before bucketing (default {D(defaults.PrivilegedNoise)})"),
        new("privileged-buckets", "N", $"vocabulary of each privileged field, ≥ 2 (default {defaults.PrivilegedBuckets})"),
    ];

    /// <summary>True when any shape option is given (to reject them where they do not apply).</summary>
    public static string? AnyShapeOption(CliArgs a) => ShapeOptions(Defaults).Select(o => o.Name).FirstOrDefault(a.Has);

    /// <summary><paramref name="start"/> with the shape options of <paramref name="a"/> applied, validated.</summary>
    public static SyntheticCtrOptions ApplyShape(CliArgs a, SyntheticCtrOptions start)
    {
        double NonNegative(string name, double fallback)
        {
            double? v = a.Double(name);
            if (v is null) return fallback;
            if (v < 0) throw new CliException($"option '--{name}' = {D(v.Value)} must be ≥ 0.");
            return v.Value;
        }
        double ctr = a.Double("base-ctr") ?? start.BaseCtr;
        if (!(ctr > 0 && ctr < 1)) throw new CliException($"option '--base-ctr' = {D(ctr)} must be in (0, 1).");
        return start with
        {
            ZipfExponent = NonNegative("zipf", start.ZipfExponent),
            BaseCtr = ctr,
            FirstOrderScale = NonNegative("first-order-scale", start.FirstOrderScale),
            PairwiseScale = NonNegative("pairwise-scale", start.PairwiseScale),
            Rank = a.Int("rank", start.Rank, 1, 1000),
            ThirdOrderTerms = a.Int("third-order-terms", start.ThirdOrderTerms, 0, 100_000),
            ThirdOrderScale = NonNegative("third-order-scale", start.ThirdOrderScale),
            PrivilegedSignal = NonNegative("privileged-signal", start.PrivilegedSignal),
            PrivilegedNoise = NonNegative("privileged-noise", start.PrivilegedNoise),
            PrivilegedBuckets = a.Int("privileged-buckets", start.PrivilegedBuckets, 2, 1_000_000),
        };
    }

    /// <summary>Builds the generator, turning its own validation errors (e.g. third-order terms with fewer than 3 fields) into CLI errors.</summary>
    public static SyntheticCtr Create(SyntheticCtrOptions options)
    {
        try { return new SyntheticCtr(options); }
        catch (ArgumentException e) { throw new CliException(e.Message); }
    }

    /// <summary>Every generator setting on one line, in the CLI's option names, so a table's header reproduces its data.</summary>
    public static string Describe(SyntheticCtrOptions o) => string.Create(CultureInfo.InvariantCulture,
        $"fields {o.Fields}, vocab {(o.VocabSizes is null ? o.VocabSize.ToString(CultureInfo.InvariantCulture) : string.Join(",", o.VocabSizes))}, zipf {o.ZipfExponent}, " +
        $"base-ctr {o.BaseCtr}, first-order-scale {o.FirstOrderScale}, pairwise-scale {o.PairwiseScale}, rank {o.Rank}, " +
        $"third-order-terms {o.ThirdOrderTerms}, third-order-scale {o.ThirdOrderScale}, " +
        $"privileged-fields {o.PrivilegedFields}, privileged-signal {o.PrivilegedSignal}, privileged-noise {o.PrivilegedNoise}, " +
        $"privileged-buckets {o.PrivilegedBuckets}, seed {o.Seed}");
}
