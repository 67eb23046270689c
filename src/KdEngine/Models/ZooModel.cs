using KdEngine.Models.Parts;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Models;

/// <summary>
/// The model zoo. Each kind is a sum of parts (<see cref="ModelPart"/>) over shared
/// field embeddings x0 [B, F, D]; the logit is the parts' terms added in this order:
/// <code>
///   LR      = wide                                    wide  = b + Σ_f w_f[id_f]
///   FM      = wide + fm                               fm    = ½·Σ_d[(Σ_f x0)² − Σ_f x0²]
///   DNN     = dnn (with its output bias)              dnn   = Linear(MLP(flatten x0), 1)
///   WDL     = wide + dnn
///   DeepFM  = wide + fm + dnn
///   DCN     = dcn                                     dcn   = Linear(concat(cross(flatten x0), MLP(flatten x0)), 1)
///   xDeepFM = wide + dnn + cin                        cin   = Linear(CIN(x0), 1)
///   FFM     = wide + ffm                              ffm   = Σ_{f&lt;g} ⟨v_{f,g}, v_{g,f}⟩ (field-aware vectors, own tables)
///   DCN-V2  = dcnv2                                   dcnv2 = Linear(concat(cross2(x0), MLP(x0)), 1) or Linear(MLP(cross2(x0)), 1)
/// </code>
/// Parameter names: <c>linear.{field}.weight</c> [V, 1], <c>linear.bias</c> [1], <c>embedding.{field}.weight</c>
/// [V, D], <c>dnn.{i}.weight</c> [out, in], <c>dnn_out.weight</c> [1, in], <c>cin.{k}.weight</c>
/// [H_k, H_{k−1}·F], <c>cin_out.weight</c>, <c>cross.{l}.weight</c> [F·D, 1], <c>dcn_out.weight</c>; each part
/// documents its own. <see cref="RecipeOf"/> is the one place that says which parts a kind is made of.
/// </summary>
public sealed class ZooModel : CtrModel
{
    private readonly ModelPart[] _parts;
    private readonly FieldEmbeddings? _embedding;

    /// <summary>Builds the parts of <c>config.Model</c> (see <see cref="RecipeOf"/>), initialised from <c>config.Seed</c>.</summary>
    /// <param name="config">Kind and hyper-parameters (validated here).</param>
    /// <param name="fields">The input fields the model embeds.</param>
    /// <param name="columns">For each field, its column in the batch; null reads columns 0…F−1.</param>
    /// <param name="sharedEmbedding">Embeddings owned with another model (Rocket Launching, PFD, double-DNN); null builds its own.</param>
    public ZooModel(ModelConfig config, IReadOnlyList<InputField> fields, IReadOnlyList<int>? columns = null,
        FieldEmbeddings? sharedEmbedding = null)
        : base(config, fields, columns ?? Enumerable.Range(0, fields.Count).ToArray())
    {
        var rng = new Random(config.Seed);
        var context = new PartContext(config, Fields, Columns, rng);
        var recipe = RecipeOf(config.Model);
        _parts = new ModelPart[recipe.Length];
        for (int i = 0; i < recipe.Length; i++)
        {
            // The embeddings are built just before the first part that reads them, so the seeded draws (and so every
            // initial weight) come in the order wide, embedding, the other parts.
            if (recipe[i].ReadsEmbedding && _embedding is null)
            {
                if (sharedEmbedding is not null)
                {
                    if (sharedEmbedding.Dim != config.EmbeddingDim)
                        throw new ConfigException($"shared embedding width {sharedEmbedding.Dim} differs from embeddingDim {config.EmbeddingDim}.");
                    if (!sharedEmbedding.Columns.SequenceEqual(Columns))
                        throw new ArgumentException("ZooModel: the shared embedding reads other columns than this model.");
                }
                _embedding = AddModule("embedding", sharedEmbedding ?? new FieldEmbeddings(fields, Columns, config.EmbeddingDim, config.EmbeddingInitStd, rng));
            }
            _parts[i] = AddModule("", recipe[i].Build(context));
        }
    }

    /// <summary>The parts each zoo kind is made of, in the order their terms are added.</summary>
    public static PartRecipe[] RecipeOf(ModelKind kind) => kind switch
    {
        ModelKind.Lr => [WidePart.Recipe],
        ModelKind.Fm => [WidePart.Recipe, FmPart.Recipe],
        ModelKind.Dnn => [DnnPart.RecipeWithOutputBias],
        ModelKind.Wdl => [WidePart.Recipe, DnnPart.Recipe],
        ModelKind.DeepFm => [WidePart.Recipe, FmPart.Recipe, DnnPart.Recipe],
        ModelKind.Dcn => [DcnPart.Recipe],
        ModelKind.XDeepFm => [WidePart.Recipe, DnnPart.Recipe, CinPart.Recipe],
        ModelKind.Ffm => [WidePart.Recipe, FfmPart.Recipe],
        ModelKind.DcnV2 => [DcnV2Part.Recipe],
        _ => throw new ConfigException($"model = {(int)kind} is not a model kind."),
    };

    /// <summary>
    /// The number of weights a model of <paramref name="config"/> over <paramref name="fields"/> has, computed without
    /// allocating them (in <c>long</c>, so absurd sizes cannot overflow): the parts' recipes plus the shared embeddings.
    /// A test pins it to <see cref="Module.ParameterCount"/>.
    /// </summary>
    public static long ParameterCount(ModelConfig config, IReadOnlyList<InputField> fields)
    {
        var recipe = RecipeOf(config.Model);
        long total = recipe.Sum(r => r.ParameterCount(config, fields));
        if (recipe.Any(r => r.ReadsEmbedding)) total += fields.Sum(x => (long)x.Cardinality) * config.EmbeddingDim; // embedding.{field}.weight [V, D]
        return total;
    }

    /// <summary>Tensors a checkpoint of <paramref name="kind"/> written by an older version may lack, meaning zero
    /// (<see cref="PartRecipe.AbsentInOlderCheckpoints"/>).</summary>
    public static IReadOnlyList<(string Name, long Weights)> AbsentInOlderCheckpoints(ModelKind kind) =>
        RecipeOf(kind).SelectMany(r => r.AbsentInOlderCheckpoints ?? []).ToArray();

    /// <inheritdoc/>
    public override string TypeName => Config.Model.ToString().ToLowerInvariant();

    /// <summary>The parts, in the order their logit terms are added.</summary>
    public IReadOnlyList<ModelPart> Parts => _parts;

    /// <summary>
    /// When true, the model reads sg(x0): its loss trains its own layers but never the (shared) embeddings —
    /// Rocket Launching's EasyRec variant for the light net.
    /// </summary>
    public bool DetachEmbeddingInput { get; set; }

    /// <summary>The field embeddings (null when no part reads them, as in LR), for sharing with another model.</summary>
    public FieldEmbeddings? Embedding => _embedding;

    /// <inheritdoc/>
    public override ModelOutput Forward(in CtrBatch batch)
    {
        batch.Validate();
        var hidden = new Dictionary<string, Tensor<float>>();
        Tensor<float>? x0 = null, flat = null;
        if (_embedding is not null)
        {
            x0 = _embedding.Forward(batch);          // [B, F, D]
            if (DetachEmbeddingInput) x0 = Op.StopGradient(x0);
            flat = Op.Flatten(x0);                   // [B, F·D]
            hidden["embedding"] = flat;
        }
        var input = new PartInput(batch, x0, flat);
        Tensor<float>? logit = null;
        foreach (var part in _parts)
        {
            var term = part.Forward(input, hidden);  // [B, 1]
            logit = logit is null ? term : Op.Add(logit, term);
        }
        return new ModelOutput(logit!, hidden);
    }
}
