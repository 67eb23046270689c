using System.Numerics;
using System.Runtime.Intrinsics;
using KdEngine.Autograd;
using KdEngine.Backends;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>
/// The node of every elementwise binary op z = TOp(a, b), where b either has a's shape, or is a row
/// broadcast over a's leading dimensions (b's shape equals a's trailing dimensions), or is a scalar.
/// </summary>
internal sealed class Map2Node<T, TOp> : Node<T>
    where T : unmanaged, IFloatingPointIeee754<T> where TOp : IBinaryOperator<T>
{
    private readonly Tensor<T> _a, _b;
    private readonly int _period;
    private readonly string _name;

    private Map2Node(Tensor<T> a, Tensor<T> b, int period, string name) { _a = a; _b = b; _period = period; _name = name; }

    public override string OpName => _name;

    public static Tensor<T> Forward(Tensor<T> a, Tensor<T> b, string name)
    {
        int period = BroadcastPeriod(a, b, name);
        var z = Tape<T>.NewTensor(a.Shape, a.Backend, clear: false);
        a.Backend.Map2<TOp>(a.Storage, b.Storage, z.Storage, a.Length, period);
        if (Tape<T>.ShouldRecord(a, b)) Tape<T>.Record(new Map2Node<T, TOp>(a, b, period, name), z);
        return z;
    }

    /// <summary>
    /// b's period in a's flat layout: a.Length when shapes are equal; b.Length when b's shape equals a's
    /// trailing dimensions (row broadcast); 1 for a one-element b.
    /// </summary>
    internal static int BroadcastPeriod(Tensor<T> a, Tensor<T> b, string op)
    {
        if (a.Backend != b.Backend)
            throw new ArgumentException($"{op}: operands live on different backends ('{a.Backend.Name}' and '{b.Backend.Name}').");
        if (a.Shape == b.Shape) return a.Length;
        if (b.Length == 1) return 1;
        var ad = a.Shape.Dims; var bd = b.Shape.Dims;
        if (bd.Length <= ad.Length && ad[(ad.Length - bd.Length)..].SequenceEqual(bd)) return b.Length;
        throw new ArgumentException(
            $"{op}: shapes {a.Describe()} and {b.Describe()} do not broadcast (the second operand must equal the first's shape, its trailing dimensions, or be a scalar).");
    }

    protected internal override void Backward(Tensor<T> gradOutput, Tape<T> tape)
    {
        var ga = _a.RequiresGrad ? tape.GradOf(_a).Storage : null;
        var gb = _b.RequiresGrad ? tape.GradOf(_b).Storage : null;
        _a.Backend.Map2Backward<TOp>(_a.Storage, _b.Storage, gradOutput.Storage, ga, gb, _a.Length, _period);
    }
}

/// <summary>z = a + b; ∂z/∂a = ∂z/∂b = 1.</summary>
public readonly struct AddOperator<T> : IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T a, T b) => a + b;
    /// <inheritdoc/>
    public static T DerivativeA(T a, T b) => T.One;
    /// <inheritdoc/>
    public static T DerivativeB(T a, T b) => T.One;
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => a + b;
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> a, Vector256<T> b) => a + b;
}

/// <summary>z = a − b; ∂z/∂a = 1, ∂z/∂b = −1.</summary>
public readonly struct SubtractOperator<T> : IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T a, T b) => a - b;
    /// <inheritdoc/>
    public static T DerivativeA(T a, T b) => T.One;
    /// <inheritdoc/>
    public static T DerivativeB(T a, T b) => -T.One;
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => a - b;
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> a, Vector256<T> b) => a - b;
}

/// <summary>z = a · b; ∂z/∂a = b, ∂z/∂b = a.</summary>
public readonly struct MultiplyOperator<T> : IBinaryOperator<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc/>
    public static T Invoke(T a, T b) => a * b;
    /// <inheritdoc/>
    public static T DerivativeA(T a, T b) => b;
    /// <inheritdoc/>
    public static T DerivativeB(T a, T b) => a;
    /// <inheritdoc/>
    public static Vector512<T> Invoke(Vector512<T> a, Vector512<T> b) => a * b;
    /// <inheritdoc/>
    public static Vector256<T> Invoke(Vector256<T> a, Vector256<T> b) => a * b;
}

public static partial class Op
{
    /// <summary>a + b; b may be a's shape, a's trailing dimensions (row broadcast), or a scalar.</summary>
    public static Tensor<T> Add<T>(Tensor<T> a, Tensor<T> b) where T : unmanaged, IFloatingPointIeee754<T>
        => Map2Node<T, AddOperator<T>>.Forward(a, b, "Add");

    /// <summary>a − b, with <see cref="Add{T}"/>'s broadcasting.</summary>
    public static Tensor<T> Sub<T>(Tensor<T> a, Tensor<T> b) where T : unmanaged, IFloatingPointIeee754<T>
        => Map2Node<T, SubtractOperator<T>>.Forward(a, b, "Sub");

    /// <summary>a ∘ b (elementwise), with <see cref="Add{T}"/>'s broadcasting.</summary>
    public static Tensor<T> Mul<T>(Tensor<T> a, Tensor<T> b) where T : unmanaged, IFloatingPointIeee754<T>
        => Map2Node<T, MultiplyOperator<T>>.Forward(a, b, "Mul");
}
