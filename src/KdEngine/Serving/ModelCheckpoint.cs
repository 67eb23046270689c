using System.Text.Json;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Sharding;
using KdEngine.Training;

namespace KdEngine.Serving;

/// <summary>
/// A model loaded from a checkpoint, with the preprocessing it was trained with (null when saved without) and its post-hoc
/// calibration (null: none; apply it to the model's logits, as <see cref="Predictor"/> does).
/// </summary>
public sealed record LoadedModel(ZooModel Model, Preprocessor? Preprocessor, IReadOnlyDictionary<string, string> Metadata,
    KdEngine.Metrics.LogitCalibration? Calibration = null);

/// <summary>
/// One file holds a model, its config, its input fields and its fitted preprocessing: a safetensors file
/// (see docs/formats.md) whose tensors are the model's parameters under their PyTorch-style names and whose
/// metadata holds <c>model.type</c>, <c>model.config</c>, <c>model.fields</c>, <c>model.columns</c>,
/// <c>preprocessing</c> (JSON) and, when fitted, <c>calibration</c> (the post-hoc logit map z′ = a·z + b,
/// <see cref="KdEngine.Metrics.LogitCalibration"/>). Written atomically; loading validates everything before returning, so a
/// failed load leaves nothing half-built.
/// </summary>
public static class ModelCheckpoint
{
    /// <summary>Metadata key of the model type (<see cref="ModelType"/>).</summary>
    public const string TypeKey = "model.type";
    /// <summary>Metadata key of the <see cref="KdEngine.Models.ModelConfig"/> JSON.</summary>
    public const string ConfigKey = "model.config";
    /// <summary>Metadata key of the model's input fields (name, cardinality, kind).</summary>
    public const string FieldsKey = "model.fields";
    /// <summary>Metadata key of the batch column each field reads.</summary>
    public const string ColumnsKey = "model.columns";
    /// <summary>Metadata key of the fitted <see cref="Preprocessor"/> JSON.</summary>
    public const string PreprocessingKey = "preprocessing";
    /// <summary>Metadata key of the post-hoc calibration JSON (<see cref="KdEngine.Metrics.LogitCalibration"/>), when one was fitted.</summary>
    public const string CalibrationKey = "calibration";
    /// <summary>The value of <see cref="TypeKey"/> in every zoo-model checkpoint.</summary>
    public const string ModelType = "kdengine.zoo";

    /// <summary>
    /// Writes <paramref name="model"/> (parameters and config), its input fields, <paramref name="preprocessor"/> (when
    /// given), the <paramref name="extra"/> metadata entries and <paramref name="calibration"/> (when given and not the
    /// identity) to <paramref name="path"/>, through a temporary file and a rename.
    /// </summary>
    public static void Save(string path, ZooModel model, Preprocessor? preprocessor = null, IReadOnlyDictionary<string, string>? extra = null,
        KdEngine.Metrics.LogitCalibration? calibration = null)
    {
        if (RowSharding.Of(model) is { } sharding)
            throw new InvalidOperationException($"{path}: the model's tables are row-sharded over {sharding.Group.Size} rank(s); save it with the collective " +
                "ModelCheckpoint.Save(path, model, preprocessor, extra, group) on every rank, which gathers the rows into one file.");
        var metadata = Metadata(model, preprocessor, extra, calibration);
        var tensors = model.Parameters().Select(p => NamedArray.Float32(p.Name, p.Tensor.ToArray(), p.Tensor.Shape.ToArray()));
        SafeTensorsFile.Write(path, tensors, metadata);
    }

    /// <summary>
    /// Saves from a data-parallel run: rank 0 writes. Replicated tables: only rank 0 needs to call it (other ranks'
    /// calls return at once). Row-sharded tables: collective — every rank calls it and streams its rows to rank 0,
    /// which writes one ordinary checkpoint, holding whole tables, that one process or any number of ranks loads.
    /// </summary>
    public static void Save(string path, ZooModel model, Preprocessor? preprocessor, IReadOnlyDictionary<string, string>? extra, IProcessGroup group,
        KdEngine.Metrics.LogitCalibration? calibration = null)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (RowSharding.Of(model) is null)
        {
            if (group.Rank == 0) Save(path, model, preprocessor, extra, calibration);
            return;
        }
        var tensors = model.Parameters()
            .Select(p => new SavedTensor(p.Name, ShardedFiles.GlobalShape(p.Tensor), ShardedFiles.LocalValues(p.Tensor), p.Tensor.RowShard)).ToArray();
        ShardedFiles.Write(path, group, tensors, Metadata(model, preprocessor, extra, calibration));
    }

    private static Dictionary<string, string> Metadata(ZooModel model, Preprocessor? preprocessor, IReadOnlyDictionary<string, string>? extra,
        KdEngine.Metrics.LogitCalibration? calibration)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [TypeKey] = ModelType,
            [ConfigKey] = model.Config.ToJson(),
            [FieldsKey] = JsonSerializer.Serialize(model.Fields.Select(DescribeField)),
            [ColumnsKey] = JsonSerializer.Serialize(model.Columns),
        };
        if (preprocessor is not null) metadata[PreprocessingKey] = preprocessor.ToJson();
        if (calibration is { IsIdentity: false }) metadata[CalibrationKey] = calibration.ToJson();
        if (extra is not null)
            foreach (var (k, v) in extra)
            {
                if (metadata.ContainsKey(k)) throw new ArgumentException($"checkpoint metadata key '{k}' is reserved.");
                metadata[k] = v;
            }
        return metadata;
    }

    /// <summary>
    /// A field as stored in <c>model.fields</c>: <c>[name, cardinality]</c> for a plain id field, or
    /// <c>[name, cardinality, kind]</c> with kind <c>scaled</c> (embedding × dense value), <c>multi-sum</c> or
    /// <c>multi-mean</c> (a pooled bag of ids) — a reloaded model reads its inputs exactly as the trained one did.
    /// </summary>
    private static string[] DescribeField(InputField f)
    {
        string card = f.Cardinality.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (f.IsMultiValued) return [f.Name, card, f.Pooling == Ops.PoolingMode.Mean ? "multi-mean" : "multi-sum"];
        return f.ScaleByValue ? [f.Name, card, "scaled"] : [f.Name, card];
    }

    private static InputField ParseField(string[] f, int i)
    {
        if (f is not [var name, var card, ..] || f.Length > 3 || string.IsNullOrEmpty(name)
            || !int.TryParse(card, System.Globalization.CultureInfo.InvariantCulture, out int c) || c <= 0)
            throw new JsonException($"entry {i} is not [name, cardinality] or [name, cardinality, kind]");
        var field = new InputField(name, c);
        if (f.Length == 2) return field;
        return f[2] switch
        {
            "scaled" => field with { ScaleByValue = true },
            "multi-sum" => field with { IsMultiValued = true, Pooling = Ops.PoolingMode.Sum },
            "multi-mean" => field with { IsMultiValued = true, Pooling = Ops.PoolingMode.Mean },
            _ => throw new JsonException($"entry {i}: unknown field kind '{f[2]}' (expected scaled, multi-sum or multi-mean)"),
        };
    }

    /// <summary>
    /// Reads a checkpoint written by <see cref="Save(string, ZooModel, Preprocessor?, IReadOnlyDictionary{string, string}?, KdEngine.Metrics.LogitCalibration?)"/>: rebuilds the model from its config and fields and loads every
    /// parameter. A missing, truncated or mismatched file is a <see cref="CheckpointFormatException"/> naming the file and
    /// the tensor or key.
    /// </summary>
    /// <remarks>
    /// Inside a row-sharded <see cref="TablePlacement"/> (e.g. a frozen teacher of a sharded distillation run) the
    /// model is built with this rank's rows of each table only, and the file is streamed, keeping those rows: no rank
    /// holds a whole table. Every rank of the placement's group calls it (rank 0 verifies the data digest for all).
    /// </remarks>
    public static LoadedModel Load(string path)
    {
        if (TablePlacement.Current is { Mode: EmbeddingSharding.Row } placement) return LoadSharded(path, placement.Sharding!);
        var content = SafeTensorsFile.Read(path);
        var (model, preprocessor, absent) = Build(path, content.Metadata, content.Header);
        foreach (var p in model.Parameters())
        {
            if (absent.Contains(p.Name)) p.Tensor.Backend.Fill(p.Tensor.Storage, 0f);
            else p.Tensor.Backend.Upload(content.GetFloat32(p.Name, p.Tensor.Shape.ToArray()), p.Tensor.Storage);
        }
        model.Training = false;
        return new LoadedModel(model, preprocessor, content.Metadata, CalibrationOf(path, content.Metadata));
    }

    private static LoadedModel LoadSharded(string path, RowSharding sharding)
    {
        var header = SafeTensorsFile.ReadHeaderOnly(path);
        var (model, preprocessor, absent) = Build(path, header.Metadata, header);
        foreach (var p in model.Parameters())
        {
            if (absent.Contains(p.Name)) continue;
            if (!header.TryGet(p.Name, out var entry) || entry.DType != TensorDType.F32 || !entry.Shape.SequenceEqual(ShardedFiles.GlobalShape(p.Tensor)))
                throw new CheckpointFormatException(path, $"tensor '{p.Name}' is not F32 {NamedArray.FormatShape(ShardedFiles.GlobalShape(p.Tensor))}.");
        }
        ShardedFiles.VerifyOnRoot(header, sharding.Group);
        foreach (var p in model.Parameters())
        {
            if (absent.Contains(p.Name)) p.Tensor.Backend.Fill(p.Tensor.Storage, 0f);
            else ShardedFiles.Read(header, p.Name, p.Tensor);
        }
        model.Training = false;
        return new LoadedModel(model, preprocessor, header.Metadata, CalibrationOf(path, header.Metadata));
    }

    /// <summary>The post-hoc calibration in the metadata (null when none was fitted).</summary>
    private static KdEngine.Metrics.LogitCalibration? CalibrationOf(string path, IReadOnlyDictionary<string, string> meta)
    {
        if (!meta.TryGetValue(CalibrationKey, out var cal)) return null;
        try { return KdEngine.Metrics.LogitCalibration.FromJson(cal); }
        catch (Exception e) when (e is FormatException or JsonException)
        {
            throw new CheckpointFormatException(path, $"metadata '{CalibrationKey}': {e.Message}", e);
        }
    }

    /// <summary>Checks the description in the metadata against the tensors the header lists, then builds the (untrained) model.</summary>
    private static (ZooModel Model, Preprocessor? Preprocessor, string[] Absent) Build(string path, IReadOnlyDictionary<string, string> meta, SafeTensorsHeader header)
    {
        string Need(string key) => meta.TryGetValue(key, out var v) ? v
            : throw new CheckpointFormatException(path, $"metadata key '{key}' is missing; this is not a KdEngine model checkpoint.");
        if (Need(TypeKey) != ModelType)
            throw new CheckpointFormatException(path, $"model type '{meta[TypeKey]}' is not '{ModelType}'.");
        ModelConfig config;
        InputField[] fields;
        int[] columns;
        try
        {
            config = ModelConfig.FromJson(Need(ConfigKey), ConfigKey);
            var rawFields = JsonSerializer.Deserialize<string[][]>(Need(FieldsKey)) ?? throw new JsonException("null");
            fields = rawFields.Select(ParseField).ToArray();
            columns = JsonSerializer.Deserialize<int[]>(Need(ColumnsKey)) ?? throw new JsonException("null");
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(path, $"bad model description: {e.Message}");
        }
        catch (ConfigException e)
        {
            throw new CheckpointFormatException(path, e.Message);
        }
        if (columns.Length != fields.Length || columns.Any(c => c < 0))
            throw new CheckpointFormatException(path, $"{ColumnsKey} does not give one non-negative column per field.");
        if (fields.Length == 0)
            throw new CheckpointFormatException(path, $"{FieldsKey} lists no field.");
        var fieldNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var f in fields)
            if (string.IsNullOrEmpty(f.Name) || !fieldNames.Add(f.Name))
                throw new CheckpointFormatException(path, $"{FieldsKey}: field name '{f.Name}' is empty or appears twice.");
        Preprocessor? preprocessor = null;
        if (meta.TryGetValue(PreprocessingKey, out var pre))
        {
            try { preprocessor = Preprocessor.FromJson(pre, PreprocessingKey); }
            catch (DataFormatException e) { throw new CheckpointFormatException(path, e.Message); }
            foreach (var f in fields)
            {
                var known = preprocessor.FeatureSpace.Fields.FirstOrDefault(x => x.Name == f.Name);
                if (known is null || known.Cardinality != f.Cardinality)
                    throw new CheckpointFormatException(path, known is null
                        ? $"model field '{f.Name}' is not a field of the saved preprocessing."
                        : $"model field '{f.Name}' has cardinality {f.Cardinality} but the saved preprocessing gives it {known.Cardinality} ids.");
            }
        }

        // Before building the model (which allocates every weight): the config and fields must describe exactly
        // as many weights as the file holds. A checkpoint is untrusted, so a header that claims a huge vocabulary
        // or DNN must fail here, bounded by the file's own size, and a config of another model kind
        // (e.g. xdeepfm over a dnn's tensors) is named as such.
        long fileWeights = header.Tensors.Sum(e => e.ElementCount);
        // Tensors a part gained after older checkpoints were written (the DNN's output bias) may be absent: zero.
        var absent = ZooModel.AbsentInOlderCheckpoints(config.Model).Where(t => !header.TryGet(t.Name, out _)).Select(t => t.Name).ToArray();
        long configWeights = ZooModel.ParameterCount(config, fields) - ZooModel.AbsentInOlderCheckpoints(config.Model).Where(t => absent.Contains(t.Name)).Sum(t => t.Weights);
        if (configWeights != fileWeights)
            throw new CheckpointFormatException(path,
                $"the config ({config.Model}, embeddingDim {config.EmbeddingDim}, {fields.Length} fields) describes {configWeights} weights but the file holds {fileWeights}; "
                + "the metadata and the tensors are from different models (wrong model type or shapes).");

        ZooModel model;
        try { model = new ZooModel(config, fields, columns); }
        catch (Exception e) when (e is ArgumentException or ConfigException or InvalidOperationException)
        {
            throw new CheckpointFormatException(path, $"the model cannot be built from its description: {e.Message}", e);
        }
        var expected = model.Parameters();
        var names = new HashSet<string>(expected.Select(p => p.Name), StringComparer.Ordinal);
        foreach (var entry in header.Tensors)
            if (!names.Contains(entry.Name))
                throw new CheckpointFormatException(path, $"tensor '{entry.Name}' does not belong to a {config.Model} model with this config.");
        foreach (var p in expected)
            if (!header.TryGet(p.Name, out _) && !absent.Contains(p.Name))
                throw new CheckpointFormatException(path, $"tensor '{p.Name}' {NamedArray.FormatShape(ShardedFiles.GlobalShape(p.Tensor))} is missing.");
        return (model, preprocessor, absent);
    }
}
