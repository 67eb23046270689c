using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// bfloat16: the upper 16 bits of an IEEE binary32 (sign, the same 8 exponent bits, 7 mantissa bits), stored as
/// <see cref="ushort"/>. Widening to float is exact (a 16-bit shift); narrowing rounds to nearest, ties to even.
/// .NET 10 exposes no AVX512-BF16 instructions (no VDPBF16PS), so bf16 data is widened to float with shifts and
/// multiplied in float32: the gain is bytes (half of float32's), not arithmetic.
/// </summary>
public static unsafe class Bf16
{
    /// <summary>Nearest bfloat16 (ties to even); NaN stays a quiet NaN, ±∞ stays ±∞.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromFloat(float x)
    {
        uint bits = BitConverter.SingleToUInt32Bits(x);
        if (float.IsNaN(x)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + rounding) >> 16);
    }

    /// <summary>The float whose upper 16 bits are <paramref name="b"/> (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToFloat(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    /// <summary>Rounds every element (see <see cref="FromFloat(float)"/>).</summary>
    public static void FromFloat(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        if (destination.Length < source.Length)
            throw new ArgumentException($"Bf16.FromFloat: destination has {destination.Length} elements, source {source.Length}.");
        for (int i = 0; i < source.Length; i++) destination[i] = FromFloat(source[i]);
    }

    /// <summary>Widens every element (exact).</summary>
    public static void ToFloat(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        if (destination.Length < source.Length)
            throw new ArgumentException($"Bf16.ToFloat: destination has {destination.Length} elements, source {source.Length}.");
        fixed (ushort* s = source)
        fixed (float* d = destination)
            Widen(s, d, source.Length);
    }

    /// <summary>d[i] = widen(s[i]) for i &lt; n: 16 at a time (zero-extend 16 → 32 bits, shift left 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Widen(ushort* s, float* d, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported)
            for (; i <= n - 16; i += 16) Widen16(s + i).Store(d + i);
        if (Avx2.IsSupported)
            for (; i <= n - 8; i += 8) Widen8(s + i).Store(d + i);
        for (; i < n; i++) d[i] = ToFloat(s[i]);
    }

    /// <summary>16 bf16 values (32 bytes) → 16 floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Widen16(ushort* s) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load(s)), 16).AsSingle();

    /// <summary>8 bf16 values (16 bytes) → 8 floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Widen8(ushort* s) =>
        Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Vector128.Load(s)), 16).AsSingle();
}

/// <summary>
/// C[m, n] (+)= A[m, k] · B[k, n] with A float32 and B bfloat16, row-major, B widened to float32 as it is read.
/// Small products (m ≤ 16, the batch-1/16 case, where reading B is the cost) widen B on the fly inside the register
/// tile — each element is one FMA chain over k in ascending order from zero, then added to C (or stored), exactly as
/// <see cref="Sgemm"/>'s small path computes it from the widened matrix — and split their columns among threads in
/// whole 32-column panels. Larger products widen all of B once per call into a per-thread buffer and run
/// <see cref="Sgemm"/> on it (the widening is k·n work against the product's m·k·n).
/// </summary>
public static unsafe class Bf16Gemm
{
    private const int PanelWidth = 32;
    /// <summary>Small products at or above this many multiply-adds split their columns among threads.</summary>
    internal static long ParallelMinMacs { get; set; } = 1 << 17;

    /// <summary>C[m, n] = (accumulate ? C : 0) + A[m, k] · widen(B[k, n]); every array row-major and dense.</summary>
    public static void Multiply(int m, int n, int k, ReadOnlySpan<float> a, ReadOnlySpan<ushort> b, Span<float> c, bool accumulate)
    {
        if (m < 0 || n < 0 || k < 0 || (long)m * k > a.Length || (long)k * n > b.Length || (long)m * n > c.Length)
            throw new ArgumentException($"Bf16Gemm: buffers too small for m = {m}, n = {n}, k = {k} (A {a.Length}, B {b.Length}, C {c.Length}).");
        if (m == 0 || n == 0) return;
        if (m > Sgemm.SmallM || !(Vector512.IsHardwareAccelerated && Avx512F.IsSupported))
        {
            var wide = Job.Current.Widened((long)k * n);
            fixed (ushort* pb = b) Bf16.Widen(pb, wide, k * n);
            Sgemm.Multiply(false, false, m, n, k, 1f, a, new ReadOnlySpan<float>(wide, k * n), accumulate ? 1f : 0f, c);
            return;
        }
        fixed (float* pa = a, pc = c)
        fixed (ushort* pb = b)
        {
            int panels = (n + PanelWidth - 1) / PanelWidth;
            int chunks = (long)m * n * k >= ParallelMinMacs ? Math.Min(Math.Min(CpuParallel.ThreadCount, 64), panels) : 1;
            // The ragged right edge (n not a multiple of 32) is copied once, here on the calling thread, into a zero-padded
            // [k, 32] panel so its loads stay in bounds; whichever thread computes the last columns reads it. (A copy into
            // the executing thread's buffer would allocate on the first thread that happens to draw that chunk — with
            // work stealing, possibly in the middle of a steady state.)
            ushort* edge = n % PanelWidth != 0 ? PackEdge(k, n, pb) : null;
            if (chunks <= 1)
            {
                SmallColumns(m, n, k, pa, pb, edge, pc, accumulate, 0, n);
                return;
            }
            var job = Job.Current;
            job.Set(m, n, k, pa, pb, edge, pc, accumulate, chunks);
            CpuParallel.For(chunks, job);
            job.Clear();
        }
    }

    /// <summary>Columns [j0, j1) of a small product: 6-row × 32-column tiles with B widened in registers.</summary>
    /// <summary>B's last n mod 32 columns as a zero-padded [k, 32] panel in the calling thread's buffer.</summary>
    private static ushort* PackEdge(int k, int n, ushort* b)
    {
        int j = n - n % PanelWidth, cols = n - j;
        ushort* edge = Job.Current.Edge((long)k * PanelWidth);
        for (int p = 0; p < k; p++)
        {
            ushort* src = b + (nint)p * n + j, dst = edge + (nint)p * PanelWidth;
            for (int q = 0; q < cols; q++) dst[q] = src[q];
            for (int q = cols; q < PanelWidth; q++) dst[q] = 0;
        }
        return edge;
    }

    /// <summary>Columns [j0, j1) of a small product: 6-row × 32-column tiles with B widened in registers;
    /// <paramref name="edge"/> is B's ragged last panel from <see cref="PackEdge"/> (null when n is a multiple of 32).</summary>
    private static void SmallColumns(int m, int n, int k, float* a, ushort* b, ushort* edge, float* c, bool accumulate, int j0, int j1)
    {
        float* tile = stackalloc float[6 * PanelWidth];
        int jStart = j0;
        if (m == 1)
        {
            // One row: two panels per pass (4 independent FMA chains cover the FMA latency; B streams front to back).
            for (; jStart + 2 * PanelWidth <= j1; jStart += 2 * PanelWidth)
                Row1x4(k, a, b + jStart, n, c + jStart, accumulate);
        }
        for (int j = jStart; j < j1; j += PanelWidth)
        {
            int cols = Math.Min(PanelWidth, j1 - j);
            ushort* bp = b + j;
            nint ldb = n;
            if (cols < PanelWidth)
            {
                bp = edge; // the ragged right edge, packed by the caller
                ldb = PanelWidth;
            }
            for (int i = 0; i < m; i += 6)
            {
                int rows = Math.Min(6, m - i);
                Tile6x2(k, a + (nint)i * k, k, rows, bp, ldb, tile);
                for (int r = 0; r < rows; r++)
                {
                    float* dst = c + (nint)(i + r) * n + j;
                    float* src = tile + r * PanelWidth;
                    for (int q = 0; q < cols; q++) dst[q] = accumulate ? src[q] + dst[q] : src[q];
                }
            }
        }
    }

    /// <summary>C[0, 0..64) (+)= Σ_p A[0, p] · widen(B[p, 0..64)), one FMA chain per element from zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Row1x4(int k, float* a, ushort* b, nint ldb, float* c, bool accumulate)
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
        ushort* bp = b;
        for (int p = 0; p < k; p++, bp += ldb)
        {
            var x = Vector512.Create(a[p]);
            c0 = Vector512.FusedMultiplyAdd(x, Bf16.Widen16(bp), c0);
            c1 = Vector512.FusedMultiplyAdd(x, Bf16.Widen16(bp + 16), c1);
            c2 = Vector512.FusedMultiplyAdd(x, Bf16.Widen16(bp + 32), c2);
            c3 = Vector512.FusedMultiplyAdd(x, Bf16.Widen16(bp + 48), c3);
        }
        if (accumulate)
        {
            c0 += Vector512.Load(c); c1 += Vector512.Load(c + 16); c2 += Vector512.Load(c + 32); c3 += Vector512.Load(c + 48);
        }
        c0.Store(c); c1.Store(c + 16); c2.Store(c + 32); c3.Store(c + 48);
    }

    /// <summary>
    /// acc[r, 0..32) = Σ_p A[r, p] · widen(B[p, 0..32)) for r &lt; 6 (rows past <paramref name="rows"/> reuse the last
    /// valid row), one FMA chain per element in ascending p from zero.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile6x2(int k, float* a, nint lda, int rows, ushort* b, nint ldb, float* acc)
    {
        float* a0 = a, a1 = a + Math.Min(1, rows - 1) * lda, a2 = a + Math.Min(2, rows - 1) * lda;
        float* a3 = a + Math.Min(3, rows - 1) * lda, a4 = a + Math.Min(4, rows - 1) * lda, a5 = a + Math.Min(5, rows - 1) * lda;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        ushort* bp = b;
        for (int p = 0; p < k; p++, bp += ldb)
        {
            var b0 = Bf16.Widen16(bp);
            var b1 = Bf16.Widen16(bp + 16);
            var x = Vector512.Create(a0[p]); c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a1[p]); c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a2[p]); c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a3[p]); c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a4[p]); c40 = Vector512.FusedMultiplyAdd(x, b0, c40); c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a5[p]); c50 = Vector512.FusedMultiplyAdd(x, b0, c50); c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
        }
        c00.Store(acc); c01.Store(acc + 16);
        c10.Store(acc + 32); c11.Store(acc + 48);
        c20.Store(acc + 64); c21.Store(acc + 80);
        c30.Store(acc + 96); c31.Store(acc + 112);
        c40.Store(acc + 128); c41.Store(acc + 144);
        c50.Store(acc + 160); c51.Store(acc + 176);
    }

    /// <summary>Per-calling-thread job and buffers (pinned, grown on demand).</summary>
    private sealed class Job : IParallelWork
    {
        [ThreadStatic] private static Job? t_current;
        public static Job Current => t_current ??= new Job();

        private float[]? _widened;
        private ushort[]? _edge;
        private int _m, _n, _k, _chunks;
        private float* _a, _c;
        private ushort* _b, _edgePanel;
        private bool _accumulate;

        public float* Widened(long floats)
        {
            if (_widened is null || _widened.Length < floats) _widened = GC.AllocateUninitializedArray<float>(checked((int)floats), pinned: true);
            return (float*)Unsafe.AsPointer(ref _widened[0]);
        }

        public ushort* Edge(long count)
        {
            if (_edge is null || _edge.Length < count) _edge = GC.AllocateUninitializedArray<ushort>(checked((int)count), pinned: true);
            return (ushort*)Unsafe.AsPointer(ref _edge[0]);
        }

        public void Set(int m, int n, int k, float* a, ushort* b, ushort* edge, float* c, bool accumulate, int chunks)
        {
            (_m, _n, _k, _accumulate, _chunks) = (m, n, k, accumulate, chunks);
            _a = a;
            _b = b;
            _edgePanel = edge;
            _c = c;
        }

        public void Clear()
        {
            _a = null;
            _b = null;
            _edgePanel = null;
            _c = null;
        }

        public void Execute(int index)
        {
            int panels = (_n + PanelWidth - 1) / PanelWidth;
            int j0 = (int)((long)panels * index / _chunks) * PanelWidth;
            int j1 = Math.Min(_n, (int)((long)panels * (index + 1) / _chunks) * PanelWidth);
            if (j1 > j0) SmallColumns(_m, _n, _k, _a, _b, _edgePanel, _c, _accumulate, j0, j1);
        }
    }
}
