using System.Net;
using System.Text;
using System.Text.Json;
using KdEngine.Server.Models;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using NUnit.Framework;

namespace KdEngine.Server.Tests;

/// <summary>The service on a real Kestrel at 127.0.0.1 with a free port, and an HTTP/1.1 client for it.</summary>
internal sealed class TestService : IAsyncDisposable
{
    private TestService(WebApplication app, HttpClient client)
    {
        App = app;
        Client = client;
    }

    public WebApplication App { get; }
    public HttpClient Client { get; }
    public ModelRegistry Registry => App.Services.GetRequiredService<ModelRegistry>();
    public Metrics.ServerMetrics Metrics => App.Services.GetRequiredService<Metrics.ServerMetrics>();
    public Uri Address => ServerHost.Address(App);

    public static ServerOptions Options(params (string Name, string Path)[] models)
    {
        var o = new ServerOptions { Port = 0, Host = "127.0.0.1", MaxBatchWaitMicroseconds = 500, ScoringThreads = 2 };
        foreach (var (name, path) in models) o.Models[name] = path;
        return o;
    }

    public static async Task<TestService> StartAsync(ServerOptions options, Func<string, Task>? beforeFirstLoad = null, bool waitReady = true)
    {
        var app = ServerHost.Build(options, b => b.Logging.ClearProviders());
        if (beforeFirstLoad is not null) app.Services.GetRequiredService<ModelRegistry>().BeforeFirstLoad = beforeFirstLoad;
        await app.StartAsync();
        var client = new HttpClient { BaseAddress = ServerHost.Address(app), Timeout = TimeSpan.FromSeconds(60) };
        var service = new TestService(app, client);
        if (waitReady) await service.WaitReadyAsync();
        return service;
    }

    public async Task WaitReadyAsync()
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            using var r = await Client.GetAsync("/readyz");
            if (r.StatusCode == HttpStatusCode.OK) return;
            await Task.Delay(20);
        }
        Assert.Fail("the service did not become ready within 60 s");
    }

    public Task<HttpResponseMessage> PostAsync(string path, string json) =>
        Client.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));

    /// <summary>Posts and parses the JSON response (status and document).</summary>
    public async Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> PostJsonAsync(string path, string json)
    {
        var response = await PostAsync(path, json);
        var text = await response.Content.ReadAsStringAsync();
        JsonElement body;
        try { body = JsonDocument.Parse(text).RootElement.Clone(); }
        catch (JsonException) { Assert.Fail($"{path}: response is not JSON ({(int)response.StatusCode}): {text}"); throw; }
        return (response.StatusCode, body, response);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}

/// <summary>A temporary directory removed after the test.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "kdengine-server-tests-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { }
    }
}
