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
}

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
