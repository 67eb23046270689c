using System.Numerics;
using KdEngine.Tensors;

namespace KdEngine.Backends;

/// <summary>
/// The field-aware factorization machine's pairwise term. x [B, F, (F−1)·D] holds, per sample, each field's feature
/// vectors for the other fields: slot k of field f is its vector for field g = (k &lt; f ? k : k + 1), so the pair
/// (f &lt; g) reads slot g − 1 of field f and slot f of field g. Every slot has exactly one partner (the involution π),
/// which makes the backward a permuted copy scaled per sample.
/// </summary>
public partial interface IBackend<T>
{
    /// <summary>z[b] = Σ_{f&lt;g} ⟨x[b, f, (g − 1)·D ..], x[b, g, f·D ..]⟩ for b ∈ [0, batch); z [B].</summary>
    void FieldAwarePairs(TensorStorage<T> x, TensorStorage<T> z, int batch, int fields, int width);

    /// <summary>gradX[b, f, k·D + d] += gradZ[b]·x[b, π(f, k), d], the slot's partner (x [B, F, (F−1)·D], gradZ [B]).</summary>
    void FieldAwarePairsBackward(TensorStorage<T> x, TensorStorage<T> gradZ, TensorStorage<T> gradX, int batch, int fields, int width);
}
