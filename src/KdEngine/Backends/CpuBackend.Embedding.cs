using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Kernels.Cpu;
using KdEngine.Tensors;

namespace KdEngine.Backends;

public sealed partial class CpuBackend<T>
{
    /// <inheritdoc/>
    public void GatherRows(TensorStorage<T> table, int width, ReadOnlySpan<int> ids, int idStride, int count,
        TensorStorage<T> output, int outputOffset, int outputStride)
        => EmbeddingKernels.GatherRows<T>(S(table), width, ids, idStride, count, S(output), outputOffset, outputStride);

    /// <inheritdoc/>
    public void ScatterAddRows(TensorStorage<T> grad, int gradOffset, int gradStride, int width,
        ReadOnlySpan<int> ids, int idStride, int count, TensorStorage<T> gradTable)
        => EmbeddingKernels.ScatterAddRows<T>(S(grad), gradOffset, gradStride, width, ids, idStride, count, S(gradTable));

    /// <inheritdoc/>
    public void ScatterAddRowsSparse(TensorStorage<T> grad, int gradOffset, int gradStride, int width,
        ReadOnlySpan<int> ids, int idStride, int count, SparseRowGradient<T> gradTable)
        => EmbeddingKernels.ScatterAddRowsSparse<T>(S(grad), gradOffset, gradStride, width, ids, idStride, count, gradTable);

    /// <inheritdoc/>
    public void BagSum(TensorStorage<T> table, int width, ReadOnlySpan<int> ids, ReadOnlySpan<int> offsets, bool mean, TensorStorage<T> output)
        => EmbeddingKernels.BagSum<T>(S(table), width, ids, offsets, mean, S(output));

    /// <inheritdoc/>
    public void BagSumBackward(TensorStorage<T> grad, int width, ReadOnlySpan<int> ids, ReadOnlySpan<int> offsets, bool mean, TensorStorage<T> gradTable)
        => EmbeddingKernels.BagSumBackward<T>(S(grad), width, ids, offsets, mean, S(gradTable));

    /// <inheritdoc/>
    public void BagSumBackwardSparse(TensorStorage<T> grad, int width, ReadOnlySpan<int> ids, ReadOnlySpan<int> offsets, bool mean,
        SparseRowGradient<T> gradTable)
        => EmbeddingKernels.BagSumBackwardSparse<T>(S(grad), width, ids, offsets, mean, gradTable);

    /// <inheritdoc/>
    public void ScaleRows(TensorStorage<T> x, TensorStorage<T> s, TensorStorage<T> y, int rows, int width)
        => EmbeddingKernels.ScaleRows<T>(S(x), S(s), S(y), rows, width);

    /// <inheritdoc/>
    public void ScaleRowsBackward(TensorStorage<T> x, TensorStorage<T> s, TensorStorage<T> gradY,
        TensorStorage<T>? gradX, TensorStorage<T>? gradS, int rows, int width)
        => EmbeddingKernels.ScaleRowsBackward<T>(S(x), S(s), S(gradY),
            gradX is null ? default : S(gradX), gradS is null ? default : S(gradS), rows, width);
}
