using System.Runtime.Intrinsics;
using KdEngine.Backends;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Training;

/// <summary>
/// The fused optimizer update loops (<c>UpdateKernels</c>) against a scalar reference written here, element by element
/// with the same fused multiply-adds: every result must be bit-for-bit the reference's, at sizes that leave every
/// possible tail after the 16-lane (512-bit) and 8-lane (256-bit) loops. Because the reference is scalar, equality
/// also pins the documented promise that an element's update does not depend on where it sits in the block (a sparse
/// table row gets the same numbers as the same row updated densely). The dispatched kernels run at the widest width
/// this machine accelerates; the <c>*_at_each_width</c> tests run each kernel's vector loop at 512 and at 256 bits
/// whatever the machine (the JIT emulates a width it does not accelerate) and check the part it covers, so both
/// instantiations are held to the reference on any CI machine.
/// </summary>
public class UpdateKernelTests
{
    private static readonly int[] Sizes = [1, 7, 8, 15, 16, 17, 33, 100, 257];

    private static float[] Values(int n, int seed, float lo, float hi)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = lo + (hi - lo) * (float)rng.NextDouble();
        return a;
    }

    /// <summary>A gradient with some exact zeros (a lazily updated row's untouched coordinates).</summary>
    private static float[] Gradient(int n, int seed)
    {
        var g = Values(n, seed, -1f, 1f);
        for (int i = 3; i < n; i += 5) g[i] = 0f;
        return g;
    }

    private static void AssertBitIdentical(float[] actual, float[] expected, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(actual[i]) != BitConverter.SingleToInt32Bits(expected[i]))
                Assert.Fail($"{what}[{i}] of {expected.Length}: {actual[i]:R} (0x{BitConverter.SingleToInt32Bits(actual[i]):X8}), " +
                            $"expected {expected[i]:R} (0x{BitConverter.SingleToInt32Bits(expected[i]):X8})");
    }

    // ---------- scalar references (the formulas of the kernels' doc comments, one element at a time) ----------

    private static float Effective(float g, float w, float s, float l2) => MathF.FusedMultiplyAdd(g, s, l2 * w);

    private static void SgdReference(float[] w, float[] g, float s, float l2, float lr, float keep)
    {
        for (int i = 0; i < w.Length; i++) w[i] = MathF.FusedMultiplyAdd(-lr, Effective(g[i], w[i], s, l2), keep * w[i]);
    }

    private static void MomentumReference(float[] w, float[] g, float[] b, float s, float l2, float lr, float mu, bool nesterov, float keep)
    {
        for (int i = 0; i < w.Length; i++)
        {
            float ge = Effective(g[i], w[i], s, l2);
            b[i] = MathF.FusedMultiplyAdd(mu, b[i], ge);
            float d = nesterov ? MathF.FusedMultiplyAdd(mu, b[i], ge) : b[i];
            w[i] = MathF.FusedMultiplyAdd(-lr, d, keep * w[i]);
        }
    }

    private static void AdamReference(float[] w, float[] g, float[] m, float[] v, float s, float l2, float stepSize, float beta1, float beta2,
        float invSqrtBc2, float eps, float keep)
    {
        for (int i = 0; i < w.Length; i++)
        {
            float ge = Effective(g[i], w[i], s, l2);
            m[i] = MathF.FusedMultiplyAdd(beta1, m[i], (1f - beta1) * ge);
            v[i] = MathF.FusedMultiplyAdd(beta2, v[i], (1f - beta2) * ge * ge);
            float denom = MathF.FusedMultiplyAdd(MathF.Sqrt(v[i]), invSqrtBc2, eps);
            w[i] = MathF.FusedMultiplyAdd(-stepSize, m[i] / denom, keep * w[i]);
        }
    }

    private static void AdagradReference(float[] w, float[] g, float[] a, float s, float l2, float lr, float eps, float keep)
    {
        for (int i = 0; i < w.Length; i++)
        {
            float ge = Effective(g[i], w[i], s, l2);
            a[i] = MathF.FusedMultiplyAdd(ge, ge, a[i]);
            w[i] = MathF.FusedMultiplyAdd(-lr, ge / (MathF.Sqrt(a[i]) + eps), keep * w[i]);
        }
    }

    private static void FtrlReference(float[] w, float[] g, float[] z, float[] n, float s, float invAlpha, float beta, float l1, float l2)
    {
        for (int i = 0; i < w.Length; i++)
        {
            float gi = g[i] * s;
            float nNew = MathF.FusedMultiplyAdd(gi, gi, n[i]);
            float sigma = (MathF.Sqrt(nNew) - MathF.Sqrt(n[i])) * invAlpha;
            z[i] = MathF.FusedMultiplyAdd(-sigma, w[i], z[i] + gi);
            n[i] = nNew;
            float den = MathF.FusedMultiplyAdd(beta + MathF.Sqrt(nNew), invAlpha, l2);
            w[i] = MathF.Abs(z[i]) <= l1 ? 0f : -((z[i] - MathF.CopySign(l1, z[i])) / den);
        }
    }

    // ---------- the dispatched kernels (the widest width this machine accelerates, then the scalar tail) ----------

    [Test]
    public void Sgd_matches_the_scalar_reference_bit_for_bit([ValueSource(nameof(Sizes))] int n, [Values(1f, 0.999f)] float keep)
    {
        var w = Values(n, 1, -1f, 1f); var g = Gradient(n, 2);
        var ew = (float[])w.Clone();
        UpdateKernels.Sgd(w, g, 0.7f, 0.01f, 0.05f, keep);
        SgdReference(ew, g, 0.7f, 0.01f, 0.05f, keep);
        AssertBitIdentical(w, ew, "w");
    }

    [Test]
    public void SgdMomentum_matches_the_scalar_reference_bit_for_bit([ValueSource(nameof(Sizes))] int n, [Values] bool nesterov)
    {
        var w = Values(n, 3, -1f, 1f); var g = Gradient(n, 4); var b = Values(n, 5, -1f, 1f);
        var ew = (float[])w.Clone(); var eb = (float[])b.Clone();
        UpdateKernels.SgdMomentum(w, g, b, 0.7f, 0.01f, 0.05f, 0.9f, nesterov, 0.999f);
        MomentumReference(ew, g, eb, 0.7f, 0.01f, 0.05f, 0.9f, nesterov, 0.999f);
        AssertBitIdentical(w, ew, "w");
        AssertBitIdentical(b, eb, "momentum");
    }

    [Test]
    public void Adam_matches_the_scalar_reference_bit_for_bit([ValueSource(nameof(Sizes))] int n, [Values(1f, 0.9995f)] float keep)
    {
        var w = Values(n, 6, -1f, 1f); var g = Gradient(n, 7); var m = Values(n, 8, -0.5f, 0.5f); var v = Values(n, 9, 0f, 1f);
        v[0] = 0f; // with a zero gradient at the same place in another size: the denominator is ε alone
        var ew = (float[])w.Clone(); var em = (float[])m.Clone(); var ev = (float[])v.Clone();
        // step 3 of β1 = 0.9, β2 = 0.999: stepSize = lr/(1 − β1³), invSqrtBc2 = 1/√(1 − β2³)
        float stepSize = 1e-3f / (1f - MathF.Pow(0.9f, 3)), invSqrtBc2 = 1f / MathF.Sqrt(1f - MathF.Pow(0.999f, 3));
        UpdateKernels.Adam(w, g, m, v, 0.7f, 0.01f, stepSize, 0.9f, 0.999f, invSqrtBc2, 1e-8f, keep);
        AdamReference(ew, g, em, ev, 0.7f, 0.01f, stepSize, 0.9f, 0.999f, invSqrtBc2, 1e-8f, keep);
        AssertBitIdentical(w, ew, "w");
        AssertBitIdentical(m, em, "m");
        AssertBitIdentical(v, ev, "v");
    }

    [Test]
    public void Adagrad_matches_the_scalar_reference_bit_for_bit([ValueSource(nameof(Sizes))] int n, [Values(1f, 0.999f)] float keep)
    {
        var w = Values(n, 10, -1f, 1f); var g = Gradient(n, 11); var a = Values(n, 12, 0f, 2f);
        var ew = (float[])w.Clone(); var ea = (float[])a.Clone();
        UpdateKernels.Adagrad(w, g, a, 0.7f, 0.01f, 0.05f, 1e-10f, keep);
        AdagradReference(ew, g, ea, 0.7f, 0.01f, 0.05f, 1e-10f, keep);
        AssertBitIdentical(w, ew, "w");
        AssertBitIdentical(a, ea, "accumulator");
    }

    /// <summary>
    /// FTRL's two branches (|z| ≤ λ1 → w = 0, else the closed form) both occur, including |z| = λ1 exactly (a zero
    /// gradient on a zero weight leaves z as it was) on either sign, and in the vector body as well as the tail.
    /// </summary>
    [Test]
    public void Ftrl_matches_the_scalar_reference_bit_for_bit_on_both_sides_of_the_l1_threshold([ValueSource(nameof(Sizes))] int n)
    {
        const float L1 = 0.5f;
        var w = Values(n, 13, -1f, 1f); var g = Gradient(n, 14); var z = Values(n, 15, -1.2f, 1.2f); var nAcc = Values(n, 16, 0f, 2f);
        for (int i = 2; i < n; i += 7) { g[i] = 0f; w[i] = 0f; z[i] = (i / 7) % 2 == 0 ? L1 : -L1; }
        var ew = (float[])w.Clone(); var ez = (float[])z.Clone(); var en = (float[])nAcc.Clone();
        UpdateKernels.Ftrl(w, g, z, nAcc, 0.7f, 1f / 0.05f, 1f, L1, 0.01f);
        FtrlReference(ew, g, ez, en, 0.7f, 1f / 0.05f, 1f, L1, 0.01f);
        AssertBitIdentical(w, ew, "w");
        AssertBitIdentical(z, ez, "z");
        AssertBitIdentical(nAcc, en, "n");
        if (n >= 33)
        {
            // both branches in the first 32 elements (inside the vector loop at either width) and in what follows
            Assert.That(w.Take(32).Count(x => x == 0f), Is.GreaterThan(2), "w = 0 branch in the vector body");
            Assert.That(w.Take(32).Count(x => x != 0f), Is.GreaterThan(2), "closed-form branch in the vector body");
            Assert.That(Enumerable.Range(0, 32).Count(i => MathF.Abs(z[i]) == L1 && w[i] == 0f), Is.GreaterThanOrEqualTo(2), "|z| = λ1 exactly");
        }
        if (n == 257)
        {
            // both branches over the whole block
            Assert.That(w.Count(x => x == 0f), Is.GreaterThan(10));
            Assert.That(w.Count(x => x != 0f), Is.GreaterThan(10));
        }
    }

    [Test]
    public void Ftrl_with_no_l1_never_zeroes_a_weight_with_a_nonzero_z([ValueSource(nameof(Sizes))] int n)
    {
        var w = Values(n, 17, -1f, 1f); var g = Gradient(n, 18); var z = Values(n, 19, -1f, 1f); var nAcc = Values(n, 20, 0f, 2f);
        var ew = (float[])w.Clone(); var ez = (float[])z.Clone(); var en = (float[])nAcc.Clone();
        UpdateKernels.Ftrl(w, g, z, nAcc, 1f, 1f / 0.1f, 1f, 0f, 0f);
        FtrlReference(ew, g, ez, en, 1f, 1f / 0.1f, 1f, 0f, 0f);
        AssertBitIdentical(w, ew, "w");
        AssertBitIdentical(z, ez, "z");
        AssertBitIdentical(nAcc, en, "n");
        for (int i = 0; i < n; i++) if (z[i] != 0f) Assert.That(w[i], Is.Not.EqualTo(0f), $"w[{i}]");
    }

    // ---------- each kernel's vector loop at each width, whatever this machine accelerates ----------

    private static readonly int[] Widths = [512, 256];

    /// <summary>
    /// The vector loop must stop where the last whole vector ends, match the reference up to there and leave the rest
    /// (the scalar tail's part) untouched.
    /// </summary>
    private static void AssertVectorPart(int covered, int bits, float[] actual, float[] expected, float[] before, string what)
    {
        int lanes = bits / 32, n = actual.Length;
        Assert.That(covered, Is.EqualTo(n - n % lanes), $"{what}: where the {bits}-bit loop stops");
        AssertBitIdentical(actual[..covered], expected[..covered], what);
        AssertBitIdentical(actual[covered..], before[covered..], what + " past the vector loop");
    }

    [Test]
    public void Sgd_vector_loop_matches_the_reference_at_each_width([ValueSource(nameof(Widths))] int bits, [ValueSource(nameof(Sizes))] int n)
    {
        var w = Values(n, 1, -1f, 1f); var g = Gradient(n, 2);
        var w0 = (float[])w.Clone(); var ew = (float[])w.Clone();
        int covered = bits == 512
            ? UpdateKernels.Sgd<Vector512<float>, Vector512Ops<float>>(ref w[0], ref g[0], 0.7f, 0.01f, -0.05f, 0.999f, n)
            : UpdateKernels.Sgd<Vector256<float>, Vector256Ops<float>>(ref w[0], ref g[0], 0.7f, 0.01f, -0.05f, 0.999f, n);
        SgdReference(ew, g, 0.7f, 0.01f, 0.05f, 0.999f);
        AssertVectorPart(covered, bits, w, ew, w0, "w");
    }

    [Test]
    public void SgdMomentum_vector_loop_matches_the_reference_at_each_width([ValueSource(nameof(Widths))] int bits, [ValueSource(nameof(Sizes))] int n,
        [Values] bool nesterov)
    {
        var w = Values(n, 3, -1f, 1f); var g = Gradient(n, 4); var b = Values(n, 5, -1f, 1f);
        var w0 = (float[])w.Clone(); var b0 = (float[])b.Clone(); var ew = (float[])w.Clone(); var eb = (float[])b.Clone();
        int covered = bits == 512
            ? UpdateKernels.SgdMomentum<Vector512<float>, Vector512Ops<float>>(ref w[0], ref g[0], ref b[0], 0.7f, 0.01f, -0.05f, 0.9f, nesterov, 0.999f, n)
            : UpdateKernels.SgdMomentum<Vector256<float>, Vector256Ops<float>>(ref w[0], ref g[0], ref b[0], 0.7f, 0.01f, -0.05f, 0.9f, nesterov, 0.999f, n);
        MomentumReference(ew, g, eb, 0.7f, 0.01f, 0.05f, 0.9f, nesterov, 0.999f);
        AssertVectorPart(covered, bits, w, ew, w0, "w");
        AssertVectorPart(covered, bits, b, eb, b0, "momentum");
    }

    [Test]
    public void Adam_vector_loop_matches_the_reference_at_each_width([ValueSource(nameof(Widths))] int bits, [ValueSource(nameof(Sizes))] int n)
    {
        var w = Values(n, 6, -1f, 1f); var g = Gradient(n, 7); var m = Values(n, 8, -0.5f, 0.5f); var v = Values(n, 9, 0f, 1f);
        v[0] = 0f;
        var w0 = (float[])w.Clone(); var m0 = (float[])m.Clone(); var v0 = (float[])v.Clone();
        var ew = (float[])w.Clone(); var em = (float[])m.Clone(); var ev = (float[])v.Clone();
        float stepSize = 1e-3f / (1f - MathF.Pow(0.9f, 3)), invSqrtBc2 = 1f / MathF.Sqrt(1f - MathF.Pow(0.999f, 3));
        int covered = bits == 512
            ? UpdateKernels.Adam<Vector512<float>, Vector512Ops<float>>(ref w[0], ref g[0], ref m[0], ref v[0], 0.7f, 0.01f, -stepSize, 0.9f, 0.999f, invSqrtBc2, 1e-8f, 0.9995f, n)
            : UpdateKernels.Adam<Vector256<float>, Vector256Ops<float>>(ref w[0], ref g[0], ref m[0], ref v[0], 0.7f, 0.01f, -stepSize, 0.9f, 0.999f, invSqrtBc2, 1e-8f, 0.9995f, n);
        AdamReference(ew, g, em, ev, 0.7f, 0.01f, stepSize, 0.9f, 0.999f, invSqrtBc2, 1e-8f, 0.9995f);
        AssertVectorPart(covered, bits, w, ew, w0, "w");
        AssertVectorPart(covered, bits, m, em, m0, "m");
        AssertVectorPart(covered, bits, v, ev, v0, "v");
    }

    [Test]
    public void Adagrad_vector_loop_matches_the_reference_at_each_width([ValueSource(nameof(Widths))] int bits, [ValueSource(nameof(Sizes))] int n)
    {
        var w = Values(n, 10, -1f, 1f); var g = Gradient(n, 11); var a = Values(n, 12, 0f, 2f);
        var w0 = (float[])w.Clone(); var a0 = (float[])a.Clone(); var ew = (float[])w.Clone(); var ea = (float[])a.Clone();
        int covered = bits == 512
            ? UpdateKernels.Adagrad<Vector512<float>, Vector512Ops<float>>(ref w[0], ref g[0], ref a[0], 0.7f, 0.01f, -0.05f, 1e-10f, 0.999f, n)
            : UpdateKernels.Adagrad<Vector256<float>, Vector256Ops<float>>(ref w[0], ref g[0], ref a[0], 0.7f, 0.01f, -0.05f, 1e-10f, 0.999f, n);
        AdagradReference(ew, g, ea, 0.7f, 0.01f, 0.05f, 1e-10f, 0.999f);
        AssertVectorPart(covered, bits, w, ew, w0, "w");
        AssertVectorPart(covered, bits, a, ea, a0, "accumulator");
    }

    /// <summary>Accumulators starting at exactly 1 (LIBFFM's and ML.NET's FFM), through the dispatched kernel and each width's vector loop.</summary>
    [Test]
    public void Adagrad_from_accumulators_of_one_matches_the_reference([ValueSource(nameof(Widths))] int bits, [ValueSource(nameof(Sizes))] int n)
    {
        var w = Values(n, 13, -1f, 1f); var g = Gradient(n, 14); var a = new float[n];
        Array.Fill(a, 1f);
        var dispatchedW = (float[])w.Clone(); var dispatchedA = (float[])a.Clone();
        var w0 = (float[])w.Clone(); var a0 = (float[])a.Clone(); var ew = (float[])w.Clone(); var ea = (float[])a.Clone();
        int covered = bits == 512
            ? UpdateKernels.Adagrad<Vector512<float>, Vector512Ops<float>>(ref w[0], ref g[0], ref a[0], 1f, 1e-4f, -0.1f, 1e-10f, 1f, n)
            : UpdateKernels.Adagrad<Vector256<float>, Vector256Ops<float>>(ref w[0], ref g[0], ref a[0], 1f, 1e-4f, -0.1f, 1e-10f, 1f, n);
        AdagradReference(ew, g, ea, 1f, 1e-4f, 0.1f, 1e-10f, 1f);
        AssertVectorPart(covered, bits, w, ew, w0, "w");
        AssertVectorPart(covered, bits, a, ea, a0, "accumulator");
        UpdateKernels.Adagrad(dispatchedW, g, dispatchedA, 1f, 1e-4f, 0.1f, 1e-10f);
        AssertBitIdentical(dispatchedW, ew, "w (dispatched)");
        AssertBitIdentical(dispatchedA, ea, "accumulator (dispatched)");
    }

    [Test]
    public void Ftrl_vector_loop_matches_the_reference_at_each_width_on_both_sides_of_the_l1_threshold(
        [ValueSource(nameof(Widths))] int bits, [ValueSource(nameof(Sizes))] int n)
    {
        const float L1 = 0.5f;
        var w = Values(n, 13, -1f, 1f); var g = Gradient(n, 14); var z = Values(n, 15, -1.2f, 1.2f); var nAcc = Values(n, 16, 0f, 2f);
        for (int i = 2; i < n; i += 7) { g[i] = 0f; w[i] = 0f; z[i] = (i / 7) % 2 == 0 ? L1 : -L1; }
        var w0 = (float[])w.Clone(); var z0 = (float[])z.Clone(); var n0 = (float[])nAcc.Clone();
        var ew = (float[])w.Clone(); var ez = (float[])z.Clone(); var en = (float[])nAcc.Clone();
        int covered = bits == 512
            ? UpdateKernels.Ftrl<Vector512<float>, Vector512Ops<float>>(ref w[0], ref g[0], ref z[0], ref nAcc[0], 0.7f, 1f / 0.05f, 1f, L1, 0.01f, n)
            : UpdateKernels.Ftrl<Vector256<float>, Vector256Ops<float>>(ref w[0], ref g[0], ref z[0], ref nAcc[0], 0.7f, 1f / 0.05f, 1f, L1, 0.01f, n);
        FtrlReference(ew, g, ez, en, 0.7f, 1f / 0.05f, 1f, L1, 0.01f);
        AssertVectorPart(covered, bits, w, ew, w0, "w");
        AssertVectorPart(covered, bits, z, ez, z0, "z");
        AssertVectorPart(covered, bits, nAcc, en, n0, "n");
        if (covered >= 32)
        {
            Assert.That(w.Take(32).Count(x => x == 0f), Is.GreaterThan(2), "w = 0 branch in the vector loop");
            Assert.That(w.Take(32).Count(x => x != 0f), Is.GreaterThan(2), "closed-form branch in the vector loop");
        }
    }
}
