using KdEngine.Kernels.Cpu;
using KdEngine.Nn;

namespace KdEngine.Serving;

/// <summary>
/// A compiled <see cref="Mlp"/> for the stages that run one (DNN, DCN, DCN-V2): each layer's weight transposed to
/// [in, out] (the GEMM's B operand, read in place) with its bias; evaluation semantics (no dropout).
/// <see cref="Run"/> computes y [rows, out] = act(x [rows, in] · Wᵀ + b) layer by layer, one SGEMM per layer over all
/// rows, ping-ponging between two [rows, <see cref="MaxWidth"/>] halves of the caller's scratch.
/// </summary>
internal sealed class DenseStack
{
    private readonly Layer[] _layers;
    private readonly Activation _activation;

    public DenseStack(Mlp mlp)
    {
        _activation = mlp.ActivationKind;
        _layers = new Layer[mlp.Depth];
        for (int i = 0; i < _layers.Length; i++)
        {
            var linear = mlp.Layers[i];
            int inF = linear.InFeatures, outF = linear.OutFeatures;
            var w = linear.Weight.ToArray();                                  // [out, in]
            var wt = new float[w.Length];                                     // [in, out]
            for (int o = 0; o < outF; o++)
                for (int k = 0; k < inF; k++) wt[k * outF + o] = w[o * inF + k];
            _layers[i] = new Layer(inF, outF, wt, linear.Bias!.ToArray());
            MaxWidth = Math.Max(MaxWidth, outF);
        }
        InFeatures = _layers[0].In;
        OutFeatures = _layers[^1].Out;
    }

    public int InFeatures { get; }
    public int OutFeatures { get; }
    public int MaxWidth { get; }

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
            for (int b = 0; b < rows; b++) layer.Bias.CopyTo(y.Slice(b * layer.Out, layer.Out));
            // y [rows, out] = x [rows, in] · Wᵀ [in, out] + bias (pre-filled, beta = 1)
            Sgemm.Multiply(false, false, rows, layer.Out, layer.In, 1f, input, layer.WeightT, 1f, y);
            InferenceStage.Activate(y, _activation);
            input = y;
        }
        return y;
    }

    private sealed record Layer(int In, int Out, float[] WeightT, float[] Bias);
}
