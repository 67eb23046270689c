using System.Numerics.Tensors;
using KdEngine.Nn;
using KdEngine.Tensors;
using Tensor = KdEngine.Tensors.Tensor<float>;

namespace KdEngine.Serving;

/// <summary>
/// The compiled inference face of one model part (<see cref="Models.Parts.ModelPart.Compile"/>), run by the
/// <see cref="Predictor"/>. The predictor owns the input (id checks, the per-field feature rows, the shared embedding
/// gather into x0) and the output (the logit per sample); each stage adds its part's term to the logits.
/// </summary>
/// <remarks>
/// <para><b>The stage contract.</b></para>
/// <list type="number">
/// <item><b>Two phases.</b> <see cref="StagePhases.Gather"/>: <see cref="GatherSample"/> runs once per sample inside the
/// predictor's gather loop, while that sample's table rows are in cache (the wide part's Σ w, FFM's pairs). Its
/// <see cref="FeatureTables"/> are prefetched one sample ahead with the shared embedding. <see cref="StagePhases.Batch"/>:
/// <see cref="Run"/> runs after the gather over a range of samples (dense layers as one GEMM per layer over the range).
/// Stages run in part order and each adds (+=) its term, so the logit is summed in the training forward's order.</item>
/// <item><b>Samples are independent.</b> A stage's term for sample b depends only on sample b's inputs (x0 row b, feature
/// rows b). So a caller may split a batch into ranges of samples and run the ranges on different threads, each with its
/// own scratch. Splitting changes only the shapes of the dense products (a range of m rows instead of B): logits agree
/// with the unsplit call to float rounding, and bit for bit where the SGEMM takes the same path for both shapes (its
/// contract is bit-identity across thread counts for one shape). Work inside one range (e.g. a GEMM's column blocks) is
/// the stage's own business.</item>
/// <item><b>Scratch.</b> <see cref="Run"/> gets <see cref="ScratchFloats"/>(rows) floats of its own scratch for the call,
/// uninitialised, and must not keep it; it allocates nothing. The predictor keeps one arena per thread, so concurrent
/// calls never share scratch.</item>
/// <item><b>Weights.</b> A stage is compiled once from its part's parameters (a snapshot: later training does not change
/// it) and is read-only afterwards, so any number of threads may run it at once. Its weight layout is its own choice
/// (transposed for the GEMM's in-place B operand, padded, concatenated over fields …); a stage may hold further copies in
/// other precisions (int8, bf16) as long as it documents the tolerance it then keeps against the training forward.</item>
/// </list>
/// </remarks>
public abstract class InferenceStage
{
    /// <summary>Which of the two phases this stage takes part in.</summary>
    public abstract StagePhases Phases { get; }

    /// <summary>Tables this stage reads by feature row in <see cref="GatherSample"/>; the gather prefetches them.</summary>
    public virtual IReadOnlyList<FeatureTable> FeatureTables => [];

    /// <summary>The gather phase for one sample: <paramref name="featureRows"/> [F] are its rows in the concatenated
    /// per-field tables (<see cref="PlanLayout.RowOffsets"/>[f] + id); add this stage's term to <paramref name="logit"/>.</summary>
    public virtual void GatherSample(ReadOnlySpan<int> featureRows, ref float logit) =>
        throw new NotSupportedException($"{GetType().Name} has no gather phase.");

    /// <summary>Floats of scratch <see cref="Run"/> needs for <paramref name="rows"/> samples.</summary>
    public virtual long ScratchFloats(int rows) => 0;

    /// <summary>The batch phase over the samples of <paramref name="batch"/>: add this stage's term to its logits.</summary>
    public virtual void Run(in StageBatch batch) =>
        throw new NotSupportedException($"{GetType().Name} has no batch phase.");

    /// <summary>In-place hidden-layer activation, the same functions as <see cref="Mlp.Activate"/>.</summary>
    protected internal static void Activate(Span<float> x, Activation activation)
    {
        switch (activation)
        {
            case Activation.Relu: TensorPrimitives.Max(x, 0f, x); break;
            case Activation.Tanh: TensorPrimitives.Tanh(x, x); break;
            case Activation.Sigmoid: TensorPrimitives.Sigmoid(x, x); break;
        }
    }
}

/// <summary>The phases of an <see cref="InferenceStage"/>.</summary>
[Flags]
public enum StagePhases
{
    /// <summary>Per sample, inside the gather loop (<see cref="InferenceStage.GatherSample"/>).</summary>
    Gather = 1,
    /// <summary>Over a range of samples after the gather (<see cref="InferenceStage.Run"/>).</summary>
    Batch = 2,
}

/// <summary>A table read by feature row: row r is <c>Table[r·RowFloats .. (r + 1)·RowFloats)</c>.</summary>
public readonly record struct FeatureTable(float[] Table, int RowFloats);

/// <summary>
/// One batch-phase call: <see cref="Rows"/> samples, their shared embeddings <see cref="X0"/> [Rows, F·D] (empty when the
/// model has none), their feature rows [Rows, F], the logits [Rows] to add to, and the stage's own scratch.
/// </summary>
public readonly ref struct StageBatch(int rows, ReadOnlySpan<float> x0, ReadOnlySpan<int> featureRows, Span<float> logits, Span<float> scratch)
{
    /// <summary>Samples in this call.</summary>
    public int Rows { get; } = rows;
    /// <summary>[Rows, F·D] the looked-up embeddings of every field, row-major (empty when the model has no embedding).</summary>
    public ReadOnlySpan<float> X0 { get; } = x0;
    /// <summary>[Rows, F] each sample's row in the concatenated tables (<see cref="PlanLayout.RowOffsets"/>[f] + id).</summary>
    public ReadOnlySpan<int> FeatureRows { get; } = featureRows;
    /// <summary>[Rows] logits; a stage adds its term.</summary>
    public Span<float> Logits { get; } = logits;
    /// <summary>This stage's scratch, as large as it asked for at this batch size.</summary>
    public Span<float> Scratch { get; } = scratch;
}

/// <summary>
/// The input layout every stage is compiled against: the model's fields, the embedding width D and where field f's rows
/// start in tables concatenated over fields (<see cref="RowOffsets"/>[f]; <see cref="TotalRows"/> = ΣV).
/// </summary>
public sealed class PlanLayout
{
    /// <summary>The layout of <paramref name="fields"/> with embedding width <paramref name="embeddingDim"/>.</summary>
    public PlanLayout(IReadOnlyList<InputField> fields, int embeddingDim)
    {
        Fields = fields.ToArray();
        EmbeddingDim = embeddingDim;
        var offsets = new int[Fields.Count];
        long rows = 0;
        for (int f = 0; f < offsets.Length; f++)
        {
            offsets[f] = checked((int)rows);
            rows += Fields[f].Cardinality;
        }
        RowOffsets = offsets;
        TotalRows = rows;
    }

    /// <summary>The model's input fields, in model order.</summary>
    public IReadOnlyList<InputField> Fields { get; }
    /// <summary>F: number of fields.</summary>
    public int FieldCount => Fields.Count;
    /// <summary>D: embedding width.</summary>
    public int EmbeddingDim { get; }
    /// <summary>[F] first row of field f in the concatenated tables.</summary>
    public IReadOnlyList<int> RowOffsets { get; }
    /// <summary>ΣV: rows of the concatenated tables.</summary>
    public long TotalRows { get; }

    /// <summary>
    /// Per-field tables [V_f, width] concatenated into one array [ΣV, width] (on huge pages where large: rows are read at
    /// random), so that feature row r = <see cref="RowOffsets"/>[f] + id is one index. <paramref name="what"/> names the
    /// tables in errors.
    /// </summary>
    public float[] Concatenate(IReadOnlyList<Tensor> tables, int width, string what)
    {
        if (tables.Count != FieldCount)
            throw new ArgumentException($"Predictor: {what} has {tables.Count} tables for {FieldCount} fields.");
        if (TotalRows * Math.Max(width, 1) > Array.MaxLength)
            throw new ArgumentException($"Predictor: the concatenated {what} ({TotalRows} rows × {width}) exceeds the largest .NET array.");
        var all = HugePageArrays.Allocate<float>(TotalRows * width);
        for (int f = 0; f < FieldCount; f++)
        {
            var t = tables[f];
            if (t.Length != (long)Fields[f].Cardinality * width)
                throw new ArgumentException($"Predictor: {what} of field '{Fields[f].Name}' {t.Shape} is not [{Fields[f].Cardinality}, {width}].");
            t.Backend.Download(t.Storage, all.AsSpan(RowOffsets[f] * width, t.Length));
        }
        return all;
    }
}
