using KdEngine.Nn;

namespace KdEngine.Training;

/// <summary>
/// The processes that train one model together, data-parallel: each holds the same weights and its own shard of
/// the rows. This is the seam between the core and a transport (<c>KdEngine.Distributed</c> implements it over MPI);
/// the core never knows which. <see cref="SingleProcess"/> is the default: rank 0 of 1, every call a no-op or a copy.
/// </summary>
/// <remarks>
/// Every member is a collective: all ranks call it, in the same order, with the same arguments except the local
/// data. A <see cref="Trainer"/> given a group calls, per run, <see cref="BroadcastParameters"/> once before the first
/// step; per step, <see cref="AverageGradients"/> after backward and before the optimizer step; per validation,
/// <see cref="AllGatherInterleaved"/> (scores and labels) and <see cref="AllReduceSum"/> (losses).
/// </remarks>
public interface IProcessGroup
{
    /// <summary>This process's index, 0 ≤ Rank &lt; Size. Rank 0 prints progress and writes files.</summary>
    int Rank { get; }

    /// <summary>Number of processes.</summary>
    int Size { get; }

    /// <summary>Makes every rank's parameter values equal to rank 0's (identical initial weights).</summary>
    void BroadcastParameters(IReadOnlyList<NamedParameter> parameters);

    /// <summary>
    /// Replaces every rank's gradients (dense and row-sparse) by the example-weighted mean over all ranks,
    /// Σ_r (B_r / ΣB)·g_r, where B_r is <paramref name="localBatchSize"/> on rank r. Since each rank's loss is a mean
    /// over its B_r rows, the result is the gradient of the mean loss over the global batch of ΣB rows. Afterwards
    /// every rank holds bit-identical gradients, so identical optimizers keep identical weights.
    /// </summary>
    void AverageGradients(IReadOnlyList<NamedParameter> parameters, int localBatchSize);

    /// <summary>Element-wise sum over ranks, in place; every rank gets the same result.</summary>
    void AllReduceSum(Span<double> values);

    /// <summary>The smallest of every rank's <paramref name="value"/>.</summary>
    long AllReduceMin(long value);

    /// <summary>
    /// Undoes a round-robin shard (<see cref="Shard"/>): rank r's local element j is element j·Size + r of the result.
    /// Every rank gets the whole array, in the order one process holding every row would have.
    /// </summary>
    float[] AllGatherInterleaved(ReadOnlySpan<float> local);

    /// <summary>Rank 0's <paramref name="text"/> on every rank (other ranks' arguments are ignored and may be null).</summary>
    string BroadcastText(string? text);

    /// <summary>
    /// Personalised exchange of fixed-size int blocks: with k = send.Length / Size, block p of <paramref name="send"/>
    /// (k ints) goes to rank p, and block q of <paramref name="receive"/> is what rank q sent to this one.
    /// </summary>
    void AllToAll(ReadOnlySpan<int> send, Span<int> receive);

    /// <summary>
    /// Starts a personalised exchange of bytes (MPI_Alltoallv): the first <paramref name="sendCounts"/>[0] bytes of
    /// <paramref name="send"/> go to rank 0, the next <paramref name="sendCounts"/>[1] to rank 1, …; what rank q sends
    /// to this rank lands in <paramref name="receive"/> after the blocks of ranks 0..q−1, <paramref name="receiveCounts"/>[q]
    /// bytes. Counts must agree pairwise (usually exchanged first with <see cref="AllToAll"/>). Both memories must stay
    /// alive and untouched until <see cref="WaitExchange"/> returns; <paramref name="what"/> names the exchange in a
    /// timeout message. Computation may run meanwhile (e.g. the next batch's ids travel during this batch's step).
    /// </summary>
    PendingExchange StartAllToAllV(ReadOnlyMemory<byte> send, ReadOnlySpan<int> sendCounts, Memory<byte> receive, ReadOnlySpan<int> receiveCounts, string what);

    /// <summary>Completes an exchange begun by <see cref="StartAllToAllV"/> (with the group's deadline).</summary>
    void WaitExchange(PendingExchange exchange);

    /// <summary>
    /// Gathers bytes to rank 0: rank q sends <paramref name="counts"/>[q] bytes (its whole <paramref name="send"/>), and
    /// rank 0 receives every rank's bytes in rank order into <paramref name="receive"/> (other ranks pass an empty span).
    /// Every rank passes the same counts.
    /// </summary>
    void GatherToRoot(ReadOnlySpan<byte> send, Span<byte> receive, ReadOnlySpan<int> counts, string what);
}

/// <summary>An exchange started by <see cref="IProcessGroup.StartAllToAllV"/>, to complete with <see cref="IProcessGroup.WaitExchange"/>.</summary>
/// <param name="Slot">The group's in-flight slot (reused, so steady-state exchanges allocate nothing).</param>
/// <param name="Sequence">Which use of that slot (a stale or repeated wait is an error, not a silent no-op).</param>
public readonly record struct PendingExchange(int Slot, long Sequence);

/// <summary>One process training alone: rank 0 of 1.</summary>
public sealed class SingleProcess : IProcessGroup
{
    /// <summary>The one single-process group.</summary>
    public static readonly SingleProcess Instance = new();

    private SingleProcess() { }

    /// <inheritdoc/>
    public int Rank => 0;
    /// <inheritdoc/>
    public int Size => 1;
    /// <inheritdoc/>
    public void BroadcastParameters(IReadOnlyList<NamedParameter> parameters) { }
    /// <inheritdoc/>
    public void AverageGradients(IReadOnlyList<NamedParameter> parameters, int localBatchSize) { }
    /// <inheritdoc/>
    public void AllReduceSum(Span<double> values) { }
    /// <inheritdoc/>
    public long AllReduceMin(long value) => value;
    /// <inheritdoc/>
    public float[] AllGatherInterleaved(ReadOnlySpan<float> local) => local.ToArray();
    /// <inheritdoc/>
    public string BroadcastText(string? text) => text ?? throw new ArgumentNullException(nameof(text), "BroadcastText: rank 0 must give the text.");

    /// <inheritdoc/>
    public void AllToAll(ReadOnlySpan<int> send, Span<int> receive)
    {
        if (receive.Length != send.Length) throw new ArgumentException($"AllToAll: {send.Length} ints sent but room for {receive.Length} received.");
        send.CopyTo(receive);
    }

    /// <inheritdoc/>
    public PendingExchange StartAllToAllV(ReadOnlyMemory<byte> send, ReadOnlySpan<int> sendCounts, Memory<byte> receive, ReadOnlySpan<int> receiveCounts, string what)
    {
        if (sendCounts.Length != 1 || receiveCounts.Length != 1 || sendCounts[0] != receiveCounts[0] || send.Length < sendCounts[0] || receive.Length < receiveCounts[0])
            throw new ArgumentException($"{what}: one process sends {(sendCounts.Length == 1 ? sendCounts[0] : -1)} bytes to itself but expects {(receiveCounts.Length == 1 ? receiveCounts[0] : -1)}, or a buffer is too small.");
        send.Span[..sendCounts[0]].CopyTo(receive.Span);
        return new PendingExchange(0, 0);
    }

    /// <inheritdoc/>
    public void WaitExchange(PendingExchange exchange) { }

    /// <inheritdoc/>
    public void GatherToRoot(ReadOnlySpan<byte> send, Span<byte> receive, ReadOnlySpan<int> counts, string what)
    {
        if (counts.Length != 1 || counts[0] != send.Length || receive.Length < send.Length)
            throw new ArgumentException($"{what}: counts [{string.Join(", ", counts.ToArray())}] do not describe one process's {send.Length} bytes.");
        send.CopyTo(receive);
    }
}

/// <summary>The round-robin shard of rows that a rank of a group owns: positions p with p mod Size = Rank.</summary>
public static class Shard
{
    /// <summary>The elements of <paramref name="rows"/> at positions p ≡ <paramref name="rank"/> (mod <paramref name="size"/>), in order.</summary>
    public static int[] Of(IReadOnlyList<int> rows, int rank, int size)
    {
        if (size < 1 || rank < 0 || rank >= size) throw new ArgumentOutOfRangeException(nameof(rank), $"Shard: rank {rank} of {size} is not a valid rank.");
        var result = new int[Count(rows.Count, rank, size)];
        for (int j = 0; j < result.Length; j++) result[j] = rows[j * size + rank];
        return result;
    }

    /// <summary>How many of <paramref name="total"/> positions rank <paramref name="rank"/> of <paramref name="size"/> owns.</summary>
    public static int Count(int total, int rank, int size) => total <= rank ? 0 : (total - rank + size - 1) / size;
}
