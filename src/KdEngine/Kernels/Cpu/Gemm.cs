using System.Numerics;
using System.Runtime.CompilerServices;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// Row-major GEMM entry point: C = alpha·op(A)·op(B) + beta·C. float goes to the packed SIMD
/// <see cref="Sgemm"/>; double (used by gradient checks) takes a plain, exact reference loop.
/// </summary>
internal static class Gemm<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static void Multiply(bool transposeA, bool transposeB, int m, int n, int k, T alpha,
        ReadOnlySpan<T> a, ReadOnlySpan<T> b, T beta, Span<T> c)
    {
        if (typeof(T) == typeof(float))
        {
            Sgemm.Multiply(transposeA, transposeB, m, n, k, float.CreateTruncating(alpha),
                System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(a),
                System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(b),
                float.CreateTruncating(beta),
                System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(c));
            return;
        }
        Reference(transposeA, transposeB, m, n, k, alpha, a, b, beta, c);
    }

    /// <summary>The obviously-correct triple loop, used for double and as the test oracle.</summary>
    public static void Reference(bool transposeA, bool transposeB, int m, int n, int k, T alpha,
        ReadOnlySpan<T> a, ReadOnlySpan<T> b, T beta, Span<T> c)
    {
        for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
        {
            T sum = T.Zero;
            for (int p = 0; p < k; p++)
            {
                T av = transposeA ? a[p * m + i] : a[i * k + p];
                T bv = transposeB ? b[j * k + p] : b[p * n + j];
                sum += av * bv;
            }
            ref T cij = ref c[i * n + j];
            cij = beta == T.Zero ? alpha * sum : alpha * sum + beta * cij;
        }
    }
}
