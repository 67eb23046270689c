using System.Collections.Concurrent;
using KdEngine.Kernels.Cpu;
using NUnit.Framework;

namespace KdEngine.Tests.Kernels;

[NonParallelizable]
public class CpuParallelTests
{
    private sealed class RecordThreads(int count) : IParallelWork
    {
        public readonly int[] Runs = new int[count];
        public readonly ConcurrentDictionary<int, int> ThreadOf = new();

        public void Execute(int index)
        {
            Interlocked.Increment(ref Runs[index]);
            ThreadOf[index] = Environment.CurrentManagedThreadId;
        }
    }

    /// <summary>
    /// A worker created for a loop may start running only after the dispatcher has published that loop. It must still
    /// take its pinned items (before the fix it took the published loop for one it had seen, parked, and the pinned
    /// loop waited for its items forever: the predictor hung on its first multi-threaded call on a busy machine).
    /// </summary>
    [Test]
    public void A_worker_that_starts_after_its_first_pinned_loop_was_published_still_runs_its_items()
    {
        int threadsBefore = CpuParallel.ThreadCount;
        try
        {
            int threads = CpuParallel.WorkerCount + 3; // the caller + every existing worker + two new ones
            CpuParallel.ThreadCount = threads;
            CpuParallel.WorkerStartDelayMilliseconds = 200;
            var work = new RecordThreads(threads);
            var loop = Task.Run(() => CpuParallel.ForPinned(threads, work));
            Assert.That(loop.Wait(TimeSpan.FromSeconds(30)), Is.True, "the pinned loop did not finish: a late worker missed its items");
            Assert.That(work.Runs, Is.All.EqualTo(1));
            Assert.That(work.ThreadOf.Values.Distinct().Count(), Is.EqualTo(threads), "pinned items run on one thread each");
        }
        finally
        {
            CpuParallel.WorkerStartDelayMilliseconds = 0;
            CpuParallel.ThreadCount = threadsBefore;
        }
    }
}
