using System.Buffers;
using System.Text;
using KdEngine.Server.Api;
using KdEngine.Server.Models;
using NUnit.Framework;

namespace KdEngine.Server.Tests;

/// <summary>The JSON edge on its own: what reading and encoding a request allocates.</summary>
[TestFixture]
public sealed class JsonEdgeTests
{
    [Test]
    public void Reading_a_request_allocates_the_same_for_10_and_1000_candidates()
    {
        // Values are decoded into a per-thread buffer and looked up without strings, so the edge allocates per request
        // (the job and its completion), nothing per candidate — whatever the candidates' categories, numbers and lists.
        using var dir = new TempDir();
        var (a, _, _) = TestModels.Pair(dir.Path);
        var version = ModelLoader.Load("m", a, 1);
        var schema = version.Schema.Schema;
        var rows = TestModels.Rows(schema, 1000, seed: 2);
        byte[] Body(int n) => Encoding.UTF8.GetBytes("{\"context\": {\"user_city\": \"city3\", \"I1\": 7, \"uid\": \"u1\"}, \"candidates\": ["
            + string.Join(",", rows.Take(n).Select(r => r.Json)) + "]}");
        var small = Body(10);
        var large = Body(1000);
        long Allocated(byte[] body)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            var job = PredictRequestReader.Read(new ReadOnlySequence<byte>(body), version, UnknownFieldPolicy.Reject, 1000)!;
            long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
            job.Discard();
            return bytes;
        }
        for (int i = 0; i < 3; i++) { Allocated(small); Allocated(large); } // buffers and pools grown
        long perSmall = Allocated(small), perLarge = Allocated(large);
        Assert.That(perLarge, Is.EqualTo(perSmall), $"10 candidates: {perSmall} B, 1,000 candidates: {perLarge} B");
        Assert.That(perSmall, Is.LessThan(1024), "per request: the job and its completion");
    }
}
