namespace KdEngine.Kernels.Cpu;

/// <summary>Single-precision GEMM for the CPU backend (row-major, optional transposes).</summary>
internal static class Sgemm
{
    public static void Multiply(bool transposeA, bool transposeB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, ReadOnlySpan<float> b, float beta, Span<float> c)
        => Gemm<float>.Reference(transposeA, transposeB, m, n, k, alpha, a, b, beta, c);
}
