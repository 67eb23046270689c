using System.Diagnostics;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using NUnit.Framework;

namespace KdEngine.Server.Tests;

/// <summary>Graceful shutdown: stop accepting, let in-flight requests finish (bounded), then return 0.</summary>
[TestFixture]
public sealed class ShutdownTests
{
    [Test]
    public async Task Stopping_drains_the_request_in_flight_then_refuses_new_connections_and_run_returns_0()
    {
        using var dir = new TempDir();
        var (a, _, _) = TestModels.Pair(dir.Path);
        var options = TestService.Options(("m", a));
        options.ScoringThreads = 1;
        var app = ServerHost.Build(options, b => b.Logging.ClearProviders());
        var run = ServerHost.RunAsync(app);
        var registry = app.Services.GetService(typeof(Models.ModelRegistry)) as Models.ModelRegistry;
        Uri address = null!;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            try { address = ServerHost.Address(app); if (registry!.IsReady) break; }
            catch (InvalidOperationException) { }
            await Task.Delay(20);
        }
        Assert.That(registry!.IsReady, Is.True);
        registry.TryGet("m", out var model);
        using var gate = new ManualResetEventSlim(false);
        using var entered = new SemaphoreSlim(0);
        model.Batcher.BeforeScore = () => { entered.Release(); gate.Wait(); };
        using var client = new HttpClient { BaseAddress = address };
        var inFlight = client.PostAsync("/v1/models/m:predict", new StringContent("""{"instances": [{"item_id": "item1"}, {"item_id": "item2"}]}"""));
        Assert.That(await entered.WaitAsync(TimeSpan.FromSeconds(30)), Is.True);

        var stopping = app.StopAsync(); // what SIGTERM triggers
        await Task.Delay(300);
        Assert.That(registry.IsReady, Is.False, "draining: not ready");
        Assert.That(stopping.IsCompleted, Is.False, "waits for the request in flight");
        using (var fresh = new HttpClient { BaseAddress = address })
            await Assert.ThatAsync(() => fresh.GetAsync("/healthz"), Throws.InstanceOf<HttpRequestException>(), "no new connections while draining");
        gate.Set();
        using var response = await inFlight;
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        await stopping;
        Assert.That(await run.WaitAsync(TimeSpan.FromSeconds(60)), Is.EqualTo(0));
    }

    [Test]
    public async Task A_request_that_outlasts_the_shutdown_timeout_does_not_hold_the_process()
    {
        using var dir = new TempDir();
        var (a, _, _) = TestModels.Pair(dir.Path);
        var options = TestService.Options(("m", a));
        options.ScoringThreads = 1;
        options.ShutdownTimeoutSeconds = 1;
        options.RequestTimeoutMilliseconds = 60_000;
        await using var service = await TestService.StartAsync(options);
        service.Registry.TryGet("m", out var model);
        using var gate = new ManualResetEventSlim(false);
        using var entered = new SemaphoreSlim(0);
        model.Batcher.BeforeScore = () => { entered.Release(); gate.Wait(TimeSpan.FromSeconds(30)); };
        var inFlight = service.PostAsync("/v1/models/m:predict", """{"instances": [{"item_id": "item1"}]}""");
        Assert.That(await entered.WaitAsync(TimeSpan.FromSeconds(30)), Is.True);
        var clock = Stopwatch.StartNew();
        await service.App.StopAsync();
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(20)), "the drain is bounded by ShutdownTimeoutSeconds");
        gate.Set();
        await Assert.ThatAsync(async () => (await inFlight).EnsureSuccessStatusCode(), Throws.Exception, "the request cut off by the bound fails");
    }
}
