using System.Numerics;
using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Nn;

/// <summary>The FM second-order term ½·Σ_d[(Σ_f x0_fd)² − Σ_f x0_fd²] = Σ_{f&lt;g} ⟨x0_f, x0_g⟩: x0 [B, F, D] → [B, 1].
/// No parameters; generic like the ops, so the same code is gradient-checked in double.</summary>
public static class FmInteraction
{
    /// <summary>x0 [B, F, D] → the FM second-order term [B, 1].</summary>
    public static Tensor<T> Forward<T>(Tensor<T> x0) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var sum = Op.Sum(x0, axis: 1);                            // [B, D]  Σ_f x0
        var sumSq = Op.Sum(Op.Mul(x0, x0), axis: 1);              // [B, D]  Σ_f x0²
        var diff = Op.Sub(Op.Mul(sum, sum), sumSq);               // [B, D]
        var z = Op.Scale(Op.Sum(diff, axis: 1), T.CreateChecked(0.5)); // [B]
        return Op.Reshape(z, -1, 1);                              // [B, 1]
    }
}
