using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using KdEngine.Nn;
using KdEngine.Tensors;
using KdEngine.Serving;

namespace KdEngine.Training;

/// <summary>
/// Where a training run stands: everything besides weights and optimizer state that decides what the rest of the
/// run does. Data order is a pure function of (seed, epoch) (<see cref="Data.EncodedDataset.Batches"/>) and dropout
/// a pure function of (layer seed, global step) (<see cref="Module.RandomStep"/>), so the epoch, the batch index
/// within it and the global step are the whole random state.
/// </summary>
internal sealed class TrainerPosition
{
    /// <summary>1-based epoch in progress.</summary>
    public int Epoch { get; set; } = 1;
    /// <summary>Batches of <see cref="Epoch"/> already trained on.</summary>
    public int BatchInEpoch { get; set; }
    /// <summary>Optimizer steps taken in the whole run.</summary>
    public long Step { get; set; }
    /// <summary>Training-loss sum and count since the last validation (reported in the next validation point).</summary>
    public double LossSum { get; set; }
    public int LossCount { get; set; }
    /// <summary>Early stopping's counters, bests and selected point.</summary>
    public EarlyStoppingState Stopping { get; set; } = new();
    /// <summary>The reduce-on-plateau multiplier of the learning rate (1 = none yet).</summary>
    public double LearningRateScale { get; set; } = 1;
    public List<ValidationPoint> History { get; set; } = [];
    /// <summary>Weights at the selected validation point (with <see cref="TrainerOptions.RestoreBest"/>), else null.</summary>
    [JsonIgnore]
    public float[][]? BestWeights { get; set; }
    /// <summary>Weights at the lowest-logloss point (logloss-guarded selection's fallback), else null.</summary>
    [JsonIgnore]
    public float[][]? FallbackWeights { get; set; }
}

/// <summary>
/// A training checkpoint: one safetensors file (atomic write, checksums; see docs/formats.md) with tensors
/// <c>model.{parameter}</c> (weights), <c>optimizer.{entry}</c> (<see cref="Optimizer.ExportState"/>) and, when early
/// stopping keeps best weights, <c>best.{parameter}</c> (and <c>fallback.{parameter}</c>, the lowest-logloss weights of a
/// logloss-guarded selection); metadata <c>trainer.position</c> holds the
/// <see cref="TrainerPosition"/> as JSON (doubles round-trip exactly) and <c>trainer.options</c> the options that
/// must match on resume (batch size, shuffle, seed, optimizer type).
/// </summary>
internal static class TrainingCheckpoint
{
    public const string TypeKey = "checkpoint.type";
    public const string TypeValue = "kdengine.training";
    public const string PositionKey = "trainer.position";
    public const string OptionsKey = "trainer.options";

    private static readonly JsonSerializerOptions Json = new()
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    private static string OptionsText(TrainerOptions o, IOptimizer optimizer) => string.Create(CultureInfo.InvariantCulture,
        $"batchSize={o.BatchSize};shuffle={o.Shuffle};seed={o.Seed};optimizer={optimizer.Description}");

    public static void Save(string path, TrainerOptions options, IReadOnlyList<NamedParameter> parameters, IOptimizer optimizer, TrainerPosition position)
    {
        var tensors = new List<NamedArray>();
        // Raw values (Download, not ToArray): rows whose deferred decay is pending stay pending, and the optimizer state
        // carries each row's clock, so a resumed run applies the factors exactly when the uninterrupted one does.
        foreach (var p in parameters) tensors.Add(NamedArray.Float32("model." + p.Name, Raw(p.Tensor), p.Tensor.Shape.ToArray()));
        foreach (var (name, data, shape) in optimizer.ExportState()) tensors.Add(NamedArray.Float32("optimizer." + name, data, shape));
        if (position.BestWeights is { } best)
            for (int i = 0; i < parameters.Count; i++)
                tensors.Add(NamedArray.Float32("best." + parameters[i].Name, (float[])best[i].Clone(), parameters[i].Tensor.Shape.ToArray()));
        if (position.FallbackWeights is { } fallback)
            for (int i = 0; i < parameters.Count; i++)
                tensors.Add(NamedArray.Float32("fallback." + parameters[i].Name, (float[])fallback[i].Clone(), parameters[i].Tensor.Shape.ToArray()));
        SafeTensorsFile.Write(path, tensors, new Dictionary<string, string>
        {
            [TypeKey] = TypeValue,
            [PositionKey] = JsonSerializer.Serialize(position, Json),
            [OptionsKey] = OptionsText(options, optimizer),
        });
    }

    private static float[] Raw(Tensor<float> t)
    {
        var values = new float[t.Length];
        t.Backend.Download(t.Storage, values);
        return values;
    }

    /// <summary>
    /// Validates the whole checkpoint against <paramref name="parameters"/> and <paramref name="optimizer"/>, then
    /// writes the weights and optimizer state and returns the position. Nothing is written unless everything fits.
    /// </summary>
    public static TrainerPosition Load(string path, TrainerOptions options, IReadOnlyList<NamedParameter> parameters, IOptimizer optimizer)
    {
        var content = SafeTensorsFile.Read(path);
        var meta = content.Metadata;
        string Need(string key) => meta.TryGetValue(key, out var v) ? v
            : throw new CheckpointFormatException(path, $"metadata key '{key}' is missing; this is not a KdEngine training checkpoint.");
        if (Need(TypeKey) != TypeValue)
            throw new CheckpointFormatException(path, $"checkpoint type '{SafeTensorsFile.Truncate(meta[TypeKey])}' is not '{TypeValue}'.");
        string expectedOptions = OptionsText(options, optimizer);
        if (Need(OptionsKey) != expectedOptions)
            throw new CheckpointFormatException(path, $"the run was saved with '{SafeTensorsFile.Truncate(meta[OptionsKey])}' but resumes with '{expectedOptions}'; the data order or optimizer would differ.");
        TrainerPosition position;
        try
        {
            position = JsonSerializer.Deserialize<TrainerPosition>(Need(PositionKey), Json) ?? throw new JsonException("null position");
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(path, $"metadata '{PositionKey}' is not a trainer position: {e.Message}", e);
        }
        if (position.Epoch < 1 || position.BatchInEpoch < 0 || position.Step < 0
            || position.LossCount < 0 || position.History is null || position.Stopping is null
            || position.Stopping.SinceImprovement < 0 || position.Stopping.SinceReduction < 0 || !(position.LearningRateScale > 0 && position.LearningRateScale <= 1))
            throw new CheckpointFormatException(path, $"metadata '{PositionKey}' holds an impossible position (epoch {position.Epoch}, batch {position.BatchInEpoch}, step {position.Step}).");

        // Every tensor is checked before anything is written.
        var known = new HashSet<string>(StringComparer.Ordinal);
        var weights = new float[parameters.Count][];
        bool hasBest = content.Contains("best." + (parameters.Count > 0 ? parameters[0].Name : ""));
        bool hasFallback = content.Contains("fallback." + (parameters.Count > 0 ? parameters[0].Name : ""));
        float[][]? best = hasBest ? new float[parameters.Count][] : null;
        float[][]? fallback = hasFallback ? new float[parameters.Count][] : null;
        for (int i = 0; i < parameters.Count; i++)
        {
            var shape = parameters[i].Tensor.Shape.ToArray();
            weights[i] = Take("model." + parameters[i].Name, shape);
            if (best is not null) best[i] = Take("best." + parameters[i].Name, shape);
            if (fallback is not null) fallback[i] = Take("fallback." + parameters[i].Name, shape);
        }
        var state = new List<(string, float[], int[])>();
        foreach (var name in content.Names)
            if (name.StartsWith("optimizer.", StringComparison.Ordinal))
            {
                var a = content.Get(name);
                state.Add((name["optimizer.".Length..], Take(name, null), a.Shape.ToArray()));
            }
        foreach (var name in content.Names)
            if (!known.Contains(name))
                throw new CheckpointFormatException(path, $"tensor '{SafeTensorsFile.Truncate(name)}' belongs to no parameter of this model (different model?).");

        // ImportState validates every entry before it writes any, so a mismatch leaves the optimizer as it was.
        try { optimizer.ImportState(state); }
        catch (ArgumentException e) { throw new CheckpointFormatException(path, $"optimizer state does not fit: {e.Message}", e); }
        for (int i = 0; i < parameters.Count; i++) weights[i].CopyTo(parameters[i].Tensor.AsSpan());
        position.BestWeights = best;
        position.FallbackWeights = fallback;
        return position;

        float[] Take(string name, int[]? shape)
        {
            known.Add(name);
            return content.GetFloat32(name, shape).ToArray();
        }
    }
}
