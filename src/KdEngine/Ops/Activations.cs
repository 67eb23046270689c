using System.Numerics;
using System.Runtime.Intrinsics;
using KdEngine.Backends;
using KdEngine.Tensors;

namespace KdEngine.Ops;

// Elementwise activations and math functions. Each is an operator struct (value and derivative side by side,
// scalar + Vector512 + Vector256 forms) run by MapNode (Pointwise.cs) through IBackend.Map / MapBackward.

/// <summary>LeakyReLU: x for x &gt; 0, p·x otherwise (p = slope); derivative 1 or p.</summary>
public readonly struct LeakyReluOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T x, T p) => x > T.Zero ? x : p * x;
    /// <inheritdoc/>
    public static T Derivative(T x, T y, T p) => x > T.Zero ? T.One : p;
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> x, Vector512<T> p)
        => Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<T>.Zero), x, p * x);
    /// <inheritdoc/>
    public static Vector512<T> Derivative(Vector512<T> x, Vector512<T> y, Vector512<T> p)
        => Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512<T>.Zero), Vector512<T>.One, p);
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> x, Vector256<T> p)
        => Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256<T>.Zero), x, p * x);
    /// <inheritdoc/>
    public static Vector256<T> Derivative(Vector256<T> x, Vector256<T> y, Vector256<T> p)
        => Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256<T>.Zero), Vector256<T>.One, p);
}

/// <summary>
/// σ(p·x) with p = 1/temperature (p = 1 is the plain sigmoid); derivative p·y·(1 − y). With p = 1/T this is
/// the binary KD head: softmax over the two-class logits [0, z] at temperature T puts σ(z/T) on class 1.
/// </summary>
public readonly struct SigmoidOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T x, T p) => SimdMath.Sigmoid(p * x);
    /// <inheritdoc/>
    public static T Derivative(T x, T y, T p) => p * y * (T.One - y);
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> x, Vector512<T> p) => SimdMath.Sigmoid(p * x);
    /// <inheritdoc/>
    public static Vector512<T> Derivative(Vector512<T> x, Vector512<T> y, Vector512<T> p) => p * y * (Vector512<T>.One - y);
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> x, Vector256<T> p) => SimdMath.Sigmoid(p * x);
    /// <inheritdoc/>
    public static Vector256<T> Derivative(Vector256<T> x, Vector256<T> y, Vector256<T> p) => p * y * (Vector256<T>.One - y);
}

/// <summary>
/// tanh(x); derivative 1 − y². Vector form: (1 − e)/(1 + e)·sign(x) with e = exp(−2|x|) ∈ (0, 1] (no overflow),
/// and for |x| &lt; 1/8 — where 1 − e cancels — the odd Taylor series to x¹¹ (relative error &lt; 1e-13 there).
/// </summary>
public readonly struct TanhOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private static readonly T Small = T.CreateChecked(0.125);
    private static readonly T C3 = T.CreateChecked(-1.0 / 3), C5 = T.CreateChecked(2.0 / 15), C7 = T.CreateChecked(-17.0 / 315),
        C9 = T.CreateChecked(62.0 / 2835), C11 = T.CreateChecked(-1382.0 / 155925), Two = T.CreateChecked(2);

    /// <inheritdoc/>
    public static T Invoke(T x, T p) => T.Tanh(x);
    /// <inheritdoc/>
    public static T Derivative(T x, T y, T p) => T.One - y * y;

    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> x, Vector512<T> p)
    {
        var ax = Vector512.Abs(x);
        var e = SimdMath.Exp(-Vector512.Create(Two) * ax);
        var big = (Vector512<T>.One - e) / (Vector512<T>.One + e);
        big = Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512<T>.Zero), -big, big);
        var x2 = x * x;
        var poly = x * (Vector512<T>.One + x2 * (Vector512.Create(C3) + x2 * (Vector512.Create(C5) + x2 * (Vector512.Create(C7)
            + x2 * (Vector512.Create(C9) + x2 * Vector512.Create(C11))))));
        return Vector512.ConditionalSelect(Vector512.LessThan(ax, Vector512.Create(Small)), poly, big);
    }

    /// <inheritdoc/>
    public static Vector512<T> Derivative(Vector512<T> x, Vector512<T> y, Vector512<T> p) => Vector512<T>.One - y * y;

    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> x, Vector256<T> p)
    {
        var ax = Vector256.Abs(x);
        var e = SimdMath.Exp(-Vector256.Create(Two) * ax);
        var big = (Vector256<T>.One - e) / (Vector256<T>.One + e);
        big = Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256<T>.Zero), -big, big);
        var x2 = x * x;
        var poly = x * (Vector256<T>.One + x2 * (Vector256.Create(C3) + x2 * (Vector256.Create(C5) + x2 * (Vector256.Create(C7)
            + x2 * (Vector256.Create(C9) + x2 * Vector256.Create(C11))))));
        return Vector256.ConditionalSelect(Vector256.LessThan(ax, Vector256.Create(Small)), poly, big);
    }

    /// <inheritdoc/>
    public static Vector256<T> Derivative(Vector256<T> x, Vector256<T> y, Vector256<T> p) => Vector256<T>.One - y * y;
}

/// <summary>e^x; derivative e^x = y.</summary>
public readonly struct ExpOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T x, T p) => T.Exp(x);
    /// <inheritdoc/>
    public static T Derivative(T x, T y, T p) => y;
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> x, Vector512<T> p) => SimdMath.Exp(x);
    /// <inheritdoc/>
    public static Vector512<T> Derivative(Vector512<T> x, Vector512<T> y, Vector512<T> p) => y;
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> x, Vector256<T> p) => SimdMath.Exp(x);
    /// <inheritdoc/>
    public static Vector256<T> Derivative(Vector256<T> x, Vector256<T> y, Vector256<T> p) => y;
}

/// <summary>ln x; derivative 1/x.</summary>
public readonly struct LogOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T x, T p) => T.Log(x);
    /// <inheritdoc/>
    public static T Derivative(T x, T y, T p) => T.One / x;
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> x, Vector512<T> p) => SimdMath.Log(x);
    /// <inheritdoc/>
    public static Vector512<T> Derivative(Vector512<T> x, Vector512<T> y, Vector512<T> p) => Vector512<T>.One / x;
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> x, Vector256<T> p) => SimdMath.Log(x);
    /// <inheritdoc/>
    public static Vector256<T> Derivative(Vector256<T> x, Vector256<T> y, Vector256<T> p) => Vector256<T>.One / x;
}

/// <summary>−x; derivative −1.</summary>
public readonly struct NegateOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T x, T p) => -x;
    /// <inheritdoc/>
    public static T Derivative(T x, T y, T p) => -T.One;
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> x, Vector512<T> p) => -x;
    /// <inheritdoc/>
    public static Vector512<T> Derivative(Vector512<T> x, Vector512<T> y, Vector512<T> p) => -Vector512<T>.One;
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> x, Vector256<T> p) => -x;
    /// <inheritdoc/>
    public static Vector256<T> Derivative(Vector256<T> x, Vector256<T> y, Vector256<T> p) => -Vector256<T>.One;
}

/// <summary>x²; derivative 2x.</summary>
public readonly struct SquareOperator<T> : IUnaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T x, T p) => x * x;
    /// <inheritdoc/>
    public static T Derivative(T x, T y, T p) => x + x;
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> x, Vector512<T> p) => x * x;
    /// <inheritdoc/>
    public static Vector512<T> Derivative(Vector512<T> x, Vector512<T> y, Vector512<T> p) => x + x;
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> x, Vector256<T> p) => x * x;
    /// <inheritdoc/>
    public static Vector256<T> Derivative(Vector256<T> x, Vector256<T> y, Vector256<T> p) => x + x;
}

/// <summary>
/// The differentiable operations, generic over float and double (the double instantiation drives the gradient
/// checks). Each returns a new tensor; while a recording <see cref="KdEngine.Autograd.Tape{T}"/> is current and an
/// input requires a gradient, it also records the node its backward runs from. Shapes are checked first and a
/// mismatch is an <see cref="ArgumentException"/> naming the op, the operands and their shapes.
/// </summary>
public static partial class Op
{
    /// <summary>x for x &gt; 0, slope·x otherwise.</summary>
    public static Tensor<T> LeakyRelu<T>(Tensor<T> x, T slope) where T : unmanaged, IFloatingPointIeee754<T>
        => MapNode<T, LeakyReluOperator<T>>.Forward(x, slope, "LeakyRelu");

    /// <summary>σ(x) = 1/(1 + e^(−x)), elementwise; never NaN for large |x|.</summary>
    public static Tensor<T> Sigmoid<T>(Tensor<T> x) where T : unmanaged, IFloatingPointIeee754<T>
        => MapNode<T, SigmoidOperator<T>>.Forward(x, T.One, "Sigmoid");

    /// <summary>
    /// σ(z/T): the class-1 probability of the two-class softmax over [0, z] at temperature T (the binary KD head).
    /// </summary>
    public static Tensor<T> SigmoidWithTemperature<T>(Tensor<T> z, T temperature) where T : unmanaged, IFloatingPointIeee754<T>
        => MapNode<T, SigmoidOperator<T>>.Forward(z, OpChecks.InverseTemperature(temperature, "SigmoidWithTemperature"), "SigmoidWithTemperature");

    /// <summary>tanh(x), elementwise.</summary>
    public static Tensor<T> Tanh<T>(Tensor<T> x) where T : unmanaged, IFloatingPointIeee754<T>
        => MapNode<T, TanhOperator<T>>.Forward(x, T.Zero, "Tanh");

    /// <summary>e^x, elementwise.</summary>
    public static Tensor<T> Exp<T>(Tensor<T> x) where T : unmanaged, IFloatingPointIeee754<T>
        => MapNode<T, ExpOperator<T>>.Forward(x, T.Zero, "Exp");

    /// <summary>
    /// ln x, elementwise. Every input must be positive and finite: a zero, negative, NaN or ∞ input throws an
    /// <see cref="ArgumentException"/> naming the first offending index and value, instead of leaving a −∞/NaN
    /// to surface later as a NaN loss. (Take logs of probabilities via <see cref="LogSoftmax{T}"/>, which is
    /// finite by construction.)
    /// </summary>
    public static Tensor<T> Log<T>(Tensor<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var y = MapNode<T, LogOperator<T>>.Forward(x, T.Zero, "Log");
        // ln is finite exactly where x is positive and finite, so one scan of the output checks the input.
        int bad = y.Backend.FirstNonFinite(y.Storage, y.Length);
        if (bad >= 0)
            throw new ArgumentException(
                $"Log: input {x.Describe()} has the value {OpChecks.ValueAt(x, bad)} at index {OpChecks.IndexString(x.Shape, bad)} (flat {bad}); the logarithm needs positive finite inputs.");
        return y;
    }

    /// <summary>−x, elementwise.</summary>
    public static Tensor<T> Neg<T>(Tensor<T> x) where T : unmanaged, IFloatingPointIeee754<T>
        => MapNode<T, NegateOperator<T>>.Forward(x, T.Zero, "Neg");

    /// <summary>x², elementwise.</summary>
    public static Tensor<T> Square<T>(Tensor<T> x) where T : unmanaged, IFloatingPointIeee754<T>
        => MapNode<T, SquareOperator<T>>.Forward(x, T.Zero, "Square");
}
