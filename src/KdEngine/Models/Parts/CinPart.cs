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
    public override bool ZeroOutputLayer() => Zero(_out);
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
    public override IEnumerable<Tensor> ServingMatrices => Enumerable.Range(0, _cin.LayerSizes.Count).Select(_cin.Weight);

    /// <inheritdoc/>
    public override InferenceStage Compile(PlanLayout layout) => new CinStage(_cin, _out, layout);

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
    private sealed unsafe class CinStage : InferenceStage
    {
        /// <summary>Rows (sample × embedding position) per CIN tile: enough rows that the GEMM's per-call packing of the
        /// constant weight operand ([H·F, K], 3 MB at the bench config) is amortised (≈ 5 %), few enough that the Z tile
        /// (256 × 3,900 floats = 4 MB at the bench config) stays near the caches.</summary>
        private const int TileRows = 256;

        private readonly int _f, _d, _tile, _outputWidth, _maxChannels, _maxMaps;
        private readonly long _widenedFloats;          // bf16: Σ_k channels_k · stride_k, the layers widened for a call
        private readonly Layer[] _layers;
        private readonly Activation _activation;
        private readonly WeightFormat _format;
        private readonly float[] _out;  // [Σ output maps]

        public CinStage(Cin cin, Linear output, PlanLayout layout)
        {
            _f = layout.FieldCount;
            _d = layout.EmbeddingDim;
            _format = layout.Precision.DenseWeights;
            _activation = cin.ActivationKind;
            var sizes = cin.LayerSizes;
            _layers = new Layer[sizes.Count];
            int prevMaps = _f;
            for (int k = 0; k < sizes.Count; k++)
            {
                int h = sizes[k], channels = prevMaps * _f;
                bool last = k == sizes.Count - 1;
                // Wᵀ [H_{k−1}·F, stride], stride = H_k rounded up to 16 with zero columns: the SGEMM then reads the
                // weights in place (a row-major B of whole 512-bit vectors) instead of packing 6.2 MB per tile and layer
                // at the bench config (measured on the CIN's GEMMs at batch 1024: 379 → 345 ms on 1 thread, 286 → 207 ms
                // on 2). The padded maps come out as 0·x + 0 = 0 and are never read. Int8 keeps W [H_k, H_{k−1}·F] per
                // output map (Int8Weights packs it) and writes Y with the same padded stride.
                int stride = (h + 15) / 16 * 16;
                float[]? wt = null;
                ushort[]? wtBf16 = null;
                Int8Weights? q = null;
                if (_format == WeightFormat.Int8) q = layout.Int8For(cin.Weight(k), h, channels);
                else
                {
                    var w = cin.Weight(k).ToArray();                               // [H_k, H_{k−1}·F]
                    wt = new float[channels * stride];
                    for (int o = 0; o < h; o++)
                        for (int c = 0; c < channels; c++) wt[c * stride + o] = w[o * channels + c];
                    if (_format == WeightFormat.BFloat16)
                    {
                        wtBf16 = new ushort[wt.Length];
                        Bf16.FromFloat(wt, wtBf16);
                        wt = null;
                        _widenedFloats += (long)channels * stride;
                    }
                }
                var bias = new float[stride];
                cin.Bias(k).ToArray().CopyTo(bias, 0);
                int next = cin.SplitHalf && !last ? h / 2 : h;
                int outFirst = cin.SplitHalf && !last ? next : 0;
                bool toOutput = cin.DirectConnections || last;
                _layers[k] = new Layer(prevMaps, h, stride, wt, wtBf16, q, bias, toOutput ? outFirst : h, _outputWidth);
                if (toOutput) _outputWidth += h - outFirst;
                _maxChannels = Math.Max(_maxChannels, channels);
                _maxMaps = Math.Max(_maxMaps, stride);
                MacsPerRow += (long)h * channels * _d;
                WeightBytes += q?.Bytes ?? (long)channels * stride * (wtBf16 is null ? 4 : 2);
                prevMaps = next;
            }
            _out = output.Weight.ToArray();
            _tile = Math.Max(1, TileRows / _d);
        }

        public override StagePhases Phases => StagePhases.Batch;

        public override long MacsPerRow { get; }
        public override long WeightBytes { get; }
        public override long HeldBytes => WeightBytes + 4L * (_layers.Sum(l => (long)l.Bias.Length) + _out.Length);

        /// <summary>
        /// Float32 and bf16 tiles change a row's bits with the tile's row count only across 16 rows (the SGEMM's small path),
        /// so ranges keep the bits when they start at tile boundaries (then every tile is the whole batch's tile) or, for a
        /// batch of one tile, when each range's tile stays on the same side of 16 rows. Int8 tiles are exact per row.
        /// </summary>
        public override RangeRule RangeRuleFor(int batch)
        {
            if (_format == WeightFormat.Int8) return RangeRule.Any;
            if (batch > _tile) return new RangeRule(1, _tile);
            return (long)batch * _d > Sgemm.SmallM ? new RangeRule(Sgemm.SmallM / _d + 1, 1) : RangeRule.Any;
        }

        /// <summary>x0t [Bt·D, F], Z [Bt·D, max H·F] (int8: as bytes, with a scale and a zero point per row), two Y
        /// [Bt·D, max stride], pooled [Bt, maps] — ≈ 4.3 MB at the bench config whatever the batch — and, with bf16 weights
        /// on tiles above 16 rows, the layers widened to float32 once per call.</summary>
        public override long ScratchFloats(int rows)
        {
            long bt = Math.Min(_tile, rows), r = bt * _d;
            long z = _format == WeightFormat.Int8 ? (r * Int8Gemm.PaddedK(_maxChannels) + 3) / 4 + 2 * r : r * _maxChannels;
            long widened = _format == WeightFormat.BFloat16 && r > Sgemm.SmallM ? _widenedFloats : 0;
            return r * _f + z + 2 * r * _maxMaps + bt * _outputWidth + widened;
        }

        public override void Run(in StageBatch batch)
        {
            int bt = Math.Min(_tile, batch.Rows), rows = bt * _d;
            var scratch = batch.Scratch;
            int at = 0;
            Span<float> Take(Span<float> s, long count) { var r = s.Slice(at, (int)count); at += (int)count; return r; }
            var x0t = Take(scratch, rows * _f);
            var z = Take(scratch, _format == WeightFormat.Int8 ? ((long)rows * Int8Gemm.PaddedK(_maxChannels) + 3) / 4 + 2L * rows : (long)rows * _maxChannels);
            var y0 = Take(scratch, rows * _maxMaps);
            var y1 = Take(scratch, rows * _maxMaps);
            var pooled = Take(scratch, bt * _outputWidth);
            var widened = _format == WeightFormat.BFloat16 && rows > Sgemm.SmallM ? Take(scratch, _widenedFloats) : default;
            if (!widened.IsEmpty)
            {
                // bf16 above 16 rows: widen every layer once for the whole call (k·n work, against the tiles' m·k·n).
                long offset = 0;
                foreach (var layer in _layers)
                {
                    int count = layer.WeightTBf16!.Length;
                    Bf16.ToFloat(layer.WeightTBf16, widened.Slice((int)offset, count));
                    offset += count;
                }
            }
            for (int b0 = 0; b0 < batch.Rows; b0 += bt)
                RunTile(batch.X0, b0, Math.Min(bt, batch.Rows - b0), x0t, z, y0, y1, pooled, widened, batch.Logits);
        }

        private void RunTile(ReadOnlySpan<float> x0, int b0, int n, Span<float> x0t, Span<float> zBuf, Span<float> yA, Span<float> yB,
            Span<float> pooled, Span<float> widened, Span<float> logit)
        {
            int f = _f, d = _d, rows = n * d, outW = _outputWidth;
            InferenceKernels.CinTransposeX0(x0, b0, f, d, x0t, 0, n);          // x0t [n·D, F]: x0t[t·D + dd, j] = x0[b0 + t, j, dd]
            pooled = pooled.Slice(0, n * outW);
            pooled.Clear();
            ReadOnlySpan<float> prev = x0t.Slice(0, rows * f);
            int prevStride = f;
            long widenedAt = 0;
            for (int k = 0; k < _layers.Length; k++)
            {
                var layer = _layers[k];
                int channels = layer.InMaps * f, maps = layer.Maps, stride = layer.Stride;
                var y = (k % 2 == 0 ? yA : yB).Slice(0, rows * stride);   // Y [n·D, stride]: maps H_k, then zero padding
                InferenceKernels.FillRows(y, stride, layer.Bias, 0, rows);
                if (layer.Int8 is { } q)
                {
                    // Z straight to uint8 [n·D, PaddedK(H·F)] with a scale and a zero point per row, then Y += Z·Wᵀ in int32.
                    int kp = Int8Gemm.PaddedK(channels);
                    var zBytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(zBuf);
                    fixed (byte* zq = zBytes)
                    fixed (float* py = y)
                    {
                        float* scales = (float*)(zq + ((long)rows * kp + 3) / 4 * 4);
                        int* zeros = (int*)(scales + rows);
                        InferenceKernels.CinOuterRowsQuantized(x0t, f, prev, prevStride, layer.InMaps, zq, scales, zeros, 0, rows);
                        Int8Gemm.Multiply(rows, zq, scales, zeros, q, py, stride, accumulate: true);
                    }
                }
                else
                {
                    var z = zBuf.Slice(0, rows * channels);
                    InferenceKernels.CinOuterRows(x0t, f, prev, prevStride, layer.InMaps, z, 0, rows);
                    if (layer.WeightT is { } wt) Sgemm.Multiply(false, false, rows, stride, channels, 1f, z, wt, 1f, y); // Y = Z · Wᵀ + bias
                    else if (widened.IsEmpty) Bf16Gemm.Multiply(rows, stride, channels, z, layer.WeightTBf16!, y, accumulate: true);
                    else Sgemm.Multiply(false, false, rows, stride, channels, 1f, z, widened.Slice((int)widenedAt, channels * stride), 1f, y);
                    widenedAt += (long)channels * stride;
                }
                Activate(y, _activation);
                int width = maps - layer.OutFirst;
                if (width > 0) InferenceKernels.CinPool(y, stride, d, layer.OutFirst, width, pooled, outW, layer.OutOffset, 0, n);
                prev = y;
                prevStride = stride;
            }
            InferenceKernels.AddRowDots(pooled, _out, logit.Slice(b0, n), 0, n);
        }

        /// <summary>One layer: WeightT [InMaps·F, Stride] (float32 or bf16) or Int8 (W [Maps, InMaps·F] per output map), and
        /// Bias [Stride] zero-padded past Maps; maps [OutFirst, Maps) go to the pooled output at OutOffset.</summary>
        private sealed record Layer(int InMaps, int Maps, int Stride, float[]? WeightT, ushort[]? WeightTBf16, Int8Weights? Int8, float[] Bias,
            int OutFirst, int OutOffset);
    }
}
