using System.Diagnostics;
using System.Runtime.InteropServices;
using KdEngine.Nn;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Sharding;

/// <summary>
/// One batch's fetch of rows from their owners (see <see cref="RowSharding"/>): begun by
/// <see cref="RowSharding.BeginLookup"/>, completed by <see cref="RowSharding.CompleteLookup"/>. Pooled and reused;
/// its buffers grow only when a batch needs more than any before.
/// </summary>
/// <remarks>
/// The batch's distinct ids of each column get "compact" indices grouped by owner: ids owned by rank 0 first, then
/// rank 1's, … (first-occurrence order within an owner). Compact index k is row k of every working set on the
/// column, so the rows an owner returns land in one contiguous block, and a gradient row k goes back to
/// the owner whose block holds k.
/// </remarks>
public sealed class RowLookup
{
    internal enum State { Idle, Begun, Completed }

    private readonly int _size;
    private readonly RowSharding _sharding;
    private Dictionary<int, int>[] _slotOf = [];
    private int[][] _firstSeen = [], _compactIds = [], _compactOwner = [], _slotToCompact = [];
    private int[] _unique = [], _ownerStart = [], _occurrenceSlot = [], _next = [];
    private int[] _ids = [];
    private int[][] _bagIds = [];
    private BagColumn[] _bags = [];
    private int[] _sendCounts = [], _receivedCounts = [];
    private byte[] _idSend = [], _idReceive = [], _rowSend = [], _rowReceive = [];
    private readonly int[] _idSendBytes, _idReceiveBytes, _rowSendBytes, _rowReceiveBytes;
    private int[] _uploadRows = [];
    private PendingExchange _idExchange, _rowExchange;

    internal RowLookup(RowSharding sharding)
    {
        _sharding = sharding;
        _size = sharding.Group.Size;
        _idSendBytes = new int[_size];
        _idReceiveBytes = new int[_size];
        _rowSendBytes = new int[_size];
        _rowReceiveBytes = new int[_size];
    }

    internal RowSharding Sharding => _sharding;
    internal State Phase { get; set; }
    internal LookupPlan? Plan { get; private set; }

    /// <summary>The batch to run the model on: the looked-up batch with its ids remapped to working-set rows.</summary>
    public CtrBatch Batch { get; private set; }

    /// <summary>This rank's batch size.</summary>
    public int LocalBatch { get; private set; }

    /// <summary>The batch sizes of all ranks summed (known once the counts are exchanged).</summary>
    public long GlobalBatch { get; private set; }

    internal Span<int> SendCounts => _sendCounts.AsSpan(0, _size * (1 + Plan!.Columns.Length));
    internal Span<int> ReceivedCounts => _receivedCounts.AsSpan(0, _size * (1 + Plan!.Columns.Length));
    internal long CountBytesToOthers => (long)(_size - 1) * (1 + Plan!.Columns.Length) * sizeof(int);
    internal long IdBytesToOthers => Others(_idSendBytes);
    internal long IdBytesFromOthers => Others(_idReceiveBytes);
    internal long RowBytesToOthers => Others(_rowSendBytes);
    internal long RowBytesFromOthers => Others(_rowReceiveBytes);

    private long Others(int[] bytes)
    {
        long total = 0;
        for (int r = 0; r < _size; r++) if (r != _sharding.Group.Rank) total += bytes[r];
        return total;
    }

    internal int OwnerOfCompact(int column, int compact) => _compactOwner[column][compact];
    internal int GlobalIdOfCompact(int column, int compact) => _compactIds[column][compact];

    /// <summary>True when <paramref name="batch"/> is this lookup's remapped batch (same memory, not a copy of other ids).</summary>
    internal bool Matches(in CtrBatch batch) =>
        batch.Size == Batch.Size && batch.Ids.Equals(Batch.Ids) && ReferenceEquals(batch.Bags, Batch.Bags);

    /// <summary>Distinct ids per column, grouped by owner; the remapped batch; the counts to exchange.</summary>
    internal void Begin(in CtrBatch batch, LookupPlan plan)
    {
        Plan = plan;
        LocalBatch = batch.Size;
        int n = _size, columns = plan.Columns.Length, rows = batch.Size;
        EnsureColumns(columns);
        int bagCount = batch.Bags?.Count ?? 0;
        if (rows > 0)
        {
            if (batch.Ids.Length != rows * batch.Columns) batch.Validate();
            RowSharding.Grow(ref _ids, batch.Ids.Length);
            batch.Ids.Span.CopyTo(_ids);
            if (_bags.Length != bagCount) { _bags = new BagColumn[bagCount]; _bagIds = new int[bagCount][]; }
            for (int k = 0; k < bagCount; k++) _bags[k] = batch.Bags![k];
        }
        for (int c = 0; c < columns; c++)
        {
            var column = plan.Columns[c];
            int cardinality = plan.Cardinality[c];
            var slotOf = _slotOf[c];
            slotOf.Clear();
            int occurrences = 0, unique = 0;
            ReadOnlySpan<int> bagSource = default;
            if (rows > 0)
            {
                if (column.IsBag)
                {
                    if ((uint)column.Column >= (uint)bagCount)
                        throw new ArgumentException($"row-sharded table '{FirstTable(plan, c)}' reads {column}, which the batch does not have ({bagCount} bag columns).");
                    bagSource = batch.Bags![column.Column].Ids.Span;
                    occurrences = bagSource.Length;
                }
                else
                {
                    if ((uint)column.Column >= (uint)batch.Columns)
                        throw new ArgumentException($"row-sharded table '{FirstTable(plan, c)}' reads {column}, which the batch does not have ({batch.Columns} id columns).");
                    occurrences = rows;
                }
            }
            RowSharding.Grow(ref _occurrenceSlot, occurrences);
            RowSharding.Grow(ref _firstSeen[c], occurrences);
            var ids = batch.Ids.Span;
            for (int o = 0; o < occurrences; o++)
            {
                int id = column.IsBag ? bagSource[o] : ids[o * batch.Columns + column.Column];
                if ((uint)id >= (uint)cardinality)
                    throw new ArgumentOutOfRangeException(nameof(batch),
                        $"row-sharded table '{FirstTable(plan, c)}' ({column}): id {id} at {(column.IsBag ? $"bag position {o}" : $"sample {o}")} is out of range (valid ids are 0..{cardinality - 1}).");
                if (!slotOf.TryGetValue(id, out int slot))
                {
                    slot = unique++;
                    slotOf.Add(id, slot);
                    _firstSeen[c][slot] = id;
                }
                _occurrenceSlot[o] = slot;
            }
            _unique[c] = unique;

            // Group by owner: ownerStart[p] = first compact index of rank p's ids.
            var start = _ownerStart.AsSpan(c * (n + 1), n + 1);
            start.Clear();
            for (int s = 0; s < unique; s++) start[RowShard.OwnerOf(_firstSeen[c][s], n) + 1]++;
            for (int p = 0; p < n; p++) start[p + 1] += start[p];
            RowSharding.Grow(ref _compactIds[c], unique);
            RowSharding.Grow(ref _compactOwner[c], unique);
            RowSharding.Grow(ref _slotToCompact[c], unique);
            start[..n].CopyTo(_next);
            for (int s = 0; s < unique; s++)
            {
                int id = _firstSeen[c][s], owner = RowShard.OwnerOf(id, n);
                int at = _next[owner]++;
                _compactIds[c][at] = id;
                _compactOwner[c][at] = owner;
                _slotToCompact[c][s] = at;
            }

            // Remap the batch's ids of this column to compact indices.
            if (column.IsBag)
            {
                RowSharding.Grow(ref _bagIds[column.Column], occurrences);
                for (int o = 0; o < occurrences; o++) _bagIds[column.Column][o] = _slotToCompact[c][_occurrenceSlot[o]];
                _bags[column.Column] = new BagColumn(_bags[column.Column].Offsets, _bagIds[column.Column].AsMemory(0, occurrences));
            }
            else
                for (int o = 0; o < occurrences; o++) _ids[o * batch.Columns + column.Column] = _slotToCompact[c][_occurrenceSlot[o]];
        }
        Batch = rows == 0 ? batch : batch with
        {
            Ids = _ids.AsMemory(0, batch.Ids.Length),
            Bags = bagCount > 0 ? _bags : batch.Bags,
        };

        // Counts for peer p: [this rank's batch size, ids of each column that p owns].
        int block = 1 + columns;
        RowSharding.Grow(ref _sendCounts, n * block);
        RowSharding.Grow(ref _receivedCounts, n * block);
        for (int p = 0; p < n; p++)
        {
            _sendCounts[p * block] = rows;
            for (int c = 0; c < columns; c++) _sendCounts[p * block + 1 + c] = _ownerStart[c * (n + 1) + p + 1] - _ownerStart[c * (n + 1) + p];
        }
    }

    /// <summary>Sends each owner the local rows of its ids (after the counts are exchanged).</summary>
    internal void StartIdExchange()
    {
        var plan = Plan!;
        int n = _size, columns = plan.Columns.Length, block = 1 + columns;
        long global = 0, sendTotal = 0, receiveTotal = 0;
        for (int p = 0; p < n; p++)
        {
            global += _receivedCounts[p * block];
            long send = 0, receive = 0;
            for (int c = 0; c < columns; c++)
            {
                send += _sendCounts[p * block + 1 + c];
                receive += _receivedCounts[p * block + 1 + c];
            }
            _idSendBytes[p] = checked((int)(send * sizeof(int)));
            _idReceiveBytes[p] = checked((int)(receive * sizeof(int)));
            sendTotal += _idSendBytes[p];
            receiveTotal += _idReceiveBytes[p];
        }
        GlobalBatch = global;
        RowSharding.Grow(ref _idSend, checked((int)sendTotal));
        RowSharding.Grow(ref _idReceive, checked((int)receiveTotal));
        var send32 = MemoryMarshal.Cast<byte, int>(_idSend.AsSpan(0, (int)sendTotal));
        int at = 0;
        for (int p = 0; p < n; p++)
            for (int c = 0; c < columns; c++)
            {
                int from = _ownerStart[c * (n + 1) + p], to = _ownerStart[c * (n + 1) + p + 1];
                for (int k = from; k < to; k++) send32[at++] = RowShard.LocalOf(_compactIds[c][k], n);
            }
        _idExchange = _sharding.Group.StartAllToAllV(_idSend.AsMemory(0, (int)sendTotal), _idSendBytes,
            _idReceive.AsMemory(0, (int)receiveTotal), _idReceiveBytes, "alltoallv (embedding ids)");
    }

    /// <summary>Waits for the requested ids; returns the ticks spent waiting.</summary>
    internal long WaitIds()
    {
        long t0 = Stopwatch.GetTimestamp();
        _sharding.Group.WaitExchange(_idExchange);
        return Stopwatch.GetTimestamp() - t0;
    }

    /// <summary>Gathers the rows other ranks asked this rank for (every table of each column) and starts sending them.</summary>
    internal void StartRowExchange()
    {
        var plan = Plan!;
        int n = _size, columns = plan.Columns.Length, block = 1 + columns;
        long sendTotal = 0, receiveTotal = 0;
        for (int p = 0; p < n; p++)
        {
            long send = 0, receive = 0;
            for (int c = 0; c < columns; c++)
            {
                send += (long)_receivedCounts[p * block + 1 + c] * plan.RowFloats[c];
                receive += (long)_sendCounts[p * block + 1 + c] * plan.RowFloats[c];
            }
            _rowSendBytes[p] = checked((int)(send * sizeof(float)));
            _rowReceiveBytes[p] = checked((int)(receive * sizeof(float)));
            sendTotal += _rowSendBytes[p];
            receiveTotal += _rowReceiveBytes[p];
        }
        RowSharding.Grow(ref _rowSend, checked((int)sendTotal));
        RowSharding.Grow(ref _rowReceive, checked((int)receiveTotal));
        var requested = MemoryMarshal.Cast<byte, int>(_idReceive.AsSpan());
        var reply = MemoryMarshal.Cast<byte, float>(_rowSend.AsSpan(0, (int)sendTotal));
        int idAt = 0, at = 0;
        for (int q = 0; q < n; q++)
            for (int c = 0; c < columns; c++)
            {
                int count = _receivedCounts[q * block + 1 + c];
                var localRows = requested.Slice(idAt, count);
                idAt += count;
                foreach (int t in plan.ColumnTables[c])
                {
                    var table = plan.Tables[t];
                    int width = table.Width, owned = table.Owned.Shape[0];
                    foreach (int local in localRows)
                        if ((uint)local >= (uint)owned)
                            throw new InvalidOperationException($"row lookup: rank {q} asked for local row {local} of '{table.Name}', which has {owned} rows here (the ranks disagree on the tables).");
                    // Rows whose optimizer defers updates (lazy weight decay, FTRL's per-step shrinkage) are brought up
                    // to date before they are served: the copy below bypasses the embedding ops' read hook.
                    table.Owned.DeferredRows?.Apply(localRows, 1, localRows.Length);
                    var values = table.Owned.AsSpan();
                    foreach (int local in localRows)
                    {
                        values.Slice(local * width, width).CopyTo(reply.Slice(at, width));
                        at += width;
                    }
                }
            }
        _rowExchange = _sharding.Group.StartAllToAllV(_rowSend.AsMemory(0, (int)sendTotal), _rowSendBytes,
            _rowReceive.AsMemory(0, (int)receiveTotal), _rowReceiveBytes, "alltoallv (embedding rows)");
    }

    /// <summary>Waits for the rows and writes them into the working sets; returns the ticks spent waiting.</summary>
    internal long WaitRowsAndFill()
    {
        long t0 = Stopwatch.GetTimestamp();
        _sharding.Group.WaitExchange(_rowExchange);
        long waited = Stopwatch.GetTimestamp() - t0;
        var plan = Plan!;
        int n = _size, columns = plan.Columns.Length, block = 1 + columns;
        for (int c = 0; c < columns; c++)
            foreach (int t in plan.ColumnTables[c]) plan.Tables[t].EnsureWorkingSet(Math.Max(_unique[c], 1));
        var rows = MemoryMarshal.Cast<byte, float>(_rowReceive.AsSpan());
        int at = 0;
        for (int p = 0; p < n; p++)
            for (int c = 0; c < columns; c++)
            {
                int count = _sendCounts[p * block + 1 + c], first = _ownerStart[c * (n + 1) + p];
                foreach (int t in plan.ColumnTables[c])
                {
                    var table = plan.Tables[t];
                    int width = table.Width;
                    var source = rows.Slice(at, count * width);
                    var ws = table.WorkingSet;
                    if (ws.Storage is CpuStorage<float>) source.CopyTo(ws.AsSpan().Slice(first * width, count * width));
                    else
                    {
                        RowSharding.Grow(ref _uploadRows, count);
                        for (int k = 0; k < count; k++) _uploadRows[k] = first + k;
                        ws.Backend.UploadRows(ws.Storage, width, _uploadRows.AsSpan(0, count), source);
                    }
                    at += count * width;
                }
            }
        foreach (var table in plan.Tables) table.FilledBy = this;
        Phase = State.Completed;
        return waited;
    }

    private void EnsureColumns(int columns)
    {
        if (_slotOf.Length >= columns && _ownerStart.Length >= columns * (_size + 1)) return;
        int old = _slotOf.Length;
        Array.Resize(ref _slotOf, columns);
        Array.Resize(ref _firstSeen, columns);
        Array.Resize(ref _compactIds, columns);
        Array.Resize(ref _compactOwner, columns);
        Array.Resize(ref _slotToCompact, columns);
        for (int c = old; c < columns; c++)
        {
            _slotOf[c] = new Dictionary<int, int>();
            _firstSeen[c] = [];
            _compactIds[c] = [];
            _compactOwner[c] = [];
            _slotToCompact[c] = [];
        }
        _unique = new int[columns];
        _ownerStart = new int[columns * (_size + 1)];
        _next = new int[_size];
    }

    private static string FirstTable(LookupPlan plan, int c) => plan.Tables[plan.ColumnTables[c][0]].Name;
}
