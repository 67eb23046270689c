using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using KdEngine.Distributed.Native;
using KdEngine.Nn;
using KdEngine.Training;
using static KdEngine.Distributed.Native.MpiNative;

namespace KdEngine.Distributed;

/// <summary>A collective did not complete in time; the message names the ranks that did not answer a heartbeat.</summary>
public sealed class DistributedTimeoutException(string message) : Exception(message);

/// <summary>
/// <see cref="IProcessGroup"/> over MPI_COMM_WORLD of Open MPI (one process per rank, started by <c>mpirun</c>).
/// </summary>
/// <remarks>
/// <para>Every collective is started non-blocking (MPI_Iallreduce, MPI_Iallgather(v), MPI_Ibcast) and completed by
/// polling MPI_Test against a deadline (<see cref="Timeout"/>). While it polls, a rank answers heartbeat pings
/// (point-to-point, tags 0x4B44/0x4B45) with the number of the collective it is waiting in. When the deadline passes,
/// the rank pings every other rank, waits a short grace period, and throws <see cref="DistributedTimeoutException"/>
/// naming the ranks that did not answer (dead, or hung outside MPI) — the caller then ends the job with
/// <see cref="Abort"/>. (A rank that exits is usually noticed by mpirun first, which then ends the job itself.)</para>
/// <para>MPI is called from the thread that created the group only (MPI_THREAD_FUNNELED).</para>
/// </remarks>
public sealed unsafe class MpiProcessGroup : IProcessGroup, IDisposable
{
    private const int PingTag = 0x4B44, PongTag = 0x4B45;
    private const int MaxCount = 1 << 30; // MPI counts are int: larger buffers go in chunks

    private readonly MpiAbi _abi;
    private readonly nint _comm;
    private readonly long* _pong; // [Size] what this rank last answered each peer (Isend buffers must outlive the call)
    private readonly GradientExchange _gradients;
    private long _sequence;
    private string _current = "";
    private bool _disposed;

    private MpiProcessGroup(MpiAbi abi, TimeSpan timeout)
    {
        _abi = abi;
        _comm = abi.CommWorld;
        int rank, size;
        Check(MPI_Comm_rank(_comm, &rank), "MPI_Comm_rank");
        Check(MPI_Comm_size(_comm, &size), "MPI_Comm_size");
        Rank = rank;
        Size = size;
        Timeout = timeout;
        _pong = (long*)NativeMemory.AllocZeroed((nuint)size, sizeof(long));
        _gradients = new GradientExchange(this);
    }

    /// <summary>
    /// Loads libmpi (first use only), initialises MPI (MPI_THREAD_FUNNELED) unless already done, and returns the
    /// world group. <paramref name="timeout"/>: how long any collective may wait for the slowest rank.
    /// </summary>
    public static MpiProcessGroup Initialize(TimeSpan timeout)
    {
        if (!(timeout > TimeSpan.Zero)) throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "the collective timeout must be positive.");
        var abi = MpiLibrary.Load();
        int initialized, finalized;
        Check(MPI_Initialized(&initialized), "MPI_Initialized");
        Check(MPI_Finalized(&finalized), "MPI_Finalized");
        if (finalized != 0) throw new InvalidOperationException("MPI was already finalized in this process; it cannot be initialised again.");
        if (initialized == 0)
        {
            int provided;
            Check(MPI_Init_thread(null, null, ThreadFunneled, &provided), "MPI_Init_thread");
        }
        return new MpiProcessGroup(abi, timeout);
    }

    /// <inheritdoc/>
    public int Rank { get; }
    /// <inheritdoc/>
    public int Size { get; }

    /// <summary>How long a collective may wait for the slowest rank before the job is declared stuck.</summary>
    public TimeSpan Timeout { get; set; }

    /// <summary>Dense allreduce bucket size in floats (default 1 Mi = 4 MiB); see <see cref="GradientExchange"/>.</summary>
    public int BucketElements
    {
        get => _gradients.BucketElements;
        set => _gradients.BucketElements = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "BucketElements must be ≥ 1.");
    }

    /// <summary>What the gradient exchange sent, received and waited since the last <see cref="GradientExchange.Reset"/>.</summary>
    public CommunicationStats Stats => _gradients.Stats;

    /// <summary>Zeroes the communication counters of <see cref="Stats"/>.</summary>
    public void ResetStats() => _gradients.Reset();

    /// <summary>The library's own version string (MPI_Get_library_version), e.g. "Open MPI v4.1.4, …".</summary>
    public string LibraryVersion
    {
        get
        {
            var buffer = stackalloc byte[8192]; // ≥ MPI_MAX_LIBRARY_VERSION_STRING (256 in Open MPI, 8192 in MPICH)
            int length;
            Check(MPI_Get_library_version(buffer, &length), "MPI_Get_library_version");
            return Encoding.UTF8.GetString(buffer, length).TrimEnd('\0', '\n', ' ');
        }
    }

    /// <summary>Which MPI implementation's ABI the handles were resolved for (Open MPI).</summary>
    public string Implementation => _abi.Implementation;

    // ---------------------------------------------------------------- collectives

    /// <inheritdoc/>
    public void BroadcastParameters(IReadOnlyList<NamedParameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        float[] buffer = [];
        foreach (var p in parameters)
        {
            var t = p.Tensor;
            if (buffer.Length < t.Length) buffer = new float[t.Length];
            var span = buffer.AsSpan(0, t.Length);
            if (Rank == 0) t.Backend.Download(t.Storage, span);
            fixed (float* data = span) BroadcastRaw(data, t.Length, _abi.Float, sizeof(float), $"broadcast of parameter '{p.Name}'");
            if (Rank != 0) t.Backend.Upload(span, t.Storage);
        }
    }

    /// <inheritdoc/>
    public void AverageGradients(IReadOnlyList<NamedParameter> parameters, int localBatchSize) =>
        _gradients.Average(parameters, localBatchSize);

    /// <inheritdoc/>
    public void AllReduceSum(Span<double> values)
    {
        if (values.IsEmpty) return;
        fixed (double* p = values)
        {
            nint request;
            Start("allreduce (sum)");
            Check(MPI_Iallreduce((void*)_abi.InPlace, p, values.Length, _abi.Double, _abi.OpSum, _comm, &request), "MPI_Iallreduce");
            WaitAll(&request, 1);
        }
    }

    /// <inheritdoc/>
    public long AllReduceMin(long value)
    {
        nint request;
        Start("allreduce (min)");
        Check(MPI_Iallreduce((void*)_abi.InPlace, &value, 1, _abi.LongLong, _abi.OpMin, _comm, &request), "MPI_Iallreduce");
        WaitAll(&request, 1);
        return value;
    }

    /// <inheritdoc/>
    public float[] AllGatherInterleaved(ReadOnlySpan<float> local)
    {
        var counts = AllGatherCounts(local.Length, "allgather (counts)");
        long total = 0;
        foreach (int c in counts) total += c;
        for (int r = 0; r < Size; r++)
            if (counts[r] != Shard.Count((int)total, r, Size))
                throw new InvalidOperationException($"AllGatherInterleaved: rank {r} holds {counts[r]} of {total} rows, not its round-robin share {Shard.Count((int)total, r, Size)}; the ranks' shards do not come from one split.");
        var gathered = new float[total];
        var displacements = new int[Size];
        for (int r = 1; r < Size; r++) displacements[r] = displacements[r - 1] + counts[r - 1];
        fixed (float* send = local)
        fixed (float* receive = gathered)
        fixed (int* pc = counts)
        fixed (int* pd = displacements)
        {
            nint request;
            Start("allgatherv (scores)");
            Check(MPI_Iallgatherv(send, local.Length, _abi.Float, receive, pc, pd, _abi.Float, _comm, &request), "MPI_Iallgatherv");
            WaitAll(&request, 1);
        }
        var result = new float[total];
        for (int r = 0; r < Size; r++)
            for (int j = 0; j < counts[r]; j++) result[j * Size + r] = gathered[displacements[r] + j];
        return result;
    }

    /// <inheritdoc/>
    public string BroadcastText(string? text)
    {
        if (Rank == 0 && text is null) throw new ArgumentNullException(nameof(text), "BroadcastText: rank 0 must give the text.");
        byte[] bytes = Rank == 0 ? Encoding.UTF8.GetBytes(text!) : [];
        long length = bytes.Length;
        BroadcastRaw(&length, 1, _abi.LongLong, sizeof(long), "broadcast (text length)");
        if (Rank != 0) bytes = new byte[length];
        fixed (byte* p = bytes) BroadcastRaw(p, length, _abi.Byte, 1, "broadcast (text)");
        return Encoding.UTF8.GetString(bytes);
    }

    /// <summary>Every rank's <paramref name="value"/>, in rank order.</summary>
    public int[] AllGatherCounts(int value, string what)
    {
        var all = new int[Size];
        fixed (int* p = all)
        {
            nint request;
            Start(what);
            Check(MPI_Iallgather(&value, 1, _abi.Int, p, 1, _abi.Int, _comm, &request), "MPI_Iallgather");
            WaitAll(&request, 1);
        }
        return all;
    }

    private void BroadcastRaw(void* data, long count, nint type, int elementBytes, string what)
    {
        long at = 0;
        do
        {
            int n = (int)Math.Min(MaxCount, count - at);
            nint request;
            Start(what);
            Check(MPI_Ibcast((byte*)data + at * elementBytes, n, type, 0, _comm, &request), "MPI_Ibcast");
            WaitAll(&request, 1);
            at += n;
        } while (at < count);
    }

    /// <summary>Ends every process of the job (MPI_Abort); for a rank that cannot go on (e.g. after a timeout).</summary>
    public void Abort(int errorCode)
    {
        Console.Out.Flush();
        Console.Error.Flush();
        MPI_Abort(_comm, errorCode);
    }

    /// <summary>Finalises MPI (once per process; later collectives are invalid).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        int finalized;
        if (MPI_Finalized(&finalized) == 0 && finalized == 0) MPI_Finalize();
    }

    // ---------------------------------------------------------------- waiting, heartbeats

    internal MpiAbi Abi => _abi;
    internal nint Comm => _comm;

    /// <summary>Numbers the next collective (for heartbeats and timeout messages).</summary>
    internal void Start(string what)
    {
        if (_disposed) throw new ObjectDisposedException(nameof(MpiProcessGroup), "MPI was finalized.");
        _sequence++;
        _current = what;
    }

    /// <summary>
    /// Completes <paramref name="count"/> requests by polling MPI_Test (spinning briefly, then yielding, then sleeping
    /// 1 ms between polls), answering heartbeats meanwhile; throws <see cref="DistributedTimeoutException"/> after
    /// <see cref="Timeout"/>.
    /// </summary>
    internal void WaitAll(nint* requests, int count)
    {
        long start = Stopwatch.GetTimestamp();
        long deadline = start + (long)(Timeout.TotalSeconds * Stopwatch.Frequency);
        var status = stackalloc byte[MpiAbi.StatusCapacity];
        for (int i = 0; i < count; i++)
        {
            for (int polls = 0; ; polls++)
            {
                int flag;
                Check(MPI_Test(&requests[i], &flag, status), "MPI_Test");
                if (flag != 0) break;
                if ((polls & 63) == 63)
                {
                    ServicePings();
                    long now = Stopwatch.GetTimestamp();
                    if (now > deadline) throw TimedOut(Stopwatch.GetElapsedTime(start, now).TotalSeconds);
                }
                if (polls < 256) Thread.SpinWait(20);
                else if (polls < 4096) Thread.Yield();
                else Thread.Sleep(1);
            }
        }
    }

    /// <summary>Answers every pending heartbeat ping with the number of the collective this rank is in.</summary>
    private void ServicePings()
    {
        var status = stackalloc byte[MpiAbi.StatusCapacity];
        while (true)
        {
            int flag;
            Check(MPI_Iprobe(_abi.AnySource, PingTag, _comm, &flag, status), "MPI_Iprobe");
            if (flag == 0) return;
            int source = *(int*)(status + _abi.StatusSourceOffset);
            long theirs;
            Check(MPI_Recv(&theirs, 1, _abi.LongLong, source, PingTag, _comm, status), "MPI_Recv");
            _pong[source] = _sequence;
            nint request;
            Check(MPI_Isend(&_pong[source], 1, _abi.LongLong, source, PongTag, _comm, &request), "MPI_Isend");
            Check(MPI_Request_free(&request), "MPI_Request_free"); // a one-long eager send: completes on its own
        }
    }

    /// <summary>Pings every other rank, waits a grace period for answers, and describes who did not answer.</summary>
    private DistributedTimeoutException TimedOut(double waited)
    {
        // Buffers of requests that may never complete are left allocated: the job is about to be aborted.
        var answers = (long*)NativeMemory.AllocZeroed((nuint)Size, sizeof(long));
        var mine = (long*)NativeMemory.Alloc(sizeof(long));
        *mine = _sequence;
        var receives = (nint*)NativeMemory.AllocZeroed((nuint)Size, (nuint)sizeof(nint));
        var answered = new bool[Size];
        answered[Rank] = true;
        for (int r = 0; r < Size; r++)
        {
            if (r == Rank) continue;
            nint send;
            Check(MPI_Irecv(&answers[r], 1, _abi.LongLong, r, PongTag, _comm, &receives[r]), "MPI_Irecv");
            Check(MPI_Isend(mine, 1, _abi.LongLong, r, PingTag, _comm, &send), "MPI_Isend");
            Check(MPI_Request_free(&send), "MPI_Request_free");
        }
        var grace = Stopwatch.StartNew();
        var limit = TimeSpan.FromSeconds(Math.Clamp(Timeout.TotalSeconds / 2, 1, 5));
        var status = stackalloc byte[MpiAbi.StatusCapacity];
        while (grace.Elapsed < limit && answered.Contains(false))
        {
            for (int r = 0; r < Size; r++)
            {
                if (answered[r]) continue;
                int flag;
                Check(MPI_Test(&receives[r], &flag, status), "MPI_Test");
                answered[r] = flag != 0;
            }
            ServicePings();
            Thread.Sleep(1);
        }
        var silent = Enumerable.Range(0, Size).Where(r => !answered[r]).ToArray();
        foreach (int r in silent)
        {
            MPI_Cancel(&receives[r]);
            MPI_Request_free(&receives[r]);
        }
        var alive = Enumerable.Range(0, Size).Where(r => r != Rank && answered[r]).Select(r => $"{r} (in collective #{answers[r]})").ToArray();
        string message = $"distributed training timed out: rank {Rank} waited {waited:F1} s (limit {Timeout.TotalSeconds:G} s) in collective #{_sequence} ({_current}); ";
        message += silent.Length > 0
            ? $"rank{(silent.Length > 1 ? "s" : "")} {string.Join(", ", silent)} did not answer a heartbeat within {limit.TotalSeconds:G} s (dead, or hung outside MPI)"
            : "every rank answered a heartbeat, so the ranks are alive but called different collectives";
        if (alive.Length > 0) message += $"; alive: rank{(alive.Length > 1 ? "s" : "")} {string.Join(", ", alive)}";
        return new DistributedTimeoutException(message + ".");
    }

    internal static void Check(int code, string function)
    {
        if (code != 0) throw new InvalidOperationException($"{function} failed with MPI error code {code}.");
    }
}
