namespace KdEngine.Tensors;

/// <summary>
/// Marks a tensor that holds only some rows of a larger embedding table: the rows a process owns when tables are
/// row-sharded over <see cref="Size"/> processes (<see cref="Sharding.RowSharding"/>). Global row g lives on rank
/// g mod Size, at local row g / Size — round-robin, so the most frequent ids (vocabularies give them the smallest
/// ids) spread evenly over the ranks instead of all landing on rank 0 as contiguous ranges would put them.
/// </summary>
/// <param name="GlobalRows">Rows of the whole table.</param>
/// <param name="Rank">The rank whose rows this tensor holds.</param>
/// <param name="Size">Ranks the table is sharded over.</param>
public sealed record RowShard(int GlobalRows, int Rank, int Size)
{
    /// <summary>The sharded table this shard belongs to (null for a shard made outside a <see cref="Sharding.RowSharding"/>).</summary>
    internal Sharding.ShardedTable? Table { get; init; }

    /// <summary>Rows this rank holds.</summary>
    public int LocalRows => RowsOf(GlobalRows, Rank, Size);

    /// <summary>The global row of local row <paramref name="local"/>.</summary>
    public long GlobalRow(int local) => (long)local * Size + Rank;

    /// <summary>Rows of a <paramref name="globalRows"/>-row table that rank <paramref name="rank"/> of <paramref name="size"/> owns.</summary>
    public static int RowsOf(int globalRows, int rank, int size) => globalRows <= rank ? 0 : (globalRows - rank + size - 1) / size;

    /// <summary>The rank that owns global row <paramref name="row"/>.</summary>
    public static int OwnerOf(int row, int size) => row % size;

    /// <summary>The local row of global row <paramref name="row"/> on its owner.</summary>
    public static int LocalOf(int row, int size) => row / size;
}
