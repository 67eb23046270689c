using System.Diagnostics;
using KdEngine.Server.Metrics;
using KdEngine.Server.Models;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace KdEngine.Server.Api;

/// <summary>
/// Wraps every request: counts it and times it into <see cref="ServerMetrics"/> (by model, endpoint and status), and turns
/// every exception into a JSON error — a <see cref="RequestException"/> into its status, a Kestrel
/// <see cref="BadHttpRequestException"/> (body too large, truncated body) into 413/400, anything else into a logged 500.
/// Nothing thrown by a request reaches Kestrel, and none of it can end the process.
/// </summary>
public sealed class ServiceMiddleware(RequestDelegate next, ServerMetrics metrics, ModelRegistry registry, ServerOptions options, ILogger<ServiceMiddleware> log)
{
    /// <summary>Runs the rest of the pipeline for one request, timing it and turning any exception into the JSON error answer.</summary>
    public async Task InvokeAsync(HttpContext ctx)
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            await next(ctx);
        }
        catch (Exception e) when (!ctx.Response.HasStarted && !ctx.RequestAborted.IsCancellationRequested)
        {
            var error = e switch
            {
                RequestException r => r,
                BadHttpRequestException { StatusCode: 413 } => Endpoints.BodyTooLarge(options.MaxBodyBytes),
                BadHttpRequestException b => new RequestException(b.StatusCode, ErrorCodes.BadRequest, $"bad HTTP request: {b.Message}"),
                _ => null,
            };
            if (error is null)
            {
                log.LogError(e, "internal error on {Method} {Path}", ctx.Request.Method, ctx.Request.Path);
                error = new RequestException(500, ErrorCodes.InternalError, $"internal error: {e.GetType().Name}: {e.Message}");
            }
            ctx.Response.Clear();
            await Endpoints.WriteError(ctx, error, options.RetryAfterSeconds);
        }
        catch (Exception e)
        {
            // The response has begun or the client is gone: nothing can be answered; record and move on.
            if (!ctx.RequestAborted.IsCancellationRequested) log.LogWarning(e, "request failed after its response began: {Method} {Path}", ctx.Request.Method, ctx.Request.Path);
            if (!ctx.Response.HasStarted) ctx.Response.StatusCode = 499; // client closed request (nginx's convention), for the metrics
        }
        finally
        {
            string endpoint = ctx.GetEndpoint()?.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName ?? "none";
            string model = ctx.GetRouteValue("name") is string name && registry.TryGet(name, out _) ? name : "";
            metrics.Request(model, endpoint, ctx.Response.StatusCode, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
    }
}
