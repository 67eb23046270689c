using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// The per-pass kernels of compiled inference, each over a range of rows so that a caller can split a batch (or a CIN
/// tile) among threads: a row's result never depends on the range it was computed in, so any static split gives the
/// bits one call over all rows gives.
/// </summary>
public static unsafe class InferenceKernels
{
    /// <summary>
    /// Gathers embedding rows: for samples [start, end), x0[b, f·D .. (f+1)·D) = table[featureRows[b, f]] (row-major
    /// [ΣV, D] float32), one sample ahead prefetched (each row is a cache and often TLB miss in a table of hundreds of
    /// MiB; issuing the next sample's misses early overlaps their latency with this sample's copies).
    /// </summary>
    public static void GatherRows(ReadOnlySpan<int> featureRows, int fields, float[] table, int d, Span<float> x0, int start, int end)
    {
        int fd = fields * d;
        fixed (float* t = table)
        fixed (int* rows = featureRows)
        fixed (float* x = x0)
            for (int b = start; b < end; b++)
            {
                int* rb = rows + (nint)b * fields;
                if (b + 1 < end && Sse.IsSupported)
                    for (int f = 0; f < fields; f++) Sse.Prefetch0(t + (long)rb[fields + f] * d);
                float* xb = x + (nint)b * fd;
                for (int f = 0; f < fields; f++) CopyRow(t + (long)rb[f] * d, xb + f * d, d);
            }
    }

    /// <summary>As <see cref="GatherRows(ReadOnlySpan{int}, int, float[], int, Span{float}, int, int)"/> from a bfloat16
    /// table [ΣV, D] (half the bytes per row), widened exactly to float32 on the way.</summary>
    public static void GatherRows(ReadOnlySpan<int> featureRows, int fields, ushort[] table, int d, Span<float> x0, int start, int end)
    {
        int fd = fields * d;
        fixed (ushort* t = table)
        fixed (int* rows = featureRows)
        fixed (float* x = x0)
            for (int b = start; b < end; b++)
            {
                int* rb = rows + (nint)b * fields;
                if (b + 1 < end && Sse.IsSupported)
                    for (int f = 0; f < fields; f++) Sse.Prefetch0(t + (long)rb[fields + f] * d);
                float* xb = x + (nint)b * fd;
                for (int f = 0; f < fields; f++) WidenRow(t + (long)rb[f] * d, xb + f * d, d);
            }
    }

    /// <summary>
    /// Copies one embedding row of <paramref name="d"/> floats with whole vectors where they fit (a gather copies tens of
    /// thousands of short rows per batch; a memmove call per row cost more than the copy at D = 10–16).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void CopyRow(float* src, float* dst, int d)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= d - 16; i += 16) Vector512.Load(src + i).Store(dst + i);
        if (Vector256.IsHardwareAccelerated)
            for (; i <= d - 8; i += 8) Vector256.Load(src + i).Store(dst + i);
        if (Vector128.IsHardwareAccelerated)
            for (; i <= d - 4; i += 4) Vector128.Load(src + i).Store(dst + i);
        for (; i < d; i++) dst[i] = src[i];
    }

    /// <summary>
    /// Widens one bf16 embedding row of <paramref name="d"/> values to float32, inlined into the gather loop (a call per
    /// row cost as much as the widening at D = 10). A tail of fewer than 8 values after at least 8 is one more 8-wide
    /// vector ending at the row's end: widening is exact, so the overlap gets the same values again.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void WidenRow(ushort* src, float* dst, int d)
    {
        int i = 0;
        if (Avx512F.IsSupported)
            for (; i <= d - 16; i += 16) Bf16.Widen16(src + i).Store(dst + i);
        if (Avx2.IsSupported && d >= 8)
        {
            for (; i <= d - 8; i += 8) Bf16.Widen8(src + i).Store(dst + i);
            if (i < d) Bf16.Widen8(src + d - 8).Store(dst + d - 8);
            return;
        }
        for (; i < d; i++) dst[i] = Bf16.ToFloat(src[i]);
    }

    /// <summary>Rows [start, end) of y [rows, width] ← bias [width] (the GEMM then adds with beta = 1).</summary>
    public static void FillRows(Span<float> y, int width, ReadOnlySpan<float> bias, int start, int end)
    {
        for (int b = start; b < end; b++) bias.Slice(0, width).CopyTo(y.Slice(b * width, width));
    }

    /// <summary>logit[b] += x[b, :] · w for b in [start, end), x [rows, w.Length] (the last linear of a tower).</summary>
    public static void AddRowDots(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> logit, int start, int end)
    {
        int width = w.Length;
        for (int b = start; b < end; b++) logit[b] += TensorPrimitives.Dot(x.Slice(b * width, width), w);
    }

    /// <summary>
    /// The CIN's X^0 tile in "d-major" rows for samples [t0, t1) of a tile starting at sample <paramref name="b0"/>:
    /// x0t[t·D + d, j] = x0[b0 + t, j, d] (x0 [B, F, D] flat, x0t [n·D, F]).
    /// </summary>
    public static void CinTransposeX0(ReadOnlySpan<float> x0, int b0, int fields, int d, Span<float> x0t, int t0, int t1)
    {
        int fd = fields * d;
        for (int t = t0; t < t1; t++)
        {
            var xs = x0.Slice((b0 + t) * fd, fd);
            for (int j = 0; j < fields; j++)
                for (int dd = 0; dd < d; dd++) x0t[(t * d + dd) * fields + j] = xs[j * d + dd];
        }
    }

    /// <summary>
    /// Rows [r0, r1) of the CIN's outer-product tile: z[r, i·F + j] = h[r, i] · x0t[r, j] for i &lt; <paramref name="inMaps"/>,
    /// h row r at prev[r·prevStride], z [rows, inMaps·F].
    /// </summary>
    public static void CinOuterRows(ReadOnlySpan<float> x0t, int fields, ReadOnlySpan<float> prev, int prevStride, int inMaps,
        Span<float> z, int r0, int r1)
    {
        int channels = inMaps * fields;
        for (int r = r0; r < r1; r++)
        {
            var xr = x0t.Slice(r * fields, fields);
            var hr = prev.Slice(r * prevStride, inMaps);
            var zr = z.Slice(r * channels, channels);
            for (int i = 0; i < hr.Length; i++) TensorPrimitives.Multiply(xr, hr[i], zr.Slice(i * fields, fields));
        }
    }

    /// <summary>
    /// Rows [r0, r1) of the CIN's outer-product tile straight to uint8 for <see cref="Int8Gemm"/>, without the float tile:
    /// row r's products h_i·x_j are quantised over their range [min(0, min h·x), max(0, max h·x)] — found from the four
    /// products of h's and x's extremes, since rounding is monotone — exactly as <see cref="Int8Gemm.QuantizeRows"/>
    /// would quantise the float tile of <see cref="CinOuterRows"/> (same bytes, scales and zero points; tested).
    /// zq [rows, PaddedK(inMaps·F)].
    /// </summary>
    public static void CinOuterRowsQuantized(ReadOnlySpan<float> x0t, int fields, ReadOnlySpan<float> prev, int prevStride, int inMaps,
        byte* zq, float* scale, int* zeroPoint, int r0, int r1)
    {
        int channels = inMaps * fields, kp = Int8Gemm.PaddedK(channels);
        for (int r = r0; r < r1; r++)
        {
            var xr = x0t.Slice(r * fields, fields);
            var hr = prev.Slice(r * prevStride, inMaps);
            float xMin = TensorPrimitives.Min(xr), xMax = TensorPrimitives.Max(xr);
            float hMin = TensorPrimitives.Min(hr), hMax = TensorPrimitives.Max(hr);
            float p0 = hMin * xMin, p1 = hMin * xMax, p2 = hMax * xMin, p3 = hMax * xMax;
            float lo = Math.Min(0f, Math.Min(Math.Min(p0, p1), Math.Min(p2, p3)));
            float hi = Math.Max(0f, Math.Max(Math.Max(p0, p1), Math.Max(p2, p3)));
            if (!float.IsFinite(lo) || !float.IsFinite(hi))
                throw new ArgumentException($"CIN tile row {r} holds a non-finite value.");
            float s = (hi - lo) / 255f;
            if (s == 0f) s = 1f;
            int z = Math.Clamp((int)MathF.Round(-lo / s), 0, 255);
            scale[r] = s;
            zeroPoint[r] = z;
            float inv = 1f / s;
            byte* dst = zq + (nint)r * kp;
            fixed (float* x = xr)
                for (int i = 0; i < hr.Length; i++)
                    QuantizeProducts(x, fields, hr[i], inv, z, dst + i * fields);
            for (int p = channels; p < kp; p++) dst[p] = (byte)z;
        }
    }

    /// <summary>dst[j] = clamp(round(fl(h·x[j]) · inv) + z, 0, 255): the product rounded to float first, as in the float tile.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void QuantizeProducts(float* x, int n, float h, float inv, int z, byte* dst)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported)
        {
            var vh = Vector512.Create(h);
            var vinv = Vector512.Create(inv);
            var vz = Vector512.Create(z);
            var top = Vector512.Create(255);
            for (; j <= n - 16; j += 16)
            {
                var q = Avx512F.ConvertToVector512Int32(Vector512.Load(x + j) * vh * vinv) + vz;
                Avx512F.ConvertToVector128Byte(Vector512.Min(Vector512.Max(q, Vector512<int>.Zero), top)).Store(dst + j);
            }
            if (j < n && n >= 16)
            {
                // The tail (F = 39: 7 values) as one more vector over the last 16: the overlap gets the same bytes again.
                j = n - 16;
                var q = Avx512F.ConvertToVector512Int32(Vector512.Load(x + j) * vh * vinv) + vz;
                Avx512F.ConvertToVector128Byte(Vector512.Min(Vector512.Max(q, Vector512<int>.Zero), top)).Store(dst + j);
                return;
            }
        }
        for (; j < n; j++)
        {
            float product = x[j] * h;
            dst[j] = (byte)Math.Clamp((int)MathF.Round(product * inv, MidpointRounding.ToEven) + z, 0, 255);
        }
    }

    /// <summary>
    /// The CIN's sum-pooling for samples [t0, t1) of a tile: pooled[t, offset + c] += Σ_d y[(t·D + d)·stride + first + c]
    /// for c &lt; width (pooled [n, outWidth]).
    /// </summary>
    public static void CinPool(ReadOnlySpan<float> y, int stride, int d, int first, int width, Span<float> pooled, int outWidth, int offset,
        int t0, int t1)
    {
        for (int t = t0; t < t1; t++)
        {
            var dst = pooled.Slice(t * outWidth + offset, width);
            for (int dd = 0; dd < d; dd++) TensorPrimitives.Add(dst, y.Slice((t * d + dd) * stride + first, width), dst);
        }
    }
}
