using System.Collections.Concurrent;
using System.Globalization;

namespace KdEngine.Server.Metrics;

/// <summary>
/// The service's Prometheus metrics, written by hand in the text exposition format 0.0.4 (a few counters, gauges and
/// fixed-bucket histograms do not need a client library). Every update is a few interlocked operations and allocates
/// nothing once a label set has been seen; <see cref="Write"/> renders a consistent-enough snapshot (each series is
/// read atomically, not the whole registry — the usual Prometheus client semantics).
/// </summary>
public sealed class ServerMetrics
{
    /// <summary>Latency buckets in seconds: 0.5 ms … 10 s (an xDeepFM request of 1,000 candidates takes seconds on a loaded machine).</summary>
    internal static readonly double[] LatencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    /// <summary>Rows per request or per Predictor call: powers of two up to 65,536.</summary>
    internal static readonly double[] RowBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536];

    private readonly ConcurrentDictionary<(string Model, string Endpoint, int Status), Counter> _requests = new();
    private readonly ConcurrentDictionary<(string Model, string Endpoint), Histogram> _latency = new();
    private readonly ConcurrentDictionary<string, Histogram> _candidates = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Histogram> _batchRows = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Histogram> _queueWait = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Gauge> _queueDepth = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Model, string Result), Counter> _reloads = new();
    private readonly ConcurrentDictionary<string, ModelInfo> _models = new(StringComparer.Ordinal);

    /// <summary>Counts one request by model, endpoint and status, and records its latency in seconds.</summary>
    public void Request(string model, string endpoint, int status, double seconds)
    {
        _requests.GetOrAdd((model, endpoint, status), static _ => new Counter()).Add(1);
        _latency.GetOrAdd((model, endpoint), static _ => new Histogram(LatencyBuckets)).Observe(seconds);
    }

    /// <summary>Records the number of candidates (rows) of one predict request.</summary>
    public void Candidates(string model, int count) =>
        _candidates.GetOrAdd(model, static _ => new Histogram(RowBuckets)).Observe(count);

    /// <summary>Records the rows of one Predictor call the batcher formed.</summary>
    public void BatchFormed(string model, int rows) =>
        _batchRows.GetOrAdd(model, static _ => new Histogram(RowBuckets)).Observe(rows);

    /// <summary>Records how long a request waited in the queue, in seconds.</summary>
    public void QueueWait(string model, double seconds) =>
        _queueWait.GetOrAdd(model, static _ => new Histogram(LatencyBuckets)).Observe(seconds);

    /// <summary>Sets the number of requests waiting for the model.</summary>
    public void QueueDepth(string model, int requests) =>
        _queueDepth.GetOrAdd(model, static _ => new Gauge()).Set(requests);

    /// <summary>Counts a reload, accepted or refused.</summary>
    public void Reload(string model, bool accepted) =>
        _reloads.GetOrAdd((model, accepted ? "accepted" : "refused"), static _ => new Counter()).Add(1);

    /// <summary>Records the version now serving <paramref name="model"/> (replaces the previous one's series).</summary>
    public void ModelVersion(string model, long version, string checkpoint) =>
        _models[model] = new ModelInfo(version, checkpoint, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0);

    /// <summary>The count of one request series (tests).</summary>
    internal long RequestCount(string model, string endpoint, int status) =>
        _requests.TryGetValue((model, endpoint, status), out var c) ? c.Value : 0;

    /// <summary>Writes every series in the Prometheus text exposition format 0.0.4.</summary>
    public void Write(TextWriter w)
    {
        Family(w, "kdengine_requests_total", "counter", "HTTP requests by model, endpoint and status code.");
        foreach (var ((model, endpoint, status), c) in Sorted(_requests))
            Sample(w, "kdengine_requests_total", $"model=\"{model}\",endpoint=\"{endpoint}\",status=\"{status}\"", c.Value);

        Family(w, "kdengine_request_duration_seconds", "histogram", "Time from the request's arrival to its response, by model and endpoint.");
        foreach (var ((model, endpoint), h) in Sorted(_latency))
            h.Write(w, "kdengine_request_duration_seconds", $"model=\"{model}\",endpoint=\"{endpoint}\"");

        Family(w, "kdengine_candidates_per_request", "histogram", "Rows (candidates or instances) per scored request.");
        foreach (var (model, h) in Sorted(_candidates)) h.Write(w, "kdengine_candidates_per_request", $"model=\"{model}\"");

        Family(w, "kdengine_batch_rows", "histogram", "Rows per Predictor call formed by the dynamic batcher.");
        foreach (var (model, h) in Sorted(_batchRows)) h.Write(w, "kdengine_batch_rows", $"model=\"{model}\"");

        Family(w, "kdengine_queue_wait_seconds", "histogram", "Time a request chunk waited in the batcher's queue before its Predictor call began.");
        foreach (var (model, h) in Sorted(_queueWait)) h.Write(w, "kdengine_queue_wait_seconds", $"model=\"{model}\"");

        Family(w, "kdengine_queue_requests", "gauge", "Requests waiting in the batcher's queue.");
        foreach (var (model, g) in Sorted(_queueDepth)) Sample(w, "kdengine_queue_requests", $"model=\"{model}\"", g.Value);

        Family(w, "kdengine_model_reloads_total", "counter", "Reload attempts by result (a refused checkpoint leaves the old version serving).");
        foreach (var ((model, result), c) in Sorted(_reloads))
            Sample(w, "kdengine_model_reloads_total", $"model=\"{model}\",result=\"{result}\"", c.Value);

        Family(w, "kdengine_model_version", "gauge", "Version number now serving (1 at start, +1 per accepted reload).");
        foreach (var (model, info) in Sorted(_models)) Sample(w, "kdengine_model_version", $"model=\"{model}\"", info.Version);

        Family(w, "kdengine_model_info", "gauge", "1 for the checkpoint now serving each model (checkpoint = first 16 hex digits of its data SHA-256).");
        foreach (var (model, info) in Sorted(_models))
            Sample(w, "kdengine_model_info", $"model=\"{model}\",version=\"{info.Version}\",checkpoint=\"{info.Checkpoint}\"", 1);

        Family(w, "kdengine_model_loaded_timestamp_seconds", "gauge", "Unix time the serving version was swapped in.");
        foreach (var (model, info) in Sorted(_models)) Sample(w, "kdengine_model_loaded_timestamp_seconds", $"model=\"{model}\"", info.LoadedAt);
    }

    /// <summary><see cref="Write"/> into a string (the <c>/metrics</c> body).</summary>
    public string Render()
    {
        var sb = new StringWriter(CultureInfo.InvariantCulture);
        Write(sb);
        return sb.ToString();
    }

    private static IEnumerable<KeyValuePair<TKey, TValue>> Sorted<TKey, TValue>(ConcurrentDictionary<TKey, TValue> d) where TKey : notnull =>
        d.OrderBy(kv => kv.Key.ToString(), StringComparer.Ordinal);

    private static void Family(TextWriter w, string name, string type, string help)
    {
        w.Write("# HELP "); w.Write(name); w.Write(' '); w.Write(help); w.Write('\n');
        w.Write("# TYPE "); w.Write(name); w.Write(' '); w.Write(type); w.Write('\n');
    }

    internal static void Sample(TextWriter w, string name, string labels, double value)
    {
        w.Write(name);
        if (labels.Length > 0) { w.Write('{'); w.Write(labels); w.Write('}'); }
        w.Write(' ');
        w.Write(Format(value));
        w.Write('\n');
    }

    internal static string Format(double v) =>
        double.IsPositiveInfinity(v) ? "+Inf" : double.IsNegativeInfinity(v) ? "-Inf" : double.IsNaN(v) ? "NaN" : v.ToString("R", CultureInfo.InvariantCulture);

    private sealed record ModelInfo(long Version, string Checkpoint, double LoadedAt);

    private sealed class Counter
    {
        private long _value;
        public long Value => Interlocked.Read(ref _value);
        public void Add(long n) => Interlocked.Add(ref _value, n);
    }

    private sealed class Gauge
    {
        private long _value;
        public long Value => Interlocked.Read(ref _value);
        public void Set(long v) => Interlocked.Exchange(ref _value, v);
    }

    /// <summary>Per-bucket counts while observing (one increment), made cumulative when written; the count is the last cumulative bucket.</summary>
    private sealed class Histogram(double[] bounds)
    {
        private readonly long[] _counts = new long[bounds.Length + 1]; // last = above every bound (+Inf)
        private long _sumBits; // double sum, updated by compare-and-swap

        public void Observe(double value)
        {
            int i = Array.BinarySearch(bounds, value);
            if (i < 0) i = ~i; // first bound ≥ value (Prometheus buckets are "le")
            Interlocked.Increment(ref _counts[i]);
            long seen = Interlocked.Read(ref _sumBits);
            while (true)
            {
                long next = BitConverter.DoubleToInt64Bits(BitConverter.Int64BitsToDouble(seen) + value);
                long was = Interlocked.CompareExchange(ref _sumBits, next, seen);
                if (was == seen) break;
                seen = was;
            }
        }

        public void Write(TextWriter w, string name, string labels)
        {
            long cumulative = 0;
            for (int i = 0; i <= bounds.Length; i++)
            {
                cumulative += Interlocked.Read(ref _counts[i]);
                string le = i < bounds.Length ? Format(bounds[i]) : "+Inf";
                Sample(w, name + "_bucket", $"{labels},le=\"{le}\"", cumulative);
            }
            Sample(w, name + "_sum", labels, BitConverter.Int64BitsToDouble(Interlocked.Read(ref _sumBits)));
            Sample(w, name + "_count", labels, cumulative);
        }
    }
}
