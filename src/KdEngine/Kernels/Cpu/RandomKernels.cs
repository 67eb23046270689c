using System.Numerics;

namespace KdEngine.Kernels.Cpu;

/// <summary>Counter-based random masks: element i depends only on (seed, i), never on a sequential state.</summary>
internal static class RandomKernels
{
    /// <summary>SplitMix64's finaliser: a bijective, well-mixed hash of a 64-bit counter.</summary>
    public static ulong SplitMix64(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A uniform double in [0, 1) for element <paramref name="index"/> of stream <paramref name="seed"/>.</summary>
    public static double Uniform(ulong seed, int index)
        => (SplitMix64(SplitMix64(seed) + (ulong)index) >> 11) * (1.0 / (1UL << 53));

    public static void DropoutMask<T>(Span<T> mask, double rate, ulong seed) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T keep = T.CreateChecked(1.0 / (1.0 - rate));
        for (int i = 0; i < mask.Length; i++)
            mask[i] = Uniform(seed, i) < rate ? T.Zero : keep;
    }
}
