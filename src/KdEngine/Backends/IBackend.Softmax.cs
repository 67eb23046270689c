using System.Numerics;
using KdEngine.Tensors;

namespace KdEngine.Backends;

public partial interface IBackend<T>
{
    /// <summary>
    /// Views x as [outer, axis, inner] and writes y = softmax(x·invTemperature) along the middle axis
    /// (or its logarithm when <paramref name="log"/>), with the maximum subtracted first so no exp overflows.
    /// A fused primitive rather than a composition of max/sub/exp/sum/div: one pass set per row, no temporaries
    /// the size of x.
    /// </summary>
    void Softmax(TensorStorage<T> x, TensorStorage<T> y, int outer, int axis, int inner, T invTemperature, bool log);

    /// <summary>
    /// The backward of <see cref="Softmax"/> given its output y and the output gradient g, accumulated (+=):
    /// softmax: dx += invT · y ∘ (g − Σ_axis g∘y); log-softmax: dx += invT · (g − exp(y) · Σ_axis g).
    /// </summary>
    void SoftmaxBackward(TensorStorage<T> y, TensorStorage<T> gradY, TensorStorage<T> gradX,
        int outer, int axis, int inner, T invTemperature, bool log);
}
