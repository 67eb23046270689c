using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using KdEngine.Serving;

namespace KdEngine.LoadGen;

/// <summary>What one cell of the load test measured.</summary>
internal sealed record CellResult(int Requests, int Errors, long Rows, double Seconds, double[] LatenciesMs)
{
    public double RequestsPerSecond => Requests / Seconds;
    public double RowsPerSecond => Rows / Seconds;
    public double Percentile(double p)
    {
        if (LatenciesMs.Length == 0) return double.NaN;
        var sorted = LatenciesMs.Order().ToArray();
        int i = (int)Math.Ceiling(p / 100 * sorted.Length) - 1;
        return sorted[Math.Clamp(i, 0, sorted.Length - 1)];
    }
}

/// <summary>
/// Closed-loop load: <c>concurrency</c> clients each send a request, wait for the answer, send the next — until the time
/// budget or the request budget is spent (whichever first; a request already sent is waited for). The first
/// <c>warmup</c> seconds are run and discarded.
/// </summary>
internal static class Runner
{
    /// <summary>Set to end an open-ended phase (the swap drill): clients finish the request they are in and stop.</summary>
    public static volatile bool StopAll;

    public static HttpClient Client(int concurrency) => new(new SocketsHttpHandler
    {
        MaxConnectionsPerServer = Math.Max(1, concurrency),
        PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
        EnableMultipleHttp2Connections = true,
    })
    { Timeout = TimeSpan.FromMinutes(5) };

    public static async Task<CellResult> Http(HttpClient client, Uri predict, Workload workload, int concurrency, double seconds, int maxRequests, double warmupSeconds,
        Action<Workload.Request, HttpStatusCode, byte[]>? check = null)
    {
        if (warmupSeconds > 0) await HttpPhase(client, predict, workload, concurrency, warmupSeconds, int.MaxValue, null);
        return await HttpPhase(client, predict, workload, concurrency, seconds, maxRequests, check);
    }

    private static async Task<CellResult> HttpPhase(HttpClient client, Uri predict, Workload workload, int concurrency, double seconds, int maxRequests,
        Action<Workload.Request, HttpStatusCode, byte[]>? check)
    {
        var latencies = new List<double>[concurrency];
        int issued = 0, errors = 0;
        long rows = 0;
        var clock = Stopwatch.StartNew();
        var deadline = TimeSpan.FromSeconds(seconds);
        var workers = Enumerable.Range(0, concurrency).Select(w => Task.Run(async () =>
        {
            var mine = latencies[w] = new List<double>();
            for (int n = w; clock.Elapsed < deadline && !StopAll && Interlocked.Increment(ref issued) <= maxRequests; n += concurrency)
            {
                var request = workload.Requests[n % workload.Requests.Length];
                var content = new ByteArrayContent(request.Body);
                content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
                long start = Stopwatch.GetTimestamp();
                try
                {
                    using var response = await client.PostAsync(predict, content);
                    var bytes = await response.Content.ReadAsByteArrayAsync();
                    mine.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                    if (response.StatusCode != HttpStatusCode.OK) Interlocked.Increment(ref errors);
                    else Interlocked.Add(ref rows, request.Records.Length);
                    check?.Invoke(request, response.StatusCode, bytes);
                }
                catch (HttpRequestException)
                {
                    Interlocked.Increment(ref errors);
                }
            }
        })).ToArray();
        await Task.WhenAll(workers);
        double elapsed = clock.Elapsed.TotalSeconds;
        var all = latencies.SelectMany(l => l).ToArray();
        return new CellResult(all.Length, errors, rows, elapsed, all);
    }

    /// <summary>The same requests through the same Predictor in this process: encode the raw rows and score them, one call per request.</summary>
    public static CellResult InProcess(Predictor predictor, Workload workload, int threads, double seconds, int maxRequests, double warmupSeconds)
    {
        if (warmupSeconds > 0) InProcessPhase(predictor, workload, threads, warmupSeconds, int.MaxValue);
        return InProcessPhase(predictor, workload, threads, seconds, maxRequests);
    }

    private static CellResult InProcessPhase(Predictor predictor, Workload workload, int threads, double seconds, int maxRequests)
    {
        var latencies = new List<double>[threads];
        int issued = 0;
        long rows = 0;
        var clock = Stopwatch.StartNew();
        var deadline = TimeSpan.FromSeconds(seconds);
        var pool = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            var mine = latencies[t] = new List<double>();
            var scores = new float[workload.Requests.Max(r => r.Records.Length)];
            for (int n = t; clock.Elapsed < deadline && Interlocked.Increment(ref issued) <= maxRequests; n += threads)
            {
                var request = workload.Requests[n % workload.Requests.Length];
                long start = Stopwatch.GetTimestamp();
                predictor.PredictRaw(request.Records, scores.AsSpan(0, request.Records.Length));
                mine.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                Interlocked.Add(ref rows, request.Records.Length);
            }
        })).ToArray();
        foreach (var t in pool) t.Start();
        foreach (var t in pool) t.Join();
        var all = latencies.SelectMany(l => l).ToArray();
        return new CellResult(all.Length, 0, rows, clock.Elapsed.TotalSeconds, all);
    }
}
