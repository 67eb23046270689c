using System.Numerics;
using System.Numerics.Tensors;

namespace KdEngine.Kernels.Cpu;

/// <summary>Sums along one axis of a tensor viewed as [outer, axis, inner], and the matching broadcast.</summary>
internal static class ReductionKernels
{
    public static void SumAxis<T>(ReadOnlySpan<T> x, Span<T> y, int outer, int axis, int inner, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int o = 0; o < outer; o++)
        {
            var block = x.Slice(o * axis * inner, axis * inner);
            if (inner == 1)
            {
                T s = TensorPrimitives.Sum<T>(block);
                y[o] = accumulate ? y[o] + s : s;
                continue;
            }
            var dst = y.Slice(o * inner, inner);
            if (!accumulate) dst.Clear();
            for (int a = 0; a < axis; a++)
                TensorPrimitives.Add<T>(dst, block.Slice(a * inner, inner), dst);
        }
    }

    public static void BroadcastAxisAdd<T>(ReadOnlySpan<T> x, Span<T> y, int outer, int axis, int inner, T scale)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int o = 0; o < outer; o++)
        {
            var src = x.Slice(o * inner, inner);
            for (int a = 0; a < axis; a++)
            {
                var dst = y.Slice((o * axis + a) * inner, inner);
                if (inner == 1) dst[0] += scale * src[0];
                else TensorPrimitives.MultiplyAdd<T>(src, scale, dst, dst);
            }
        }
    }
}
