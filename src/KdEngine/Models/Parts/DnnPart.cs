using System.Numerics.Tensors;
using KdEngine.Kernels.Cpu;
using KdEngine.Nn;
using KdEngine.Serving;
using KdEngine.Tensors;
using Tensor = KdEngine.Tensors.Tensor<float>;

namespace KdEngine.Models.Parts;

/// <summary>
/// The DNN part z = Linear(MLP(flatten x0), 1): parameters <c>dnn.{i}.weight</c> [out, in], <c>dnn.{i}.bias</c> [out],
/// <c>dnn_out.weight</c> [1, width] and, in the DNN-alone model (<see cref="RecipeWithOutputBias"/>), <c>dnn_out.bias</c> [1]
/// (beside a wide part the wide bias is the model's bias). Hidden layers <c>dnn.{i}</c> [B, width_i] (post-activation).
/// Inference: one SGEMM per layer over the batch (<see cref="DenseStack"/>), then a dot product per sample.
/// </summary>
public sealed class DnnPart : ModelPart
{
    private readonly Mlp _mlp;
    private readonly Linear _out;

    /// <summary>Builds the part from the model's config, input fields and seeded random source (<paramref name="context"/>);
    /// <paramref name="outputBias"/>: whether <c>dnn_out</c> has a bias (the DNN model alone; beside other parts the model's
    /// other terms carry it).</summary>
    public DnnPart(PartContext context, bool outputBias)
    {
        var c = context.Config;
        _mlp = AddModule("dnn", new Mlp(context.Fields.Count * c.EmbeddingDim, c.Dnn, c.DnnActivation, c.Dropout, context.Rng, context.SharedDnnLayers));
        _out = AddModule("dnn_out", new Linear(_mlp.OutFeatures, 1, context.Rng, bias: outputBias));
    }

    /// <summary>How a model builds, counts (before building) and validates this part: the DNN beside other parts (WDL, DeepFM,
    /// xDeepFM), no output bias.</summary>
    public static PartRecipe Recipe { get; } = new(
        ReadsEmbedding: true,
        ParameterCount: (c, fields) => MlpParameterCount(c, (long)fields.Count * c.EmbeddingDim) + c.Dnn[^1], // + dnn_out.weight [1, width]
        Build: context => new DnnPart(context, outputBias: false),
        Validate: RequireDnn);

    /// <summary>The DNN alone: Linear(…, 1) with its bias <c>dnn_out.bias</c>. Checkpoints written before the DNN model had
    /// it lack the tensor and load with a zero bias, which is exactly the model they were (no bias).</summary>
    public static PartRecipe RecipeWithOutputBias { get; } = new(
        ReadsEmbedding: true,
        ParameterCount: (c, fields) => MlpParameterCount(c, (long)fields.Count * c.EmbeddingDim) + c.Dnn[^1] + 1,
        Build: context => new DnnPart(context, outputBias: true),
        Validate: RequireDnn,
        AbsentInOlderCheckpoints: [("dnn_out.bias", 1)]);

    /// <summary>Weights of <c>dnn.{i}</c> over <paramref name="inFeatures"/> inputs: Σ (in·out + out).</summary>
    internal static long MlpParameterCount(ModelConfig c, long inFeatures)
    {
        long total = 0, last = inFeatures;
        foreach (int w in c.Dnn) { total += last * w + w; last = w; }
        return total;
    }

    internal static void RequireDnn(ModelConfig c, string source)
    {
        if (c.Dnn.Length == 0) throw new ConfigException($"{source}: model {c.Model} needs at least one dnn layer.");
    }

    /// <inheritdoc/>
    public override bool ReadsEmbedding => true;

    /// <inheritdoc/>
    public override bool ZeroOutputLayer() => Zero(_out);

    /// <inheritdoc/>
    public override Mlp? Dnn => _mlp;

    /// <inheritdoc/>
    public override Tensor Forward(in PartInput input, IDictionary<string, Tensor> hidden) =>
        _out.Forward(_mlp.Forward(input.Flat!, hidden));            // [B, width] → [B, 1]

    /// <inheritdoc/>
    public override IEnumerable<Tensor> ServingMatrices => _mlp.Layers.Select(l => l.Weight);

    /// <inheritdoc/>
    public override InferenceStage Compile(PlanLayout layout) =>
        new DnnStage(new DenseStack(_mlp, layout), _out.Weight.ToArray(), _out.Bias?.ToArray()[0]);

    /// <inheritdoc/>
    public override string EmitOnnx(IOnnxGraph g, in OnnxPartInput input)
    {
        string deep = EmitMlp(g, _mlp, input.Flat!);
        string term = g.Node("MatMul", [deep, OnnxEmit.Matrix(g, "dnn_out.weight", _out.Weight, _mlp.OutFeatures, 1)]); // [B, 1]
        return _out.Bias is null ? term : g.Node("Add", [term, OnnxEmit.Vector(g, "dnn_out.bias", _out.Bias)]);
    }

    /// <summary>The MLP registered as <c>dnn</c> as Gemm(transB = 1) + activation nodes: [B, in] → [B, width].</summary>
    internal static string EmitMlp(IOnnxGraph g, Mlp mlp, string x)
    {
        for (int i = 0; i < mlp.Depth; i++)
        {
            var layer = mlp.Layers[i];
            string w = OnnxEmit.Matrix(g, $"dnn.{i}.weight", layer.Weight, layer.OutFeatures, layer.InFeatures); // [out, in]
            string b = OnnxEmit.Vector(g, $"dnn.{i}.bias", layer.Bias!);
            x = OnnxEmit.Activate(g, g.Node("Gemm", [x, w, b], ("transB", 1)), mlp.ActivationKind);             // [B, out]
        }
        return x;
    }

    /// <summary>deep [B, width] = the compiled MLP of x0; logit += deep_b · w_out (+ b_out when the part has it).</summary>
    private sealed class DnnStage(DenseStack mlp, float[] outWeight, float? outBias) : InferenceStage
    {
        public override StagePhases Phases => StagePhases.Batch;
        public override long ScratchFloats(int rows) => mlp.ScratchFloats(rows);
        public override RangeRule RangeRuleFor(int batch) => mlp.RangeRuleFor(batch);
        public override long MacsPerRow => mlp.MacsPerRow;
        public override long WeightBytes => mlp.WeightBytes;
        public override long HeldBytes => mlp.HeldBytes + 4L * outWeight.Length;

        public override void Run(in StageBatch batch)
        {
            var deep = mlp.Run(batch.X0, batch.Rows, batch.Scratch);
            InferenceKernels.AddRowDots(deep, outWeight, batch.Logits, 0, batch.Rows);
            if (outBias is { } bias)
                for (int b = 0; b < batch.Rows; b++) batch.Logits[b] += bias;
        }
    }
}
