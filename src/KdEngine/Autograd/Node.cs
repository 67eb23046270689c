using System.Numerics;
using KdEngine.Tensors;

namespace KdEngine.Autograd;

/// <summary>
/// One recorded op application on a <see cref="Tape{T}"/>. Each op is one small sealed type deriving from
/// this: its static forward builds the output and records the node; <see cref="Backward"/> sits next to it
/// and accumulates (+=) the gradient of every input that requires one.
/// </summary>
public abstract class Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>The op's name, used in error messages ("Linear", "EmbeddingGather", …).</summary>
    public abstract string OpName { get; }

    /// <summary>The tensor this node produced.</summary>
    public Tensor<T> Output { get; internal set; } = null!;

    /// <summary>
    /// Accumulates d(loss)/d(input) into <c>tape.GradOf(input)</c> for each input with
    /// <see cref="Tensor{T}.RequiresGrad"/>; inputs that need none are skipped (no work, no buffer).
    /// </summary>
    protected internal abstract void Backward(Tensor<T> gradOutput, Tape<T> tape);
}
