using KdEngine.Data;
using NUnit.Framework;

namespace KdEngine.Tests.Data;

public class SyntheticCtrTests
{
    [Test]
    public void Same_seed_same_data_other_seed_other_data()
    {
        var o = new SyntheticCtrOptions { Fields = 6, VocabSize = 200, Seed = 9, PrivilegedFields = 1 };
        var a = new SyntheticCtr(o).Generate(3000);
        var b = new SyntheticCtr(o).Generate(3000);
        var c = new SyntheticCtr(o with { Seed = 10 }).Generate(3000);
        Assert.That(b.Ids, Is.EqualTo(a.Ids));
        Assert.That(b.Labels, Is.EqualTo(a.Labels));
        Assert.That(c.Ids, Is.Not.EqualTo(a.Ids));
        Assert.That(a.FieldCount, Is.EqualTo(7));
        Assert.That(a.FeatureSpace["P1"].Privileged, Is.True);
        Assert.That(a.FeatureSpace["C1"].Cardinality, Is.EqualTo(200));
        Assert.That(new SyntheticCtr(o).Generate(100).Ids, Is.EqualTo(a.Ids[..700]), "a prefix of a longer run");
    }

    [Test]
    public void Ids_are_zipf_skewed()
    {
        const double s = 1.1;
        var ds = new SyntheticCtr(new SyntheticCtrOptions { Fields = 2, VocabSize = 1000, ZipfExponent = s, ThirdOrderTerms = 0, Seed = 1 }).Generate(200_000);
        var counts = new int[1000];
        for (int i = 0; i < ds.Count; i++) counts[ds.Ids[i * 2]]++;
        // P(r) ∝ (r+1)^-s: count[0] / count[9] ≈ 10^s = 12.6.
        double ratio = (double)counts[0] / counts[9];
        Assert.That(ratio, Is.InRange(Math.Pow(10, s) * 0.85, Math.Pow(10, s) * 1.15));
        // Expected share of the top 10 of 1000 ids: Σ_{r≤10} r^-1.1 / Σ_{r≤1000} r^-1.1 ≈ 0.48 (uniform: 0.01).
        Assert.That(counts.Take(10).Sum() / (double)ds.Count, Is.InRange(0.44, 0.52));
        Assert.That(counts.Count(c => c > 0), Is.GreaterThan(500), "the tail is populated too");
    }

    [TestCase(0.2)]
    [TestCase(0.05)]
    public void Label_rate_is_calibrated_to_the_target(double ctr)
    {
        var ds = new SyntheticCtr(new SyntheticCtrOptions { BaseCtr = ctr, Seed = 4, PrivilegedFields = 2 }).Generate(100_000);
        Assert.That(ds.LabelRate, Is.EqualTo(ctr).Within(0.012));
    }

    /// <summary>
    /// Interaction statistic for fields 0 and 1 (the only fields, so nothing is marginalised away): in a model with
    /// per-field effects only, cell log-odds are additive, L[a,b] = α_a + β_b, so the double-centred table
    /// R = L − row means − column means + grand mean is pure sampling noise. Returns Σ R²/Var(L) over the top
    /// ids' cells, roughly χ² with (A−1)(B−1) degrees of freedom under additivity.
    /// </summary>
    private static (double Stat, int Dof) InteractionStatistic(EncodedDataset ds, int top)
    {
        var pos = new double[top, top];
        var n = new double[top, top];
        for (int i = 0; i < ds.Count; i++)
        {
            int a = ds.Ids[i * 2], b = ds.Ids[i * 2 + 1];
            if (a >= top || b >= top) continue;
            n[a, b]++;
            pos[a, b] += ds.Labels[i];
        }
        var L = new double[top, top];
        double stat = 0, grand = 0;
        var row = new double[top];
        var col = new double[top];
        for (int a = 0; a < top; a++)
            for (int b = 0; b < top; b++)
            {
                Assert.That(n[a, b], Is.GreaterThan(500), "every cell needs enough rows");
                double p = (pos[a, b] + 0.5) / (n[a, b] + 1);
                L[a, b] = Math.Log(p / (1 - p));
                row[a] += L[a, b] / top; col[b] += L[a, b] / top; grand += L[a, b] / (top * top);
            }
        for (int a = 0; a < top; a++)
            for (int b = 0; b < top; b++)
            {
                double p = (pos[a, b] + 0.5) / (n[a, b] + 1);
                double r = L[a, b] - row[a] - col[b] + grand;
                stat += r * r * n[a, b] * p * (1 - p); // Var(L) ≈ 1 / (n p (1 − p))
            }
        return (stat, (top - 1) * (top - 1));
    }

    [Test]
    public void Hidden_pairwise_interactions_are_real_and_absent_without_them()
    {
        var o = new SyntheticCtrOptions { Fields = 2, VocabSize = 6, ZipfExponent = 0.3, ThirdOrderTerms = 0, PairwiseScale = 1.0, Seed = 2 };
        var with = InteractionStatistic(new SyntheticCtr(o).Generate(120_000), 6);
        var without = InteractionStatistic(new SyntheticCtr(o with { PairwiseScale = 0 }).Generate(120_000), 6);
        Assert.That(without.Stat, Is.LessThan(3.0 * without.Dof), "per-field effects only: additive log-odds, no interaction left");
        Assert.That(with.Stat, Is.GreaterThan(10.0 * with.Dof), "the pairwise terms leave signal per-field effects cannot explain");
        TestContext.Out.WriteLine($"interaction χ²: with {with.Stat:F1}, without {without.Stat:F1}, dof {with.Dof}");
    }

    [Test]
    public void Third_order_terms_depend_on_three_fields_jointly()
    {
        var o = new SyntheticCtrOptions { Fields = 3, VocabSize = 20, PairwiseScale = 0, FirstOrderScale = 0, ThirdOrderTerms = 1, ThirdOrderScale = 1, Seed = 5 };
        var g = new SyntheticCtr(o);
        // Only the triple product term is on: the effect of changing field 3's id, z(a,b,0) − z(a,b,1), depends on
        // (a, b) — a pairwise model would make it depend on a or b separately, an additive one not at all.
        var diffs = new HashSet<double>();
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++)
                diffs.Add(Math.Round(g.HiddenLogit([a, b, 0]) - g.HiddenLogit([a, b, 1]), 6));
        Assert.That(diffs, Has.Count.GreaterThan(1));
        double Effect(int a, int b) => g.HiddenLogit([a, b, 0]) - g.HiddenLogit([a, b, 1]);
        // Not a sum of an a-part and a b-part: the 2×2 interaction contrast is non-zero.
        Assert.That(Math.Abs(Effect(0, 0) - Effect(0, 1) - Effect(1, 0) + Effect(1, 1)), Is.GreaterThan(1e-3));
        var none = new SyntheticCtr(o with { ThirdOrderTerms = 0 });
        Assert.That(none.HiddenLogit([1, 2, 3]), Is.Zero);
    }

    [Test]
    public void Privileged_fields_carry_extra_signal_about_the_label()
    {
        var ds = new SyntheticCtr(new SyntheticCtrOptions { Fields = 4, VocabSize = 100, PrivilegedFields = 1, PrivilegedBuckets = 8, Seed = 6 }).Generate(50_000);
        int p = ds.FeatureSpace["P1"].Slot;
        double Rate(Func<int, bool> bucket)
        {
            double pos = 0, n = 0;
            for (int i = 0; i < ds.Count; i++)
                if (bucket(ds.Ids[i * ds.FieldCount + p])) { n++; pos += ds.Labels[i]; }
            return pos / n;
        }
        Assert.That(Rate(b => b >= 5) - Rate(b => b <= 2), Is.GreaterThan(0.15));
    }

    [Test]
    public void Generate_with_logits_gives_the_same_rows_and_the_logits_the_labels_were_drawn_from()
    {
        var o = new SyntheticCtrOptions { Fields = 5, VocabSize = 50, PrivilegedFields = 2, PrivilegedSignal = 1.5, Seed = 11 };
        var gen = new SyntheticCtr(o);
        var plain = gen.Generate(40_000);
        var (ds, logits, ordinary) = gen.GenerateWithLogits(40_000);
        Assert.That(ds.Ids, Is.EqualTo(plain.Ids));
        Assert.That(ds.Labels, Is.EqualTo(plain.Labels));
        int F = ds.FieldCount;
        for (int i = 0; i < 200; i++)
            Assert.That(ordinary[i], Is.EqualTo(gen.Bias + gen.HiddenLogit(ds.Ids.AsSpan(i * F, o.Fields))).Within(1e-9), "ordinary part = bias + hidden logit of C1..CF");
        // The privileged term h = logit − ordinary part has the requested std and is independent of the ordinary part.
        var h = logits.Zip(ordinary, (z, zo) => z - zo).ToArray();
        double hStd = Math.Sqrt(h.Select(x => x * x).Average() - Math.Pow(h.Average(), 2));
        Assert.That(hStd, Is.EqualTo(1.5).Within(0.05));
        // The labels are Bernoulli(σ(logit)): the mean predicted rate matches the label rate, and the full logit ranks
        // the labels better than its ordinary part, which ranks them better than chance.
        Assert.That(logits.Average(z => 1 / (1 + Math.Exp(-z))), Is.EqualTo(ds.LabelRate).Within(0.01));
        double full = KdEngine.Metrics.CtrMetrics.Auc(logits.Select(x => (float)x).ToArray(), ds.Labels);
        double part = KdEngine.Metrics.CtrMetrics.Auc(ordinary.Select(x => (float)x).ToArray(), ds.Labels);
        Assert.That(full, Is.GreaterThan(part + 0.03));
        Assert.That(part, Is.GreaterThan(0.6));
        // Without privileged fields there is no h.
        var (_, z0, o0) = new SyntheticCtr(o with { PrivilegedFields = 0 }).GenerateWithLogits(100);
        Assert.That(z0, Is.EqualTo(o0));
    }

    [Test]
    public void Criteo_tsv_and_libsvm_files_hold_the_same_rows_as_generate()
    {
        var gen = new SyntheticCtr(new SyntheticCtrOptions { Fields = 5, VocabSize = 300, PrivilegedFields = 1, Seed = 8 });
        var ds = gen.Generate(500);
        var dir = Path.GetDirectoryName(DataTestFiles.Temp("x", ""))!;
        var tsv = Path.Combine(dir, "synth.tsv");
        gen.WriteCriteoTsv(tsv, 500);
        var rows = new DelimitedReader(tsv, gen.Schema, new DelimitedOptions { HasHeader = false }).ToList();
        Assert.That(rows.Select(r => r.Label), Is.EqualTo(ds.Labels));
        for (int i = 0; i < 500; i += 7)
            for (int f = 0; f < 6; f++)
                Assert.That(rows[i].Values[f + 1], Is.EqualTo(SyntheticCtr.HexToken(f, ds.Ids[i * 6 + f])));
        Assert.That(Enumerable.Range(0, 300).Select(id => SyntheticCtr.HexToken(2, id)).Distinct().Count(), Is.EqualTo(300));

        var svm = Path.Combine(dir, "synth.svm");
        gen.WriteLibSvm(svm, 500, signedLabels: true);
        Assert.That(File.ReadLines(svm).First(), Does.StartWith(ds.Labels[0] == 1 ? "1 " : "-1 "));
        var opts = gen.LibSvmOptions();
        var back = new LibSvmReader(svm, opts).ToList();
        Assert.That(back.Select(r => r.Label), Is.EqualTo(ds.Labels));
        for (int f = 0; f < 6; f++)
            Assert.That(long.Parse(back[3].Values[f + 1]!) - opts.Ranges[f].Start, Is.EqualTo(ds.Ids[3 * 6 + f]));
    }
}
