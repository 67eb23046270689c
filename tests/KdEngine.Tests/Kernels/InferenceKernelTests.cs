using KdEngine.Kernels.Cpu;
using NUnit.Framework;

namespace KdEngine.Tests.Kernels;

/// <summary>The ranged inference kernels: any split of the rows gives the bits of one call over all rows, and each
/// matches a plain reference.</summary>
public unsafe class InferenceKernelTests
{
    private static readonly int[][] Splits = [[0, 7], [0, 3, 7], [0, 1, 2, 5, 7]];

    [Test]
    public void Gather_copies_or_widens_the_rows_whatever_the_split()
    {
        int fields = 5, d = 11, rows = 40, batch = 14;
        var rng = new Random(1);
        var table = new float[rows * d];
        for (int i = 0; i < table.Length; i++) table[i] = (float)(rng.NextDouble() - 0.5);
        var bf = new ushort[table.Length];
        Bf16.FromFloat(table, bf);
        var featureRows = new int[batch * fields];
        for (int i = 0; i < featureRows.Length; i++) featureRows[i] = rng.Next(rows);
        var expected = new float[batch * fields * d];
        var expectedBf = new float[expected.Length];
        for (int b = 0; b < batch; b++)
            for (int f = 0; f < fields; f++)
                for (int k = 0; k < d; k++)
                {
                    int r = featureRows[b * fields + f];
                    expected[(b * fields + f) * d + k] = table[r * d + k];
                    expectedBf[(b * fields + f) * d + k] = Bf16.ToFloat(bf[r * d + k]);
                }
        foreach (var cuts in Splits)
        {
            var x0 = new float[expected.Length];
            var x0b = new float[expected.Length];
            var scaled = cuts.Select(c => c * batch / 7).ToArray();
            for (int i = 0; i + 1 < scaled.Length; i++)
            {
                InferenceKernels.GatherRows(featureRows, fields, table, d, x0, scaled[i], scaled[i + 1]);
                InferenceKernels.GatherRows(featureRows, fields, bf, d, x0b, scaled[i], scaled[i + 1]);
            }
            Assert.That(x0, Is.EqualTo(expected));
            Assert.That(x0b, Is.EqualTo(expectedBf));
        }
    }

    [Test]
    public void Cin_passes_over_row_ranges_match_one_pass()
    {
        int fields = 7, d = 5, n = 6, inMaps = 9, rows = n * d, prevStride = 12, maps = 10;
        var rng = new Random(2);
        float R() => (float)(rng.NextDouble() * 2 - 1);
        var x0 = Enumerable.Range(0, (n + 2) * fields * d).Select(_ => R()).ToArray();
        var prev = Enumerable.Range(0, rows * prevStride).Select(_ => R()).ToArray();
        var y = Enumerable.Range(0, rows * maps).Select(_ => R()).ToArray();

        var x0tAll = new float[rows * fields];
        InferenceKernels.CinTransposeX0(x0, 2, fields, d, x0tAll, 0, n);
        for (int t = 0; t < n; t++)
            for (int j = 0; j < fields; j++)
                for (int k = 0; k < d; k++)
                    Assert.That(x0tAll[(t * d + k) * fields + j], Is.EqualTo(x0[((2 + t) * fields + j) * d + k]));

        var zAll = new float[rows * inMaps * fields];
        InferenceKernels.CinOuterRows(x0tAll, fields, prev, prevStride, inMaps, zAll, 0, rows);
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < inMaps; i++)
                for (int j = 0; j < fields; j++)
                    Assert.That(zAll[r * inMaps * fields + i * fields + j], Is.EqualTo(prev[r * prevStride + i] * x0tAll[r * fields + j]));

        var pooledAll = new float[n * 13];
        InferenceKernels.CinPool(y, maps, d, 4, 6, pooledAll, 13, 3, 0, n);
        for (int t = 0; t < n; t++)
            for (int c = 0; c < 6; c++)
            {
                float s = 0;
                for (int k = 0; k < d; k++) s += y[(t * d + k) * maps + 4 + c];
                Assert.That(pooledAll[t * 13 + 3 + c], Is.EqualTo(s).Within(1e-5));
            }

        foreach (var cuts in Splits)
        {
            var x0t = new float[x0tAll.Length];
            var z = new float[zAll.Length];
            var pooled = new float[pooledAll.Length];
            var s = cuts.Select(c => c * n / 7).ToArray();
            for (int i = 0; i + 1 < s.Length; i++)
            {
                InferenceKernels.CinTransposeX0(x0, 2, fields, d, x0t, s[i], s[i + 1]);
                InferenceKernels.CinOuterRows(x0tAll, fields, prev, prevStride, inMaps, z, s[i] * d, s[i + 1] * d);
                InferenceKernels.CinPool(y, maps, d, 4, 6, pooled, 13, 3, s[i], s[i + 1]);
            }
            Assert.That(x0t, Is.EqualTo(x0tAll));
            Assert.That(z, Is.EqualTo(zAll));
            Assert.That(pooled, Is.EqualTo(pooledAll));
        }
    }

    [Test]
    public void Quantised_cin_tile_equals_quantising_the_float_tile()
    {
        // F = 39 (two full vectors and a tail) and F = 5 (tail only); rows with zeros and all-negative maps.
        foreach (int fields in new[] { 39, 5 })
        {
            int rows = 21, inMaps = 7, prevStride = 8, channels = inMaps * fields, kp = Int8Gemm.PaddedK(channels);
            var rng = new Random(fields);
            var x0t = Enumerable.Range(0, rows * fields).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            var prev = Enumerable.Range(0, rows * prevStride).Select(_ => (float)(rng.NextDouble() * 3 - 1)).ToArray();
            for (int i = 0; i < inMaps; i++) prev[3 * prevStride + i] = -(float)rng.NextDouble();
            for (int i = 0; i < inMaps; i++) prev[4 * prevStride + i] = 0f;
            var z = new float[rows * channels];
            InferenceKernels.CinOuterRows(x0t, fields, prev, prevStride, inMaps, z, 0, rows);
            var expected = new byte[rows * kp];
            var expectedScale = new float[rows];
            var expectedZero = new int[rows];
            fixed (float* pz = z, ps = expectedScale)
            fixed (byte* pq = expected)
            fixed (int* pzp = expectedZero)
                Int8Gemm.QuantizeRows(pz, rows, channels, channels, pq, ps, pzp);
            var actual = new byte[rows * kp];
            var scale = new float[rows];
            var zero = new int[rows];
            fixed (byte* pq = actual)
            fixed (float* ps = scale)
            fixed (int* pzp = zero)
                foreach (var (r0, r1) in new[] { (0, 5), (5, 6), (6, rows) })
                    InferenceKernels.CinOuterRowsQuantized(x0t, fields, prev, prevStride, inMaps, pq, ps, pzp, r0, r1);
            Assert.That(scale, Is.EqualTo(expectedScale), $"F = {fields}: scales");
            Assert.That(zero, Is.EqualTo(expectedZero), $"F = {fields}: zero points");
            Assert.That(actual, Is.EqualTo(expected), $"F = {fields}: bytes");
        }
    }

    [Test]
    public void Row_dots_and_bias_rows_over_ranges_match_one_pass()
    {
        int width = 19, batch = 11;
        var rng = new Random(4);
        var x = Enumerable.Range(0, batch * width).Select(_ => (float)rng.NextDouble()).ToArray();
        var w = Enumerable.Range(0, width).Select(_ => (float)rng.NextDouble()).ToArray();
        var all = Enumerable.Range(0, batch).Select(i => (float)i).ToArray();
        InferenceKernels.AddRowDots(x, w, all, 0, batch);
        var filledAll = new float[batch * width];
        InferenceKernels.FillRows(filledAll, width, w, 0, batch);
        foreach (var cuts in Splits)
        {
            var logit = Enumerable.Range(0, batch).Select(i => (float)i).ToArray();
            var filled = new float[batch * width];
            var s = cuts.Select(c => c * batch / 7).ToArray();
            for (int i = 0; i + 1 < s.Length; i++)
            {
                InferenceKernels.AddRowDots(x, w, logit, s[i], s[i + 1]);
                InferenceKernels.FillRows(filled, width, w, s[i], s[i + 1]);
            }
            Assert.That(logit, Is.EqualTo(all));
            Assert.That(filled, Is.EqualTo(filledAll));
        }
        for (int b = 0; b < batch; b++)
            Assert.That(all[b], Is.EqualTo(b + x.Skip(b * width).Take(width).Zip(w, (p, q) => (double)p * q).Sum()).Within(1e-4));
    }

    private sealed class ThreadRecorder(int count) : IParallelWork
    {
        public readonly int[] Thread = new int[count];
        public readonly int[] Hits = new int[count];
        public int ThrowAt = -1;
        public void Execute(int index)
        {
            Hits[index]++;
            Thread[index] = Environment.CurrentManagedThreadId;
            System.Threading.Thread.SpinWait(2000);
            if (index == ThrowAt) throw new InvalidOperationException($"item {index}");
        }
    }

    [Test]
    public void Pinned_loops_run_each_item_once_on_the_same_thread_every_call()
    {
        int saved = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = 2;
        try
        {
            int[]? first = null;
            for (int call = 0; call < 30; call++)
            {
                var work = new ThreadRecorder(5);
                CpuParallel.ForPinned(5, work);
                Assert.That(work.Hits, Is.All.EqualTo(1));
                Assert.That(work.Thread[0], Is.EqualTo(Environment.CurrentManagedThreadId), "item 0 runs on the caller");
                Assert.That(work.Thread[2], Is.EqualTo(work.Thread[0]), "items 0, 2, 4 share the caller");
                Assert.That(work.Thread[3], Is.EqualTo(work.Thread[1]), "items 1, 3 share the worker");
                first ??= work.Thread;
                Assert.That(work.Thread, Is.EqualTo(first), $"call {call}: the same threads as the first call");
            }
            Assert.That(first![1], Is.Not.EqualTo(first[0]), "two threads took part");
            var failing = new ThreadRecorder(4) { ThrowAt = 3 };
            Assert.That(Assert.Throws<InvalidOperationException>(() => CpuParallel.ForPinned(4, failing))!.Message, Is.EqualTo("item 3"));
            Assert.That(failing.Hits, Is.All.EqualTo(1), "the loop drains even when an item fails");
        }
        finally
        {
            CpuParallel.ThreadCount = saved;
        }
    }

    [Test]
    public void Static_ranges_cover_every_unit_once_on_aligned_boundaries()
    {
        foreach (int total in new[] { 0, 1, 15, 16, 17, 100, 1024 })
        foreach (int parts in new[] { 1, 2, 3, 7 })
        foreach (int align in new[] { 1, 4, 16 })
        {
            int next = 0;
            for (int i = 0; i < parts; i++)
            {
                var (s, e) = CpuParallel.Range(total, parts, i, align);
                Assert.That(s, Is.EqualTo(next), $"{total}/{parts}/{align}: part {i} starts where the last ended");
                Assert.That(s % align == 0 || s == total, Is.True);
                Assert.That(e, Is.GreaterThanOrEqualTo(s));
                next = e;
            }
            Assert.That(next, Is.EqualTo(total));
        }
    }
}
