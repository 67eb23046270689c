using ILGPU;

namespace KdEngine.Gpu.Kernels;

/// <summary>FFM's pairwise term (see IBackend.Ffm): x [B, F, (F−1)·D], slot k of field f stands for field k &lt; f ? k : k + 1.</summary>
internal static class FfmKernels
{
    /// <summary>Thread per sample: z[b] = Σ_{f&lt;g} ⟨x[b, f, (g − 1)·D ..], x[b, g, f·D ..]⟩ (the CPU kernel's order).</summary>
    public static void Forward(Index1D b, ArrayView<float> x, ArrayView<float> z, int fields, int width)
    {
        int row = (fields - 1) * width;
        int index = b;
        long sample = (long)index * fields * row;
        float sum = 0f;
        for (int f = 0; f < fields; f++)
            for (int g = f + 1; g < fields; g++)
            {
                long a = sample + f * row + (g - 1) * width, c = sample + g * row + f * width;
                float dot = 0f;
                for (int d = 0; d < width; d++) dot += x[a + d] * x[c + d];
                sum += dot;
            }
        z[b] = sum;
    }

    /// <summary>Thread per element of x: gradX[b, f, k·D + d] += gradZ[b]·(the slot's partner)[d].</summary>
    public static void Backward(Index1D t, ArrayView<float> x, ArrayView<float> gz, ArrayView<float> gx, int fields, int width)
    {
        int row = (fields - 1) * width, sample = fields * row;
        int b = t / sample, r = t % sample;
        int f = r / row, k = (r % row) / width, d = r % width;
        int other = k < f ? k : k + 1;
        int slot = f < other ? f : f - 1;   // field f's slot in the other field's row
        gx[t] += gz[b] * x[(long)b * sample + other * row + slot * width + d];
    }
}
