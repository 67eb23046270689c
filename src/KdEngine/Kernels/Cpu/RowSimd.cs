using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KdEngine.Backends;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// SIMD loops over one short row (an embedding of width D, typically 8–64): Vector512 where the hardware has it, then
/// Vector256 over what is left, then a scalar tail; each loop is written once over <see cref="IVectorOps{T, TV}"/>.
/// Written by hand rather than through TensorPrimitives because the embedding and CIN kernels call them millions of
/// times per batch on rows of 10–16 elements, where a library call's dispatch overhead is comparable to the work itself.
/// </summary>
internal static class RowSimd
{
    /// <summary>dst[d] = a[d] · b[d].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Multiply<T>(ref T a, ref T b, ref T dst, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) i = Multiply<T, Vector512<T>, Vector512Ops<T>>(ref a, ref b, ref dst, i, n);
        if (Vector256.IsHardwareAccelerated) i = Multiply<T, Vector256<T>, Vector256Ops<T>>(ref a, ref b, ref dst, i, n);
        for (; i < n; i++) Unsafe.Add(ref dst, i) = Unsafe.Add(ref a, i) * Unsafe.Add(ref b, i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Multiply<T, TV, TS>(ref T a, ref T b, ref T dst, int i, int n)
        where T : unmanaged, IFloatingPointIeee754<T> where TV : struct where TS : IVectorOps<T, TV>
    {
        for (; i <= n - TS.Count; i += TS.Count)
            TS.Store(TS.Multiply(TS.Load(ref a, i), TS.Load(ref b, i)), ref dst, i);
        return i;
    }

    /// <summary>acc[d] += a[d] · b[d].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd<T>(ref T a, ref T b, ref T acc, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) i = MultiplyAdd<T, Vector512<T>, Vector512Ops<T>>(ref a, ref b, ref acc, i, n);
        if (Vector256.IsHardwareAccelerated) i = MultiplyAdd<T, Vector256<T>, Vector256Ops<T>>(ref a, ref b, ref acc, i, n);
        for (; i < n; i++) Unsafe.Add(ref acc, i) += Unsafe.Add(ref a, i) * Unsafe.Add(ref b, i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int MultiplyAdd<T, TV, TS>(ref T a, ref T b, ref T acc, int i, int n)
        where T : unmanaged, IFloatingPointIeee754<T> where TV : struct where TS : IVectorOps<T, TV>
    {
        for (; i <= n - TS.Count; i += TS.Count)
            TS.Store(TS.Add(TS.Load(ref acc, i), TS.Multiply(TS.Load(ref a, i), TS.Load(ref b, i))), ref acc, i);
        return i;
    }

    /// <summary>acc[d] += s · x[d].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleAdd<T>(ref T x, T s, ref T acc, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) i = ScaleAdd<T, Vector512<T>, Vector512Ops<T>>(ref x, s, ref acc, i, n);
        if (Vector256.IsHardwareAccelerated) i = ScaleAdd<T, Vector256<T>, Vector256Ops<T>>(ref x, s, ref acc, i, n);
        for (; i < n; i++) Unsafe.Add(ref acc, i) += s * Unsafe.Add(ref x, i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ScaleAdd<T, TV, TS>(ref T x, T s, ref T acc, int i, int n)
        where T : unmanaged, IFloatingPointIeee754<T> where TV : struct where TS : IVectorOps<T, TV>
    {
        var sv = TS.Create(s);
        for (; i <= n - TS.Count; i += TS.Count)
            TS.Store(TS.Add(TS.Load(ref acc, i), TS.Multiply(sv, TS.Load(ref x, i))), ref acc, i);
        return i;
    }

    /// <summary>dst[d] = s · x[d].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scale<T>(ref T x, T s, ref T dst, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated) i = Scale<T, Vector512<T>, Vector512Ops<T>>(ref x, s, ref dst, i, n);
        if (Vector256.IsHardwareAccelerated) i = Scale<T, Vector256<T>, Vector256Ops<T>>(ref x, s, ref dst, i, n);
        for (; i < n; i++) Unsafe.Add(ref dst, i) = s * Unsafe.Add(ref x, i);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Scale<T, TV, TS>(ref T x, T s, ref T dst, int i, int n)
        where T : unmanaged, IFloatingPointIeee754<T> where TV : struct where TS : IVectorOps<T, TV>
    {
        var sv = TS.Create(s);
        for (; i <= n - TS.Count; i += TS.Count)
            TS.Store(TS.Multiply(sv, TS.Load(ref x, i)), ref dst, i);
        return i;
    }

    /// <summary>Σ_d a[d] · b[d].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Dot<T>(ref T a, ref T b, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        T sum = T.Zero;
        if (Vector512.IsHardwareAccelerated && n >= Vector512<T>.Count) sum += Dot<T, Vector512<T>, Vector512Ops<T>>(ref a, ref b, ref i, n);
        if (Vector256.IsHardwareAccelerated && n - i >= Vector256<T>.Count) sum += Dot<T, Vector256<T>, Vector256Ops<T>>(ref a, ref b, ref i, n);
        for (; i < n; i++) sum += Unsafe.Add(ref a, i) * Unsafe.Add(ref b, i);
        return sum;
    }

    /// <summary>The sum of a·b over whole vectors from <paramref name="i"/>, which it advances past them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T Dot<T, TV, TS>(ref T a, ref T b, ref int i, int n)
        where T : unmanaged, IFloatingPointIeee754<T> where TV : struct where TS : IVectorOps<T, TV>
    {
        var acc = TS.Zero;
        for (; i <= n - TS.Count; i += TS.Count)
            acc = TS.Add(acc, TS.Multiply(TS.Load(ref a, i), TS.Load(ref b, i)));
        return TS.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref T At<T>(Span<T> s, int offset) => ref Unsafe.Add(ref MemoryMarshal.GetReference(s), offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref T At<T>(ReadOnlySpan<T> s, int offset) => ref Unsafe.Add(ref MemoryMarshal.GetReference(s), offset);
}
