using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Nn;

/// <summary>
/// One model-input field: its name (e.g. <c>C1</c>) and the size of its id space. A single-valued field reads
/// one id column of the batch (optionally scaling its embedding by the batch's dense value for that column);
/// a multi-valued field (<see cref="IsMultiValued"/>) reads one of the batch's bag columns and pools the
/// embeddings of its ids by <see cref="Pooling"/>.
/// </summary>
public sealed record InputField(string Name, int Cardinality)
{
    /// <summary>True when the field reads a bag column (several ids per row) instead of one id column.</summary>
    public bool IsMultiValued { get; init; }
    /// <summary>Multi-valued fields: how the ids' embeddings combine (sum or mean).</summary>
    public PoolingMode Pooling { get; init; } = PoolingMode.Sum;
    /// <summary>Single-valued fields: the embedding is multiplied by the batch's dense value for the field's column.</summary>
    public bool ScaleByValue { get; init; }
}

/// <summary>
/// Per-field embedding tables: field f has its own table [V_f, D] named <c>{Name}.weight</c>, whose
/// gradient is row-sparse. Reads a subset of the batch's id columns (a student that must not see
/// privileged fields embeds only the others) and stacks them into x0 [B, F, D].
/// </summary>
public sealed class FieldEmbeddings : Module
{
    private readonly Tensor<float>[] _tables;
    private readonly int[] _columns;

    /// <param name="fields">The fields this module embeds.</param>
    /// <param name="columns">For each field, its column in the batch's id matrix.</param>
    /// <param name="dim">Embedding width D (1 for the wide/linear part).</param>
    /// <param name="initStd">Standard deviation of the normal initialiser; 0 initialises to zero.</param>
    /// <param name="rng">The source of the initial values.</param>
    public FieldEmbeddings(IReadOnlyList<InputField> fields, IReadOnlyList<int> columns, int dim, float initStd, Random rng)
    {
        if (fields.Count == 0) throw new ArgumentException("FieldEmbeddings: no fields.");
        if (fields.Count != columns.Count) throw new ArgumentException($"FieldEmbeddings: {fields.Count} fields but {columns.Count} columns.");
        if (dim <= 0) throw new ArgumentException($"FieldEmbeddings: embedding dimension {dim} must be positive.");
        Fields = fields.ToArray();
        _columns = columns.ToArray();
        Dim = dim;
        _tables = new Tensor<float>[fields.Count];
        for (int f = 0; f < fields.Count; f++)
        {
            if (fields[f].Cardinality <= 0)
                throw new ArgumentException($"FieldEmbeddings: field '{fields[f].Name}' has cardinality {fields[f].Cardinality}.");
            int rows = fields[f].Cardinality;
            var table = initStd > 0
                ? EmbeddingTable.Create<float>(Init.NormalValues(rng, initStd, rows * dim), rows, dim)
                : EmbeddingTable.Zeros<float>(rows, dim);
            _tables[f] = AddParameter(fields[f].Name + ".weight", table);
        }
    }

    /// <summary>
    /// Shares a subset of <paramref name="source"/>'s tables (the very same tensors, so both modules train
    /// them): field i of the new module is field <paramref name="sourceFields"/>[i] of the source, read from
    /// batch column <paramref name="columns"/>[i]. PFD's student shares the teacher's common-field tables this way.
    /// </summary>
    public FieldEmbeddings(FieldEmbeddings source, IReadOnlyList<int> sourceFields, IReadOnlyList<int> columns)
    {
        if (sourceFields.Count == 0) throw new ArgumentException("FieldEmbeddings: no fields.");
        if (sourceFields.Count != columns.Count) throw new ArgumentException($"FieldEmbeddings: {sourceFields.Count} fields but {columns.Count} columns.");
        Dim = source.Dim;
        _columns = columns.ToArray();
        _tables = new Tensor<float>[sourceFields.Count];
        var fields = new InputField[sourceFields.Count];
        for (int i = 0; i < sourceFields.Count; i++)
        {
            int f = sourceFields[i];
            if ((uint)f >= (uint)source.FieldCount)
                throw new ArgumentOutOfRangeException(nameof(sourceFields), $"FieldEmbeddings: source field {f} does not exist (source has {source.FieldCount}).");
            fields[i] = source.Fields[f];
            _tables[i] = AddParameter(fields[i].Name + ".weight", source._tables[f]);
        }
        Fields = fields;
    }

    /// <summary>The embedded fields, in order (field f is row f of x0).</summary>
    public IReadOnlyList<InputField> Fields { get; }
    /// <summary>For each field, its column in the batch.</summary>
    public IReadOnlyList<int> Columns => _columns;
    /// <summary>D: the embedding width.</summary>
    public int Dim { get; }
    /// <summary>F: the number of embedded fields.</summary>
    public int FieldCount => _tables.Length;
    /// <summary>The tables [V_f, D], one per field.</summary>
    public IReadOnlyList<Tensor<float>> Tables => _tables;

    /// <summary>
    /// Batch → x0 [B, F, D]. Fast path: all fields single-valued and unscaled — one fused gather. Otherwise the
    /// single-valued fields are gathered (and scaled by their dense values) and each multi-valued field is
    /// pooled, then all are concatenated along the field axis in field order.
    /// </summary>
    public Tensor<float> Forward(in CtrBatch batch)
    {
        _mixed ??= Fields.Any(f => f.IsMultiValued || f.ScaleByValue);
        if (_mixed.Value) return ForwardMixed(batch);
        return GatherSingle(batch, _tables, _columns);
    }

    private bool? _mixed;

    private Tensor<float> ForwardMixed(in CtrBatch batch)
    {
        var parts = new Tensor<float>[FieldCount];
        for (int f = 0; f < FieldCount; f++)
        {
            var field = Fields[f];
            if (field.IsMultiValued)
            {
                if (batch.Bags is null || (uint)_columns[f] >= (uint)batch.Bags.Count)
                    throw new ArgumentException($"FieldEmbeddings: multi-valued field '{field.Name}' reads bag column {_columns[f]}, which the batch does not have.");
                var bag = batch.Bags[_columns[f]];
                var pooled = Op.EmbeddingBag(_tables[f], bag.Ids, bag.Offsets, field.Pooling); // [B, D]
                parts[f] = Op.Reshape(pooled, batch.Size, 1, Dim);                             // [B, 1, D]
                continue;
            }
            var x = GatherSingle(batch, [_tables[f]], [_columns[f]]);                          // [B, 1, D]
            if (field.ScaleByValue)
            {
                if (batch.DenseValues.IsEmpty)
                    throw new ArgumentException($"FieldEmbeddings: field '{field.Name}' is scaled by its value, but the batch has no dense values.");
                var values = new float[batch.Size];
                var dense = batch.DenseValues.Span;
                for (int b = 0; b < batch.Size; b++) values[b] = dense[b * batch.Columns + _columns[f]];
                x = Op.MulColumn(x, Op.Constant<float>(values, new Shape(batch.Size, 1)));     // [B, 1, D] · s[B, 1]
            }
            parts[f] = x;
        }
        return parts.Length == 1 ? parts[0] : Op.Concat(parts, axis: 1);                        // [B, F, D]
    }

    private static Tensor<float> GatherSingle(in CtrBatch batch, IReadOnlyList<Tensor<float>> tables, int[] columns)
    {
        ReadOnlyMemory<int> ids = batch.Ids;
        var _columns = columns;
        if (!IsIdentityOver(columns, batch.Columns))
        {
            // Gather this module's columns into [B, F] (kept alive by the node until backward).
            var sub = new int[batch.Size * _columns.Length];
            var src = batch.Ids.Span;
            for (int b = 0; b < batch.Size; b++)
                for (int f = 0; f < _columns.Length; f++)
                    sub[b * _columns.Length + f] = src[b * batch.Columns + _columns[f]];
            ids = sub;
        }
        return Op.EmbeddingGatherFields(tables, ids, batch.Size);
    }

    private static bool IsIdentityOver(int[] columns, int batchColumns)
    {
        if (batchColumns != columns.Length) return false;
        for (int i = 0; i < columns.Length; i++) if (columns[i] != i) return false;
        return true;
    }
}
