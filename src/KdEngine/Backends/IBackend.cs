using System.Numerics;
using KdEngine.Tensors;

namespace KdEngine.Backends;

/// <summary>
/// The closed set of primitive kernels every backend implements (CPU SIMD now; ILGPU later). Ops and the
/// autograd tape are written against this interface only, so they never assume where memory lives. Every
/// method writes into a caller-provided destination and allocates nothing but what it returns.
/// Index arguments are validated by the op that calls a kernel; kernels may assume them correct.
/// </summary>
public partial interface IBackend<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>A short name for messages and logs (<c>cpu</c>, <c>cuda</c>, …).</summary>
    string Name { get; }

    /// <summary>Allocates storage of <paramref name="length"/> elements, zeroed when <paramref name="clear"/>.</summary>
    TensorStorage<T> Allocate(int length, bool clear);

    /// <summary>Copies host memory into <paramref name="destination"/> (the first <c>source.Length</c> elements).</summary>
    void Upload(ReadOnlySpan<T> source, TensorStorage<T> destination);
    /// <summary>Copies the first <c>destination.Length</c> elements of <paramref name="source"/> to host memory.</summary>
    void Download(TensorStorage<T> source, Span<T> destination);
    /// <summary>Copies <paramref name="length"/> elements between two storages of this backend (the ranges may not overlap).</summary>
    void Copy(TensorStorage<T> source, int sourceOffset, TensorStorage<T> destination, int destinationOffset, int length);
    /// <summary>Sets every element of <paramref name="destination"/> to <paramref name="value"/>.</summary>
    void Fill(TensorStorage<T> destination, T value);

    /// <summary>y[i] += alpha · x[i] over the first <paramref name="length"/> elements.</summary>
    void Axpy(T alpha, TensorStorage<T> x, TensorStorage<T> y, int length);

    /// <summary>
    /// C = alpha · op(A) · op(B) + beta · C, row-major. op(A) is [m, k] (A stored [k, m] when transposeA);
    /// op(B) is [k, n] (B stored [n, k] when transposeB); C is [m, n]. beta = 0 ignores C's old contents.
    /// </summary>
    void Gemm(bool transposeA, bool transposeB, int m, int n, int k, T alpha,
        TensorStorage<T> a, TensorStorage<T> b, T beta, TensorStorage<T> c);

    /// <summary>y[i] = TOp(x[i], p) over <paramref name="length"/> elements.</summary>
    void Map<TOp>(TensorStorage<T> x, TensorStorage<T> y, int length, T p) where TOp : IUnaryOperator<T>;

    /// <summary>dx[i] += g[i] · TOp'(x[i], y[i], p): the backward of <see cref="Map{TOp}"/>.</summary>
    void MapBackward<TOp>(TensorStorage<T> x, TensorStorage<T> y, TensorStorage<T> gradY, TensorStorage<T> gradX, int length, T p)
        where TOp : IUnaryOperator<T>;

    /// <summary>
    /// z[i] = TOp(a[i], b[i mod period]) for i in [0, length): period = length is elementwise, period = n with
    /// length = m·n broadcasts a row [n] over [m, n], period = 1 broadcasts a scalar.
    /// </summary>
    void Map2<TOp>(TensorStorage<T> a, TensorStorage<T> b, TensorStorage<T> z, int length, int period) where TOp : IBinaryOperator<T>;

    /// <summary>
    /// The backward of <see cref="Map2{TOp}"/>: gradA[i] += g[i]·∂TOp/∂a and gradB[i mod period] += g[i]·∂TOp/∂b
    /// (summed over broadcast rows). Either gradient may be null when not needed.
    /// </summary>
    void Map2Backward<TOp>(TensorStorage<T> a, TensorStorage<T> b, TensorStorage<T> gradZ,
        TensorStorage<T>? gradA, TensorStorage<T>? gradB, int length, int period) where TOp : IBinaryOperator<T>;

    /// <summary>
    /// Views x as [outer, axis, inner] and writes y[o, i] (+)= Σ_a x[o, a, i]. Accumulates into y when
    /// <paramref name="accumulate"/>, else overwrites.
    /// </summary>
    void SumAxis(TensorStorage<T> x, TensorStorage<T> y, int outer, int axis, int inner, bool accumulate);

    /// <summary>The backward of <see cref="SumAxis"/>: y[o, a, i] += scale · x[o, i].</summary>
    void BroadcastAxisAdd(TensorStorage<T> x, TensorStorage<T> y, int outer, int axis, int inner, T scale);
}
