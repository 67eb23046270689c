using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KdEngine.Backends;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// The shared SIMD driver loops for elementwise operators: each loop is written once over
/// <see cref="IVectorOps{T, TV}"/> and run at the widest width the hardware accelerates (Vector512, else Vector256),
/// then a scalar tail. Operators supply only the per-lane math.
/// </summary>
internal static class ElementwiseKernels
{
    /// <summary>y[i] = TOp(x[i], p).</summary>
    public static void Map<T, TOp>(ReadOnlySpan<T> x, Span<T> y, T p)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : IUnaryOperator<T>
    {
        ref T xr = ref MemoryMarshal.GetReference(x);
        ref T yr = ref MemoryMarshal.GetReference(y);
        int n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated) i = Map<T, TOp, Vector512<T>, Vector512Ops<T>>(ref xr, ref yr, p, n);
        else if (Vector256.IsHardwareAccelerated) i = Map<T, TOp, Vector256<T>, Vector256Ops<T>>(ref xr, ref yr, p, n);
        for (; i < n; i++) Unsafe.Add(ref yr, i) = TOp.Invoke(Unsafe.Add(ref xr, i), p);
    }

    /// <summary>The vector part of <see cref="Map{T, TOp}(ReadOnlySpan{T}, Span{T}, T)"/>; returns where the scalar tail starts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Map<T, TOp, TV, TS>(ref T xr, ref T yr, T p, int n)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : IUnaryOperator<T> where TV : struct where TS : IVectorOps<T, TV>
    {
        var pv = TS.Create(p);
        int i = 0;
        for (; i <= n - TS.Count; i += TS.Count)
            TS.Store(TS.Unary<TOp>(TS.Load(ref xr, i), pv), ref yr, i);
        return i;
    }

    /// <summary>gx[i] += gy[i] · TOp'(x[i], y[i], p).</summary>
    public static void MapBackward<T, TOp>(ReadOnlySpan<T> x, ReadOnlySpan<T> y, ReadOnlySpan<T> gy, Span<T> gx, T p)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : IUnaryOperator<T>
    {
        ref T xr = ref MemoryMarshal.GetReference(x);
        ref T yr = ref MemoryMarshal.GetReference(y);
        ref T gyr = ref MemoryMarshal.GetReference(gy);
        ref T gxr = ref MemoryMarshal.GetReference(gx);
        int n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated) i = MapBackward<T, TOp, Vector512<T>, Vector512Ops<T>>(ref xr, ref yr, ref gyr, ref gxr, p, n);
        else if (Vector256.IsHardwareAccelerated) i = MapBackward<T, TOp, Vector256<T>, Vector256Ops<T>>(ref xr, ref yr, ref gyr, ref gxr, p, n);
        for (; i < n; i++)
            Unsafe.Add(ref gxr, i) += Unsafe.Add(ref gyr, i) * TOp.Derivative(Unsafe.Add(ref xr, i), Unsafe.Add(ref yr, i), p);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int MapBackward<T, TOp, TV, TS>(ref T xr, ref T yr, ref T gyr, ref T gxr, T p, int n)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : IUnaryOperator<T> where TV : struct where TS : IVectorOps<T, TV>
    {
        var pv = TS.Create(p);
        int i = 0;
        for (; i <= n - TS.Count; i += TS.Count)
        {
            var d = TS.UnaryDerivative<TOp>(TS.Load(ref xr, i), TS.Load(ref yr, i), pv);
            TS.Store(TS.Add(TS.Load(ref gxr, i), TS.Multiply(d, TS.Load(ref gyr, i))), ref gxr, i);
        }
        return i;
    }

    /// <summary>z[i] = TOp(a[i], b[i mod b.Length]).</summary>
    public static void Map2<T, TOp>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> z)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : IBinaryOperator<T>
    {
        int period = b.Length;
        if (period == 1)
        {
            // A scalar b: one pass over a with b broadcast into every lane.
            T bv = b[0];
            ref T ar = ref MemoryMarshal.GetReference(a);
            ref T zr = ref MemoryMarshal.GetReference(z);
            int n = a.Length, i = 0;
            if (Vector512.IsHardwareAccelerated) i = Map2Scalar<T, TOp, Vector512<T>, Vector512Ops<T>>(ref ar, bv, ref zr, n);
            else if (Vector256.IsHardwareAccelerated) i = Map2Scalar<T, TOp, Vector256<T>, Vector256Ops<T>>(ref ar, bv, ref zr, n);
            for (; i < n; i++) Unsafe.Add(ref zr, i) = TOp.Invoke(Unsafe.Add(ref ar, i), bv);
            return;
        }
        for (int row = 0; row < a.Length; row += period)
            Map2Row<T, TOp>(a.Slice(row, period), b, z.Slice(row, period));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Map2Scalar<T, TOp, TV, TS>(ref T ar, T b, ref T zr, int n)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : IBinaryOperator<T> where TV : struct where TS : IVectorOps<T, TV>
    {
        var bv = TS.Create(b);
        int i = 0;
        for (; i <= n - TS.Count; i += TS.Count)
            TS.Store(TS.Binary<TOp>(TS.Load(ref ar, i), bv), ref zr, i);
        return i;
    }

    private static void Map2Row<T, TOp>(ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> z)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : IBinaryOperator<T>
    {
        ref T ar = ref MemoryMarshal.GetReference(a);
        ref T br = ref MemoryMarshal.GetReference(b);
        ref T zr = ref MemoryMarshal.GetReference(z);
        int n = a.Length, i = 0;
        if (Vector512.IsHardwareAccelerated) i = Map2Row<T, TOp, Vector512<T>, Vector512Ops<T>>(ref ar, ref br, ref zr, n);
        else if (Vector256.IsHardwareAccelerated) i = Map2Row<T, TOp, Vector256<T>, Vector256Ops<T>>(ref ar, ref br, ref zr, n);
        for (; i < n; i++) Unsafe.Add(ref zr, i) = TOp.Invoke(Unsafe.Add(ref ar, i), Unsafe.Add(ref br, i));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Map2Row<T, TOp, TV, TS>(ref T ar, ref T br, ref T zr, int n)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : IBinaryOperator<T> where TV : struct where TS : IVectorOps<T, TV>
    {
        int i = 0;
        for (; i <= n - TS.Count; i += TS.Count)
            TS.Store(TS.Binary<TOp>(TS.Load(ref ar, i), TS.Load(ref br, i)), ref zr, i);
        return i;
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
