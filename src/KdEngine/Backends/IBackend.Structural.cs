using System.Numerics;
using KdEngine.Tensors;

namespace KdEngine.Backends;

public partial interface IBackend<T>
{
    /// <summary>
    /// Strided block copy, the primitive behind Concat and Split (and their backward): for b in [0, blockCount),
    /// dst[dstOffset + b·dstStride + j] (+)= src[srcOffset + b·srcStride + j] for j in [0, blockLength).
    /// A tensor viewed as [outer, axis·inner] has one block per outer index; the op computes offsets and strides.
    /// Adds into the destination when <paramref name="accumulate"/>, else overwrites.
    /// </summary>
    void CopyBlocks(TensorStorage<T> source, int sourceOffset, int sourceStride,
        TensorStorage<T> destination, int destinationOffset, int destinationStride,
        int blockLength, int blockCount, bool accumulate);
}
