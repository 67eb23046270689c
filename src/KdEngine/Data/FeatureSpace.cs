namespace KdEngine.Data;

/// <summary>How a field's raw values became ids.</summary>
public enum FieldEncoding
{
    /// <summary>0 = missing, 1 = OOV (unseen or rarer than min-count), 2.. = the fitted vocabulary.</summary>
    Vocabulary,
    /// <summary>0 = missing, 1..N = stable hash buckets; there is no OOV id.</summary>
    Hash,
    /// <summary>Dense numeric: 0 = missing (scale 1), 1 = present (scale = the value).</summary>
    Dense,
    /// <summary>Ids given directly (synthetic data): 0..V−1, no missing or OOV id.</summary>
    Direct,
}

/// <summary>
/// One model-input field: its embedding table has <see cref="Cardinality"/> rows (local ids 0..V−1, missing and OOV
/// ids included). <see cref="Slot"/> is the column in <see cref="EncodedDataset.Ids"/> for single-valued fields, or
/// the index in <see cref="EncodedDataset.Multi"/> for multi-valued ones.
/// </summary>
public sealed record FeatureField(
    string Name,
    FieldKind Kind,
    FieldEncoding Encoding,
    int Cardinality,
    bool Privileged,
    int Slot)
{
    /// <summary>Multi-valued fields only: how the model pools the ids' embeddings.</summary>
    public Pooling Pooling { get; init; } = Pooling.Sum;

    /// <summary>The field carries a value that scales its embedding (dense numeric, or libSVM values).</summary>
    public bool HasDenseValue { get; init; }

    /// <summary>True for a multi-valued field (a bag of ids per row).</summary>
    public bool IsMultiValued => Kind == FieldKind.Multi;

    /// <summary>The id of a missing value, or −1 when the field never has one.</summary>
    public int MissingId => Encoding == FieldEncoding.Direct ? -1 : 0;

    /// <summary>The id of unseen/rare values, or −1 when the field has none (hashed, dense, direct).</summary>
    public int OovId => Encoding == FieldEncoding.Vocabulary ? 1 : -1;
}

/// <summary>The model-input fields (in schema order) with their cardinalities; what a model is built from.</summary>
public sealed class FeatureSpace
{
    /// <summary>
    /// A feature space of <paramref name="fields"/> in schema order. Single- and multi-valued fields each need
    /// consecutive slots from 0, every cardinality ≥ 1; otherwise an <see cref="ArgumentException"/>.
    /// </summary>
    public FeatureSpace(IEnumerable<FeatureField> fields, bool hasUserIds = false)
    {
        ArgumentNullException.ThrowIfNull(fields);
        Fields = fields.ToArray();
        SingleFields = Fields.Where(f => !f.IsMultiValued).ToArray();
        MultiFields = Fields.Where(f => f.IsMultiValued).ToArray();
        for (int i = 0; i < SingleFields.Count; i++)
            if (SingleFields[i].Slot != i) throw new ArgumentException($"FeatureSpace: single-valued field '{SingleFields[i].Name}' has slot {SingleFields[i].Slot}, expected {i}.");
        for (int i = 0; i < MultiFields.Count; i++)
            if (MultiFields[i].Slot != i) throw new ArgumentException($"FeatureSpace: multi-valued field '{MultiFields[i].Name}' has slot {MultiFields[i].Slot}, expected {i}.");
        foreach (var f in Fields)
            if (f.Cardinality < 1) throw new ArgumentException($"FeatureSpace: field '{f.Name}' has cardinality {f.Cardinality}.");
        HasUserIds = hasUserIds;
    }

    /// <summary>All input fields in schema order.</summary>
    public IReadOnlyList<FeatureField> Fields { get; }

    /// <summary>Single-valued fields; field i is column i of <see cref="EncodedDataset.Ids"/>.</summary>
    public IReadOnlyList<FeatureField> SingleFields { get; }

    /// <summary>Multi-valued fields; field k is <see cref="EncodedDataset.Multi"/>[k].</summary>
    public IReadOnlyList<FeatureField> MultiFields { get; }

    /// <summary>Number of single-valued fields (the F of the [B, F] id matrix).</summary>
    public int FieldCount => SingleFields.Count;

    /// <summary>Whether any single-valued field has a dense value (then datasets carry <see cref="EncodedDataset.DenseValues"/>).</summary>
    public bool HasDenseValues => SingleFields.Any(f => f.HasDenseValue);

    /// <summary>True when datasets over this space carry a user id per row (for gAUC).</summary>
    public bool HasUserIds { get; }

    /// <summary>The field named <paramref name="name"/>; <see cref="KeyNotFoundException"/> when there is none.</summary>
    public FeatureField this[string name] =>
        Fields.FirstOrDefault(f => f.Name == name) ?? throw new KeyNotFoundException($"FeatureSpace has no field '{name}'.");

    /// <summary>Every field with its cardinality (privileged fields starred), for logs.</summary>
    public override string ToString() =>
        $"FeatureSpace({FieldCount} single + {MultiFields.Count} multi: " +
        string.Join(", ", Fields.Select(f => $"{f.Name}[{f.Cardinality}]{(f.Privileged ? "*" : "")}")) + ")";
}
