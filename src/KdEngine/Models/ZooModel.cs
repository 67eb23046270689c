using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Models;

/// <summary>
/// The model zoo (exact definitions in MISSION.md). Each kind is a sum of parts over shared field embeddings
/// x0 [B, F, D]:
/// <code>
///   LR      = wide                                    wide  = b + Σ_f w_f[id_f]
///   FM      = wide + fm                               fm    = ½·Σ_d[(Σ_f x0)² − Σ_f x0²]
///   DNN     = dnn                                     dnn   = Linear(MLP(flatten x0), 1)
///   WDL     = wide + dnn
///   DeepFM  = wide + fm + dnn
///   DCN     = Linear(concat(cross(flatten x0), MLP(flatten x0)), 1)     (the DCN paper's combination layer)
///   xDeepFM = wide + Linear(CIN(x0), 1) + dnn
/// </code>
/// Parameter names: <c>linear.{field}.weight</c> [V, 1], <c>linear.bias</c> [1], <c>embedding.{field}.weight</c>
/// [V, D], <c>dnn.{i}.weight</c> [out, in], <c>dnn_out.weight</c> [1, in], <c>cin.{k}.weight</c>
/// [H_k, H_{k−1}·F], <c>cin_out.weight</c>, <c>cross.{l}.weight</c> [F·D, 1], <c>dcn_out.weight</c>.
/// </summary>
public sealed class ZooModel : CtrModel
{
    private readonly FieldEmbeddings? _wide;
    private readonly Tensor<float>? _wideBias;
    private readonly FieldEmbeddings? _embedding;
    private readonly Mlp? _mlp;
    private readonly Linear? _dnnOut;
    private readonly Cin? _cin;
    private readonly Linear? _cinOut;
    private readonly CrossNetwork? _cross;
    private readonly Linear? _dcnOut;
    private readonly bool _fm;

    /// <param name="sharedEmbedding">Embeddings owned with another model (Rocket Launching, PFD, double-DNN); null builds its own.</param>
    /// <param name="sharedDnnLayers">Another model's first DNN layers to use as this model's first DNN layers (Rocket
    /// Launching's shared bottom beyond the embeddings); null: all its own.</param>
    public ZooModel(ModelConfig config, IReadOnlyList<InputField> fields, IReadOnlyList<int>? columns = null,
        FieldEmbeddings? sharedEmbedding = null, IReadOnlyList<Linear>? sharedDnnLayers = null)
        : base(config, fields, columns ?? Enumerable.Range(0, fields.Count).ToArray())
    {
        var rng = new Random(config.Seed);
        var kind = config.Model;
        int f = fields.Count, d = config.EmbeddingDim;
        bool wide = kind is ModelKind.Lr or ModelKind.Fm or ModelKind.Wdl or ModelKind.DeepFm or ModelKind.XDeepFm;
        bool deep = kind is ModelKind.Dnn or ModelKind.Wdl or ModelKind.DeepFm or ModelKind.Dcn or ModelKind.XDeepFm;
        _fm = kind is ModelKind.Fm or ModelKind.DeepFm;
        bool needsEmbedding = kind != ModelKind.Lr;

        if (wide)
        {
            _wide = AddModule("linear", new FieldEmbeddings(fields, Columns, 1, 0f, rng));
            _wideBias = AddParameter("linear.bias", Tensor<float>.Zeros(1));
        }
        if (needsEmbedding)
        {
            if (sharedEmbedding is not null)
            {
                if (sharedEmbedding.Dim != d)
                    throw new ConfigException($"shared embedding width {sharedEmbedding.Dim} differs from embeddingDim {d}.");
                if (!sharedEmbedding.Columns.SequenceEqual(Columns))
                    throw new ArgumentException("ZooModel: the shared embedding reads other columns than this model.");
            }
            _embedding = AddModule("embedding", sharedEmbedding ?? new FieldEmbeddings(fields, Columns, d, config.EmbeddingInitStd, rng));
        }
        if (deep)
        {
            _mlp = AddModule("dnn", new Mlp(f * d, config.Dnn, config.DnnActivation, config.Dropout, rng, sharedDnnLayers));
            if (kind != ModelKind.Dcn) _dnnOut = AddModule("dnn_out", new Linear(_mlp.OutFeatures, 1, rng, bias: false));
        }
        if (kind == ModelKind.XDeepFm)
        {
            _cin = AddModule("cin", new Cin(f, config.Cin, config.CinActivation, config.CinSplitHalf, config.CinDirectConnections, rng));
            _cinOut = AddModule("cin_out", new Linear(_cin.OutputWidth, 1, rng, bias: false));
        }
        if (sharedDnnLayers is { Count: > 0 } && _mlp is null)
            throw new ConfigException($"shared DNN layers given to a {kind} model, which has no DNN.");
        if (kind == ModelKind.Dcn)
        {
            _cross = AddModule("cross", new CrossNetwork(f * d, config.CrossLayers, rng));
            _dcnOut = AddModule("dcn_out", new Linear(f * d + _mlp!.OutFeatures, 1, rng));
        }
    }

    public override string TypeName => Config.Model.ToString().ToLowerInvariant();

    /// <summary>
    /// When true, the model reads sg(x0) — and, when its first DNN layers are shared, their output under StopGradient:
    /// its loss trains its own layers but never the shared bottom (embeddings and shared layers) — Rocket Launching's
    /// EasyRec variant for the light net.
    /// </summary>
    public bool DetachEmbeddingInput
    {
        get => _detachEmbeddingInput;
        set
        {
            _detachEmbeddingInput = value;
            if (_mlp is not null) _mlp.DetachSharedOutput = value;
        }
    }

    private bool _detachEmbeddingInput;

    /// <summary>The field embeddings (null for LR), for sharing with another model.</summary>
    public FieldEmbeddings? Embedding => _embedding;

    /// <summary>The DNN tower (null when the model has none), e.g. to share its first layers with another model.</summary>
    public Mlp? Dnn => _mlp;

    public override ModelOutput Forward(in CtrBatch batch)
    {
        batch.Validate();
        var hidden = new Dictionary<string, Tensor<float>>();
        Tensor<float>? logit = null;
        void Plus(Tensor<float> part) => logit = logit is null ? part : Op.Add(logit, part);

        if (_wide is not null) Plus(WideLogit(_wide, _wideBias!, batch));

        Tensor<float>? x0 = null, flat = null;
        if (_embedding is not null)
        {
            x0 = _embedding.Forward(batch);          // [B, F, D]
            if (DetachEmbeddingInput) x0 = Op.StopGradient(x0);
            flat = Op.Flatten(x0);                   // [B, F·D]
            hidden["embedding"] = flat;
        }
        if (_fm) Plus(FmInteraction.Forward(x0!));
        Tensor<float>? deep = null;
        if (_mlp is not null)
        {
            deep = _mlp.Forward(flat!, hidden);      // [B, width]
            if (_dnnOut is not null) Plus(_dnnOut.Forward(deep));
        }
        if (_cin is not null)
        {
            var pooled = _cin.Forward(x0!, hidden);  // [B, maps]
            hidden["cin.pooled"] = pooled;
            Plus(_cinOut!.Forward(pooled));
        }
        if (_cross is not null)
        {
            var crossed = _cross.Forward(flat!);     // [B, F·D]
            hidden["cross"] = crossed;
            Plus(_dcnOut!.Forward(Op.Concat([crossed, deep!], axis: 1)));
        }
        return new ModelOutput(logit!, hidden);
    }
}
