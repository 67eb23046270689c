using System.Numerics.Tensors;
using KdEngine.Kernels.Cpu;
using KdEngine.Nn;
using KdEngine.Serving;
using KdEngine.Tensors;
using Tensor = KdEngine.Tensors.Tensor<float>;

namespace KdEngine.Models.Parts;

/// <summary>
/// xDeepFM's CIN part z = Linear(CIN(x0), 1) (<see cref="Cin"/>): parameters <c>cin.{k}.weight</c> [H_k, H_{k−1}·F],
/// <c>cin.{k}.bias</c> [H_k], <c>cin_out.weight</c> [1, Σ output maps]. Hidden layers <c>cin.{k}</c> [B, H_k, D] and
/// <c>cin.pooled</c> [B, maps]. Inference: the fused, tiled CIN of <see cref="CinStage"/> (docs/serving.md).
/// </summary>
public sealed class CinPart : ModelPart
{
    private readonly Cin _cin;
    private readonly Linear _out;

    /// <summary>Builds the part from the model's config, input fields and seeded random source (<paramref name="context"/>).</summary>
    public CinPart(PartContext context)
    {
        var c = context.Config;
        _cin = AddModule("cin", new Cin(context.Fields.Count, c.Cin, c.CinActivation, c.CinSplitHalf, c.CinDirectConnections, context.Rng));
        _out = AddModule("cin_out", new Linear(_cin.OutputWidth, 1, context.Rng, bias: false));
    }

    /// <summary>How a model builds, counts (before building) and validates this part.</summary>
    public static PartRecipe Recipe { get; } = new(
        ReadsEmbedding: true,
        ParameterCount: ParameterCount,
        Build: context => new CinPart(context),
        Validate: (c, source) =>
        {
            if (c.Cin.Length == 0) throw new ConfigException($"{source}: {c.Model} needs at least one cin layer.");
        });

    private static long ParameterCount(ModelConfig c, IReadOnlyList<InputField> fields)
    {
        long f = fields.Count, total = 0, prevMaps = f, outputMaps = 0;
        for (int k = 0; k < c.Cin.Length; k++)
        {
            long h = c.Cin[k];
            bool lastLayer = k == c.Cin.Length - 1;
            total += h * prevMaps * f + h;                // cin.{k}.weight [H_k, H_{k−1}·F], .bias [H_k]
            long next = c.CinSplitHalf && !lastLayer ? h / 2 : h;
            if (c.CinDirectConnections) outputMaps += c.CinSplitHalf && !lastLayer ? h - next : h;
            else if (lastLayer) outputMaps = h;
            prevMaps = next;
        }
        return total + outputMaps;                        // cin_out.weight [1, maps]
    }

    /// <inheritdoc/>
    public override bool ReadsEmbedding => true;
    /// <inheritdoc/>
    public override bool IsInteractionLayer => true;

    /// <inheritdoc/>
    public override Tensor Forward(in PartInput input, IDictionary<string, Tensor> hidden)
    {
        var pooled = _cin.Forward(input.X0!, hidden);  // [B, maps]
        hidden["cin.pooled"] = pooled;
        return _out.Forward(pooled);                    // [B, 1]
    }

    /// <inheritdoc/>
    public override InferenceStage Compile(PlanLayout layout) => new CinStage(_cin, _out, layout.FieldCount, layout.EmbeddingDim);

    /// <inheritdoc/>
    public override string EmitOnnx(IOnnxGraph g, in OnnxPartInput input)
    {
        // Per layer: Mul(Unsqueeze(h, 2) [B,H,1,D], Unsqueeze(x0, 1) [B,1,F,D]) → Reshape [B, H·F, D],
        // MatMul(W [K, H·F], ·) → [B, K, D], + bias [K, 1], activation, Slice (split-half), ReduceSum over D.
        string x0 = input.X0!;
        int f = input.Layout.FieldCount, d = input.Layout.EmbeddingDim;
        string axis1 = g.Int64s("axis1", [1], [1]);
        string axis2 = g.Int64s("axis2", [2], [1]);
        string x0Row = g.Node("Unsqueeze", [x0, axis1]);                                                     // [B, 1, F, D]
        string h = x0;
        int hMaps = f;
        var pooled = new List<string>();
        var sizes = _cin.LayerSizes;
        for (int k = 0; k < sizes.Count; k++)
        {
            int maps = sizes[k];
            bool last = k == sizes.Count - 1;
            string z = g.Node("Mul", [g.Node("Unsqueeze", [h, axis2]), x0Row]);                               // [B, H, F, D]
            z = g.Node("Reshape", [z, g.Int64s($"cin.{k}.shape", [0, hMaps * f, d], [3])]);                   // [B, H·F, D]
            string w = OnnxEmit.Matrix(g, $"cin.{k}.weight", _cin.Weight(k), maps, hMaps * f);
            string y = g.Node("MatMul", [w, z]);                                                              // [K, H·F]·[B, H·F, D] → [B, K, D]
            y = g.Node("Add", [y, OnnxEmit.Matrix(g, $"cin.{k}.bias", _cin.Bias(k), maps, 1)]);
            y = OnnxEmit.Activate(g, y, _cin.ActivationKind);
            string toOutput = y;
            if (_cin.SplitHalf && !last)
            {
                int half = maps / 2;
                h = g.Node("Slice", [y, g.Int64s($"cin.{k}.first", [0], [1]), g.Int64s($"cin.{k}.half", [half], [1]), axis1]);      // [B, H/2, D]
                toOutput = g.Node("Slice", [y, g.Int64s($"cin.{k}.half", [half], [1]), g.Int64s($"cin.{k}.end", [maps], [1]), axis1]); // [B, K − H/2, D]
                hMaps = half;
            }
            else
            {
                h = y;
                hMaps = maps;
            }
            if (_cin.DirectConnections || last)
                pooled.Add(g.Node("ReduceSum", [toOutput, axis2], ("keepdims", 0)));                          // [B, maps]
        }
        string all = pooled.Count == 1 ? pooled[0] : g.Node("Concat", pooled.ToArray(), ("axis", 1));
        return g.Node("MatMul", [all, OnnxEmit.Matrix(g, "cin_out.weight", _out.Weight, _cin.OutputWidth, 1)]); // [B, 1]
    }

    /// <summary>
    /// The fused CIN over a range of samples: every layer, pooling and the cin_out dot product, per tile of
    /// <see cref="TileRows"/>/D samples. Layout is "d-major": a row r = t·D + d holds one (sample, embedding position)
    /// pair, so the X^0 tile is x0t [n·D, F] and X^k tile is Y [n·D, H_k].
    /// <code>
    ///   Z [n·D, H_{k−1}·F]:  Z[r, i·F + j] = X^{k−1}[r, i] · X^0[r, j]            (the outer product, this tile only)
    ///   Y [n·D, H_k]      = Z · Wᵀ [H_{k−1}·F, H_k] + bias     (ONE GEMM per layer and tile; then the activation)
    ///   pooled[t, o + c]  = Σ_d Y[t·D + d, first + c]         (maps sent to the output; split-half: the second half)
    /// </code>
    /// Per example, layer k costs H_{k−1}·F·D multiplies (Z) + 2·H_k·H_{k−1}·F·D FLOPs (GEMM) + ~2·H_k·D (bias,
    /// activation) + H_out·D (pooling). Alternatives considered, all exact: (a) T = W [H_k·H_{k−1}, F]·X^0 then contract
    /// with X^{k−1} over i: the same 2·H_k·H_{k−1}·F·D GEMM plus 2·H_k·H_{k−1}·D; (b) U = W [H_k·F, H_{k−1}]·X^{k−1} then
    /// contract with X^0 over j: the same GEMM plus 2·H_k·F·D and an [H_k·F, n·D] intermediate (31× Z's reads at the
    /// bench config). The outer-product tile adds only H_{k−1}·F·D (≤ 1/(2·H_k) of the GEMM) and gives the GEMM its
    /// longest inner dimension (H_{k−1}·F = 3,900 at the bench config), so it is the cheapest. Bench config (F = 39,
    /// D = 16, [200, 200, 200] split-half): GEMMs 9.7 + 25.0 + 25.0 = 59.7 MFLOP per example.
    /// With the weights as the GEMM's B operand the batch-1 product has m = D ≤ 16 rows, which the SGEMM runs
    /// without packing.
    /// </summary>
    private sealed class CinStage : InferenceStage
    {
        /// <summary>Rows (sample × embedding position) per CIN tile: enough rows that the GEMM's per-call packing of the
        /// constant weight operand ([H·F, K], 3 MB at the bench config) is amortised (≈ 5 %), few enough that the Z tile
        /// (256 × 3,900 floats = 4 MB at the bench config) stays near the caches.</summary>
        private const int TileRows = 256;

        private readonly int _f, _d, _tile, _outputWidth, _maxChannels, _maxMaps;
        private readonly Layer[] _layers;
        private readonly Activation _activation;
        private readonly float[] _out;  // [Σ output maps]

        public CinStage(Cin cin, Linear output, int fields, int dim)
        {
            _f = fields;
            _d = dim;
            _activation = cin.ActivationKind;
            var sizes = cin.LayerSizes;
            _layers = new Layer[sizes.Count];
            int prevMaps = _f;
            for (int k = 0; k < sizes.Count; k++)
            {
                int h = sizes[k], channels = prevMaps * _f;
                bool last = k == sizes.Count - 1;
                var w = cin.Weight(k).ToArray();                                   // [H_k, H_{k−1}·F]
                // Wᵀ [H_{k−1}·F, stride], stride = H_k rounded up to 16 with zero columns: the SGEMM then reads the
                // weights in place (a row-major B of whole 512-bit vectors) instead of packing 6.2 MB per tile and layer
                // at the bench config (measured on the CIN's GEMMs at batch 1024: 379 → 345 ms on 1 thread, 286 → 207 ms
                // on 2). The padded maps come out as 0·x + 0 = 0 and are never read.
                int stride = (h + 15) / 16 * 16;
                var wt = new float[channels * stride];
                for (int o = 0; o < h; o++)
                    for (int c = 0; c < channels; c++) wt[c * stride + o] = w[o * channels + c];
                var bias = new float[stride];
                cin.Bias(k).ToArray().CopyTo(bias, 0);
                int next = cin.SplitHalf && !last ? h / 2 : h;
                int outFirst = cin.SplitHalf && !last ? next : 0;
                bool toOutput = cin.DirectConnections || last;
                _layers[k] = new Layer(prevMaps, h, stride, wt, bias, toOutput ? outFirst : h, _outputWidth);
                if (toOutput) _outputWidth += h - outFirst;
                _maxChannels = Math.Max(_maxChannels, channels);
                _maxMaps = Math.Max(_maxMaps, stride);
                prevMaps = next;
            }
            _out = output.Weight.ToArray();
            _tile = Math.Max(1, TileRows / _d);
        }

        public override StagePhases Phases => StagePhases.Batch;

        /// <summary>x0t [Bt·D, F], Z [Bt·D, max H·F], two Y [Bt·D, max stride], pooled [Bt, maps]: ≈ 4.3 MB at the bench
        /// config whatever the batch.</summary>
        public override long ScratchFloats(int rows)
        {
            long bt = Math.Min(_tile, rows), r = bt * _d;
            return r * _f + r * _maxChannels + 2 * r * _maxMaps + bt * _outputWidth;
        }

        public override void Run(in StageBatch batch)
        {
            int bt = Math.Min(_tile, batch.Rows), rows = bt * _d;
            var scratch = batch.Scratch;
            int at = 0;
            Span<float> Take(Span<float> s, int count) { var r = s.Slice(at, count); at += count; return r; }
            var x0t = Take(scratch, rows * _f);
            var z = Take(scratch, rows * _maxChannels);
            var y0 = Take(scratch, rows * _maxMaps);
            var y1 = Take(scratch, rows * _maxMaps);
            var pooled = Take(scratch, bt * _outputWidth);
            for (int b0 = 0; b0 < batch.Rows; b0 += bt)
                RunTile(batch.X0, b0, Math.Min(bt, batch.Rows - b0), x0t, z, y0, y1, pooled, batch.Logits);
        }

        private void RunTile(ReadOnlySpan<float> x0, int b0, int n, Span<float> x0t, Span<float> zBuf, Span<float> yA, Span<float> yB,
            Span<float> pooled, Span<float> logit)
        {
            int f = _f, d = _d, fd = f * d, rows = n * d, outW = _outputWidth;
            // x0t [n·D, F]: x0t[t·D + dd, j] = x0[b0 + t, j, dd]
            for (int t = 0; t < n; t++)
            {
                var xs = x0.Slice((b0 + t) * fd, fd);
                for (int j = 0; j < f; j++)
                    for (int dd = 0; dd < d; dd++) x0t[(t * d + dd) * f + j] = xs[j * d + dd];
            }
            pooled = pooled.Slice(0, n * outW);
            pooled.Clear();
            ReadOnlySpan<float> prev = x0t.Slice(0, rows * f);
            int prevStride = f;
            for (int k = 0; k < _layers.Length; k++)
            {
                var layer = _layers[k];
                int channels = layer.InMaps * f, maps = layer.Maps, stride = layer.Stride;
                var z = zBuf.Slice(0, rows * channels);
                for (int r = 0; r < rows; r++)
                {
                    var xr = x0t.Slice(r * f, f);
                    var hr = prev.Slice(r * prevStride, layer.InMaps);
                    var zr = z.Slice(r * channels, channels);
                    for (int i = 0; i < hr.Length; i++) TensorPrimitives.Multiply(xr, hr[i], zr.Slice(i * f, f));
                }
                var y = (k % 2 == 0 ? yA : yB).Slice(0, rows * stride);   // Y [n·D, stride]: maps H_k, then zero padding
                for (int r = 0; r < rows; r++) layer.Bias.CopyTo(y.Slice(r * stride, stride));
                Sgemm.Multiply(false, false, rows, stride, channels, 1f, z, layer.WeightT, 1f, y); // Y = Z · Wᵀ + bias
                Activate(y, _activation);
                int width = maps - layer.OutFirst;
                if (width > 0)
                    for (int t = 0; t < n; t++)
                    {
                        var dst = pooled.Slice(t * outW + layer.OutOffset, width);
                        for (int dd = 0; dd < d; dd++) TensorPrimitives.Add(dst, y.Slice((t * d + dd) * stride + layer.OutFirst, width), dst);
                    }
                prev = y;
                prevStride = stride;
            }
            for (int t = 0; t < n; t++) logit[b0 + t] += TensorPrimitives.Dot(pooled.Slice(t * outW, outW), _out);
        }

        /// <summary>One layer: WeightT [InMaps·F, Stride] and Bias [Stride] zero-padded past Maps; maps [OutFirst, Maps) go
        /// to the pooled output at OutOffset.</summary>
        private sealed record Layer(int InMaps, int Maps, int Stride, float[] WeightT, float[] Bias, int OutFirst, int OutOffset);
    }
}
