using System.Numerics.Tensors;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Serving;
using KdEngine.Tensors;
using Tensor = KdEngine.Tensors.Tensor<float>;

namespace KdEngine.Models.Parts;

/// <summary>
/// The FM second-order term ½·Σ_d[(Σ_f x0_fd)² − Σ_f x0_fd²] = Σ_{f&lt;g} ⟨x0_f, x0_g⟩ over the shared embeddings
/// (<see cref="FmInteraction"/>). No parameters of its own. Inference: per sample, [D]-wide running sums.
/// </summary>
public sealed class FmPart : ModelPart
{
    /// <summary>How a model builds, counts (before building) and validates this part.</summary>
    public static PartRecipe Recipe { get; } = new(
        ReadsEmbedding: true,
        ParameterCount: (_, _) => 0,
        Build: _ => new FmPart());

    /// <inheritdoc/>
    public override bool ReadsEmbedding => true;

    /// <inheritdoc/>
    public override Tensor Forward(in PartInput input, IDictionary<string, Tensor> hidden) => FmInteraction.Forward(input.X0!);

    /// <inheritdoc/>
    public override InferenceStage Compile(PlanLayout layout) => new FmStage(layout.FieldCount, layout.EmbeddingDim);

    /// <inheritdoc/>
    public override string EmitOnnx(IOnnxGraph g, in OnnxPartInput input)
    {
        string x0 = input.X0!;
        string axis1 = g.Int64s("axis1", [1], [1]);
        string s = g.Node("ReduceSum", [x0, axis1], ("keepdims", 0));                         // [B, D]
        string q = g.Node("ReduceSum", [g.Node("Mul", [x0, x0]), axis1], ("keepdims", 0));   // [B, D]
        string diff = g.Node("Sub", [g.Node("Mul", [s, s]), q]);                               // [B, D]
        return g.Node("Mul", [g.Node("ReduceSum", [diff, axis1], ("keepdims", 1)), g.Floats("half", [0.5f], [])]); // [B, 1]
    }

    /// <summary>Per sample: sum [D] = Σ_f x0_f, sq [D] = Σ_f x0_f², logit += ½·Σ_d(sum² − sq).</summary>
    private sealed class FmStage(int fields, int dim) : InferenceStage
    {
        public override StagePhases Phases => StagePhases.Batch;
        public override long ScratchFloats(int rows) => 2L * dim;

        public override void Run(in StageBatch batch)
        {
            int fd = fields * dim;
            var sum = batch.Scratch.Slice(0, dim);
            var sq = batch.Scratch.Slice(dim, dim);
            for (int b = 0; b < batch.Rows; b++)
            {
                sum.Clear();
                sq.Clear();
                for (int f = 0; f < fields; f++)
                {
                    var e = batch.X0.Slice(b * fd + f * dim, dim);
                    TensorPrimitives.Add(sum, e, sum);
                    TensorPrimitives.FusedMultiplyAdd(e, e, sq, sq);
                }
                TensorPrimitives.Multiply(sum, sum, sum);
                TensorPrimitives.Subtract(sum, sq, sum);
                batch.Logits[b] += 0.5f * TensorPrimitives.Sum(sum);
            }
        }
    }
}
