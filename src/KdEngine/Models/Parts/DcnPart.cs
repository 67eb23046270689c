using System.Numerics.Tensors;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Serving;
using KdEngine.Tensors;
using Tensor = KdEngine.Tensors.Tensor<float>;

namespace KdEngine.Models.Parts;

/// <summary>
/// DCN's cross network beside a DNN, joined by the DCN paper's combination layer:
/// z = Linear(concat(cross(flatten x0), MLP(flatten x0)), 1). Parameters <c>dnn.{i}.weight</c>/<c>.bias</c> (the MLP),
/// <c>cross.{l}.weight</c> [n, 1], <c>cross.{l}.bias</c> [n] (n = F·D), <c>dcn_out.weight</c> [1, n + width],
/// <c>dcn_out.bias</c> [1]. Hidden layers <c>dnn.{i}</c> and <c>cross</c> [B, n].
/// Inference: the compiled MLP over the batch, then per sample the cross layers x ← x0·(x·w_l) + b_l + x and the
/// combination's two dot products.
/// </summary>
public sealed class DcnPart : ModelPart
{
    private readonly Mlp _mlp;
    private readonly CrossNetwork _cross;
    private readonly Linear _out;

    /// <summary>Builds the part from the model's config, input fields and seeded random source (<paramref name="context"/>).</summary>
    public DcnPart(PartContext context)
    {
        var c = context.Config;
        int n = context.Fields.Count * c.EmbeddingDim;
        _mlp = AddModule("dnn", new Mlp(n, c.Dnn, c.DnnActivation, c.Dropout, context.Rng, context.SharedDnnLayers));
        _cross = AddModule("cross", new CrossNetwork(n, c.CrossLayers, context.Rng));
        _out = AddModule("dcn_out", new Linear(n + _mlp.OutFeatures, 1, context.Rng));
    }

    /// <summary>How a model builds, counts (before building) and validates this part.</summary>
    public static PartRecipe Recipe { get; } = new(
        ReadsEmbedding: true,
        ParameterCount: (c, fields) =>
        {
            long n = (long)fields.Count * c.EmbeddingDim;
            return DnnPart.MlpParameterCount(c, n)
                + c.CrossLayers * 2 * n          // cross.{l}.weight [n, 1], .bias [n]
                + n + c.Dnn[^1] + 1;             // dcn_out [1, n + width] + bias
        },
        Build: context => new DcnPart(context),
        Validate: DnnPart.RequireDnn);

    /// <inheritdoc/>
    public override bool ReadsEmbedding => true;

    /// <inheritdoc/>
    public override bool ZeroOutputLayer() => Zero(_out);

    /// <inheritdoc/>
    public override Mlp? Dnn => _mlp;
    /// <inheritdoc/>
    public override bool IsInteractionLayer => true;

    /// <inheritdoc/>
    public override Tensor Forward(in PartInput input, IDictionary<string, Tensor> hidden)
    {
        var deep = _mlp.Forward(input.Flat!, hidden);  // [B, width]
        var crossed = _cross.Forward(input.Flat!);     // [B, n]
        hidden["cross"] = crossed;
        return _out.Forward(Op.Concat([crossed, deep], axis: 1)); // [B, n + width] → [B, 1]
    }

    /// <inheritdoc/>
    public override IEnumerable<Tensor> ServingMatrices => _mlp.Layers.Select(l => l.Weight);

    /// <inheritdoc/>
    public override InferenceStage Compile(PlanLayout layout) => new DcnStage(new DenseStack(_mlp, layout), _cross, _out);

    /// <inheritdoc/>
    public override string EmitOnnx(IOnnxGraph g, in OnnxPartInput input)
    {
        string flat = input.Flat!;
        string deep = DnnPart.EmitMlp(g, _mlp, flat);
        int n = _cross.Width;
        string x = flat;
        for (int l = 0; l < _cross.Layers; l++)
        {
            string s = g.Node("MatMul", [x, OnnxEmit.Matrix(g, $"cross.{l}.weight", _cross.Weight(l), n, 1)]);  // [B, 1]
            string t = g.Node("Add", [g.Node("Mul", [flat, s]), OnnxEmit.Vector(g, $"cross.{l}.bias", _cross.Bias(l))]);
            x = g.Node("Add", [t, x]);                                                                         // [B, n]
        }
        string cat = g.Node("Concat", [x, deep], ("axis", 1));                                                 // [B, n + width]
        return g.Node("Gemm", [cat, OnnxEmit.Matrix(g, "dcn_out.weight", _out.Weight, 1, _out.InFeatures),
            OnnxEmit.Vector(g, "dcn_out.bias", _out.Bias!)], ("transB", 1));                                   // [B, 1]
    }

    /// <summary>deep = the compiled MLP of x0 over the batch; per sample x_{l+1} = ((x0 ∘ (x_l·w_l)) + b_l) + x_l and
    /// logit += [x_L, deep]·w_out + b_out.</summary>
    private sealed class DcnStage : InferenceStage
    {
        private readonly DenseStack _mlp;
        private readonly float[][] _w, _b;   // [L][n]
        private readonly float[] _out;       // [n + width]
        private readonly float _outBias;
        private readonly int _n;

        public DcnStage(DenseStack mlp, CrossNetwork cross, Linear output)
        {
            _mlp = mlp;
            _n = cross.Width;
            _w = Enumerable.Range(0, cross.Layers).Select(l => cross.Weight(l).ToArray()).ToArray();
            _b = Enumerable.Range(0, cross.Layers).Select(l => cross.Bias(l).ToArray()).ToArray();
            _out = output.Weight.ToArray();
            _outBias = output.Bias!.ToArray()[0];
        }

        public override StagePhases Phases => StagePhases.Batch;

        /// <summary>The MLP's ping-pong, then x_l [n] and a temporary [n].</summary>
        public override long ScratchFloats(int rows) => _mlp.ScratchFloats(rows) + 2L * _n;

        public override RangeRule RangeRuleFor(int batch) => _mlp.RangeRuleFor(batch);
        public override long MacsPerRow => _mlp.MacsPerRow + 2L * _w.Length * _n;
        public override long WeightBytes => _mlp.WeightBytes;
        public override long HeldBytes => _mlp.HeldBytes + 4L * (2L * _w.Length * _n + _out.Length + 1);

        public override void Run(in StageBatch batch)
        {
            int n = _n, width = _mlp.OutFeatures;
            long mlpFloats = _mlp.ScratchFloats(batch.Rows);
            var deep = _mlp.Run(batch.X0, batch.Rows, batch.Scratch.Slice(0, (int)mlpFloats));
            var x = batch.Scratch.Slice((int)mlpFloats, n);
            var t = batch.Scratch.Slice((int)mlpFloats + n, n);
            for (int b = 0; b < batch.Rows; b++)
            {
                var xb0 = batch.X0.Slice(b * n, n);
                xb0.CopyTo(x);
                for (int l = 0; l < _w.Length; l++)
                {
                    float s = TensorPrimitives.Dot(x, _w[l]);
                    TensorPrimitives.Multiply(xb0, s, t);
                    TensorPrimitives.Add(t, _b[l], t);
                    TensorPrimitives.Add(t, x, x);
                }
                batch.Logits[b] += TensorPrimitives.Dot(x, _out.AsSpan(0, n))
                    + TensorPrimitives.Dot(deep.Slice(b * width, width), _out.AsSpan(n, width)) + _outBias;
            }
        }
    }
}
