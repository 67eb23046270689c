using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Nn;

/// <summary>The FM second-order term ½·Σ_d[(Σ_f x0_fd)² − Σ_f x0_fd²]: x0 [B, F, D] → [B, 1]. No parameters.</summary>
public static class FmInteraction
{
    /// <summary>x0 [B, F, D] → the FM second-order term [B, 1].</summary>
    public static Tensor<float> Forward(Tensor<float> x0)
    {
        var sum = Op.Sum(x0, axis: 1);                 // [B, D]  Σ_f x0
        var sumSq = Op.Sum(Op.Mul(x0, x0), axis: 1);   // [B, D]  Σ_f x0²
        var diff = Op.Sub(Op.Mul(sum, sum), sumSq);    // [B, D]
        var z = Op.Scale(Op.Sum(diff, axis: 1), 0.5f); // [B]
        return Op.Reshape(z, -1, 1);                   // [B, 1]
    }
}
