using System.Text.Json;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Nn;

namespace KdEngine.Serving;

/// <summary>A model loaded from a checkpoint, with the preprocessing it was trained with (null when saved without).</summary>
public sealed record LoadedModel(ZooModel Model, Preprocessor? Preprocessor, IReadOnlyDictionary<string, string> Metadata);

/// <summary>
/// One file holds a model, its config, its input fields and its fitted preprocessing: a safetensors file
/// (see docs/formats.md) whose tensors are the model's parameters under their PyTorch-style names and whose
/// metadata holds <c>model.type</c>, <c>model.config</c>, <c>model.fields</c>, <c>model.columns</c> and
/// <c>preprocessing</c> (JSON). Written atomically; loading validates everything before returning, so a
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
    /// <summary>The value of <see cref="TypeKey"/> in every zoo-model checkpoint.</summary>
    public const string ModelType = "kdengine.zoo";

    /// <summary>
    /// Writes <paramref name="model"/> (parameters and config), its input fields, <paramref name="preprocessor"/> (when
    /// given) and the <paramref name="extra"/> metadata entries to <paramref name="path"/>, through a temporary file and a rename.
    /// </summary>
    public static void Save(string path, ZooModel model, Preprocessor? preprocessor = null, IReadOnlyDictionary<string, string>? extra = null)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [TypeKey] = ModelType,
            [ConfigKey] = model.Config.ToJson(),
            [FieldsKey] = JsonSerializer.Serialize(model.Fields.Select(DescribeField)),
            [ColumnsKey] = JsonSerializer.Serialize(model.Columns),
        };
        if (preprocessor is not null) metadata[PreprocessingKey] = preprocessor.ToJson();
        if (extra is not null)
            foreach (var (k, v) in extra)
            {
                if (metadata.ContainsKey(k)) throw new ArgumentException($"checkpoint metadata key '{k}' is reserved.");
                metadata[k] = v;
            }
        var tensors = model.Parameters().Select(p => NamedArray.Float32(p.Name, p.Tensor.ToArray(), p.Tensor.Shape.ToArray()));
        SafeTensorsFile.Write(path, tensors, metadata);
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
    /// Reads a checkpoint written by <see cref="Save"/>: rebuilds the model from its config and fields and loads every
    /// parameter. A missing, truncated or mismatched file is a <see cref="CheckpointFormatException"/> naming the file and
    /// the tensor or key.
    /// </summary>
    public static LoadedModel Load(string path)
    {
        var content = SafeTensorsFile.Read(path);
        var meta = content.Metadata;
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
        long fileWeights = content.Names.Sum(n => content.Header.TryGet(n, out var e) ? e.ElementCount : 0);
        // Tensors a part gained after older checkpoints were written (the DNN's output bias) may be absent: zero.
        var absent = ZooModel.AbsentInOlderCheckpoints(config.Model).Where(t => !content.Contains(t.Name)).ToArray();
        long configWeights = ZooModel.ParameterCount(config, fields) - absent.Sum(t => t.Weights);
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
        foreach (var name in content.Names)
            if (!names.Contains(name))
                throw new CheckpointFormatException(path, $"tensor '{name}' does not belong to a {config.Model} model with this config.");
        foreach (var p in expected)
        {
            if (!content.Contains(p.Name) && absent.Any(t => t.Name == p.Name))
            {
                p.Tensor.Backend.Fill(p.Tensor.Storage, 0f);
                continue;
            }
            if (!content.Contains(p.Name))
                throw new CheckpointFormatException(path, $"tensor '{p.Name}' {p.Tensor.Shape} is missing.");
            p.Tensor.Backend.Upload(content.GetFloat32(p.Name, p.Tensor.Shape.ToArray()), p.Tensor.Storage);
        }
        model.Training = false;
        return new LoadedModel(model, preprocessor, meta);
    }
}
