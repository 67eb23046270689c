using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>
/// FieldAwarePairs: the field-aware factorization machine's pairwise term. x [B, F, (F−1)·D] holds each field's
/// feature vectors for the other fields (slot k of field f is its vector for field k &lt; f ? k : k + 1) →
/// z [B, 1] with z[b] = Σ_{f&lt;g} ⟨v_{f,g}, v_{g,f}⟩, v_{f,g} = x[b, f, slot(f, g)]. One fused pass over the
/// F(F−1)/2 pairs (never a [B, pairs, D] product); backward: dv_{f,g} += g_b·v_{g,f} (each slot's one partner).
/// </summary>
internal sealed class FieldAwarePairsNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T> _x;
    private readonly int _fields, _width;
    private FieldAwarePairsNode(Tensor<T> x, int fields, int width) { _x = x; _fields = fields; _width = width; }
    public override string OpName => "FieldAwarePairs";

    public static Tensor<T> Forward(Tensor<T> x, int width)
    {
        if (x.Rank != 3 || x.Shape[1] < 2 || width <= 0 || x.Shape[2] != (x.Shape[1] - 1) * width)
            throw new ArgumentException($"FieldAwarePairs: expected x [B, F ≥ 2, (F − 1)·D] with D = {width}; got {x.Describe()}.");
        int batch = x.Shape[0], fields = x.Shape[1];
        var z = Tape<T>.NewTensor(new Shape(batch, 1), x.Backend, clear: false);
        x.Backend.FieldAwarePairs(x.Storage, z.Storage, batch, fields, width);
        if (Tape<T>.ShouldRecord(x)) Tape<T>.Record(new FieldAwarePairsNode<T>(x, fields, width), z);
        return z;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        if (!_x.RequiresGrad) return;
        _x.Backend.FieldAwarePairsBackward(_x.Storage, g.Storage, tape.GradOf(_x).Storage, _x.Shape[0], _fields, _width);
    }
}

public static partial class Op
{
    /// <summary>
    /// The FFM pairwise term: x [B, F, (F−1)·D] (each field's vectors for the other fields, slot k of field f standing for
    /// field k &lt; f ? k : k + 1) → [B, 1], z[b] = Σ_{f&lt;g} ⟨x[b, f, slot(f, g)], x[b, g, slot(g, f)]⟩.
    /// </summary>
    public static Tensor<T> FieldAwarePairs<T>(Tensor<T> x, int embeddingDim) where T : unmanaged, IFloatingPointIeee754<T>
        => FieldAwarePairsNode<T>.Forward(x, embeddingDim);
}
