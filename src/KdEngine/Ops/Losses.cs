using System.Numerics;
using System.Runtime.Intrinsics;
using KdEngine.Backends;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>
/// Binary cross-entropy with logits, per element, in the stable form
/// ℓ(z, y) = max(z, 0) − z·y + log(1 + e^(−|z|)); ∂ℓ/∂z = σ(z) − y; ∂ℓ/∂y = −z. Never evaluates e^(+large).
/// </summary>
public readonly struct BceWithLogitsOperator<T> : IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T z, T y) => T.Max(z, T.Zero) - z * y + T.LogP1(T.Exp(-T.Abs(z)));
    /// <inheritdoc/>
    public static T DerivativeA(T z, T y) => Sigmoid(z) - y;
    /// <inheritdoc/>
    public static T DerivativeB(T z, T y) => -z;

    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> z, Vector512<T> y)
    {
        Span<T> v = stackalloc T[Vector512<T>.Count];
        for (int i = 0; i < v.Length; i++) v[i] = Invoke(z[i], y[i]);
        return Vector512.Create<T>(v);
    }

    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> z, Vector256<T> y)
    {
        Span<T> v = stackalloc T[Vector256<T>.Count];
        for (int i = 0; i < v.Length; i++) v[i] = Invoke(z[i], y[i]);
        return Vector256.Create<T>(v);
    }

    /// <summary>σ(z) computed without overflow for either sign of z.</summary>
    public static T Sigmoid(T z)
    {
        if (z >= T.Zero) return T.One / (T.One + T.Exp(-z));
        T e = T.Exp(z);
        return e / (T.One + e);
    }
}

public static partial class Op
{
    /// <summary>
    /// Mean binary cross-entropy between logits z and targets y in [0, 1] (hard labels or soft ones), both
    /// of the same shape; NaN/∞ in either throws an ArgumentException naming the first bad index. Targets are data: pass a tensor that requires no gradient, or wrap it in StopGradient.
    /// </summary>
    public static Tensor<T> BceWithLogits<T>(Tensor<T> logits, Tensor<T> targets) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (logits.Shape != targets.Shape)
            throw new ArgumentException($"BceWithLogits: logits {logits.Describe()} and targets {targets.Describe()} differ in shape.");
        OpChecks.RequireFinite(logits, "BceWithLogits", "logits");
        OpChecks.RequireFinite(targets, "BceWithLogits", "targets");
        return Mean(Map2Node<T, BceWithLogitsOperator<T>>.Forward(logits, targets, "BceWithLogits"));
    }
}
