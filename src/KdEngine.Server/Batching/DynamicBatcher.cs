using System.Diagnostics;
using KdEngine.Server.Metrics;
using KdEngine.Server.Models;

namespace KdEngine.Server.Batching;

/// <summary>
/// Merges concurrent requests for one model into Predictor calls: a bounded FIFO of request chunks (a request of more
/// than <see cref="MaxBatchRows"/> rows is cut into chunks of at most that many) and a fixed set of scoring threads.
/// One thread at a time gathers a batch — the chunks at the head of the queue while they fit in
/// <see cref="MaxBatchRows"/>, waiting up to the max wait after the oldest chunk arrived for more to join, but only while
/// some other request for the model is still being read and encoded (<see cref="BeginArrival"/>): with nothing on its
/// way, waiting would only add latency (a lone client never waits) — then scores it while the next thread gathers.
/// A batch only ever holds chunks of one <see cref="ModelVersion"/>, so a request is scored entirely by the version it
/// arrived on, however a hot swap interleaves.
/// </summary>
/// <remarks>
/// <para><b>Scoring path.</b> Each thread owns an id buffer [MaxBatchRows, C] and a score buffer [MaxBatchRows]
/// (and, through the Predictor's per-thread workspace, its own Predictor scratch). A batch of one chunk is scored in
/// place from the request's own arrays; several chunks are copied into the thread's buffers, scored by one
/// <c>Predict</c> call and copied back. Nothing on this path allocates per row: per request there is the job and its
/// completion; per batch nothing once the buffers have grown to the version's width.</para>
/// <para><b>Bounds.</b> At most <c>maxQueuedRequests</c> requests wait; <see cref="TrySubmit(ScoreJob)"/> refuses more (the
/// caller answers 429), so memory is bounded by the queue length × the largest request.</para>
/// <para><b>Failures.</b> An exception from a Predictor call fails the requests of that batch only; the thread
/// carries on with the next batch.</para>
/// </remarks>
public sealed class DynamicBatcher : IDisposable
{
    private readonly object _gate = new();
    private readonly Chunk[] _ring;
    private readonly Thread[] _threads;
    private readonly string _model;
    private readonly ServerMetrics? _metrics;
    private readonly long _maxWaitTicks;
    private readonly int _maxQueuedRequests;
    private int _head, _count, _queuedRequests;
    private int _arriving;
    private bool _gathering, _stopping;

    /// <summary>
    /// A batcher for <paramref name="model"/> with <paramref name="threads"/> scoring threads (started here), batches of at most
    /// <paramref name="maxBatchRows"/> rows held open up to <paramref name="maxWaitMicroseconds"/> for more requests, at most
    /// <paramref name="maxQueuedRequests"/> waiting requests of at most <paramref name="maxRowsPerRequest"/> rows each;
    /// <paramref name="metrics"/> (optional) records batch sizes, queue waits and depths.
    /// </summary>
    public DynamicBatcher(string model, int maxBatchRows, int maxWaitMicroseconds, int threads, int maxQueuedRequests, int maxRowsPerRequest,
        ServerMetrics? metrics = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBatchRows);
        ArgumentOutOfRangeException.ThrowIfNegative(maxWaitMicroseconds);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxQueuedRequests);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxRowsPerRequest);
        _model = model;
        _metrics = metrics;
        MaxBatchRows = maxBatchRows;
        _maxWaitTicks = (long)(maxWaitMicroseconds * (Stopwatch.Frequency / 1e6));
        _maxQueuedRequests = maxQueuedRequests;
        MaxRowsPerRequest = maxRowsPerRequest;
        long chunksPerRequest = (maxRowsPerRequest + (long)maxBatchRows - 1) / maxBatchRows;
        _ring = new Chunk[checked((int)(chunksPerRequest * maxQueuedRequests))];
        _threads = new Thread[threads];
        for (int i = 0; i < threads; i++)
        {
            _threads[i] = new Thread(Work) { IsBackground = true, Name = $"kdengine-score-{model}-{i}" };
            _threads[i].Start();
        }
    }

    /// <summary>The largest Predictor call, in rows.</summary>
    public int MaxBatchRows { get; }

    /// <summary>Test hook, run on the scoring thread after a batch is gathered and before its Predictor call (inside
    /// the call's error handling: an exception here fails the batch like a Predictor failure).</summary>
    internal Action? BeforeScore { get; set; }

    /// <summary>Test hook, run on the scoring thread after a batch's requests were completed (argument: its rows).</summary>
    internal Action<int>? AfterBatch { get; set; }

    /// <summary>Predictor calls made and request chunks scored so far (a merged batch is one call for several chunks).</summary>
    internal long Batches => Interlocked.Read(ref _batches);

    internal long ChunksScored => Interlocked.Read(ref _chunksScored);

    private long _batches, _chunksScored;

    /// <summary>The most rows one request may bring.</summary>
    public int MaxRowsPerRequest { get; }

    /// <summary>Requests waiting (not yet taken into a batch).</summary>
    public int QueuedRequests { get { lock (_gate) return _queuedRequests; } }

    /// <summary>
    /// Queues <paramref name="job"/> (cut into chunks of at most <see cref="MaxBatchRows"/> rows). False when the queue
    /// holds its maximum of requests or the batcher is stopping: the job was not taken (the batcher's share of its
    /// buffers is released, as if it had been scored), and the caller answers 429/503.
    /// </summary>
    public bool TrySubmit(ScoreJob job) => TrySubmit(job, endArrival: false);

    /// <summary>
    /// <see cref="TrySubmit(ScoreJob)"/> for a request announced with <see cref="BeginArrival"/>: its arrival ends under
    /// the same lock that queues it (taken or not), so a gathering thread never sees it neither arriving nor queued.
    /// </summary>
    public bool TrySubmit(ScoreJob job, bool endArrival)
    {
        ArgumentNullException.ThrowIfNull(job);
        if (job.Rows > MaxRowsPerRequest)
        {
            if (endArrival) EndArrival();
            throw new ArgumentException($"DynamicBatcher: {job.Rows} rows exceed the {MaxRowsPerRequest} rows a request may have.");
        }
        int chunks = (job.Rows + MaxBatchRows - 1) / MaxBatchRows;
        job.SetChunks(chunks);
        lock (_gate)
        {
            if (endArrival) Interlocked.Decrement(ref _arriving);
            if (_stopping || _queuedRequests >= _maxQueuedRequests)
            {
                job.Release();
                Monitor.PulseAll(_gate); // a thread waiting for this arrival re-checks
                return false;
            }
            job.EnqueuedAt = Stopwatch.GetTimestamp();
            for (int c = 0; c < chunks; c++)
            {
                int first = c * MaxBatchRows;
                _ring[(_head + _count) % _ring.Length] = new Chunk(job, first, Math.Min(MaxBatchRows, job.Rows - first), c == chunks - 1);
                _count++;
            }
            _queuedRequests++;
            _metrics?.QueueDepth(_model, _queuedRequests);
            Monitor.PulseAll(_gate);
        }
        return true;
    }

    /// <summary>A request for this model has arrived and is being read and encoded: a gathering thread may wait for it.</summary>
    public void BeginArrival() => Interlocked.Increment(ref _arriving);

    /// <summary>The request was given up before <see cref="TrySubmit(ScoreJob, bool)"/> (which ends a submitted one's arrival itself); a thread waiting for it re-checks.</summary>
    public void EndArrival()
    {
        if (Interlocked.Decrement(ref _arriving) != 0) return;
        lock (_gate) Monitor.PulseAll(_gate);
    }

    /// <summary>Stops taking requests, lets the threads score everything already queued, and waits for them.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _stopping = true;
            Monitor.PulseAll(_gate);
        }
        foreach (var t in _threads) t.Join();
    }

    private readonly record struct Chunk(ScoreJob Job, int First, int Rows, bool Last);

    private void Work()
    {
        var batch = new Chunk[MaxBatchRows]; // every chunk has ≥ 1 row
        int[] ids = [];
        var scores = new float[MaxBatchRows];
        while (true)
        {
            int n = Gather(batch, out int rows);
            if (n < 0) return;
            if (n == 0) continue;
            Exception? failure = null;
            try
            {
                BeforeScore?.Invoke();
                var version = batch[0].Job.Version;
                int c = version.Columns;
                if (n == 1)
                {
                    var only = batch[0];
                    var destination = only.Job.Scores.AsSpan(only.First, only.Rows);
                    version.Predictor.Predict(only.Job.Ids.AsSpan(only.First * c, only.Rows * c), destination);
                    Probabilities.FromLogits(destination);
                }
                else
                {
                    if (ids.Length < MaxBatchRows * c) ids = new int[MaxBatchRows * c]; // grows once per new row width
                    int at = 0;
                    for (int i = 0; i < n; i++)
                    {
                        var k = batch[i];
                        k.Job.Ids.AsSpan(k.First * c, k.Rows * c).CopyTo(ids.AsSpan(at * c));
                        at += k.Rows;
                    }
                    version.Predictor.Predict(ids.AsSpan(0, rows * c), scores.AsSpan(0, rows));
                    Probabilities.FromLogits(scores.AsSpan(0, rows));
                    at = 0;
                    for (int i = 0; i < n; i++)
                    {
                        var k = batch[i];
                        scores.AsSpan(at, k.Rows).CopyTo(k.Job.Scores.AsSpan(k.First, k.Rows));
                        at += k.Rows;
                    }
                }
                _metrics?.BatchFormed(_model, rows);
                Interlocked.Increment(ref _batches);
                Interlocked.Add(ref _chunksScored, n);
            }
            catch (Exception e)
            {
                failure = e; // fails this batch's requests only; the thread lives on
            }
            for (int i = 0; i < n; i++)
            {
                batch[i].Job.ChunkDone(failure);
                batch[i] = default;
            }
            AfterBatch?.Invoke(rows);
        }
    }

    /// <summary>
    /// Takes the next batch into <paramref name="batch"/>: −1 when stopping and drained, 0 when only abandoned chunks
    /// were taken (already marked done), else the chunk count with <paramref name="rows"/> their total.
    /// </summary>
    private int Gather(Chunk[] batch, out int rows)
    {
        rows = 0;
        int n = 0;
        bool gathering = false;
        Monitor.Enter(_gate);
        try
        {
            while (_count == 0 || _gathering)
            {
                if (_stopping && _count == 0) return -1;
                Monitor.Wait(_gate);
            }
            _gathering = gathering = true;
            var version = _ring[_head].Job.Version;
            long deadline = _ring[_head].Job.EnqueuedAt + _maxWaitTicks;
            while (true)
            {
                // Take head chunks while they fit and belong to the same version (FIFO: never skip ahead).
                while (_count > 0)
                {
                    var k = _ring[_head];
                    if (k.Job.IsAbandoned)
                    {
                        Dequeue(k);
                        k.Job.ChunkDone(null); // nobody waits for it: skipped, not scored
                        continue;
                    }
                    if (!ReferenceEquals(k.Job.Version, version) || rows + k.Rows > MaxBatchRows) break;
                    Dequeue(k);
                    _metrics?.QueueWait(_model, Stopwatch.GetElapsedTime(k.Job.EnqueuedAt).TotalSeconds);
                    batch[n++] = k;
                    rows += k.Rows;
                }
                // Full, blocked by the head, nothing taken, or nothing on its way that could join.
                if (rows >= MaxBatchRows || _count > 0 || _stopping || n == 0 || Volatile.Read(ref _arriving) == 0) break;
                long remaining = deadline - Stopwatch.GetTimestamp();
                if (remaining <= 0) break;
                // Monitor.Wait takes whole milliseconds; under one millisecond, yield the lock and the core briefly instead.
                long ms = remaining * 1000 / Stopwatch.Frequency;
                if (ms >= 1) Monitor.Wait(_gate, (int)ms);
                else
                {
                    Monitor.Exit(_gate);
                    try { Thread.Yield(); }
                    finally { Monitor.Enter(_gate); }
                }
            }
            return n;
        }
        finally
        {
            if (gathering)
            {
                _gathering = false;
                Monitor.PulseAll(_gate); // the next thread may gather while this one scores
            }
            Monitor.Exit(_gate);
        }
    }

    private void Dequeue(in Chunk k)
    {
        _ring[_head] = default;
        _head = (_head + 1) % _ring.Length;
        _count--;
        if (k.Last)
        {
            _queuedRequests--;
            _metrics?.QueueDepth(_model, _queuedRequests);
        }
    }
}
