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
    /// <summary>y = f(x) for one element; <paramref name="p"/> is the op parameter.</summary>
    static abstract T Invoke(T x, T p);

    /// <summary>dy/dx at x, given y = Invoke(x, p) (so sigmoid and exp can reuse their output).</summary>
    static abstract T Derivative(T x, T y, T p);

    /// <summary>f over a 512-bit vector of elements (the CPU kernels' widest path).</summary>
    static abstract Vector512<T> Invoke(Vector512<T> x, Vector512<T> p);

    /// <summary>f' over a 512-bit vector, given x and y = f(x).</summary>
    static abstract Vector512<T> Derivative(Vector512<T> x, Vector512<T> y, Vector512<T> p);

    /// <summary>f over a 256-bit vector of elements (AVX2 machines, and the 256-bit tail of the 512-bit loops).</summary>
    static abstract Vector256<T> Invoke(Vector256<T> x, Vector256<T> p);

    /// <summary>f' over a 256-bit vector, given x and y = f(x).</summary>
    static abstract Vector256<T> Derivative(Vector256<T> x, Vector256<T> y, Vector256<T> p);
}

/// <summary>
/// An elementwise binary function z = f(a, b) with both partial derivatives, shared by every backend.
/// </summary>
public interface IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>z = f(a, b) for one element.</summary>
    static abstract T Invoke(T a, T b);
    /// <summary>∂f/∂a at (a, b).</summary>
    static abstract T DerivativeA(T a, T b);
    /// <summary>∂f/∂b at (a, b).</summary>
    static abstract T DerivativeB(T a, T b);

    /// <summary>f over 512-bit vectors of a and b.</summary>
    static abstract Vector512<T> Invoke(Vector512<T> a, Vector512<T> b);

    /// <summary>f over 256-bit vectors of a and b.</summary>
    static abstract Vector256<T> Invoke(Vector256<T> a, Vector256<T> b);
}
