using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Models;

/// <summary>
/// What a model returns: logits [B, 1] (probabilities are σ(z) at the edge) and named intermediate
/// representations for distillation: <c>embedding</c> [B, F·D], <c>dnn.{i}</c> [B, width_i],
/// <c>cin.{k}</c> [B, H_k, D], <c>cin.pooled</c> [B, maps], <c>cross</c> [B, F·D] (DCN, DCN-V2), <c>ffm</c> [B, F·(F−1)·D]
/// (FFM's gathered field-aware vectors).
/// </summary>
public sealed record ModelOutput(Tensor<float> Logits, IReadOnlyDictionary<string, Tensor<float>> Hidden);

/// <summary>
/// Base of every zoo model. A model reads the id columns named by its <see cref="Fields"/> (a subset when
/// it must not see privileged fields) and returns logits. Parts (embeddings) may be shared between models.
/// </summary>
public abstract class CtrModel : Module
{
    /// <summary>Validates <paramref name="config"/> and records the fields the model embeds and the batch column each reads.</summary>
    protected CtrModel(ModelConfig config, IReadOnlyList<InputField> fields, IReadOnlyList<int> columns)
    {
        config.Validate();
        Config = config;
        Fields = fields.ToArray();
        Columns = columns.ToArray();
    }

    /// <summary>The hyper-parameters the model was built with.</summary>
    public ModelConfig Config { get; }
    /// <summary>The input fields the model reads, in model order.</summary>
    public IReadOnlyList<InputField> Fields { get; }
    /// <summary>For each field, its column in the batch's id matrix (a student that must not see privileged fields reads a subset).</summary>
    public IReadOnlyList<int> Columns { get; }
    /// <summary>The model kind's lower-case name (<c>dnn</c>, <c>xdeepfm</c>, …), as checkpoints and the CLI print it.</summary>
    public abstract string TypeName { get; }

    /// <summary>Runs the model on a batch (records on the current tape when training).</summary>
    public abstract ModelOutput Forward(in CtrBatch batch);
}
