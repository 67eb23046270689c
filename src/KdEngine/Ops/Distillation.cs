using System.Numerics;
using System.Runtime.Intrinsics;
using KdEngine.Backends;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>
/// One term of KL(target ‖ model) from log-probabilities: ℓ(t, q) = e^t·(t − q).
/// ∂ℓ/∂t = e^t·(t − q + 1); ∂ℓ/∂q = −e^t.
/// </summary>
public readonly struct KlTermOperator<T> : IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T t, T q) => T.Exp(t) * (t - q);
    /// <inheritdoc/>
    public static T DerivativeA(T t, T q) => T.Exp(t) * (t - q + T.One);
    /// <inheritdoc/>
    public static T DerivativeB(T t, T q) => -T.Exp(t);
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> t, Vector512<T> q) => SimdMath.Exp(t) * (t - q);
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> t, Vector256<T> q) => SimdMath.Exp(t) * (t - q);
}

/// <summary>
/// KL(Bernoulli(σ(a)) ‖ Bernoulli(σ(b))) from logits a (target) and b (model), in the overflow-free form
/// ℓ(a, b) = softplus(b) − softplus(a) − σ(a)·(b − a)
/// (from log σ(x) = −softplus(−x), log(1 − σ(x)) = −softplus(x) and softplus(x) − softplus(−x) = x).
/// It is exactly 0 when a == b. ∂ℓ/∂b = σ(b) − σ(a); ∂ℓ/∂a = −σ(a)·(1 − σ(a))·(b − a).
/// </summary>
public readonly struct BernoulliKlOperator<T> : IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T a, T b) => SimdMath.Softplus(b) - SimdMath.Softplus(a) - SimdMath.Sigmoid(a) * (b - a);
    /// <inheritdoc/>
    public static T DerivativeA(T a, T b) { T s = SimdMath.Sigmoid(a); return -s * (T.One - s) * (b - a); }
    /// <inheritdoc/>
    public static T DerivativeB(T a, T b) => SimdMath.Sigmoid(b) - SimdMath.Sigmoid(a);
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> a, Vector512<T> b)
        => SimdMath.Softplus(b) - SimdMath.Softplus(a) - SimdMath.Sigmoid(a) * (b - a);
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> a, Vector256<T> b)
        => SimdMath.Softplus(b) - SimdMath.Softplus(a) - SimdMath.Sigmoid(a) * (b - a);
}

public static partial class Op
{
    /// <summary>
    /// KL(target ‖ model) = (1/rows)·Σ e^t·(t − q), from log-probabilities along the last axis, averaged over
    /// rows (rows = the product of all leading dimensions). Both inputs receive gradients; targets are usually
    /// a teacher's output under <see cref="StopGradient{T}"/>. NaN/∞ in either input throws.
    /// </summary>
    public static Tensor<T> KlDivergence<T>(Tensor<T> targetLogProbs, Tensor<T> logProbs) where T : unmanaged, IFloatingPointIeee754<T>
    {
        const string op = "KlDivergence";
        RequireLossPair(targetLogProbs, logProbs, op, "target log-probabilities", "log-probabilities");
        OpChecks.RequireFinite(targetLogProbs, op, "target log-probabilities");
        OpChecks.RequireFinite(logProbs, op, "log-probabilities");
        return KlDivergenceCore(targetLogProbs, logProbs, op);
    }

    private static Tensor<T> KlDivergenceCore<T>(Tensor<T> t, Tensor<T> q, string op) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int rows = t.Length / t.Shape[-1];
        var terms = Map2Node<T, KlTermOperator<T>>.Forward(t, q, op);
        return Scale(Sum(terms), T.One / T.CreateChecked(rows));
    }

    /// <summary>
    /// Hinton's logits distillation for C classes: T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) along the last axis,
    /// averaged over rows; logits [.., C]. The T² keeps the gradient's scale independent of T. Gradients flow to
    /// BOTH inputs: to distil into a student only, pass the teacher's logits through <see cref="StopGradient{T}"/>
    /// (or as a tensor that requires none) — this op deliberately leaves that choice to the caller (co-training
    /// schemes such as Rocket Launching decide per term which side is blocked).
    /// </summary>
    public static Tensor<T> SoftmaxKd<T>(Tensor<T> teacherLogits, Tensor<T> studentLogits, T temperature)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        const string op = "SoftmaxKd";
        OpChecks.InverseTemperature(temperature, op);
        RequireLossPair(teacherLogits, studentLogits, op, "teacher logits", "student logits");
        OpChecks.RequireFinite(teacherLogits, op, "teacher logits");
        OpChecks.RequireFinite(studentLogits, op, "student logits");
        var t = LogSoftmax(teacherLogits, -1, temperature);
        var q = LogSoftmax(studentLogits, -1, temperature);
        return Scale(KlDivergenceCore(t, q, op), temperature * temperature);
    }

    /// <summary>
    /// Logits distillation for a binary CTR head: T²·mean over elements of KL(Bernoulli(σ(z_t/T)) ‖ Bernoulli(σ(z_s/T)))
    /// — the same as <see cref="SoftmaxKd{T}"/> over two-class logits [0, z]. Computed in the softplus form (no
    /// overflow for any logits); exactly 0 with exactly zero gradient when z_s == z_t. The gradient with respect to
    /// z_s is T·(σ(z_s/T) − σ(z_t/T))/N. As with SoftmaxKd, wrap the teacher in <see cref="StopGradient{T}"/> to
    /// keep its gradient out.
    /// </summary>
    public static Tensor<T> BinaryKd<T>(Tensor<T> teacherLogits, Tensor<T> studentLogits, T temperature)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        const string op = "BinaryKd";
        T invT = OpChecks.InverseTemperature(temperature, op);
        RequireLossPair(teacherLogits, studentLogits, op, "teacher logits", "student logits");
        OpChecks.RequireFinite(teacherLogits, op, "teacher logits");
        OpChecks.RequireFinite(studentLogits, op, "student logits");
        var a = Scale(teacherLogits, invT);
        var b = Scale(studentLogits, invT);
        return Scale(Mean(Map2Node<T, BernoulliKlOperator<T>>.Forward(a, b, op)), temperature * temperature);
    }

    /// <summary>Both operands of a loss: same backend, same shape, at least one element.</summary>
    private static void RequireLossPair<T>(Tensor<T> a, Tensor<T> b, string op, string roleA, string roleB)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        OpChecks.RequireSameShape(a, b, op, roleA, roleB);
        if (a.Length == 0 || (a.Rank > 0 && a.Shape[-1] == 0))
            throw new ArgumentException($"{op}: {roleA} {a.Describe()} and {roleB} {b.Describe()} are empty.");
    }
}
