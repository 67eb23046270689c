namespace KdEngine.Server;

/// <summary>What the service does with a request field the model's schema does not know.</summary>
public enum UnknownFieldPolicy
{
    /// <summary>400 naming the field and candidate (the default: a misspelt field is never silently missing).</summary>
    Reject,
    /// <summary>Skip it (for clients that send a superset of the fields).</summary>
    Ignore,
}

/// <summary>
/// The service's settings, bound from the configuration section <see cref="SectionName"/> (appsettings, environment
/// variables <c>Server__MaxCandidates=…</c>, or the command line <c>--Server:MaxCandidates=…</c>); <c>kdengine serve</c>
/// maps its options onto the same keys. <see cref="Validate"/> names the key at fault.
/// </summary>
public sealed class ServerOptions
{
    /// <summary>The configuration section the options bind from.</summary>
    public const string SectionName = "Server";

    /// <summary>Served models: name → checkpoint path (.kde with its preprocessing). At least one.</summary>
    public Dictionary<string, string> Models { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Address Kestrel listens on (default loopback only).</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>TCP port for HTTP/1.1; 0 picks a free port.</summary>
    public int Port { get; set; } = 8080;

    /// <summary>TCP port for cleartext HTTP/2 with prior knowledge (h2c; gRPC-style clients, <c>curl --http2-prior-knowledge</c>);
    /// null = off, 0 = a free port. Cleartext has no ALPN, so one port cannot offer both protocols.</summary>
    public int? Http2Port { get; set; }

    /// <summary>Largest Predictor call the batcher forms, in rows; a larger request is scored in chunks of this size.</summary>
    public int MaxBatchRows { get; set; } = 1024;

    /// <summary>How long the batcher holds the oldest queued request open for others to join it (0 = score what is queued).</summary>
    public int MaxBatchWaitMicroseconds { get; set; } = 200;

    /// <summary>Scoring threads per model, each with its own Predictor scratch (0 = one per core).</summary>
    public int ScoringThreads { get; set; }

    /// <summary>Requests queued per model beyond which a new one is refused with 429 and Retry-After.</summary>
    public int MaxQueuedRequests { get; set; } = 256;

    /// <summary>Open connections at once (Kestrel closes a new one beyond it): with <see cref="MaxBodyBytes"/> it bounds
    /// the memory of bodies being received, as <see cref="MaxQueuedRequests"/> bounds the encoded rows waiting.</summary>
    public int MaxConnections { get; set; } = 1024;

    /// <summary>Largest request body (413 beyond).</summary>
    public long MaxBodyBytes { get; set; } = 8 << 20;

    /// <summary>Most candidates (or instances) per request (413 beyond).</summary>
    public int MaxCandidates { get; set; } = 4096;

    /// <summary>Time from a request's arrival to its answer beyond which it gets 503 with Retry-After.</summary>
    public int RequestTimeoutMilliseconds { get; set; } = 10_000;

    /// <summary>Seconds sent in Retry-After with 429 and 503.</summary>
    public int RetryAfterSeconds { get; set; } = 1;

    /// <summary>What to do with a request field the schema does not know (reject by default).</summary>
    public UnknownFieldPolicy UnknownFields { get; set; } = UnknownFieldPolicy.Reject;

    /// <summary>Let a reload replace a model by one with a different input schema (off: such a reload is refused).</summary>
    public bool AllowSchemaChange { get; set; }

    /// <summary>On SIGTERM: how long in-flight requests may take to finish before the process exits anyway.</summary>
    public int ShutdownTimeoutSeconds { get; set; } = 30;

    /// <summary>The scoring threads actually used.</summary>
    public int EffectiveScoringThreads => ScoringThreads > 0 ? ScoringThreads : Environment.ProcessorCount;

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first bad key (as <c>Server:Key</c>).</summary>
    public void Validate()
    {
        static void Need(bool ok, string key, string problem)
        {
            if (!ok) throw new ArgumentException($"{SectionName}:{key}: {problem}");
        }
        Need(Models.Count > 0, "Models", "no model to serve (give at least one name → checkpoint path)");
        foreach (var (name, path) in Models)
        {
            Need(IsValidModelName(name), $"Models:{name}", "a model name is 1–64 characters of letters, digits, '-', '_' and '.'");
            Need(!string.IsNullOrWhiteSpace(path), $"Models:{name}", "empty checkpoint path");
        }
        Need(!string.IsNullOrWhiteSpace(Host), "Host", "empty");
        Need(Port is >= 0 and <= 65535, "Port", $"must be in [0, 65535], got {Port}");
        Need(Http2Port is null or >= 0 and <= 65535, "Http2Port", $"must be in [0, 65535], got {Http2Port}");
        Need(Http2Port is null or 0 || Http2Port != Port, "Http2Port", $"must differ from Port ({Port})");
        Need(MaxBatchRows is >= 1 and <= 65_536, "MaxBatchRows", $"must be in [1, 65536], got {MaxBatchRows}");
        Need(MaxBatchWaitMicroseconds is >= 0 and <= 1_000_000, "MaxBatchWaitMicroseconds", $"must be in [0, 1000000], got {MaxBatchWaitMicroseconds}");
        Need(ScoringThreads is >= 0 and <= 1024, "ScoringThreads", $"must be in [0, 1024] (0 = one per core), got {ScoringThreads}");
        Need(MaxQueuedRequests >= 1, "MaxQueuedRequests", $"must be ≥ 1, got {MaxQueuedRequests}");
        Need(MaxConnections >= 1, "MaxConnections", $"must be ≥ 1, got {MaxConnections}");
        Need(MaxBodyBytes >= 64, "MaxBodyBytes", $"must be ≥ 64, got {MaxBodyBytes}");
        Need(MaxCandidates is >= 1 and <= 1_000_000, "MaxCandidates", $"must be in [1, 1000000], got {MaxCandidates}");
        Need(RequestTimeoutMilliseconds >= 1, "RequestTimeoutMilliseconds", $"must be ≥ 1, got {RequestTimeoutMilliseconds}");
        Need(RetryAfterSeconds >= 0, "RetryAfterSeconds", $"must be ≥ 0, got {RetryAfterSeconds}");
        Need(Enum.IsDefined(UnknownFields), "UnknownFields", $"must be Reject or Ignore, got {UnknownFields}");
        Need(ShutdownTimeoutSeconds >= 0, "ShutdownTimeoutSeconds", $"must be ≥ 0, got {ShutdownTimeoutSeconds}");
    }

    /// <summary>Names appear in URLs and metric labels: letters, digits, '-', '_', '.'; 1–64 characters.</summary>
    public static bool IsValidModelName(string name) =>
        name.Length is >= 1 and <= 64 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');
}
