using System.CommandLine;
using System.Globalization;
using KdEngine.Data;

namespace KdEngine.Cli.Options;

/// <summary>
/// The <see cref="SyntheticCtrOptions"/> knobs that shape the hidden model and the ids (not the field counts or the
/// seed, which each verb names its own way), shared by <c>synth</c> and <c>experiment kd --dataset synthetic</c>.
/// Defaults (and help) come from the <paramref name="defaults"/> record the verb starts from.
/// </summary>
internal sealed class SyntheticShapeOptions(SyntheticCtrOptions defaults, string helpPrefix = "")
{
    public Option<double> Zipf { get; } = CliOptions.Double("--zipf", "S", helpPrefix + "Zipf exponent of the ids, P(id = r) ∝ (r+1)^−S, 0 = uniform", defaults.ZipfExponent, CliOptions.NonNegative);
    public Option<double> BaseCtr { get; } = CliOptions.Double("--base-ctr", "P", helpPrefix + "target mean click rate in (0, 1)", defaults.BaseCtr,
        p => p > 0 && p < 1 ? null : $"= {CliOptions.Show(p)} must be in (0, 1).");
    public Option<double> FirstOrderScale { get; } = CliOptions.Double("--first-order-scale", "X", helpPrefix + "std of the summed per-field logit terms", defaults.FirstOrderScale, CliOptions.NonNegative);
    public Option<double> PairwiseScale { get; } = CliOptions.Double("--pairwise-scale", "X", helpPrefix + "std of the summed pairwise terms <v_f, v_g> over all field pairs", defaults.PairwiseScale, CliOptions.NonNegative);
    public Option<int> Rank { get; } = CliOptions.Int("--rank", "K", helpPrefix + "rank of the pairwise factors v_f[id]", defaults.Rank, 1, 1000);
    public Option<int> ThirdOrderTerms { get; } = CliOptions.Int("--third-order-terms", "N", helpPrefix + "random field triples with a term a[id_a]·b[id_b]·c[id_c]", defaults.ThirdOrderTerms, 0, 100_000);
    public Option<double> ThirdOrderScale { get; } = CliOptions.Double("--third-order-scale", "X", helpPrefix + "std of the summed third-order terms", defaults.ThirdOrderScale, CliOptions.NonNegative);
    public Option<double> PrivilegedSignal { get; } = CliOptions.Double("--privileged-signal", "X", helpPrefix + "std of the hidden per-row term the privileged fields reveal", defaults.PrivilegedSignal, CliOptions.NonNegative);
    public Option<double> PrivilegedNoise { get; } = CliOptions.Double("--privileged-noise", "X", helpPrefix + "std of the noise each privileged field adds before bucketing", defaults.PrivilegedNoise, CliOptions.NonNegative);
    public Option<int> PrivilegedBuckets { get; } = CliOptions.Int("--privileged-buckets", "N", helpPrefix + "vocabulary of each privileged field, ≥ 2", defaults.PrivilegedBuckets, 2, 1_000_000);

    private IEnumerable<Option> All => [Zipf, BaseCtr, FirstOrderScale, PairwiseScale, Rank, ThirdOrderTerms, ThirdOrderScale, PrivilegedSignal, PrivilegedNoise, PrivilegedBuckets];

    public void AddTo(Command command)
    {
        foreach (var option in All) command.Options.Add(option);
    }

    /// <summary>The name of the first shape option the user gave (to reject them where they do not apply), or null.</summary>
    public string? FirstGiven(ParseResult parse) => All.FirstOrDefault(parse.Given)?.Name;

    /// <summary><paramref name="start"/> with the shape options applied.</summary>
    public SyntheticCtrOptions Apply(ParseResult parse, SyntheticCtrOptions start) => start with
    {
        ZipfExponent = parse.GetValue(Zipf),
        BaseCtr = parse.GetValue(BaseCtr),
        FirstOrderScale = parse.GetValue(FirstOrderScale),
        PairwiseScale = parse.GetValue(PairwiseScale),
        Rank = parse.GetValue(Rank),
        ThirdOrderTerms = parse.GetValue(ThirdOrderTerms),
        ThirdOrderScale = parse.GetValue(ThirdOrderScale),
        PrivilegedSignal = parse.GetValue(PrivilegedSignal),
        PrivilegedNoise = parse.GetValue(PrivilegedNoise),
        PrivilegedBuckets = parse.GetValue(PrivilegedBuckets),
    };

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
