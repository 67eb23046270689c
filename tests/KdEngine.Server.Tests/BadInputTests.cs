using System.Net;
using System.Text;
using KdEngine.Server.Batching;
using NUnit.Framework;

namespace KdEngine.Server.Tests;

/// <summary>
/// Every refusal the API documents (docs/serving.md, "Errors"): status, code, the field and the row named — and the
/// service answering normally right after each one.
/// </summary>
[TestFixture]
public sealed class BadInputTests
{
    private TempDir _dir = null!;
    private TestService _service = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        _dir = new TempDir();
        var (a, _, _) = TestModels.Pair(_dir.Path);
        var options = TestService.Options(("m", a));
        options.MaxCandidates = 50;
        options.MaxBodyBytes = 16 * 1024;
        _service = await TestService.StartAsync(options);
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        await _service.DisposeAsync();
        _dir.Dispose();
    }

    private async Task Refused(string json, int status, string code, string? field = null, string? location = null, int? index = null,
        string? messageContains = null, string path = "/v1/models/m:predict")
    {
        var (actual, body, _) = await _service.PostJsonAsync(path, json);
        var error = body.GetProperty("error");
        Assert.That((int)actual, Is.EqualTo(status), body.ToString());
        Assert.That(error.GetProperty("status").GetInt32(), Is.EqualTo(status));
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo(code), body.ToString());
        Assert.That(error.TryGetProperty("field", out var f) ? f.GetString() : null, Is.EqualTo(field), body.ToString());
        Assert.That(error.TryGetProperty("location", out var l) ? l.GetString() : null, Is.EqualTo(location), body.ToString());
        int? actualIndex = error.TryGetProperty("candidate", out var c) ? c.GetInt32() : error.TryGetProperty("instance", out var i) ? i.GetInt32() : null;
        Assert.That(actualIndex, Is.EqualTo(index), body.ToString());
        if (messageContains is not null) Assert.That(error.GetProperty("message").GetString(), Does.Contain(messageContains));
        // A client's mistake leaves the service serving.
        var (ok, _, _) = await _service.PostJsonAsync("/v1/models/m:predict", """{"instances": [{"item_id": "item1"}]}""");
        Assert.That(ok, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public Task Malformed_json_is_400_with_the_position() =>
        Refused("""{"instances": [{"item_id": "a"},]}""", 400, "malformed_json", messageContains: "BytePositionInLine");

    [Test]
    public Task Truncated_json_is_400() => Refused("""{"instances": [{"item_id": """, 400, "malformed_json");

    [Test]
    public Task Content_after_the_object_is_400() => Refused("""{"instances": []} {}""", 400, "malformed_json");

    [Test]
    public Task A_body_that_is_not_an_object_is_400() => Refused("""[{"item_id": "a"}]""", 400, "bad_request", messageContains: "JSON object");

    [Test]
    public Task An_unknown_top_level_key_is_400() => Refused("""{"instances": [], "rows": []}""", 400, "bad_request", messageContains: "'rows'");

    [Test]
    public Task Neither_candidates_nor_instances_is_400() => Refused("""{"context": {"I1": 1}}""", 400, "bad_request");

    [Test]
    public Task Candidates_and_instances_together_are_400() => Refused("""{"candidates": [], "instances": []}""", 400, "bad_request", location: "instances");

    [Test]
    public Task Context_with_instances_is_400() => Refused("""{"context": {"I1": 1}, "instances": [{}]}""", 400, "bad_request", location: "context");

    [Test]
    public Task A_candidate_that_is_not_an_object_is_400_naming_it() =>
        Refused("""{"candidates": [{"item_id": "a"}, "item2"]}""", 400, "bad_request", location: "candidates", index: 1);

    [Test]
    public Task An_unknown_model_is_404_listing_the_served_ones() =>
        Refused("""{"instances": []}""", 404, "unknown_model", messageContains: "served: m", path: "/v1/models/other:predict");

    [Test]
    public Task An_unknown_path_is_404() => Refused("{}", 404, "not_found", path: "/v2/predict");

    [Test]
    public Task An_unknown_field_is_400_naming_field_and_candidate() =>
        Refused("""{"context": {"I1": 3}, "candidates": [{"item_id": "a"}, {"item_id": "b"}, {"itm_id": "c"}]}""",
            400, "unknown_field", field: "itm_id", location: "candidates", index: 2, messageContains: "candidates[2].itm_id");

    [Test]
    public Task An_unknown_context_field_is_400_naming_the_context() =>
        Refused("""{"context": {"user_cty": "x"}, "candidates": [{"item_id": "a"}]}""", 400, "unknown_field", field: "user_cty", location: "context");

    [Test]
    public Task A_boolean_in_a_categorical_field_is_400() =>
        Refused("""{"instances": [{"item_id": true}]}""", 400, "wrong_type", field: "item_id", location: "instances", index: 0, messageContains: "found true");

    [Test]
    public Task An_object_in_a_numeric_field_is_400() =>
        Refused("""{"candidates": [{"item_id": "a"}, {"I1": {"v": 1}}]}""", 400, "wrong_type", field: "I1", location: "candidates", index: 1);

    [Test]
    public Task Non_numeric_text_in_a_numeric_field_is_400() =>
        Refused("""{"candidates": [{"I2": "12"}, {"I2": "twelve"}]}""", 400, "wrong_type", field: "I2", location: "candidates", index: 1, messageContains: "\"twelve\"");

    [Test]
    public Task A_number_too_large_for_a_double_is_400() =>
        Refused("""{"instances": [{"I1": 1e400}]}""", 400, "bad_value", field: "I1", location: "instances", index: 0);

    [Test]
    public Task A_list_in_a_single_valued_field_is_400() =>
        Refused("""{"candidates": [{"item_id": ["a", "b"]}]}""", 400, "multi_value_in_single_field", field: "item_id", location: "candidates", index: 0,
            messageContains: "single-valued");

    [Test]
    public Task A_list_in_a_numeric_context_field_is_400() =>
        Refused("""{"context": {"I1": [1, 2]}, "candidates": [{"item_id": "a"}]}""", 400, "multi_value_in_single_field", field: "I1", location: "context");

    [Test]
    public Task A_nested_list_in_a_multi_valued_field_is_400() =>
        Refused("""{"instances": [{"tags": ["t1", ["t2"]]}]}""", 400, "wrong_type", field: "tags", location: "instances", index: 0);

    [Test]
    public Task A_boolean_for_a_multi_valued_field_is_400() =>
        Refused("""{"instances": [{"tags": false}]}""", 400, "wrong_type", field: "tags", location: "instances", index: 0);

    [Test]
    public Task A_list_entry_holding_the_separator_is_400() =>
        Refused("""{"instances": [{"tags": ["t1|t2"]}]}""", 400, "bad_value", field: "tags", location: "instances", index: 0, messageContains: "separator");

    [Test]
    public Task A_field_given_twice_is_400() =>
        Refused("""{"candidates": [{"item_id": "a", "item_id": "b"}]}""", 400, "duplicate_field", field: "item_id", location: "candidates", index: 0);

    [Test]
    public Task Too_many_candidates_is_413() =>
        Refused("{\"candidates\": [" + string.Join(",", Enumerable.Repeat("{}", 51)) + "]}", 413, "too_many_candidates",
            field: "candidates", location: "candidates", messageContains: "50");

    [Test]
    public Task A_body_over_the_limit_is_413() =>
        Refused("{\"instances\": [{\"item_id\": \"" + new string('x', 20_000) + "\"}]}", 413, "body_too_large", messageContains: "16384");

    [Test]
    public async Task A_chunked_body_over_the_limit_is_413()
    {
        // No Content-Length: Kestrel counts the bytes as they arrive.
        var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes("{\"instances\": [{\"item_id\": \"" + new string('x', 20_000) + "\"}]}")));
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/models/m:predict") { Content = content };
        request.Headers.TransferEncodingChunked = true;
        using var response = await _service.Client.SendAsync(request);
        Assert.That((int)response.StatusCode, Is.EqualTo(413));
        Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("body_too_large"));
    }

    [Test]
    public async Task No_client_error_is_ever_a_500()
    {
        // Mangled variants of a good request: whatever they are, the answer is a 2xx or 4xx JSON document.
        const string good = """{"context": {"I1": 3, "user_city": "city1"}, "candidates": [{"item_id": "item1", "tags": ["t1"]}, {"I2": "2.5"}]}""";
        var rng = new Random(17);
        for (int trial = 0; trial < 300; trial++)
        {
            var chars = good.ToCharArray().ToList();
            int edits = 1 + rng.Next(3);
            const string alphabet = "{}[]\",:0a-e.tn \\";
            for (int e = 0; e < edits; e++)
            {
                int at = rng.Next(chars.Count);
                switch (rng.Next(3))
                {
                    case 0: chars.RemoveAt(at); break;
                    case 1: chars.Insert(at, alphabet[rng.Next(alphabet.Length)]); break;
                    default: chars[at] = alphabet[rng.Next(alphabet.Length)]; break;
                }
            }
            var text = new string(chars.ToArray());
            using var response = await _service.PostAsync("/v1/models/m:predict", text);
            Assert.That((int)response.StatusCode, Is.LessThan(500), text + " → " + await response.Content.ReadAsStringAsync());
            Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/json"), text);
        }
    }

    [Test]
    public async Task Unknown_fields_are_skipped_when_the_policy_is_ignore()
    {
        using var dir = new TempDir();
        var (a, _, _) = TestModels.Pair(dir.Path);
        var options = TestService.Options(("m", a));
        options.UnknownFields = UnknownFieldPolicy.Ignore;
        await using var service = await TestService.StartAsync(options);
        var (status, plain, _) = await service.PostJsonAsync("/v1/models/m:predict", """{"instances": [{"item_id": "item4"}]}""");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        var (status2, extra, _) = await service.PostJsonAsync("/v1/models/m:predict",
            """{"instances": [{"item_id": "item4", "debug": {"nested": [1, 2, {"x": null}]}, "score_hint": 0.3}]}""");
        Assert.That(status2, Is.EqualTo(HttpStatusCode.OK), extra.ToString());
        Assert.That(extra.GetProperty("scores")[0].GetSingle(), Is.EqualTo(plain.GetProperty("scores")[0].GetSingle()));
    }

    [Test]
    public async Task A_full_queue_is_429_with_retry_after_and_a_slow_request_503_with_retry_after()
    {
        using var dir = new TempDir();
        var (a, _, _) = TestModels.Pair(dir.Path);
        var options = TestService.Options(("m", a));
        options.ScoringThreads = 1;
        options.MaxQueuedRequests = 1;
        options.RequestTimeoutMilliseconds = 300;
        options.RetryAfterSeconds = 2;
        await using var service = await TestService.StartAsync(options);
        service.Registry.TryGet("m", out var model);
        using var blocked = new ManualResetEventSlim(false);
        using var entered = new SemaphoreSlim(0);
        model.Batcher.BeforeScore = () => { entered.Release(); blocked.Wait(); };
        try
        {
            const string body = """{"instances": [{"item_id": "item1"}]}""";
            // 1st: taken by the only scoring thread, which now blocks; 2nd: fills the queue; 3rd: refused.
            var first = service.PostJsonAsync("/v1/models/m:predict", body);
            Assert.That(await entered.WaitAsync(TimeSpan.FromSeconds(30)), Is.True);
            var second = service.PostJsonAsync("/v1/models/m:predict", body);
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (model.Batcher.QueuedRequests < 1 && DateTime.UtcNow < deadline) await Task.Delay(5);
            var (status, error, response) = await service.PostJsonAsync("/v1/models/m:predict", body);
            Assert.That((int)status, Is.EqualTo(429), error.ToString());
            Assert.That(error.GetProperty("error").GetProperty("code").GetString(), Is.EqualTo("queue_full"));
            Assert.That(response.Headers.RetryAfter?.Delta, Is.EqualTo(TimeSpan.FromSeconds(2)));

            // The first two wait past the 300 ms request timeout: 503 with Retry-After, not a hung connection.
            foreach (var slow in new[] { first, second })
            {
                var (s, e, r) = await slow;
                Assert.That((int)s, Is.EqualTo(503), e.ToString());
                Assert.That(e.GetProperty("error").GetProperty("code").GetString(), Is.EqualTo("timeout"));
                Assert.That(r.Headers.RetryAfter?.Delta, Is.EqualTo(TimeSpan.FromSeconds(2)));
            }
        }
        finally
        {
            model.Batcher.BeforeScore = null;
            blocked.Set();
        }
        while (model.Batcher.QueuedRequests > 0) await Task.Delay(5); // the abandoned request leaves the queue
        var (okStatus, _, _) = await service.PostJsonAsync("/v1/models/m:predict", """{"instances": [{"item_id": "item2"}]}""");
        Assert.That(okStatus, Is.EqualTo(HttpStatusCode.OK), "after the timeouts the service serves again");
        var metrics = await service.Client.GetStringAsync("/metrics");
        Assert.That(metrics, Does.Contain("kdengine_requests_total{model=\"m\",endpoint=\"predict\",status=\"429\"} 1\n"));
        Assert.That(metrics, Does.Contain("kdengine_requests_total{model=\"m\",endpoint=\"predict\",status=\"503\"} 2\n"));
    }

    [Test]
    public async Task A_failure_inside_scoring_is_a_500_for_that_batch_and_the_service_lives_on()
    {
        using var dir = new TempDir();
        var (a, _, _) = TestModels.Pair(dir.Path);
        await using var service = await TestService.StartAsync(TestService.Options(("m", a)));
        service.Registry.TryGet("m", out var model);
        int calls = 0;
        model.Batcher.BeforeScore = () =>
        {
            if (Interlocked.Increment(ref calls) == 1) throw new InvalidOperationException("simulated fault in the scoring path");
        };
        var (status, error, _) = await service.PostJsonAsync("/v1/models/m:predict", """{"instances": [{"item_id": "item1"}]}""");
        Assert.That((int)status, Is.EqualTo(500));
        Assert.That(error.GetProperty("error").GetProperty("code").GetString(), Is.EqualTo("internal_error"));
        Assert.That(error.GetProperty("error").GetProperty("message").GetString(), Does.Contain("simulated fault"));
        for (int i = 0; i < 5; i++)
            Assert.That((await service.PostJsonAsync("/v1/models/m:predict", """{"instances": [{"item_id": "item1"}]}""")).Status, Is.EqualTo(HttpStatusCode.OK));
        model.Batcher.BeforeScore = null;
    }
}
