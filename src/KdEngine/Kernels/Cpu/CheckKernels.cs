using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace KdEngine.Kernels.Cpu;

/// <summary>Validation scans used by losses (reject NaN/∞ before they poison a training run).</summary>
internal static class CheckKernels
{
    /// <summary>Index of the first non-finite element, or −1. x − x is 0 for finite x and NaN for NaN and ±∞.</summary>
    public static int FirstNonFinite<T>(ReadOnlySpan<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ref T xr = ref MemoryMarshal.GetReference(x);
        int n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= n - Vector512<T>.Count; i += Vector512<T>.Count)
            {
                var v = Vector512.LoadUnsafe(ref xr, (nuint)i);
                if (!Vector512.EqualsAll(v - v, Vector512<T>.Zero)) break; // the scalar loop below finds the lane
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
            {
                var v = Vector256.LoadUnsafe(ref xr, (nuint)i);
                if (!Vector256.EqualsAll(v - v, Vector256<T>.Zero)) break;
            }
        }
        for (; i < n; i++)
            if (!T.IsFinite(Unsafe.Add(ref xr, i))) return i;
        return -1;
    }
}
