using System.Numerics;
using KdEngine.Tensors;

namespace KdEngine.Backends;

public partial interface IBackend<T>
{
    /// <summary>
    /// Writes an inverted-dropout mask: mask[i] = 0 with probability <paramref name="rate"/>, else 1/(1 − rate).
    /// Counter-based: element i draws u_i = SplitMix64(seed + i) mapped to [0, 1) in double, dropped when
    /// u_i &lt; rate — so the mask depends only on (seed, i, rate), is identical on every backend and for
    /// float and double, and needs no sequential state (a GPU thread per element computes the same value).
    /// </summary>
    void DropoutMask(TensorStorage<T> mask, int length, double rate, ulong seed);
}
