using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace KdEngine.Backends;

/// <summary>
/// One SIMD width for element type <typeparamref name="T"/> (the vector type <typeparamref name="TV"/>): the loads,
/// stores and arithmetic the elementwise, short-row, math and optimizer-update kernels use, as static abstract members. A kernel loop is
/// written once, generic over <c>TS : IVectorOps&lt;T, TV&gt;</c>, and instantiated for <see cref="Vector512Ops{T}"/>
/// and <see cref="Vector256Ops{T}"/>: the JIT specialises each struct instantiation and inlines these calls, leaving
/// the same vector instructions a hand-written Vector512 or Vector256 loop would (as <c>ISimdF32</c> does for the
/// SGEMM micro-kernels). The kernels pick the widest width the hardware accelerates and finish with scalar code.
/// </summary>
internal interface IVectorOps<T, TV> where T : unmanaged, IFloatingPointIeee754<T> where TV : struct
{
    /// <summary>Elements per vector.</summary>
    static abstract int Count { get; }
    static abstract TV Zero { get; }
    static abstract TV One { get; }
    /// <summary>Every lane = <paramref name="value"/>.</summary>
    static abstract TV Create(T value);
    /// <summary>The vector at element <paramref name="index"/> of the memory starting at <paramref name="source"/> (unaligned, unchecked).</summary>
    static abstract TV Load(ref T source, int index);
    /// <summary>Writes the vector at element <paramref name="index"/> of the memory starting at <paramref name="destination"/> (unaligned, unchecked).</summary>
    static abstract void Store(TV value, ref T destination, int index);
    static abstract TV Add(TV a, TV b);
    static abstract TV Subtract(TV a, TV b);
    static abstract TV Multiply(TV a, TV b);
    static abstract TV Divide(TV a, TV b);
    static abstract TV Negate(TV a);
    static abstract TV Max(TV a, TV b);
    static abstract TV Abs(TV a);
    /// <summary>a·b + c per lane, rounded once (≡ <c>T.FusedMultiplyAdd</c> lane by lane).</summary>
    static abstract TV FusedMultiplyAdd(TV a, TV b, TV c);
    /// <summary>√x per lane, correctly rounded.</summary>
    static abstract TV Sqrt(TV x);
    /// <summary>|value| with the sign of <paramref name="sign"/>, per lane.</summary>
    static abstract TV CopySign(TV value, TV sign);
    /// <summary>All bits set in the lanes where a ≤ b, zero elsewhere.</summary>
    static abstract TV LessThanOrEqual(TV a, TV b);
    /// <summary>Per bit: <paramref name="ifTrue"/> where <paramref name="mask"/> is set, else <paramref name="ifFalse"/>.</summary>
    static abstract TV ConditionalSelect(TV mask, TV ifTrue, TV ifFalse);
    /// <summary>max(x, 0) per lane (written with the zero constant, so the JIT emits the short form of max).</summary>
    static abstract TV PositivePart(TV x);
    /// <summary>The sum of the lanes.</summary>
    static abstract T Sum(TV v);
    /// <summary>e^x per lane (the BCL's vector exp for float and double; lane by lane for other types).</summary>
    static abstract TV Exp(TV x);
    /// <summary>ln x per lane (the BCL's vector log for float and double; lane by lane for other types).</summary>
    static abstract TV Log(TV x);
    /// <summary>An elementwise operator's vector form at this width: y = TOp(x, p).</summary>
    static abstract TV Unary<TOp>(TV x, TV p) where TOp : IUnaryOperator<T>;
    /// <summary>An elementwise operator's derivative at this width, given y = TOp(x, p).</summary>
    static abstract TV UnaryDerivative<TOp>(TV x, TV y, TV p) where TOp : IUnaryOperator<T>;
    /// <summary>A binary operator's vector form at this width: z = TOp(a, b).</summary>
    static abstract TV Binary<TOp>(TV a, TV b) where TOp : IBinaryOperator<T>;
}

/// <summary>The 512-bit width (AVX-512).</summary>
internal readonly struct Vector512Ops<T> : IVectorOps<T, Vector512<T>> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static int Count => Vector512<T>.Count;
    public static Vector512<T> Zero => Vector512<T>.Zero;
    public static Vector512<T> One => Vector512<T>.One;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Create(T value) => Vector512.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Load(ref T source, int index) => Vector512.LoadUnsafe(ref source, (nuint)index);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<T> value, ref T destination, int index) => value.StoreUnsafe(ref destination, (nuint)index);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Add(Vector512<T> a, Vector512<T> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Subtract(Vector512<T> a, Vector512<T> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Multiply(Vector512<T> a, Vector512<T> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Divide(Vector512<T> a, Vector512<T> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Negate(Vector512<T> a) => -a;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Max(Vector512<T> a, Vector512<T> b) => Vector512.Max(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Abs(Vector512<T> a) => Vector512.Abs(a);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> Sqrt(Vector512<T> x) => Vector512.Sqrt(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> CopySign(Vector512<T> value, Vector512<T> sign) => Vector512.CopySign(value, sign);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> LessThanOrEqual(Vector512<T> a, Vector512<T> b) => Vector512.LessThanOrEqual(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> ConditionalSelect(Vector512<T> mask, Vector512<T> ifTrue, Vector512<T> ifFalse) => Vector512.ConditionalSelect(mask, ifTrue, ifFalse);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> FusedMultiplyAdd(Vector512<T> a, Vector512<T> b, Vector512<T> c)
    {
        // The BCL has the fused form for float and double only; typeof(T) is a JIT-time constant.
        if (typeof(T) == typeof(float))
            return Vector512.FusedMultiplyAdd(a.As<T, float>(), b.As<T, float>(), c.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double))
            return Vector512.FusedMultiplyAdd(a.As<T, double>(), b.As<T, double>(), c.As<T, double>()).As<double, T>();
        Span<T> v = stackalloc T[Vector512<T>.Count];
        for (int i = 0; i < v.Length; i++) v[i] = T.FusedMultiplyAdd(a[i], b[i], c[i]);
        return Vector512.Create<T>(v);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<T> PositivePart(Vector512<T> x) => Vector512.Max(x, Vector512<T>.Zero);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Sum(Vector512<T> v) => Vector512.Sum(v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Exp(Vector512<T> x)
    {
        // typeof(T) is a JIT-time constant: only one branch survives.
        if (typeof(T) == typeof(float)) return Vector512.Exp(x.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector512.Exp(x.As<T, double>()).As<double, T>();
        Span<T> v = stackalloc T[Vector512<T>.Count];
        for (int i = 0; i < v.Length; i++) v[i] = T.Exp(x[i]);
        return Vector512.Create<T>(v);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Log(Vector512<T> x)
    {
        if (typeof(T) == typeof(float)) return Vector512.Log(x.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector512.Log(x.As<T, double>()).As<double, T>();
        Span<T> v = stackalloc T[Vector512<T>.Count];
        for (int i = 0; i < v.Length; i++) v[i] = T.Log(x[i]);
        return Vector512.Create<T>(v);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Unary<TOp>(Vector512<T> x, Vector512<T> p) where TOp : IUnaryOperator<T> => TOp.Invoke(x, p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> UnaryDerivative<TOp>(Vector512<T> x, Vector512<T> y, Vector512<T> p) where TOp : IUnaryOperator<T> => TOp.Derivative(x, y, p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Binary<TOp>(Vector512<T> a, Vector512<T> b) where TOp : IBinaryOperator<T> => TOp.Invoke(a, b);
}

/// <summary>The 256-bit width (AVX2; also the remainder pass after a 512-bit loop).</summary>
internal readonly struct Vector256Ops<T> : IVectorOps<T, Vector256<T>> where T : unmanaged, IFloatingPointIeee754<T>
{
    public static int Count => Vector256<T>.Count;
    public static Vector256<T> Zero => Vector256<T>.Zero;
    public static Vector256<T> One => Vector256<T>.One;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Create(T value) => Vector256.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Load(ref T source, int index) => Vector256.LoadUnsafe(ref source, (nuint)index);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<T> value, ref T destination, int index) => value.StoreUnsafe(ref destination, (nuint)index);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Add(Vector256<T> a, Vector256<T> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Subtract(Vector256<T> a, Vector256<T> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Multiply(Vector256<T> a, Vector256<T> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Divide(Vector256<T> a, Vector256<T> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Negate(Vector256<T> a) => -a;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Max(Vector256<T> a, Vector256<T> b) => Vector256.Max(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Abs(Vector256<T> a) => Vector256.Abs(a);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> Sqrt(Vector256<T> x) => Vector256.Sqrt(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> CopySign(Vector256<T> value, Vector256<T> sign) => Vector256.CopySign(value, sign);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> LessThanOrEqual(Vector256<T> a, Vector256<T> b) => Vector256.LessThanOrEqual(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> ConditionalSelect(Vector256<T> mask, Vector256<T> ifTrue, Vector256<T> ifFalse) => Vector256.ConditionalSelect(mask, ifTrue, ifFalse);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> FusedMultiplyAdd(Vector256<T> a, Vector256<T> b, Vector256<T> c)
    {
        // The BCL has the fused form for float and double only; typeof(T) is a JIT-time constant.
        if (typeof(T) == typeof(float))
            return Vector256.FusedMultiplyAdd(a.As<T, float>(), b.As<T, float>(), c.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double))
            return Vector256.FusedMultiplyAdd(a.As<T, double>(), b.As<T, double>(), c.As<T, double>()).As<double, T>();
        Span<T> v = stackalloc T[Vector256<T>.Count];
        for (int i = 0; i < v.Length; i++) v[i] = T.FusedMultiplyAdd(a[i], b[i], c[i]);
        return Vector256.Create<T>(v);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<T> PositivePart(Vector256<T> x) => Vector256.Max(x, Vector256<T>.Zero);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Sum(Vector256<T> v) => Vector256.Sum(v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Exp(Vector256<T> x)
    {
        if (typeof(T) == typeof(float)) return Vector256.Exp(x.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector256.Exp(x.As<T, double>()).As<double, T>();
        Span<T> v = stackalloc T[Vector256<T>.Count];
        for (int i = 0; i < v.Length; i++) v[i] = T.Exp(x[i]);
        return Vector256.Create<T>(v);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Log(Vector256<T> x)
    {
        if (typeof(T) == typeof(float)) return Vector256.Log(x.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector256.Log(x.As<T, double>()).As<double, T>();
        Span<T> v = stackalloc T[Vector256<T>.Count];
        for (int i = 0; i < v.Length; i++) v[i] = T.Log(x[i]);
        return Vector256.Create<T>(v);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Unary<TOp>(Vector256<T> x, Vector256<T> p) where TOp : IUnaryOperator<T> => TOp.Invoke(x, p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> UnaryDerivative<TOp>(Vector256<T> x, Vector256<T> y, Vector256<T> p) where TOp : IUnaryOperator<T> => TOp.Derivative(x, y, p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<T> Binary<TOp>(Vector256<T> a, Vector256<T> b) where TOp : IBinaryOperator<T> => TOp.Invoke(a, b);
}
