using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Serving;
using KdEngine.Tensors;

namespace KdEngine.Models.Parts;

/// <summary>
/// The wide (linear, LR) part z = b + Σ_f w_f[id_f]: one weight per feature, read from the batch's ids (not from x0).
/// Parameters <c>linear.{field}.weight</c> [V, 1] (zero-initialised) and <c>linear.bias</c> [1].
/// Inference: the per-field weights concatenated into one vector [ΣV], summed per sample in the gather loop (in field
/// order, bias last) while the sample's rows are in cache.
/// </summary>
public sealed class WidePart : ModelPart
{
    private readonly FieldEmbeddings _weights;
    private readonly Tensor<float> _bias;

    /// <summary>Builds the part from the model's config, input fields and seeded random source (<paramref name="context"/>).</summary>
    public WidePart(PartContext context)
    {
        _weights = AddModule("linear", new FieldEmbeddings(context.Fields, context.Columns, 1, 0f, context.Rng));
        _bias = AddParameter("linear.bias", Tensor<float>.Zeros(1));
    }

    /// <summary>How a model builds, counts (before building) and validates this part.</summary>
    public static PartRecipe Recipe { get; } = new(
        ReadsEmbedding: false,
        ParameterCount: (_, fields) => fields.Sum(x => (long)x.Cardinality) + 1, // linear.{field}.weight [V, 1], linear.bias [1]
        Build: context => new WidePart(context));

    /// <inheritdoc/>
    public override bool ReadsEmbedding => false;

    /// <inheritdoc/>
    public override Tensor<float> Forward(in PartInput input, IDictionary<string, Tensor<float>> hidden)
    {
        var w = _weights.Forward(input.Batch);                       // [B, F, 1]
        return Op.Add(Op.Reshape(Op.Sum(w, axis: 1), -1, 1), _bias); // [B, 1]
    }

    /// <inheritdoc/>
    public override InferenceStage Compile(PlanLayout layout) =>
        new WideStage(layout.Concatenate(_weights.Tables, 1, "wide weights"), _bias.ToArray()[0]);

    /// <inheritdoc/>
    public override string EmitOnnx(IOnnxGraph g, in OnnxPartInput input)
    {
        string table = OnnxEmit.Table(g, "linear.table", input.Layout, _weights.Tables, 1, vector: true);
        string w = g.Node("Gather", [table, input.FeatureRows], ("axis", 0));                     // [B, F]
        string sum = g.Node("ReduceSum", [w, g.Int64s("axis1", [1], [1])], ("keepdims", 1));    // [B, 1]
        return g.Node("Add", [sum, OnnxEmit.Vector(g, "linear.bias", _bias)]);
    }

    /// <summary>The wide weights [ΣV] by feature row; logit += (Σ_f w[row_f]) + b.</summary>
    private sealed class WideStage(float[] weights, float bias) : InferenceStage
    {
        private readonly FeatureTable[] _tables = [new(weights, 1)];

        public override StagePhases Phases => StagePhases.Gather;
        public override IReadOnlyList<FeatureTable> FeatureTables => _tables;

        public override void GatherSample(ReadOnlySpan<int> featureRows, ref float logit)
        {
            float sum = 0;
            foreach (int r in featureRows) sum += weights[r];
            logit += sum + bias;
        }
    }
}
