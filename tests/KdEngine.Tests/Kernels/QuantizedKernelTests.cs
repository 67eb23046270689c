using KdEngine.Kernels.Cpu;
using NUnit.Framework;

namespace KdEngine.Tests.Kernels;

public unsafe class QuantizedKernelTests
{
    // (m, k, n): rows below / at / past the 6-row tile and the batch-16 case; k not a multiple of 4 (padded groups);
    // n below / at / past the 16-column panel.
    private static readonly (int M, int K, int N)[] Shapes =
    [
        (1, 1, 1), (1, 390, 32), (1, 624, 400), (5, 3, 15), (6, 4, 16), (7, 5, 17), (16, 625, 33), (13, 130, 100), (100, 77, 48),
    ];

    [Test]
    public void Int8_weights_keep_each_channel_within_half_a_step()
    {
        var (w, _) = RandomWeights(37, 53, seed: 1);
        for (int p = 0; p < 53; p++) w[5 * 53 + p] = 0f;   // an all-zero channel: scale 0, values 0
        for (int p = 0; p < 53; p++) w[7 * 53 + p] = p == 11 ? float.Epsilon : 0f; // max / 127 underflows: a zero channel
        var q = Int8Weights.Quantize(w, 37, 53);
        var back = q.Dequantize();
        for (int j = 0; j < 37; j++)
        {
            float s = q.Scales[j];
            var row = q.Values.Slice(j * 53, 53).ToArray();
            if (j is 5 or 7)
            {
                Assert.That(s, Is.EqualTo(0f));
                Assert.That(row, Is.All.EqualTo((sbyte)0));
                continue;
            }
            Assert.That(row.Max(x => Math.Abs((int)x)), Is.EqualTo(127), $"channel {j}: its largest weight maps to ±127");
            for (int p = 0; p < 53; p++)
                Assert.That(Math.Abs(back[j * 53 + p] - w[j * 53 + p]), Is.LessThanOrEqualTo(s / 2 * (1 + 1e-5) + 1e-45), $"[{j}, {p}]");
        }
        var again = Int8Weights.FromQuantized(q.Values, q.Scales, 37, 53);
        Assert.That(again.Dequantize(), Is.EqualTo(back));
    }

    [Test]
    public void Int8_weights_reject_bad_input()
    {
        Assert.Throws<ArgumentException>(() => Int8Weights.Quantize(new float[6], 2, 4));
        var ex = Assert.Throws<ArgumentException>(() => Int8Weights.Quantize([1f, float.NaN, 2f, 3f], 2, 2));
        Assert.That(ex!.Message, Does.Contain("[0, 1]"));
        ex = Assert.Throws<ArgumentException>(() => Int8Weights.FromQuantized([1, -128, 0, 0], [1f, 1f], 2, 2));
        Assert.That(ex!.Message, Does.Contain("[0, 1]").And.Contain("−128"));
        ex = Assert.Throws<ArgumentException>(() => Int8Weights.FromQuantized([1, 2, 0, 0], [1f, -1f], 2, 2));
        Assert.That(ex!.Message, Does.Contain("scale 1"));
    }

    [Test]
    public void Activation_rows_quantise_to_u8_with_zero_exact()
    {
        int k = 45;
        var a = new float[3 * k];
        var rng = new Random(3);
        for (int p = 0; p < k; p++) a[p] = (float)(rng.NextDouble() * 4 - 1);   // signed
        for (int p = 0; p < k; p++) a[k + p] = p % 3 == 0 ? 0f : (float)rng.NextDouble(); // ReLU-like
        // row 2 all zero
        int kp = Int8Gemm.PaddedK(k);
        var q = new byte[3 * kp];
        var s = new float[3];
        var z = new int[3];
        fixed (float* pa = a, ps = s)
        fixed (byte* pq = q)
        fixed (int* pz = z)
            Int8Gemm.QuantizeRows(pa, 3, k, k, pq, ps, pz);
        for (int i = 0; i < 3; i++)
            for (int p = 0; p < k; p++)
            {
                float x = a[i * k + p], back = s[i] * (q[i * kp + p] - z[i]);
                Assert.That(Math.Abs(back - x), Is.LessThanOrEqualTo(s[i] * 0.5001f), $"row {i}, {p}");
                if (x == 0f) Assert.That(back, Is.EqualTo(0f), $"row {i}, {p}: zero stays exact");
            }
        Assert.That(z[1], Is.EqualTo(0), "a non-negative row needs no zero point");
        Assert.That(q.AsSpan(kp - 3, 3).ToArray(), Is.All.EqualTo((byte)z[0]), "padding bytes are the zero point");

        a[k + 4] = float.NaN;
        fixed (float* pa = a, ps = s)
        fixed (byte* pq = q)
        fixed (int* pz = z)
        {
            float* pa2 = pa;
            byte* pq2 = pq;
            float* ps2 = ps;
            int* pz2 = pz;
            var ex = Assert.Throws<ArgumentException>(() => Int8Gemm.QuantizeRows(pa2, 3, k, k, pq2, ps2, pz2));
            Assert.That(ex!.Message, Does.Contain("row 1"));
        }
    }

    public static IEnumerable<TestCaseData> Int8Cases()
    {
        foreach (var (m, k, n) in Shapes)
        foreach (bool accumulate in new[] { false, true })
            yield return new TestCaseData(m, k, n, accumulate).SetName($"Int8Gemm_{m}x{k}x{n}_acc{accumulate}");
    }

    /// <summary>The product equals the exact integer formula on the same quantised operands, bit for bit, on the VNNI
    /// and portable paths and on 1–3 threads; and it stays within the quantisation bound of the float product.</summary>
    [TestCaseSource(nameof(Int8Cases))]
    public void Int8_product_is_the_exact_integer_formula_and_near_the_float_product(int m, int k, int n, bool accumulate)
    {
        var rng = new Random(m * 7919 + k * 31 + n);
        var a = new float[m * k];
        for (int i = 0; i < a.Length; i++) a[i] = (float)(rng.NextDouble() * 3 - 1);
        var (w, _) = RandomWeights(n, k, seed: m + k + n);
        var c0 = new float[m * n];
        for (int i = 0; i < c0.Length; i++) c0[i] = (float)(rng.NextDouble() - 0.5);
        var q = Int8Weights.Quantize(w, n, k);

        int kp = Int8Gemm.PaddedK(k);
        var aq = new byte[m * kp];
        var sa = new float[m];
        var za = new int[m];
        fixed (float* pa = a, ps = sa)
        fixed (byte* pq = aq)
        fixed (int* pz = za)
            Int8Gemm.QuantizeRows(pa, m, k, k, pq, ps, pz);
        var expected = (float[])c0.Clone();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                long dot = 0, colSum = 0;
                for (int p = 0; p < k; p++)
                {
                    dot += aq[i * kp + p] * q.Values[j * k + p];
                    colSum += q.Values[j * k + p];
                }
                float y = (float)(int)(dot - za[i] * colSum) * (sa[i] * q.Scales[j]);
                expected[i * n + j] = accumulate ? expected[i * n + j] + y : y;
            }

        long savedMin = Int8Gemm.ParallelMinMacs;
        int savedThreads = CpuParallel.ThreadCount;
        try
        {
            Int8Gemm.ParallelMinMacs = 1;
            foreach (bool portable in new[] { false, true })
            foreach (int threads in new[] { 1, 2, 3 })
            {
                Int8Gemm.ForcePortable = portable;
                CpuParallel.ThreadCount = threads;
                var c = (float[])c0.Clone();
                Int8Gemm.Multiply(a, m, q, c, accumulate);
                Assert.That(c, Is.EqualTo(expected), $"portable={portable}, threads={threads}");
            }
        }
        finally
        {
            Int8Gemm.ForcePortable = false;
            Int8Gemm.ParallelMinMacs = savedMin;
            CpuParallel.ThreadCount = savedThreads;
        }

        // Against the float product: |Δ| ≤ Σ_p (|Δa|·|w| + |a|·|Δw| + |Δa|·|Δw|) with |Δa| ≤ s_a/2, |Δw| ≤ s_w/2.
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double exact = accumulate ? c0[i * n + j] : 0, bound = 1e-5;
                for (int p = 0; p < k; p++)
                {
                    double x = a[i * k + p], y = w[j * k + p];
                    exact += x * y;
                    bound += sa[i] / 2 * Math.Abs(y) + Math.Abs(x) * q.Scales[j] / 2 + sa[i] * q.Scales[j] / 4;
                }
                Assert.That(Math.Abs(expected[i * n + j] - exact), Is.LessThanOrEqualTo(bound * 1.01), $"C[{i}, {j}]");
            }
    }

    [Test]
    public void Int8_and_bf16_products_allocate_nothing_in_steady_state([Values(1, 2)] int threads)
    {
        int saved = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = threads;
        try
        {
            foreach (var (m, k, n) in new[] { (1, 624, 400), (16, 624, 400), (256, 390, 208) })
            {
                var a = new float[m * k];
                var (w, wt) = RandomWeights(n, k, seed: 2);
                var q = Int8Weights.Quantize(w, n, k);
                var bf = new ushort[k * n];
                Bf16.FromFloat(wt, bf);
                var c = new float[m * n];
                for (int i = 0; i < 3; i++)
                {
                    Int8Gemm.Multiply(a, m, q, c, true);
                    Bf16Gemm.Multiply(m, n, k, a, bf, c, true);
                }
                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 0; i < 5; i++)
                {
                    Int8Gemm.Multiply(a, m, q, c, true);
                    Bf16Gemm.Multiply(m, n, k, a, bf, c, true);
                }
                Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.EqualTo(0), $"{m}x{k}x{n}, {threads} thread(s)");
            }
        }
        finally
        {
            CpuParallel.ThreadCount = saved;
        }
    }

    [Test]
    public void Bf16_rounds_to_nearest_even_and_widens_exactly()
    {
        Assert.That(Bf16.FromFloat(1f), Is.EqualTo((ushort)0x3F80));
        Assert.That(Bf16.ToFloat(0x3F80), Is.EqualTo(1f));
        // 1 + 2⁻⁸ lies exactly between 1 and 1 + 2⁻⁷: ties to even (1); just above rounds up.
        Assert.That(Bf16.ToFloat(Bf16.FromFloat(1f + MathF.Pow(2, -8))), Is.EqualTo(1f));
        Assert.That(Bf16.ToFloat(Bf16.FromFloat(1f + MathF.Pow(2, -8) + MathF.Pow(2, -20))), Is.EqualTo(1f + MathF.Pow(2, -7)));
        // 1 + 3·2⁻⁸ is a tie between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶ (even): up.
        Assert.That(Bf16.ToFloat(Bf16.FromFloat(1f + 3 * MathF.Pow(2, -8))), Is.EqualTo(1f + MathF.Pow(2, -6)));
        Assert.That(Bf16.ToFloat(Bf16.FromFloat(float.PositiveInfinity)), Is.EqualTo(float.PositiveInfinity));
        Assert.That(Bf16.ToFloat(Bf16.FromFloat(-0f)), Is.EqualTo(-0f));
        Assert.That(float.IsNaN(Bf16.ToFloat(Bf16.FromFloat(float.NaN))), Is.True);
        Assert.That(float.IsNaN(Bf16.ToFloat(Bf16.FromFloat(BitConverter.UInt32BitsToSingle(0x7F800001)))), Is.True, "a NaN with only low payload bits stays NaN");
        Assert.That(Bf16.ToFloat(Bf16.FromFloat(float.MaxValue)), Is.EqualTo(float.PositiveInfinity), "rounds past the largest bf16");

        var rng = new Random(5);
        foreach (int n in new[] { 0, 1, 7, 8, 15, 16, 17, 33, 100 })
        {
            var x = new float[n];
            for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 200 - 100);
            var b = new ushort[n];
            Bf16.FromFloat(x, b);
            var back = new float[n];
            Bf16.ToFloat(b, back);
            for (int i = 0; i < n; i++)
            {
                Assert.That(back[i], Is.EqualTo(Bf16.ToFloat(b[i])), "vector and scalar widening agree");
                Assert.That(Math.Abs(back[i] - x[i]), Is.LessThanOrEqualTo(Math.Abs(x[i]) * MathF.Pow(2, -8)), "half a bf16 step");
                Assert.That(Bf16.FromFloat(back[i]), Is.EqualTo(b[i]), "bf16 values round-trip");
            }
        }
    }

    public static IEnumerable<TestCaseData> Bf16Cases()
    {
        foreach (var (m, k, n) in Shapes.Concat([(17, 50, 40), (64, 130, 97)]))
        foreach (bool accumulate in new[] { false, true })
            yield return new TestCaseData(m, k, n, accumulate).SetName($"Bf16Gemm_{m}x{k}x{n}_acc{accumulate}");
    }

    /// <summary>A bf16 product is the float SGEMM of the widened matrix, bit for bit, on 1–3 threads.</summary>
    [TestCaseSource(nameof(Bf16Cases))]
    public void Bf16_product_equals_sgemm_on_the_widened_weights(int m, int k, int n, bool accumulate)
    {
        var rng = new Random(m + 17 * k + n);
        var a = new float[m * k];
        for (int i = 0; i < a.Length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        var (_, wt) = RandomWeights(n, k, seed: 9);
        var bf = new ushort[k * n];
        Bf16.FromFloat(wt, bf);
        var wide = new float[k * n];
        Bf16.ToFloat(bf, wide);
        var c0 = new float[m * n];
        for (int i = 0; i < c0.Length; i++) c0[i] = (float)rng.NextDouble();
        long savedMin = Bf16Gemm.ParallelMinMacs;
        int savedThreads = CpuParallel.ThreadCount;
        try
        {
            Bf16Gemm.ParallelMinMacs = 1;
            CpuParallel.ThreadCount = 1;
            var expected = (float[])c0.Clone();
            Sgemm.Multiply(false, false, m, n, k, 1f, a, wide, accumulate ? 1f : 0f, expected);
            foreach (int threads in new[] { 1, 2, 3 })
            {
                CpuParallel.ThreadCount = threads;
                var c = (float[])c0.Clone();
                Bf16Gemm.Multiply(m, n, k, a, bf, c, accumulate);
                Assert.That(c, Is.EqualTo(expected), $"threads={threads}");
            }
        }
        finally
        {
            Bf16Gemm.ParallelMinMacs = savedMin;
            CpuParallel.ThreadCount = savedThreads;
        }
    }

    /// <summary>W [n, k] with channels of different magnitudes, and its transpose [k, n].</summary>
    private static (float[] W, float[] WT) RandomWeights(int n, int k, int seed)
    {
        var rng = new Random(seed);
        var w = new float[n * k];
        var wt = new float[k * n];
        for (int j = 0; j < n; j++)
        {
            double magnitude = Math.Pow(10, rng.NextDouble() * 2 - 2);
            for (int p = 0; p < k; p++)
            {
                float v = (float)((rng.NextDouble() * 2 - 1) * magnitude);
                w[j * k + p] = v;
                wt[p * n + j] = v;
            }
        }
        return (w, wt);
    }
}
