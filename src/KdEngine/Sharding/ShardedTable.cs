using KdEngine.Backends;
using KdEngine.Nn;
using KdEngine.Tensors;

namespace KdEngine.Sharding;

/// <summary>The batch column a table's ids come from: an id column (<see cref="CtrBatch.Ids"/>) or a bag column (<see cref="CtrBatch.Bags"/>).</summary>
public readonly record struct TableColumn(bool IsBag, int Column)
{
    /// <summary>"id column 3" or "bag column 0" (for messages).</summary>
    public override string ToString() => IsBag ? $"bag column {Column}" : $"id column {Column}";
}

/// <summary>
/// One embedding table [<see cref="GlobalRows"/>, <see cref="Width"/>] row-sharded over the ranks of a
/// <see cref="RowSharding"/>. <see cref="Owned"/> holds this rank's rows (global row g at local row g / N for
/// g ≡ rank mod N); it is the model's registered parameter, so the optimizer, its state and every checkpoint see
/// only this rank's rows. The forward reads <see cref="WorkingSet"/> instead: the rows of the current batch's
/// distinct ids, fetched from their owners, indexed by the batch's remapped ids (see <see cref="RowSharding"/>).
/// </summary>
public sealed class ShardedTable
{
    private readonly IBackend<float> _backend;

    internal ShardedTable(RowSharding sharding, int index, int globalRows, int width, TableColumn column, IBackend<float> backend)
    {
        Sharding = sharding;
        Index = index;
        GlobalRows = globalRows;
        Width = width;
        Column = column;
        _backend = backend;
    }

    /// <summary>Sets the owned rows (made after this object, since their <see cref="RowShard"/> points back here).</summary>
    internal void Attach(Tensor<float> owned)
    {
        Owned = owned;
        WorkingSet = NewWorkingSet(1);
    }

    /// <summary>The sharding this table belongs to.</summary>
    public RowSharding Sharding { get; }

    /// <summary>Creation order within <see cref="Sharding"/> — the same on every rank, so it identifies the table in exchanges.</summary>
    public int Index { get; }

    /// <summary>Rows of the whole table (the column's id space), over all ranks.</summary>
    public int GlobalRows { get; }
    /// <summary>Floats per row.</summary>
    public int Width { get; }
    /// <summary>The batch column whose ids index this table.</summary>
    public TableColumn Column { get; }

    /// <summary>This rank's rows [local rows, width], with <see cref="Tensor{T}.RowShard"/> set.</summary>
    public Tensor<float> Owned { get; private set; } = null!;

    /// <summary>The parameter name (e.g. <c>embedding.C1.weight</c>) once the model has named it.</summary>
    public string Name => Owned.Name ?? $"row-sharded table #{Index}";

    /// <summary>
    /// The current batch's rows [capacity ≥ distinct ids, width]: row k is the row of the batch's k-th distinct id.
    /// A leaf with a row-sparse gradient, so the backward accumulates per distinct id (duplicates summed).
    /// </summary>
    internal Tensor<float> WorkingSet { get; private set; } = null!;

    /// <summary>The lookup whose rows <see cref="WorkingSet"/> holds.</summary>
    internal RowLookup? FilledBy { get; set; }

    /// <summary>Grows <see cref="WorkingSet"/> to hold <paramref name="rows"/> rows (doubling, so steady state allocates nothing).</summary>
    internal void EnsureWorkingSet(int rows)
    {
        if (WorkingSet.Shape[0] >= rows) return;
        WorkingSet.Dispose();
        WorkingSet = NewWorkingSet(Math.Max(rows, 2 * WorkingSet.Shape[0]));
    }

    private Tensor<float> NewWorkingSet(int rows)
    {
        var t = EmbeddingTable.Zeros<float>(rows, Width, Owned.Name, _backend).RequireGrad();
        return t;
    }

    /// <summary>
    /// The rows a forward over <paramref name="batch"/> must read: <see cref="WorkingSet"/>, after checking that
    /// <paramref name="batch"/> is the remapped batch of the lookup that filled it. A forward over any other batch
    /// (not looked up, or looked up before another batch) would read wrong rows silently, so it throws.
    /// </summary>
    public Tensor<float> RowsFor(in CtrBatch batch)
    {
        var lookup = FilledBy;
        if (lookup is null || !ReferenceEquals(lookup, Sharding.Current) || !lookup.Matches(batch))
            throw new InvalidOperationException(
                $"embedding table '{Name}' is row-sharded over {Sharding.Group.Size} rank(s): its rows for this batch must be fetched first " +
                "(RowSharding.Lookup on every rank, then the forward over the batch it returns).");
        if (WorkingSet.Name is null && Owned.Name is not null) WorkingSet.Name = Owned.Name;
        return WorkingSet;
    }
}
