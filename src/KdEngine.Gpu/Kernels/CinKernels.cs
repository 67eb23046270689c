using ILGPU;

namespace KdEngine.Gpu.Kernels;

/// <summary>CIN primitives (see IBackend.Cin): h [B, H, D], x0 [B, F, D], z addressed by (sampleStride, rowStride).</summary>
internal static class CinKernels
{
    /// <summary>Thread per (s, i, j, d): z[s·ss + (i·F + j)·rs + d] = h[first + s, i, d]·x0[first + s, j, d].</summary>
    public static void OuterProduct(Index1D t, ArrayView<float> h, ArrayView<float> x0, ArrayView<float> z, int first,
        int hRows, int fields, int width, int sampleStride, int rowStride)
    {
        int d = t % width, r = t / width;
        int j = r % fields; r /= fields;
        int i = r % hRows, s = r / hRows;
        int sample = first + s;
        z[s * sampleStride + (i * fields + j) * rowStride + d] = h[(sample * hRows + i) * width + d] * x0[(sample * fields + j) * width + d];
    }

    /// <summary>Thread per (s, i, d): gradH[first + s, i, d] += Σ_j gz(s, i, j, d)·x0[first + s, j, d].</summary>
    public static void OuterBackwardH(Index1D t, ArrayView<float> x0, ArrayView<float> gz, ArrayView<float> gradH, int first,
        int hRows, int fields, int width, int sampleStride, int rowStride)
    {
        int d = t % width, r = t / width;
        int i = r % hRows, s = r / hRows;
        int sample = first + s;
        float acc = 0f;
        for (int j = 0; j < fields; j++)
            acc += gz[s * sampleStride + (i * fields + j) * rowStride + d] * x0[(sample * fields + j) * width + d];
        gradH[(sample * hRows + i) * width + d] += acc;
    }

    /// <summary>Thread per (s, j, d): gradX0[first + s, j, d] += Σ_i gz(s, i, j, d)·h[first + s, i, d].</summary>
    public static void OuterBackwardX0(Index1D t, ArrayView<float> h, ArrayView<float> gz, ArrayView<float> gradX0, int first,
        int hRows, int fields, int width, int sampleStride, int rowStride)
    {
        int d = t % width, r = t / width;
        int j = r % fields, s = r / fields;
        int sample = first + s;
        float acc = 0f;
        for (int i = 0; i < hRows; i++)
            acc += gz[s * sampleStride + (i * fields + j) * rowStride + d] * h[(sample * hRows + i) * width + d];
        gradX0[(sample * fields + j) * width + d] += acc;
    }

    /// <summary>Thread per (r, c, e): y[yOff + (c·rows + r)·inner + e] (+)= x[xOff + (r·cols + c)·inner + e].</summary>
    public static void TransposeBlocks(Index1D t, ArrayView<float> x, int xOffset, ArrayView<float> y, int yOffset,
        int rows, int cols, int inner, int accumulate)
    {
        int e = t % inner, rc = t / inner;
        int c = rc % cols, r = rc / cols;
        int o = yOffset + (c * rows + r) * inner + e;
        float v = x[xOffset + t];
        y[o] = accumulate != 0 ? y[o] + v : v;
    }
}
