using System.Text.Json;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Sharding;
using KdEngine.Training;

namespace KdEngine.Serving;

/// <summary>
/// A model loaded from a checkpoint, with the preprocessing it was trained with (null when saved without) and its post-hoc
/// calibration (null: none; apply it to the model's logits, as <see cref="Predictor"/> does). A checkpoint written with a
/// serving precision also gives that <see cref="Precision"/> and, for int8, the stored integers and scales
/// (<see cref="StoredInt8"/>) that <see cref="Predictor.Load"/> serves as they are; <see cref="Model"/> holds the
/// dequantised weights (what the quantised layers compute with, up to the activations' own rounding).
/// </summary>
public sealed record LoadedModel(ZooModel Model, Preprocessor? Preprocessor, IReadOnlyDictionary<string, string> Metadata,
    KdEngine.Metrics.LogitCalibration? Calibration = null)
{
    /// <summary>The serving precision the checkpoint was written in (float32 for a plain checkpoint).</summary>
    public ServingPrecision Precision { get; init; } = ServingPrecision.Float32;

    /// <summary>The int8 weights as stored (null unless the checkpoint holds I8 tensors).</summary>
    public StoredInt8Weights? StoredInt8 { get; init; }
}

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
    /// <summary>Metadata key of a checkpoint written with a serving precision (<see cref="ServingPrecision.ToString"/>).</summary>
    public const string PrecisionKey = "serving.precision";
    /// <summary>Suffix of the per-output-channel scales [out] stored beside an I8 weight [out, in].</summary>
    public const string ScaleSuffix = "_scale";
    /// <summary>The value of <see cref="TypeKey"/> in every zoo-model checkpoint.</summary>
    public const string ModelType = "kdengine.zoo";

    /// <summary>
    /// Writes <paramref name="model"/> (parameters and config), its input fields, <paramref name="preprocessor"/> (when
    /// given), the <paramref name="extra"/> metadata entries and <paramref name="calibration"/> (when given and not the
    /// identity) to <paramref name="path"/>, through a temporary file and a rename.
    /// </summary>
    public static void Save(string path, ZooModel model, Preprocessor? preprocessor = null, IReadOnlyDictionary<string, string>? extra = null,
        KdEngine.Metrics.LogitCalibration? calibration = null)
        => Save(path, model, preprocessor, extra, precision: null, calibration);

    /// <summary>
    /// Writes the checkpoint. With a <paramref name="precision"/> other than float32, the serving matrices
    /// (<see cref="Models.Parts.ModelPart.ServingMatrices"/>: DNN and CIN layers) are stored as I8 [out, in] with F32
    /// scales <c>{name}_scale</c> [out], or as BF16, and the embedding tables as BF16 when asked; every other tensor stays
    /// F32; the metadata records <see cref="PrecisionKey"/>. Loading such a file gives the dequantised model, and
    /// <see cref="Predictor.Load"/> serves the stored values exactly.
    /// </summary>
    public static void Save(string path, ZooModel model, Preprocessor? preprocessor, IReadOnlyDictionary<string, string>? extra, ServingPrecision? precision,
        KdEngine.Metrics.LogitCalibration? calibration = null)
    {
        if (RowSharding.Of(model) is { } sharding)
            throw new InvalidOperationException($"{path}: the model's tables are row-sharded over {sharding.Group.Size} rank(s); save it with the collective " +
                "ModelCheckpoint.Save(path, model, preprocessor, extra, group) on every rank, which gathers the rows into one file.");
        precision ??= ServingPrecision.Float32;
        precision.Validate();
        var metadata = Metadata(model, preprocessor, extra, calibration);
        if (!precision.IsFloat32)
        {
            if (metadata.ContainsKey(PrecisionKey)) throw new ArgumentException($"checkpoint metadata key '{PrecisionKey}' is reserved.");
            metadata[PrecisionKey] = precision.ToString();
        }
        if (precision.IsFloat32)
        {
            // Float32: each tensor goes from the model's memory to the file in chunks — no second copy of the model
            // (at the end of training, a copy of every table would be the run's peak memory).
            SafeTensorsFile.WriteStreamed(path, model.Parameters().Select(p => new StreamedTensor(p.Name, p.Tensor.Shape.ToArray(), sink => Produce(p.Tensor, sink))).ToList(), metadata);
            return;
        }
        var matrices = new HashSet<Tensors.Tensor<float>>(model.Parts.SelectMany(part => part.ServingMatrices), ReferenceEqualityComparer.Instance);
        var tables = new HashSet<Tensors.Tensor<float>>(model.Embedding?.Tables ?? [], ReferenceEqualityComparer.Instance);
        var tensors = new List<NamedArray>();
        foreach (var p in model.Parameters())
        {
            int[] shape = p.Tensor.Shape.ToArray();
            var format = matrices.Contains(p.Tensor) ? precision.DenseWeights
                : tables.Contains(p.Tensor) ? precision.Embeddings : WeightFormat.Float32;
            var values = p.Tensor.ToArray();
            switch (format)
            {
                case WeightFormat.Int8:
                    // W [out, in] per output channel: q = round(W / s), s = max |W_row| / 127 (Int8Weights.Quantize).
                    var q = Kernels.Cpu.Int8Weights.Quantize(values, shape[0], values.Length / shape[0]);
                    tensors.Add(NamedArray.Int8(p.Name, q.Values.ToArray(), shape));
                    tensors.Add(NamedArray.Float32(p.Name + ScaleSuffix, (float[])q.Scales.Clone(), shape[0]));
                    break;
                case WeightFormat.BFloat16:
                    var bf = new ushort[values.Length];
                    Kernels.Cpu.Bf16.FromFloat(values, bf);
                    tensors.Add(NamedArray.BFloat16(p.Name, bf, shape));
                    break;
                default:
                    tensors.Add(NamedArray.Float32(p.Name, values, shape));
                    break;
            }
        }
        SafeTensorsFile.Write(path, tensors, metadata);
    }

    /// <summary>Hands a tensor's values to a streamed file in 1 MiB chunks (straight from CPU memory; other backends: one download).</summary>
    private static void Produce(Tensors.Tensor<float> tensor, ByteSink sink)
    {
        tensor.ApplyDeferredRows();
        if (tensor.Storage is not Tensors.CpuStorage<float>)
        {
            sink(System.Runtime.InteropServices.MemoryMarshal.AsBytes(tensor.ToArray().AsSpan()));
            return;
        }
        const int Chunk = 1 << 18; // floats
        for (int start = 0; start < tensor.Length; start += Chunk)
            sink(System.Runtime.InteropServices.MemoryMarshal.AsBytes((ReadOnlySpan<float>)tensor.AsSpan().Slice(start, Math.Min(Chunk, tensor.Length - start))));
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
    /// Reads a checkpoint written by <see cref="Save(string, ZooModel, Preprocessor?, IReadOnlyDictionary{string, string}?, ServingPrecision?, KdEngine.Metrics.LogitCalibration?)"/>: rebuilds the model from its config and fields and loads every
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
        var precision = PrecisionOf(path, content.Metadata);
        StoredInt8Weights? stored = null;
        foreach (var p in model.Parameters())
        {
            if (absent.Contains(p.Name)) { p.Tensor.Backend.Fill(p.Tensor.Storage, 0f); continue; }
            int[] shape = p.Tensor.Shape.ToArray();
            switch (content.DTypeOf(p.Name))
            {
                case TensorDType.BF16:
                    var bf = content.GetBFloat16(p.Name, shape);
                    var widened = new float[bf.Length];
                    Kernels.Cpu.Bf16.ToFloat(bf, widened);
                    p.Tensor.Backend.Upload(widened, p.Tensor.Storage);
                    break;
                case TensorDType.I8:
                    var q = ReadInt8(path, content, p.Name, shape);
                    p.Tensor.Backend.Upload(q.Dequantize(), p.Tensor.Storage);
                    (stored ??= new StoredInt8Weights()).Add(p.Tensor, q);
                    break;
                default:
                    p.Tensor.Backend.Upload(content.GetFloat32(p.Name, shape), p.Tensor.Storage);
                    break;
            }
        }
        model.Training = false;
        return new LoadedModel(model, preprocessor, content.Metadata, CalibrationOf(path, content.Metadata)) { Precision = precision, StoredInt8 = stored };
    }

    /// <summary>The serving precision recorded in the metadata (float32 when absent).</summary>
    private static ServingPrecision PrecisionOf(string path, IReadOnlyDictionary<string, string> meta)
    {
        if (!meta.TryGetValue(PrecisionKey, out var precisionText)) return ServingPrecision.Float32;
        try { return ServingPrecision.Parse(precisionText); }
        catch (FormatException e) { throw new CheckpointFormatException(path, $"metadata '{PrecisionKey}': {e.Message}"); }
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
        // An I8 weight's scales ride beside it; they are not model weights.
        bool IsScaleOfInt8(string n) => n.EndsWith(ScaleSuffix, StringComparison.Ordinal)
            && header.TryGet(n[..^ScaleSuffix.Length], out var w) && w.DType == TensorDType.I8;
        long fileWeights = header.Tensors.Where(e => !IsScaleOfInt8(e.Name)).Sum(e => e.ElementCount);
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
            if (!names.Contains(entry.Name) && !IsScaleOfInt8(entry.Name))
                throw new CheckpointFormatException(path, $"tensor '{entry.Name}' does not belong to a {config.Model} model with this config.");
        foreach (var p in expected)
            if (!header.TryGet(p.Name, out _) && !absent.Contains(p.Name))
                throw new CheckpointFormatException(path, $"tensor '{p.Name}' {NamedArray.FormatShape(ShardedFiles.GlobalShape(p.Tensor))} is missing.");
        return (model, preprocessor, absent);
    }

    /// <summary>An I8 weight [out, in] and its scales <c>{name}_scale</c> F32 [out], checked (scales finite and ≥ 0, no −128).</summary>
    private static Kernels.Cpu.Int8Weights ReadInt8(string path, SafeTensorsContent content, string name, int[] shape)
    {
        if (shape.Length != 2)
            throw new CheckpointFormatException(path, $"tensor '{name}' is I8 but has shape {NamedArray.FormatShape(shape)}; int8 weights are matrices [out, in].");
        var values = content.GetInt8(name, shape);
        if (!content.Contains(name + ScaleSuffix))
            throw new CheckpointFormatException(path, $"tensor '{name}' is I8 but its scales '{name}{ScaleSuffix}' [{shape[0]}] are missing.");
        var scales = content.GetFloat32(name + ScaleSuffix, [shape[0]]);
        try { return Kernels.Cpu.Int8Weights.FromQuantized(values, scales, shape[0], shape[1]); }
        catch (ArgumentException e) { throw new CheckpointFormatException(path, $"tensor '{name}': {e.Message}"); }
    }
}
