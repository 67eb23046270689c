using System.Globalization;
using KdEngine.Data;
using KdEngine.Serving;

namespace KdEngine.Server.Models;

/// <summary>A checkpoint the service will not serve; the message says why (the previous version keeps serving).</summary>
public sealed class ModelRefusedException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Loads a checkpoint beside the version being served and validates it before anyone sees it: the file's checksums
/// (header and data SHA-256, verified by <see cref="ModelCheckpoint.Load"/>; a file without them is refused), its
/// preprocessing (the service scores raw values), the compiled <see cref="Predictor"/>, the client-facing input
/// schema against the current version's, and a warm-up prediction whose logits must be finite.
/// </summary>
public static class ModelLoader
{
    /// <summary>
    /// Loads and validates the checkpoint at <paramref name="path"/> as version <paramref name="version"/> of model
    /// <paramref name="name"/>; its input schema must equal <paramref name="current"/>'s unless
    /// <paramref name="allowSchemaChange"/>. Any problem is a <see cref="ModelRefusedException"/> saying why.
    /// </summary>
    public static ModelVersion Load(string name, string path, long version, ModelVersion? current = null, bool allowSchemaChange = false)
    {
        LoadedModel loaded;
        try { loaded = ModelCheckpoint.Load(path); }
        catch (Exception e) when (e is CheckpointFormatException or IOException or UnauthorizedAccessException or DataFormatException or InvalidDataException)
        {
            throw new ModelRefusedException($"model '{name}': cannot load '{path}': {e.Message}", e);
        }
        if (!loaded.Metadata.TryGetValue(SafeTensorsFile.DataSha256Key, out var checksum) || checksum.Length != 64
            || !loaded.Metadata.ContainsKey(SafeTensorsFile.HeaderSha256Key))
            throw new ModelRefusedException($"model '{name}': '{path}' carries no KdEngine checksums ({SafeTensorsFile.DataSha256Key}, {SafeTensorsFile.HeaderSha256Key}); " +
                "the service only serves checkpoints whose integrity it can verify (save it with ModelCheckpoint.Save / kdengine train).");
        var preprocessor = loaded.Preprocessor
            ?? throw new ModelRefusedException($"model '{name}': '{path}' was saved without its preprocessing; the service encodes raw values and needs it.");
        Predictor predictor;
        try { predictor = Predictor.FromLoaded(loaded); } // with the saved calibration and precision, as predict scores
        catch (Exception e) when (e is NotSupportedException or ArgumentException)
        {
            throw new ModelRefusedException($"model '{name}': '{path}' cannot be compiled for serving: {e.Message}", e);
        }
        var schema = new RequestSchema(preprocessor);
        if (current is not null && !allowSchemaChange)
        {
            var diffs = schema.DifferencesFrom(current.Schema);
            if (diffs.Count > 0)
                throw new ModelRefusedException($"model '{name}': '{path}' has another input schema than version {current.Version} ({string.Join("; ", diffs)}); " +
                    "clients would send fields it does not expect. Start the service with --allow-schema-change (Server:AllowSchemaChange) to accept it.");
        }
        WarmUp(name, path, predictor, preprocessor);
        var fieldsRead = loaded.Model.Fields.Select(f => f.Name).ToArray();
        return new ModelVersion(name, version, path, checksum, predictor, schema, loaded.Model.Config.Model, loaded.Model.ParameterCount(), fieldsRead);
    }

    /// <summary>
    /// Scores a few rows through the same encode → predict path requests take: every field missing, every field an unseen
    /// value (numbers 0), every field an arbitrary value (numbers 10⁹); and every field's most frequent training value as
    /// an encoded row. Every logit must be finite — a checkpoint with NaN/∞ weights that passed its checksum (saved that way) is refused here, not after the swap.
    /// </summary>
    internal static void WarmUp(string name, string path, Predictor predictor, Preprocessor preprocessor)
    {
        var schema = preprocessor.Schema;
        var records = new RawRecord[3];
        for (int r = 0; r < records.Length; r++)
        {
            var record = records[r] = new RawRecord(schema);
            if (r == 0) continue;
            foreach (int f in schema.InputIndices)
            {
                var spec = schema[f];
                if (spec.Kind == FieldKind.Numeric) record.Numbers[f] = r == 1 ? 0 : 1e9;
                else record.Values[f] = r == 1 ? "\u0001kdengine-warm-up-unseen" : "x";
            }
        }
        // Vocabularies hold value hashes, not text: the most frequent value of every field (id 2, the first entry) is
        // scored as an encoded row [1, C] (a field without an entry of its own keeps its highest id).
        var known = new int[predictor.InputColumns];
        foreach (var field in preprocessor.FeatureSpace.SingleFields)
            if (field.Slot < known.Length) known[field.Slot] = Math.Min(2, field.Cardinality - 1);
        var logits = new float[records.Length + 1];
        try
        {
            predictor.PredictRaw(records, logits.AsSpan(0, records.Length));
            predictor.Predict(known, logits.AsSpan(records.Length, 1));
        }
        catch (Exception e) when (e is ArgumentException or DataFormatException or InvalidOperationException)
        {
            throw new ModelRefusedException($"model '{name}': '{path}' failed its warm-up prediction: {e.Message}", e);
        }
        for (int r = 0; r < logits.Length; r++)
            if (!float.IsFinite(logits[r]))
                throw new ModelRefusedException(string.Create(CultureInfo.InvariantCulture,
                    $"model '{name}': '{path}' failed its warm-up prediction: logit {logits[r]} for warm-up row {r} is not finite (the weights hold NaN or ∞)."));
    }
}
