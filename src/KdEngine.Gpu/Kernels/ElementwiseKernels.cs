using ILGPU;
using KdEngine.Backends;

namespace KdEngine.Gpu.Kernels;

/// <summary>
/// Elementwise device kernels, one thread per element. The generic ones take the core's operator structs and
/// call their scalar <c>Invoke</c>/<c>Derivative</c> — the very code the CPU backend's tails run — so an op's
/// math exists once. ILGPU (≥ 1.4) resolves the constrained calls to static abstract members at compile time.
/// </summary>
internal static class ElementwiseKernels
{
    public static void Fill(Index1D i, ArrayView<float> y, float value) => y[i] = value;

    public static void FillInt(Index1D i, ArrayView<int> y, int value) => y[i] = value;

    /// <summary>y[i] += alpha·x[i].</summary>
    public static void Axpy(Index1D i, ArrayView<float> x, ArrayView<float> y, float alpha) => y[i] += alpha * x[i];

    public static void Map<TOp>(Index1D i, ArrayView<float> x, ArrayView<float> y, float p) where TOp : IUnaryOperator<float>
        => y[i] = TOp.Invoke(x[i], p);

    /// <summary>gx[i] += g[i]·TOp'(x[i], y[i], p).</summary>
    public static void MapBackward<TOp>(Index1D i, ArrayView<float> x, ArrayView<float> y, ArrayView<float> g, ArrayView<float> gx, float p)
        where TOp : IUnaryOperator<float>
        => gx[i] += g[i] * TOp.Derivative(x[i], y[i], p);

    /// <summary>z[i] = TOp(a[i], b[i mod period]).</summary>
    public static void Map2<TOp>(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> z, int period) where TOp : IBinaryOperator<float>
        => z[i] = TOp.Invoke(a[i], b[i % period]);

    /// <summary>ga[i] += g[i]·∂TOp/∂a(a[i], b[i mod period]).</summary>
    public static void Map2BackwardA<TOp>(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> g, ArrayView<float> ga, int period)
        where TOp : IBinaryOperator<float>
        => ga[i] += g[i] * TOp.DerivativeA(a[i], b[i % period]);

    /// <summary>
    /// gb[j] += Σ_r g[r·period + j]·∂TOp/∂b(a[r·period + j], b[j]) — one thread per j summing the broadcast rows in
    /// order (no atomics: the result is deterministic, and matches the CPU's row order).
    /// </summary>
    public static void Map2BackwardB<TOp>(Index1D j, ArrayView<float> a, ArrayView<float> b, ArrayView<float> g, ArrayView<float> gb,
        int period, int rows) where TOp : IBinaryOperator<float>
    {
        float bj = b[j], acc = gb[j];
        for (int r = 0; r < rows; r++)
        {
            int i = r * period + j;
            acc += g[i] * TOp.DerivativeB(a[i], bj);
        }
        gb[j] = acc;
    }

    /// <summary>x viewed as [outer, axis, inner]; thread t = (o, in): y[t] (+)= Σ_a x[o, a, in].</summary>
    public static void SumAxis(Index1D t, ArrayView<float> x, ArrayView<float> y, int axis, int inner, int accumulate)
    {
        int o = t / inner, n = t % inner;
        int b = o * axis * inner + n;
        float acc = 0f;
        for (int a = 0; a < axis; a++) acc += x[b + a * inner];
        y[t] = accumulate != 0 ? y[t] + acc : acc;
    }

    /// <summary>Thread per element of y [outer, axis, inner]: y += scale·x[o, in].</summary>
    public static void BroadcastAxisAdd(Index1D t, ArrayView<float> x, ArrayView<float> y, int axis, int inner, float scale)
    {
        int n = t % inner, o = t / (axis * inner);
        y[t] += scale * x[o * inner + n];
    }

    /// <summary>Thread per (block b, j): dst[dOff + b·dStride + j] (+)= src[sOff + b·sStride + j].</summary>
    public static void CopyBlocks(Index1D t, ArrayView<float> src, int sourceOffset, int sourceStride,
        ArrayView<float> dst, int destinationOffset, int destinationStride, int blockLength, int accumulate)
    {
        int b = t / blockLength, j = t % blockLength;
        float v = src[sourceOffset + b * sourceStride + j];
        int d = destinationOffset + b * destinationStride + j;
        dst[d] = accumulate != 0 ? dst[d] + v : v;
    }

    /// <summary>result[0] = min index whose value is NaN or ±∞ (exponent bits all ones), via an atomic minimum.</summary>
    public static void FirstNonFinite(Index1D i, ArrayView<float> x, ArrayView<int> result)
    {
        if ((Interop.FloatAsInt(x[i]) & 0x7F800000) == 0x7F800000) Atomic.Min(ref result[0], (int)i);
    }

    /// <summary>The counter-based dropout mask of <c>IBackend.DropoutMask</c>: the CPU's own SplitMix64 uniform, per thread.</summary>
    public static void DropoutMask(Index1D i, ArrayView<float> mask, double rate, ulong seed, float keep)
        => mask[i] = KdEngine.Kernels.Cpu.RandomKernels.Uniform(seed, i) < rate ? 0f : keep;

    /// <summary>Thread per element of [rows, width]: y = x·s[row].</summary>
    public static void ScaleRows(Index1D t, ArrayView<float> x, ArrayView<float> s, ArrayView<float> y, int width)
        => y[t] = x[t] * s[t / width];

    /// <summary>gx[n, d] += g[n, d]·s[n].</summary>
    public static void ScaleRowsBackwardX(Index1D t, ArrayView<float> g, ArrayView<float> s, ArrayView<float> gx, int width)
        => gx[t] += g[t] * s[t / width];

    /// <summary>Thread per row: gs[n] += Σ_d g[n, d]·x[n, d].</summary>
    public static void ScaleRowsBackwardS(Index1D n, ArrayView<float> g, ArrayView<float> x, ArrayView<float> gs, int width)
    {
        float acc = 0f;
        for (int d = 0; d < width; d++) acc += g[n * width + d] * x[n * width + d];
        gs[n] += acc;
    }
}
