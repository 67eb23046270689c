using System.Numerics;
using KdEngine.Kernels.Cpu;
using KdEngine.Tensors;

namespace KdEngine.Backends;

public sealed partial class CpuBackend<T>
{
    /// <inheritdoc/>
    public void FieldOuterProduct(TensorStorage<T> h, TensorStorage<T> x0, TensorStorage<T> z, int first, int samples,
        int hRows, int fields, int width, int sampleStride, int rowStride)
        => CinKernels.OuterProduct<T>(S(h), S(x0), S(z), first, samples, hRows, fields, width, sampleStride, rowStride);

    /// <inheritdoc/>
    public void FieldOuterProductBackward(TensorStorage<T> h, TensorStorage<T> x0, TensorStorage<T> gradZ,
        TensorStorage<T>? gradH, TensorStorage<T>? gradX0, int first, int samples,
        int hRows, int fields, int width, int sampleStride, int rowStride)
        => CinKernels.OuterProductBackward<T>(S(h), S(x0), S(gradZ),
            gradH is null ? default : S(gradH), gradX0 is null ? default : S(gradX0),
            first, samples, hRows, fields, width, sampleStride, rowStride);

    /// <inheritdoc/>
    public void TransposeBlocks(TensorStorage<T> x, int xOffset, TensorStorage<T> y, int yOffset, int rows, int cols, int inner, bool accumulate)
        => CinKernels.TransposeBlocks<T>(S(x), xOffset, S(y), yOffset, rows, cols, inner, accumulate);
}
