using System.Globalization;
using KdEngine.Backends;
using KdEngine.Nn;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Sharding;

/// <summary>How the embedding tables of a data-parallel run are laid out over its ranks.</summary>
public enum EmbeddingSharding
{
    /// <summary>Every rank holds every table and its optimizer state; touched rows are allgathered each step.</summary>
    Replicated,

    /// <summary>Rank r holds rows g ≡ r (mod N) of every table and their optimizer state (<see cref="RowSharding"/>).</summary>
    Row,
}

/// <summary>The embedding tables (and their optimizer state) would need more memory per rank than the run allows.</summary>
public sealed class TableBudgetExceededException(string message) : Exception(message);

/// <summary>
/// Where the embedding tables of the models built inside <see cref="Use"/> live, and how many bytes a rank may spend
/// on them. <see cref="FieldEmbeddings"/> asks the current placement for its tables: replicated, each is an ordinary
/// full table; row-sharded, each is only this rank's rows (a <see cref="ShardedTable"/> of <see cref="Sharding"/>).
/// Either way the bytes a rank will hold — weights and the optimizer's per-weight state — are counted before any
/// table is allocated and checked against <see cref="MaxTableBytesPerRank"/>, so a table that does not fit fails at
/// once, saying how many ranks would hold it, instead of running out of memory later.
/// </summary>
/// <remarks>
/// An ambient scope (like <see cref="DefaultBackend{T}.Use"/>): the model constructors, checkpoint loaders and
/// distillation methods stay unchanged, and every model built while the scope is active — students, co-trained
/// teachers, frozen teachers loaded from checkpoints — gets tables laid out the same way. Scopes are per thread and nest.
/// </remarks>
public sealed class TablePlacement
{
    [ThreadStatic] private static TablePlacement? _current;

    /// <param name="mode">Replicated or row-sharded tables.</param>
    /// <param name="group">The ranks a row-sharded table is spread over (required for <see cref="EmbeddingSharding.Row"/>).</param>
    /// <param name="maxTableBytesPerRank">Budget for table weights plus optimizer state on one rank; 0 = no limit.</param>
    /// <param name="optimizerSlots">Per-weight state buffers of the optimizer that will train the tables (Adam 2, Adagrad 1, SGD 0 or 1).</param>
    public TablePlacement(EmbeddingSharding mode, IProcessGroup? group = null, long maxTableBytesPerRank = 0, int optimizerSlots = 0)
    {
        if (maxTableBytesPerRank < 0) throw new ArgumentOutOfRangeException(nameof(maxTableBytesPerRank), maxTableBytesPerRank, "the table budget must be ≥ 0 (0 = no limit).");
        if (optimizerSlots < 0) throw new ArgumentOutOfRangeException(nameof(optimizerSlots), optimizerSlots, "optimizer slots must be ≥ 0.");
        Mode = mode;
        MaxTableBytesPerRank = maxTableBytesPerRank;
        OptimizerSlots = optimizerSlots;
        if (mode == EmbeddingSharding.Row)
            Sharding = new RowSharding(group ?? throw new ArgumentNullException(nameof(group), "row-sharded tables need the process group they are sharded over."));
        Ranks = group?.Size ?? 1;
    }

    /// <summary>The placement in effect on this thread (null: ordinary replicated tables, no budget).</summary>
    public static TablePlacement? Current => _current;

    /// <summary>Replicated or row-sharded tables.</summary>
    public EmbeddingSharding Mode { get; }

    /// <summary>The coordinator of the row-sharded tables (null when replicated).</summary>
    public RowSharding? Sharding { get; }

    /// <summary>The per-rank budget for table weights plus optimizer state, in bytes (0: no limit).</summary>
    public long MaxTableBytesPerRank { get; }
    /// <summary>Optimizer state floats per table weight counted against the budget (Adam 2, Adagrad 1, …).</summary>
    public int OptimizerSlots { get; }
    private int Ranks { get; }

    /// <summary>Bytes of table weights this rank holds for the tables built under this placement.</summary>
    public long TableBytes { get; private set; }

    /// <summary>Table weights plus the optimizer's per-weight state, on this rank.</summary>
    public long TableAndOptimizerBytes => TableBytes * (1 + OptimizerSlots);

    /// <summary>Bytes of the same tables held whole (what one replica holds), weights plus optimizer state.</summary>
    public long FullTableAndOptimizerBytes { get; private set; }

    /// <summary>Makes this the current placement until the returned scope is disposed.</summary>
    public IDisposable Use()
    {
        var previous = _current;
        _current = this;
        return new Scope(previous);
    }

    private sealed class Scope(TablePlacement? previous) : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            _current = previous;
        }
    }

    /// <summary>
    /// The tables of one <see cref="FieldEmbeddings"/>: field f gets a [V_f, width] table (replicated) or this rank's
    /// rows of it (row-sharded), initialised from <paramref name="rng"/> exactly as
    /// <c>Init.NormalValues(rng, initStd, V_f · width)</c> initialises the whole table (zeros when initStd is 0).
    /// The budget is checked for all of them before any is allocated.
    /// </summary>
    internal Tensor<float>[] CreateTables(IReadOnlyList<InputField> fields, IReadOnlyList<int> columns, int width, float initStd, Random rng)
    {
        long local = 0, full = 0;
        int rank = Sharding?.Group.Rank ?? 0, size = Sharding?.Group.Size ?? 1;
        foreach (var f in fields)
        {
            full += (long)f.Cardinality * width * sizeof(float);
            local += (long)(Mode == EmbeddingSharding.Row ? RowShard.RowsOf(f.Cardinality, rank, size) : f.Cardinality) * width * sizeof(float);
        }
        long need = (TableBytes + local) * (1 + OptimizerSlots);
        long fullNeed = FullTableAndOptimizerBytes + full * (1 + OptimizerSlots);
        if (MaxTableBytesPerRank > 0 && need > MaxTableBytesPerRank)
        {
            long ranks = (fullNeed + MaxTableBytesPerRank - 1) / MaxTableBytesPerRank;
            string what = $"embedding tables and their optimizer state need {Bytes(need)} per rank (weights {Bytes(TableBytes + local)} × (1 + {OptimizerSlots} optimizer slot{(OptimizerSlots == 1 ? "" : "s")})) so far, more than --max-table-bytes-per-rank {Bytes(MaxTableBytesPerRank)}";
            throw new TableBudgetExceededException(Mode == EmbeddingSharding.Row
                ? $"{what} with the tables row-sharded over {size} rank{(size == 1 ? "" : "s")}; use at least {Math.Max(ranks, size + 1)} ranks."
                : $"{what} with every table replicated on every rank; shard them with --embedding-sharding row over at least {Math.Max(ranks, 2)} ranks.");
        }
        var tables = new Tensor<float>[fields.Count];
        for (int f = 0; f < fields.Count; f++)
        {
            int rows = fields[f].Cardinality;
            if (Mode == EmbeddingSharding.Row)
            {
                var column = new TableColumn(fields[f].IsMultiValued, columns[f]);
                tables[f] = Sharding!.CreateTable(rows, width, column, values =>
                {
                    if (initStd > 0) Init.NormalRows(rng, initStd, rows, width, rank, size, values);
                });
            }
            else
            {
                tables[f] = initStd > 0
                    ? EmbeddingTable.Create<float>(Init.NormalValues(rng, initStd, checked(rows * width)), rows, width)
                    : EmbeddingTable.Zeros<float>(rows, width);
            }
        }
        TableBytes += local;
        FullTableAndOptimizerBytes = fullNeed;
        return tables;
    }

    /// <summary>A byte count as messages print it (B, KiB, MiB, GiB).</summary>
    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F2} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F2} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F1} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} B"),
    };
}
