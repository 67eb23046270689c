using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace KdEngine.Backends;

/// <summary>
/// Vector exp, log, sigmoid and softplus for the operator structs, each written once over <see cref="IVectorOps{T, TV}"/>;
/// the Vector512/Vector256 overloads the operators call are one-line instantiations. Exp and log use the BCL's vector
/// functions for float and double (<see cref="Vector512Ops{T}.Exp"/>), lane by lane for other element types.
/// </summary>
internal static class SimdMath
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Exp<T>(Vector512<T> x) where T : unmanaged, IFloatingPointIeee754<T> => Vector512Ops<T>.Exp(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Exp<T>(Vector256<T> x) where T : unmanaged, IFloatingPointIeee754<T> => Vector256Ops<T>.Exp(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Log<T>(Vector512<T> x) where T : unmanaged, IFloatingPointIeee754<T> => Vector512Ops<T>.Log(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Log<T>(Vector256<T> x) where T : unmanaged, IFloatingPointIeee754<T> => Vector256Ops<T>.Log(x);

    /// <summary>σ(x) = 1 / (1 + e^(−x)); for x → −∞, e^(−x) → +∞ and the quotient → 0 (never NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Sigmoid<T>(Vector512<T> x) where T : unmanaged, IFloatingPointIeee754<T> => Sigmoid<T, Vector512<T>, Vector512Ops<T>>(x);

    /// <inheritdoc cref="Sigmoid{T}(Vector512{T})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Sigmoid<T>(Vector256<T> x) where T : unmanaged, IFloatingPointIeee754<T> => Sigmoid<T, Vector256<T>, Vector256Ops<T>>(x);

    /// <summary>softplus(x) = log(1 + e^x) = max(x, 0) + log(1 + e^(−|x|)): never evaluates e^(+large).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Softplus<T>(Vector512<T> x) where T : unmanaged, IFloatingPointIeee754<T> => Softplus<T, Vector512<T>, Vector512Ops<T>>(x);

    /// <inheritdoc cref="Softplus{T}(Vector512{T})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Softplus<T>(Vector256<T> x) where T : unmanaged, IFloatingPointIeee754<T> => Softplus<T, Vector256<T>, Vector256Ops<T>>(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV Sigmoid<T, TV, TS>(TV x) where T : unmanaged, IFloatingPointIeee754<T> where TV : struct where TS : IVectorOps<T, TV>
        => TS.Divide(TS.One, TS.Add(TS.One, TS.Exp(TS.Negate(x))));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV Softplus<T, TV, TS>(TV x) where T : unmanaged, IFloatingPointIeee754<T> where TV : struct where TS : IVectorOps<T, TV>
        // log(1 + e^(−|x|)) + max(x, 0): the same sum (addition commutes exactly), with the calls first so nothing is live across them.
        => TS.Add(TS.Log(TS.Add(TS.One, TS.Exp(TS.Negate(TS.Abs(x))))), TS.PositivePart(x));

    /// <summary>Scalar σ(x) without overflow for either sign of x.</summary>
    public static T Sigmoid<T>(T x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (x >= T.Zero) return T.One / (T.One + T.Exp(-x));
        T e = T.Exp(x);
        return e / (T.One + e);
    }

    /// <summary>Scalar softplus(x) = max(x, 0) + log1p(e^(−|x|)).</summary>
    public static T Softplus<T>(T x) where T : unmanaged, IFloatingPointIeee754<T>
        => T.Max(x, T.Zero) + T.LogP1(T.Exp(-T.Abs(x)));
}
