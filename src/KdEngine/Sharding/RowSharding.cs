using System.Diagnostics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.InteropServices;
using KdEngine.Backends;
using KdEngine.Nn;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Sharding;

/// <summary>
/// Cumulative traffic and time of the row-sharded tables' exchanges on this rank. Bytes count what crosses to other
/// ranks only (a rank's block to itself is a local copy).
/// </summary>
/// <param name="Lookups">Lookups completed (training steps, validation and evaluation batches).</param>
/// <param name="Pushes">Gradient pushes (training steps).</param>
/// <param name="CountBytesSent">Per-peer counts (batch size, ids per column; rows per table).</param>
/// <param name="IdBytesSent">Distinct ids of this rank's batches sent to their owners.</param>
/// <param name="RowBytesSent">Rows this rank served to the ranks that asked for them.</param>
/// <param name="GradientBytesSent">Row gradients (with their local row) sent to their owners.</param>
/// <param name="BytesReceived">Everything received from other ranks (counts, ids, rows, gradients).</param>
/// <param name="Seconds">Wall time inside lookups and pushes (packing, exchanging, serving, merging).</param>
/// <param name="WaitSeconds">Of that, time blocked waiting for other ranks' data.</param>
public sealed record ShardingStats(long Lookups, long Pushes, long CountBytesSent, long IdBytesSent, long RowBytesSent, long GradientBytesSent,
    long BytesReceived, double Seconds, double WaitSeconds)
{
    /// <summary>Everything sent to other ranks: counts, ids, rows and gradients.</summary>
    public long BytesSent => CountBytesSent + IdBytesSent + RowBytesSent + GradientBytesSent;
}

/// <summary>
/// Embedding tables row-sharded over the ranks of a process group (model parallel for the tables, data parallel for
/// everything else — the hybrid large CTR systems use). Rank r owns rows g ≡ r (mod N) of every table and their
/// optimizer state; the dense parameters stay replicated and allreduced.
/// </summary>
/// <remarks>
/// <para>Per training step (every call is a collective over <see cref="Group"/>, made in the same order on every rank):</para>
/// <list type="number">
/// <item><see cref="BeginLookup"/>: for each batch column some table reads, the batch's distinct ids are found and
/// grouped by owner; an all-to-all of counts (this rank's batch size and ids per column for each owner) sizes the
/// buffers, then the ids (as owners' local rows) start travelling with MPI_Ialltoallv. Tables reading the same
/// column (the wide and the deep table of a field, a student's and a teacher's) share one id exchange.</item>
/// <item><see cref="CompleteLookup"/>: each owner gathers the requested rows of every table on the column and sends
/// them back (MPI_Ialltoallv); each table's <see cref="ShardedTable.WorkingSet"/> receives the batch's rows, and the
/// batch comes back with its ids remapped to working-set rows. The model's forward runs unchanged on it.</item>
/// <item><see cref="PushGradients"/>, after backward: each trainable table's working-set gradient (one row per distinct
/// id, duplicates already summed by the tape) is scaled by B_r/ΣB and sent to the rows' owners, which add the
/// contributions rank 0 first, then rank 1, … into their shard's row-sparse gradient — the same additions, in the same
/// order, as the replicated touched-row allgather, so a sharded run's tables equal a replicated run's. The optimizer
/// then updates the owned rows only.</item>
/// </list>
/// <para>Why round-robin (mod N) ownership rather than contiguous ranges: vocabularies number ids by descending
/// frequency (and hashed ids may cluster), so ranges would give rank 0 the hot rows — most of every batch's lookups
/// and updates. Round-robin deals hot and cold rows evenly; re-sharding to another N on load is still just
/// "keep rows g ≡ r (mod N)".</para>
/// <para>Overlap: a lookup's id exchange (steps 1) can be begun for the next batch before this batch's forward, and
/// completed (step 2) after this step's optimizer update; the trainer does so when <see cref="Prefetch"/> is on. Rows
/// themselves cannot be fetched early: they change in this step's update.</para>
/// <para>Steady state allocates nothing: lookups and their buffers are pooled and grow only when a batch needs more.</para>
/// </remarks>
public sealed class RowSharding
{
    private readonly List<ShardedTable> _tables = [];
    private readonly List<RowLookup> _lookups = [];
    private readonly IBackend<float> _workingSetBackend;
    // Gradient push scratch (one push at a time).
    private int[] _pushCounts = [], _pushReceived = [], _pushSendBytes = [], _pushReceiveBytes = [], _pushOffsets = [];
    private byte[] _pushSend = [], _pushReceive = [];
    private long _lookupCount, _pushCount, _countBytes, _idBytes, _rowBytes, _gradientBytes, _received, _ticks, _waitTicks;

    /// <summary>A sharding of tables over <paramref name="group"/>'s ranks (rank r owns rows g ≡ r mod N); working sets live on the ambient backend.</summary>
    public RowSharding(IProcessGroup group)
    {
        Group = group ?? throw new ArgumentNullException(nameof(group));
        _workingSetBackend = DefaultBackend<float>.Current;
    }

    /// <summary>The ranks the tables are sharded over.</summary>
    public IProcessGroup Group { get; }

    /// <summary>Every table created in this sharding, in creation order (the same on every rank).</summary>
    public IReadOnlyList<ShardedTable> Tables => _tables;

    /// <summary>Whether the trainer begins the next batch's id exchange before this batch's forward (see the remarks).</summary>
    public bool Prefetch { get; set; } = true;

    /// <summary>The last completed lookup: the batch whose rows the working sets hold.</summary>
    public RowLookup? Current { get; private set; }

    /// <summary>Traffic and time of the lookups and pushes since the last <see cref="ResetStats"/>.</summary>
    public ShardingStats Stats => new(_lookupCount, _pushCount, _countBytes, _idBytes, _rowBytes, _gradientBytes, _received,
        _ticks / (double)Stopwatch.Frequency, _waitTicks / (double)Stopwatch.Frequency);

    /// <summary>Starts <see cref="Stats"/> over from zero.</summary>
    public void ResetStats() => _lookupCount = _pushCount = _countBytes = _idBytes = _rowBytes = _gradientBytes = _received = _ticks = _waitTicks = 0;

    /// <summary>Bytes of this rank's owned rows over every table (weights only; optimizer state comes on top).</summary>
    public long OwnedBytes => _tables.Sum(t => (long)t.Owned.Length * sizeof(float));

    /// <summary>Bytes of the working sets (the current batch's rows of every table).</summary>
    public long WorkingSetBytes => _tables.Sum(t => (long)t.WorkingSet.Length * sizeof(float));

    /// <summary>A new table of <paramref name="globalRows"/> rows; <paramref name="initialise"/> fills this rank's rows.</summary>
    internal Tensor<float> CreateTable(int globalRows, int width, TableColumn column, Action<Span<float>> initialise)
    {
        var shard = new RowShard(globalRows, Group.Rank, Group.Size);
        var table = new ShardedTable(this, _tables.Count, globalRows, width, column, _workingSetBackend);
        // Owned rows stay in host memory on every backend: owners serve and update them on the CPU; only the
        // working set lives on the compute backend.
        var storage = CpuBackend<float>.Instance.Allocate(checked(shard.LocalRows * width), clear: true);
        var owned = new Tensor<float>(new Shape(shard.LocalRows, width), storage, ownsStorage: true)
        {
            HasSparseGradient = true,
            RowShard = shard with { Table = table },
        };
        initialise(owned.AsSpan());
        table.Attach(owned);
        _tables.Add(table);
        return owned;
    }

    // ---------------------------------------------------------------- finding shardings

    /// <summary>The sharding of <paramref name="module"/>'s row-sharded tables, or null when it has none.</summary>
    public static RowSharding? Of(Module module)
    {
        RowSharding? found = null;
        foreach (var tensor in module.ParameterTensors())
            if (tensor.RowShard?.Table is { } t)
            {
                if (found is not null && !ReferenceEquals(found, t.Sharding))
                    throw new InvalidOperationException($"{module.GetType().Name}: its tables belong to two different row shardings.");
                found = t.Sharding;
            }
        return found;
    }

    /// <summary>The row-sharded tables among <paramref name="module"/>'s parameters.</summary>
    public static IReadOnlyList<ShardedTable> TablesOf(Module module) =>
        module.ParameterTensors().Select(t => t.RowShard?.Table).OfType<ShardedTable>().ToArray();

    /// <summary>A lookup plan over every table of this sharding (training: the objective's and any frozen teacher's).</summary>
    public LookupPlan PlanForAll() => new(this, _tables);

    /// <summary>A lookup plan over <paramref name="tables"/> (e.g. one model's, to evaluate it).</summary>
    public LookupPlan PlanFor(IEnumerable<ShardedTable> tables) => new(this, tables);

    /// <summary>
    /// Fetches the rows <paramref name="model"/>'s tables need for <paramref name="batch"/> and returns the batch to run
    /// the model on — or <paramref name="batch"/> itself when the model has no row-sharded table. Collective when it
    /// has: every rank calls it (with its own batch, possibly empty).
    /// </summary>
    public static CtrBatch PrepareForward(Module model, in CtrBatch batch)
    {
        var sharding = Of(model);
        return sharding is null ? batch : sharding.Lookup(batch, sharding.PlanFor(TablesOf(model)));
    }

    // ---------------------------------------------------------------- lookups

    /// <summary><see cref="BeginLookup"/> then <see cref="CompleteLookup"/>.</summary>
    public CtrBatch Lookup(in CtrBatch batch, LookupPlan plan) => CompleteLookup(BeginLookup(batch, plan));

    /// <summary>
    /// Collective. Finds the batch's distinct ids per column, exchanges counts and starts sending the ids to their
    /// owners. <paramref name="batch"/>'s memory must stay unchanged until the lookup is completed and used.
    /// </summary>
    public RowLookup BeginLookup(in CtrBatch batch, LookupPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (!ReferenceEquals(plan.Sharding, this)) throw new ArgumentException("BeginLookup: the plan belongs to another sharding.", nameof(plan));
        long t0 = Stopwatch.GetTimestamp();
        var lookup = Rent();
        lookup.Begin(batch, plan);
        _countBytes += lookup.CountBytesToOthers;
        long w0 = Stopwatch.GetTimestamp();
        Group.AllToAll(lookup.SendCounts, lookup.ReceivedCounts);
        _waitTicks += Stopwatch.GetTimestamp() - w0;
        _received += lookup.CountBytesToOthers;
        lookup.StartIdExchange();
        _idBytes += lookup.IdBytesToOthers;
        _received += lookup.IdBytesFromOthers;
        _ticks += Stopwatch.GetTimestamp() - t0;
        return lookup;
    }

    /// <summary>
    /// Collective. Waits for the ids, serves the rows this rank owns, receives the batch's rows into the tables'
    /// working sets and returns the batch with its ids remapped to working-set rows (valid until the next lookup
    /// completes).
    /// </summary>
    public CtrBatch CompleteLookup(RowLookup lookup)
    {
        ArgumentNullException.ThrowIfNull(lookup);
        if (!ReferenceEquals(lookup.Sharding, this) || lookup.Phase != RowLookup.State.Begun)
            throw new InvalidOperationException("CompleteLookup: the lookup was not begun on this sharding, or was already completed.");
        long t0 = Stopwatch.GetTimestamp();
        long w = lookup.WaitIds();
        lookup.StartRowExchange();
        _rowBytes += lookup.RowBytesToOthers;
        _received += lookup.RowBytesFromOthers;
        w += lookup.WaitRowsAndFill();
        if (Current is { } previous && !ReferenceEquals(previous, lookup)) previous.Phase = RowLookup.State.Idle;
        Current = lookup;
        _lookupCount++;
        _waitTicks += w;
        _ticks += Stopwatch.GetTimestamp() - t0;
        return lookup.Batch;
    }

    /// <summary>Collective. Drops a begun lookup that will not be used (every rank drops it: e.g. training stopped early).</summary>
    public void CancelLookup(RowLookup lookup)
    {
        if (lookup.Phase != RowLookup.State.Begun) return;
        lookup.WaitIds();
        lookup.Phase = RowLookup.State.Idle;
    }

    private RowLookup Rent()
    {
        foreach (var l in _lookups)
            if (l.Phase == RowLookup.State.Idle)
            {
                l.Phase = RowLookup.State.Begun;
                return l;
            }
        var lookup = new RowLookup(this) { Phase = RowLookup.State.Begun };
        _lookups.Add(lookup);
        return lookup;
    }

    // ---------------------------------------------------------------- gradients

    /// <summary>
    /// Collective, after backward over the batch of <paramref name="lookup"/> (the current one). Sends every trainable
    /// table's working-set gradient rows, scaled by B_r/ΣB, to their owners, which add them rank by rank into
    /// <see cref="ShardedTable.Owned"/>'s row-sparse gradient; a table some rank touched is marked
    /// <see cref="Autograd.SparseRowGradient{T}.TouchedElsewhere"/> on every rank, so each owner's optimizer counts the
    /// step for it as one process would. Working-set gradients are cleared (frozen tables' included).
    /// </summary>
    /// <param name="lookup">The current lookup (the one whose working sets the backward ran on).</param>
    /// <param name="trainable">The owned tensors the optimizer updates; other tables' gradients are dropped.</param>
    public void PushGradients(RowLookup lookup, IReadOnlySet<Tensor<float>> trainable)
    {
        ArgumentNullException.ThrowIfNull(lookup);
        ArgumentNullException.ThrowIfNull(trainable);
        if (!ReferenceEquals(lookup, Current)) throw new InvalidOperationException("PushGradients: the lookup is not the current one (its working sets were refilled since).");
        long t0 = Stopwatch.GetTimestamp();
        var plan = lookup.Plan!;
        var tables = plan.Trainable(trainable);
        int n = Group.Size, k = tables.Length;
        if (lookup.GlobalBatch == 0) throw new InvalidOperationException("PushGradients: every rank's batch is empty.");
        float weight = (float)(lookup.LocalBatch / (double)lookup.GlobalBatch);

        // Counts: per peer, per trainable table, the rows it owns; then one flag per table: touched here at all.
        Grow(ref _pushCounts, n * 2 * k);
        Grow(ref _pushReceived, n * 2 * k);
        Array.Clear(_pushCounts, 0, n * 2 * k);
        for (int i = 0; i < k; i++)
        {
            var (table, column) = tables[i];
            if (table.WorkingSet.SparseGrad is not { Count: > 0 } grad) continue;
            for (int s = 0; s < grad.Count; s++) _pushCounts[lookup.OwnerOfCompact(column, grad.Rows[s]) * 2 * k + i]++;
            for (int p = 0; p < n; p++) _pushCounts[p * 2 * k + k + i] = 1;
        }
        long w0 = Stopwatch.GetTimestamp();
        Group.AllToAll(_pushCounts.AsSpan(0, n * 2 * k), _pushReceived.AsSpan(0, n * 2 * k));
        long wait = Stopwatch.GetTimestamp() - w0;

        // Payload to peer p: for each table, its rows there as [local row (int), width floats].
        Grow(ref _pushSendBytes, n);
        Grow(ref _pushReceiveBytes, n);
        Grow(ref _pushOffsets, n * k);
        long sendTotal = 0, receiveTotal = 0;
        for (int p = 0; p < n; p++)
        {
            long s = 0, r = 0;
            for (int i = 0; i < k; i++)
            {
                long record = sizeof(int) + (long)tables[i].Table.Width * sizeof(float);
                _pushOffsets[p * k + i] = (int)(sendTotal + s);
                s += _pushCounts[p * 2 * k + i] * record;
                r += _pushReceived[p * 2 * k + i] * record;
            }
            _pushSendBytes[p] = checked((int)s);
            _pushReceiveBytes[p] = checked((int)r);
            sendTotal += s;
            receiveTotal += r;
        }
        Grow(ref _pushSend, checked((int)sendTotal));
        Grow(ref _pushReceive, checked((int)receiveTotal));
        for (int i = 0; i < k; i++)
        {
            var (table, column) = tables[i];
            if (table.WorkingSet.SparseGrad is not { Count: > 0 } grad) continue;
            int width = table.Width;
            for (int s = 0; s < grad.Count; s++)
            {
                int compact = grad.Rows[s];
                int owner = lookup.OwnerOfCompact(column, compact);
                ref int at = ref _pushOffsets[owner * k + i];
                MemoryMarshal.Write(_pushSend.AsSpan(at, sizeof(int)), RowShard.LocalOf(lookup.GlobalIdOfCompact(column, compact), n));
                TensorPrimitives.Multiply(grad.Row(s), weight, MemoryMarshal.Cast<byte, float>(_pushSend.AsSpan(at + sizeof(int), width * sizeof(float))));
                at += sizeof(int) + width * sizeof(float);
            }
        }
        var exchange = Group.StartAllToAllV(_pushSend.AsMemory(0, (int)sendTotal), _pushSendBytes.AsSpan(0, n),
            _pushReceive.AsMemory(0, (int)receiveTotal), _pushReceiveBytes.AsSpan(0, n), "alltoallv (embedding row gradients)");
        w0 = Stopwatch.GetTimestamp();
        Group.WaitExchange(exchange);
        wait += Stopwatch.GetTimestamp() - w0;

        // Owners add the contributions in rank order: the same sums, in the same order, on whichever rank owns a row.
        int offset = 0;
        for (int q = 0; q < n; q++)
            for (int i = 0; i < k; i++)
            {
                var table = tables[i].Table;
                int width = table.Width, rows = _pushReceived[q * 2 * k + i];
                var owned = table.Owned.SparseGradOrEmpty();
                if (_pushReceived[q * 2 * k + k + i] != 0) owned.TouchedElsewhere = true;
                for (int s = 0; s < rows; s++)
                {
                    int local = MemoryMarshal.Read<int>(_pushReceive.AsSpan(offset, sizeof(int)));
                    if ((uint)local >= (uint)table.Owned.Shape[0])
                        throw new InvalidOperationException($"PushGradients: rank {q} sent a gradient for local row {local} of '{table.Name}', which has {table.Owned.Shape[0]} rows here.");
                    var source = MemoryMarshal.Cast<byte, float>(_pushReceive.AsSpan(offset + sizeof(int), width * sizeof(float)));
                    var target = owned.RowAccumulator(local);
                    TensorPrimitives.Add(target, source, target);
                    offset += sizeof(int) + width * sizeof(float);
                }
            }
        foreach (var table in plan.Tables) table.WorkingSet.ZeroGrad();

        int me = Group.Rank;
        _countBytes += (long)(n - 1) * 2 * k * sizeof(int);
        _received += (long)(n - 1) * 2 * k * sizeof(int);
        _gradientBytes += sendTotal - _pushSendBytes[me];
        _received += receiveTotal - _pushReceiveBytes[me];
        _pushCount++;
        _waitTicks += wait;
        _ticks += Stopwatch.GetTimestamp() - t0;
    }

    internal static void Grow<T>(ref T[] buffer, int length)
    {
        int have = buffer?.Length ?? 0;
        if (have < length) buffer = new T[Math.Max(length, 2 * have)];
    }
}

/// <summary>
/// The tables one lookup serves, grouped by the batch column they read: each column's distinct ids are exchanged once
/// for all its tables. Every table on a column must have the same number of rows (the column's id space).
/// </summary>
public sealed class LookupPlan
{
    private IReadOnlySet<Tensor<float>>? _trainableSet;
    private (ShardedTable, int)[] _trainable = [];

    internal LookupPlan(RowSharding sharding, IEnumerable<ShardedTable> tables)
    {
        Sharding = sharding;
        Tables = tables.Distinct().OrderBy(t => t.Index).ToArray();
        foreach (var t in Tables)
            if (!ReferenceEquals(t.Sharding, sharding)) throw new ArgumentException($"LookupPlan: table '{t.Name}' belongs to another sharding.");
        Columns = Tables.Select(t => t.Column).Distinct().OrderBy(c => c.IsBag).ThenBy(c => c.Column).ToArray();
        ColumnTables = new int[Columns.Length][];
        Cardinality = new int[Columns.Length];
        RowFloats = new int[Columns.Length];
        TableColumnIndex = new int[Tables.Length];
        for (int c = 0; c < Columns.Length; c++)
        {
            var on = Enumerable.Range(0, Tables.Length).Where(i => Tables[i].Column == Columns[c]).ToArray();
            ColumnTables[c] = on;
            Cardinality[c] = Tables[on[0]].GlobalRows;
            foreach (int i in on)
            {
                if (Tables[i].GlobalRows != Cardinality[c])
                    throw new ArgumentException($"LookupPlan: tables '{Tables[on[0]].Name}' ({Cardinality[c]} rows) and '{Tables[i].Name}' ({Tables[i].GlobalRows} rows) both read {Columns[c]}; tables sharing a column must share its id space.");
                RowFloats[c] += Tables[i].Width;
                TableColumnIndex[i] = c;
            }
        }
    }

    /// <summary>The sharding whose tables the plan serves.</summary>
    public RowSharding Sharding { get; }
    /// <summary>The plan's tables, in creation order.</summary>
    public IReadOnlyList<ShardedTable> TableList => Tables;
    internal ShardedTable[] Tables { get; }
    internal TableColumn[] Columns { get; }
    /// <summary>Per column, the indices (into <see cref="Tables"/>) of the tables reading it, in table order.</summary>
    internal int[][] ColumnTables { get; }
    internal int[] Cardinality { get; }
    /// <summary>Per column, the floats of one id's row summed over its tables (what an owner returns per id).</summary>
    internal int[] RowFloats { get; }
    internal int[] TableColumnIndex { get; }

    /// <summary>
    /// The plan's tables whose owned tensor is in <paramref name="trainable"/>, with their column index; cached for the
    /// last set (a trainer passes the same one every step; a dictionary lookup keyed by the set allocated per call).
    /// </summary>
    internal (ShardedTable Table, int Column)[] Trainable(IReadOnlySet<Tensor<float>> trainable)
    {
        if (!ReferenceEquals(trainable, _trainableSet))
        {
            _trainable = SelectTrainable(trainable);
            _trainableSet = trainable;
        }
        return _trainable;
    }

    // Apart from Trainable: a lambda capturing the parameter there would allocate its closure on every call, cached or not.
    private (ShardedTable Table, int Column)[] SelectTrainable(IReadOnlySet<Tensor<float>> trainable) =>
        Enumerable.Range(0, Tables.Length).Where(i => trainable.Contains(Tables[i].Owned)).Select(i => (Tables[i], TableColumnIndex[i])).ToArray();
}
