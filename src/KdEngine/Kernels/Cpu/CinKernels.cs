using System.Numerics;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// The CIN (xDeepFM) outer product over field axes and the block transpose that moves a batch between the
/// sample-major layout [B, C, D] and the GEMM-friendly channel-major layout [C, B·D].
/// </summary>
/// <remarks>
/// One geometry serves both layouts of the outer product z (samples s ∈ [first, first + samples)):
/// z[(s − first)·sampleStride + (i·F + j)·rowStride + d] = h[s, i, d] · x0[s, j, d], with h [B, H, D], x0 [B, F, D].
/// Sample-major [B, H·F, D]: sampleStride = H·F·D, rowStride = D. Channel-major tile [H·F, Bt·D]:
/// sampleStride = D, rowStride = Bt·D.
/// </remarks>
internal static class CinKernels
{
    public static void OuterProduct<T>(ReadOnlySpan<T> h, ReadOnlySpan<T> x0, Span<T> z, int first, int samples,
        int hRows, int fields, int width, int sampleStride, int rowStride) where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckGeometry(h.Length, x0.Length, z.Length, first, samples, hRows, fields, width, sampleStride, rowStride);
        for (int t = 0; t < samples; t++)
        {
            int s = first + t;
            int hBase = s * hRows * width, xBase = s * fields * width, zBase = t * sampleStride;
            for (int i = 0; i < hRows; i++)
            {
                ref T hi = ref RowSimd.At(h, hBase + i * width);
                for (int j = 0; j < fields; j++)
                    RowSimd.Multiply(ref hi, ref RowSimd.At(x0, xBase + j * width), ref RowSimd.At(z, zBase + (i * fields + j) * rowStride), width);
            }
        }
    }

    /// <summary>
    /// The backward of <see cref="OuterProduct{T}"/> (same geometry): gh[s, i, d] += Σ_j gz[…(i·F+j)…]·x0[s, j, d] and
    /// gx0[s, j, d] += Σ_i gz[…(i·F+j)…]·h[s, i, d]. Either gradient may be empty (not needed). gh and gx0 may be
    /// the very same buffer (h and x0 are one tensor in CIN's first layer): every write is a read-modify-write
    /// of memory at the moment it happens, so neither contribution can overwrite the other.
    /// </summary>
    public static void OuterProductBackward<T>(ReadOnlySpan<T> h, ReadOnlySpan<T> x0, ReadOnlySpan<T> gz, Span<T> gh, Span<T> gx0,
        int first, int samples, int hRows, int fields, int width, int sampleStride, int rowStride) where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckGeometry(h.Length, x0.Length, gz.Length, first, samples, hRows, fields, width, sampleStride, rowStride);
        bool wantH = !gh.IsEmpty, wantX = !gx0.IsEmpty;
        if (wantH && gh.Length < h.Length) throw new ArgumentException($"OuterProductBackward: gh has {gh.Length} elements, h {h.Length}.");
        if (wantX && gx0.Length < x0.Length) throw new ArgumentException($"OuterProductBackward: gx0 has {gx0.Length} elements, x0 {x0.Length}.");
        for (int t = 0; t < samples; t++)
        {
            int s = first + t;
            int hBase = s * hRows * width, xBase = s * fields * width, zBase = t * sampleStride;
            for (int i = 0; i < hRows; i++)
            {
                ref T hi = ref RowSimd.At(h, hBase + i * width);
                for (int j = 0; j < fields; j++)
                {
                    ref T g = ref RowSimd.At(gz, zBase + (i * fields + j) * rowStride);
                    if (wantH) RowSimd.MultiplyAdd(ref g, ref RowSimd.At(x0, xBase + j * width), ref RowSimd.At(gh, hBase + i * width), width);
                    if (wantX) RowSimd.MultiplyAdd(ref g, ref hi, ref RowSimd.At(gx0, xBase + j * width), width);
                }
            }
        }
    }

    /// <summary>
    /// Views x (from xOffset) as [rows, cols, inner] and writes y (from yOffset) as [cols, rows, inner]:
    /// y[c, r, :] (+)= x[r, c, :]. Overwrites unless <paramref name="accumulate"/>.
    /// </summary>
    public static void TransposeBlocks<T>(ReadOnlySpan<T> x, int xOffset, Span<T> y, int yOffset, int rows, int cols, int inner, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        long n = (long)rows * cols * inner;
        if (xOffset < 0 || yOffset < 0 || xOffset + n > x.Length || yOffset + n > y.Length)
            throw new ArgumentException($"TransposeBlocks: [{rows}, {cols}, {inner}] at offsets {xOffset}/{yOffset} does not fit buffers of {x.Length}/{y.Length}.");
        for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
        {
            var src = x.Slice(xOffset + (r * cols + c) * inner, inner);
            var dst = y.Slice(yOffset + (c * rows + r) * inner, inner);
            if (accumulate) RowSimd.ScaleAdd(ref RowSimd.At(src, 0), T.One, ref RowSimd.At(dst, 0), inner);
            else src.CopyTo(dst);
        }
    }

    private static void CheckGeometry(int hLength, int xLength, int zLength, int first, int samples, int hRows, int fields, int width,
        int sampleStride, int rowStride)
    {
        if (samples == 0) return;
        long hNeed = (long)(first + samples) * hRows * width, xNeed = (long)(first + samples) * fields * width;
        long zNeed = (long)(samples - 1) * sampleStride + (long)(hRows * fields - 1) * rowStride + width;
        if (first < 0 || hNeed > hLength || xNeed > xLength || (hRows * fields > 0 && zNeed > zLength))
            throw new ArgumentException(
                $"OuterProduct geometry: samples [{first}, {first + samples}), H {hRows}, F {fields}, D {width}, strides {sampleStride}/{rowStride} " +
                $"need h {hNeed}, x0 {xNeed}, z {zNeed} elements; have {hLength}, {xLength}, {zLength}.");
    }
}
