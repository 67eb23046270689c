namespace KdEngine.Nn;

/// <summary>One multi-valued field's ids for a batch: bag b is Ids[Offsets[b] .. Offsets[b + 1]).</summary>
public readonly record struct BagColumn(ReadOnlyMemory<int> Offsets, ReadOnlyMemory<int> Ids);

/// <summary>
/// A batch as models consume it: <see cref="Size"/> rows of encoded ids, row-major [Size, Columns] (one
/// per-field local id per column), the labels [Size] when known, and each row's index in its dataset
/// (<see cref="RowIndex"/>, used to look up cached teacher logits; empty when unknown).
/// </summary>
/// Optional: <see cref="DenseValues"/> [Size, Columns] (a value scaling each column's embedding) and
/// <see cref="Bags"/> (one <see cref="BagColumn"/> per multi-valued field).
public readonly record struct CtrBatch(int Size, int Columns, ReadOnlyMemory<int> Ids, ReadOnlyMemory<float> Labels,
    ReadOnlyMemory<int> RowIndex = default)
{
    /// <summary>[Size, Columns] values scaling each column's embedding; empty when no field is scaled.</summary>
    public ReadOnlyMemory<float> DenseValues { get; init; }
    /// <summary>One bag column per multi-valued field the models read; null when there is none.</summary>
    public IReadOnlyList<BagColumn>? Bags { get; init; }

    /// <summary>Checks that the arrays match <see cref="Size"/> and <see cref="Columns"/>; an <see cref="ArgumentException"/> otherwise.</summary>
    public void Validate()
    {
        if (Size <= 0) throw new ArgumentException($"CtrBatch: size {Size} must be positive.");
        if (Ids.Length != Size * Columns)
            throw new ArgumentException($"CtrBatch: {Ids.Length} ids do not form [{Size}, {Columns}].");
        if (!Labels.IsEmpty && Labels.Length != Size)
            throw new ArgumentException($"CtrBatch: {Labels.Length} labels for {Size} rows.");
        if (!RowIndex.IsEmpty && RowIndex.Length != Size)
            throw new ArgumentException($"CtrBatch: {RowIndex.Length} row indices for {Size} rows.");
        if (!DenseValues.IsEmpty && DenseValues.Length != Size * Columns)
            throw new ArgumentException($"CtrBatch: {DenseValues.Length} dense values do not form [{Size}, {Columns}].");
        if (Bags is not null)
            foreach (var bag in Bags)
                if (bag.Offsets.Length != Size + 1)
                    throw new ArgumentException($"CtrBatch: a bag column has {bag.Offsets.Length} offsets for {Size} rows (expected {Size + 1}).");
    }
}
