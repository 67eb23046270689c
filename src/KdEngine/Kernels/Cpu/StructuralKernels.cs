using System.Numerics;
using System.Numerics.Tensors;

namespace KdEngine.Kernels.Cpu;

/// <summary>Strided block copies (Concat / Split and their backward).</summary>
internal static class StructuralKernels
{
    public static void CopyBlocks<T>(ReadOnlySpan<T> src, int srcOffset, int srcStride,
        Span<T> dst, int dstOffset, int dstStride, int blockLength, int blockCount, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (blockLength == 0) return;
        for (int b = 0; b < blockCount; b++)
        {
            var s = src.Slice(srcOffset + b * srcStride, blockLength);
            var d = dst.Slice(dstOffset + b * dstStride, blockLength);
            if (accumulate) TensorPrimitives.Add<T>(d, s, d);
            else s.CopyTo(d);
        }
    }
}
