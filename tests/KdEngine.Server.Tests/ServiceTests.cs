using System.Net;
using System.Text.Json;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Serving;
using Microsoft.Extensions.Logging;
using NUnit.Framework;

namespace KdEngine.Server.Tests;

/// <summary>End to end over HTTP on loopback: scores, model info, health, metrics, HTTP/2.</summary>
[TestFixture]
public sealed class ServiceTests
{
    private static float[] Scores(JsonElement body) => body.GetProperty("scores").EnumerateArray().Select(x => x.GetSingle()).ToArray();

    private static void AssertBitIdentical(float[] actual, float[] expected, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        for (int i = 0; i < expected.Length; i++)
            Assert.That(BitConverter.SingleToInt32Bits(actual[i]), Is.EqualTo(BitConverter.SingleToInt32Bits(expected[i])),
                $"{what}: row {i}: {actual[i]:R} vs {expected[i]:R}");
    }

    [TestCase(ModelKind.Dnn)]
    [TestCase(ModelKind.Wdl)]
    public async Task Instances_score_exactly_as_the_predictor_on_the_same_raw_rows_and_chunks(ModelKind kind)
    {
        using var dir = new TempDir();
        var schema = TestModels.Schema();
        var pre = TestModels.Preprocessor(schema);
        var path = TestModels.Save(dir.Path, "m.kde", TestModels.Model(pre, kind, 3), pre);
        var loaded = Predictor.Load(path);
        var rows = TestModels.Rows(loaded.Preprocessor!.Schema, 300, seed: 9);
        // A lone request of 300 rows is scored in chunks of MaxBatchRows = 64; the same chunks through the Predictor must
        // give the same bits (a row's last bits may depend on its batch-mates in the GEMMs, so the chunking is the same).
        var records = rows.Select(r => r.Record).ToArray();
        var expected = records.Chunk(64).SelectMany(chunk => TestModels.Expected(loaded, chunk)).ToArray();

        var options = TestService.Options(("m", path));
        options.MaxBatchRows = 64;
        await using var service = await TestService.StartAsync(options);
        var (status, body, _) = await service.PostJsonAsync("/v1/models/m:predict", "{\"instances\": [" + string.Join(", ", rows.Select(r => r.Json)) + "]}");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("model").GetString(), Is.EqualTo("m"));
        Assert.That(body.GetProperty("version").GetInt64(), Is.EqualTo(1));
        Assert.That(body.GetProperty("checkpoint").GetString(), Has.Length.EqualTo(16));
        AssertBitIdentical(Scores(body), expected, "instances");
    }

    [Test]
    public async Task Context_applies_to_every_candidate_and_a_candidate_overrides_it()
    {
        using var dir = new TempDir();
        var (a, _, _) = TestModels.Pair(dir.Path);
        var predictor = Predictor.Load(a);
        var schema = predictor.Preprocessor!.Schema;
        await using var service = await TestService.StartAsync(TestService.Options(("m", a)));

        // The context (user side) comes after the candidates in the object: order must not matter.
        string json = """
            {"candidates": [
               {"item_id": "item3", "item_shop": "shop1", "tags": ["t1", "t2"]},
               {"item_id": "item7", "user_city": "city2"},
               {"item_id": 17, "I1": null},
               {"item_id": "never-seen", "tags": "t0|t4"}
             ],
             "context": {"user_city": "city5", "I1": 12, "I2": "3.5", "uid": "u-77", "label": 1}}
            """;
        var (status, body, _) = await service.PostJsonAsync("/v1/models/m:predict", json);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());

        RawRecord Row(string item, string? city = "city5", double i1 = 12, string? shop = null, string? tags = null)
        {
            var r = new RawRecord(schema);
            r.Values[schema.IndexOf("user_city")] = city;
            r.Numbers[schema.IndexOf("I1")] = i1;
            r.Numbers[schema.IndexOf("I2")] = 3.5;
            r.Values[schema.IndexOf("item_id")] = item;
            r.Values[schema.IndexOf("item_shop")] = shop;
            r.Values[schema.IndexOf("tags")] = tags;
            return r;
        }
        var expected = TestModels.Expected(predictor, [
            Row("item3", shop: "shop1", tags: "t1|t2"),
            Row("item7", city: "city2"),
            Row("17", i1: double.NaN),
            Row("never-seen", tags: "t0|t4"),
        ]);
        AssertBitIdentical(Scores(body), expected, "candidates");
        Assert.That(expected.Distinct().Count(), Is.EqualTo(4), "the four rows must score differently for the test to mean something");
    }

    [Test]
    public async Task Empty_candidates_answer_an_empty_score_list()
    {
        using var dir = new TempDir();
        var (a, _, _) = TestModels.Pair(dir.Path);
        await using var service = await TestService.StartAsync(TestService.Options(("m", a)));
        var (status, body, _) = await service.PostJsonAsync("/v1/models/m:predict", """{"context": {"I1": 3}, "candidates": []}""");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(body.GetProperty("scores").GetArrayLength(), Is.EqualTo(0));
    }

    [Test]
    public async Task Http2_with_prior_knowledge_is_served_on_its_own_port()
    {
        using var dir = new TempDir();
        var (a, _, _) = TestModels.Pair(dir.Path);
        var options = TestService.Options(("m", a));
        options.Http2Port = 0;
        await using var service = await TestService.StartAsync(options);
        using var client = new HttpClient { BaseAddress = ServerHost.Http2Address(service.App), DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var response = await client.PostAsync("/v1/models/m:predict", new StringContent("""{"instances": [{"item_id": "item1"}, {"item_id": "item2"}]}"""));
        Assert.That(response.Version, Is.EqualTo(HttpVersion.Version20));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.That(body.GetProperty("scores").GetArrayLength(), Is.EqualTo(2));
    }

    [Test]
    public async Task Model_info_gives_version_kind_parameters_and_optional_fields()
    {
        using var dir = new TempDir();
        var (a, _, _) = TestModels.Pair(dir.Path);
        var predictor = Predictor.Load(a);
        await using var service = await TestService.StartAsync(TestService.Options(("m", a)));
        var text = await service.Client.GetStringAsync("/v1/models/m");
        var body = JsonDocument.Parse(text).RootElement;
        Assert.That(body.GetProperty("version").GetInt64(), Is.EqualTo(1));
        Assert.That(body.GetProperty("kind").GetString(), Is.EqualTo("dnn"));
        Assert.That(body.GetProperty("parameters").GetInt64(), Is.EqualTo(CtrPipelineParameterCount(a)));
        Assert.That(body.GetProperty("sha256").GetString(), Has.Length.EqualTo(64));
        Assert.That(body.GetProperty("sha256").GetString()!, Does.StartWith(body.GetProperty("checkpoint").GetString()!));
        Assert.That(DateTimeOffset.Parse(body.GetProperty("loadedAt").GetString()!, System.Globalization.CultureInfo.InvariantCulture),
            Is.EqualTo(DateTimeOffset.UtcNow).Within(TimeSpan.FromMinutes(5)));
        var fields = body.GetProperty("fields").EnumerateArray().ToDictionary(f => f.GetProperty("name").GetString()!);
        Assert.That(fields.Keys, Is.EquivalentTo(new[] { "label", "I1", "I2", "user_city", "item_id", "item_shop", "tags", "uid" }));
        Assert.That(fields["item_id"].GetProperty("optional").GetBoolean(), Is.True);
        Assert.That(fields["item_id"].GetProperty("readByModel").GetBoolean(), Is.True);
        Assert.That(fields["tags"].GetProperty("kind").GetString(), Is.EqualTo("multi"));
        Assert.That(fields["tags"].GetProperty("readByModel").GetBoolean(), Is.False, "zoo models read single-valued ids only");
        Assert.That(fields["label"].GetProperty("ignored").GetBoolean(), Is.True);
        Assert.That(predictor.InputColumns, Is.EqualTo(5));

        var list = JsonDocument.Parse(await service.Client.GetStringAsync("/v1/models")).RootElement.GetProperty("models");
        Assert.That(list.GetArrayLength(), Is.EqualTo(1));
        Assert.That(list[0].GetProperty("model").GetString(), Is.EqualTo("m"));
    }

    private static long CtrPipelineParameterCount(string path) => ModelCheckpoint.Load(path).Model.ParameterCount();

    [Test]
    public async Task Readiness_is_false_until_every_model_has_loaded_and_warmed_up()
    {
        using var dir = new TempDir();
        var (a, b, _) = TestModels.Pair(dir.Path);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reached = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var service = await TestService.StartAsync(TestService.Options(("first", a), ("second", b)), beforeFirstLoad: async name =>
        {
            if (name == "second")
            {
                reached.TrySetResult(name);
                await gate.Task;
            }
        }, waitReady: false);

        Assert.That(await reached.Task.WaitAsync(TimeSpan.FromSeconds(30)), Is.EqualTo("second"));
        using (var live = await service.Client.GetAsync("/healthz"))
            Assert.That(live.StatusCode, Is.EqualTo(HttpStatusCode.OK), "live while loading");
        using (var ready = await service.Client.GetAsync("/readyz"))
        {
            Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(await ready.Content.ReadAsStringAsync(), Does.Contain("loading: second"));
        }
        var (status, body, _) = await service.PostJsonAsync("/v1/models/second:predict", """{"instances": [{"item_id": "item1"}]}""");
        Assert.That((int)status, Is.EqualTo(503));
        Assert.That(body.GetProperty("error").GetProperty("code").GetString(), Is.EqualTo("not_ready"));
        (status, _, _) = await service.PostJsonAsync("/v1/models/first:predict", """{"instances": [{"item_id": "item1"}]}""");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), "a model that is loaded already answers");

        gate.SetResult();
        await service.WaitReadyAsync();
        var readyBody = JsonDocument.Parse(await service.Client.GetStringAsync("/readyz")).RootElement;
        Assert.That(readyBody.GetProperty("status").GetString(), Is.EqualTo("ok"));
        Assert.That(readyBody.GetProperty("models").GetProperty("second").GetProperty("version").GetInt64(), Is.EqualTo(1));
    }

    [Test]
    public async Task A_checkpoint_refused_at_start_stops_the_service_with_its_reason()
    {
        using var dir = new TempDir();
        var (a, _, _) = TestModels.Pair(dir.Path);
        var corrupt = TestModels.Corrupt(a, dir.File("corrupt.kde"));
        var app = ServerHost.Build(TestService.Options(("m", corrupt)), b => b.Logging.ClearProviders());
        var run = ServerHost.RunAsync(app);
        Assert.That(await run.WaitAsync(TimeSpan.FromSeconds(60)), Is.EqualTo(1));
    }

    [Test]
    public async Task Metrics_count_requests_by_model_and_status_and_show_batches_and_versions()
    {
        using var dir = new TempDir();
        var (a, _, _) = TestModels.Pair(dir.Path);
        await using var service = await TestService.StartAsync(TestService.Options(("m", a)));
        for (int i = 0; i < 3; i++)
            Assert.That((await service.PostJsonAsync("/v1/models/m:predict", """{"instances": [{"item_id": "item1"}, {"item_id": "item2"}]}""")).Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((int)(await service.PostJsonAsync("/v1/models/m:predict", "{not json")).Status, Is.EqualTo(400));
        Assert.That((int)(await service.PostJsonAsync("/v1/models/nope:predict", "{}")).Status, Is.EqualTo(404));
        var text = await service.Client.GetStringAsync("/metrics");
        var checkpoint = JsonDocument.Parse(await service.Client.GetStringAsync("/v1/models/m")).RootElement.GetProperty("checkpoint").GetString();
        Assert.That(text, Does.Contain("kdengine_requests_total{model=\"m\",endpoint=\"predict\",status=\"200\"} 3\n"));
        Assert.That(text, Does.Contain("kdengine_requests_total{model=\"m\",endpoint=\"predict\",status=\"400\"} 1\n"));
        Assert.That(text, Does.Contain("kdengine_requests_total{model=\"\",endpoint=\"predict\",status=\"404\"} 1\n"), "unknown names share one label");
        Assert.That(text, Does.Contain("kdengine_request_duration_seconds_count{model=\"m\",endpoint=\"predict\"} 4\n"));
        Assert.That(text, Does.Contain("kdengine_candidates_per_request_bucket{model=\"m\",le=\"2\"} 3\n"));
        Assert.That(text, Does.Contain("kdengine_batch_rows_count{model=\"m\"}"));
        Assert.That(text, Does.Contain("kdengine_queue_wait_seconds_count{model=\"m\"}"));
        Assert.That(text, Does.Contain("kdengine_model_version{model=\"m\"} 1\n"));
        Assert.That(text, Does.Contain($"kdengine_model_info{{model=\"m\",version=\"1\",checkpoint=\"{checkpoint}\"}} 1\n"));
        Assert.That(text, Does.Contain("# TYPE kdengine_request_duration_seconds histogram\n"));
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith('#')))
            Assert.That(line, Does.Match(@"^[a-z_]+(\{[^}]*\})? [-+0-9.eE]+(Inf)?$"), "Prometheus text format");
    }
}
