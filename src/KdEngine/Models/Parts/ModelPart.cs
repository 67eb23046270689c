using KdEngine.Nn;
using KdEngine.Serving;
using KdEngine.Tensors;

namespace KdEngine.Models.Parts;

/// <summary>
/// What a part reads in the training forward: the batch (for parts with their own per-feature tables, like the wide
/// part), the shared field embeddings x0 [B, F, D] and their flattening [B, F·D] (both null when no part of the model
/// reads them, as in LR).
/// </summary>
public readonly record struct PartInput(CtrBatch Batch, Tensor<float>? X0, Tensor<float>? Flat);

/// <summary>
/// One part of a zoo model (wide, FM, DNN, CIN, cross network …): a single type that owns every face of its math, so
/// that a new model is one new part plus its tests and nothing outside a part branches on which model it is.
/// <list type="bullet">
/// <item><b>Training</b> — <see cref="Forward"/>: the part's logit term [B, 1] from ops on the current tape (any backend,
/// so this is also the GPU path), with its named hidden layers for distillation.</item>
/// <item><b>Inference</b> — <see cref="Compile"/>: a snapshot of the weights as an <see cref="InferenceStage"/> (its own
/// weight layout and scratch; see the stage contract there) that the <see cref="Predictor"/> runs with no tape.</item>
/// <item><b>Export</b> — <see cref="EmitOnnx"/>: the same term as ONNX nodes (the exporter in KdEngine.Onnx adds them up).</item>
/// </list>
/// A part is mounted at its model's root (<see cref="Module"/>'s empty child name), so it registers the model's own
/// checkpoint names (<c>dnn.0.weight</c>, <c>cin_out.weight</c> …) and the model's parameter order is the parts' order.
/// The model adds the parts' terms in part order; every face must add in that order too.
/// </summary>
public abstract class ModelPart : Module
{
    /// <summary>Whether the part reads the model's shared field embeddings x0 (a model builds them only if some part does).</summary>
    public abstract bool ReadsEmbedding { get; }

    /// <summary>Whether the part is a learned feature-interaction layer over x0 (CIN, a cross network): what a double-DNN
    /// teacher adds to its student.</summary>
    public virtual bool IsInteractionLayer => false;

    /// <summary>The part's MLP over flatten(x0) (<c>dnn</c>), if it has one: Rocket Launching shares its first layers
    /// between a light net and a booster (<see cref="PartContext.SharedDnnLayers"/>).</summary>
    public virtual Mlp? Dnn => null;

    /// <summary>
    /// Sets the layer that maps this part's features to its logit term (<c>dnn_out</c>, <c>cin_out</c>, <c>dcn_out</c>) to
    /// zero, so the part adds nothing to the logit until it trains; its first step still moves that layer (its gradient is
    /// the features), and the layers below follow. Returns false when the part has no such layer: the wide part, and FM/FFM,
    /// whose terms are products of embeddings that zero would freeze. Used to start a joint model from a fitted wide part.
    /// </summary>
    public virtual bool ZeroOutputLayer() => false;

    /// <summary>Zeroes a layer's weight and bias (on whatever backend holds them).</summary>
    protected static bool Zero(Linear layer)
    {
        layer.Weight.Backend.Fill(layer.Weight.Storage, 0f);
        if (layer.Bias is { } bias) bias.Backend.Fill(bias.Storage, 0f);
        return true;
    }

    /// <summary>The training face: this part's logit term [B, 1]; hidden layers are added to <paramref name="hidden"/>
    /// under the names <see cref="ModelOutput"/> documents.</summary>
    public abstract Tensor<float> Forward(in PartInput input, IDictionary<string, Tensor<float>> hidden);

    /// <summary>The inference face: a compiled, read-only snapshot of this part's weights (evaluation semantics).</summary>
    public abstract InferenceStage Compile(PlanLayout layout);

    /// <summary>The weight matrices this part's stage serves in <see cref="ServingPrecision.DenseWeights"/> (DNN layers, the
    /// CIN's layers), each [out, in]: a checkpoint written with a serving precision stores exactly these quantised.</summary>
    public virtual IEnumerable<Tensor<float>> ServingMatrices => [];

    /// <summary>The export face: writes this part's nodes and returns the name of its logit term [B, 1].</summary>
    public abstract string EmitOnnx(IOnnxGraph graph, in OnnxPartInput input);
}

/// <summary>
/// What a part is built from (the model's config, its fields and the batch columns they read, the model's seeded random
/// source), and another model's first DNN layers for a part with an MLP to use as its own first layers (null: none).
/// </summary>
public sealed record PartContext(ModelConfig Config, IReadOnlyList<InputField> Fields, IReadOnlyList<int> Columns, Random Rng,
    IReadOnlyList<Linear>? SharedDnnLayers = null);

/// <summary>
/// How to build one part, and what it weighs before it is built: <see cref="ParameterCount"/> lets a checkpoint loader
/// check a file's size against its config without allocating the weights (it must equal the built part's
/// <see cref="Module.ParameterCount"/>; a test pins it for every recipe).
/// </summary>
/// <param name="ReadsEmbedding">The built part's <see cref="ModelPart.ReadsEmbedding"/>.</param>
/// <param name="ParameterCount">Weights of the part for a config and fields, in <c>long</c> (absurd headers cannot overflow).</param>
/// <param name="Build">Builds the part (drawing its initial weights from the context's random source).</param>
/// <param name="Validate">Checks the config keys this part reads (throws <see cref="ConfigException"/> naming the key); optional.</param>
/// <param name="AbsentInOlderCheckpoints">Tensors (name, weights) the part gained after checkpoints of it were written, whose
/// absence means zero (e.g. a bias that used to be missing); a loader accepts such a file and zeroes them.</param>
public sealed record PartRecipe(
    bool ReadsEmbedding,
    Func<ModelConfig, IReadOnlyList<InputField>, long> ParameterCount,
    Func<PartContext, ModelPart> Build,
    Action<ModelConfig, string>? Validate = null,
    IReadOnlyList<(string Name, long Weights)>? AbsentInOlderCheckpoints = null);
