using System.Numerics;
using System.Runtime.CompilerServices;
using KdEngine.Autograd;
using KdEngine.Backends;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>Shape checks shared by the CIN ops.</summary>
internal static class CinChecks
{
    /// <summary>h [B, H, D] and x0 [B, F, D]: same batch, same width, same backend.</summary>
    public static void Pair<T>(string op, Tensor<T> h, Tensor<T> x0) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (h.Rank != 3 || x0.Rank != 3 || h.Shape[0] != x0.Shape[0] || h.Shape[2] != x0.Shape[2])
            throw new ArgumentException($"{op}: expected h [B, H, D] and x0 [B, F, D] with the same B and D; got h {h.Describe()} and x0 {x0.Describe()}.");
        if (h.Backend != x0.Backend)
            throw new ArgumentException($"{op}: h {h.Describe()} and x0 {x0.Describe()} live on different backends.");
    }

    /// <summary>w [K, channels] and bias [K] (optional) against an input with <paramref name="channels"/> channels.</summary>
    public static void Filter<T>(string op, Tensor<T> w, Tensor<T>? bias, int channels, string input) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (w.Rank != 2 || w.Shape[1] != channels)
            throw new ArgumentException($"{op}: weight {w.Describe()} must be [K, {channels}] for input {input}.");
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != w.Shape[0]))
            throw new ArgumentException($"{op}: bias {bias.Describe()} must be [{w.Shape[0]}] for weight {w.Describe()}.");
    }
}

/// <summary>
/// FieldOuterProduct: CIN's interaction tensor. h [B, H, D], x0 [B, F, D] → z [B, H·F, D] with
/// z[b, i·F + j, d] = h[b, i, d]·x0[b, j, d]. Materialises z; <see cref="CinLayerNode{T}"/> is the fused form.
/// </summary>
internal sealed class FieldOuterProductNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T> _h, _x0;
    private FieldOuterProductNode(Tensor<T> h, Tensor<T> x0) { _h = h; _x0 = x0; }
    public override string OpName => "FieldOuterProduct";

    public static Tensor<T> Forward(Tensor<T> h, Tensor<T> x0)
    {
        CinChecks.Pair("FieldOuterProduct", h, x0);
        int batch = h.Shape[0], hr = h.Shape[1], f = x0.Shape[1], d = h.Shape[2];
        var z = Tape<T>.NewTensor(new Shape(batch, hr * f, d), h.Backend, clear: false); // z [B, H·F, D]
        // Sample-major geometry: sample stride H·F·D, row (i·F + j) stride D.
        h.Backend.FieldOuterProduct(h.Storage, x0.Storage, z.Storage, 0, batch, hr, f, d, hr * f * d, d);
        if (Tape<T>.ShouldRecord(h, x0)) Tape<T>.Record(new FieldOuterProductNode<T>(h, x0), z);
        return z;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        // When h and x0 are one tensor, GradOf returns one buffer for both and the kernel accumulates both terms.
        var gh = _h.RequiresGrad ? tape.GradOf(_h).Storage : null;
        var gx = _x0.RequiresGrad ? tape.GradOf(_x0).Storage : null;
        int batch = _h.Shape[0], hr = _h.Shape[1], f = _x0.Shape[1], d = _h.Shape[2];
        _h.Backend.FieldOuterProductBackward(_h.Storage, _x0.Storage, g.Storage, gh, gx, 0, batch, hr, f, d, hr * f * d, d);
    }
}

/// <summary>
/// ChannelMix: CIN's 1×1 convolution. z [B, C, D], w [K, C], bias [K] → y [B, K, D],
/// y[b, k, d] = Σ_c w[k, c]·z[b, c, d] + bias[k]. The batch is moved to the channel-major layout [C, B·D] so
/// that ONE GEMM w [K, C]·Z [C, B·D] mixes every sample at once (instead of B small GEMMs of width D).
/// </summary>
internal sealed class ChannelMixNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T> _z, _w;
    private readonly Tensor<T>? _bias;
    private ChannelMixNode(Tensor<T> z, Tensor<T> w, Tensor<T>? bias) { _z = z; _w = w; _bias = bias; }
    public override string OpName => "ChannelMix";

    public static Tensor<T> Forward(Tensor<T> z, Tensor<T> w, Tensor<T>? bias)
    {
        const string op = "ChannelMix";
        if (z.Rank != 3) throw new ArgumentException($"{op}: input must be [B, C, D]; got {z.Describe()}.");
        CinChecks.Filter(op, w, bias, z.Shape[1], z.Describe());
        int batch = z.Shape[0], c = z.Shape[1], d = z.Shape[2], k = w.Shape[0], cols = batch * d;
        var be = z.Backend;
        using var zt = be.Allocate(c * cols, clear: false);  // Z [C, B·D]
        using var yt = be.Allocate(k * cols, clear: false);  // Y [K, B·D]
        be.TransposeBlocks(z.Storage, 0, zt, 0, batch, c, d, accumulate: false);       // z [B, C, D] → Z [C, B, D] = [C, B·D]
        be.Gemm(false, false, k, cols, c, T.One, w.Storage, zt, T.Zero, yt);          // Y [K, B·D] = w [K, C] · Z [C, B·D]
        if (bias is not null) be.BroadcastAxisAdd(bias.Storage, yt, k, cols, 1, T.One); // Y [K, B·D] += bias [K] per row
        var y = Tape<T>.NewTensor(new Shape(batch, k, d), be, clear: false);           // y [B, K, D]
        be.TransposeBlocks(yt, 0, y.Storage, 0, k, batch, d, accumulate: false);       // Y [K, B, D] → y [B, K, D]
        if (Tape<T>.ShouldRecord(z, w, bias)) Tape<T>.Record(new ChannelMixNode<T>(z, w, bias), y);
        return y;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        int batch = _z.Shape[0], c = _z.Shape[1], d = _z.Shape[2], k = _w.Shape[0], cols = batch * d;
        var be = _z.Backend;
        using var gyt = be.Allocate(k * cols, clear: false);                          // gY [K, B·D]
        be.TransposeBlocks(g.Storage, 0, gyt, 0, batch, k, d, accumulate: false);      // g [B, K, D] → gY [K, B, D]
        if (_bias is { RequiresGrad: true })
            be.SumAxis(gyt, tape.GradOf(_bias).Storage, k, cols, 1, accumulate: true); // dbias[k] += Σ_{b,d} gY[k, b·D + d]
        if (_w.RequiresGrad)
        {
            using var zt = be.Allocate(c * cols, clear: false);                          // Z [C, B·D], recomputed
            be.TransposeBlocks(_z.Storage, 0, zt, 0, batch, c, d, accumulate: false);
            be.Gemm(false, true, k, c, cols, T.One, gyt, zt, T.One, tape.GradOf(_w).Storage); // dW [K, C] += gY [K, B·D] · Zᵀ [B·D, C]
        }
        if (_z.RequiresGrad)
        {
            using var dzt = be.Allocate(c * cols, clear: false);                         // dZ [C, B·D]
            be.Gemm(true, false, c, cols, k, T.One, _w.Storage, gyt, T.Zero, dzt);     // dZ [C, B·D] = wᵀ [C, K] · gY [K, B·D]
            be.TransposeBlocks(dzt, 0, tape.GradOf(_z).Storage, 0, c, batch, d, accumulate: true); // dZ [C, B, D] → dz [B, C, D] (+=)
        }
    }
}

/// <summary>
/// CinLayer: one fused, batch-tiled xDeepFM CIN layer, equal to ChannelMix(FieldOuterProduct(h, x0), w, bias)
/// but never materialising the [B, H·F, D] outer product (at B = 1024, H = 200, F = 39, D = 16 that is 511 MB
/// of float32 per layer). The batch is processed in tiles of Bt samples; for each tile the outer product is
/// built in the channel-major layout Z [H·F, Bt·D] so one GEMM w [K, H·F]·Z does the whole tile, and the result
/// [K, Bt·D] is scattered into y [B, K, D]. Backward recomputes each tile instead of storing it.
/// Bt is chosen so that the backward's scratch (Z, dZ and the [K, Bt·D] gradient tile) stays within
/// <see cref="ScratchBudgetBytes"/>; the scratch is pooled.
/// </summary>
internal sealed class CinLayerNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>The scratch a layer may use per pass (the backward's Z, dZ and gradient tiles together).</summary>
    internal const long ScratchBudgetBytes = 8L << 20;

    private readonly Tensor<T> _h, _x0, _w;
    private readonly Tensor<T>? _bias;
    private readonly int _tile;

    private CinLayerNode(Tensor<T> h, Tensor<T> x0, Tensor<T> w, Tensor<T>? bias, int tile)
    { _h = h; _x0 = x0; _w = w; _bias = bias; _tile = tile; }

    public override string OpName => "CinLayer";

    /// <summary>
    /// The tile size Bt for a layer and the scratch (in bytes, as requested before pool rounding) its backward
    /// needs: Bt·(2·H·F + K)·D elements. Forward needs less (Bt·(H·F + K)·D).
    /// </summary>
    internal static (int TileSamples, long ScratchBytes) Plan(int batch, int hRows, int fields, int maps, int width)
    {
        long perSample = (2L * hRows * fields + maps) * width * Unsafe.SizeOf<T>();
        int tile = perSample == 0 ? Math.Max(batch, 1) : (int)Math.Clamp(ScratchBudgetBytes / perSample, 1, Math.Max(batch, 1));
        return (tile, tile * perSample);
    }

    public static Tensor<T> Forward(Tensor<T> h, Tensor<T> x0, Tensor<T> w, Tensor<T>? bias, int? tileSamples = null)
    {
        const string op = "CinLayer";
        CinChecks.Pair(op, h, x0);
        int batch = h.Shape[0], hr = h.Shape[1], f = x0.Shape[1], d = h.Shape[2];
        CinChecks.Filter(op, w, bias, hr * f, $"h {h.Describe()} ⊗ x0 {x0.Describe()} (H·F = {hr * f} channels)");
        int k = w.Shape[0], hf = hr * f;
        int tile = tileSamples ?? Plan(batch, hr, f, k, d).TileSamples;
        if (tile < 1) throw new ArgumentOutOfRangeException(nameof(tileSamples), $"{op}: tile size {tile} must be positive.");
        var be = h.Backend;
        var y = Tape<T>.NewTensor(new Shape(batch, k, d), be, clear: false); // y [B, K, D]
        int bt = Math.Min(tile, Math.Max(batch, 1));
        using (var zt = be.Allocate(hf * bt * d, clear: false))  // Z tile [H·F, Bt·D]
        using (var yt = be.Allocate(k * bt * d, clear: false))   // Y tile [K, Bt·D]
        {
            for (int b0 = 0; b0 < batch; b0 += bt)
            {
                int n = Math.Min(bt, batch - b0), cols = n * d;
                // Z[i·F + j, t·D + d] = h[b0 + t, i, d]·x0[b0 + t, j, d]: sample stride D, row stride n·D → Z [H·F, n·D].
                be.FieldOuterProduct(h.Storage, x0.Storage, zt, b0, n, hr, f, d, d, cols);
                be.Gemm(false, false, k, cols, hf, T.One, w.Storage, zt, T.Zero, yt);         // Y [K, n·D] = w [K, H·F] · Z [H·F, n·D]
                if (bias is not null) be.BroadcastAxisAdd(bias.Storage, yt, k, cols, 1, T.One); // Y[k, :] += bias[k]
                be.TransposeBlocks(yt, 0, y.Storage, b0 * k * d, k, n, d, accumulate: false); // Y [K, n, D] → y[b0 .. b0+n] [n, K, D]
            }
        }
        if (Tape<T>.ShouldRecord(h, x0, w) || (bias is not null && Tape<T>.ShouldRecord(bias)))
            Tape<T>.Record(new CinLayerNode<T>(h, x0, w, bias, bt), y);
        return y;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        int batch = _h.Shape[0], hr = _h.Shape[1], f = _x0.Shape[1], d = _h.Shape[2], k = _w.Shape[0], hf = hr * f, bt = _tile;
        var be = _h.Backend;
        bool wantW = _w.RequiresGrad, wantB = _bias is { RequiresGrad: true }, wantIn = _h.RequiresGrad || _x0.RequiresGrad;
        // h and x0 may be one tensor (CIN's first layer): GradOf then returns one buffer and both terms accumulate into it.
        var gh = _h.RequiresGrad ? tape.GradOf(_h).Storage : null;
        var gx = _x0.RequiresGrad ? tape.GradOf(_x0).Storage : null;
        var gw = wantW ? tape.GradOf(_w).Storage : null;
        var gb = wantB ? tape.GradOf(_bias!).Storage : null;
        using var gyt = be.Allocate(k * bt * d, clear: false);                     // gY tile [K, Bt·D]
        using var zt = wantW ? be.Allocate(hf * bt * d, clear: false) : null;     // Z tile [H·F, Bt·D], recomputed
        using var dzt = wantIn ? be.Allocate(hf * bt * d, clear: false) : null;   // dZ tile [H·F, Bt·D]
        for (int b0 = 0; b0 < batch; b0 += bt)
        {
            int n = Math.Min(bt, batch - b0), cols = n * d;
            be.TransposeBlocks(g.Storage, b0 * k * d, gyt, 0, n, k, d, accumulate: false); // g[b0 .. b0+n] [n, K, D] → gY [K, n, D] = [K, n·D]
            if (gb is not null) be.SumAxis(gyt, gb, k, cols, 1, accumulate: true);     // dbias[k] += Σ gY[k, :]
            if (gw is not null)
            {
                be.FieldOuterProduct(_h.Storage, _x0.Storage, zt!, b0, n, hr, f, d, d, cols); // Z [H·F, n·D]
                be.Gemm(false, true, k, hf, cols, T.One, gyt, zt!, T.One, gw);              // dW [K, H·F] += gY [K, n·D] · Zᵀ [n·D, H·F]
            }
            if (wantIn)
            {
                be.Gemm(true, false, hf, cols, k, T.One, _w.Storage, gyt, T.Zero, dzt!);      // dZ [H·F, n·D] = wᵀ [H·F, K] · gY [K, n·D]
                be.FieldOuterProductBackward(_h.Storage, _x0.Storage, dzt!, gh, gx, b0, n, hr, f, d, d, cols);
            }
        }
    }
}

public static partial class Op
{
    /// <summary>
    /// CIN's outer product along the field axes: h [B, H, D], x0 [B, F, D] → z [B, H·F, D] with
    /// z[b, i·F + j, d] = h[b, i, d]·x0[b, j, d]. Gradients flow to both (also when h and x0 are one tensor).
    /// </summary>
    public static Tensor<T> FieldOuterProduct<T>(Tensor<T> h, Tensor<T> x0) where T : unmanaged, IFloatingPointIeee754<T>
        => FieldOuterProductNode<T>.Forward(h, x0);

    /// <summary>
    /// CIN's 1×1 convolution: z [B, C, D], w [K, C], bias [K] (optional) → y [B, K, D],
    /// y[b, k, d] = Σ_c w[k, c]·z[b, c, d] + bias[k].
    /// </summary>
    public static Tensor<T> ChannelMix<T>(Tensor<T> z, Tensor<T> w, Tensor<T>? bias = null) where T : unmanaged, IFloatingPointIeee754<T>
        => ChannelMixNode<T>.Forward(z, w, bias);

    /// <summary>
    /// One xDeepFM CIN layer, fused and batch-tiled: h [B, H, D], x0 [B, F, D], w [K, H·F], bias [K] (optional) →
    /// [B, K, D], equal to <c>ChannelMix(FieldOuterProduct(h, x0), w, bias)</c> without ever materialising the
    /// [B, H·F, D] outer product (scratch stays within a few MB whatever the batch). The first layer passes
    /// x0 as h.
    /// </summary>
    public static Tensor<T> CinLayer<T>(Tensor<T> h, Tensor<T> x0, Tensor<T> w, Tensor<T>? bias = null) where T : unmanaged, IFloatingPointIeee754<T>
        => CinLayerNode<T>.Forward(h, x0, w, bias);
}
