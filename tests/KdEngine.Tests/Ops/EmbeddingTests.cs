using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;
using NUnit.Framework;
using static KdEngine.Tests.Autograd.GradCheckTests;

namespace KdEngine.Tests.Ops;

/// <summary>Embedding gathers, bags and MulColumn: values, gradient checks, row-sparse gradients, bad ids, bad shapes.</summary>
public class EmbeddingTests
{
    private static int[] Ids(int n, int rows, int seed)
    {
        var rng = new Random(seed);
        var ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = rng.Next(rows);
        return ids;
    }

    // ---------- values ----------

    [Test]
    public void EmbeddingGather_copies_the_rows_and_honours_the_output_shape()
    {
        var table = Tensor<float>.FromArray([0f, 1f, 10f, 11f, 20f, 21f], 3, 2);
        using var tape = Tape<float>.NoGrad();
        var y = Op.EmbeddingGather(table, new[] { 2, 0, 2, 1, 0, 1 }, new Shape(3, 2, 2)); // [B 3, F 2, D 2]
        Assert.That(y.Shape, Is.EqualTo(new Shape(3, 2, 2)));
        Assert.That(y.ToArray(), Is.EqualTo(new[] { 20f, 21f, 0f, 1f, 20f, 21f, 10f, 11f, 0f, 1f, 10f, 11f }));
        Assert.That(Op.EmbeddingGather(table, new[] { 1 }).Shape, Is.EqualTo(new Shape(1, 2)));
    }

    [Test]
    public void EmbeddingGatherFields_reads_each_field_from_its_own_table()
    {
        var t0 = Tensor<double>.FromArray([1.0, 2.0, 3.0, 4.0], 2, 2);
        var t1 = Tensor<double>.FromArray([-1.0, -2.0, -3.0, -4.0, -5.0, -6.0], 3, 2);
        using var tape = Tape<double>.NoGrad();
        var x0 = Op.EmbeddingGatherFields([t0, t1], new[] { 1, 2, 0, 0 }, batch: 2); // ids [2, 2]
        Assert.That(x0.Shape, Is.EqualTo(new Shape(2, 2, 2)));
        Assert.That(x0.ToArray(), Is.EqualTo(new[] { 3.0, 4.0, -5.0, -6.0, 1.0, 2.0, -1.0, -2.0 }));
    }

    [Test]
    public void EmbeddingBag_sums_or_averages_and_gives_zeros_for_an_empty_bag()
    {
        var table = Tensor<double>.FromArray([1.0, 2.0, 10.0, 20.0, 100.0, 200.0], 3, 2);
        int[] ids = [0, 2, 2, 1];
        int[] offsets = [0, 3, 3, 4]; // bags {0, 2, 2}, {}, {1}
        using var tape = Tape<double>.NoGrad();
        Assert.That(Op.EmbeddingBag(table, ids, offsets, PoolingMode.Sum).ToArray(),
            Is.EqualTo(new[] { 201.0, 402.0, 0.0, 0.0, 10.0, 20.0 }));
        Assert.That(Op.EmbeddingBag(table, ids, offsets, PoolingMode.Mean).ToArray(),
            Is.EqualTo(new[] { 67.0, 134.0, 0.0, 0.0, 10.0, 20.0 }));
    }

    // ---------- gradient checks (dense-gradient tables, as GradCheck makes its leaves) ----------

    [TestCase(1, 1)]
    [TestCase(7, 13)]
    [TestCase(17, 29)]
    public void EmbeddingGather_gradcheck(int width, int n)
    {
        var ids = Ids(n, 11, width + n); // 11 rows, n ids: duplicates for the larger n
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.EmbeddingGather(x[0], ids);
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(11 * width, 1)], [new Shape(11, width)]));
    }

    [TestCase(1, 1, 1)]
    [TestCase(3, 5, 7)]
    [TestCase(3, 7, 17)]
    [TestCase(1, 7, 1)]
    public void EmbeddingGatherFields_gradcheck(int batch, int fields, int width)
    {
        var rows = Enumerable.Range(0, fields).Select(f => 2 + f % 4).ToArray();
        var ids = new int[batch * fields];
        var rng = new Random(3);
        for (int n = 0; n < ids.Length; n++) ids[n] = rng.Next(rows[n % fields]);
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.EmbeddingGatherFields(x, ids, batch);
        AssertPasses(GradCheck.Run(F<double>, F<float>,
            rows.Select((r, f) => Random(r * width, 10 + f)).ToArray(),
            rows.Select(r => new Shape(r, width)).ToArray()));
    }

    [TestCase(PoolingMode.Sum, 1)]
    [TestCase(PoolingMode.Sum, 7)]
    [TestCase(PoolingMode.Mean, 7)]
    [TestCase(PoolingMode.Mean, 17)]
    public void EmbeddingBag_gradcheck(PoolingMode mode, int width)
    {
        int[] ids = [4, 0, 4, 2, 1, 4, 3];
        int[] offsets = [0, 3, 3, 4, 7]; // bags of 3, 0, 1, 3 ids; id 4 repeated within and across bags
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.EmbeddingBag(x[0], ids, offsets, mode);
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(5 * width, 20)], [new Shape(5, width)]));
    }

    [TestCase(1, 1)]
    [TestCase(5, 7)]
    [TestCase(3, 17)]
    public void MulColumn_gradcheck(int rows, int width)
    {
        static Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T> => Op.MulColumn(x[0], x[1]);
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(rows * width, 30), Random(rows, 31)],
            [new Shape(rows, width), new Shape(rows)]));
    }

    [Test]
    public void MulColumn_scales_field_embeddings_by_numeric_values_gradcheck()
    {
        // x0 [B 3, F 5, D 7] scaled by numeric values [B 3, F 5], composed with a field gather.
        int batch = 3, fields = 5, width = 7;
        var ids = Ids(batch * fields, 4, 40);
        Tensor<T> F<T>(Tensor<T>[] x) where T : unmanaged, IFloatingPointIeee754<T>
            => Op.MulColumn(Op.EmbeddingGather(x[0], ids, new Shape(batch, fields, width)), x[1]);
        AssertPasses(GradCheck.Run(F<double>, F<float>, [Random(4 * width, 41), Random(batch * fields, 42)],
            [new Shape(4, width), new Shape(batch, fields)]));
    }

    // ---------- row-sparse gradients ----------

    [Test]
    public void Sparse_gradient_holds_exactly_the_touched_rows_with_duplicates_summed()
    {
        var table = EmbeddingTable.Create<double>(Random(10 * 3, 50), 10, 3, "user_id").RequireGrad();
        Assert.That(table.HasSparseGradient, Is.True);
        int[] ids = [3, 1, 3, 7];
        double[] w = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]; // loss = Σ w ∘ out, so d loss / d out = w
        using (var tape = new Tape<double>())
        {
            var loss = Op.Sum(Op.Mul(Op.EmbeddingGather(table, ids), Tensor<double>.FromArray(w, 4, 3)));
            tape.Backward(loss);
        }
        Assert.That(table.Grad, Is.Null, "an embedding table must never get a dense gradient");
        var sg = table.SparseGrad!;
        Assert.That(sg.SortedRows().Select(r => r.Row), Is.EqualTo(new[] { 1, 3, 7 }), "untouched rows must be absent");
        var byRow = sg.SortedRows().ToDictionary(r => r.Row, r => sg.Row(r.Slot).ToArray());
        Assert.That(byRow[3], Is.EqualTo(new[] { 1.0 + 7, 2.0 + 8, 3.0 + 9 }), "the duplicate id 3 sums both output rows");
        Assert.That(byRow[1], Is.EqualTo(new[] { 4.0, 5, 6 }));
        Assert.That(byRow[7], Is.EqualTo(new[] { 10.0, 11, 12 }));

        // A second pass accumulates; ZeroGrad forgets every row.
        using (var tape = new Tape<double>())
        {
            tape.Backward(Op.Sum(Op.EmbeddingGather(table, new[] { 7 })));
        }
        Assert.That(sg.Row(sg.SortedRows().Single(r => r.Row == 7).Slot).ToArray(), Is.EqualTo(new[] { 11.0, 12, 13 }));
        table.ZeroGrad();
        Assert.That(sg.Count, Is.EqualTo(0));
    }

    [Test]
    public void Sparse_gradient_equals_the_dense_gradient_on_many_rows()
    {
        // More than 64 distinct rows, so the sparse buffer has to grow; values compared with the dense path.
        int rows = 500, width = 7, n = 400;
        var values = Random(rows * width, 60);
        var ids = Ids(n, rows, 61);
        var weights = Random(n * width, 62);
        var sparse = EmbeddingTable.Create<double>(values, rows, width, "item_id").RequireGrad();
        var dense = Tensor<double>.FromArray(values, rows, width).RequireGrad();
        foreach (var t in new[] { sparse, dense })
        {
            using var tape = new Tape<double>();
            tape.Backward(Op.Sum(Op.Mul(Op.EmbeddingGather(t, ids), Tensor<double>.FromArray(weights, n, width))));
        }
        Assert.That(sparse.SparseGrad!.Count, Is.EqualTo(ids.Distinct().Count()));
        Assert.That(sparse.SparseGrad.Count, Is.GreaterThan(64));
        Assert.That(sparse.SparseGrad.ToDense(), Is.EqualTo(dense.Grad!.ToArray()).Within(1e-12));
    }

    [Test]
    public void Sparse_gradients_per_field_and_per_bag()
    {
        var t0 = EmbeddingTable.Create<double>([1.0, 1, 2, 2, 3, 3], 3, 2, "f0").RequireGrad();
        var t1 = EmbeddingTable.Create<double>([5.0, 5, 6, 6, 7, 7, 8, 8], 4, 2, "f1").RequireGrad();
        using (var tape = new Tape<double>())
        {
            // ids [B 3, F 2]; d loss / d x0 = 1 everywhere.
            var x0 = Op.EmbeddingGatherFields([t0, t1], new[] { 2, 3, 2, 0, 1, 3 }, 3);
            tape.Backward(Op.Sum(x0));
        }
        Assert.That(t0.SparseGrad!.SortedRows().Select(r => r.Row), Is.EqualTo(new[] { 1, 2 }));
        Assert.That(t0.SparseGrad.ToDense(), Is.EqualTo(new[] { 0.0, 0, 1, 1, 2, 2 }));
        Assert.That(t1.SparseGrad!.SortedRows().Select(r => r.Row), Is.EqualTo(new[] { 0, 3 }));
        Assert.That(t1.SparseGrad.ToDense(), Is.EqualTo(new[] { 1.0, 1, 0, 0, 0, 0, 2, 2 }));

        var bag = EmbeddingTable.Create<double>(new double[5 * 2], 5, 2, "tags").RequireGrad();
        using (var tape = new Tape<double>())
        {
            var y = Op.EmbeddingBag(bag, new[] { 4, 1, 4, 0 }, new[] { 0, 3, 3, 4 }, PoolingMode.Mean); // bags {4,1,4}, {}, {0}
            tape.Backward(Op.Sum(Op.Mul(y, Tensor<double>.FromArray([3.0, 6, 100, 100, 1, 2], 3, 2))));
        }
        Assert.That(bag.SparseGrad!.SortedRows().Select(r => r.Row), Is.EqualTo(new[] { 0, 1, 4 }));
        Assert.That(bag.SparseGrad.ToDense(), Is.EqualTo(new[] { 1.0, 2, 1, 2, 0, 0, 0, 0, 2, 4 }).Within(1e-12));
        Assert.That(bag.Grad, Is.Null);
    }

    // ---------- bad input ----------

    [TestCase(-1, 2)]
    [TestCase(6, 1)]
    [TestCase(int.MinValue, 0)]
    public void A_bad_id_names_the_op_the_table_the_id_and_its_position(int badId, int position)
    {
        var table = EmbeddingTable.Zeros<float>(6, 4, "ad_id");
        var ids = new[] { 0, 1, 2, 3 };
        ids[position] = badId;
        using var tape = new Tape<float>();
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Op.EmbeddingGather(table, ids))!;
        Assert.That(ex.Message, Does.Contain("EmbeddingGather").And.Contain("'ad_id' [6, 4]")
            .And.Contain($"id {badId}").And.Contain($"position {position}"));

        var bagEx = Assert.Throws<ArgumentOutOfRangeException>(() => Op.EmbeddingBag(table, ids, new[] { 0, 4 }, PoolingMode.Sum))!;
        Assert.That(bagEx.Message, Does.Contain("EmbeddingBag").And.Contain("'ad_id'").And.Contain($"id {badId}").And.Contain($"position {position}"));
    }

    [Test]
    public void A_bad_field_id_names_the_field_and_its_table()
    {
        var tables = new[] { EmbeddingTable.Zeros<float>(3, 2, "C1"), EmbeddingTable.Zeros<float>(5, 2, "C2"), EmbeddingTable.Zeros<float>(2, 2, "C3") };
        using var tape = new Tape<float>();
        // ids [2, 3]: sample 1, field 2 has id 2, but C3 has 2 rows.
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Op.EmbeddingGatherFields(tables, new[] { 0, 4, 1, 2, 0, 2 }, 2))!;
        Assert.That(ex.Message, Does.Contain("EmbeddingGatherFields").And.Contain("field 2").And.Contain("'C3' [2, 2]")
            .And.Contain("id 2").And.Contain("position 5").And.Contain("sample 1"));
    }

    [Test]
    public void Shape_mismatches_throw_naming_the_shapes()
    {
        var table = Tensor<float>.Zeros(4, 3);
        using var tape = new Tape<float>();
        Assert.That(Assert.Throws<ArgumentException>(() => Op.EmbeddingGather(table, new[] { 0, 1 }, new Shape(2, 2)))!.Message,
            Does.Contain("EmbeddingGather").And.Contain("[2, 2]").And.Contain("[4, 3]"));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.EmbeddingGather(Tensor<float>.Zeros(12), new[] { 0 }))!.Message,
            Does.Contain("[12]"));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.EmbeddingGatherFields([table, Tensor<float>.Zeros(4, 5)], new[] { 0, 0 }, 1))!.Message,
            Does.Contain("field 1").And.Contain("[4, 5]").And.Contain("[4, 3]"));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.EmbeddingGatherFields([table, table], new[] { 0, 0, 0 }, 2))!.Message,
            Does.Contain("3 ids").And.Contain("batch 2"));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.EmbeddingBag(table, new[] { 0, 1 }, new[] { 0, 1 }, PoolingMode.Sum))!.Message,
            Does.Contain("EmbeddingBag").And.Contain("end at the id count 2"));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.EmbeddingBag(table, new[] { 0, 1 }, new[] { 0, 2, 1, 2 }, PoolingMode.Sum))!.Message,
            Does.Contain("decrease at bag 1"));
        Assert.That(Assert.Throws<ArgumentException>(() => Op.MulColumn(Tensor<float>.Zeros(3, 4), Tensor<float>.Zeros(4)))!.Message,
            Does.Contain("MulColumn").And.Contain("[4]").And.Contain("[3, 4]"));
    }
}
