using KdEngine.Nn;
using KdEngine.Tensors;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Distributed.Tests;

/// <summary>The core's side of the seam, in one process: round-robin shards, the single-process group, gradient buffers.</summary>
[TestFixture]
public sealed class SeamTests
{
    [TestCase(10, 1)]
    [TestCase(10, 2)]
    [TestCase(11, 3)]
    [TestCase(2, 4)]
    public void Shards_AreDisjoint_CoverEveryRow_AndDifferByAtMostOne(int total, int size)
    {
        var rows = Enumerable.Range(100, total).ToArray();
        var shards = Enumerable.Range(0, size).Select(r => Shard.Of(rows, r, size)).ToArray();
        Assert.That(shards.SelectMany(s => s).Order(), Is.EqualTo(rows), "every row exactly once");
        for (int r = 0; r < size; r++)
        {
            Assert.That(shards[r], Has.Length.EqualTo(Shard.Count(total, r, size)));
            Assert.That(shards[r], Is.EqualTo(rows.Where((_, p) => p % size == r)), "positions p ≡ r (mod size), in order");
        }
        Assert.That(shards.Max(s => s.Length) - shards.Min(s => s.Length), Is.LessThanOrEqualTo(1));
    }

    [Test]
    public void Shard_RejectsARankOutsideTheGroup()
    {
        Assert.That(() => Shard.Of([1, 2, 3], 2, 2), Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("rank 2 of 2"));
    }

    [Test]
    public void SingleProcess_IsRank0Of1_AndLeavesEverythingAsItIs()
    {
        var g = SingleProcess.Instance;
        Assert.That((g.Rank, g.Size), Is.EqualTo((0, 1)));
        Span<double> v = [1.5, -2];
        g.AllReduceSum(v);
        Assert.That(v.ToArray(), Is.EqualTo(new[] { 1.5, -2 }));
        Assert.That(g.AllReduceMin(7), Is.EqualTo(7));
        Assert.That(g.AllGatherInterleaved([3f, 1f]), Is.EqualTo(new[] { 3f, 1f }));
        Assert.That(g.BroadcastText("x"), Is.EqualTo("x"));
        var w = Tensor<float>.FromArray([1f, 2f], 2).RequireGrad();
        w.GradOrZeros().AsSpan().Fill(0.5f);
        g.AverageGradients([new NamedParameter("w", w)], 4);
        Assert.That(w.Grad!.ToArray(), Is.EqualTo(new[] { 0.5f, 0.5f }));
    }

    [Test]
    public void GradientBuffers_AreCreatedEmptyOnDemand_AndOnlyOfTheRightKind()
    {
        var w = Tensor<float>.FromArray([1f, 2f, 3f], 3).RequireGrad();
        Assert.That(w.Grad, Is.Null);
        Assert.That(w.GradOrZeros().ToArray(), Is.EqualTo(new[] { 0f, 0f, 0f }));
        Assert.That(w.GradOrZeros(), Is.SameAs(w.Grad));
        Assert.That(() => w.SparseGradOrEmpty(), Throws.InvalidOperationException);

        var table = EmbeddingTable.Zeros<float>(5, 2).RequireGrad();
        var sparse = table.SparseGradOrEmpty();
        Assert.That((sparse.TableRows, sparse.Width, sparse.Count), Is.EqualTo((5, 2, 0)));
        Assert.That(table.SparseGradOrEmpty(), Is.SameAs(sparse));
        Assert.That(() => table.GradOrZeros(), Throws.InvalidOperationException);
    }
}
