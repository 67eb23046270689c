using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KdEngine.Backends;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// The shared SIMD driver loops for elementwise operators: Vector512 where the hardware has it, Vector256
/// otherwise, then a scalar tail. Operators supply only the per-lane math.
/// </summary>
internal static class ElementwiseKernels
{
    public static void Map<T, TOp>(ReadOnlySpan<T> x, Span<T> y, T p)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : IUnaryOperator<T>
    {
        ref T xr = ref MemoryMarshal.GetReference(x);
        ref T yr = ref MemoryMarshal.GetReference(y);
        int n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var pv = Vector512.Create(p);
            for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
                TOp.Invoke(Vector512.LoadUnsafe(ref xr, (nuint)i), pv).StoreUnsafe(ref yr, (nuint)i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var pv = Vector256.Create(p);
            for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
                TOp.Invoke(Vector256.LoadUnsafe(ref xr, (nuint)i), pv).StoreUnsafe(ref yr, (nuint)i);
        }
        for (; i < n; i++) Unsafe.Add(ref yr, i) = TOp.Invoke(Unsafe.Add(ref xr, i), p);
    }

    public static void MapBackward<T, TOp>(ReadOnlySpan<T> x, ReadOnlySpan<T> y, ReadOnlySpan<T> gy, Span<T> gx, T p)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : IUnaryOperator<T>
    {
        ref T xr = ref MemoryMarshal.GetReference(x);
        ref T yr = ref MemoryMarshal.GetReference(y);
        ref T gyr = ref MemoryMarshal.GetReference(gy);
        ref T gxr = ref MemoryMarshal.GetReference(gx);
        int n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var pv = Vector512.Create(p);
            for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
            {
                var d = TOp.Derivative(Vector512.LoadUnsafe(ref xr, (nuint)i), Vector512.LoadUnsafe(ref yr, (nuint)i), pv);
                (Vector512.LoadUnsafe(ref gxr, (nuint)i) + d * Vector512.LoadUnsafe(ref gyr, (nuint)i)).StoreUnsafe(ref gxr, (nuint)i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var pv = Vector256.Create(p);
            for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
            {
                var d = TOp.Derivative(Vector256.LoadUnsafe(ref xr, (nuint)i), Vector256.LoadUnsafe(ref yr, (nuint)i), pv);
                (Vector256.LoadUnsafe(ref gxr, (nuint)i) + d * Vector256.LoadUnsafe(ref gyr, (nuint)i)).StoreUnsafe(ref gxr, (nuint)i);
            }
        }
        for (; i < n; i++)
            Unsafe.Add(ref gxr, i) += Unsafe.Add(ref gyr, i) * TOp.Derivative(Unsafe.Add(ref xr, i), Unsafe.Add(ref yr, i), p);
    }

    /// <summary>z[i] = TOp(a[i], b[i mod b.Length]).</summary>
    public static void Map2<T, TOp>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> z)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : IBinaryOperator<T>
    {
        int period = b.Length;
        if (period == 1)
        {
            T bv = b[0];
            ref T ar = ref MemoryMarshal.GetReference(a);
            ref T zr = ref MemoryMarshal.GetReference(z);
            int n = a.Length, i = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                var bvec = Vector512.Create(bv);
                for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
                    TOp.Invoke(Vector512.LoadUnsafe(ref ar, (nuint)i), bvec).StoreUnsafe(ref zr, (nuint)i);
            }
            for (; i < n; i++) Unsafe.Add(ref zr, i) = TOp.Invoke(Unsafe.Add(ref ar, i), bv);
            return;
        }
        for (int row = 0; row < a.Length; row += period)
            Map2Row<T, TOp>(a.Slice(row, period), b, z.Slice(row, period));
    }

    private static void Map2Row<T, TOp>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> z)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : IBinaryOperator<T>
    {
        ref T ar = ref MemoryMarshal.GetReference(a);
        ref T br = ref MemoryMarshal.GetReference(b);
        ref T zr = ref MemoryMarshal.GetReference(z);
        int n = a.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
                TOp.Invoke(Vector512.LoadUnsafe(ref ar, (nuint)i), Vector512.LoadUnsafe(ref br, (nuint)i)).StoreUnsafe(ref zr, (nuint)i);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
                TOp.Invoke(Vector256.LoadUnsafe(ref ar, (nuint)i), Vector256.LoadUnsafe(ref br, (nuint)i)).StoreUnsafe(ref zr, (nuint)i);
        }
        for (; i < n; i++) Unsafe.Add(ref zr, i) = TOp.Invoke(Unsafe.Add(ref ar, i), Unsafe.Add(ref br, i));
    }

    /// <summary>gradA[i] += g[i]·∂a; gradB[i mod period] += g[i]·∂b. Empty spans mean "not needed".</summary>
    public static void Map2Backward<T, TOp>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, ReadOnlySpan<T> gz, Span<T> gradA, Span<T> gradB)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : IBinaryOperator<T>
    {
        int period = b.Length;
        bool needA = !gradA.IsEmpty, needB = !gradB.IsEmpty;
        for (int row = 0; row < a.Length; row += period)
        {
            for (int j = 0; j < period; j++)
            {
                T av = a[row + j], bv = b[j], g = gz[row + j];
                if (needA) gradA[row + j] += g * TOp.DerivativeA(av, bv);
                if (needB) gradB[j] += g * TOp.DerivativeB(av, bv);
            }
        }
    }
}
