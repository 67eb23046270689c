namespace KdEngine.Data;

/// <summary>
/// Producer → N workers → one consumer, in order. A producer thread enumerates the items (reading a file chunk by
/// chunk); worker threads turn each item into a result (parse, count, encode); the consumer takes the results in the
/// items' order with <see cref="TryTake"/>. At most <c>maxInFlight</c> items are between the producer and the consumer,
/// so memory is bounded by that many chunks and results whatever the input size. An exception in the producer or a
/// worker is raised to the consumer at that item's place in the order (so the rows before it are delivered first and
/// the error reported is the first in input order, whatever the thread timing). Disposing stops and joins the threads.
/// </summary>
internal sealed class OrderedPipeline<TItem, TResult> : IDisposable where TResult : class
{
    private readonly object _lock = new();
    private readonly Queue<(long Seq, TItem Item)> _work = new();
    private readonly Dictionary<long, (TResult? Result, Exception? Error)> _done = new();
    private readonly Func<TItem, int, TResult> _process;
    private readonly int _maxInFlight;
    private readonly Thread _producer;
    private readonly Thread[] _workers;
    private long _produced;      // items handed to workers
    private long _next;          // next sequence number the consumer takes
    private long _end = long.MaxValue; // sequence number after the last item (known once the producer finishes)
    private bool _stopping;

    /// <param name="items">Enumerated on the producer thread.</param>
    /// <param name="workers">Worker threads (≥ 1).</param>
    /// <param name="maxInFlight">Items handed out and not yet taken by the consumer, at most (bounds memory).</param>
    /// <param name="name">Thread name prefix.</param>
    /// <param name="process">(item, worker index) → result, on a worker thread.</param>
    public OrderedPipeline(IEnumerable<TItem> items, Func<TItem, int, TResult> process, int workers, int maxInFlight, string name = "kdengine-data")
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(process);
        if (workers < 1) throw new ArgumentOutOfRangeException(nameof(workers), workers, "at least one worker.");
        _process = process;
        _maxInFlight = Math.Max(maxInFlight, workers + 1);
        _producer = new Thread(() => Produce(items)) { IsBackground = true, Name = name + "-read" };
        _workers = new Thread[workers];
        for (int w = 0; w < workers; w++)
        {
            int index = w;
            _workers[w] = new Thread(() => Work(index)) { IsBackground = true, Name = $"{name}-parse-{w}" };
        }
        _producer.Start();
        foreach (var t in _workers) t.Start();
    }

    private void Produce(IEnumerable<TItem> items)
    {
        long seq = 0;
        try
        {
            foreach (var item in items)
            {
                lock (_lock)
                {
                    while (!_stopping && seq - _next >= _maxInFlight) Monitor.Wait(_lock);
                    if (_stopping) return;
                    _work.Enqueue((seq++, item));
                    _produced = seq;
                    Monitor.PulseAll(_lock);
                }
            }
        }
        catch (Exception e)
        {
            lock (_lock)
            {
                _done[seq++] = (null, e);
                Monitor.PulseAll(_lock);
            }
        }
        finally
        {
            lock (_lock)
            {
                _end = seq;
                Monitor.PulseAll(_lock);
            }
        }
    }

    private void Work(int index)
    {
        while (true)
        {
            long seq;
            TItem item;
            lock (_lock)
            {
                while (!_stopping && _work.Count == 0 && _end == long.MaxValue) Monitor.Wait(_lock);
                if (_stopping || _work.Count == 0) return;
                (seq, item) = _work.Dequeue();
            }
            TResult? result = null;
            Exception? error = null;
            try { result = _process(item, index); }
            catch (Exception e) { error = e; }
            lock (_lock)
            {
                _done[seq] = (result, error);
                Monitor.PulseAll(_lock);
            }
        }
    }

    /// <summary>The next result in order; false when every item was processed. Rethrows a producer or worker error in order.</summary>
    public bool TryTake(out TResult result)
    {
        lock (_lock)
        {
            while (true)
            {
                if (_done.Remove(_next, out var entry))
                {
                    _next++;
                    Monitor.PulseAll(_lock);
                    if (entry.Error is not null)
                    {
                        _stopping = true;
                        Monitor.PulseAll(_lock);
                        System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(entry.Error).Throw();
                    }
                    result = entry.Result!;
                    return true;
                }
                if (_next >= _end) { result = null!; return false; }
                Monitor.Wait(_lock);
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _stopping = true;
            Monitor.PulseAll(_lock);
        }
        _producer.Join();
        foreach (var t in _workers) t.Join();
    }
}
