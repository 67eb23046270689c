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
    public const string TypeKey = "model.type";
    public const string ConfigKey = "model.config";
    public const string FieldsKey = "model.fields";
    public const string ColumnsKey = "model.columns";
    public const string PreprocessingKey = "preprocessing";
    public const string ModelType = "kdengine.zoo";

    public static void Save(string path, ZooModel model, Preprocessor? preprocessor = null, IReadOnlyDictionary<string, string>? extra = null)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [TypeKey] = ModelType,
            [ConfigKey] = model.Config.ToJson(),
            [FieldsKey] = JsonSerializer.Serialize(model.Fields.Select(f => new[] { f.Name, f.Cardinality.ToString(System.Globalization.CultureInfo.InvariantCulture) })),
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
            fields = rawFields.Select((f, i) => f is [var name, var card] && int.TryParse(card, System.Globalization.CultureInfo.InvariantCulture, out int c) && c > 0
                ? new InputField(name, c) : throw new JsonException($"entry {i} is not [name, cardinality]")).ToArray();
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
        Preprocessor? preprocessor = null;
        if (meta.TryGetValue(PreprocessingKey, out var pre))
        {
            try { preprocessor = Preprocessor.FromJson(pre, PreprocessingKey); }
            catch (DataFormatException e) { throw new CheckpointFormatException(path, e.Message); }
        }

        var model = new ZooModel(config, fields, columns);
        var expected = model.Parameters();
        var names = new HashSet<string>(expected.Select(p => p.Name), StringComparer.Ordinal);
        foreach (var name in content.Names)
            if (!names.Contains(name))
                throw new CheckpointFormatException(path, $"tensor '{name}' does not belong to a {config.Model} model with this config.");
        foreach (var p in expected)
        {
            if (!content.Contains(p.Name))
                throw new CheckpointFormatException(path, $"tensor '{p.Name}' {p.Tensor.Shape} is missing.");
            p.Tensor.Backend.Upload(content.GetFloat32(p.Name, p.Tensor.Shape.ToArray()), p.Tensor.Storage);
        }
        model.Training = false;
        return new LoadedModel(model, preprocessor, meta);
    }
}
