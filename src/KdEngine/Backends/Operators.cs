using System.Numerics;
using System.Runtime.Intrinsics;

namespace KdEngine.Backends;

/// <summary>
/// An elementwise unary function with its derivative, written once and used by every backend (the CPU
/// driver calls the vector forms; a GPU kernel calls the scalar forms). <c>p</c> is an op parameter
/// (LeakyReLU's slope, a temperature, a scale); operators that need none ignore it.
/// </summary>
public interface IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    static abstract T Invoke(T x, T p);

    /// <summary>dy/dx at x, given y = Invoke(x, p) (so sigmoid and exp can reuse their output).</summary>
    static abstract T Derivative(T x, T y, T p);

    static abstract Vector512<T> Invoke(Vector512<T> x, Vector512<T> p);

    static abstract Vector512<T> Derivative(Vector512<T> x, Vector512<T> y, Vector512<T> p);

    static abstract Vector256<T> Invoke(Vector256<T> x, Vector256<T> p);

    static abstract Vector256<T> Derivative(Vector256<T> x, Vector256<T> y, Vector256<T> p);
}

/// <summary>
/// An elementwise binary function z = f(a, b) with both partial derivatives, shared by every backend.
/// </summary>
public interface IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    static abstract T Invoke(T a, T b);
    static abstract T DerivativeA(T a, T b);
    static abstract T DerivativeB(T a, T b);

    static abstract Vector512<T> Invoke(Vector512<T> a, Vector512<T> b);

    static abstract Vector256<T> Invoke(Vector256<T> a, Vector256<T> b);
}
