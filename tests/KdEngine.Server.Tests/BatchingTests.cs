using KdEngine.Models;
using KdEngine.Server.Batching;
using KdEngine.Server.Models;
using NUnit.Framework;

namespace KdEngine.Server.Tests;

/// <summary>The dynamic batcher on its own: results go back to the right requests, merging, chunking, bounds, allocation.</summary>
[TestFixture]
public sealed class BatchingTests
{
    private TempDir _dir = null!;
    private ModelVersion _version = null!;
    private ModelVersion _other = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _dir = new TempDir();
        // FM: a row's score does not depend on which rows share its Predictor call (no GEMM; the GEMM-based parts may
        // differ in the last bit when a row is batched differently), so a request's scores must equal its rows scored
        // alone bit for bit — any mix-up between requests or rows shows.
        var (a, b, _) = TestModels.Pair(_dir.Path, ModelKind.Fm);
        _version = ModelLoader.Load("m", a, 1);
        _other = ModelLoader.Load("m", b, 2);
    }

    [OneTimeTearDown]
    public void Remove() => _dir.Dispose();

    /// <summary>A job of <paramref name="rows"/> seeded rows of valid ids, and its scores from one Predictor call alone.</summary>
    private static (ScoreJob Job, float[] Expected) Job(ModelVersion version, int rows, int seed)
    {
        var job = new ScoreJob(version, rows);
        var rng = new Random(seed);
        var space = version.Schema.Preprocessor.FeatureSpace;
        int c = version.Columns;
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < c; k++) job.Ids[r * c + k] = rng.Next(space.SingleFields[k].Cardinality);
        var expected = new float[rows];
        version.Predictor.Predict(job.Ids.AsSpan(0, rows * c), expected);
        Probabilities.FromLogits(expected);
        return (job, expected);
    }

    private static void AssertScores(ScoreJob job, float[] expected, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(job.Scores[i]) != BitConverter.SingleToInt32Bits(expected[i]))
                Assert.Fail($"{what}: row {i} got {job.Scores[i]:R}, its own scores say {expected[i]:R}");
    }

    [TestCase(1, 0)]
    [TestCase(2, 200)]
    [TestCase(4, 50)]
    public async Task Concurrent_requests_get_their_own_rows_back_under_random_interleaving(int threads, int waitMicroseconds)
    {
        using var batcher = new DynamicBatcher("m", maxBatchRows: 48, waitMicroseconds, threads, maxQueuedRequests: 1000, maxRowsPerRequest: 400);
        var rng = new Random(threads * 1000 + waitMicroseconds);
        var sizes = Enumerable.Range(0, 240).Select(_ => rng.Next(8) == 0 ? 49 + rng.Next(300) : 1 + rng.Next(30)).ToArray();
        var delays = sizes.Select(_ => rng.Next(4)).ToArray();
        var clients = Enumerable.Range(0, 8).Select(client => Task.Run(async () =>
        {
            for (int i = client; i < sizes.Length; i += 8)
            {
                var (job, expected) = Job(_version, sizes[i], seed: i);
                Assert.That(batcher.TrySubmit(job), Is.True);
                if (delays[i] > 0) await Task.Delay(delays[i]);
                await job.Completion.WaitAsync(TimeSpan.FromSeconds(60));
                AssertScores(job, expected, $"request {i} ({sizes[i]} rows)");
                job.Release();
            }
        })).ToArray();
        await Task.WhenAll(clients);
        long chunks = sizes.Sum(s => (s + 47) / 48);
        Assert.That(batcher.ChunksScored, Is.EqualTo(chunks), "every chunk scored once");
        Assert.That(batcher.Batches, Is.LessThanOrEqualTo(chunks));
    }

    [Test]
    public async Task Queued_requests_merge_into_full_batches_and_big_ones_are_chunked()
    {
        using var batcher = new DynamicBatcher("m", maxBatchRows: 64, maxWaitMicroseconds: 0, threads: 1, maxQueuedRequests: 100, maxRowsPerRequest: 1000);
        using var gate = new ManualResetEventSlim(false);
        using var entered = new SemaphoreSlim(0);
        var formed = new List<int>();
        batcher.BeforeScore = () => { entered.Release(); gate.Wait(); };
        batcher.AfterBatch = rows => { lock (formed) formed.Add(rows); };
        var (blocker, blockerExpected) = Job(_version, 1, seed: 99);
        Assert.That(batcher.TrySubmit(blocker), Is.True);
        Assert.That(await entered.WaitAsync(TimeSpan.FromSeconds(30)), Is.True); // the thread holds the blocker; the rest queue up
        batcher.BeforeScore = null;
        // 20 × 10 rows, then one request of 150 rows, then 3 × 10 rows: FIFO batches of ≤ 64 rows.
        var jobs = new List<(ScoreJob, float[])>();
        for (int i = 0; i < 20; i++) jobs.Add(Job(_version, 10, seed: i));
        jobs.Add(Job(_version, 150, seed: 50));
        for (int i = 0; i < 3; i++) jobs.Add(Job(_version, 10, seed: 60 + i));
        foreach (var (job, _) in jobs) Assert.That(batcher.TrySubmit(job), Is.True);
        gate.Set();
        foreach (var (job, expected) in jobs.Prepend((blocker, blockerExpected)))
        {
            await job.Completion.WaitAsync(TimeSpan.FromSeconds(60));
            AssertScores(job, expected, $"{job.Rows} rows");
            job.Release();
        }
        lock (formed)
            // 1 (blocker) | 6×10 | 6×10 | 6×10 | 2×10 + ... the 150-row request is cut into 64 + 64 + 22; a chunk never
            // joins a batch it does not fit (FIFO, no skipping ahead).
            Assert.That(formed, Is.EqualTo(new[] { 1, 60, 60, 60, 20, 64, 64, 52 }));
    }

    [Test]
    public async Task A_batch_never_mixes_model_versions()
    {
        using var batcher = new DynamicBatcher("m", maxBatchRows: 1000, maxWaitMicroseconds: 0, threads: 1, maxQueuedRequests: 100, maxRowsPerRequest: 1000);
        using var gate = new ManualResetEventSlim(false);
        using var entered = new SemaphoreSlim(0);
        var formed = new List<int>();
        batcher.BeforeScore = () => { entered.Release(); gate.Wait(); };
        batcher.AfterBatch = rows => { lock (formed) formed.Add(rows); };
        var (blocker, _) = Job(_version, 1, seed: 1);
        batcher.TrySubmit(blocker);
        Assert.That(await entered.WaitAsync(TimeSpan.FromSeconds(30)), Is.True);
        batcher.BeforeScore = null;
        var jobs = new[] { Job(_version, 5, 2), Job(_version, 6, 3), Job(_other, 7, 4), Job(_other, 8, 5), Job(_version, 9, 6) };
        foreach (var (job, _) in jobs) batcher.TrySubmit(job);
        gate.Set();
        foreach (var (job, expected) in jobs)
        {
            await job.Completion.WaitAsync(TimeSpan.FromSeconds(60));
            AssertScores(job, expected, $"version {job.Version.Version}");
            job.Release();
        }
        blocker.Release();
        lock (formed) Assert.That(formed, Is.EqualTo(new[] { 1, 11, 15, 9 }));
    }

    [Test]
    public void The_batch_waits_for_requests_on_their_way_and_only_for_them()
    {
        using var batcher = new DynamicBatcher("m", maxBatchRows: 100, maxWaitMicroseconds: 30_000_000, threads: 1, maxQueuedRequests: 10, maxRowsPerRequest: 100);
        var formed = new List<int>();
        batcher.AfterBatch = rows => { lock (formed) formed.Add(rows); };

        // Nothing else on its way: the lone request is scored at once, not after the 30 s max wait.
        var (alone, _) = Job(_version, 3, 1);
        batcher.TrySubmit(alone);
        Assert.That(alone.Completion.Wait(TimeSpan.FromSeconds(20)), Is.True, "a lone request must not wait for company");

        // Another request is being read: the batch holds for it and both go in one Predictor call.
        batcher.BeginArrival();
        var (first, _) = Job(_version, 4, 2);
        batcher.TrySubmit(first);
        Thread.Sleep(100);
        Assert.That(first.Completion.IsCompleted, Is.False, "held open for the arriving request");
        var (second, _) = Job(_version, 5, 3);
        batcher.TrySubmit(second, endArrival: true); // queued and no longer arriving, atomically
        Assert.That(first.Completion.Wait(TimeSpan.FromSeconds(20)) && second.Completion.Wait(TimeSpan.FromSeconds(20)), Is.True);
        lock (formed) Assert.That(formed, Is.EqualTo(new[] { 3, 9 }));

        // A request that gives up while being read releases the wait too.
        batcher.BeginArrival();
        batcher.BeginArrival();
        var (third, _) = Job(_version, 2, 4);
        batcher.TrySubmit(third, endArrival: true);
        Thread.Sleep(50);
        Assert.That(third.Completion.IsCompleted, Is.False, "another request is still arriving");
        batcher.EndArrival(); // that one failed to parse
        Assert.That(third.Completion.Wait(TimeSpan.FromSeconds(20)), Is.True);
    }

    [Test]
    public void A_full_queue_refuses_and_bounds_memory()
    {
        using var batcher = new DynamicBatcher("m", maxBatchRows: 8, maxWaitMicroseconds: 0, threads: 1, maxQueuedRequests: 2, maxRowsPerRequest: 20);
        using var gate = new ManualResetEventSlim(false);
        using var entered = new SemaphoreSlim(0);
        batcher.BeforeScore = () => { entered.Release(); gate.Wait(); };
        var jobs = Enumerable.Range(0, 4).Select(i => Job(_version, 20, i).Job).ToArray();
        Assert.That(batcher.TrySubmit(jobs[0]), Is.True);
        Assert.That(entered.Wait(TimeSpan.FromSeconds(30)), Is.True); // its first chunk is being scored; its other two wait
        batcher.BeforeScore = null;
        Assert.That(batcher.TrySubmit(jobs[1]), Is.True);
        Assert.That(batcher.TrySubmit(jobs[2]), Is.False, "two requests already wait");
        Assert.Throws<ArgumentException>(() => batcher.TrySubmit(Job(_version, 21, 9).Job));
        gate.Set();
        Assert.That(jobs[0].Completion.Wait(TimeSpan.FromSeconds(60)) && jobs[1].Completion.Wait(TimeSpan.FromSeconds(60)), Is.True);
        Assert.That(batcher.TrySubmit(jobs[3]), Is.True, "room again");
        Assert.That(jobs[3].Completion.Wait(TimeSpan.FromSeconds(60)), Is.True);
    }

    [Test]
    public void An_abandoned_request_is_skipped_not_scored()
    {
        using var batcher = new DynamicBatcher("m", maxBatchRows: 100, maxWaitMicroseconds: 0, threads: 1, maxQueuedRequests: 10, maxRowsPerRequest: 100);
        using var gate = new ManualResetEventSlim(false);
        using var entered = new SemaphoreSlim(0);
        batcher.BeforeScore = () => { entered.Release(); gate.Wait(); };
        var (first, _) = Job(_version, 3, 1);
        var (gone, _) = Job(_version, 4, 2);
        batcher.TrySubmit(first);
        Assert.That(entered.Wait(TimeSpan.FromSeconds(30)), Is.True);
        batcher.BeforeScore = null;
        batcher.TrySubmit(gone);
        gone.Abandon();
        gone.Release();
        gate.Set();
        Assert.That(first.Completion.Wait(TimeSpan.FromSeconds(60)), Is.True);
        Assert.That(gone.Completion.Wait(TimeSpan.FromSeconds(60)), Is.True, "completed as skipped");
        Assert.That(batcher.ChunksScored, Is.EqualTo(1), "only the first request was scored");
    }

    [TestCase(ModelKind.Dnn)]
    [TestCase(ModelKind.XDeepFm)]
    public void The_scoring_path_allocates_nothing_per_row_in_steady_state(ModelKind kind)
    {
        // Measured on the scoring thread itself: everything from taking a batch off the queue to completing its
        // requests, for merged batches of 5–1,000 rows. After warm-up (the thread's buffers and Predictor scratch have
        // grown to the largest batch) the thread allocates 0 bytes per batch, so 0 per row.
        using var dir = new TempDir();
        var pre = TestModels.Preprocessor(TestModels.Schema());
        var version = ModelLoader.Load("m", TestModels.Save(dir.Path, "x.kde", TestModels.Model(pre, kind, 4), pre), 1);
        using var batcher = new DynamicBatcher("m", maxBatchRows: 1000, maxWaitMicroseconds: 0, threads: 1, maxQueuedRequests: 100, maxRowsPerRequest: 1000,
            new Metrics.ServerMetrics()); // the metrics it updates are part of the path
        var perBatch = new List<long>(capacity: 64); // never grows inside the measurement
        long last = -1;
        batcher.AfterBatch = _ =>
        {
            long now = GC.GetAllocatedBytesForCurrentThread();
            if (last >= 0) perBatch.Add(now - last);
            last = now;
        };
        var sizes = new[] { 1000, 5, 300, 1000, 77, 1, 999, 500, 12, 1000 };
        var pending = new List<ScoreJob>();
        foreach (int rows in sizes.Concat(sizes)) // warm-up pass, then the measured pass
        {
            var (job, _) = Job(version, rows, rows);
            batcher.TrySubmit(job);
            Assert.That(job.Completion.Wait(TimeSpan.FromSeconds(120)), Is.True);
            pending.Add(job);
        }
        batcher.Dispose();
        foreach (var j in pending) j.Release();
        var measured = perBatch.Skip(sizes.Length).ToArray();
        Assert.That(measured, Has.Length.EqualTo(sizes.Length - 1));
        Assert.That(measured, Is.All.EqualTo(0), "bytes allocated by the scoring thread per batch: " + string.Join(", ", measured));
    }
}
