using System.Numerics;
using KdEngine.Autograd;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// Row gathers and scatters for embedding tables [rows, width]. Ids were validated by the calling op (on the
/// host, before any kernel runs); each kernel still checks its span extents once per call so that a wrong
/// geometry fails loudly instead of reading past a buffer.
/// </summary>
internal static class EmbeddingKernels
{
    /// <summary>output[outputOffset + n·outputStride + d] = table[ids[n·idStride]·width + d] for n &lt; count.</summary>
    public static void GatherRows<T>(ReadOnlySpan<T> table, int width, ReadOnlySpan<int> ids, int idStride, int count,
        Span<T> output, int outputOffset, int outputStride) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (count == 0 || width == 0) return;
        CheckStrided(ids.Length, idStride, count, 1, "ids");
        CheckStrided(output.Length - outputOffset, outputStride, count, width, "output");
        for (int n = 0; n < count; n++)
            table.Slice(ids[n * idStride] * width, width).CopyTo(output.Slice(outputOffset + n * outputStride, width));
    }

    /// <summary>The dense backward of <see cref="GatherRows{T}"/>: gradTable[ids[n·idStride]] += grad[gradOffset + n·gradStride].</summary>
    public static void ScatterAddRows<T>(ReadOnlySpan<T> grad, int gradOffset, int gradStride, int width,
        ReadOnlySpan<int> ids, int idStride, int count, Span<T> gradTable) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (count == 0 || width == 0) return;
        CheckStrided(ids.Length, idStride, count, 1, "ids");
        CheckStrided(grad.Length - gradOffset, gradStride, count, width, "gradient");
        for (int n = 0; n < count; n++)
        {
            var dst = gradTable.Slice(ids[n * idStride] * width, width);
            RowSimd.ScaleAdd(ref RowSimd.At(grad, gradOffset + n * gradStride), T.One, ref RowSimd.At(dst, 0), width);
        }
    }

    /// <summary>The row-sparse backward of <see cref="GatherRows{T}"/>: only the touched rows of the table receive gradient.</summary>
    public static void ScatterAddRowsSparse<T>(ReadOnlySpan<T> grad, int gradOffset, int gradStride, int width,
        ReadOnlySpan<int> ids, int idStride, int count, SparseRowGradient<T> gradTable) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (count == 0) return;
        CheckStrided(ids.Length, idStride, count, 1, "ids");
        if (width > 0) CheckStrided(grad.Length - gradOffset, gradStride, count, width, "gradient");
        for (int n = 0; n < count; n++)
        {
            var dst = gradTable.RowAccumulator(ids[n * idStride]); // registers the row even when width is 0
            if (width > 0) RowSimd.ScaleAdd(ref RowSimd.At(grad, gradOffset + n * gradStride), T.One, ref RowSimd.At(dst, 0), width);
        }
    }

    /// <summary>
    /// output[b] = s_b · Σ_{k ∈ [offsets[b], offsets[b+1])} table[ids[k]], with s_b = 1 (sum) or 1/|bag| (mean);
    /// an empty bag gives a zero row. output is [offsets.Length − 1, width].
    /// </summary>
    public static void BagSum<T>(ReadOnlySpan<T> table, int width, ReadOnlySpan<int> ids, ReadOnlySpan<int> offsets, bool mean,
        Span<T> output) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int bags = offsets.Length - 1;
        CheckStrided(output.Length, width, bags, width, "output");
        if (width == 0) return;
        for (int b = 0; b < bags; b++)
        {
            var dst = output.Slice(b * width, width);
            dst.Clear();
            int start = offsets[b], end = offsets[b + 1];
            if (end == start) continue;
            T s = mean ? T.One / T.CreateChecked(end - start) : T.One;
            for (int k = start; k < end; k++)
                RowSimd.ScaleAdd(ref RowSimd.At(table, ids[k] * width), s, ref RowSimd.At(dst, 0), width);
        }
    }

    /// <summary>The dense backward of <see cref="BagSum{T}"/>: gradTable[ids[k]] += s_b · grad[b] for every k in bag b.</summary>
    public static void BagSumBackward<T>(ReadOnlySpan<T> grad, int width, ReadOnlySpan<int> ids, ReadOnlySpan<int> offsets, bool mean,
        Span<T> gradTable) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int bags = offsets.Length - 1;
        CheckStrided(grad.Length, width, bags, width, "gradient");
        if (width == 0) return;
        for (int b = 0; b < bags; b++)
        {
            int start = offsets[b], end = offsets[b + 1];
            if (end == start) continue;
            T s = mean ? T.One / T.CreateChecked(end - start) : T.One;
            for (int k = start; k < end; k++)
                RowSimd.ScaleAdd(ref RowSimd.At(grad, b * width), s, ref RowSimd.At(gradTable, ids[k] * width), width);
        }
    }

    /// <summary>The row-sparse backward of <see cref="BagSum{T}"/>.</summary>
    public static void BagSumBackwardSparse<T>(ReadOnlySpan<T> grad, int width, ReadOnlySpan<int> ids, ReadOnlySpan<int> offsets, bool mean,
        SparseRowGradient<T> gradTable) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int bags = offsets.Length - 1;
        CheckStrided(grad.Length, width, bags, width, "gradient");
        for (int b = 0; b < bags; b++)
        {
            int start = offsets[b], end = offsets[b + 1];
            if (end == start) continue;
            T s = mean ? T.One / T.CreateChecked(end - start) : T.One;
            for (int k = start; k < end; k++)
            {
                var dst = gradTable.RowAccumulator(ids[k]);
                if (width > 0) RowSimd.ScaleAdd(ref RowSimd.At(grad, b * width), s, ref RowSimd.At(dst, 0), width);
            }
        }
    }

    /// <summary>y[n, d] = x[n, d] · s[n] for x, y [rows, width] and s [rows].</summary>
    public static void ScaleRows<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> s, Span<T> y, int rows, int width)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckStrided(x.Length, width, rows, width, "x");
        CheckStrided(y.Length, width, rows, width, "y");
        if (s.Length < rows) throw new ArgumentException($"ScaleRows: {s.Length} scales for {rows} rows.");
        for (int n = 0; n < rows; n++)
            RowSimd.Scale(ref RowSimd.At(x, n * width), s[n], ref RowSimd.At(y, n * width), width);
    }

    /// <summary>The backward of <see cref="ScaleRows{T}"/>: gx[n, :] += g[n, :]·s[n]; gs[n] += Σ_d g[n, d]·x[n, d].</summary>
    public static void ScaleRowsBackward<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> s, ReadOnlySpan<T> g, Span<T> gx, Span<T> gs,
        int rows, int width) where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckStrided(g.Length, width, rows, width, "gradient");
        bool wantX = !gx.IsEmpty, wantS = !gs.IsEmpty;
        for (int n = 0; n < rows; n++)
        {
            if (wantX) RowSimd.ScaleAdd(ref RowSimd.At(g, n * width), s[n], ref RowSimd.At(gx, n * width), width);
            if (wantS) gs[n] += RowSimd.Dot(ref RowSimd.At(g, n * width), ref RowSimd.At(x, n * width), width);
        }
    }

    /// <summary>Checks that <paramref name="count"/> items of <paramref name="width"/> elements at <paramref name="stride"/> fit in <paramref name="available"/>.</summary>
    internal static void CheckStrided(int available, int stride, int count, int width, string what)
    {
        if (count <= 0) return;
        long needed = (long)(count - 1) * stride + width;
        if (needed > available)
            throw new ArgumentException($"Kernel geometry: {what} needs {needed} elements ({count} × width {width} at stride {stride}) but has {available}.");
    }
}
