using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Serving;
using NUnit.Framework;

namespace KdEngine.Server.Tests;

/// <summary>Hot model swap: validation before the swap, refused files leave the old version serving, no request lost.</summary>
[TestFixture]
public sealed class ReloadTests
{
    private static float[] Scores(JsonElement body) => body.GetProperty("scores").EnumerateArray().Select(x => x.GetSingle()).ToArray();

    private static bool SameBits(float[] a, float[] b) =>
        a.Length == b.Length && a.Zip(b).All(p => BitConverter.SingleToInt32Bits(p.First) == BitConverter.SingleToInt32Bits(p.Second));

    [Test]
    public async Task Ten_swaps_under_concurrent_load_lose_no_request_and_every_score_matches_its_version()
    {
        using var dir = new TempDir();
        // FM checkpoints: a row's score does not depend on its batch-mates, so "matches its version" is checked bit for bit.
        var (a, b, _) = TestModels.Pair(dir.Path, ModelKind.Fm);
        var corrupt = TestModels.Corrupt(a, dir.File("corrupt.kde"));
        var serving = dir.File("serving.kde");
        TestModels.Install(a, serving);
        var predictorA = Predictor.Load(a);
        var predictorB = Predictor.Load(b);
        var schema = predictorA.Preprocessor!.Schema;
        var rowSets = Enumerable.Range(0, 6).Select(s => TestModels.Rows(schema, 5 + 7 * s, seed: 100 + s)).ToArray();
        var bodies = rowSets.Select(rows => "{\"instances\": [" + string.Join(",", rows.Select(r => r.Json)) + "]}").ToArray();
        var expectedA = rowSets.Select(rows => TestModels.Expected(predictorA, rows.Select(r => r.Record).ToArray())).ToArray();
        var expectedB = rowSets.Select(rows => TestModels.Expected(predictorB, rows.Select(r => r.Record).ToArray())).ToArray();

        var options = TestService.Options(("m", serving));
        options.MaxBatchRows = 16;
        await using var service = await TestService.StartAsync(options);
        string checkpointA = (await service.PostJsonAsync("/v1/models/m:predict", bodies[0])).Body.GetProperty("checkpoint").GetString()!;

        var versionCheckpoint = new ConcurrentDictionary<long, string> { [1] = checkpointA };
        var failures = new ConcurrentQueue<string>();
        var seenVersions = new ConcurrentDictionary<long, int>();
        int answered = 0;
        using var stop = new CancellationTokenSource();
        var responses = new ConcurrentQueue<(int Set, long Version, string Checkpoint, float[] Scores)>();
        var clients = Enumerable.Range(0, 8).Select(c => Task.Run(async () =>
        {
            for (int i = 0; !stop.IsCancellationRequested; i++)
            {
                int set = (c + i) % bodies.Length;
                var (status, body, _) = await service.PostJsonAsync("/v1/models/m:predict", bodies[set]);
                if (status != HttpStatusCode.OK) { failures.Enqueue($"client {c}: {(int)status} {body}"); continue; }
                responses.Enqueue((set, body.GetProperty("version").GetInt64(), body.GetProperty("checkpoint").GetString()!, Scores(body)));
                Interlocked.Increment(ref answered);
            }
        })).ToArray();

        // 10 accepted swaps alternating B/A, with the corrupt file offered after the 3rd and the 7th.
        string checkpointB = "";
        int accepted = 0;
        for (int swap = 1; accepted < 10; swap++)
        {
            await Task.Delay(60);
            bool offerCorrupt = swap is 4 or 9;
            TestModels.Install(offerCorrupt ? corrupt : accepted % 2 == 0 ? b : a, serving);
            var (status, body, _) = await service.PostJsonAsync("/v1/models/m:reload", "");
            if (offerCorrupt)
            {
                Assert.That((int)status, Is.EqualTo(422), body.ToString());
                Assert.That(body.GetProperty("error").GetProperty("message").GetString(), Does.Contain("checksum").And.Contain("keeps serving"));
                continue;
            }
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
            accepted++;
            long version = body.GetProperty("version").GetInt64();
            Assert.That(version, Is.EqualTo(accepted + 1), "versions count accepted reloads only");
            versionCheckpoint[version] = body.GetProperty("checkpoint").GetString()!;
            if (accepted == 1) checkpointB = versionCheckpoint[version];
        }
        await Task.Delay(60);
        stop.Cancel();
        await Task.WhenAll(clients);

        Assert.That(failures, Is.Empty, "no request may fail during swaps");
        Assert.That(answered, Is.GreaterThan(40));
        Assert.That(checkpointB, Is.Not.EqualTo(checkpointA));
        foreach (var (set, version, checkpoint, scores) in responses)
        {
            seenVersions.AddOrUpdate(version, 1, (_, n) => n + 1);
            Assert.That(versionCheckpoint[version], Is.EqualTo(checkpoint), $"version {version} is checkpoint {versionCheckpoint[version]}");
            var expected = checkpoint == checkpointA ? expectedA[set] : expectedB[set];
            Assert.That(SameBits(scores, expected), Is.True, $"version {version} ({checkpoint}) scores of row set {set} are not that checkpoint's");
        }
        Assert.That(seenVersions.Keys.Count, Is.GreaterThanOrEqualTo(3), "requests ran across several versions");
        var metrics = await service.Client.GetStringAsync("/metrics");
        Assert.That(metrics, Does.Contain("kdengine_model_reloads_total{model=\"m\",result=\"accepted\"} 10\n"));
        Assert.That(metrics, Does.Contain("kdengine_model_reloads_total{model=\"m\",result=\"refused\"} 2\n"));
        Assert.That(metrics, Does.Contain("kdengine_model_version{model=\"m\"} 11\n"));
    }

    [Test]
    public async Task Requests_in_flight_during_a_swap_finish_on_the_version_they_started_with()
    {
        using var dir = new TempDir();
        var (a, b, _) = TestModels.Pair(dir.Path);
        var serving = dir.File("serving.kde");
        TestModels.Install(a, serving);
        var options = TestService.Options(("m", serving));
        options.ScoringThreads = 1;
        options.MaxBatchWaitMicroseconds = 0;
        await using var service = await TestService.StartAsync(options);
        service.Registry.TryGet("m", out var model);
        var predictorA = Predictor.Load(a);
        var predictorB = Predictor.Load(b);
        var rows = TestModels.Rows(predictorA.Preprocessor!.Schema, 4, seed: 3);
        string body = "{\"instances\": [" + string.Join(",", rows.Select(r => r.Json)) + "]}";
        var records = rows.Select(r => r.Record).ToArray();

        using var gate = new ManualResetEventSlim(false);
        using var entered = new SemaphoreSlim(0);
        model.Batcher.BeforeScore = () => { entered.Release(); gate.Wait(); };
        var scoring = service.PostJsonAsync("/v1/models/m:predict", body);   // being scored by version 1
        Assert.That(await entered.WaitAsync(TimeSpan.FromSeconds(30)), Is.True);
        model.Batcher.BeforeScore = null;
        var queued = service.PostJsonAsync("/v1/models/m:predict", body);    // queued on version 1
        while (model.Batcher.QueuedRequests < 1) await Task.Delay(5);

        TestModels.Install(b, serving);
        var (status, reload, _) = await service.PostJsonAsync("/v1/models/m:reload", "");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), reload.ToString());
        Assert.That(reload.GetProperty("previous").GetProperty("version").GetInt64(), Is.EqualTo(1));
        var after = service.PostJsonAsync("/v1/models/m:predict", body);      // arrives on version 2
        while (model.Batcher.QueuedRequests < 2) await Task.Delay(5);
        gate.Set();

        foreach (var (task, version, predictor) in new[] { (scoring, 1L, predictorA), (queued, 1L, predictorA), (after, 2L, predictorB) })
        {
            var (s, r, _) = await task;
            Assert.That(s, Is.EqualTo(HttpStatusCode.OK), r.ToString());
            Assert.That(r.GetProperty("version").GetInt64(), Is.EqualTo(version));
            Assert.That(SameBits(Scores(r), TestModels.Expected(predictor, records)), Is.True, $"version {version} scores");
        }
    }

    private static async Task AssertRefusedAndOldServes(TestService service, string serving, string file, string reasonContains)
    {
        var before = JsonDocument.Parse(await service.Client.GetStringAsync("/v1/models/m")).RootElement;
        TestModels.Install(file, serving);
        var (status, body, _) = await service.PostJsonAsync("/v1/models/m:reload", "");
        Assert.That((int)status, Is.EqualTo(422), body.ToString());
        Assert.That(body.GetProperty("error").GetProperty("code").GetString(), Is.EqualTo("checkpoint_refused"));
        Assert.That(body.GetProperty("error").GetProperty("message").GetString(), Does.Contain(reasonContains).And.Contain("keeps serving"));
        var after = JsonDocument.Parse(await service.Client.GetStringAsync("/v1/models/m")).RootElement;
        Assert.That(after.GetProperty("version").GetInt64(), Is.EqualTo(before.GetProperty("version").GetInt64()));
        Assert.That(after.GetProperty("sha256").GetString(), Is.EqualTo(before.GetProperty("sha256").GetString()));
        var (ok, scores, _) = await service.PostJsonAsync("/v1/models/m:predict", """{"instances": [{"item_id": "item1"}]}""");
        Assert.That(ok, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(scores.GetProperty("checkpoint").GetString(), Is.EqualTo(before.GetProperty("checkpoint").GetString()));
    }

    [Test]
    public async Task Corrupt_incompatible_and_non_finite_checkpoints_are_refused_and_the_old_version_keeps_serving()
    {
        using var dir = new TempDir();
        var (a, _, pre) = TestModels.Pair(dir.Path);
        var serving = dir.File("serving.kde");
        TestModels.Install(a, serving);
        await using var service = await TestService.StartAsync(TestService.Options(("m", serving)));

        await AssertRefusedAndOldServes(service, serving, TestModels.Corrupt(a, dir.File("flipped.kde")), "checksum");

        var truncated = dir.File("truncated.kde");
        File.WriteAllBytes(truncated, File.ReadAllBytes(a)[..^100]);
        await AssertRefusedAndOldServes(service, serving, truncated, "cannot load");

        var text = dir.File("text.kde");
        File.WriteAllText(text, "this is not a checkpoint");
        await AssertRefusedAndOldServes(service, serving, text, "cannot load");

        var noPreprocessing = TestModels.Save(dir.Path, "bare.kde", TestModels.Model(pre, ModelKind.Dnn, 8), null);
        await AssertRefusedAndOldServes(service, serving, noPreprocessing, "without its preprocessing");

        var nanModel = TestModels.Model(pre, ModelKind.Dnn, 9);
        nanModel.Parameters().First(p => p.Name.StartsWith("dnn.0.weight", StringComparison.Ordinal)).Tensor.AsSpan().Fill(float.NaN);
        await AssertRefusedAndOldServes(service, serving, TestModels.Save(dir.Path, "nan.kde", nanModel, pre), "not finite");

        var otherSchema = new Schema(TestModels.Schema().Fields.Append(FieldSpec.Categorical("ad_slot")));
        var otherPre = TestModels.Preprocessor(otherSchema);
        var changed = TestModels.Save(dir.Path, "changed.kde", TestModels.Model(otherPre, ModelKind.Dnn, 10), otherPre);
        await AssertRefusedAndOldServes(service, serving, changed, "field 'ad_slot' (categorical) is new");

        await AssertRefusedAndOldServes(service, serving, changed, "--allow-schema-change");

        File.Delete(serving);
        var (status, body, _) = await service.PostJsonAsync("/v1/models/m:reload", "");
        Assert.That((int)status, Is.EqualTo(422), body.ToString());
        Assert.That((await service.PostJsonAsync("/v1/models/m:predict", """{"instances": [{}]}""")).Status, Is.EqualTo(HttpStatusCode.OK));

        Assert.That((int)(await service.PostJsonAsync("/v1/models/nope:reload", "")).Status, Is.EqualTo(404));
        var metrics = await service.Client.GetStringAsync("/metrics");
        Assert.That(metrics, Does.Contain("kdengine_model_reloads_total{model=\"m\",result=\"refused\"} 8\n"));
        Assert.That(metrics, Does.Contain("kdengine_model_version{model=\"m\"} 1\n"));
    }

    [Test]
    public async Task A_schema_change_is_accepted_when_allowed()
    {
        using var dir = new TempDir();
        var (a, _, _) = TestModels.Pair(dir.Path);
        var serving = dir.File("serving.kde");
        TestModels.Install(a, serving);
        var options = TestService.Options(("m", serving));
        options.AllowSchemaChange = true;
        await using var service = await TestService.StartAsync(options);
        var otherSchema = new Schema(TestModels.Schema().Fields.Append(FieldSpec.Categorical("ad_slot")));
        var otherPre = TestModels.Preprocessor(otherSchema);
        TestModels.Install(TestModels.Save(dir.Path, "changed.kde", TestModels.Model(otherPre, ModelKind.Dnn, 10), otherPre), serving);
        var (status, body, _) = await service.PostJsonAsync("/v1/models/m:reload", "");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("version").GetInt64(), Is.EqualTo(2));
        var (ok, scored, _) = await service.PostJsonAsync("/v1/models/m:predict", """{"instances": [{"item_id": "item1", "ad_slot": "top"}]}""");
        Assert.That(ok, Is.EqualTo(HttpStatusCode.OK), scored.ToString());
        Assert.That(scored.GetProperty("version").GetInt64(), Is.EqualTo(2));
    }
}
