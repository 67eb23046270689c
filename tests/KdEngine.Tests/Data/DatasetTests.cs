using KdEngine.Data;
using NUnit.Framework;

namespace KdEngine.Tests.Data;

public class DatasetTests
{
    private static EncodedDataset Synthetic(int n, int seed = 3) =>
        new SyntheticCtr(new SyntheticCtrOptions { Fields = 4, VocabSize = 50, ThirdOrderTerms = 1, Seed = seed }).Generate(n);

    [Test]
    public void Sequential_split_has_exact_boundaries()
    {
        Assert.That(DataSplit.Boundaries(9999, [8, 1, 1]), Is.EqualTo(new[] { 7999, 8999, 9999 }));
        Assert.That(DataSplit.Boundaries(10, [0.8, 0.1, 0.1]), Is.EqualTo(new[] { 8, 9, 10 }));
        Assert.That(DataSplit.Boundaries(7, [1, 1]), Is.EqualTo(new[] { 3, 7 }));
        var ds = Synthetic(103);
        var parts = ds.Split([8, 1, 1]);
        Assert.That(parts.Select(p => p.Count), Is.EqualTo(new[] { 82, 10, 11 }));
        Assert.That(parts[1].Ids, Is.EqualTo(ds.Ids.AsSpan(82 * ds.FieldCount, 10 * ds.FieldCount).ToArray()));
        Assert.That(parts[2].Labels, Is.EqualTo(ds.Labels[92..]));
        Assert.Throws<ArgumentException>(() => ds.Split([1, 0]));
    }

    [Test]
    public void Random_split_is_deterministic_by_seed_disjoint_and_complete()
    {
        var a = DataSplit.Indices(1000, [8, 1, 1], SplitMode.Random, seed: 7);
        var b = DataSplit.Indices(1000, [8, 1, 1], SplitMode.Random, seed: 7);
        var c = DataSplit.Indices(1000, [8, 1, 1], SplitMode.Random, seed: 8);
        Assert.That(a, Is.EqualTo(b));
        Assert.That(a[1], Is.Not.EqualTo(c[1]));
        Assert.That(a.Select(p => p.Length), Is.EqualTo(new[] { 800, 100, 100 }));
        Assert.That(a.SelectMany(p => p).OrderBy(i => i), Is.EqualTo(Enumerable.Range(0, 1000)));
        Assert.That(a[1], Is.Ordered, "each part keeps file order");
        Assert.That(a[0].Take(100), Is.Not.EqualTo(Enumerable.Range(0, 100)), "random, not sequential");

        var ds = Synthetic(1000);
        var parts = ds.Split([8, 1, 1], SplitMode.Random, seed: 7);
        for (int k = 0; k < 3; k++)
            Assert.That(parts[k].Labels, Is.EqualTo(a[k].Select(i => ds.Labels[i])));
    }

    [Test]
    public void Slice_and_select_copy_rows_and_reject_bad_indices()
    {
        var ds = Synthetic(20);
        var s = ds.Slice(5, 3);
        Assert.That(s.Ids, Is.EqualTo(ds.Ids[(5 * 4)..(8 * 4)]));
        var sel = ds.Select([19, 0, 19]);
        Assert.That(sel.RowIds(0).ToArray(), Is.EqualTo(ds.RowIds(19).ToArray()));
        Assert.That(sel.RowIds(1).ToArray(), Is.EqualTo(ds.RowIds(0).ToArray()));
        Assert.Throws<ArgumentOutOfRangeException>(() => ds.Select([20]));
        Assert.Throws<ArgumentOutOfRangeException>(() => ds.Slice(18, 3));
    }

    [Test]
    public void Dataset_rejects_ids_outside_their_field_cardinality()
    {
        var fs = new FeatureSpace([new FeatureField("a", FieldKind.Categorical, FieldEncoding.Direct, 3, false, 0)]);
        var e = Assert.Throws<ArgumentException>(() => new EncodedDataset(fs, 2, [0, 3], [0, 1]))!;
        Assert.That(e.Message, Does.Contain("row 1, field 'a': id 3 is outside [0, 3)"));
    }

    [Test]
    public void Batches_cover_every_row_once_per_epoch_with_a_reused_batch()
    {
        var ds = Synthetic(1003);
        foreach (bool shuffle in new[] { false, true })
        {
            var seen = new List<long>();
            Batch? first = null;
            int batches = 0;
            foreach (var b in ds.Batches(100, shuffle, seed: 11))
            {
                first ??= b;
                Assert.That(b, Is.SameAs(first));
                batches++;
                Assert.That(b.Size, Is.EqualTo(batches <= 10 ? 100 : 3));
                for (int i = 0; i < b.Size; i++)
                {
                    int row = (int)b.Rows[i];
                    seen.Add(row);
                    Assert.That(b.Ids.Slice(i * ds.FieldCount, ds.FieldCount).ToArray(), Is.EqualTo(ds.RowIds(row).ToArray()));
                    Assert.That(b.Labels[i], Is.EqualTo(ds.Labels[row]));
                }
            }
            Assert.That(batches, Is.EqualTo(11));
            Assert.That(seen.OrderBy(x => x), Is.EqualTo(Enumerable.Range(0, 1003).Select(x => (long)x)));
            Assert.That(seen.SequenceEqual(Enumerable.Range(0, 1003).Select(x => (long)x)), Is.EqualTo(!shuffle));
        }
        var order1 = ds.Batches(64, true, seed: 5).SelectMany(b => b.Rows.ToArray()).ToArray();
        var order2 = ds.Batches(64, true, seed: 5).SelectMany(b => b.Rows.ToArray()).ToArray();
        var order3 = ds.Batches(64, true, seed: 6).SelectMany(b => b.Rows.ToArray()).ToArray();
        Assert.That(order1, Is.EqualTo(order2));
        Assert.That(order1, Is.Not.EqualTo(order3));
        Assert.That(ds.Batches(100, dropLast: true).Count(), Is.EqualTo(10));
    }

    [Test]
    public void Batches_do_not_allocate_per_batch_in_steady_state()
    {
        var ds = Synthetic(20000);
        using var e = ds.Batches(128, shuffle: true, seed: 1).GetEnumerator();
        Assert.That(e.MoveNext(), Is.True);
        long before = GC.GetAllocatedBytesForCurrentThread();
        int n = 0;
        while (e.MoveNext()) n++;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(n, Is.EqualTo(156));
        Assert.That(allocated, Is.LessThan(1024), $"{allocated} bytes over {n} batches");
    }

    [Test]
    public void Multi_valued_fields_flow_through_select_and_batches()
    {
        var schema = Schema.Load(DataTestFiles.Fixture("avazu_schema.json"));
        var reader = new DelimitedReader(DataTestFiles.Fixture("avazu_like.csv"), schema);
        var pre = Preprocessor.Fit(schema, reader);
        var ds = pre.EncodeAll(reader);
        var sel = ds.Select([3, 2]);
        Assert.That(sel.Multi[0].Row(0).ToArray(), Is.EqualTo(ds.Multi[0].Row(3).ToArray()));
        Assert.That(sel.Multi[0].Row(1).ToArray(), Is.EqualTo(new[] { 0 }));
        Assert.That(sel.UserIds, Is.EqualTo(new[] { ds.UserIds![3], ds.UserIds[2] }));
        var b = ds.Batches(5).Single();
        Assert.That(b.MultiOffsets(0).ToArray(), Is.EqualTo(ds.Multi[0].Offsets));
        Assert.That(b.MultiIds(0).ToArray(), Is.EqualTo(ds.Multi[0].Ids));
        Assert.That(b.DenseValues.ToArray(), Is.EqualTo(ds.DenseValues));
        Assert.That(b.UserIds.ToArray(), Is.EqualTo(ds.UserIds));
    }

    [Test]
    public void Streaming_with_a_shuffle_buffer_is_deterministic_and_complete()
    {
        var reader = CriteoReader.Open(DataPaths.FindCriteoSample());
        var pre = Preprocessor.Fit(reader.Schema, reader.Take(7999), new PreprocessorOptions { MinCount = 2 });
        var all = pre.EncodeAll(reader);

        long[] Order(int buffer, int seed)
        {
            var rows = new List<long>();
            foreach (var b in Streaming.Batches(reader, pre, 256, buffer, seed))
                for (int i = 0; i < b.Size; i++)
                {
                    int r = (int)b.Rows[i];
                    rows.Add(r);
                    Assert.That(b.Labels[i], Is.EqualTo(all.Labels[r]));
                    if (i % 37 == 0) Assert.That(b.Ids.Slice(i * 39, 39).ToArray(), Is.EqualTo(all.RowIds(r).ToArray()));
                }
            return rows.ToArray();
        }

        var a = Order(1000, 42);
        Assert.That(a, Has.Length.EqualTo(9999));
        Assert.That(a.OrderBy(x => x), Is.EqualTo(Enumerable.Range(0, 9999).Select(x => (long)x)));
        Assert.That(Order(1000, 42), Is.EqualTo(a));
        Assert.That(Order(1000, 43), Is.Not.EqualTo(a));
        Assert.That(Order(0, 42), Is.EqualTo(Enumerable.Range(0, 9999).Select(x => (long)x)), "no buffer keeps file order");
        // With a buffer of N, the row emitted at position p was among the first p + N + 1 rows read.
        for (int p = 0; p < a.Length; p++) Assert.That(a[p], Is.LessThanOrEqualTo(p + 1000));
    }
    [Test]
    public void A_known_row_count_sizes_the_shuffle_buffer_without_changing_the_order()
    {
        var reader = CriteoReader.Open(DataPaths.FindCriteoSample());
        var pre = Preprocessor.Fit(reader.Schema, reader.Take(7999), new PreprocessorOptions { MinCount = 2 });
        var all = pre.EncodeAll(reader);
        // The rows as blocks of 500 (a stream of encoded chunks).
        IEnumerable<IRowBlock> Blocks()
        {
            for (int start = 0; start < all.Count; start += 500) yield return new Rows(all, start, Math.Min(500, all.Count - start));
        }
        long[] Order(int buffer, long expectedRows)
        {
            var rows = new List<long>();
            foreach (var b in Streaming.Batches(Blocks(), all.FeatureSpace, 256, buffer, 7, dropLast: false, expectedRows))
                for (int i = 0; i < b.Size; i++) rows.Add(b.Rows[i]);
            return rows.ToArray();
        }
        foreach (int buffer in new[] { 1000, 20000 })
        {
            var grown = Order(buffer, 0);
            Assert.That(grown.OrderBy(x => x), Is.EqualTo(Enumerable.Range(0, all.Count).Select(x => (long)x)));
            // Exact, too small (the buffer grows past it) and too large (capped at the buffer): the same order.
            foreach (long expected in new long[] { all.Count, 300, 50000 })
                Assert.That(Order(buffer, expected), Is.EqualTo(grown), $"buffer {buffer}, expected rows {expected}");
        }
    }

    private sealed class Rows(EncodedDataset data, int start, int count) : IRowBlock
    {
        public int Count => count;
        public long FirstRow => start;
        public ReadOnlySpan<int> RowIds(int row) => data.RowIds(start + row);
        public float Label(int row) => data.Labels[start + row];
        public ReadOnlySpan<float> RowDense(int row) => default;
        public int UserId(int row) => -1;
        public ReadOnlySpan<int> MultiIds(int field, int row) => data.Multi[field].Row(start + row);
    }
}
