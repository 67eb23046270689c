namespace KdEngine.Nn;

/// <summary>
/// A batch as models consume it: <see cref="Size"/> rows of encoded ids, row-major [Size, Columns] (one
/// per-field local id per column), the labels [Size] when known, and each row's index in its dataset
/// (<see cref="RowIndex"/>, used to look up cached teacher logits; empty when unknown).
/// </summary>
public readonly record struct CtrBatch(int Size, int Columns, ReadOnlyMemory<int> Ids, ReadOnlyMemory<float> Labels,
    ReadOnlyMemory<int> RowIndex = default)
{
    public void Validate()
    {
        if (Size <= 0) throw new ArgumentException($"CtrBatch: size {Size} must be positive.");
        if (Ids.Length != Size * Columns)
            throw new ArgumentException($"CtrBatch: {Ids.Length} ids do not form [{Size}, {Columns}].");
        if (!Labels.IsEmpty && Labels.Length != Size)
            throw new ArgumentException($"CtrBatch: {Labels.Length} labels for {Size} rows.");
        if (!RowIndex.IsEmpty && RowIndex.Length != Size)
            throw new ArgumentException($"CtrBatch: {RowIndex.Length} row indices for {Size} rows.");
    }
}
