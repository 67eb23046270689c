using KdEngine.Kernels.Cpu;
using NUnit.Framework;

namespace KdEngine.Tests.Kernels;

public class SgemmTests
{
    // (m, k, n): op(A) [m,k] · op(B) [k,n]. Odd sizes hit every edge: rows < 6, columns < 16 / == 16 / 16..32,
    // k > 400 (several K blocks), the m ≤ 16 direct path and the large path with A and B read in place or
    // packed: n % 16 == 0 reads a row-major B in place; a 2 KiB stride (k = 512 row-major, m = 512
    // transposed) packs A; 600 × 48 has a ragged 12-row tile; 40 rows end in a 4-row tile.
    private static readonly (int M, int K, int N)[] Shapes =
    [
        (1, 1, 1), (1, 624, 400), (1, 33, 7), (2, 5, 40), (7, 17, 33), (16, 400, 400), (17, 300, 48),
        (33, 65, 31), (40, 30, 16), (129, 257, 97), (64, 600, 37), (100, 512, 48), (512, 40, 64), (43, 520, 80),
        (40, 400, 400), (20, 300, 1000), // in-place A over balanced column blocks (7 + 6 and 3 × 11 panels)
        (13, 70, 72), (12, 33, 64), // small path: a 12-row tile, then a 1-row one / the 12-row tile alone
    ];

    private static readonly (float Alpha, float Beta)[] Scalars = [(1f, 0f), (1f, 1f), (0.5f, -0.75f)];

    public static IEnumerable<TestCaseData> Cases()
    {
        foreach (var (m, k, n) in Shapes)
        foreach (bool ta in new[] { false, true })
        foreach (bool tb in new[] { false, true })
        foreach (var (alpha, beta) in Scalars)
            yield return new TestCaseData(m, k, n, ta, tb, alpha, beta)
                .SetName($"Sgemm_{m}x{k}x{n}_tA{ta}_tB{tb}_a{alpha}_b{beta}");
    }

    [TestCaseSource(nameof(Cases))]
    public void Matches_double_oracle(int m, int k, int n, bool ta, bool tb, float alpha, float beta)
        => CheckAgainstOracle(m, k, n, ta, tb, alpha, beta, seed: m * 1000 + k * 10 + n);

    [TestCase(1, TestName = "Narrower_isa_Vector256_matches_the_oracle")]
    [TestCase(0, TestName = "Narrower_isa_Scalar_matches_the_oracle")]
    public void Narrower_instruction_sets_match_the_oracle(int isa)
    {
        Sgemm.ForcedIsa = (SgemmIsa)isa;
        try
        {
            foreach (var (m, k, n) in Shapes)
            foreach (bool ta in new[] { false, true })
            foreach (bool tb in new[] { false, true })
                CheckAgainstOracle(m, k, n, ta, tb, 0.5f, m % 2 == 0 ? 0f : 1f, seed: m + k + n);
        }
        finally
        {
            Sgemm.ForcedIsa = null;
        }
    }

    [Test]
    public void Large_1024x624x400_matches_oracle()
    {
        CheckAgainstOracle(1024, 624, 400, false, false, 1f, 0f, seed: 7);
        CheckAgainstOracle(1024, 624, 400, false, true, 1f, 1f, seed: 8);
    }

    [Test]
    public void One_thread_is_bit_identical_run_to_run_and_matches_two_threads_bit_for_bit()
    {
        // 300×200×150 splits rows between threads; 18×300×1000 has too few row tiles and splits B panels.
        foreach (var (m, k, n) in new[] { (300, 200, 150), (18, 300, 1000), (1024, 624, 400) })
        {
            var (a, b, _) = Random(m, k, n, seed: 3);
            float[] one = Run(1, m, k, n, a, b), again = Run(1, m, k, n, a, b), two = Run(2, m, k, n, a, b);
            Assert.That(again, Is.EqualTo(one), $"{m}x{k}x{n}: one thread, two runs");
            Assert.That(two, Is.EqualTo(one), $"{m}x{k}x{n}: one vs two threads");
        }
    }

    [Test]
    public void Small_products_split_by_columns_match_one_thread_bit_for_bit()
    {
        // m ≤ 16 with enough work splits C's columns in whole 32-column panels: batch-1 and batch-16 layers, the CIN's
        // batch-1 product (16 × 3900 · 3900 × 208), a ragged right edge, B transposed, and a product below the work
        // threshold (lowered here so that 3 × 17 · 17 × 70 also splits).
        long savedMin = Sgemm.SmallParallelMinMacs;
        try
        {
            foreach (var (m, k, n, tb, lowered) in new[] { (1, 624, 400, false, false), (16, 624, 400, false, false), (16, 390, 208, false, false),
                         (13, 500, 301, false, false), (7, 300, 250, true, false), (3, 17, 70, false, true), (1, 33, 100, false, true) })
            {
                Sgemm.SmallParallelMinMacs = lowered ? 1 : savedMin;
                var (a, b, _) = Random(m, k, n, seed: 17);
                float[] one = Run(1, m, k, n, a, b, tb);
                foreach (int threads in new[] { 2, 3, 5 })
                {
                    float[] split = Run(threads, m, k, n, a, b, tb);
                    Assert.That(split, Is.EqualTo(one), $"{m}x{k}x{n} tB={tb}: one vs {threads} threads");
                }
                CheckAgainstOracle(m, k, n, false, tb, 1f, 1f, seed: 4);
            }
        }
        finally
        {
            Sgemm.SmallParallelMinMacs = savedMin;
        }
    }

    [Test]
    public void Threads_that_pack_their_own_B_panels_match_one_thread_bit_for_bit()
    {
        // B transposed is packed: with several threads each owns a range of panels over all rows and packs only
        // those (1024×624×400: 13 panels as 7 + 6; 40×400×1000: 32 panels, each thread's range in blocks of ≤ 10;
        // three threads split 32 unevenly).
        foreach (var (m, k, n) in new[] { (1024, 624, 400), (40, 400, 1000), (128, 624, 400) })
        {
            var (a, b, _) = Random(m, k, n, seed: 5);
            float[] one = Run(1, m, k, n, a, b, transposeB: true);
            foreach (int threads in new[] { 2, 3 })
                Assert.That(Run(threads, m, k, n, a, b, transposeB: true), Is.EqualTo(one), $"{m}x{k}x{n}ᵀ: one vs {threads} threads");
        }
    }

    [Test]
    public void Reading_A_and_B_in_place_is_bit_identical_to_packing_them()
    {
        // Both paths run each element's FMA chain over the same K slices; only where A and B are read differs.
        foreach (var (m, k, n, ta, tb) in new[] { (300, 624, 400, false, false), (129, 257, 96, true, false), (64, 300, 97, false, true) })
        {
            var (a, b, c0) = Random(m, k, n, seed: 11);
            var inPlace = (float[])c0.Clone();
            var packed = (float[])c0.Clone();
            Sgemm.Multiply(ta, tb, m, n, k, 0.5f, a, b, 1f, inPlace);
            Sgemm.ForcePacking = true;
            try
            {
                Sgemm.Multiply(ta, tb, m, n, k, 0.5f, a, b, 1f, packed);
            }
            finally
            {
                Sgemm.ForcePacking = false;
            }
            Assert.That(inPlace, Is.EqualTo(packed), $"{m}x{k}x{n} tA={ta} tB={tb}");
        }
    }

    [Test]
    public void A_row_gets_the_same_bits_whichever_small_tile_computes_it()
    {
        // m ≤ 16 runs rows through 12-row, 6-row or one-row kernels; each element is one FMA chain over k either way.
        foreach (var (m, k, n) in new[] { (16, 624, 400), (13, 70, 72), (12, 33, 64), (7, 17, 48) })
        {
            var (a, b, _) = Random(m, k, n, seed: 21);
            var all = new float[m * n];
            Sgemm.Multiply(false, false, m, n, k, 1f, a, b, 0f, all);
            for (int i = 0; i < m; i++)
            {
                var row = new float[n];
                Sgemm.Multiply(false, false, 1, n, k, 1f, a.AsSpan(i * k, k), b, 0f, row);
                Assert.That(all.AsSpan(i * n, n).ToArray(), Is.EqualTo(row), $"{m}x{k}x{n}: row {i}");
            }
        }
    }

    [Test]
    public void Storing_or_adding_tiles_directly_is_bit_identical_to_the_general_merge()
    {
        // alpha = 1 with beta = 0 (store) or beta = 1 (add, and every K slice after the first) lets a full 12-row
        // tile write C straight from its registers; the general path merges a scratch tile with fma(acc, 1, C).
        foreach (var (m, k, n, beta) in new[] { (300, 624, 400, 0f), (300, 624, 400, 1f), (129, 257, 97, 1f), (40, 30, 16, 0f) })
        {
            var (a, b, c0) = Random(m, k, n, seed: 12);
            var direct = (float[])c0.Clone();
            var general = (float[])c0.Clone();
            Sgemm.Multiply(false, false, m, n, k, 1f, a, b, beta, direct);
            Sgemm.ForceScratchMerge = true;
            try
            {
                Sgemm.Multiply(false, false, m, n, k, 1f, a, b, beta, general);
            }
            finally
            {
                Sgemm.ForceScratchMerge = false;
            }
            Assert.That(direct, Is.EqualTo(general), $"{m}x{k}x{n} beta={beta}");
        }
    }

    [Test]
    public void Steady_state_calls_allocate_nothing([Values(1, 2)] int threads)
    {
        int saved = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = threads;
        try
        {
            foreach (var (m, k, n, tb) in new[] { (16, 400, 400, true), (1, 624, 400, false), (16, 624, 400, false), (256, 624, 400, false), (200, 300, 100, true) })
            {
                var (a, b, c) = Random(m, k, n, seed: 1);
                // Steady state: past tiered compilation's call-count threshold (30), so a promotion to tier 1 cannot land
                // inside the measured calls (seen once, on a loaded machine, as a few KB on the calling thread).
                for (int i = 0; i < 40; i++) Sgemm.Multiply(false, tb, m, n, k, 1f, a, b, 0f, c);
                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 0; i < 5; i++) Sgemm.Multiply(false, tb, m, n, k, 1f, a, b, 0f, c);
                long delta = GC.GetAllocatedBytesForCurrentThread() - before;
                Assert.That(delta, Is.EqualTo(0), $"{m}x{k}x{n} on {threads} thread(s) allocated {delta} bytes");
            }
        }
        finally
        {
            CpuParallel.ThreadCount = saved;
        }
    }

    [Test]
    public void Concurrent_callers_get_correct_results()
    {
        var (a, b, _) = Random(200, 300, 150, seed: 5);
        float[] expected = Run(1, 200, 300, 150, a, b);
        var results = new float[4][];
        var threads = new Thread[4];
        for (int t = 0; t < threads.Length; t++)
        {
            int id = t;
            threads[t] = new Thread(() =>
            {
                var c = new float[200 * 150];
                for (int r = 0; r < 20; r++) Sgemm.Multiply(false, false, 200, 150, 300, 1f, a, b, 0f, c);
                results[id] = c;
            });
            threads[t].Start();
        }
        foreach (var t in threads) t.Join();
        foreach (var r in results) Assert.That(r, Is.EqualTo(expected));
    }

    [Test]
    public void Zero_k_or_alpha_scales_C_and_empty_shapes_are_no_ops()
    {
        var c = new[] { 1f, float.NaN, 3f, 4f };
        Sgemm.Multiply(false, false, 2, 2, 0, 1f, [], [], 0f, c);
        Assert.That(c, Is.EqualTo(new[] { 0f, 0f, 0f, 0f }));
        c = [1f, 2f, 3f, 4f];
        Sgemm.Multiply(false, false, 2, 2, 1, 0f, [float.NaN, 1f], [1f, 1f], 2f, c);
        Assert.That(c, Is.EqualTo(new[] { 2f, 4f, 6f, 8f }));
        Sgemm.Multiply(false, false, 0, 5, 3, 1f, [], new float[15], 0f, []);
    }

    [Test]
    public void Too_small_buffers_throw_naming_the_shapes()
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            Sgemm.Multiply(false, true, 4, 5, 6, 1f, new float[24], new float[29], 0f, new float[20]));
        Assert.That(ex!.Message, Does.Contain("m=4, n=5, k=6").And.Contain("B has 29 (needs 30)"));
        Assert.Throws<ArgumentException>(() => Sgemm.Multiply(false, false, -1, 1, 1, 1f, [], [], 0f, []));
    }

    [Test]
    public void ThreadCount_rejects_values_below_one()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuParallel.ThreadCount = 0);
        Assert.That(CpuParallel.ThreadCount, Is.GreaterThanOrEqualTo(1));
    }

    private sealed class Recorder(int count) : IParallelWork
    {
        public readonly int[] Hits = new int[count];
        public int ThrowAt = -1;
        public void Execute(int index)
        {
            Interlocked.Increment(ref Hits[index]);
            if (index == ThrowAt) throw new InvalidOperationException($"item {index}");
            if (index == 0) CpuParallel.For(3, new Nested()); // nested loops run inline instead of deadlocking
        }
    }

    private sealed class Nested : IParallelWork
    {
        public void Execute(int index) { }
    }

    [Test]
    public void ParallelFor_runs_each_index_once_and_rethrows_item_failures()
    {
        int saved = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = 2;
        try
        {
            for (int round = 0; round < 50; round++)
            {
                var work = new Recorder(37);
                CpuParallel.For(37, work);
                Assert.That(work.Hits, Is.All.EqualTo(1));
            }
            var failing = new Recorder(8) { ThrowAt = 5 };
            var ex = Assert.Throws<InvalidOperationException>(() => CpuParallel.For(8, failing));
            Assert.That(ex!.Message, Is.EqualTo("item 5"));
            Assert.That(failing.Hits, Is.All.EqualTo(1), "the loop drains even when an item fails");
        }
        finally
        {
            CpuParallel.ThreadCount = saved;
        }
    }

    private static float[] Run(int threads, int m, int k, int n, float[] a, float[] b, bool transposeB = false)
    {
        int saved = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = threads;
        try
        {
            var c = new float[m * n];
            Sgemm.Multiply(false, transposeB, m, n, k, 1f, a, b, 0f, c);
            return c;
        }
        finally
        {
            CpuParallel.ThreadCount = saved;
        }
    }

    private static (float[] A, float[] B, float[] C) Random(int m, int k, int n, int seed)
    {
        var rng = new Random(seed);
        float[] Fill(int len)
        {
            var x = new float[len];
            for (int i = 0; i < len; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
            return x;
        }
        return (Fill(m * k), Fill(k * n), Fill(m * n));
    }

    private static void CheckAgainstOracle(int m, int k, int n, bool ta, bool tb, float alpha, float beta, int seed)
    {
        var (a, b, c0) = Random(m, k, n, seed);
        var c = (float[])c0.Clone();
        if (beta == 0f) Array.Fill(c, float.NaN); // beta == 0 must ignore C's old contents, NaN included
        Sgemm.Multiply(ta, tb, m, n, k, alpha, a, b, beta, c);

        // Oracle: the same product accumulated in double (Gemm<double>.Reference), plus Σ|a·b| for the bound.
        double[] ad = Array.ConvertAll(a, x => (double)x), bd = Array.ConvertAll(b, x => (double)x);
        double[] aAbs = Array.ConvertAll(ad, Math.Abs), bAbs = Array.ConvertAll(bd, Math.Abs);
        var expected = Array.ConvertAll(c0, x => (double)x);
        var bound = new double[m * n];
        Gemm<double>.Reference(ta, tb, m, n, k, alpha, ad, bd, beta, expected);
        Gemm<double>.Reference(ta, tb, m, n, k, 1.0, aAbs, bAbs, 0.0, bound);
        for (int i = 0; i < m * n; i++)
        {
            // Float32 summation error is ≤ k·eps·Σ|a·b|; allow 1e-6·k (≈ 17× that) plus the beta·C rounding.
            double tol = 1e-6 * k * Math.Abs(alpha) * bound[i] + 1e-6 * Math.Abs(beta * c0[i]) + 1e-30;
            if (!(Math.Abs(c[i] - expected[i]) <= tol))
                Assert.Fail($"{m}x{k}x{n} tA={ta} tB={tb} alpha={alpha} beta={beta}: C[{i / n},{i % n}] = {c[i]}, " +
                            $"expected {expected[i]} ± {tol}");
        }
    }
}
