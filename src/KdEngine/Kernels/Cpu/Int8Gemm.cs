using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// A dense layer's weights quantised to int8 per output channel, packed for the VNNI dot product. Logical matrix:
/// the GEMM's right operand B [k, n] = Wᵀ of a Linear weight W [n, k] ([out, in]). Channel j (output j) keeps
/// q[j, p] = round(W[j, p] / s_j) ∈ [−127, 127] with s_j = max_p |W[j, p]| / 127 (0 for an all-zero channel, whose
/// q are 0), so W[j, p] ≈ s_j · q[j, p].
/// </summary>
/// <remarks>
/// Packed layout: panels of 16 output columns; within a panel, groups of 4 consecutive k; within a group, each of
/// the 16 columns' 4 k-values side by side: byte (panel·G + g)·64 + c·4 + t = q[16·panel + c, 4g + t] (0 past n or
/// k), G = ⌈k / 4⌉. One 256-bit load then holds 8 columns × 4 k-values, exactly what VPDPBUSD multiplies against a
/// broadcast of 4 activation bytes, and a panel is one contiguous stream of G · 64 bytes.
/// </remarks>
public sealed unsafe class Int8Weights
{
    /// <summary>Columns per panel (two 256-bit vectors of 8 int32 lanes).</summary>
    internal const int PanelWidth = 16;

    private readonly sbyte[] _packedArray;   // pinned, 64-byte aligned start at _packed
    internal readonly sbyte* Packed;
    /// <summary>[Panels · 16] Σ_p q[j, p] (0 past n): the correction for the activations' zero point.</summary>
    internal readonly int[] ColumnSums;
    private readonly sbyte[] _values;        // [n, k] row-major, as stored in a checkpoint

    /// <summary>Inner dimension (inputs per output channel).</summary>
    public int K { get; }
    /// <summary>Output channels.</summary>
    public int N { get; }
    /// <summary>Per-channel scales s_j [N].</summary>
    public float[] Scales { get; }
    internal int Groups => (K + 3) / 4;
    internal int Panels => (N + PanelWidth - 1) / PanelWidth;

    /// <summary>The quantised values q [N, K] row-major (the Linear weight's [out, in] layout).</summary>
    public ReadOnlySpan<sbyte> Values => _values;

    /// <summary>Bytes of weights held for inference: the packed values plus scales and column sums.</summary>
    public long Bytes => (long)Panels * Groups * 64 + 4L * N + 4L * ColumnSums.Length;

    private Int8Weights(sbyte[] values, float[] scales, int n, int k)
    {
        // The activations' u8 × weights' s8 products of one output sum exactly in int32 as long as
        // 255 · 127 · k plus the zero-point correction stays below 2³¹.
        if (k > 32_768) throw new ArgumentOutOfRangeException(nameof(k), k, "Int8Weights: k must be ≤ 32,768 (int32 accumulators).");
        N = n;
        K = k;
        _values = values;
        Scales = scales;
        int groups = Groups, panels = Panels;
        _packedArray = GC.AllocateUninitializedArray<sbyte>(panels * groups * 64 + 64, pinned: true);
        nint start = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_packedArray));
        Packed = (sbyte*)((start + 63) & ~(nint)63);
        new Span<sbyte>(Packed, panels * groups * 64).Clear();
        ColumnSums = new int[panels * PanelWidth];
        for (int j = 0; j < n; j++)
        {
            int panel = j / PanelWidth, col = j % PanelWidth, sum = 0;
            sbyte* dst = Packed + (long)panel * groups * 64 + col * 4;
            var row = values.AsSpan(j * k, k);
            for (int p = 0; p < k; p++)
            {
                dst[(p >> 2) * 64 + (p & 3)] = row[p];
                sum += row[p];
            }
            ColumnSums[j] = sum;
        }
    }

    /// <summary>Quantises W [n, k] ([out, in], row-major) per output channel (see the type's summary).</summary>
    public static Int8Weights Quantize(ReadOnlySpan<float> weight, int n, int k)
    {
        if (n <= 0 || k <= 0 || (long)n * k != weight.Length)
            throw new ArgumentException($"Int8Weights.Quantize: {weight.Length} weights do not form [n = {n}, k = {k}].");
        var values = new sbyte[n * k];
        var scales = new float[n];
        for (int j = 0; j < n; j++)
        {
            var row = weight.Slice(j * k, k);
            float max = 0f;
            foreach (float x in row)
            {
                if (!float.IsFinite(x)) throw new ArgumentException($"Int8Weights.Quantize: weight [{j}, {row.IndexOf(x)}] is {x}.");
                max = Math.Max(max, Math.Abs(x));
            }
            float scale = max / 127f;
            if (scale == 0f) continue;               // all-zero channel (or one so tiny that its step underflows): scale 0, values 0
            scales[j] = scale;
            for (int p = 0; p < k; p++)
                values[j * k + p] = (sbyte)Math.Clamp(MathF.Round(row[p] / scale), -127f, 127f);
        }
        return new Int8Weights(values, scales, n, k);
    }

    /// <summary>Wraps values already quantised (a checkpoint's q [n, k] and s [n]); checks their ranges.</summary>
    public static Int8Weights FromQuantized(ReadOnlySpan<sbyte> values, ReadOnlySpan<float> scales, int n, int k)
    {
        if (n <= 0 || k <= 0 || (long)n * k != values.Length || scales.Length != n)
            throw new ArgumentException($"Int8Weights: {values.Length} values and {scales.Length} scales do not form [n = {n}, k = {k}] and [n].");
        for (int j = 0; j < n; j++)
            if (!float.IsFinite(scales[j]) || scales[j] < 0f)
                throw new ArgumentException($"Int8Weights: scale {j} is {scales[j]} (must be finite and ≥ 0).");
        if (values.IndexOf((sbyte)-128) is int bad and >= 0)
            throw new ArgumentException($"Int8Weights: value [{bad / k}, {bad % k}] is −128 (the symmetric range is [−127, 127]).");
        return new Int8Weights(values.ToArray(), scales.ToArray(), n, k);
    }

    /// <summary>The dequantised weight W' [n, k] = s_j · q[j, p] (what the int8 layer multiplies by, up to the
    /// activations' own rounding).</summary>
    public float[] Dequantize()
    {
        var w = new float[N * K];
        for (int j = 0; j < N; j++)
            for (int p = 0; p < K; p++) w[j * K + p] = Scales[j] * _values[j * K + p];
        return w;
    }
}

/// <summary>
/// C[m, n] (+)= A[m, k] · B[k, n] with B int8 per output channel (<see cref="Int8Weights"/>) and A quantised per row
/// to uint8 on the fly: row i keeps a_q = clamp(round(a / s_i) + z_i, 0, 255) over its range [min(0, min a), max(0,
/// max a)] (so 0 — a ReLU's zeros — is exact), s_i = range / 255, z_i = round(−min / s_i). Then
/// <code>
///   C[i, j] (+)= (s_i · s_j) · (Σ_p a_q[i, p] · q[p, j] − z_i · Σ_p q[p, j])      (the sum is exact in int32)
/// </code>
/// With AVX-VNNI (<see cref="AvxVnni"/>: VPDPBUSD on 256-bit vectors, 4 u8 × s8 products per int32 lane per
/// instruction) the inner product runs 32 multiply-adds per instruction; otherwise a portable scalar loop gives the
/// same integers. .NET 10 exposes no 512-bit VNNI (Avx512Vnni) and no AVX512-BF16, so 256-bit VNNI it is.
/// </summary>
/// <remarks>
/// Determinism: the integer sums are exact whatever the order, and each element's float epilogue is one fixed
/// formula, so results are bit-identical for any split among threads, any batch composition and either code path.
/// </remarks>
public static unsafe class Int8Gemm
{
    /// <summary>Rows per register tile (6 rows × 2 vectors = 12 int32 accumulators of the 16 ymm registers).</summary>
    private const int TileRows = 6;
    /// <summary>Below this many multiply-adds a product runs on one thread.</summary>
    internal static long ParallelMinMacs { get; set; } = 1 << 18;
    /// <summary>Test hook: use the portable loop even where AVX-VNNI exists.</summary>
    internal static bool ForcePortable { get; set; }

    /// <summary>True when the VNNI kernels run (hardware support and not forced off).</summary>
    public static bool UsesVnni => AvxVnni.IsSupported && !ForcePortable;

    /// <summary>Bytes one activation row occupies after quantisation (k rounded up to whole groups of 4).</summary>
    public static int PaddedK(int k) => (k + 3) & ~3;

    /// <summary>
    /// Quantises rows [0, m) of A [m, k] (row stride <paramref name="lda"/>) into <paramref name="aq"/> [m, PaddedK(k)]
    /// (row stride PaddedK(k); the padding bytes are the zero point, which multiply zero weights), with per-row scales
    /// and zero points.
    /// </summary>
    public static void QuantizeRows(float* a, int m, int k, nint lda, byte* aq, float* scale, int* zeroPoint)
    {
        int kp = PaddedK(k);
        for (int i = 0; i < m; i++)
        {
            float* row = a + i * lda;
            Range(row, k, out float lo, out float hi);
            if (!float.IsFinite(lo) || !float.IsFinite(hi))
                throw new ArgumentException($"Int8Gemm: activation row {i} holds a non-finite value.");
            float s = (hi - lo) / 255f;
            if (s == 0f) s = 1f;                       // an all-zero row: any scale, every byte is the zero point 0
            int z = (int)MathF.Round(-lo / s);
            z = Math.Clamp(z, 0, 255);
            scale[i] = s;
            zeroPoint[i] = z;
            QuantizeRow(row, k, 1f / s, z, aq + (nint)i * kp);
            for (int p = k; p < kp; p++) aq[(nint)i * kp + p] = (byte)z;
        }
    }

    /// <summary>lo = min(0, min x), hi = max(0, max x) in one pass (NaN makes them NaN or leaves a non-finite bound
    /// for the caller to reject: ±∞ shows directly, and a NaN lane is caught by the final scalar check).</summary>
    private static void Range(float* x, int k, out float lo, out float hi)
    {
        int p = 0;
        float l = 0f, h = 0f;
        bool nan = false;
        if (Vector512.IsHardwareAccelerated && k >= 16)
        {
            var vl = Vector512<float>.Zero;
            var vh = Vector512<float>.Zero;
            var bad = Vector512<float>.Zero;
            for (; p <= k - 16; p += 16)
            {
                var v = Vector512.Load(x + p);
                vl = Vector512.Min(vl, v);
                vh = Vector512.Max(vh, v);
                bad |= ~Vector512.Equals(v, v);
            }
            for (int t = 0; t < 16; t++) { l = Math.Min(l, vl[t]); h = Math.Max(h, vh[t]); }
            nan = bad != Vector512<float>.Zero;
        }
        for (; p < k; p++)
        {
            float v = x[p];
            nan |= float.IsNaN(v);
            l = Math.Min(l, v);
            h = Math.Max(h, v);
        }
        lo = nan ? float.NaN : l;
        hi = h;
    }

    /// <summary>dst[p] = clamp(round(x[p] · inv) + z, 0, 255) (round half to even, as cvtps2dq does).</summary>
    private static void QuantizeRow(float* x, int k, float inv, int z, byte* dst)
    {
        int p = 0;
        if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported)
        {
            var vinv = Vector512.Create(inv);
            var vz = Vector512.Create(z);
            var lo = Vector512<int>.Zero;
            var hi = Vector512.Create(255);
            for (; p <= k - 16; p += 16)
            {
                var q = Avx512F.ConvertToVector512Int32(Vector512.Load(x + p) * vinv) + vz;  // round to nearest even
                q = Vector512.Min(Vector512.Max(q, lo), hi);
                Avx512F.ConvertToVector128Byte(q).Store(dst + p);
            }
            if (p < k && k >= 16)
            {
                // The tail as one more vector over the last 16 values: the overlap is recomputed to the same bytes.
                p = k - 16;
                var q = Avx512F.ConvertToVector512Int32(Vector512.Load(x + p) * vinv) + vz;
                Avx512F.ConvertToVector128Byte(Vector512.Min(Vector512.Max(q, lo), hi)).Store(dst + p);
                return;
            }
        }
        for (; p < k; p++)
            dst[p] = (byte)Math.Clamp((int)MathF.Round(x[p] * inv, MidpointRounding.ToEven) + z, 0, 255);
    }

    /// <summary>
    /// C[m, n] (row stride <paramref name="ldc"/>) = or += the dequantised product of the quantised rows
    /// <paramref name="aq"/> [m, PaddedK(k)] (from <see cref="QuantizeRows"/>) and <paramref name="w"/>. Splits the
    /// work among <see cref="CpuParallel.ThreadCount"/> threads (columns for few rows, row tiles otherwise).
    /// </summary>
    public static void Multiply(int m, byte* aq, float* aScale, int* aZero, Int8Weights w, float* c, nint ldc, bool accumulate)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (m <= 0) return;
        int panels = w.Panels, rowTiles = (m + TileRows - 1) / TileRows;
        int threads = (long)m * w.N * w.K >= ParallelMinMacs ? Math.Min(CpuParallel.ThreadCount, 64) : 1;
        bool splitRows = rowTiles >= 2 * threads;
        int chunks = Math.Max(1, Math.Min(threads, splitRows ? rowTiles : panels));
        if (chunks == 1)
        {
            Compute(aq, aScale, aZero, w, c, ldc, accumulate, 0, m, 0, panels);
            return;
        }
        var job = Job.Current;
        job.Set(m, aq, aScale, aZero, w, c, ldc, accumulate, chunks, splitRows);
        CpuParallel.For(chunks, job);
        job.Clear();
    }

    /// <summary>
    /// Convenience form: quantises A [m, k] (row-major, k = w.K) into a per-thread buffer, then multiplies.
    /// C [m, n] row-major.
    /// </summary>
    public static void Multiply(ReadOnlySpan<float> a, int m, Int8Weights w, Span<float> c, bool accumulate)
    {
        ArgumentNullException.ThrowIfNull(w);
        if (m < 0 || (long)m * w.K > a.Length || (long)m * w.N > c.Length)
            throw new ArgumentException($"Int8Gemm: buffers too small for m = {m}, n = {w.N}, k = {w.K} (A has {a.Length}, C has {c.Length}).");
        if (m == 0) return;
        var buffers = Job.Current.Buffers(m, w.K);
        fixed (float* pa = a, pc = c)
        {
            QuantizeRows(pa, m, w.K, w.K, buffers.Bytes, buffers.Scales, buffers.Zeros);
            Multiply(m, buffers.Bytes, buffers.Scales, buffers.Zeros, w, pc, w.N, accumulate);
        }
    }

    /// <summary>Rows [r0, r1) × panels [q0, q1): panels outermost so a panel's weights serve every row tile from L1/L2.</summary>
    private static void Compute(byte* aq, float* aScale, int* aZero, Int8Weights w, float* c, nint ldc, bool accumulate,
        int r0, int r1, int q0, int q1)
    {
        int groups = w.Groups, kp = groups * 4, n = w.N;
        int* acc = stackalloc int[TileRows * Int8Weights.PanelWidth];
        bool vnni = UsesVnni;
        for (int q = q0; q < q1; q++)
        {
            sbyte* panel = w.Packed + (long)q * groups * 64;
            int j0 = q * Int8Weights.PanelWidth, cols = Math.Min(Int8Weights.PanelWidth, n - j0);
            for (int i = r0; i < r1; i += TileRows)
            {
                int rows = Math.Min(TileRows, r1 - i);
                byte* a = aq + (nint)i * kp;
                if (vnni) TileVnni(groups, a, kp, rows, panel, acc);
                else TilePortable(groups, a, kp, rows, panel, acc);
                Epilogue(acc, rows, cols, aScale + i, aZero + i, w.Scales, w.ColumnSums, j0, c + (nint)i * ldc + j0, ldc, accumulate);
            }
        }
    }

    /// <summary>
    /// acc[r, c] = Σ_p a[r, p] · q[p, 16·panel + c] for r &lt; rows (rows ≥ <paramref name="rows"/> reuse the last valid
    /// row's address, so nothing out of range is read). Per group of 4 k: 2 weight loads, 6 broadcasts, 12 VPDPBUSD.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TileVnni(int groups, byte* a, nint lda, int rows, sbyte* panel, int* acc)
    {
        byte* a0 = a, a1 = a + Math.Min(1, rows - 1) * lda, a2 = a + Math.Min(2, rows - 1) * lda;
        byte* a3 = a + Math.Min(3, rows - 1) * lda, a4 = a + Math.Min(4, rows - 1) * lda, a5 = a + Math.Min(5, rows - 1) * lda;
        Vector256<int> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<int> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        sbyte* wp = panel;
        for (nint g = 0; g < groups; g++, wp += 64)
        {
            var w0 = Vector256.Load(wp);
            var w1 = Vector256.Load(wp + 32);
            nint o = g * 4;
            var x = Vector256.Create(*(int*)(a0 + o)).AsByte();
            c00 = AvxVnni.MultiplyWideningAndAdd(c00, x, w0); c01 = AvxVnni.MultiplyWideningAndAdd(c01, x, w1);
            x = Vector256.Create(*(int*)(a1 + o)).AsByte();
            c10 = AvxVnni.MultiplyWideningAndAdd(c10, x, w0); c11 = AvxVnni.MultiplyWideningAndAdd(c11, x, w1);
            x = Vector256.Create(*(int*)(a2 + o)).AsByte();
            c20 = AvxVnni.MultiplyWideningAndAdd(c20, x, w0); c21 = AvxVnni.MultiplyWideningAndAdd(c21, x, w1);
            x = Vector256.Create(*(int*)(a3 + o)).AsByte();
            c30 = AvxVnni.MultiplyWideningAndAdd(c30, x, w0); c31 = AvxVnni.MultiplyWideningAndAdd(c31, x, w1);
            x = Vector256.Create(*(int*)(a4 + o)).AsByte();
            c40 = AvxVnni.MultiplyWideningAndAdd(c40, x, w0); c41 = AvxVnni.MultiplyWideningAndAdd(c41, x, w1);
            x = Vector256.Create(*(int*)(a5 + o)).AsByte();
            c50 = AvxVnni.MultiplyWideningAndAdd(c50, x, w0); c51 = AvxVnni.MultiplyWideningAndAdd(c51, x, w1);
        }
        c00.Store(acc); c01.Store(acc + 8);
        c10.Store(acc + 16); c11.Store(acc + 24);
        c20.Store(acc + 32); c21.Store(acc + 40);
        c30.Store(acc + 48); c31.Store(acc + 56);
        c40.Store(acc + 64); c41.Store(acc + 72);
        c50.Store(acc + 80); c51.Store(acc + 88);
    }

    /// <summary>The portable form of <see cref="TileVnni"/>: the same integers from a scalar loop.</summary>
    private static void TilePortable(int groups, byte* a, nint lda, int rows, sbyte* panel, int* acc)
    {
        for (int r = 0; r < rows; r++)
        {
            byte* ar = a + r * lda;
            for (int col = 0; col < Int8Weights.PanelWidth; col++)
            {
                int sum = 0;
                sbyte* wp = panel + col * 4;
                for (int g = 0; g < groups; g++, wp += 64)
                {
                    byte* x = ar + g * 4;
                    sum += x[0] * wp[0] + x[1] * wp[1] + x[2] * wp[2] + x[3] * wp[3];
                }
                acc[r * Int8Weights.PanelWidth + col] = sum;
            }
        }
    }

    /// <summary>C[r, c] (+)= (s_r · s_c) · (float)(acc[r, c] − z_r · Σq_c), one fixed formula per element.</summary>
    private static void Epilogue(int* acc, int rows, int cols, float* aScale, int* aZero, float[] wScale, int[] columnSums,
        int j0, float* c, nint ldc, bool accumulate)
    {
        fixed (float* ws = wScale)
        fixed (int* cs = columnSums)
            for (int r = 0; r < rows; r++)
            {
                float sa = aScale[r];
                int z = aZero[r];
                int* ar = acc + r * Int8Weights.PanelWidth;
                float* cr = c + r * ldc;
                int col = 0;
                if (cols == Int8Weights.PanelWidth && Vector256.IsHardwareAccelerated)
                {
                    var vz = Vector256.Create(z);
                    var vsa = Vector256.Create(sa);
                    for (; col < Int8Weights.PanelWidth; col += 8)
                    {
                        var v = Vector256.ConvertToSingle(Vector256.Load(ar + col) - vz * Vector256.Load(cs + j0 + col));
                        var y = v * (vsa * Vector256.Load(ws + j0 + col));
                        if (accumulate) y = Vector256.Load(cr + col) + y;
                        y.Store(cr + col);
                    }
                    continue;
                }
                for (; col < cols; col++)
                {
                    float y = (float)(ar[col] - z * cs[j0 + col]) * (sa * ws[j0 + col]);
                    cr[col] = accumulate ? cr[col] + y : y;
                }
            }
    }

    /// <summary>Per-calling-thread parallel job and activation buffers (pinned, grown on demand, reused).</summary>
    private sealed class Job : IParallelWork
    {
        [ThreadStatic] private static Job? t_current;
        public static Job Current => t_current ??= new Job();

        private int _m, _chunks;
        private byte* _aq;
        private float* _aScale;
        private int* _aZero;
        private Int8Weights? _w;
        private float* _c;
        private nint _ldc;
        private bool _accumulate, _splitRows;

        private byte[]? _bytes;
        private float[]? _scales;
        private int[]? _zeros;

        public readonly struct ActivationBuffers(byte* bytes, float* scales, int* zeros)
        {
            public readonly byte* Bytes = bytes;
            public readonly float* Scales = scales;
            public readonly int* Zeros = zeros;
        }

        public ActivationBuffers Buffers(int m, int k)
        {
            long bytes = (long)m * PaddedK(k);
            if (_bytes is null || _bytes.Length < bytes) _bytes = GC.AllocateUninitializedArray<byte>(checked((int)bytes), pinned: true);
            if (_scales is null || _scales.Length < m)
            {
                _scales = GC.AllocateUninitializedArray<float>(m, pinned: true);
                _zeros = GC.AllocateUninitializedArray<int>(m, pinned: true);
            }
            return new ActivationBuffers((byte*)Unsafe.AsPointer(ref _bytes[0]), (float*)Unsafe.AsPointer(ref _scales[0]),
                (int*)Unsafe.AsPointer(ref _zeros![0]));
        }

        public void Set(int m, byte* aq, float* aScale, int* aZero, Int8Weights w, float* c, nint ldc, bool accumulate, int chunks, bool splitRows)
        {
            (_m, _w, _ldc, _accumulate, _chunks, _splitRows) = (m, w, ldc, accumulate, chunks, splitRows);
            _aq = aq;
            _aScale = aScale;
            _aZero = aZero;
            _c = c;
        }

        public void Clear()
        {
            _w = null;
            _aq = null;
            _c = null;
        }

        public void Execute(int index)
        {
            var w = _w!;
            if (_splitRows)
            {
                int tiles = (_m + TileRows - 1) / TileRows;
                int r0 = (int)((long)tiles * index / _chunks) * TileRows;
                int r1 = Math.Min(_m, (int)((long)tiles * (index + 1) / _chunks) * TileRows);
                if (r1 > r0) Compute(_aq, _aScale, _aZero, w, _c, _ldc, _accumulate, r0, r1, 0, w.Panels);
            }
            else
            {
                int q0 = (int)((long)w.Panels * index / _chunks), q1 = (int)((long)w.Panels * (index + 1) / _chunks);
                if (q1 > q0) Compute(_aq, _aScale, _aZero, w, _c, _ldc, _accumulate, 0, _m, q0, q1);
            }
        }
    }
}
