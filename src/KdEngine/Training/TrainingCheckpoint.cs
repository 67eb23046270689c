using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using KdEngine.Nn;
using KdEngine.Tensors;
using KdEngine.Serving;
using KdEngine.Sharding;

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

    /// <summary>Throws naming the file when a loaded position is impossible.</summary>
    public static void Validate(string path, TrainerPosition position)
    {
        if (position.Epoch < 1 || position.BatchInEpoch < 0 || position.Step < 0
            || position.LossCount < 0 || position.History is null || position.Stopping is null
            || position.Stopping.SinceImprovement < 0 || position.Stopping.SinceReduction < 0 || !(position.LearningRateScale > 0 && position.LearningRateScale <= 1))
            throw new CheckpointFormatException(path, $"metadata '{TrainingCheckpoint.PositionKey}' holds an impossible position (epoch {position.Epoch}, batch {position.BatchInEpoch}, step {position.Step}).");
    }
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

    /// <summary>
    /// What must match on resume. The batch size is the global one (per-rank batch × ranks): a run resumes on another
    /// rank count with the same global batch, and with shuffling off its batches are then the very same rows
    /// (round-robin shards: global batch k is rows k·N·B … (k+1)·N·B − 1 of the train part for any N).
    /// </summary>
    private static string OptionsText(TrainerOptions o, IOptimizer optimizer, int ranks) => string.Create(CultureInfo.InvariantCulture,
        $"batchSize={(long)o.BatchSize * ranks};shuffle={o.Shuffle};seed={o.Seed};optimizer={optimizer.Description}");

    /// <summary>
    /// The single optimizer of a run with row-sharded tables: its state buffers are sharded like the tables. An optimizer
    /// group or deferred row updates (row clocks) are not written to a sharded checkpoint — refused rather than resumed inexactly.
    /// </summary>
    private static Optimizer ShardedOptimizer(string path, IOptimizer optimizer) => optimizer switch
    {
        Optimizer { DefersAnyRows: true } => throw new NotSupportedException(
            $"{path}: a training checkpoint of row-sharded tables cannot hold deferred row updates (lazy weight decay, FTRL's per-step L2); use embedding weight decay 0 or replicated tables."),
        Optimizer single => single,
        _ => throw new NotSupportedException(
            $"{path}: a training checkpoint of row-sharded tables needs one optimizer for every parameter, not {optimizer.Description}; train the wide part with the same optimizer (wideOptimizer unset) or use replicated tables."),
    };

    /// <summary>
    /// Writes the checkpoint. Replicated parameters: call on rank 0 only. With row-sharded tables: collective — every
    /// rank calls it and streams its rows (weights, optimizer state, best weights) to rank 0, which writes one
    /// ordinary file holding whole tables.
    /// </summary>
    public static void Save(string path, TrainerOptions options, IReadOnlyList<NamedParameter> parameters, IOptimizer optimizer, TrainerPosition position,
        IProcessGroup? group = null)
    {
        group ??= SingleProcess.Instance;
        if (optimizer.Parameters.Any(p => p.RowShard is not null))
        {
            SaveSharded(path, options, parameters, ShardedOptimizer(path, optimizer), position, group);
            return;
        }
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
            [OptionsKey] = OptionsText(options, optimizer, group.Size),
        });
    }

    private static void SaveSharded(string path, TrainerOptions options, IReadOnlyList<NamedParameter> parameters, Optimizer optimizer, TrainerPosition position,
        IProcessGroup group)
    {
        var tensors = new List<SavedTensor>();
        foreach (var p in parameters)
            tensors.Add(new SavedTensor("model." + p.Name, ShardedFiles.GlobalShape(p.Tensor), ShardedFiles.LocalValues(p.Tensor), p.Tensor.RowShard));
        tensors.Add(new SavedTensor("optimizer.step", [2], Optimizer.EncodeStepCount(optimizer.StepCount), null));
        for (int i = 0; i < optimizer.Parameters.Count; i++)
        {
            var t = optimizer.Parameters[i];
            string key = optimizer.Key(i);
            tensors.Add(new SavedTensor($"optimizer.{key}.step", [2], Optimizer.EncodeStepCount(optimizer.ParameterStepCount(i)), null));
            for (int slot = 0; slot < optimizer.SlotNames.Count; slot++)
                tensors.Add(new SavedTensor($"optimizer.{key}.{optimizer.SlotNames[slot]}", ShardedFiles.GlobalShape(t), optimizer.StateBuffer(slot, i), t.RowShard));
        }
        if (position.BestWeights is { } best)
            for (int i = 0; i < parameters.Count; i++)
                tensors.Add(new SavedTensor("best." + parameters[i].Name, ShardedFiles.GlobalShape(parameters[i].Tensor), best[i], parameters[i].Tensor.RowShard));
        ShardedFiles.Write(path, group, tensors, new Dictionary<string, string>
        {
            [TypeKey] = TypeValue,
            [PositionKey] = JsonSerializer.Serialize(position, Json),
            [OptionsKey] = OptionsText(options, optimizer, group.Size),
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
    public static TrainerPosition Load(string path, TrainerOptions options, IReadOnlyList<NamedParameter> parameters, IOptimizer optimizer, IProcessGroup? group = null)
    {
        group ??= SingleProcess.Instance;
        if (optimizer.Parameters.Any(p => p.RowShard is not null)) return LoadSharded(path, options, parameters, ShardedOptimizer(path, optimizer), group);
        var content = SafeTensorsFile.Read(path);
        var position = Position(path, content.Metadata, options, optimizer, group);
        TrainerPosition.Validate(path, position);

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

    /// <summary>The checkpoint's trainer position, after checking its type and that the options match.</summary>
    private static TrainerPosition Position(string path, IReadOnlyDictionary<string, string> meta, TrainerOptions options, IOptimizer optimizer, IProcessGroup group)
    {
        string Need(string key) => meta.TryGetValue(key, out var v) ? v
            : throw new CheckpointFormatException(path, $"metadata key '{key}' is missing; this is not a KdEngine training checkpoint.");
        if (Need(TypeKey) != TypeValue)
            throw new CheckpointFormatException(path, $"checkpoint type '{SafeTensorsFile.Truncate(meta[TypeKey])}' is not '{TypeValue}'.");
        string expectedOptions = OptionsText(options, optimizer, group.Size);
        if (Need(OptionsKey) != expectedOptions)
            throw new CheckpointFormatException(path, $"the run was saved with '{SafeTensorsFile.Truncate(meta[OptionsKey])}' but resumes with '{expectedOptions}'; the data order or optimizer would differ"
                + (group.Size > 1 ? $" (batchSize is the global batch: {group.Size} ranks × {options.BatchSize})." : "."));
        TrainerPosition position;
        try
        {
            position = JsonSerializer.Deserialize<TrainerPosition>(Need(PositionKey), Json) ?? throw new JsonException("null position");
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(path, $"metadata '{PositionKey}' is not a trainer position: {e.Message}", e);
        }
        return position;
    }

    /// <summary>
    /// Loads a checkpoint into row-sharded parameters on any rank count: every rank reads the file (rank 0 verifies its
    /// data digest for all) and keeps its own rows of each table, of its optimizer state and of the best weights.
    /// Names, dtypes and shapes are all checked against the header before anything is written.
    /// </summary>
    private static TrainerPosition LoadSharded(string path, TrainerOptions options, IReadOnlyList<NamedParameter> parameters, Optimizer optimizer, IProcessGroup group)
    {
        var header = SafeTensorsFile.ReadHeaderOnly(path);
        var position = Position(path, header.Metadata, options, optimizer, group);
        TrainerPosition.Validate(path, position);
        var known = new HashSet<string>(StringComparer.Ordinal);
        void Expect(string name, int[] shape)
        {
            known.Add(name);
            if (!header.TryGet(name, out var entry))
                throw new CheckpointFormatException(path, $"tensor '{name}' {NamedArray.FormatShape(shape)} is missing.");
            if (entry.DType != TensorDType.F32 || !entry.Shape.SequenceEqual(shape))
                throw new CheckpointFormatException(path, $"tensor '{name}' is {TensorDTypes.Name(entry.DType)} {NamedArray.FormatShape(entry.Shape.ToArray())}, expected F32 {NamedArray.FormatShape(shape)}.");
        }
        bool hasBest = parameters.Count > 0 && header.TryGet("best." + parameters[0].Name, out _);
        foreach (var p in parameters)
        {
            Expect("model." + p.Name, ShardedFiles.GlobalShape(p.Tensor));
            if (hasBest) Expect("best." + p.Name, ShardedFiles.GlobalShape(p.Tensor));
        }
        Expect("optimizer.step", [2]);
        for (int i = 0; i < optimizer.Parameters.Count; i++)
        {
            Expect($"optimizer.{optimizer.Key(i)}.step", [2]);
            foreach (var slot in optimizer.SlotNames) Expect($"optimizer.{optimizer.Key(i)}.{slot}", ShardedFiles.GlobalShape(optimizer.Parameters[i]));
        }
        foreach (var entry in header.Tensors)
            if (!known.Contains(entry.Name))
                throw new CheckpointFormatException(path, $"tensor '{SafeTensorsFile.Truncate(entry.Name)}' belongs to no parameter of this model or optimizer (different model or optimizer?).");
        long Steps(string name)
        {
            var data = new float[2];
            ShardedFiles.Read(header, name, [2], null, data);
            try { return optimizer.DecodeStepCount(data, name); }
            catch (ArgumentException e) { throw new CheckpointFormatException(path, e.Message, e); }
        }
        long step = Steps("optimizer.step");
        var parameterSteps = new long[optimizer.Parameters.Count];
        for (int i = 0; i < parameterSteps.Length; i++) parameterSteps[i] = Steps($"optimizer.{optimizer.Key(i)}.step");
        ShardedFiles.VerifyOnRoot(header, group);

        foreach (var p in parameters) ShardedFiles.Read(header, "model." + p.Name, p.Tensor);
        optimizer.ReloadDeviceParameters();
        for (int i = 0; i < optimizer.Parameters.Count; i++)
            for (int slot = 0; slot < optimizer.SlotNames.Count; slot++)
                ShardedFiles.Read(header, $"optimizer.{optimizer.Key(i)}.{optimizer.SlotNames[slot]}", ShardedFiles.GlobalShape(optimizer.Parameters[i]),
                    optimizer.Parameters[i].RowShard, optimizer.StateBuffer(slot, i));
        optimizer.RestoreStepCounts(step, parameterSteps);
        if (hasBest)
        {
            position.BestWeights = new float[parameters.Count][];
            for (int i = 0; i < parameters.Count; i++)
            {
                position.BestWeights[i] = new float[parameters[i].Tensor.Length];
                ShardedFiles.Read(header, "best." + parameters[i].Name, ShardedFiles.GlobalShape(parameters[i].Tensor), parameters[i].Tensor.RowShard, position.BestWeights[i]);
            }
        }
        return position;
    }
}
