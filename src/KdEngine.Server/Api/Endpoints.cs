using System.Buffers;
using System.IO.Pipelines;
using System.Text.Json;
using KdEngine.Server.Batching;
using KdEngine.Server.Metrics;
using KdEngine.Server.Models;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace KdEngine.Server.Api;

/// <summary>The HTTP API: each endpoint one small function over the registry, the batcher and the JSON edge.</summary>
public static class Endpoints
{
    /// <summary>Messages keep their quotes and non-ASCII text readable (<c>'C7'</c>, not <c>\u0027C7\u0027</c>): the
    /// body is application/json, never embedded in HTML, so the default encoder's HTML-safe escaping only hurts.</summary>
    internal static readonly JsonWriterOptions Readable = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Maps the API onto <paramref name="app"/>: predict, reload, one model's description, the model list, <c>/metrics</c>, and a JSON 404 for anything else.</summary>
    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/models/{name}:predict", Predict).WithName("predict");
        app.MapPost("/v1/models/{name}:reload", Reload).WithName("reload");
        app.MapGet("/v1/models/{name}", Describe).WithName("model");
        app.MapGet("/v1/models", List).WithName("models");
        app.MapGet("/metrics", WriteMetrics).WithName("metrics");
        app.MapFallback(NotFound).WithName("not_found");
    }

    /// <summary>
    /// <c>POST /v1/models/{name}:predict</c>: body → encoded rows (the version current on arrival) → the model's batcher →
    /// <c>{"model", "version", "checkpoint", "scores": [p, …]}</c> in row order. Every refusal is a JSON error with a
    /// 4xx status (503 for not ready / timed out), never a 500 for a client's mistake.
    /// </summary>
    internal static async Task Predict(HttpContext ctx, string name, ModelRegistry registry, ServerOptions options, ServerMetrics metrics)
    {
        if (!registry.TryGet(name, out var model)) throw UnknownModel(name, registry);
        var version = model.Current
            ?? throw new RequestException(503, ErrorCodes.NotReady, $"model '{name}' is still loading (GET /readyz says when every model is ready)");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        timeout.CancelAfter(options.RequestTimeoutMilliseconds);
        if (ctx.Request.ContentLength > options.MaxBodyBytes) throw BodyTooLarge(options.MaxBodyBytes);

        ScoreJob? job;
        model.Batcher.BeginArrival(); // a batch being gathered may wait for this request
        bool arrived = false;
        try
        {
            var body = ctx.Request.BodyReader;
            ReadResult read;
            try
            {
                read = await ReadWholeBody(body, timeout.Token);
            }
            catch (OperationCanceledException) when (!ctx.RequestAborted.IsCancellationRequested)
            {
                throw TimedOut(options, "while the body was being received");
            }
            try
            {
                job = PredictRequestReader.Read(read.Buffer, version, options.UnknownFields, options.MaxCandidates);
            }
            finally
            {
                body.AdvanceTo(read.Buffer.End);
            }
            metrics.Candidates(name, job?.Rows ?? 0);
            if (job is null)
            {
                await WriteScores(ctx, version, ReadOnlyMemory<float>.Empty);
                return;
            }
            arrived = true;
            if (!model.Batcher.TrySubmit(job, endArrival: true))
            {
                job.Release();
                if (registry.IsDraining) throw new RequestException(503, ErrorCodes.NotReady, "the service is shutting down", null);
                throw new RequestException(429, ErrorCodes.QueueFull,
                    $"model '{name}' has {options.MaxQueuedRequests} requests queued (Server:MaxQueuedRequests); retry later");
            }
        }
        finally
        {
            if (!arrived) model.Batcher.EndArrival();
        }
        try
        {
            await job.Completion.WaitAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (!ctx.RequestAborted.IsCancellationRequested)
        {
            job.Abandon();
            job.Release();
            throw TimedOut(options, "while it waited to be scored");
        }
        catch
        {
            job.Abandon();
            job.Release();
            throw; // client gone (nobody to answer), or a scoring failure (500, logged)
        }
        try
        {
            await WriteScores(ctx, version, job.Scores.AsMemory(0, job.Rows));
        }
        finally
        {
            job.Release();
        }
    }

    /// <summary>Reads until the body is complete without consuming it; the caller advances past it after parsing.</summary>
    private static async ValueTask<ReadResult> ReadWholeBody(PipeReader body, CancellationToken cancellationToken)
    {
        while (true)
        {
            var read = await body.ReadAsync(cancellationToken);
            if (read.IsCompleted) return read;
            body.AdvanceTo(read.Buffer.Start, read.Buffer.End);
        }
    }

    internal static async Task WriteScores(HttpContext ctx, ModelVersion version, ReadOnlyMemory<float> scores)
    {
        ctx.Response.StatusCode = 200;
        ctx.Response.ContentType = "application/json; charset=utf-8";
        WriteScores(ctx.Response.BodyWriter, version, scores.Span);
        await ctx.Response.BodyWriter.FlushAsync(ctx.RequestAborted);
    }

    /// <summary>The predict response: <c>{"model", "version", "checkpoint", "scores": [p, …]}</c>.</summary>
    public static void WriteScores(IBufferWriter<byte> output, ModelVersion version, ReadOnlySpan<float> scores)
    {
        using var w = new Utf8JsonWriter(output);
        w.WriteStartObject();
        w.WriteString("model"u8, version.Name);
        w.WriteNumber("version"u8, version.Version);
        w.WriteString("checkpoint"u8, version.ShortChecksum);
        w.WriteStartArray("scores"u8);
        foreach (float p in scores) w.WriteNumberValue(p); // shortest text that parses back to the same float
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary><c>POST /v1/models/{name}:reload</c>: re-reads the model's checkpoint file and swaps if it passes validation (422 with the reason otherwise).</summary>
    internal static async Task Reload(HttpContext ctx, string name, ModelRegistry registry)
    {
        if (!registry.TryGet(name, out _)) throw UnknownModel(name, registry);
        ReloadOutcome outcome;
        try
        {
            outcome = await registry.ReloadAsync(name, ctx.RequestAborted);
        }
        catch (ModelRefusedException e)
        {
            throw new RequestException(422, ErrorCodes.CheckpointRefused, e.Message + " The previous version keeps serving.");
        }
        await WriteJson(ctx, 200, w =>
        {
            w.WriteString("model", name);
            w.WriteNumber("version", outcome.Current.Version);
            w.WriteString("checkpoint", outcome.Current.ShortChecksum);
            w.WriteString("path", outcome.Current.Path);
            w.WriteString("loadedAt", outcome.Current.LoadedAt);
            w.WriteStartObject("previous");
            w.WriteNumber("version", outcome.Previous.Version);
            w.WriteString("checkpoint", outcome.Previous.ShortChecksum);
            w.WriteEndObject();
        });
    }

    /// <summary><c>GET /v1/models/{name}</c>: version, checkpoint, kind, parameter count, load time and the input schema (every field optional).</summary>
    internal static Task Describe(HttpContext ctx, string name, ModelRegistry registry)
    {
        if (!registry.TryGet(name, out var model)) throw UnknownModel(name, registry);
        var v = model.Current ?? throw new RequestException(503, ErrorCodes.NotReady, $"model '{name}' is still loading");
        return WriteJson(ctx, 200, w => DescribeVersion(w, v));
    }

    /// <summary><c>GET /v1/models</c>: every served model with its version (null while loading).</summary>
    internal static Task List(HttpContext ctx, ModelRegistry registry) => WriteJson(ctx, 200, w =>
    {
        w.WriteStartArray("models");
        foreach (var m in registry.Models)
        {
            w.WriteStartObject();
            w.WriteString("model", m.Name);
            if (m.Current is { } v)
            {
                w.WriteNumber("version", v.Version);
                w.WriteString("checkpoint", v.ShortChecksum);
            }
            else w.WriteNull("version");
            w.WriteEndObject();
        }
        w.WriteEndArray();
    });

    private static void DescribeVersion(Utf8JsonWriter w, ModelVersion v)
    {
        var read = new HashSet<string>(v.FieldsRead, StringComparer.Ordinal);
        w.WriteString("model", v.Name);
        w.WriteNumber("version", v.Version);
        w.WriteString("checkpoint", v.ShortChecksum);
        w.WriteString("sha256", v.Checksum);
        w.WriteString("path", v.Path);
        w.WriteString("kind", v.Kind.ToString().ToLowerInvariant());
        w.WriteNumber("parameters", v.Parameters);
        w.WriteString("loadedAt", v.LoadedAt);
        w.WriteStartArray("fields");
        foreach (var f in v.Schema.Schema.Fields)
        {
            w.WriteStartObject();
            w.WriteString("name", f.Name);
            w.WriteString("kind", RequestSchema.KindName(f));
            if (f.IsInput)
            {
                w.WriteBoolean("optional", true);
                w.WriteBoolean("readByModel", read.Contains(f.Name));
                if (f.Kind == Data.FieldKind.Multi) w.WriteString("separator", f.Separator.ToString());
                if (f.Privileged) w.WriteBoolean("privileged", true);
            }
            else w.WriteBoolean("ignored", true);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    internal static async Task WriteMetrics(HttpContext ctx, ServerMetrics metrics)
    {
        ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        await ctx.Response.WriteAsync(metrics.Render(), ctx.RequestAborted);
    }

    private static Task NotFound(HttpContext ctx) =>
        throw new RequestException(404, ErrorCodes.NotFound,
            $"no endpoint {ctx.Request.Method} {ctx.Request.Path} (POST /v1/models/{{name}}:predict, POST /v1/models/{{name}}:reload, GET /v1/models/{{name}}, GET /v1/models, GET /healthz, GET /readyz, GET /metrics)");

    internal static async Task WriteJson(HttpContext ctx, int status, Action<Utf8JsonWriter> body)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json; charset=utf-8";
        using (var w = new Utf8JsonWriter(ctx.Response.BodyWriter, Readable))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        await ctx.Response.BodyWriter.FlushAsync(ctx.RequestAborted);
    }

    /// <summary>Writes <paramref name="e"/> as <c>{"error": {...}}</c> (with Retry-After for 429/503).</summary>
    internal static Task WriteError(HttpContext ctx, RequestException e, int retryAfterSeconds)
    {
        if (e.Status is 429 or 503) ctx.Response.Headers.RetryAfter = retryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return WriteJson(ctx, e.Status, w =>
        {
            w.WriteStartObject("error");
            w.WriteNumber("status", e.Status);
            w.WriteString("code", e.Code);
            w.WriteString("message", e.Message);
            if (e.Field is not null) w.WriteString("field", e.Field);
            if (e.Location is not null)
            {
                w.WriteString("location", e.Location);
                if (e.Index is int i) w.WriteNumber(e.Location == "instances" ? "instance" : "candidate", i);
            }
            w.WriteEndObject();
        });
    }

    private static RequestException UnknownModel(string name, ModelRegistry registry) =>
        new(404, ErrorCodes.UnknownModel, $"no model '{name}' (served: {string.Join(", ", registry.Models.Select(m => m.Name))})");

    internal static RequestException BodyTooLarge(long limit) =>
        new(413, ErrorCodes.BodyTooLarge, $"the request body exceeds {limit} bytes (Server:MaxBodyBytes); split the request");

    private static RequestException TimedOut(ServerOptions options, string when) =>
        new(503, ErrorCodes.Timeout, $"the request timed out after {options.RequestTimeoutMilliseconds} ms (Server:RequestTimeoutMilliseconds) {when}; retry later");
}
