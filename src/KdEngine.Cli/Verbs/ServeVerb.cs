using System.CommandLine;
using System.Globalization;
using KdEngine.Cli.Options;
using KdEngine.Server;

namespace KdEngine.Cli.Verbs;

/// <summary>
/// <c>serve</c>: the ranking service (src/KdEngine.Server) on Kestrel. The options map onto the service's configuration
/// keys (<c>Server:…</c>, see <see cref="ServerOptions"/>), whose defaults they show; environment variables
/// (<c>Server__MaxCandidates=…</c>) set the same keys.
/// </summary>
internal static class ServeVerb
{
    private static readonly ServerOptions Defaults = new();

    public static Command Create()
    {
        var models = CliOptions.Repeated("--model", "NAME=FILE", "a model to serve under NAME (letters, digits, - _ .) from a checkpoint with its preprocessing; repeat for several");
        models.Required = true;
        var host = CliOptions.Parsed("--host", "ADDRESS", "address to listen on: an IP address, localhost or * (all interfaces)", text => text, () => Defaults.Host);
        var port = CliOptions.Int("--port", "P", "HTTP/1.1 port (0 = a free port, printed at start)", Defaults.Port, 0, 65535);
        var http2Port = CliOptions.OptionalInt("--http2-port", "P", "also serve cleartext HTTP/2 with prior knowledge (h2c) on this port", 0, 65535);
        var maxBatchRows = CliOptions.Int("--max-batch-rows", "N", "largest Predictor call the batcher forms; bigger requests are scored in chunks of N",
            Defaults.MaxBatchRows, 1, 65_536);
        var maxWait = CliOptions.Int("--max-wait-us", "µS", "how long the oldest queued request waits for others to join its batch",
            Defaults.MaxBatchWaitMicroseconds, 0, 1_000_000);
        var threads = CliOptions.Int("--scoring-threads", "N", "scoring threads per model, each with its own Predictor scratch (0 = one per core)",
            Defaults.ScoringThreads, 0, 1024);
        var maxQueue = CliOptions.Int("--max-queue", "N", "requests queued per model before new ones get 429 with Retry-After", Defaults.MaxQueuedRequests, 1);
        var maxConnections = CliOptions.Int("--max-connections", "N", "open connections at once; Kestrel closes a new connection beyond it at once", Defaults.MaxConnections, 1);
        var maxBody = CliOptions.Long("--max-body-bytes", "N", "largest request body (413 beyond)", Defaults.MaxBodyBytes, 64);
        var maxCandidates = CliOptions.Int("--max-candidates", "N", "most candidates (or instances) per request (413 beyond)", Defaults.MaxCandidates, 1, 1_000_000);
        var timeout = CliOptions.Int("--timeout-ms", "MS", "time from arrival to answer beyond which a request gets 503 with Retry-After",
            Defaults.RequestTimeoutMilliseconds, 1);
        var unknownFields = CliOptions.Choice("--unknown-fields", "a request field the model's schema does not know: reject (400) or ignore",
            ["reject", "ignore"], Defaults.UnknownFields.ToString().ToLowerInvariant());
        var allowSchemaChange = new Option<bool>("--allow-schema-change")
        {
            Description = "let a reload swap in a checkpoint whose input fields differ from the serving one's (refused otherwise)",
        };
        var shutdown = CliOptions.Int("--shutdown-timeout", "S", "on SIGTERM/Ctrl-C: seconds in-flight requests may take to finish", Defaults.ShutdownTimeoutSeconds, 0);

        var command = new Command("serve",
            "Serve models over HTTP: candidates per request, dynamic batching, hot reload, health and Prometheus metrics. " +
            "POST /v1/models/NAME:predict takes {\"context\": {…}, \"candidates\": [{…}, …]} or {\"instances\": [{…}, …]} of raw field " +
            "values (mapped by the checkpoint's preprocessing) and answers {\"model\", \"version\", \"checkpoint\", \"scores\"}; " +
            "POST /v1/models/NAME:reload re-reads the checkpoint file and swaps it in if it passes validation; GET /v1/models/NAME, " +
            "/healthz, /readyz, /metrics. SIGTERM drains in-flight requests and exits 0 (docs/serving.md).");
        foreach (var option in new Option[] { models, host, port, http2Port, maxBatchRows, maxWait, threads, maxQueue, maxConnections, maxBody, maxCandidates, timeout,
                     unknownFields, allowSchemaChange, shutdown })
            command.Options.Add(option);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            var inv = CultureInfo.InvariantCulture;
            var settings = new List<KeyValuePair<string, string?>>();
            void Set(string key, object? value)
            {
                if (value is not null) settings.Add(new($"{ServerOptions.SectionName}:{key}", Convert.ToString(value, inv)));
            }
            foreach (var spec in parse.GetValue(models)!)
            {
                int eq = spec.IndexOf('=');
                if (eq <= 0 || eq == spec.Length - 1)
                    throw new CliException($"serve: option '--model' expects NAME=FILE, got '{spec}'.");
                string name = spec[..eq], file = spec[(eq + 1)..];
                if (!ServerOptions.IsValidModelName(name))
                    throw new CliException($"serve: model name '{name}' must be 1–64 letters, digits, '-', '_' or '.'.");
                if (settings.Any(s => s.Key == $"{ServerOptions.SectionName}:Models:{name}"))
                    throw new CliException($"serve: model name '{name}' is given twice.");
                if (!File.Exists(file)) throw new CliException($"serve: model '{name}': checkpoint '{file}' not found.");
                Set($"Models:{name}", Path.GetFullPath(file));
            }
            Set("Host", parse.GetValue(host));
            Set("Port", parse.GetValue(port));
            Set("Http2Port", parse.GetValue(http2Port));
            Set("MaxBatchRows", parse.GetValue(maxBatchRows));
            Set("MaxBatchWaitMicroseconds", parse.GetValue(maxWait));
            Set("ScoringThreads", parse.GetValue(threads));
            Set("MaxQueuedRequests", parse.GetValue(maxQueue));
            Set("MaxConnections", parse.GetValue(maxConnections));
            Set("MaxBodyBytes", parse.GetValue(maxBody));
            Set("MaxCandidates", parse.GetValue(maxCandidates));
            Set("RequestTimeoutMilliseconds", parse.GetValue(timeout));
            Set("UnknownFields", parse.GetValue(unknownFields));
            Set("AllowSchemaChange", parse.GetValue(allowSchemaChange));
            Set("ShutdownTimeoutSeconds", parse.GetValue(shutdown));

            var app = ServerHost.Build([], settings);
            var registry = (KdEngine.Server.Models.ModelRegistry)app.Services.GetService(typeof(KdEngine.Server.Models.ModelRegistry))!;
            // Synchronous on purpose: the host's own SIGTERM/Ctrl-C handling drains in-flight requests (bounded by
            // --shutdown-timeout); an async action would let the parser's termination handler cut that short.
            int code = ServerHost.RunAsync(app, started: a =>
            {
                var h2 = ServerHost.Http2Address(a);
                o.Line($"kdengine serve: listening on {ServerHost.Address(a)} (HTTP/1.1){(h2 is null ? "" : $" and {h2} (h2c)")}; " +
                       "models load and warm up in the background (GET /readyz answers 200 when every model is ready); SIGTERM or Ctrl-C drains and stops.");
            }).GetAwaiter().GetResult();
            if (code != 0) throw new CliException($"serve: {registry.StartupFailure}");
            o.Line("kdengine serve: stopped");
            return 0;
        });
        return command;
    }
}
