using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Tensors;

namespace KdEngine.Backends;

/// <summary>
/// Embedding primitives: row gathers from a table [rows, width] by host-side integer ids, their scatter-add
/// backwards (dense into a table-shaped gradient, or row-sparse into a <see cref="SparseRowGradient{T}"/>),
/// bag pooling for multi-valued fields, and a per-row scale. Ids are validated by the calling op on the host;
/// kernels assume every id lies in [0, rows).
/// </summary>
public partial interface IBackend<T>
{
    /// <summary>
    /// output[outputOffset + n·outputStride + d] = table[ids[n·idStride]·width + d] for n &lt; count, d &lt; width.
    /// (idStride/outputStride let one call gather one field's column of a [batch, fields] id matrix into
    /// the matching slots of a [batch, fields, width] output.)
    /// </summary>
    void GatherRows(TensorStorage<T> table, int width, ReadOnlySpan<int> ids, int idStride, int count,
        TensorStorage<T> output, int outputOffset, int outputStride);

    /// <summary>The dense backward of <see cref="GatherRows"/>: gradTable[ids[n·idStride], :] += grad[gradOffset + n·gradStride, :].</summary>
    void ScatterAddRows(TensorStorage<T> grad, int gradOffset, int gradStride, int width,
        ReadOnlySpan<int> ids, int idStride, int count, TensorStorage<T> gradTable);

    /// <summary>The row-sparse backward of <see cref="GatherRows"/>: touched rows only, duplicates summed.</summary>
    void ScatterAddRowsSparse(TensorStorage<T> grad, int gradOffset, int gradStride, int width,
        ReadOnlySpan<int> ids, int idStride, int count, SparseRowGradient<T> gradTable);

    /// <summary>
    /// output[b, :] = s_b · Σ_{k ∈ [offsets[b], offsets[b+1])} table[ids[k], :] with s_b = 1 (sum) or 1/|bag b| (mean);
    /// an empty bag gives zeros. output is [offsets.Length − 1, width].
    /// </summary>
    void BagSum(TensorStorage<T> table, int width, ReadOnlySpan<int> ids, ReadOnlySpan<int> offsets, bool mean, TensorStorage<T> output);

    /// <summary>The dense backward of <see cref="BagSum"/>: gradTable[ids[k], :] += s_b · grad[b, :].</summary>
    void BagSumBackward(TensorStorage<T> grad, int width, ReadOnlySpan<int> ids, ReadOnlySpan<int> offsets, bool mean, TensorStorage<T> gradTable);

    /// <summary>The row-sparse backward of <see cref="BagSum"/>.</summary>
    void BagSumBackwardSparse(TensorStorage<T> grad, int width, ReadOnlySpan<int> ids, ReadOnlySpan<int> offsets, bool mean,
        SparseRowGradient<T> gradTable);

    /// <summary>y[n, :] = x[n, :] · s[n] for x, y [rows, width], s [rows].</summary>
    void ScaleRows(TensorStorage<T> x, TensorStorage<T> s, TensorStorage<T> y, int rows, int width);

    /// <summary>
    /// The backward of <see cref="ScaleRows"/>: gradX[n, :] += g[n, :]·s[n] and gradS[n] += Σ_d g[n, d]·x[n, d].
    /// Either gradient may be null when not needed.
    /// </summary>
    void ScaleRowsBackward(TensorStorage<T> x, TensorStorage<T> s, TensorStorage<T> gradY,
        TensorStorage<T>? gradX, TensorStorage<T>? gradS, int rows, int width);
}
