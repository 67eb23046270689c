using System.Numerics;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// FFM's pairwise term over x [B, F, (F−1)·D] (see IBackend.Ffm for the slot layout): forward sums ⟨v_{f,g}, v_{g,f}⟩ over
/// the F(F−1)/2 pairs of each sample; backward gives every slot its partner times the sample's gradient.
/// </summary>
internal static class FfmKernels
{
    /// <summary>Slot of field <paramref name="other"/> in field <paramref name="field"/>'s row (other ≠ field).</summary>
    public static int Slot(int field, int other) => other < field ? other : other - 1;

    public static void Forward<T>(ReadOnlySpan<T> x, Span<T> z, int batch, int fields, int width) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int row = (fields - 1) * width, sample = fields * row;
        Check(x.Length, z.Length, batch, sample);
        for (int b = 0; b < batch; b++)
        {
            var xs = x.Slice(b * sample, sample);
            T sum = T.Zero;
            for (int f = 0; f < fields; f++)
                for (int g = f + 1; g < fields; g++)
                {
                    // v_{f,g} = slot g − 1 of field f; v_{g,f} = slot f of field g.
                    var a = xs.Slice(f * row + (g - 1) * width, width);
                    var c = xs.Slice(g * row + f * width, width);
                    T dot = T.Zero;
                    for (int d = 0; d < width; d++) dot += a[d] * c[d];
                    sum += dot;
                }
            z[b] = sum;
        }
    }

    public static void Backward<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> gz, Span<T> gx, int batch, int fields, int width) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int row = (fields - 1) * width, sample = fields * row;
        Check(x.Length, gz.Length, batch, sample);
        if (gx.Length < batch * sample) throw new ArgumentException($"FFM backward: gradient of {gx.Length} elements for [{batch}, {fields}, {row}].");
        for (int b = 0; b < batch; b++)
        {
            T g = gz[b];
            var xs = x.Slice(b * sample, sample);
            var gs = gx.Slice(b * sample, sample);
            for (int f = 0; f < fields; f++)
                for (int k = 0; k < fields - 1; k++)
                {
                    int other = k < f ? k : k + 1;
                    var partner = xs.Slice(other * row + Slot(other, f) * width, width);
                    var dst = gs.Slice(f * row + k * width, width);
                    for (int d = 0; d < width; d++) dst[d] += g * partner[d];
                }
        }
    }

    private static void Check(int x, int z, int batch, int sample)
    {
        if (batch < 0 || (long)batch * sample > x || batch > z)
            throw new ArgumentException($"FFM: {x} inputs / {z} outputs do not hold {batch} samples of {sample}.");
    }
}
