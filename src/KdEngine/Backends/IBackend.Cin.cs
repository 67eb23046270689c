using System.Numerics;
using KdEngine.Tensors;

namespace KdEngine.Backends;

/// <summary>
/// CIN (xDeepFM compressed interaction network) primitives. With <see cref="Gemm"/> they make up the whole
/// layer: the outer product over field axes is built one batch tile at a time in the channel-major layout
/// [H·F, Bt·D], so a single GEMM with the [K, H·F] filter mixes a whole tile, and
/// <see cref="TransposeBlocks"/> moves results between [K, Bt·D] and the sample-major [Bt, K, D].
/// </summary>
public partial interface IBackend<T>
{
    /// <summary>
    /// For samples s ∈ [first, first + samples) of h [B, H, D] and x0 [B, F, D]:
    /// z[(s − first)·sampleStride + (i·F + j)·rowStride + d] = h[s, i, d]·x0[s, j, d].
    /// Sample-major z [B, H·F, D]: sampleStride = H·F·D, rowStride = D. Channel-major tile [H·F, Bt·D]:
    /// sampleStride = D, rowStride = Bt·D.
    /// </summary>
    void FieldOuterProduct(TensorStorage<T> h, TensorStorage<T> x0, TensorStorage<T> z, int first, int samples,
        int hRows, int fields, int width, int sampleStride, int rowStride);

    /// <summary>
    /// The backward of <see cref="FieldOuterProduct"/> with the same geometry: gradH[s, i, :] += Σ_j gz(i, j)·x0[s, j, :]
    /// and gradX0[s, j, :] += Σ_i gz(i, j)·h[s, i, :]. Either gradient may be null; both may be the same storage
    /// (when h and x0 are one tensor), and then both contributions accumulate into it.
    /// </summary>
    void FieldOuterProductBackward(TensorStorage<T> h, TensorStorage<T> x0, TensorStorage<T> gradZ,
        TensorStorage<T>? gradH, TensorStorage<T>? gradX0, int first, int samples,
        int hRows, int fields, int width, int sampleStride, int rowStride);

    /// <summary>
    /// Views x (from xOffset) as [rows, cols, inner] and writes y (from yOffset) as [cols, rows, inner]:
    /// y[c, r, :] = x[r, c, :], or += when <paramref name="accumulate"/>.
    /// </summary>
    void TransposeBlocks(TensorStorage<T> x, int xOffset, TensorStorage<T> y, int yOffset, int rows, int cols, int inner, bool accumulate);
}
