using System.Numerics;
using KdEngine.Kernels.Cpu;
using KdEngine.Tensors;

namespace KdEngine.Backends;

public sealed partial class CpuBackend<T>
{
    /// <inheritdoc/>
    public void CopyBlocks(TensorStorage<T> source, int sourceOffset, int sourceStride,
        TensorStorage<T> destination, int destinationOffset, int destinationStride,
        int blockLength, int blockCount, bool accumulate)
        => StructuralKernels.CopyBlocks<T>(S(source), sourceOffset, sourceStride, S(destination), destinationOffset,
            destinationStride, blockLength, blockCount, accumulate);
}
