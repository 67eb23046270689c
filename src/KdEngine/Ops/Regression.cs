using System.Numerics;
using System.Runtime.Intrinsics;
using KdEngine.Backends;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>ℓ(a, b) = (a − b)²; ∂ℓ/∂a = 2(a − b), ∂ℓ/∂b = −2(a − b).</summary>
public readonly struct SquaredErrorOperator<T> : IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T a, T b) { T d = a - b; return d * d; }
    /// <inheritdoc/>
    public static T DerivativeA(T a, T b) { T d = a - b; return d + d; }
    /// <inheritdoc/>
    public static T DerivativeB(T a, T b) { T d = b - a; return d + d; }
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) { var d = a - b; return d * d; }
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> a, Vector256<T> b) { var d = a - b; return d * d; }
}

public static partial class Op
{
    /// <summary>
    /// mean((a − b)²) over all elements (a scalar); a and b of the same shape. Rocket Launching's hint loss is
    /// Mse(z_light, StopGradient(z_booster)). NaN/∞ in either input throws.
    /// </summary>
    public static Tensor<T> Mse<T>(Tensor<T> a, Tensor<T> b) where T : unmanaged, IFloatingPointIeee754<T>
    {
        const string op = "Mse";
        RequireLossPair(a, b, op, "first operand", "second operand");
        OpChecks.RequireFinite(a, op, "first operand");
        OpChecks.RequireFinite(b, op, "second operand");
        return Mean(Map2Node<T, SquaredErrorOperator<T>>.Forward(a, b, op));
    }

    /// <summary>Σ x² over all elements (a scalar): L2 penalties and hint losses ‖W·h_s − sg(h_t)‖². NaN/∞ throws.</summary>
    public static Tensor<T> SumSquares<T>(Tensor<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        OpChecks.RequireFinite(x, "SumSquares", "input");
        return Sum(MapNode<T, SquareOperator<T>>.Forward(x, T.Zero, "SumSquares"));
    }
}
