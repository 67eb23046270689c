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
/// own scratch. Where a stage's products change a row's bits with their row count (the float32 SGEMM across 16 rows, the
/// CIN's tiles), <see cref="RangeRuleFor"/> says which splits keep them, and the predictor only makes those. Work inside
/// one range (e.g. a GEMM's column blocks) is the stage's own business.</item>
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

    /// <summary>
    /// Which splits of a batch of <paramref name="batch"/> samples into ranges keep this stage's bits (contract item 2):
    /// every range at least <see cref="RangeRule.MinRows"/> samples and starting at a multiple of
    /// <see cref="RangeRule.Alignment"/>. Default: any split (the stage's term for a sample never depends on its range).
    /// </summary>
    public virtual RangeRule RangeRuleFor(int batch) => RangeRule.Any;

    /// <summary>Multiply-adds per sample in the batch phase (0 when negligible): with <see cref="WeightBytes"/>, tells the
    /// predictor whether a range of samples has enough arithmetic per weight byte to be worth its own thread.</summary>
    public virtual long MacsPerRow => 0;

    /// <summary>Bytes of weights the batch phase reads per call (dense matrices; 0 when negligible).</summary>
    public virtual long WeightBytes => 0;

    /// <summary>Bytes of every weight this stage holds (for the serving table's "bytes of weights").</summary>
    public virtual long HeldBytes => WeightBytes;

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

/// <summary>A condition on ranges of samples: at least <paramref name="MinRows"/> samples each, each starting at a multiple of
/// <paramref name="Alignment"/> (the last range may be shorter than the alignment but not than MinRows).</summary>
public readonly record struct RangeRule(int MinRows, int Alignment)
{
    /// <summary>Any split.</summary>
    public static RangeRule Any => new(1, 1);

    /// <summary>The rule both rules allow: the larger minimum, the least common multiple of the alignments.</summary>
    public RangeRule And(RangeRule other)
    {
        static int Gcd(int a, int b) { while (b != 0) (a, b) = (b, a % b); return a; }
        int lcm = Alignment / Gcd(Alignment, other.Alignment) * other.Alignment;
        return new RangeRule(Math.Max(MinRows, other.MinRows), lcm);
    }

    /// <summary>
    /// The rule of products whose row results depend only on whether m ≤ <see cref="Kernels.Cpu.Sgemm.SmallM"/> (the
    /// float32 SGEMM: one FMA chain per element on its small path, K-sliced chains above it). A batch of
    /// <paramref name="rows"/> &gt; 16 rows must split into ranges of more than 16 rows; a batch of ≤ 16 may split freely.
    /// </summary>
    public static RangeRule SgemmRows(int rows) => new(rows > Kernels.Cpu.Sgemm.SmallM ? Kernels.Cpu.Sgemm.SmallM + 1 : 1, 1);
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
    /// <summary>The layout of <paramref name="fields"/> with embedding width <paramref name="embeddingDim"/>, served in
    /// <paramref name="precision"/> (float32 when null), with int8 matrices read from a checkpoint in
    /// <paramref name="storedInt8"/> (quantised here when null).</summary>
    public PlanLayout(IReadOnlyList<InputField> fields, int embeddingDim, ServingPrecision? precision = null, StoredInt8Weights? storedInt8 = null)
    {
        Fields = fields.ToArray();
        EmbeddingDim = embeddingDim;
        Precision = precision ?? ServingPrecision.Float32;
        Precision.Validate();
        StoredInt8 = storedInt8;
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

    /// <summary>The precision the stages compile their dense weights (and the predictor its embedding table) into.</summary>
    public ServingPrecision Precision { get; }

    /// <summary>Int8 weights read from a checkpoint (served as stored instead of quantised again), or null.</summary>
    public StoredInt8Weights? StoredInt8 { get; }

    /// <summary>The int8 form of weight W [n, k] ([out, in]): the checkpoint's own integers and scales when it stored
    /// them, else quantised per output channel from the float weights.</summary>
    public Kernels.Cpu.Int8Weights Int8For(Tensor weight, int n, int k)
    {
        if (StoredInt8 is not null && StoredInt8.TryGet(weight, out var stored))
        {
            if (stored.N != n || stored.K != k)
                throw new ArgumentException($"Predictor: stored int8 weights are [{stored.N}, {stored.K}], the layer is [{n}, {k}].");
            return stored;
        }
        return Kernels.Cpu.Int8Weights.Quantize(weight.ToArray(), n, k);
    }

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
