using System.Globalization;
using System.Text;

namespace KdEngine.Data;

/// <summary>Settings of <see cref="SyntheticCtr"/>; the hidden model is drawn from <see cref="Seed"/>.</summary>
public sealed record SyntheticCtrOptions
{
    /// <summary>Number of ordinary categorical fields (C1..CF).</summary>
    public int Fields { get; init; } = 10;

    /// <summary>Vocabulary size of every field (unless <see cref="VocabSizes"/> is given).</summary>
    public int VocabSize { get; init; } = 1000;

    /// <summary>Per-field vocabulary sizes (length = <see cref="Fields"/>), overriding <see cref="VocabSize"/>.</summary>
    public IReadOnlyList<int>? VocabSizes { get; init; }

    /// <summary>Zipf exponent s: P(id = r) ∝ 1 / (r + 1)^s (0 = uniform).</summary>
    public double ZipfExponent { get; init; } = 1.1;

    /// <summary>Target mean click rate; the hidden bias is calibrated to it.</summary>
    public double BaseCtr { get; init; } = 0.2;

    /// <summary>Standard deviation of the summed per-field (first-order) logit terms.</summary>
    public double FirstOrderScale { get; init; } = 1.0;

    /// <summary>Standard deviation of the summed pairwise terms ⟨v_f[id_f], v_g[id_g]⟩ over all field pairs.</summary>
    public double PairwiseScale { get; init; } = 1.0;

    /// <summary>Rank of the hidden pairwise factors v_f[id].</summary>
    public int Rank { get; init; } = 4;

    /// <summary>Number of random field triples with a third-order term a[id_a]·b[id_b]·c[id_c].</summary>
    public int ThirdOrderTerms { get; init; } = 4;

    /// <summary>Standard deviation of the summed third-order terms.</summary>
    public double ThirdOrderScale { get; init; } = 0.7;

    /// <summary>Privileged fields P1..PK (teacher-only): noisy buckets of a hidden per-row logit term the ordinary fields do not see.</summary>
    public int PrivilegedFields { get; init; }

    /// <summary>Standard deviation of the hidden per-row term that privileged fields reveal (added to the logit only when there are privileged fields).</summary>
    public double PrivilegedSignal { get; init; } = 1.0;

    /// <summary>Standard deviation of the noise each privileged field adds before bucketing.</summary>
    public double PrivilegedNoise { get; init; } = 0.5;

    /// <summary>Buckets (vocabulary) of each privileged field.</summary>
    public int PrivilegedBuckets { get; init; } = 16;

    /// <summary>Seed of the hidden model and of the rows: the same seed gives the same data.</summary>
    public int Seed { get; init; }
}

/// <summary>
/// Seeded synthetic CTR data: F categorical fields with Zipf-distributed ids and labels drawn from a hidden model
/// with real interactions: logit = b + Σ_f w_f[id_f] + s₂·Σ_{f&lt;g} ⟨v_f[id_f], v_g[id_g]⟩ + s₃·Σ_t a_t[id]·b_t[id]·c_t[id]
/// (+ a hidden per-row term h when privileged fields exist, which they reveal noisily), b calibrated so the mean
/// click rate is <see cref="SyntheticCtrOptions.BaseCtr"/>. The same seed gives the same rows, in memory
/// (<see cref="Generate"/>) and in files (<see cref="WriteCriteoTsv(string, long)"/>, <see cref="WriteLibSvm(string, long, bool)"/>), whose
/// first n rows are those of <c>Generate(n)</c>.
/// </summary>
public sealed class SyntheticCtr
{
    private readonly int[] _vocab;
    private readonly double[][] _cdf;        // [f][id] cumulative Zipf probabilities
    private readonly float[][] _w;           // [f][id]
    private readonly float[][] _v;           // [f][id·k + d]
    private readonly (int A, int B, int C, float[] Fa, float[] Fb, float[] Fc)[] _triples;
    private readonly double _pairScale, _tripleScale;

    /// <summary>Draws the hidden model from <paramref name="options"/> (defaults when null) and calibrates its bias to the base click rate.
    /// Invalid options are an <see cref="ArgumentException"/> naming the option.</summary>
    public SyntheticCtr(SyntheticCtrOptions? options = null)
    {
        Options = options ?? new SyntheticCtrOptions();
        var o = Options;
        if (o.Fields < 1) throw new ArgumentOutOfRangeException(nameof(options), $"SyntheticCtr: Fields must be ≥ 1, got {o.Fields}.");
        if (o.VocabSizes is not null && o.VocabSizes.Count != o.Fields)
            throw new ArgumentException($"SyntheticCtr: VocabSizes has {o.VocabSizes.Count} entries, Fields = {o.Fields}.", nameof(options));
        _vocab = Enumerable.Range(0, o.Fields).Select(f => o.VocabSizes?[f] ?? o.VocabSize).ToArray();
        foreach (var v in _vocab) if (v < 1) throw new ArgumentOutOfRangeException(nameof(options), $"SyntheticCtr: vocabulary sizes must be ≥ 1, got {v}.");
        if (!(o.BaseCtr > 0 && o.BaseCtr < 1)) throw new ArgumentOutOfRangeException(nameof(options), $"SyntheticCtr: BaseCtr must be in (0, 1), got {o.BaseCtr}.");
        if (!(o.ZipfExponent >= 0)) throw new ArgumentOutOfRangeException(nameof(options), $"SyntheticCtr: ZipfExponent must be ≥ 0, got {o.ZipfExponent}.");
        if (o.Rank < 1) throw new ArgumentOutOfRangeException(nameof(options), $"SyntheticCtr: Rank must be ≥ 1, got {o.Rank}.");
        if (o.ThirdOrderTerms < 0 || (o.ThirdOrderTerms > 0 && o.Fields < 3))
            throw new ArgumentOutOfRangeException(nameof(options), $"SyntheticCtr: ThirdOrderTerms = {o.ThirdOrderTerms} needs ≥ 0 and, when > 0, at least 3 fields (have {o.Fields}).");
        if (o.PrivilegedFields < 0 || (o.PrivilegedFields > 0 && o.PrivilegedBuckets < 2))
            throw new ArgumentOutOfRangeException(nameof(options), $"SyntheticCtr: PrivilegedFields = {o.PrivilegedFields} must be ≥ 0 with PrivilegedBuckets ≥ 2 (got {o.PrivilegedBuckets}).");
        foreach (var (name, value) in new[] { ("FirstOrderScale", o.FirstOrderScale), ("PairwiseScale", o.PairwiseScale), ("ThirdOrderScale", o.ThirdOrderScale), ("PrivilegedSignal", o.PrivilegedSignal), ("PrivilegedNoise", o.PrivilegedNoise) })
            if (!(value >= 0) || !double.IsFinite(value)) throw new ArgumentOutOfRangeException(nameof(options), $"SyntheticCtr: {name} must be finite and ≥ 0, got {value}.");

        var rng = new DataRandom(o.Seed);
        int F = o.Fields, k = o.Rank;
        _cdf = new double[F][];
        for (int f = 0; f < F; f++)
        {
            var c = new double[_vocab[f]];
            double s = 0;
            for (int r = 0; r < c.Length; r++) { s += Math.Pow(r + 1, -o.ZipfExponent); c[r] = s; }
            for (int r = 0; r < c.Length; r++) c[r] /= s;
            _cdf[f] = c;
        }
        // Scales so that each summed term family has the requested standard deviation (terms are ~unit variance).
        double firstStd = o.FirstOrderScale / Math.Sqrt(F);
        _w = new float[F][];
        for (int f = 0; f < F; f++) _w[f] = Draw(ref rng, _vocab[f], firstStd);
        double factorStd = Math.Pow(k, -0.25); // ⟨v, v'⟩ over k dims then has variance 1
        _v = new float[F][];
        for (int f = 0; f < F; f++) _v[f] = Draw(ref rng, _vocab[f] * k, factorStd);
        int pairs = F * (F - 1) / 2;
        _pairScale = pairs == 0 ? 0 : o.PairwiseScale / Math.Sqrt(pairs);
        _triples = new (int, int, int, float[], float[], float[])[o.ThirdOrderTerms];
        for (int t = 0; t < _triples.Length; t++)
        {
            int a = rng.NextInt(F), b, c;
            do b = rng.NextInt(F); while (b == a);
            do c = rng.NextInt(F); while (c == a || c == b);
            _triples[t] = (a, b, c, Draw(ref rng, _vocab[a], 1), Draw(ref rng, _vocab[b], 1), Draw(ref rng, _vocab[c], 1));
        }
        _tripleScale = _triples.Length == 0 ? 0 : o.ThirdOrderScale / Math.Sqrt(_triples.Length);

        var fields = new List<FieldSpec> { FieldSpec.Label() };
        for (int f = 0; f < F; f++) fields.Add(FieldSpec.Categorical("C" + (f + 1)));
        for (int p = 0; p < o.PrivilegedFields; p++) fields.Add(FieldSpec.Categorical("P" + (p + 1)) with { Privileged = true });
        Schema = new Schema(fields);
        FeatureSpace = new FeatureSpace(Enumerable.Range(0, F).Select(f => new FeatureField("C" + (f + 1), FieldKind.Categorical, FieldEncoding.Direct, _vocab[f], false, f))
            .Concat(Enumerable.Range(0, o.PrivilegedFields).Select(p => new FeatureField("P" + (p + 1), FieldKind.Categorical, FieldEncoding.Direct, o.PrivilegedBuckets, true, F + p))));
        Bias = Calibrate(new DataRandom(o.Seed ^ 0x0C0FFEE), o.BaseCtr);
    }

    /// <summary>The settings the generator was built with.</summary>
    public SyntheticCtrOptions Options { get; }

    /// <summary>label, C1..CF, then privileged P1..PK (all categorical) — the layout of the files written.</summary>
    public Schema Schema { get; }

    /// <summary>Direct ids: field C_f has <c>VocabSize</c> ids 0..V−1 (0 the most frequent); P_k has PrivilegedBuckets.</summary>
    public FeatureSpace FeatureSpace { get; }

    /// <summary>The calibrated hidden bias.</summary>
    public double Bias { get; }

    /// <summary>Total columns per row: ordinary plus privileged fields.</summary>
    public int TotalFields => Options.Fields + Options.PrivilegedFields;

    /// <summary>The first <paramref name="rows"/> rows in memory.</summary>
    public EncodedDataset Generate(int rows)
    {
        if (rows < 0) throw new ArgumentOutOfRangeException(nameof(rows), $"Generate: rows must be ≥ 0, got {rows}.");
        int T = TotalFields;
        var ids = new int[rows * T];
        var labels = new float[rows];
        var rng = RowRandom();
        for (int i = 0; i < rows; i++) labels[i] = NextRow(ref rng, ids.AsSpan(i * T, T), out _, out _);
        return new EncodedDataset(FeatureSpace, rows, ids, labels);
    }

    /// <summary>
    /// The rows of <see cref="Generate"/> with, per row, the hidden logit the label was drawn from (<c>Logits</c>: bias,
    /// interactions and the privileged term h) and the part the ordinary fields determine (<c>OrdinaryLogits</c>: without h).
    /// Ranking rows by them gives the Bayes-optimal AUC with all information, and with the ordinary fields only
    /// (h is independent of them, so no model of C1..CF can do better) — the ceilings a model is measured against.
    /// </summary>
    public (EncodedDataset Data, double[] Logits, double[] OrdinaryLogits) GenerateWithLogits(int rows)
    {
        if (rows < 0) throw new ArgumentOutOfRangeException(nameof(rows), $"GenerateWithLogits: rows must be ≥ 0, got {rows}.");
        int T = TotalFields;
        var ids = new int[rows * T];
        var labels = new float[rows];
        var logits = new double[rows];
        var ordinary = new double[rows];
        var rng = RowRandom();
        for (int i = 0; i < rows; i++)
        {
            labels[i] = NextRow(ref rng, ids.AsSpan(i * T, T), out logits[i], out double h);
            ordinary[i] = logits[i] - h;
        }
        return (new EncodedDataset(FeatureSpace, rows, ids, labels), logits, ordinary);
    }

    /// <summary>Streams <paramref name="rows"/> rows as headerless TSV: label, then one 8-hex-digit token per field (Criteo-like).</summary>
    public void WriteCriteoTsv(string path, long rows) => WriteFile(path, w => WriteCriteoTsv(w, rows));

    /// <summary>Writes <paramref name="rows"/> rows to <paramref name="writer"/> as headerless Criteo-like TSV (see the path overload).</summary>
    public void WriteCriteoTsv(TextWriter writer, long rows)
    {
        ArgumentNullException.ThrowIfNull(writer);
        var ids = new int[TotalFields];
        var rng = RowRandom();
        var sb = new StringBuilder();
        for (long i = 0; i < rows; i++)
        {
            float label = NextRow(ref rng, ids, out _, out _);
            sb.Clear().Append(label == 1 ? '1' : '0');
            for (int f = 0; f < ids.Length; f++) sb.Append('\t').Append(HexToken(f, ids[f]));
            writer.Write(sb.Append('\n'));
        }
    }

    /// <summary>Streams rows as libSVM (<c>label idx:1 …</c>, field f owning indices <see cref="LibSvmOptions"/> ranges); labels 0/1 or −1/1.</summary>
    public void WriteLibSvm(string path, long rows, bool signedLabels = false) => WriteFile(path, w => WriteLibSvm(w, rows, signedLabels));

    /// <summary>Writes <paramref name="rows"/> rows to <paramref name="writer"/> as libSVM (see the path overload).</summary>
    public void WriteLibSvm(TextWriter writer, long rows, bool signedLabels = false)
    {
        ArgumentNullException.ThrowIfNull(writer);
        var ids = new int[TotalFields];
        var offsets = IndexOffsets();
        var rng = RowRandom();
        var sb = new StringBuilder();
        for (long i = 0; i < rows; i++)
        {
            float label = NextRow(ref rng, ids, out _, out _);
            sb.Clear().Append(label == 1 ? "1" : signedLabels ? "-1" : "0");
            for (int f = 0; f < ids.Length; f++) sb.Append(' ').Append((offsets[f] + ids[f]).ToString(CultureInfo.InvariantCulture)).Append(":1");
            writer.Write(sb.Append('\n'));
        }
    }

    /// <summary>Index ranges to read <see cref="WriteLibSvm(string, long, bool)"/> output back with <see cref="LibSvmReader"/>.</summary>
    public LibSvmOptions LibSvmOptions()
    {
        var offsets = IndexOffsets();
        return new LibSvmOptions(Schema, Enumerable.Range(0, TotalFields).Select(f =>
            new IndexRange(FeatureSpace.SingleFields[f].Name, offsets[f], offsets[f] + FeatureSpace.SingleFields[f].Cardinality)));
    }

    /// <summary>The 8-hex-digit token written for id <paramref name="id"/> of field <paramref name="field"/> (a bijection per field).</summary>
    public static string HexToken(int field, int id)
    {
        // Each step is a bijection on 32-bit values, so distinct ids give distinct tokens within a field.
        uint x = (uint)id * 0x9E3779B1u ^ (uint)(field * 0x85EBCA77);
        x ^= x >> 16; x *= 0x7FEB352Du; x ^= x >> 15; x *= 0x846CA68Bu; x ^= x >> 16;
        return x.ToString("x8", CultureInfo.InvariantCulture);
    }

    /// <summary>The hidden logit (without bias and privileged term) of a row of ordinary-field ids — for tests and analysis.</summary>
    public double HiddenLogit(ReadOnlySpan<int> ids)
    {
        int F = Options.Fields, k = Options.Rank;
        if (ids.Length < F) throw new ArgumentException($"HiddenLogit: need {F} ids, got {ids.Length}.", nameof(ids));
        for (int f = 0; f < F; f++)
            if ((uint)ids[f] >= (uint)_vocab[f]) throw new ArgumentOutOfRangeException(nameof(ids), $"HiddenLogit: field C{f + 1} id {ids[f]} is outside [0, {_vocab[f]}).");
        double z = 0;
        for (int f = 0; f < F; f++) z += _w[f][ids[f]];
        if (_pairScale != 0)
        {
            // Σ_{f<g} ⟨v_f, v_g⟩ = ½(‖Σ_f v_f‖² − Σ_f ‖v_f‖²), O(F·k) instead of O(F²·k).
            double pair = 0;
            for (int d = 0; d < k; d++)
            {
                double s = 0, sq = 0;
                for (int f = 0; f < F; f++) { double x = _v[f][ids[f] * k + d]; s += x; sq += x * x; }
                pair += 0.5 * (s * s - sq);
            }
            z += _pairScale * pair;
        }
        foreach (var (a, b, c, fa, fb, fc) in _triples) z += _tripleScale * fa[ids[a]] * fb[ids[b]] * fc[ids[c]];
        return z;
    }

    private DataRandom RowRandom() => new(Options.Seed ^ 0x5EED5EED);

    private float NextRow(ref DataRandom rng, Span<int> ids, out double z, out double h)
    {
        var o = Options;
        for (int f = 0; f < o.Fields; f++) ids[f] = Zipf(ref rng, f);
        z = Bias + HiddenLogit(ids);
        h = 0;
        if (o.PrivilegedFields > 0)
        {
            h = o.PrivilegedSignal * rng.NextGaussian();
            z += h;
            double sd = Math.Sqrt(o.PrivilegedSignal * o.PrivilegedSignal + o.PrivilegedNoise * o.PrivilegedNoise);
            for (int p = 0; p < o.PrivilegedFields; p++)
            {
                double x = (h + o.PrivilegedNoise * rng.NextGaussian()) / (sd == 0 ? 1 : sd);
                // Uniform buckets over ±3 standard deviations, clamped at the ends.
                ids[o.Fields + p] = Math.Clamp((int)Math.Floor((x + 3) / 6 * o.PrivilegedBuckets), 0, o.PrivilegedBuckets - 1);
            }
        }
        return rng.NextDouble() < Sigmoid(z) ? 1f : 0f;
    }

    private int Zipf(ref DataRandom rng, int f)
    {
        var cdf = _cdf[f];
        double u = rng.NextDouble();
        int i = Array.BinarySearch(cdf, u);
        if (i < 0) i = ~i;
        return Math.Min(i, cdf.Length - 1);
    }

    private double Calibrate(DataRandom rng, double target)
    {
        // Mean CTR is monotone in the bias: bisection on a fixed calibration sample of hidden logits.
        const int n = 20000;
        var z = new double[n];
        var ids = new int[Options.Fields];
        for (int i = 0; i < n; i++)
        {
            for (int f = 0; f < Options.Fields; f++) ids[f] = Zipf(ref rng, f);
            z[i] = HiddenLogit(ids) + (Options.PrivilegedFields > 0 ? Options.PrivilegedSignal * rng.NextGaussian() : 0);
        }
        double lo = -30, hi = 30;
        for (int it = 0; it < 100; it++)
        {
            double mid = 0.5 * (lo + hi), mean = 0;
            foreach (var x in z) mean += Sigmoid(x + mid);
            if (mean / n < target) lo = mid; else hi = mid;
        }
        return 0.5 * (lo + hi);
    }

    private long[] IndexOffsets()
    {
        var offsets = new long[TotalFields];
        for (int f = 1; f < offsets.Length; f++) offsets[f] = offsets[f - 1] + FeatureSpace.SingleFields[f - 1].Cardinality;
        return offsets;
    }

    private static float[] Draw(ref DataRandom rng, int n, double std)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(std * rng.NextGaussian());
        return a;
    }

    private static double Sigmoid(double z) => 1.0 / (1.0 + Math.Exp(-z));

    private static void WriteFile(string path, Action<TextWriter> write)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var w = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 16);
        write(w);
    }
}
