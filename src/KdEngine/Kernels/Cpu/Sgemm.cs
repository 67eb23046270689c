using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static KdEngine.Kernels.Cpu.SgemmKernels;

namespace KdEngine.Kernels.Cpu;

/// <summary>Which instruction set the SGEMM kernels use.</summary>
internal enum SgemmIsa { Scalar, Vector256, Vector512 }

/// <summary>
/// Single-precision GEMM for the CPU backend: C[m,n] = alpha·op(A)[m,k]·op(B)[k,n] + beta·C, row-major;
/// A is stored [k,m] when <c>transposeA</c>, B is stored [n,k] when <c>transposeB</c>; beta == 0 never reads C.
/// </summary>
/// <remarks>
/// <para>Large products follow GotoBLAS/BLIS with NR-wide column panels (NR = 2 vectors: 32 floats with
/// AVX-512, 16 with AVX2). With AVX-512 the 12×NR register tile (24 FMA accumulators) reads A in place —
/// 12 rows × KC floats (≤ 19 KiB at KC ≤ 400) stay in the 48 KiB L1 while the tile walks every B panel of
/// the column block (panels × KC × 128 B ≤ 512 KiB, in the 1 MiB L2) — so A is never packed; B is
/// read in place too when it is row-major with n a multiple of 16, else packed once per column block into
/// [k][NR] panels shared by all threads. Packing returns where a stride is a multiple of 2 KiB (rows would
/// collide in a few L1 sets) and on AVX2, whose 6×NR tile runs over MC×KC blocks of A packed into 6-row
/// panels ([kc][6]) in L2 (MC ≤ 288). Skipping the copies saves ~5 % on 1024×624·624×400 and ~12 % on
/// 128×624·624×400, where packing is a larger share (docs/benchmarks.md, SGEMM section).</para>
/// <para>Small products (m ≤ 16, the batch-1/16 inference case) skip packing: a direct 6×NR tile reads A and B in
/// place (dot-product tiles when B is transposed; axpy form for m == 1). With enough work (k·n large) their columns
/// are split among threads in whole NR-wide panels.</para>
/// <para>Determinism: every C element is one FMA chain over k in ascending order, split at the same KC
/// boundaries whatever the thread count, and the threads split C by whole tiles, so results are
/// bit-identical run to run and between 1 and N threads.</para>
/// <para>Thread safety: buffers live in a per-calling-thread workspace (pinned, grown once, then reused), so
/// concurrent callers never share packing memory and steady-state calls allocate nothing.</para>
/// </remarks>
internal static unsafe class Sgemm
{
    /// <summary>Products with m at or below this skip packing (and split only their columns among threads).</summary>
    public const int SmallM = 16;
    /// <summary>
    /// Largest K slice (benchmark hook). 400 keeps a 12-row tile of A (≤ 19 KiB) in L1 beside the B stream and
    /// cuts the C round trips between slices: k = 624 runs as 2 × 312, k = 400 as one slice. Measured against
    /// 256 (3 × 208 and 2 × 200) in one process: +2–3 % on 1024×624·624×400 and 1024×400·400×400, one and two
    /// threads, +1–3 % at 128 rows.
    /// </summary>
    internal static int KcMax { get; set; } = 400;
    private const int McMax = 288;            // multiple of MR
    private const long BPackMaxFloats = 1 << 21; // 8 MiB of packed B per column block
    /// <summary>
    /// With A in place each 12-row tile walks every B panel of a column block, so the block's K slice
    /// (panels × KC × 128 B) must stay in the 1 MiB L2: at most 512 KiB, split into balanced blocks
    /// (KC = 312 → 13 panels; KC = 400 → 10, so n = 400 runs as 7 + 6 panels, measured +2 % over one block of
    /// 13, and n = 1024 as 4 × 8, +2.7 % over 2 × 16).
    /// </summary>
    private const long DirectBlockBytes = 512 << 10;
    /// <summary>Below this many multiply-adds a product runs on one thread (waking a worker costs ~10 µs).</summary>
    private const long ParallelMinMacs = 1 << 22;
    /// <summary>
    /// Small products (m ≤ 16) at or above this many multiply-adds split their columns among threads (benchmark hook).
    /// A batch-1 layer of 624 × 400 (250k multiply-adds) streams 1 MB of weights from L3, so half the columns per core
    /// halves the bytes each core reads; below this the hand-off costs more than it saves.
    /// </summary>
    internal static long SmallParallelMinMacs { get; set; } = 1 << 17;

    public static readonly SgemmIsa HardwareIsa =
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? SgemmIsa.Vector512
        : Vector256.IsHardwareAccelerated && Fma.IsSupported ? SgemmIsa.Vector256
        : SgemmIsa.Scalar;

    /// <summary>Test and benchmark hook: pack A and B even where they could be read in place.</summary>
    internal static bool ForcePacking { get; set; }

    /// <summary>Test hook: 12-row tiles always go through the scratch tile and the general merge.</summary>
    internal static bool ForceScratchMerge { get; set; }

    /// <summary>Test hook: force a narrower instruction set than the hardware's (null = hardware).</summary>
    internal static SgemmIsa? ForcedIsa { get; set; }

    public static SgemmIsa Isa
    {
        get
        {
            var forced = ForcedIsa;
            return forced is { } f && f < HardwareIsa ? f : HardwareIsa;
        }
    }

    public static void Multiply(bool transposeA, bool transposeB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, ReadOnlySpan<float> b, float beta, Span<float> c)
    {
        if (m < 0 || n < 0 || k < 0)
            throw new ArgumentException($"Sgemm: negative dimension (m={m}, n={n}, k={k}).");
        if ((long)m * k > a.Length || (long)k * n > b.Length || (long)m * n > c.Length)
            throw new ArgumentException(
                $"Sgemm: buffers too small for m={m}, n={n}, k={k} (transposeA={transposeA}, transposeB={transposeB}): " +
                $"A has {a.Length} (needs {(long)m * k}), B has {b.Length} (needs {(long)k * n}), C has {c.Length} (needs {(long)m * n}).");
        if (m == 0 || n == 0) return;

        fixed (float* pa = a, pb = b, pc = c)
        {
            if (k == 0 || alpha == 0f)
            {
                ScaleC(pc, (long)m * n, beta);
                return;
            }
            switch (Isa)
            {
                case SgemmIsa.Vector512:
                    Run<Simd512, Vector512<float>>(transposeA, transposeB, m, n, k, alpha, pa, pb, beta, pc);
                    break;
                case SgemmIsa.Vector256:
                    Run<Simd256, Vector256<float>>(transposeA, transposeB, m, n, k, alpha, pa, pb, beta, pc);
                    break;
                default:
                    ScalarMultiply(transposeA, transposeB, m, n, k, alpha, pa, pb, beta, pc);
                    break;
            }
        }
    }

    private static void ScaleC(float* c, long count, float beta)
    {
        var span = new Span<float>(c, checked((int)count));
        if (beta == 0f) span.Clear();
        else if (beta != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(span, beta, span);
    }

    private static void Run<TS, TV>(bool ta, bool tb, int m, int n, int k, float alpha, float* a, float* b,
        float beta, float* c)
        where TS : struct, ISimdF32<TV> where TV : struct
    {
        int firstMode = FirstMode(beta);
        if (m <= SmallM)
        {
            // Few rows but much work (a batch-1/16 layer of large k·n): split C's columns into whole NR-wide panels
            // among threads. Each element is computed by the same kernel as on one thread, so the bits do not change.
            int panelCount = (n + 2 * TS.Width - 1) / (2 * TS.Width);
            int columnChunks = (long)m * n * k >= SmallParallelMinMacs ? Math.Min(Math.Min(CpuParallel.ThreadCount, 64), panelCount) : 1;
            if (columnChunks > 1)
            {
                var small = Workspace.Current;
                small.PrepareSmall(ta, tb, m, n, k, alpha, a, b, beta, c, firstMode, 2 * TS.Width,
                    typeof(TV) == typeof(Vector512<float>) ? SgemmIsa.Vector512 : SgemmIsa.Vector256, columnChunks);
                CpuParallel.For(columnChunks, small);
                small.Clear();
                return;
            }
            SmallProduct<TS, TV>(ta, tb, m, n, k, alpha, a, b, n, beta, c, n, firstMode);
            return;
        }
        var ws = Workspace.Current;
        ws.Prepare(ta, tb, m, n, k, alpha, a, b, beta, c, TS.Width * 2, firstMode,
            typeof(TV) == typeof(Vector512<float>) ? SgemmIsa.Vector512 : SgemmIsa.Vector256);

        int nr = ws.Nr;
        int panels = (n + nr - 1) / nr;
        int rowTiles = (m + ws.Mr - 1) / ws.Mr;
        int threads = (long)m * n * k >= ParallelMinMacs ? Math.Min(CpuParallel.ThreadCount, 64) : 1;
        // In-place A walks all B panels of a block per 12-row tile: keep the block's KC slice in L2.
        int panelsPerBlock;
        if (ws.DirectA)
        {
            int maxPanels = (int)Math.Max(1, DirectBlockBytes / ((long)ws.Kc * nr * sizeof(float)));
            // B must be packed (transposed, or a stride that thrashes L1 sets): give each thread its own B panels,
            // all rows, and let it pack exactly the panels it multiplies. Split by rows instead, every thread read
            // every packed panel, half of them from the other core's L2 right after that core wrote them:
            // 128×624·(400×624)ᵀ ran 1.1× faster on two threads than on one, 1024 rows 1.75× (docs/benchmarks.md).
            if (!ws.DirectB && threads > 1 && panels >= threads && (long)panels * k * nr <= BPackMaxFloats)
            {
                ws.EnsureB((long)panels * k * nr);
                int chunks = Math.Min(threads, panels);
                ws.SetOwnPanels(panels, maxPanels, chunks);
                ws.Phase = Workspace.PackAndComputeOwnPanelsPhase;
                CpuParallel.For(chunks, ws);
                ws.Clear();
                return;
            }
            int blocks = (panels + maxPanels - 1) / maxPanels;
            panelsPerBlock = (panels + blocks - 1) / blocks;
        }
        else panelsPerBlock = (int)Math.Max(1, BPackMaxFloats / ((long)k * nr));
        if (!ws.DirectB) ws.EnsureB((long)Math.Min(panels, panelsPerBlock) * k * nr);

        for (int q0 = 0; q0 < panels; q0 += panelsPerBlock)
        {
            int q1 = Math.Min(panels, q0 + panelsPerBlock);
            // Split C among threads by whole tiles: rows when there are enough row tiles, else B panels.
            bool splitRows = rowTiles >= 2 * threads || rowTiles >= q1 - q0;
            int chunks = Math.Max(1, Math.Min(threads, splitRows ? rowTiles : q1 - q0));
            ws.SetBlock(q0, q1, chunks, splitRows);
            if (!ws.DirectA) ws.EnsureA(chunks);

            if (!ws.DirectB)
            {
                ws.Phase = Workspace.PackBPhase;
                if (chunks > 1) CpuParallel.For(chunks, ws); else ws.Execute(0);
            }
            ws.Phase = Workspace.ComputePhase;
            if (chunks > 1) CpuParallel.For(chunks, ws); else ws.Execute(0);
        }
        ws.Clear();
    }

    /// <summary>
    /// m ≤ 16: no packing. C[m, n] with row stride <paramref name="ldc"/>; B row-major [k, n] with row stride
    /// <paramref name="ldb"/>, or transposed (stored [n, k], row stride k). A column range of a wider product is this
    /// call on b + j0 (transposed: b + j0·k) and c + j0 with the full product's strides.
    /// </summary>
    private static void SmallProduct<TS, TV>(bool ta, bool tb, int m, int n, int k, float alpha, float* a, float* b,
        nint ldb, float beta, float* c, nint ldc, int mode)
        where TS : struct, ISimdF32<TV> where TV : struct
    {
        // A element (i, p): row-major a[i·k + p]; transposed a[p·m + i].
        nint ars = ta ? 1 : k, aps = ta ? m : 1;
        int w = TS.Width;
        if (tb)
        {
            // Dot-product tiles need A contiguous along k; a transposed A (at most 16·k floats) is copied once.
            float* arow = a;
            if (ta)
            {
                arow = Workspace.Current.Scratch((long)m * k);
                for (int p = 0; p < k; p++)
                for (int i = 0; i < m; i++) arow[(nint)i * k + p] = a[(nint)p * m + i];
            }
            for (int i = 0; i < m; i += 4)
            for (int j = 0; j < n; j += 4)
                Dot4x4<TS, TV>(k, arow + (nint)i * k, k, Math.Min(4, m - i), b + (nint)j * k, k, Math.Min(4, n - j),
                    c + (nint)i * ldc + j, ldc, mode, alpha, beta);
            return;
        }
        if (m == 1)
        {
            Row1<TS, TV>(k, a, aps, b, ldb, n, c, Workspace.Current.Scratch(n), mode, alpha, beta);
            return;
        }
        int nr = 2 * w;
        int jFull = n / nr * nr;
        int tail = n - jFull;              // < 2W columns left after the full 2W-wide column blocks
        float* tailB = null;
        if (tail != 0 && tail != w)
        {
            // Copy the ragged right edge of B ([k, tail]) into a zero-padded [k, nr] scratch so that vector
            // loads stay in bounds; results go through a scratch tile and are merged element by element.
            tailB = Workspace.Current.Scratch((long)k * nr + MR * nr);
            for (int p = 0; p < k; p++)
            {
                float* src = b + (nint)p * ldb + jFull, dst = tailB + (nint)p * nr;
                for (int q = 0; q < tail; q++) dst[q] = src[q];
                for (int q = tail; q < nr; q++) dst[q] = 0f;
            }
        }
        float* tile = stackalloc float[MR * 32];
        // Column panels outermost: a panel of B (k × 2W floats, 80 KiB at k = 624) comes from L3 once and serves the
        // ≤ 3 row tiles from L1/L2, while A (≤ 16 × k floats) stays in L1. Rows outermost streamed all of B (the
        // weights, 1 MiB for 624 × 400) from L3 once per row tile.
        // With AVX-512 and ≥ 12 rows the first 12 go through the 12-row tile: one pass over the panel instead of two.
        bool twelve = w == 16 && m >= 12 && IsPlainMerge(mode, alpha) && !ForceScratchMerge;
        for (int j = 0; j < jFull; j += nr)
        {
            int i = 0;
            if (twelve)
            {
                Tile12x2<TS, TV>(k, a, ars, aps, b + j, ldb, c + j, ldc, mode == Accumulate);
                i = 12;
            }
            for (; i < m; i += MR)
                Tile6x2<TS, TV>(k, a + i * ars, ars, aps, Math.Min(MR, m - i), b + j, ldb, c + (nint)i * ldc + j, ldc, mode, alpha, beta);
        }
        for (int i = 0; i < m && tail != 0; i += MR)
        {
            int rows = Math.Min(MR, m - i);
            float* ai = a + i * ars;
            float* ci = c + (nint)i * ldc;
            if (tail == w)
                Tile6x1<TS, TV>(k, ai, ars, aps, rows, b + jFull, ldb, ci + jFull, ldc, mode, alpha, beta);
            else
            {
                if (tail <= w) Tile6x1<TS, TV>(k, ai, ars, aps, rows, tailB, nr, tile, nr, Raw, 1f, 0f);
                else Tile6x2<TS, TV>(k, ai, ars, aps, rows, tailB, nr, tile, nr, Raw, 1f, 0f);
                MergeTile(tile, nr, ci + jFull, ldc, rows, tail, mode, alpha, beta);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MergeTile(float* tile, nint ldt, float* c, nint ldc, int rows, int cols, int mode,
        float alpha, float beta)
    {
        for (int r = 0; r < rows; r++)
        for (int q = 0; q < cols; q++)
        {
            float* dst = c + r * ldc + q;
            *dst = Merge(tile[r * ldt + q], mode == Overwrite ? 0f : *dst, mode, alpha, beta);
        }
    }

    /// <summary>
    /// dst[p·ldd + r] = src[r·lds + p] for r &lt; rows, p &lt; len: packs row-major A rows (or transposed-B rows)
    /// into k-major panels. 4×4 blocks go through SSE unpack/move shuffles (4 loads, 8 shuffles, 4 stores per
    /// 16 floats) — the scalar strided copy made packing A a fifth of the 1024×624×400 product's time.
    /// </summary>
    private static void Transpose(float* src, nint lds, int rows, int len, float* dst, nint ldd)
    {
        int r = 0;
        if (Sse.IsSupported)
        {
            for (; r <= rows - 4; r += 4)
            {
                float* s0 = src + r * lds, s1 = s0 + lds, s2 = s1 + lds, s3 = s2 + lds;
                float* d = dst + r;
                int p = 0;
                for (; p <= len - 4; p += 4, d += 4 * ldd)
                {
                    Vector128<float> x0 = Sse.LoadVector128(s0 + p), x1 = Sse.LoadVector128(s1 + p);
                    Vector128<float> x2 = Sse.LoadVector128(s2 + p), x3 = Sse.LoadVector128(s3 + p);
                    Vector128<float> t0 = Sse.UnpackLow(x0, x1), t1 = Sse.UnpackLow(x2, x3);   // r0p0 r1p0 r0p1 r1p1 | r2p0 r3p0 r2p1 r3p1
                    Vector128<float> t2 = Sse.UnpackHigh(x0, x1), t3 = Sse.UnpackHigh(x2, x3); // same for p2, p3
                    Sse.Store(d, Sse.MoveLowToHigh(t0, t1));
                    Sse.Store(d + ldd, Sse.MoveHighToLow(t1, t0));
                    Sse.Store(d + 2 * ldd, Sse.MoveLowToHigh(t2, t3));
                    Sse.Store(d + 3 * ldd, Sse.MoveHighToLow(t3, t2));
                }
                for (; p < len; p++, d += ldd)
                {
                    d[0] = s0[p]; d[1] = s1[p]; d[2] = s2[p]; d[3] = s3[p];
                }
            }
        }
        for (; r < rows; r++)
        {
            float* s = src + r * lds, d = dst + r;
            for (int p = 0; p < len; p++) d[p * ldd] = s[p];
        }
    }

    /// <summary>Hardware without AVX2/FMA or AVX-512: cache-friendly i-p-j loops over a row accumulator.</summary>
    private static void ScalarMultiply(bool ta, bool tb, int m, int n, int k, float alpha, float* a, float* b,
        float beta, float* c)
    {
        nint ars = ta ? 1 : k, aps = ta ? m : 1;
        nint bps = tb ? 1 : n, bqs = tb ? k : 1; // B element (p, j) at b[p·bps + j·bqs]
        float* acc = Workspace.Current.Scratch(n);
        int mode = FirstMode(beta);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++) acc[j] = 0f;
            for (int p = 0; p < k; p++)
            {
                float x = a[i * ars + p * aps];
                float* bp = b + p * bps;
                for (int j = 0; j < n; j++) acc[j] += x * bp[j * bqs];
            }
            MergeTile(acc, 0, c + (nint)i * n, 0, 1, n, mode, alpha, beta);
        }
    }

    /// <summary>
    /// Per-calling-thread packing memory and the parallel job of one large product. Buffers are pinned
    /// (pointers survive across worker threads without <c>fixed</c>) and 64-byte aligned.
    /// </summary>
    private sealed class Workspace : IParallelWork
    {
        public const int PackBPhase = 0, ComputePhase = 1, PackAndComputeOwnPanelsPhase = 2, SmallColumnsPhase = 3;

        [ThreadStatic] private static Workspace? _current;
        public static Workspace Current => _current ??= new Workspace();

        private float[]? _bArray, _scratchArray;
        private float* _bPack, _scratch;
        private long _bCapacity, _scratchCapacity;
        private readonly float[]?[] _aArrays = new float[64][];
        private readonly nint[] _aPacks = new nint[64];

        // The product being computed (set by Prepare, valid until Clear).
        private bool _ta, _tb;
        private int _m, _n, _k, _firstMode, _kc;
        private float _alpha, _beta;
        private float* _a, _b, _c;
        private SgemmIsa _isa;
        public int Nr { get; private set; }
        /// <summary>The 12-row tile reads A in place (no packing of A).</summary>
        public bool DirectA { get; private set; }
        /// <summary>B panels are read in place from the row-major B (no packing of B).</summary>
        public bool DirectB { get; private set; }
        /// <summary>Rows per packed A panel / register tile: 12 with AVX-512 (32 registers), 6 with AVX2 (16).</summary>
        public int Mr { get; private set; }
        // The current column block of B panels and how it is split.
        private int _q0, _q1, _chunks;
        private bool _splitRows;
        public int Phase;

        public void Prepare(bool ta, bool tb, int m, int n, int k, float alpha, float* a, float* b, float beta,
            float* c, int nr, int firstMode, SgemmIsa isa)
        {
            (_ta, _tb, _m, _n, _k, _alpha, _beta, Nr, _firstMode, _isa) =
                (ta, tb, m, n, k, alpha, beta, nr, firstMode, isa);
            Mr = isa == SgemmIsa.Vector512 ? 12 : MR;
            // In place needs AVX-512's 12-row tile and strides that spread over L1 sets: a stride that is a
            // multiple of 2 KiB maps the 12 rows (or B's kc rows) onto a few of the 64 sets and thrashes them.
            // In-place B also needs whole vectors (n a multiple of W) so loads stay inside each row.
            static bool SpreadsOverSets(long strideFloats) => strideFloats * sizeof(float) % 2048 != 0;
            DirectA = isa == SgemmIsa.Vector512 && !ForcePacking && SpreadsOverSets(ta ? m : k);
            DirectB = isa == SgemmIsa.Vector512 && !ForcePacking && !tb && n % (nr / 2) == 0 && SpreadsOverSets(n);
            _a = a;
            _b = b;
            _c = c;
            // Balanced K blocks ≤ KcMax (k = 624 → 2 × 312), fixed by k alone so every thread count and every
            // row/column split sums each element over the same blocks.
            int blocks = (k + KcMax - 1) / KcMax;
            _kc = (k + blocks - 1) / blocks;
        }

        /// <summary>
        /// A small product (m ≤ 16) split into <paramref name="chunks"/> column ranges of whole NR-wide panels; item i
        /// runs <see cref="SmallProduct{TS,TV}"/> on its range with the full product's strides.
        /// </summary>
        public void PrepareSmall(bool ta, bool tb, int m, int n, int k, float alpha, float* a, float* b, float beta,
            float* c, int firstMode, int nr, SgemmIsa isa, int chunks)
        {
            (_ta, _tb, _m, _n, _k, _alpha, _beta, Nr, _firstMode, _isa, _chunks) =
                (ta, tb, m, n, k, alpha, beta, nr, firstMode, isa, chunks);
            _a = a;
            _b = b;
            _c = c;
            Phase = SmallColumnsPhase;
        }

        private void ExecuteSmall<TS, TV>(int index) where TS : struct, ISimdF32<TV> where TV : struct
        {
            int nr = Nr, panels = (_n + nr - 1) / nr;
            int j0 = (int)((long)panels * index / _chunks) * nr;
            int j1 = Math.Min(_n, (int)((long)panels * (index + 1) / _chunks) * nr);
            if (j1 <= j0) return;
            float* b = _tb ? _b + (nint)j0 * _k : _b + j0;
            SmallProduct<TS, TV>(_ta, _tb, _m, j1 - j0, _k, _alpha, _a, b, _n, _beta, _c + j0, _n, _firstMode);
        }

        /// <summary>The K slice length of the current product (balanced, ≤ <see cref="KcMax"/>).</summary>
        public int Kc => _kc;

        public void SetBlock(int q0, int q1, int chunks, bool splitRows) =>
            (_q0, _q1, _chunks, _splitRows) = (q0, q1, chunks, splitRows);

        private int _maxPanelsPerBlock;

        /// <summary>
        /// One job per chunk over all rows and its own contiguous range of the <paramref name="panels"/> B panels,
        /// which it packs itself, block by block (≤ <paramref name="maxPanelsPerBlock"/> panels per K slice in L2).
        /// Panels are addressed absolutely (_q0 = 0): panel q lives at _bPack + q·k·NR.
        /// </summary>
        public void SetOwnPanels(int panels, int maxPanelsPerBlock, int chunks) =>
            (_q0, _q1, _chunks, _splitRows, _maxPanelsPerBlock) = (0, panels, chunks, false, maxPanelsPerBlock);

        public void Clear()
        {
            _a = null;
            _b = null;
            _c = null;
        }

        private static float* Allocate(long floats, out float[] array)
        {
            array = GC.AllocateUninitializedArray<float>(checked((int)(floats + 16)), pinned: true);
            nint p = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
            return (float*)((p + 63) & ~(nint)63);
        }

        public void EnsureB(long floats)
        {
            if (_bCapacity >= floats) return;
            _bPack = Allocate(floats, out var arr);
            _bArray = arr;
            _bCapacity = floats;
        }

        /// <summary>One MC × KC packing block per chunk, sized for this product's K slice.</summary>
        public void EnsureA(int chunks)
        {
            long floats = (long)McMax * _kc;
            for (int i = 0; i < chunks; i++)
                if (_aArrays[i] is not { } existing || existing.Length < floats + 16)
                {
                    _aPacks[i] = (nint)Allocate(floats, out var arr);
                    _aArrays[i] = arr;
                }
        }

        public float* Scratch(long floats)
        {
            if (_scratchCapacity < floats)
            {
                _scratch = Allocate(floats, out var arr);
                _scratchArray = arr;
                _scratchCapacity = floats;
            }
            return _scratch;
        }

        public void Execute(int index)
        {
            if (_isa == SgemmIsa.Vector512) Execute<Simd512, Vector512<float>>(index);
            else Execute<Simd256, Vector256<float>>(index);
        }

        private void Execute<TS, TV>(int index) where TS : struct, ISimdF32<TV> where TV : struct
        {
            if (Phase == SmallColumnsPhase)
            {
                ExecuteSmall<TS, TV>(index);
                return;
            }
            int blockPanels = _q1 - _q0;
            if (Phase == PackAndComputeOwnPanelsPhase)
            {
                int own0 = (int)((long)blockPanels * index / _chunks), own1 = (int)((long)blockPanels * (index + 1) / _chunks);
                int count = own1 - own0;
                int blocks = (count + _maxPanelsPerBlock - 1) / _maxPanelsPerBlock;
                int per = blocks == 0 ? 1 : (count + blocks - 1) / blocks;
                for (int first = own0; first < own1; first += per)
                {
                    int end = Math.Min(own1, first + per);
                    for (int q = first; q < end; q++) PackBPanel(q);
                    ComputeInPlace<TS, TV>(0, _m, first, end);
                }
                return;
            }
            if (Phase == PackBPhase)
            {
                // Each chunk packs a fixed, disjoint range of panels.
                int p0 = (int)((long)blockPanels * index / _chunks), p1 = (int)((long)blockPanels * (index + 1) / _chunks);
                for (int q = p0; q < p1; q++) PackBPanel(q);
                return;
            }
            int mr = Mr;
            int rowTiles = (_m + mr - 1) / mr;
            int r0 = 0, r1 = _m, q0 = 0, q1 = blockPanels;
            if (_splitRows)
            {
                r0 = (int)((long)rowTiles * index / _chunks) * mr;
                r1 = Math.Min(_m, (int)((long)rowTiles * (index + 1) / _chunks) * mr);
            }
            else
            {
                q0 = (int)((long)blockPanels * index / _chunks);
                q1 = (int)((long)blockPanels * (index + 1) / _chunks);
            }
            if (DirectA) ComputeInPlace<TS, TV>(r0, r1, q0, q1);
            else Compute<TS, TV>((float*)_aPacks[index], r0, r1, q0, q1);
        }

        /// <summary>Packs panel q of the current block: B[0..k, j..j+NR) → [k][NR], zero-padded past n.</summary>
        private void PackBPanel(int q)
        {
            int nr = Nr, k = _k, n = _n;
            int j = (_q0 + q) * nr;
            int width = Math.Min(nr, n - j);
            float* dst = _bPack + (long)q * k * nr;
            if (!_tb)
            {
                float* src = _b + j;
                if (width == nr)
                    for (int p = 0; p < k; p++)
                        Unsafe.CopyBlockUnaligned(dst + (nint)p * nr, src + (nint)p * n, (uint)(nr * sizeof(float)));
                else
                    for (int p = 0; p < k; p++)
                    {
                        float* s = src + (nint)p * n, d = dst + (nint)p * nr;
                        for (int t = 0; t < width; t++) d[t] = s[t];
                        for (int t = width; t < nr; t++) d[t] = 0f;
                    }
            }
            else
            {
                // B stored [n, k]: column j of op(B) is the contiguous row j of b; write it down panel column t.
                Transpose(_b + (nint)j * k, k, width, k, dst, nr);
                for (int p = 0; p < k; p++)
                    for (int t = width; t < nr; t++) dst[(nint)p * nr + t] = 0f;
            }
        }

        /// <summary>Packs A[i0..i0+mc, p0..p0+kc) into consecutive mr-row panels, each [kc][mr], zero-padded.</summary>
        private void PackA(float* dst, int i0, int mc, int p0, int kc)
        {
            int m = _m, k = _k, mr = Mr;
            for (int ir = 0; ir < mc; ir += mr)
            {
                int rows = Math.Min(mr, mc - ir);
                float* panel = dst + (nint)ir * kc;
                if (rows < mr)
                    for (int p = 0; p < kc; p++)
                        for (int r = rows; r < mr; r++) panel[p * mr + r] = 0f;
                if (_ta)
                {
                    // A stored [k, m]: the 6 values of one k index are contiguous.
                    float* src = _a + (nint)p0 * m + i0 + ir;
                    for (int p = 0; p < kc; p++)
                    {
                        float* s = src + (nint)p * m, d = panel + p * mr;
                        for (int r = 0; r < rows; r++) d[r] = s[r];
                    }
                }
                else
                {
                    Transpose(_a + (nint)(i0 + ir) * k + p0, k, rows, kc, panel, mr);
                }
            }
        }

        /// <summary>
        /// One 12-row AVX-512 tile, C[rows, cols] (op) A[12, kc]·B[kc, ≤ 2W]: straight into C when all 12 rows and the
        /// full vector width are stored with a plain merge, else into <paramref name="scratch"/> ([12][2W]) and merged
        /// from there (fewer rows, a ragged right edge of zero-padded packed B, alpha ≠ 1 or beta ∉ {0, 1}).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Tile12<TS, TV>(int kc, float* a, nint ars, nint aps, int rows, float* b, nint ldb,
            float* c, nint ldc, int cols, int mode, float alpha, float beta, float* scratch)
            where TS : struct, ISimdF32<TV> where TV : struct
        {
            int w = TS.Width;
            bool two = cols > w;
            if (rows == 12 && (cols == w || cols == 2 * w) && IsPlainMerge(mode, alpha) && !ForceScratchMerge)
            {
                if (PrefetchC) PrefetchTile(c, ldc, 12, cols);
                if (two) Tile12x2<TS, TV>(kc, a, ars, aps, b, ldb, c, ldc, mode == Accumulate);
                else Tile12x1<TS, TV>(kc, a, ars, aps, b, ldb, c, ldc, mode == Accumulate);
                return;
            }
            if (two) Tile12x2<TS, TV>(kc, a, ars, aps, b, ldb, scratch, 2 * w, false);
            else Tile12x1<TS, TV>(kc, a, ars, aps, b, ldb, scratch, 2 * w, false);
            MergeTile(scratch, 2 * w, c, ldc, rows, cols, mode, alpha, beta);
        }

        /// <summary>
        /// One 6-row tile (AVX2's register tile, and AVX-512's ragged last rows), C[rows ≤ 6, cols] (op)
        /// A[rows, kc]·B[kc, ≤ 2W]: straight into C at a full vector width, else (the ragged right edge of
        /// zero-padded packed B) into <paramref name="scratch"/> ([6][2W]) and merged from there.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Tile6<TS, TV>(int kc, float* a, nint ars, nint aps, int rows, float* b, nint ldb,
            float* c, nint ldc, int cols, int mode, float alpha, float beta, float* scratch)
            where TS : struct, ISimdF32<TV> where TV : struct
        {
            int w = TS.Width;
            if (cols == 2 * w) Tile6x2<TS, TV>(kc, a, ars, aps, rows, b, ldb, c, ldc, mode, alpha, beta);
            else if (cols == w) Tile6x1<TS, TV>(kc, a, ars, aps, rows, b, ldb, c, ldc, mode, alpha, beta);
            else
            {
                if (cols > w) Tile6x2<TS, TV>(kc, a, ars, aps, rows, b, ldb, scratch, 2 * w, Raw, 1f, 0f);
                else Tile6x1<TS, TV>(kc, a, ars, aps, rows, b, ldb, scratch, 2 * w, Raw, 1f, 0f);
                MergeTile(scratch, 2 * w, c, ldc, rows, cols, mode, alpha, beta);
            }
        }

        /// <summary>Rows p0.. of B panel q of the current block: (address, row stride) in place or packed.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private float* BPanel(int q, int p0, out nint ldb)
        {
            if (DirectB)
            {
                ldb = _n;
                return _b + (nint)p0 * _n + (nint)(_q0 + q) * Nr;
            }
            ldb = Nr;
            return _bPack + (long)q * _k * Nr + (nint)p0 * Nr;
        }

        /// <summary>
        /// AVX-512 with A read in place: K slices outermost (the element's FMA chain is split at the same KC
        /// boundaries as the packed path, so results are bit-identical to it), then 12-row tiles, then the
        /// block's B panels — the tile's 12 × kc floats of A stay in L1 across the panels. A ragged last tile
        /// (&lt; 12 rows) runs as 6-row tiles that clamp their row pointers instead of reading past A.
        /// </summary>
        private void ComputeInPlace<TS, TV>(int r0, int r1, int q0, int q1)
            where TS : struct, ISimdF32<TV> where TV : struct
        {
            int n = _n, k = _k, nr = Nr, w = TS.Width, kcMax = _kc;
            float alpha = _alpha, beta = _beta;
            // A element (i, p): row-major a[i·k + p]; transposed a[p·m + i].
            nint ars = _ta ? 1 : k, aps = _ta ? _m : 1;
            float* tile = stackalloc float[12 * 32];
            if (r1 <= r0 || q1 <= q0) return;
            for (int pc = 0; pc < k; pc += kcMax)
            {
                int kc = Math.Min(kcMax, k - pc);
                int mode = pc == 0 ? _firstMode : Accumulate;
                for (int i = r0; i < r1; i += 12)
                {
                    int rows = Math.Min(12, r1 - i);
                    float* ap = _a + i * ars + pc * aps;
                    for (int q = q0; q < q1; q++)
                    {
                        int j = (_q0 + q) * nr;
                        int width = Math.Min(nr, n - j);
                        float* bp = BPanel(q, pc, out nint ldb);
                        float* cp = _c + (nint)i * n + j;
                        if (rows == 12)
                        {
                            Tile12<TS, TV>(kc, ap, ars, aps, 12, bp, ldb, cp, n, width, mode, alpha, beta, tile);
                            continue;
                        }
                        // A ragged last tile (< 12 rows): 6-row tiles that clamp their row pointers inside A.
                        for (int h = 0; h < rows; h += MR)
                            Tile6<TS, TV>(kc, ap + h * ars, ars, aps, Math.Min(MR, rows - h), bp, ldb, cp + (nint)h * n, n, width, mode, alpha, beta, tile);
                    }
                }
            }
        }

        private void Compute<TS, TV>(float* aPack, int r0, int r1, int q0, int q1)
            where TS : struct, ISimdF32<TV> where TV : struct
        {
            int n = _n, k = _k, nr = Nr, w = TS.Width, kcMax = _kc, mr = Mr;
            float alpha = _alpha, beta = _beta;
            float* tile = stackalloc float[12 * 32];
            int rows = r1 - r0;
            if (rows <= 0 || q1 <= q0) return;
            // Balanced row blocks ≤ McMax, whole 6-row tiles.
            int mBlocks = (rows + McMax - 1) / McMax;
            int mc = ((rows + mBlocks - 1) / mBlocks + mr - 1) / mr * mr;
            for (int ic = r0; ic < r1; ic += mc)
            {
                int mcb = Math.Min(mc, r1 - ic);
                for (int pc = 0; pc < k; pc += kcMax)
                {
                    int kc = Math.Min(kcMax, k - pc);
                    int mode = pc == 0 ? _firstMode : Accumulate;
                    PackA(aPack, ic, mcb, pc, kc);
                    for (int q = q0; q < q1; q++)
                    {
                        int j = (_q0 + q) * nr;
                        int width = Math.Min(nr, n - j);
                        float* bp = BPanel(q, pc, out nint ldb);
                        for (int ir = 0; ir < mcb; ir += mr)
                        {
                            int tr = Math.Min(mr, mcb - ir);
                            float* ap = aPack + (nint)ir * kc;
                            float* cp = _c + (nint)(ic + ir) * n + j;
                            if (mr == 12)
                                Tile12<TS, TV>(kc, ap, 1, 12, tr, bp, ldb, cp, n, width, mode, alpha, beta, tile);
                            else
                                Tile6<TS, TV>(kc, ap, 1, MR, tr, bp, ldb, cp, n, width, mode, alpha, beta, tile);
                        }
                    }
                }
            }
        }
    }
}
