using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace KdEngine.Backends;

/// <summary>
/// Generic vector exp/log for operator structs: the BCL's Vector512/Vector256 Exp and Log exist only for
/// float and double, so these dispatch on typeof(T) (a JIT-time constant — the untaken branch is removed).
/// Other element types fall back to a lane-by-lane scalar loop.
/// </summary>
internal static class SimdMath
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Exp<T>(Vector512<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float)) return Vector512.Exp(x.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector512.Exp(x.As<T, double>()).As<double, T>();
        Span<T> v = stackalloc T[Vector512<T>.Count];
        for (int i = 0; i < v.Length; i++) v[i] = T.Exp(x[i]);
        return Vector512.Create<T>(v);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Exp<T>(Vector256<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float)) return Vector256.Exp(x.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector256.Exp(x.As<T, double>()).As<double, T>();
        Span<T> v = stackalloc T[Vector256<T>.Count];
        for (int i = 0; i < v.Length; i++) v[i] = T.Exp(x[i]);
        return Vector256.Create<T>(v);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Log<T>(Vector512<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float)) return Vector512.Log(x.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector512.Log(x.As<T, double>()).As<double, T>();
        Span<T> v = stackalloc T[Vector512<T>.Count];
        for (int i = 0; i < v.Length; i++) v[i] = T.Log(x[i]);
        return Vector512.Create<T>(v);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Log<T>(Vector256<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float)) return Vector256.Log(x.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector256.Log(x.As<T, double>()).As<double, T>();
        Span<T> v = stackalloc T[Vector256<T>.Count];
        for (int i = 0; i < v.Length; i++) v[i] = T.Log(x[i]);
        return Vector256.Create<T>(v);
    }

    /// <summary>σ(x) = 1 / (1 + e^(−x)); for x → −∞, e^(−x) → +∞ and the quotient → 0 (never NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Sigmoid<T>(Vector512<T> x) where T : unmanaged, IFloatingPointIeee754<T>
        => Vector512<T>.One / (Vector512<T>.One + Exp(-x));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Sigmoid<T>(Vector256<T> x) where T : unmanaged, IFloatingPointIeee754<T>
        => Vector256<T>.One / (Vector256<T>.One + Exp(-x));

    /// <summary>softplus(x) = log(1 + e^x) = max(x, 0) + log(1 + e^(−|x|)): never evaluates e^(+large).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Softplus<T>(Vector512<T> x) where T : unmanaged, IFloatingPointIeee754<T>
        => Vector512.Max(x, Vector512<T>.Zero) + Log(Vector512<T>.One + Exp(-Vector512.Abs(x)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Softplus<T>(Vector256<T> x) where T : unmanaged, IFloatingPointIeee754<T>
        => Vector256.Max(x, Vector256<T>.Zero) + Log(Vector256<T>.One + Exp(-Vector256.Abs(x)));

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
