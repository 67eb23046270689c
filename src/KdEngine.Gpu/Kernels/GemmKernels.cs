using ILGPU;

namespace KdEngine.Gpu.Kernels;

/// <summary>
/// Row-major C = alpha·op(A)·op(B) + beta·C as a tiled shared-memory kernel: a tile×tile group computes one
/// tile×tile block of C, staging tile-wide slabs of op(A) and op(B) in shared memory so each global element is
/// read once per group instead of once per thread. Used on OpenCL and the CPU accelerator; CUDA uses cuBLAS.
/// The tile edge is a launch argument ≤ <see cref="MaxTile"/> (shared memory is sized for the maximum) because
/// accelerators differ in group size: 16×16 = 256 threads on GPUs, 4×4 on ILGPU's CPU accelerator (16 threads).
/// </summary>
internal static class GemmKernels
{
    public const int MaxTile = 16;

    public static void Tiled(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, int m, int n, int k,
        float alpha, float beta, int transposeA, int transposeB, int tile)
    {
        var sa = SharedMemory.Allocate<float>(MaxTile * MaxTile);
        var sb = SharedMemory.Allocate<float>(MaxTile * MaxTile);
        int tx = Group.IdxX, ty = Group.IdxY;
        int row = Grid.IdxY * tile + ty, col = Grid.IdxX * tile + tx;
        float acc = 0f;
        for (int t0 = 0; t0 < k; t0 += tile)
        {
            int la = t0 + tx; // op(A)[row, la]: A is [m, k], or [k, m] when transposed
            sa[ty * tile + tx] = row < m && la < k ? (transposeA != 0 ? a[la * m + row] : a[row * k + la]) : 0f;
            int lb = t0 + ty; // op(B)[lb, col]: B is [k, n], or [n, k] when transposed
            sb[ty * tile + tx] = lb < k && col < n ? (transposeB != 0 ? b[col * k + lb] : b[lb * n + col]) : 0f;
            Group.Barrier();
            for (int q = 0; q < tile; q++) acc += sa[ty * tile + q] * sb[q * tile + tx];
            Group.Barrier();
        }
        if (row < m && col < n)
        {
            int o = row * n + col;
            c[o] = beta == 0f ? alpha * acc : alpha * acc + beta * c[o]; // beta = 0 never reads C (it may hold garbage)
        }
    }
}
