using System.Buffers;
using KdEngine.Server.Models;

namespace KdEngine.Server.Batching;

/// <summary>
/// One request's rows on their way through the batcher: encoded ids [Rows, C] (C = the version's columns) and the
/// probabilities [Rows] the workers write back. The arrays are rented from the shared pools; two parties own them —
/// the request (which reads the scores or gives up on a timeout) and the batcher (until every chunk is scored or
/// skipped) — and the last of the two to let go returns them, so a request that timed out never has its buffers
/// recycled under a worker still writing into them.
/// </summary>
public sealed class ScoreJob
{
    private const int Pending = 0, Abandoned = 1;

    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _chunksLeft;
    private int _owners = 2;
    private int _state;
    private Exception? _failure;

    /// <summary>A job of <paramref name="rows"/> rows for <paramref name="version"/>; its id and score arrays are rented from the shared pools.</summary>
    public ScoreJob(ModelVersion version, int rows)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        Version = version;
        Rows = rows;
        Ids = ArrayPool<int>.Shared.Rent(checked(rows * version.Columns));
        Scores = ArrayPool<float>.Shared.Rent(rows);
    }

    /// <summary>The model version that scores every row of the job.</summary>
    public ModelVersion Version { get; }

    /// <summary>Rows in the job.</summary>
    public int Rows { get; }

    /// <summary>[Rows, C] row-major (the first Rows·C entries of a rented array).</summary>
    public int[] Ids { get; }

    /// <summary>[Rows] probabilities once <see cref="Completion"/> has finished successfully.</summary>
    public float[] Scores { get; }

    /// <summary>The encoded ids of row <paramref name="row"/> (C = the version's columns), to fill before submitting.</summary>
    public Span<int> RowIds(int row) => Ids.AsSpan(row * Version.Columns, Version.Columns);

    /// <summary>Completes when every row is scored; faults when a scoring call failed.</summary>
    public Task Completion => _done.Task;

    internal long EnqueuedAt { get; set; }

    internal bool IsAbandoned => Volatile.Read(ref _state) == Abandoned;

    internal void SetChunks(int chunks) => _chunksLeft = chunks;

    /// <summary>A worker finished (or skipped) one chunk; <paramref name="failure"/> when its Predictor call threw.</summary>
    internal void ChunkDone(Exception? failure)
    {
        if (failure is not null) Interlocked.CompareExchange(ref _failure, failure, null);
        if (Interlocked.Decrement(ref _chunksLeft) != 0) return;
        if (_failure is { } f) _done.TrySetException(f);
        else _done.TrySetResult();
        Release();
    }

    /// <summary>The request stops waiting (timeout, client gone): queued chunks are skipped, not scored.</summary>
    public void Abandon() => Interlocked.CompareExchange(ref _state, Abandoned, Pending);

    /// <summary>A job that was never submitted (the request failed while it was being filled): returns the buffers now.</summary>
    public void Discard()
    {
        Release();
        Release();
    }

    /// <summary>The request side lets go of the buffers (after reading the scores, or after <see cref="Abandon"/>).</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _owners) != 0) return;
        ArrayPool<int>.Shared.Return(Ids);
        ArrayPool<float>.Shared.Return(Scores);
    }
}
