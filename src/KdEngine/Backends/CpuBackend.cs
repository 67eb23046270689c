using System.Numerics;
using System.Numerics.Tensors;
using KdEngine.Kernels.Cpu;
using KdEngine.Tensors;

namespace KdEngine.Backends;

/// <summary>The CPU backend: storages are pooled managed arrays; kernels are SIMD loops over spans.</summary>
public sealed partial class CpuBackend<T> : IBackend<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>The one CPU backend (it holds no state: storages carry their own arrays).</summary>
    public static readonly CpuBackend<T> Instance = new();

    private CpuBackend() { }

    /// <inheritdoc/>
    public string Name => "cpu";

    private static Span<T> S(TensorStorage<T> s) => ((CpuStorage<T>)s).Span;

    /// <inheritdoc/>
    public TensorStorage<T> Allocate(int length, bool clear) => new CpuStorage<T>(length, clear);

    /// <inheritdoc/>
    public void Upload(ReadOnlySpan<T> source, TensorStorage<T> destination) => source.CopyTo(S(destination));

    /// <inheritdoc/>
    public void Download(TensorStorage<T> source, Span<T> destination) => S(source)[..destination.Length].CopyTo(destination);

    /// <inheritdoc/>
    public void Copy(TensorStorage<T> source, int sourceOffset, TensorStorage<T> destination, int destinationOffset, int length)
        => S(source).Slice(sourceOffset, length).CopyTo(S(destination).Slice(destinationOffset, length));

    /// <inheritdoc/>
    public void Fill(TensorStorage<T> destination, T value) => S(destination).Fill(value);

    /// <inheritdoc/>
    public void Axpy(T alpha, TensorStorage<T> x, TensorStorage<T> y, int length)
    {
        var ys = S(y)[..length];
        TensorPrimitives.MultiplyAdd(S(x)[..length], alpha, ys, ys);
    }

    /// <inheritdoc/>
    public void Gemm(bool transposeA, bool transposeB, int m, int n, int k, T alpha,
        TensorStorage<T> a, TensorStorage<T> b, T beta, TensorStorage<T> c)
        => Gemm<T>.Multiply(transposeA, transposeB, m, n, k, alpha, S(a), S(b), beta, S(c));

    /// <inheritdoc/>
    public void Map<TOp>(TensorStorage<T> x, TensorStorage<T> y, int length, T p) where TOp : IUnaryOperator<T>
        => ElementwiseKernels.Map<T, TOp>(S(x)[..length], S(y)[..length], p);

    /// <inheritdoc/>
    public void MapBackward<TOp>(TensorStorage<T> x, TensorStorage<T> y, TensorStorage<T> gradY, TensorStorage<T> gradX, int length, T p)
        where TOp : IUnaryOperator<T>
        => ElementwiseKernels.MapBackward<T, TOp>(S(x)[..length], S(y)[..length], S(gradY)[..length], S(gradX)[..length], p);

    /// <inheritdoc/>
    public void Map2<TOp>(TensorStorage<T> a, TensorStorage<T> b, TensorStorage<T> z, int length, int period) where TOp : IBinaryOperator<T>
        => ElementwiseKernels.Map2<T, TOp>(S(a)[..length], S(b)[..period], S(z)[..length]);

    /// <inheritdoc/>
    public void Map2Backward<TOp>(TensorStorage<T> a, TensorStorage<T> b, TensorStorage<T> gradZ,
        TensorStorage<T>? gradA, TensorStorage<T>? gradB, int length, int period) where TOp : IBinaryOperator<T>
        => ElementwiseKernels.Map2Backward<T, TOp>(S(a)[..length], S(b)[..period], S(gradZ)[..length],
            gradA is null ? default : S(gradA)[..length], gradB is null ? default : S(gradB)[..period]);

    /// <inheritdoc/>
    public void SumAxis(TensorStorage<T> x, TensorStorage<T> y, int outer, int axis, int inner, bool accumulate)
        => ReductionKernels.SumAxis(S(x), S(y), outer, axis, inner, accumulate);

    /// <inheritdoc/>
    public void BroadcastAxisAdd(TensorStorage<T> x, TensorStorage<T> y, int outer, int axis, int inner, T scale)
        => ReductionKernels.BroadcastAxisAdd(S(x), S(y), outer, axis, inner, scale);
}
