using System.Net;
using System.Text.Json;
using KdEngine.Server.Api;
using KdEngine.Server.Metrics;
using KdEngine.Server.Models;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace KdEngine.Server;

/// <summary>
/// Builds and runs the ranking service: Kestrel (HTTP/1.1, and cleartext HTTP/2 on a second port) with the <see cref="Endpoints"/>, the
/// health checks (<c>/healthz</c> live, <c>/readyz</c> ready once every model is warmed up and while not draining) and
/// <see cref="ServiceMiddleware"/> (metrics and JSON errors) — a thin host over the library's Predictor.
/// </summary>
/// <example>
/// <code>
/// await using var app = ServerHost.Build(new ServerOptions { Models = { ["student"] = "student.kde" }, Port = 0 });
/// await app.StartAsync();              // models load and warm up in the background; /readyz turns 200 when done
/// Uri address = ServerHost.Address(app);
/// </code>
/// </example>
public static class ServerHost
{
    /// <summary>
    /// Builds the service from configuration: <paramref name="args"/> (command-line configuration such as
    /// <c>--Server:Port=9000</c>), environment variables (<c>Server__Port=9000</c>), appsettings.json and
    /// <paramref name="settings"/> (what <c>kdengine serve</c> passes), with <see cref="ServerOptions"/> bound from the
    /// <c>Server</c> section.
    /// </summary>
    public static WebApplication Build(string[] args, IEnumerable<KeyValuePair<string, string?>>? settings = null)
    {
        var builder = WebApplication.CreateSlimBuilder(args);
        QuietDefaults(builder);
        if (settings is not null) builder.Configuration.AddInMemoryCollection(settings);
        var options = builder.Configuration.GetSection(ServerOptions.SectionName).Get<ServerOptions>() ?? new ServerOptions();
        return Build(builder, options);
    }

    /// <summary>Builds the service with explicit options (tests, embedding); <paramref name="configure"/> may adjust the builder (logging, …).</summary>
    public static WebApplication Build(ServerOptions options, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        QuietDefaults(builder);
        configure?.Invoke(builder);
        return Build(builder, options);
    }

    /// <summary>
    /// ASP.NET Core logs every request at Information (two lines each): at thousands of requests per second that is a
    /// measurable share of the CPU. The default here is Warning for Microsoft.AspNetCore — the lowest-precedence
    /// configuration source, so <c>Logging:LogLevel:Microsoft.AspNetCore</c> from any other source still wins.
    /// </summary>
    private static void QuietDefaults(WebApplicationBuilder builder) =>
        builder.Configuration.Sources.Insert(0, new Microsoft.Extensions.Configuration.Memory.MemoryConfigurationSource
        {
            InitialData = [new("Logging:LogLevel:Microsoft.AspNetCore", "Warning")],
        });

    private static WebApplication Build(WebApplicationBuilder builder, ServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<ServerMetrics>();
        builder.Services.AddSingleton<ModelRegistry>();
        builder.Services.AddHostedService<ModelStartup>();
        builder.Services.AddHealthChecks().AddCheck<ReadinessCheck>("models", tags: ["ready"]);
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = TimeSpan.FromSeconds(options.ShutdownTimeoutSeconds));
        var listeners = new Listeners();
        builder.Services.AddSingleton(listeners);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            k.Limits.MaxConcurrentConnections = options.MaxConnections;
            var ip = options.Host switch
            {
                "localhost" => IPAddress.Loopback,
                "*" => IPAddress.Any,
                _ => IPAddress.TryParse(options.Host, out var parsed) ? parsed
                    : throw new ArgumentException($"{ServerOptions.SectionName}:Host: '{options.Host}' is not an IP address, 'localhost' or '*'"),
            };
            // Without TLS there is no ALPN to choose the protocol, so a cleartext port speaks one: HTTP/1.1 on Port,
            // HTTP/2 with prior knowledge (h2c) on Http2Port.
            k.Listen(ip, options.Port, l => { l.Protocols = HttpProtocols.Http1; listeners.Http1 = l; });
            if (options.Http2Port is int h2) k.Listen(ip, h2, l => { l.Protocols = HttpProtocols.Http2; listeners.Http2 = l; });
        });

        var app = builder.Build();
        var registry = app.Services.GetRequiredService<ModelRegistry>();
        app.Lifetime.ApplicationStopping.Register(registry.BeginDraining);
        app.UseRouting();
        app.UseMiddleware<ServiceMiddleware>();
        app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteHealth }).WithName("healthz");
        app.MapHealthChecks("/readyz", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready"), ResponseWriter = WriteHealth }).WithName("readyz");
        Endpoints.Map(app);
        return app;
    }

    /// <summary>The HTTP/1.1 address the started service listens on (with the real port when <see cref="ServerOptions.Port"/> was 0).</summary>
    public static Uri Address(WebApplication app) => AddressOf(app.Services.GetRequiredService<Listeners>().Http1);

    /// <summary>The cleartext HTTP/2 (prior knowledge) address, or null without <see cref="ServerOptions.Http2Port"/>.</summary>
    public static Uri? Http2Address(WebApplication app) =>
        app.Services.GetRequiredService<Listeners>().Http2 is { } l ? AddressOf(l) : null;

    private static Uri AddressOf(ListenOptions? listen)
    {
        var endpoint = listen?.IPEndPoint ?? throw new InvalidOperationException("the service has not started");
        if (endpoint.Port == 0) throw new InvalidOperationException("the service has not started");
        var host = endpoint.Address.Equals(IPAddress.Any) ? IPAddress.Loopback : endpoint.Address;
        return new UriBuilder("http", host.ToString(), endpoint.Port).Uri;
    }

    /// <summary>Kestrel's listen options (their endpoints carry the bound port once started).</summary>
    private sealed class Listeners
    {
        public ListenOptions? Http1 { get; set; }
        public ListenOptions? Http2 { get; set; }
    }

    /// <summary>
    /// Runs until SIGTERM/Ctrl-C (then stops accepting, lets in-flight requests finish within
    /// <see cref="ServerOptions.ShutdownTimeoutSeconds"/>, scores what is queued) and returns 0 — or 1 when a model could
    /// not be loaded at start (<see cref="ModelRegistry.StartupFailure"/> says why). <paramref name="started"/> runs once
    /// Kestrel listens (the bound addresses are known then).
    /// </summary>
    public static async Task<int> RunAsync(WebApplication app, Action<WebApplication>? started = null)
    {
        ArgumentNullException.ThrowIfNull(app);
        var registry = app.Services.GetRequiredService<ModelRegistry>();
        try
        {
            await app.StartAsync();
            started?.Invoke(app);
            await app.WaitForShutdownAsync();
        }
        catch (OperationCanceledException) when (registry.StartupFailure is not null)
        {
            // A model refused while the host was still starting cancels the start; the failure was logged.
        }
        finally
        {
            await app.DisposeAsync(); // disposes the registry last: its batchers score what is queued, then stop
        }
        return registry.StartupFailure is null ? 0 : 1;
    }

    private static Task WriteHealth(HttpContext ctx, HealthReport report)
    {
        ctx.Response.ContentType = "application/json; charset=utf-8";
        var registry = ctx.RequestServices.GetRequiredService<ModelRegistry>();
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, Endpoints.Readable))
        {
            w.WriteStartObject();
            w.WriteString("status", report.Status == HealthStatus.Healthy ? "ok" : "unavailable");
            foreach (var (_, entry) in report.Entries)
                if (entry.Description is { } d) w.WriteString("reason", d);
            w.WriteStartObject("models");
            foreach (var m in registry.Models)
            {
                w.WriteStartObject(m.Name);
                if (m.Current is { } v)
                {
                    w.WriteNumber("version", v.Version);
                    w.WriteString("checkpoint", v.ShortChecksum);
                }
                else w.WriteNull("version");
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return ctx.Response.Body.WriteAsync(ms.ToArray()).AsTask();
    }

    /// <summary>Ready = every model serves a warmed-up version and the service is not draining.</summary>
    private sealed class ReadinessCheck(ModelRegistry registry) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            if (registry.IsReady) return Task.FromResult(HealthCheckResult.Healthy());
            string why = registry.IsDraining ? "draining: the service is shutting down"
                : registry.StartupFailure ?? "loading: " + string.Join(", ", registry.Models.Where(m => m.Current is null).Select(m => m.Name));
            return Task.FromResult(HealthCheckResult.Unhealthy(why));
        }
    }

    /// <summary>Loads and warms up every model after the server has started (so /healthz answers at once); a refused checkpoint stops the service.</summary>
    private sealed class ModelStartup(ModelRegistry registry, IHostApplicationLifetime lifetime, ILogger<ModelStartup> log) : BackgroundService
    {
        protected override async Task ExecuteAsync(CancellationToken stoppingToken)
        {
            try
            {
                await Task.Yield();
                await registry.LoadAllAsync(stoppingToken);
                foreach (var m in registry.Models)
                    log.LogInformation("model '{Name}' ready: version {Version}, checkpoint {Checkpoint}, {Kind}, {Parameters} parameters, from {Path}",
                        m.Name, m.Current!.Version, m.Current.ShortChecksum, m.Current.Kind, m.Current.Parameters, m.Path);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
            }
            catch (Exception e)
            {
                log.LogCritical("cannot start: {Message}", e.Message);
                lifetime.StopApplication();
            }
        }
    }
}
