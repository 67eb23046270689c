using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// SIMD loops over one short row (an embedding of width D, typically 8–64): Vector512 where the hardware
/// has it, then Vector256, then a scalar tail. Written by hand rather than through TensorPrimitives because
/// the embedding and CIN kernels call them millions of times per batch on rows of 10–16 elements, where a
/// library call's dispatch overhead is comparable to the work itself.
/// </summary>
internal static class RowSimd
{
    /// <summary>dst[d] = a[d] · b[d].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Multiply<T>(ref T a, ref T b, ref T dst, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
                (Vector512.LoadUnsafe(ref a, (nuint)i) * Vector512.LoadUnsafe(ref b, (nuint)i)).StoreUnsafe(ref dst, (nuint)i);
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
                (Vector256.LoadUnsafe(ref a, (nuint)i) * Vector256.LoadUnsafe(ref b, (nuint)i)).StoreUnsafe(ref dst, (nuint)i);
        for (; i < n; i++) Unsafe.Add(ref dst, i) = Unsafe.Add(ref a, i) * Unsafe.Add(ref b, i);
    }

    /// <summary>acc[d] += a[d] · b[d].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd<T>(ref T a, ref T b, ref T acc, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
                (Vector512.LoadUnsafe(ref acc, (nuint)i) + Vector512.LoadUnsafe(ref a, (nuint)i) * Vector512.LoadUnsafe(ref b, (nuint)i))
                    .StoreUnsafe(ref acc, (nuint)i);
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
                (Vector256.LoadUnsafe(ref acc, (nuint)i) + Vector256.LoadUnsafe(ref a, (nuint)i) * Vector256.LoadUnsafe(ref b, (nuint)i))
                    .StoreUnsafe(ref acc, (nuint)i);
        for (; i < n; i++) Unsafe.Add(ref acc, i) += Unsafe.Add(ref a, i) * Unsafe.Add(ref b, i);
    }

    /// <summary>acc[d] += s · x[d].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleAdd<T>(ref T x, T s, ref T acc, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var sv = Vector512.Create(s);
            for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
                (Vector512.LoadUnsafe(ref acc, (nuint)i) + sv * Vector512.LoadUnsafe(ref x, (nuint)i)).StoreUnsafe(ref acc, (nuint)i);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var sv = Vector256.Create(s);
            for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
                (Vector256.LoadUnsafe(ref acc, (nuint)i) + sv * Vector256.LoadUnsafe(ref x, (nuint)i)).StoreUnsafe(ref acc, (nuint)i);
        }
        for (; i < n; i++) Unsafe.Add(ref acc, i) += s * Unsafe.Add(ref x, i);
    }

    /// <summary>dst[d] = s · x[d].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scale<T>(ref T x, T s, ref T dst, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var sv = Vector512.Create(s);
            for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
                (sv * Vector512.LoadUnsafe(ref x, (nuint)i)).StoreUnsafe(ref dst, (nuint)i);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var sv = Vector256.Create(s);
            for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
                (sv * Vector256.LoadUnsafe(ref x, (nuint)i)).StoreUnsafe(ref dst, (nuint)i);
        }
        for (; i < n; i++) Unsafe.Add(ref dst, i) = s * Unsafe.Add(ref x, i);
    }

    /// <summary>Σ_d a[d] · b[d].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Dot<T>(ref T a, ref T b, int n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = 0;
        T sum = T.Zero;
        if (Vector512.IsHardwareAccelerated && n >= Vector512<T>.Count)
        {
            var acc = Vector512<T>.Zero;
            for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
                acc += Vector512.LoadUnsafe(ref a, (nuint)i) * Vector512.LoadUnsafe(ref b, (nuint)i);
            sum += Vector512.Sum(acc);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= Vector256<T>.Count)
        {
            var acc = Vector256<T>.Zero;
            for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
                acc += Vector256.LoadUnsafe(ref a, (nuint)i) * Vector256.LoadUnsafe(ref b, (nuint)i);
            sum += Vector256.Sum(acc);
        }
        for (; i < n; i++) sum += Unsafe.Add(ref a, i) * Unsafe.Add(ref b, i);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref T At<T>(Span<T> s, int offset) => ref Unsafe.Add(ref MemoryMarshal.GetReference(s), offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref T At<T>(ReadOnlySpan<T> s, int offset) => ref Unsafe.Add(ref MemoryMarshal.GetReference(s), offset);
}
