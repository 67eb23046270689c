using System.Text.Json;
using System.Text.Json.Serialization;
using KdEngine.Models;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Pipelines;

/// <summary>The optimizers a pipeline can build.</summary>
public enum OptimizerKind
{
    /// <summary>Adam (β₁ 0.9, β₂ 0.999); the default.</summary>
    Adam,
    /// <summary>Adagrad: per-coordinate steps shrinking with the summed squared gradients.</summary>
    Adagrad,
    /// <summary>Plain SGD, with optional momentum.</summary>
    Sgd,
}

/// <summary>
/// Trainer and optimizer settings in one typed record (CLI flags, experiment JSON, quickstart). Defaults are those of the
/// experiments (docs/models.md): Adam 1e-3, batch 256, early stopping on validation AUC. JSON keys are camelCase; unknown keys
/// are rejected naming the key.
/// </summary>
public sealed record TrainingSettings
{
    /// <summary>Most passes over the train part (early stopping may end sooner).</summary>
    public int Epochs { get; init; } = 10;
    /// <summary>Rows per optimizer step.</summary>
    public int BatchSize { get; init; } = 256;
    /// <summary>The optimizer <see cref="BuildOptimizer"/> makes.</summary>
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Adam;
    /// <summary>The optimizer's step size (&gt; 0).</summary>
    public float LearningRate { get; init; } = 1e-3f;
    /// <summary>L2 on the touched embedding rows (ĝ = g + λ·w).</summary>
    public float L2Embedding { get; init; }
    /// <summary>L2 on dense weights.</summary>
    public float L2Dense { get; init; }
    /// <summary>Global gradient-norm clipping; null = none.</summary>
    public float? ClipNorm { get; init; }
    /// <summary>SGD momentum.</summary>
    public float Momentum { get; init; }
    /// <summary>Validations without improvement before stopping; 0 = never stop early.</summary>
    public int Patience { get; init; } = 2;
    /// <summary>Validate every N steps; 0 = once per epoch.</summary>
    public int EvaluateEvery { get; init; }
    /// <summary>What early stopping and best-weight restoring watch on the validation part (AUC by default).</summary>
    public StoppingMetric Metric { get; init; } = StoppingMetric.Auc;
    /// <summary>Shuffling seed of the trainer.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Shuffle the training rows each epoch (false: file order, e.g. to compare runs row for row).</summary>
    public bool Shuffle { get; init; } = true;

    /// <summary>Checks every setting; a bad one is a <see cref="ConfigException"/> naming it, prefixed with <paramref name="source"/>.</summary>
    public void Validate(string source = "training")
    {
        if (Epochs < 1) throw new ConfigException($"{source}: epochs = {Epochs}; expected ≥ 1.");
        if (BatchSize < 1) throw new ConfigException($"{source}: batchSize = {BatchSize}; expected ≥ 1.");
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate)) throw new ConfigException($"{source}: learningRate = {LearningRate}; expected > 0.");
        if (!(L2Embedding >= 0)) throw new ConfigException($"{source}: l2Embedding = {L2Embedding}; expected ≥ 0.");
        if (!(L2Dense >= 0)) throw new ConfigException($"{source}: l2Dense = {L2Dense}; expected ≥ 0.");
        if (ClipNorm is { } c && !(c > 0)) throw new ConfigException($"{source}: clipNorm = {c}; expected > 0.");
        if (!(Momentum >= 0 && Momentum < 1)) throw new ConfigException($"{source}: momentum = {Momentum}; expected 0 ≤ momentum < 1.");
        if (Patience < 0) throw new ConfigException($"{source}: patience = {Patience}; expected ≥ 0.");
        if (EvaluateEvery < 0) throw new ConfigException($"{source}: evaluateEvery = {EvaluateEvery}; expected ≥ 0.");
    }

    /// <summary>The settings as JSON (camelCase, as <see cref="ParseStrict{T}"/> reads them).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>The trainer's part of the settings (epochs, batch size, validation, stopping, seed, shuffling).</summary>
    public TrainerOptions ToTrainerOptions() => new()
    {
        Epochs = Epochs,
        BatchSize = BatchSize,
        EvaluateEvery = EvaluateEvery,
        Metric = Metric,
        Patience = Patience,
        Seed = Seed,
        Shuffle = Shuffle,
    };

    /// <summary>Builds the optimizer over <paramref name="parameters"/> with the learning rate, L2 and clipping set.</summary>
    public Optimizer BuildOptimizer(IEnumerable<Tensor<float>> parameters)
    {
        Validate();
        Optimizer opt = Optimizer switch
        {
            OptimizerKind.Adam => new Adam(parameters, LearningRate),
            OptimizerKind.Adagrad => new Adagrad(parameters, LearningRate),
            OptimizerKind.Sgd => new Sgd(parameters, LearningRate, Momentum),
            _ => throw new ConfigException($"training: unknown optimizer {Optimizer}."),
        };
        opt.EmbeddingL2 = L2Embedding;
        opt.DenseL2 = L2Dense;
        opt.ClipNorm = ClipNorm;
        return opt;
    }

    /// <summary>Parses <c>adam</c>, <c>adagrad</c> or <c>sgd</c> (case-insensitive); anything else is an <see cref="ArgumentException"/>.</summary>
    public static OptimizerKind ParseOptimizer(string text) => text.ToLowerInvariant() switch
    {
        "adam" => OptimizerKind.Adam,
        "adagrad" => OptimizerKind.Adagrad,
        "sgd" => OptimizerKind.Sgd,
        _ => throw new ArgumentException($"unknown optimizer '{text}' (expected adam|adagrad|sgd)."),
    };

    /// <summary>Strict JSON options shared by the pipeline's config records (camelCase, unknown keys rejected).</summary>
    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase, allowIntegerValues: false) },
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        WriteIndented = true,
    };

    /// <summary>Deserializes a strict JSON config record; errors name the file and the key.</summary>
    internal static T ParseStrict<T>(string json, string source) where T : class
    {
        T? value;
        try
        {
            value = JsonSerializer.Deserialize<T>(json, Json);
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{source}: {ModelConfig.Describe(e)}", e);
        }
        return value ?? throw new ConfigException($"{source}: the config is empty (null).");
    }
}
