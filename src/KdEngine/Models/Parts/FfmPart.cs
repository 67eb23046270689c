using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Serving;
using KdEngine.Sharding;
using KdEngine.Tensors;
using Tensor = KdEngine.Tensors.Tensor<float>;

namespace KdEngine.Models.Parts;

/// <summary>
/// The field-aware factorization machine's pairwise term (Juan et al., RecSys 2016): every feature has one D-dim vector
/// per other field, z = Σ_{f&lt;g} ⟨v_{f,g}, v_{g,f}⟩ with v_{f,g} field f's feature's vector for field g. Its own
/// tables (not x0): <c>ffm.{field}.weight</c> [V_f, (F−1)·D], slot k of a row being the vector for field k &lt; f ? k : k + 1
/// (F−1 slots: a feature has no vector for its own field). The FFM model is wide + this part.
/// With <see cref="ModelConfig.FfmNormalize"/> the pairs' sum is divided by F: LIBFFM's instance-wise normalisation
/// (each row's x scaled to ‖x‖₂ = 1, so every pair's product x_i·x_j = 1/‖x‖²) for rows of one-hot fields, whose
/// ‖x‖² is F. With <see cref="FfmInit.Uniform"/> the vectors start uniform in [0, r), r = 1/√D by default (LIBFFM's
/// initialisation) or <see cref="ModelConfig.FfmInitRadius"/> (ML.NET's 0.5 at every D).
/// Training: one fused gather [B, F, (F−1)·D] (row-sparse gradients) and the fused pair op <see cref="Op.FieldAwarePairs{T}"/>.
/// Inference: the tables concatenated [ΣV, (F−1)·D]; each sample's F(F−1)/2 dot products run in the gather loop while
/// its F rows are in cache (prefetched one sample ahead).
/// </summary>
public sealed class FfmPart : ModelPart
{
    private readonly FieldEmbeddings _vectors;
    private readonly int _dim;
    private readonly float _scale;

    /// <summary>Builds the part's field-aware tables from the model's config, input fields and seeded random source
    /// (<paramref name="context"/>); fewer than two fields is a <see cref="ConfigException"/>.</summary>
    public FfmPart(PartContext context)
    {
        int f = context.Fields.Count;
        if (f < 2) throw new ConfigException($"model {context.Config.Model} needs at least two fields (it has {f}): FFM scores pairs of fields.");
        var c = context.Config;
        _dim = c.EmbeddingDim;
        if (c.FfmNormalize && context.Fields.FirstOrDefault(x => x.IsMultiValued || x.ScaleByValue) is { } other)
            throw new ConfigException($"ffmNormalize: field '{other.Name}' is {(other.IsMultiValued ? "multi-valued" : "scaled by a dense value")}; "
                + "the normalisation divides the pairs by F, which is ‖x‖² only when every field is one-hot (one id, value 1).");
        _scale = c.FfmNormalize ? 1f / f : 1f;
        bool uniform = c.FfmInit == FfmInit.Uniform;
        if (uniform && TablePlacement.Current is not null)
            throw new ConfigException("ffmInit = uniform: the field-aware tables must be whole on this process (not placed or row-sharded).");
        _vectors = AddModule("ffm", new FieldEmbeddings(context.Fields, context.Columns, (f - 1) * _dim, uniform ? 0f : c.EmbeddingInitStd, context.Rng));
        if (uniform)
        {
            // LIBFFM: w = coef · U[0, 1) with coef = 1/√D (ML.NET: its Radius), drawn table by table in field order from
            // the model's source.
            float bound = c.FfmInitRadius > 0 ? c.FfmInitRadius : 1f / MathF.Sqrt(_dim);
            foreach (var table in _vectors.Tables)
            {
                // A table on a device is drawn on the host and uploaded, so both backends start from the same values.
                bool onHost = table.Storage is CpuStorage<float>;
                var w = onHost ? table.AsSpan() : new float[table.Length];
                for (int i = 0; i < w.Length; i++) w[i] = bound * (float)context.Rng.NextDouble();
                if (!onHost) table.Backend.Upload(w, table.Storage);
            }
        }
    }

    /// <summary>The part's pairwise term from its gathered vectors v [B, F, (F−1)·D] → [B, 1]: the pairs' sum, divided by
    /// F when <paramref name="normalize"/> (generic so that a double-precision gradient check runs the very same code).</summary>
    internal static Tensor<T> Pairs<T>(Tensor<T> v, int dim, bool normalize) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        var z = Op.FieldAwarePairs(v, dim);                                  // [B, 1]
        return normalize ? Op.Scale(z, T.One / T.CreateChecked(v.Shape[1])) : z;
    }

    /// <summary>How a model builds and counts (before building) this part.</summary>
    public static PartRecipe Recipe { get; } = new(
        ReadsEmbedding: false,
        ParameterCount: (c, fields) => fields.Sum(x => (long)x.Cardinality) * Math.Max(fields.Count - 1, 0) * c.EmbeddingDim, // ffm.{field}.weight [V, (F−1)·D]
        Build: context => new FfmPart(context));

    /// <inheritdoc/>
    public override bool ReadsEmbedding => false;

    /// <inheritdoc/>
    public override Tensor Forward(in PartInput input, IDictionary<string, Tensor> hidden)
    {
        var v = _vectors.Forward(input.Batch);       // [B, F, (F−1)·D]
        hidden["ffm"] = Op.Flatten(v);               // [B, F·(F−1)·D]
        return Pairs(v, _dim, _scale != 1f);          // [B, 1]
    }

    /// <inheritdoc/>
    public override InferenceStage Compile(PlanLayout layout) =>
        new FfmStage(layout.Concatenate(_vectors.Tables, (layout.FieldCount - 1) * _dim, "ffm tables"), layout.FieldCount, _dim, _scale);

    /// <inheritdoc/>
    public override string EmitOnnx(IOnnxGraph g, in OnnxPartInput input)
    {
        // v [B, F, (F−1)·D] → [B, F·(F−1), D]; the pairs' two slots by Gather on axis 1 → [B, P, D] each; Σ over D and pairs.
        int f = input.Layout.FieldCount, d = _dim, slots = f - 1;
        var first = new List<long>();
        var second = new List<long>();
        for (int a = 0; a < f; a++)
            for (int b = a + 1; b < f; b++)
            {
                first.Add(a * slots + (b - 1));   // v_{a,b}: slot b − 1 of field a
                second.Add(b * slots + a);        // v_{b,a}: slot a of field b
            }
        string table = OnnxEmit.Table(g, "ffm.table", input.Layout, _vectors.Tables, slots * d);
        string v = g.Node("Gather", [table, input.FeatureRows], ("axis", 0));                                    // [B, F, (F−1)·D]
        v = g.Node("Reshape", [v, g.Int64s("ffm.shape", [0, f * slots, d], [3])]);                              // [B, F·(F−1), D]
        string left = g.Node("Gather", [v, g.Int64s("ffm.first", first.ToArray(), [first.Count])], ("axis", 1));  // [B, P, D]
        string right = g.Node("Gather", [v, g.Int64s("ffm.second", second.ToArray(), [second.Count])], ("axis", 1));
        string dots = g.Node("ReduceSum", [g.Node("Mul", [left, right]), g.Int64s("axis2", [2], [1])], ("keepdims", 0)); // [B, P]
        string z = g.Node("ReduceSum", [dots, g.Int64s("axis1", [1], [1])], ("keepdims", 1));                  // [B, 1]
        return _scale == 1f ? z : g.Node("Mul", [z, g.Floats("ffm.scale", [_scale], [1])]);                      // ÷ F when normalised
    }

    /// <summary>The vectors [ΣV, (F−1)·D] by feature row; per sample, logit += scale · Σ_{f&lt;g} ⟨v[r_f, g − 1], v[r_g, f]⟩
    /// (scale 1, or 1/F when normalised).</summary>
    private sealed class FfmStage(float[] vectors, int fields, int dim, float scale) : InferenceStage
    {
        private readonly int _row = (fields - 1) * dim;
        private readonly FeatureTable[] _tables = [new(vectors, (fields - 1) * dim)];

        public override StagePhases Phases => StagePhases.Gather;
        public override IReadOnlyList<FeatureTable> FeatureTables => _tables;

        public override void GatherSample(ReadOnlySpan<int> featureRows, ref float logit)
        {
            var v = vectors.AsSpan();
            float sum = 0;
            for (int f = 0; f < fields; f++)
            {
                int rowF = featureRows[f] * _row;
                for (int g = f + 1; g < fields; g++)
                {
                    var a = v.Slice(rowF + (g - 1) * dim, dim);
                    var c = v.Slice(featureRows[g] * _row + f * dim, dim);
                    float dot = 0;
                    for (int d = 0; d < dim; d++) dot += a[d] * c[d];
                    sum += dot;
                }
            }
            logit += scale == 1f ? sum : sum * scale;
        }
    }
}
