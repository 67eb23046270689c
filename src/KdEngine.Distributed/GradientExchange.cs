using System.Diagnostics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using KdEngine.Nn;
using static KdEngine.Distributed.Native.MpiNative;

namespace KdEngine.Distributed;

/// <summary>Cumulative traffic and time of the gradient exchange on this rank.</summary>
/// <param name="Steps">Calls of <see cref="MpiProcessGroup.AverageGradients"/>.</param>
/// <param name="DenseBytes">Bytes of dense gradient this rank put into allreduces (its payload; a ring allreduce moves about 2(N−1)/N times that over the wire per rank).</param>
/// <param name="SparseBytesSent">Bytes of touched-row ids and values this rank contributed to the allgathers.</param>
/// <param name="SparseBytesReceived">Bytes of touched-row ids and values this rank received from the others.</param>
/// <param name="Seconds">Wall time inside the exchange (packing, communication, merging).</param>
/// <param name="WaitSeconds">Of that, time spent waiting for communication to complete.</param>
public sealed record CommunicationStats(long Steps, long DenseBytes, long SparseBytesSent, long SparseBytesReceived, double Seconds, double WaitSeconds)
{
    /// <summary><paramref name="total"/> per exchange step (0 before the first step), e.g. <c>PerStep(DenseBytes)</c>.</summary>
    public double PerStep(double total) => Steps == 0 ? 0 : total / Steps;
}

/// <summary>
/// One data-parallel gradient exchange per step: dense gradients are allreduced, embedding tables exchange only their
/// touched rows. All ranks end with bit-identical gradients equal to Σ_r w_r·g_r, w_r = B_r / ΣB.
/// </summary>
/// <remarks>
/// <para>Per step:</para>
/// <list type="number">
/// <item>A small allgather of a header per rank: its batch size B_r, the touched-row count of each table, and which
/// dense parameters received a gradient (one rank's batch may reach a parameter another's does not; it then joins
/// with zeros, so every rank's optimizer updates the same parameters).</item>
/// <item>Dense: gradients are scaled by w_r and packed into one buffer; each bucket of <see cref="BucketElements"/>
/// floats is handed to MPI_Iallreduce (in place) as soon as it is packed, so the first buckets travel while the rest
/// are packed and while the sparse rows are packed and exchanged.</item>
/// <item>Sparse: each table's touched row ids and w_r-scaled rows go to two MPI_Iallgatherv (ids, values); every rank
/// then rebuilds each table's gradient by adding rank 0's rows, then rank 1's, … — the same additions in the same
/// order on every rank, hence bit-identical merged gradients.</item>
/// </list>
/// <para>Why allgather of touched rows rather than sharding the tables (alltoall, model parallel): every rank keeps a
/// full replica of each table, so the forward needs no id exchange and the optimizer state stays local; the traffic
/// is O(N · touched rows · D) received per rank, which is small next to the dense part for the batch sizes and rank
/// counts a CTR model trains at (docs/distributed.md models 8–512 ranks and says where sharding wins: tables that do
/// not fit one machine, or so many ranks that the union of touched rows approaches the table).</para>
/// <para>Overlap with the backward pass itself is not done: the tape produces the dense gradients only at the end of
/// its walk for the first layers, and Open MPI has no progress thread by default (a non-blocking collective only
/// advances inside MPI calls), so a bucket started mid-backward would wait for the next MPI call anyway. See
/// docs/distributed.md for the measured split of a step.</para>
/// </remarks>
internal sealed unsafe class GradientExchange(MpiProcessGroup group)
{
    private float* _dense;
    private long _denseCapacity;
    private int* _ids;
    private long _idsCapacity;
    private float* _values;
    private long _valuesCapacity;
    private int* _receivedIds;
    private long _receivedIdsCapacity;
    private float* _receivedValues;
    private long _receivedValuesCapacity;
    private nint[] _requests = new nint[16];
    private long _steps, _denseBytes, _sparseSent, _sparseReceived;
    private long _ticks, _waitTicks;

    public int BucketElements { get; set; } = 1 << 20;

    public CommunicationStats Stats => new(_steps, _denseBytes, _sparseSent, _sparseReceived,
        _ticks / (double)Stopwatch.Frequency, _waitTicks / (double)Stopwatch.Frequency);

    public void Reset() => _steps = _denseBytes = _sparseSent = _sparseReceived = _ticks = _waitTicks = 0;

    public void Average(IReadOnlyList<NamedParameter> parameters, int localBatchSize)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (localBatchSize < 0) throw new ArgumentOutOfRangeException(nameof(localBatchSize), localBatchSize, "the local batch size must be ≥ 0.");
        long begin = Stopwatch.GetTimestamp();
        var abi = group.Abi;
        int size = group.Size, rank = group.Rank;
        var tables = new List<int>();
        var dense = new List<int>();
        for (int i = 0; i < parameters.Count; i++) (parameters[i].Tensor.HasSparseGradient ? tables : dense).Add(i);

        // 1. Header: [B_r, touched rows per table…, has-gradient flag per dense parameter…].
        int headerLength = 1 + tables.Count + dense.Count;
        var header = new int[headerLength];
        header[0] = localBatchSize;
        for (int t = 0; t < tables.Count; t++) header[1 + t] = parameters[tables[t]].Tensor.SparseGrad?.Count ?? 0;
        for (int d = 0; d < dense.Count; d++) header[1 + tables.Count + d] = parameters[dense[d]].Tensor.Grad is null ? 0 : 1;
        var headers = new int[size * headerLength];
        fixed (int* send = header)
        fixed (int* receive = headers)
        {
            nint request;
            group.Start("allgather (gradient header)");
            MpiProcessGroup.Check(MPI_Iallgather(send, headerLength, abi.Int, receive, headerLength, abi.Int, group.Comm, &request), "MPI_Iallgather");
            Wait(&request, 1);
        }
        long globalBatch = 0;
        for (int r = 0; r < size; r++) globalBatch += headers[r * headerLength];
        if (globalBatch == 0) throw new InvalidOperationException("AverageGradients: every rank's batch is empty.");
        float weight = (float)(localBatchSize / (double)globalBatch);

        // 2. Dense: scale, pack, start one in-place allreduce per bucket as soon as it is packed.
        var active = new List<int>();
        long denseLength = 0;
        for (int d = 0; d < dense.Count; d++)
        {
            bool anyone = false;
            for (int r = 0; r < size; r++) anyone |= headers[r * headerLength + 1 + tables.Count + d] != 0;
            if (!anyone) continue;
            active.Add(dense[d]);
            denseLength += parameters[dense[d]].Tensor.Length;
        }
        Ensure(ref _dense, ref _denseCapacity, denseLength);
        int requests = 0;
        long packed = 0, sent = 0;
        foreach (int i in active)
        {
            var g = parameters[i].Tensor.GradOrZeros();
            var span = new Span<float>(_dense + packed, g.Length);
            g.Backend.Download(g.Storage, span);
            TensorPrimitives.Multiply(span, weight, span);
            packed += g.Length;
            while (packed - sent >= BucketElements) sent = StartBucket(sent, BucketElements, ref requests);
        }
        if (packed > sent) sent = StartBucket(sent, packed - sent, ref requests);
        _denseBytes += packed * sizeof(float);

        // 3. Sparse: touched ids and scaled rows of every table, one allgatherv each for ids and values.
        long localRows = 0, localValues = 0, totalRows = 0, totalValues = 0;
        var rowCounts = new int[size];
        var valueCounts = new int[size];
        for (int t = 0; t < tables.Count; t++)
        {
            int width = parameters[tables[t]].Tensor.Shape[1];
            for (int r = 0; r < size; r++)
            {
                long rows = headers[r * headerLength + 1 + t];
                rowCounts[r] = checked(rowCounts[r] + (int)rows);
                valueCounts[r] = checked(valueCounts[r] + (int)(rows * width));
            }
        }
        localRows = rowCounts[rank];
        localValues = valueCounts[rank];
        foreach (var c in rowCounts) totalRows += c;
        foreach (var c in valueCounts) totalValues += c;
        if (totalRows > 0)
        {
            Ensure(ref _ids, ref _idsCapacity, localRows);
            Ensure(ref _values, ref _valuesCapacity, localValues);
            Ensure(ref _receivedIds, ref _receivedIdsCapacity, totalRows);
            Ensure(ref _receivedValues, ref _receivedValuesCapacity, totalValues);
            long rowAt = 0, valueAt = 0;
            foreach (int i in tables)
            {
                if (parameters[i].Tensor.SparseGrad is not { Count: > 0 } grad) continue;
                int width = grad.Width;
                var rows = grad.Rows;
                for (int k = 0; k < grad.Count; k++)
                {
                    _ids[rowAt++] = rows[k];
                    TensorPrimitives.Multiply(grad.Row(k), weight, new Span<float>(_values + valueAt, width));
                    valueAt += width;
                }
            }
            var rowDisplacements = Displacements(rowCounts);
            var valueDisplacements = Displacements(valueCounts);
            GrowRequests(requests + 2);
            fixed (nint* pr = _requests)
            fixed (int* rc = rowCounts)
            fixed (int* rd = rowDisplacements)
            fixed (int* vc = valueCounts)
            fixed (int* vd = valueDisplacements)
            {
                group.Start("allgatherv (sparse row ids)");
                MpiProcessGroup.Check(MPI_Iallgatherv(_ids, (int)localRows, abi.Int, _receivedIds, rc, rd, abi.Int, group.Comm, &pr[requests++]), "MPI_Iallgatherv");
                group.Start("allgatherv (sparse row values)");
                MpiProcessGroup.Check(MPI_Iallgatherv(_values, (int)localValues, abi.Float, _receivedValues, vc, vd, abi.Float, group.Comm, &pr[requests++]), "MPI_Iallgatherv");
                Wait(pr, requests);
            }
            _sparseSent += localRows * sizeof(int) + localValues * sizeof(float);
            _sparseReceived += (totalRows - localRows) * sizeof(int) + (totalValues - localValues) * sizeof(float);
            Merge(parameters, tables, headers, headerLength, rowDisplacements, valueDisplacements);
        }
        else
        {
            fixed (nint* pr = _requests) Wait(pr, requests);
        }

        // 4. Dense back into the gradients.
        long offset = 0;
        foreach (int i in active)
        {
            var g = parameters[i].Tensor.Grad!;
            g.Backend.Upload(new ReadOnlySpan<float>(_dense + offset, g.Length), g.Storage);
            offset += g.Length;
        }
        _steps++;
        _ticks += Stopwatch.GetTimestamp() - begin;
    }

    /// <summary>Rebuilds each table's gradient from every rank's rows, rank 0 first: the same sums on every rank.</summary>
    private void Merge(IReadOnlyList<NamedParameter> parameters, List<int> tables, int[] headers, int headerLength, int[] rowDisplacements, int[] valueDisplacements)
    {
        int size = group.Size;
        var rowAt = (int[])rowDisplacements.Clone();
        var valueAt = (int[])valueDisplacements.Clone();
        for (int t = 0; t < tables.Count; t++)
        {
            var table = parameters[tables[t]].Tensor;
            var grad = table.SparseGradOrEmpty();
            grad.Clear();
            int width = grad.Width;
            for (int r = 0; r < size; r++)
            {
                int rows = headers[r * headerLength + 1 + t];
                for (int k = 0; k < rows; k++)
                {
                    var source = new ReadOnlySpan<float>(_receivedValues + valueAt[r], width);
                    var target = grad.RowAccumulator(_receivedIds[rowAt[r]]);
                    TensorPrimitives.Add(target, source, target);
                    rowAt[r]++;
                    valueAt[r] += width;
                }
            }
        }
    }

    private long StartBucket(long start, long count, ref int requests)
    {
        GrowRequests(requests + 1);
        fixed (nint* pr = _requests)
        {
            group.Start("allreduce (dense gradient bucket)");
            MpiProcessGroup.Check(MPI_Iallreduce((void*)group.Abi.InPlace, _dense + start, (int)count, group.Abi.Float, group.Abi.OpSum, group.Comm, &pr[requests++]), "MPI_Iallreduce");
        }
        return start + count;
    }

    private void Wait(nint* requests, int count)
    {
        long t0 = Stopwatch.GetTimestamp();
        group.WaitAll(requests, count);
        _waitTicks += Stopwatch.GetTimestamp() - t0;
    }

    private void GrowRequests(int needed)
    {
        if (_requests.Length < needed) Array.Resize(ref _requests, Math.Max(needed, 2 * _requests.Length));
    }

    private static int[] Displacements(int[] counts)
    {
        var d = new int[counts.Length];
        for (int r = 1; r < counts.Length; r++) d[r] = checked(d[r - 1] + counts[r - 1]);
        return d;
    }

    private static void Ensure<T>(ref T* buffer, ref long capacity, long needed) where T : unmanaged
    {
        if (needed <= capacity) return;
        long grown = Math.Max(needed, 2 * capacity);
        NativeMemory.Free(buffer);
        buffer = (T*)NativeMemory.Alloc((nuint)grown, (nuint)sizeof(T));
        capacity = grown;
    }
}
