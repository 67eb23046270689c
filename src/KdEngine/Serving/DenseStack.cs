using KdEngine.Kernels.Cpu;
using KdEngine.Nn;

namespace KdEngine.Serving;

/// <summary>
/// A compiled <see cref="Mlp"/> for the stages that run one (DNN, DCN, DCN-V2): each layer's weight in the layout its
/// product reads, with its bias; evaluation semantics (no dropout). <see cref="Run"/> computes
/// y [rows, out] = act(x [rows, in] · Wᵀ + b) layer by layer, one product per layer over all rows, ping-ponging between
/// two [rows, <see cref="MaxWidth"/>] halves of the caller's scratch. The weights are held in the layout's
/// <see cref="ServingPrecision.DenseWeights"/>:
/// <list type="bullet">
/// <item>float32: transposed to [in, out], the SGEMM's B operand read in place;</item>
/// <item>bfloat16: transposed to [in, out] as bf16 (<see cref="Bf16Gemm"/>: widened as read; with the same row rule as
/// float32, since above 16 rows it widens and runs the SGEMM);</item>
/// <item>int8: per output channel (<see cref="Int8Gemm"/>; exact integer sums, so a row's result never depends on the
/// batch it is in). A layer narrower than <see cref="Int8MinOutputs"/> outputs also keeps its dequantised weights
/// (s_j · q, transposed to [in, out], built once here) and runs them through the float32 SGEMM above 16 rows: there
/// quantising each activation row costs about as much as the narrow product itself, and the int8 product measured
/// slower than float32 on the distilled student's 390 → 32 layer at 1,000 rows, while at ≤ 16 rows the int8 product
/// reads a quarter of the bytes and wins (batch 1). A stack with such a layer follows the float32 row rule, and its
/// held bytes count the float copy.</item>
/// </list>
/// </summary>
internal sealed class DenseStack
{
    private readonly Layer[] _layers;
    private readonly Activation _activation;
    private readonly WeightFormat _format;
    private readonly bool _hasNarrowInt8;

    /// <summary>Int8 layers with fewer outputs run their dequantised float32 copy above 16 rows (see the type's summary).</summary>
    internal const int Int8MinOutputs = 64;

    public DenseStack(Mlp mlp, PlanLayout layout)
    {
        _activation = mlp.ActivationKind;
        _format = layout.Precision.DenseWeights;
        _layers = new Layer[mlp.Depth];
        for (int i = 0; i < _layers.Length; i++)
        {
            var linear = mlp.Layers[i];
            int inF = linear.InFeatures, outF = linear.OutFeatures;
            float[]? wt = null;
            ushort[]? wtBf16 = null;
            Int8Weights? q = null;
            if (_format == WeightFormat.Int8)
            {
                q = layout.Int8For(linear.Weight, outF, inF);
                if (outF < Int8MinOutputs)
                {
                    // The float32 copy above 16 rows: Wᵀ' [in, out] with Wᵀ'[p, j] = s_j · q[j, p].
                    var values = q.Values;
                    wt = new float[inF * outF];
                    for (int j = 0; j < outF; j++)
                    {
                        float scale = q.Scales[j];
                        for (int p = 0; p < inF; p++) wt[p * outF + j] = scale * values[j * inF + p];
                    }
                    _hasNarrowInt8 = true;
                }
            }
            else
            {
                var w = linear.Weight.ToArray();                              // [out, in]
                wt = new float[w.Length];                                     // [in, out]
                for (int o = 0; o < outF; o++)
                    for (int k = 0; k < inF; k++) wt[k * outF + o] = w[o * inF + k];
                if (_format == WeightFormat.BFloat16)
                {
                    wtBf16 = new ushort[wt.Length];
                    Bf16.FromFloat(wt, wtBf16);
                    wt = null;
                }
            }
            _layers[i] = new Layer(inF, outF, wt, wtBf16, q, linear.Bias!.ToArray());
            MaxWidth = Math.Max(MaxWidth, outF);
            MacsPerRow += (long)inF * outF;
            WeightBytes += q?.Bytes ?? (long)inF * outF * (wtBf16 is null ? 4 : 2);
            if (q is not null && wt is not null) _narrowCopyBytes += 4L * inF * outF;
        }
        InFeatures = _layers[0].In;
        OutFeatures = _layers[^1].Out;
    }

    public int InFeatures { get; }
    public int OutFeatures { get; }
    public int MaxWidth { get; }

    /// <summary>Multiply-adds per sample (Σ in·out).</summary>
    public long MacsPerRow { get; }

    /// <summary>Bytes of weight matrices read per call (biases excluded).</summary>
    public long WeightBytes { get; }

    /// <summary>Bytes of every weight held: the matrices in their serving format and the float32 biases.</summary>
    public long HeldBytes => WeightBytes + _narrowCopyBytes + 4L * _layers.Sum(l => (long)l.Bias.Length);

    private readonly long _narrowCopyBytes;   // the float32 copies of narrow int8 layers

    /// <summary>Float32 and bf16 products change a row's bits with the row count only across m = 16; int8 never does,
    /// unless a narrow layer switches to its float32 copy above 16 rows.</summary>
    public RangeRule RangeRuleFor(int rows) =>
        _format == WeightFormat.Int8 && !_hasNarrowInt8 ? RangeRule.Any : RangeRule.SgemmRows(rows);

    public long ScratchFloats(int rows) => 2L * rows * MaxWidth;

    /// <summary>x [rows, in] → the last activation [rows, out], a slice of <paramref name="scratch"/>.</summary>
    public Span<float> Run(ReadOnlySpan<float> x, int rows, Span<float> scratch)
    {
        var ping = scratch.Slice(0, rows * MaxWidth);
        var pong = scratch.Slice(rows * MaxWidth, rows * MaxWidth);
        ReadOnlySpan<float> input = x;
        Span<float> y = default;
        for (int i = 0; i < _layers.Length; i++)
        {
            var layer = _layers[i];
            y = (i % 2 == 0 ? ping : pong).Slice(0, rows * layer.Out);        // y [rows, out]
            InferenceKernels.FillRows(y, layer.Out, layer.Bias, 0, rows);
            // y [rows, out] = x [rows, in] · Wᵀ [in, out] + bias (pre-filled, beta = 1); a narrow int8 layer holds both
            // forms and takes the int8 one at ≤ 16 rows.
            if (layer.Int8 is { } q && (layer.WeightT is null || rows <= Sgemm.SmallM)) Int8Gemm.Multiply(input, rows, q, y, accumulate: true);
            else if (layer.WeightT is { } wt) Sgemm.Multiply(false, false, rows, layer.Out, layer.In, 1f, input, wt, 1f, y);
            else if (layer.WeightTBf16 is { } wb) Bf16Gemm.Multiply(rows, layer.Out, layer.In, input, wb, y, accumulate: true);
            else throw new InvalidOperationException("DenseStack: a layer without weights.");
            InferenceStage.Activate(y, _activation);
            input = y;
        }
        return y;
    }

    private sealed record Layer(int In, int Out, float[]? WeightT, ushort[]? WeightTBf16, Int8Weights? Int8, float[] Bias);
}
