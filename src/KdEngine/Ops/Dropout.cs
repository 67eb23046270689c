using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Tensors;

namespace KdEngine.Ops;

public static partial class Op
{
    /// <summary>
    /// Inverted dropout: each element is zeroed with probability <paramref name="rate"/> and the survivors are
    /// scaled by 1/(1 − rate), so the expectation is unchanged and inference needs no rescaling. The mask is a
    /// pure function of (seed, element index, rate) — same seed, same mask, on any backend and element type;
    /// use a fresh seed per step (e.g. hash of epoch and step). Backward: dx += g∘mask (the node is a Mul
    /// by a constant mask tensor, named "Dropout").
    /// When <paramref name="training"/> is false or rate is 0 it returns <paramref name="x"/> itself (no copy,
    /// no node). A rate outside [0, 1) throws.
    /// </summary>
    public static Tensor<T> Dropout<T>(Tensor<T> x, T rate, ulong seed, bool training) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(x);
        if (!(rate >= T.Zero && rate < T.One)) // also rejects NaN
            throw new ArgumentException($"Dropout: rate must be in [0, 1); got {rate} (input {x.Describe()}).", nameof(rate));
        if (!training || rate == T.Zero) return x;
        var mask = Tape<T>.NewTensor(x.Shape, x.Backend, clear: false);
        x.Backend.DropoutMask(mask.Storage, mask.Length, double.CreateChecked(rate), seed);
        return Map2Node<T, MultiplyOperator<T>>.Forward(x, mask, "Dropout");
    }
}
