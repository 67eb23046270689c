using System.Runtime.ExceptionServices;

namespace KdEngine.Kernels.Cpu;

/// <summary>
/// One unit of a <see cref="CpuParallel.For"/> loop. Implementations are reusable objects (one per caller,
/// fields set before each dispatch) so that a parallel loop allocates nothing in steady state — unlike
/// <c>Parallel.For</c>, which allocates its closure, loop state and tasks on every call.
/// </summary>
public interface IParallelWork
{
    /// <summary>Runs item <paramref name="index"/> (0 ≤ index &lt; count). Items must be independent.</summary>
    void Execute(int index);
}

/// <summary>
/// The CPU backend's thread setting and its low-overhead parallel loop: persistent background worker
/// threads that poll for <see cref="SpinMicroseconds"/> and then sleep, an index counter claimed with
/// compare-and-swap, and no allocation per call. Work items are numbered; which thread runs an item never changes what the item
/// computes, so a kernel that partitions its output by item index is deterministic for any thread count.
/// </summary>
/// <remarks>
/// One loop runs on the workers at a time. A call made while the workers are busy (a concurrent caller, or a
/// nested loop from inside a work item) runs its items inline on the calling thread, in index order, instead
/// of waiting — results are the same, only slower.
/// </remarks>
public static class CpuParallel
{
    private static int _threadCount = Environment.ProcessorCount;
    private static long _spinTicks = System.Diagnostics.Stopwatch.Frequency / 10_000; // 100 µs

    /// <summary>
    /// How long an idle worker keeps polling for the next loop before it parks on a monitor (default 100 µs). A parked
    /// worker takes tens of microseconds to wake; a model's inference issues one loop per pass with only short serial
    /// gaps between them, and a serving loop calls back to back, so within this window a loop starts on a polling
    /// worker. The spin is pause instructions only (no yields: a yield on a busy machine gives the core away for a
    /// whole time slice). 0 parks at once.
    /// </summary>
    public static int SpinMicroseconds
    {
        get => (int)(Volatile.Read(ref _spinTicks) * 1_000_000 / System.Diagnostics.Stopwatch.Frequency);
        set
        {
            if (value < 0 || value > 1_000_000)
                throw new ArgumentOutOfRangeException(nameof(value), value, "CpuParallel.SpinMicroseconds must be in [0, 1,000,000].");
            Volatile.Write(ref _spinTicks, (long)value * System.Diagnostics.Stopwatch.Frequency / 1_000_000);
        }
    }

    /// <summary>
    /// Item <paramref name="index"/>'s share [start, end) of <paramref name="total"/> units split into
    /// <paramref name="parts"/> contiguous parts whose boundaries are multiples of <paramref name="align"/> (the last
    /// part takes the remainder). A static split: it depends only on its arguments, never on timing, so a kernel that
    /// writes each unit from one part gives the same bits whichever thread runs which part.
    /// </summary>
    public static (int Start, int End) Range(int total, int parts, int index, int align = 1)
    {
        int units = (total + align - 1) / align;
        int start = (int)((long)units * index / parts) * align;
        int end = (int)((long)units * (index + 1) / parts) * align;
        return (Math.Min(start, total), Math.Min(end, total));
    }

    /// <summary>Threads a CPU kernel may use (the caller included). Default: all cores. Must be ≥ 1.</summary>
    public static int ThreadCount
    {
        get => Volatile.Read(ref _threadCount);
        set
        {
            if (value < 1)
                throw new ArgumentOutOfRangeException(nameof(value), value,
                    $"CpuParallel.ThreadCount must be >= 1 (got {value}).");
            Volatile.Write(ref _threadCount, value);
        }
    }

    // ---- dispatch state (guarded by _busy: only the thread that won it writes these) ----
    private static int _busy;                       // 0 free, 1 a loop is running on the workers
    private static readonly object Gate = new();    // workers sleep on it
    private static readonly List<Thread> Workers = new();
    private static IParallelWork? _work;
    private static int _count;
    private static int _participants;               // workers with id < this take part in the current loop
    private static bool _pinned;                    // the current loop's items are assigned to threads (ForPinned)
    private static int _generation;                 // bumped per loop, read by workers under Gate
    private static long _ticket;                    // (generation << 32) | next index; claimed by CAS
    private static int _remaining;                  // items not yet finished
    private static readonly ManualResetEventSlim Done = CreateDoneEvent();

    /// <summary>
    /// ManualResetEventSlim creates its kernel event and its internal lock object lazily, on the first Wait that
    /// has to block — a 24-byte allocation on the caller in the middle of a steady-state GEMM. Touching WaitHandle
    /// and one short blocking wait create both up front.
    /// </summary>
    private static ManualResetEventSlim CreateDoneEvent()
    {
        var done = new ManualResetEventSlim(false, spinCount: 200);
        _ = done.WaitHandle;
        done.Wait(1);
        return done;
    }
    private static ExceptionDispatchInfo? _failure;

    /// <summary>
    /// Runs <c>work.Execute(i)</c> for i in [0, count) on up to <see cref="ThreadCount"/> threads (the caller
    /// is one of them) and returns when all have finished. Allocation-free once the workers exist.
    /// An exception from an item is rethrown here after the loop has drained.
    /// </summary>
    public static void For(int count, IParallelWork work) => Run(count, work, pinned: false);

    /// <summary>
    /// As <see cref="For"/>, but item i always runs on the same thread: the caller runs items 0, T, 2T …, worker w
    /// items w + 1, w + 1 + T … (T = min(<see cref="ThreadCount"/>, count)). For loops whose items keep per-thread state
    /// warm between calls (a range of a batch and the scratch its thread's kernels grew for it): after one call, every
    /// thread has met its items. No stealing, so a descheduled worker delays the loop (use <see cref="For"/> where items
    /// are small and many). When the workers are busy the caller runs every item, in order.
    /// </summary>
    public static void ForPinned(int count, IParallelWork work) => Run(count, work, pinned: true);

    private static void Run(int count, IParallelWork work, bool pinned)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (count < 0)
            throw new ArgumentOutOfRangeException(nameof(count), count, "CpuParallel.For: count must be >= 0.");
        if (count == 0) return;
        int threads = Math.Min(ThreadCount, count);
        if (threads == 1 || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            for (int i = 0; i < count; i++) work.Execute(i);
            return;
        }
        try
        {
            EnsureWorkers(threads - 1);
            _failure = null;
            Done.Reset();
            Volatile.Write(ref _remaining, count);
            lock (Gate)
            {
                _work = work;
                _count = count;
                _participants = threads - 1;
                _pinned = pinned;
                _generation++;
                Volatile.Write(ref _ticket, (long)_generation << 32);
                Monitor.PulseAll(Gate);
            }
            if (pinned) RunPinned(work, count, 0, threads);
            else RunItems(_generation, work, count);
            // The caller's own items are done; the workers' finish about now: poll before blocking.
            long until = System.Diagnostics.Stopwatch.GetTimestamp() + Volatile.Read(ref _spinTicks);
            while (Volatile.Read(ref _remaining) != 0 && System.Diagnostics.Stopwatch.GetTimestamp() < until)
                Thread.SpinWait(20);
            Done.Wait();
            _work = null;
            _failure?.Throw();
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Claims and runs items of loop <paramref name="generation"/> until none are left.</summary>
    private static void RunItems(int generation, IParallelWork work, int count)
    {
        while (true)
        {
            long t = Volatile.Read(ref _ticket);
            if ((int)(t >> 32) != generation || (int)t >= count) return;
            if (Interlocked.CompareExchange(ref _ticket, t + 1, t) != t) continue;
            try
            {
                work.Execute((int)t);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
            }
            if (Interlocked.Decrement(ref _remaining) == 0) Done.Set();
        }
    }

    /// <summary>Runs items first, first + stride, … of a pinned loop.</summary>
    private static void RunPinned(IParallelWork work, int count, int first, int stride)
    {
        for (int i = first; i < count; i += stride)
        {
            try
            {
                work.Execute(i);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
            }
            if (Interlocked.Decrement(ref _remaining) == 0) Done.Set();
        }
    }

    private static void EnsureWorkers(int needed)
    {
        // Only the dispatcher (holder of _busy) grows the list, so no lock is needed for the count.
        while (Workers.Count < needed)
        {
            int id = Workers.Count;
            // The generation the worker starts from is read here, by the dispatcher, before it bumps the generation for the
            // loop it is about to start: a worker that read it itself could start after the bump, take the new loop for one
            // it had already seen and park, while a pinned loop waits for its items forever.
            int seen = Volatile.Read(ref _generation);
            var thread = new Thread(() => WorkerLoop(id, seen))
            {
                IsBackground = true,
                Name = $"KdEngine.CpuParallel#{id}",
            };
            Workers.Add(thread);
            thread.Start();
        }
    }

    /// <summary>Test hook: how long a new worker waits before it enters its loop (0 in use), to make a late start certain.</summary>
    internal static int WorkerStartDelayMilliseconds { get; set; }

    /// <summary>Workers created so far (test hook).</summary>
    internal static int WorkerCount => Workers.Count;

    private static void WorkerLoop(int id, int seen)
    {
        if (WorkerStartDelayMilliseconds > 0) Thread.Sleep(WorkerStartDelayMilliseconds);
        while (true)
        {
            // Poll first (see SpinMicroseconds): GEMM issues loops back to back (pack B, then compute), inference one
            // per pass, and a parked thread takes tens of microseconds to wake.
            long until = System.Diagnostics.Stopwatch.GetTimestamp() + Volatile.Read(ref _spinTicks);
            while (Volatile.Read(ref _generation) == seen && System.Diagnostics.Stopwatch.GetTimestamp() < until)
                Thread.SpinWait(20);
            IParallelWork? work;
            int count, generation, participants;
            bool pinned;
            lock (Gate)
            {
                while (_generation == seen) Monitor.Wait(Gate);
                seen = generation = _generation;
                work = _work;
                count = _count;
                participants = _participants;
                pinned = _pinned;
                if (id >= _participants) work = null;
            }
            if (work is null) continue;
            if (pinned) RunPinned(work, count, id + 1, participants + 1);
            else RunItems(generation, work, count);
        }
    }
}
