using KdEngine.Autograd;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Ops;
using KdEngine.Tensors;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Training;

/// <summary>
/// Regularisation of embedding tables without dense updates: lazy (deferred) decoupled weight decay checked step by
/// step against updating every row every step, Dense table mode against dense references, FTRL-Proximal against hand
/// computation, optimizer groups and the chosen-rows API.
/// </summary>
public class SparseRegularizationTests
{
    private const int Rows = 7, Width = 19; // 19 = one Vector512 block + a 3-element tail

    private static Tensor<float> Table(float[] values, int rows, int width, string name)
    {
        var t = new Tensor<float>(new Shape(rows, width), new CpuStorage<float>(rows * width), ownsStorage: true, name) { HasSparseGradient = true };
        values.CopyTo(t.AsSpan());
        t.RequireGrad();
        return t;
    }

    private static Tensor<float> DenseParam(float[] values, string name, params int[] dims)
    {
        var t = Tensor<float>.FromArray(values, dims).RequireGrad();
        t.Name = name;
        return t;
    }

    private static float[] Values(int n, int seed, float lo = -1f, float hi = 1f)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = lo + (hi - lo) * (float)rng.NextDouble();
        return a;
    }

    /// <summary>Touched rows per step: rows 0 and 6 are never touched; row 2 waits 5 steps; row 1 twice in one step.</summary>
    private static readonly int[][] Touched = [[4, 1], [3, 1, 1], [5], [], [2, 4], [1], [5, 3], [], [], [2]];

    /// <summary>A learning rate that changes every step, so the deferred factor must follow the schedule, not a constant.</summary>
    private static float Lr(int step) => 0.05f + 0.01f * (step % 3);

    private static void AssertRowsClose(ReadOnlySpan<float> actual, double[] expected, double rtol, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            Assert.That(actual[i], Is.EqualTo(expected[i]).Within(rtol * Math.Max(1.0, Math.Abs(expected[i]))), $"{what}[{i}] (row {i / Width})");
    }

    [Test]
    public void Lazy_weight_decay_under_SGD_equals_dense_SGD_with_L2_on_every_row_step_by_step()
    {
        const float decay = 0.3f;
        var w0 = Values(Rows * Width, 1);
        var table = Table(w0, Rows, Width, "emb");
        var dense = DenseParam(w0, "dense", Rows, Width);
        var lazy = new Sgd([table], Lr(0)) { EmbeddingWeightDecay = decay };
        var reference = new Sgd([dense], Lr(0)) { DenseL2 = decay }; // dense SGD: ĝ = g + λ·w on every row, every step
        for (int step = 0; step < Touched.Length; step++)
        {
            lazy.LearningRate = reference.LearningRate = Lr(step);
            // The forward reads the batch's rows first (the embedding op brings them up to date), as in training.
            if (Touched[step].Length > 0)
            {
                using var tape = new Tape<float>();
                var ids = Touched[step].Distinct().ToArray();
                var read = Op.EmbeddingGather(table, ids).ToArray();
                for (int k = 0; k < ids.Length; k++)
                    Assert.That(read.AsSpan(k * Width, Width).ToArray(), Is.EqualTo(dense.AsSpan().Slice(ids[k] * Width, Width).ToArray()).Within(2e-5),
                        $"step {step}: a read of row {ids[k]} sees the decay it missed");
            }
            var g = new float[Rows * Width];
            int j = 0;
            table.SparseGradOrEmpty();
            foreach (int row in Touched[step])
            {
                var gr = Values(Width, 100 * step + j++);
                table.SparseGrad!.Add(row, gr);
                for (int c = 0; c < Width; c++) g[row * Width + c] += gr[c];
            }
            dense.GradOrZeros();
            g.CopyTo(dense.Grad!.AsSpan());
            lazy.Step();
            reference.Step();
            // ToArray brings every deferred row up to date; the table must equal the dense run after every step.
            AssertRowsClose(table.ToArray(), Array.ConvertAll(dense.ToArray(), x => (double)x), 2e-5, $"step {step}");
        }
        Assert.That(table.AsSpan()[0], Is.Not.EqualTo(w0[0]), "row 0 was never touched but decayed");
    }

    /// <summary>
    /// AdamW with lazy rows: the reference applies w ← (1 − lr·δ)·w to every row every step and the (lazy) Adam step to the
    /// touched rows, in double; the optimizer defers the decay of idle rows and must agree at every step.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void Lazy_decoupled_decay_under_Adam_equals_decaying_every_row_every_step(bool readBeforeStep)
    {
        const double decay = 0.5, b1 = 0.9, b2 = 0.999, eps = 1e-8;
        var w0 = Values(Rows * Width, 2);
        var table = Table(w0, Rows, Width, "emb");
        var adam = new Adam([table], Lr(0)) { EmbeddingWeightDecay = (float)decay };
        var w = Array.ConvertAll(w0, x => (double)x);
        var m = new double[w.Length];
        var v = new double[w.Length];
        long t = 0;
        for (int step = 0; step < Touched.Length; step++)
        {
            double lr = Lr(step);
            adam.LearningRate = (float)lr;
            if (readBeforeStep && Touched[step].Length > 0)
            {
                using var tape = Tape<float>.NoGrad();
                Op.EmbeddingGather(table, Touched[step].Distinct().ToArray());
            }
            var grads = new Dictionary<int, double[]>();
            int j = 0;
            table.SparseGradOrEmpty();
            foreach (int row in Touched[step])
            {
                var gr = Values(Width, 200 * step + j++);
                table.SparseGrad!.Add(row, gr);
                if (!grads.TryGetValue(row, out var acc)) grads[row] = acc = new double[Width];
                for (int c = 0; c < Width; c++) acc[c] += gr[c];
            }
            adam.Step();
            for (int i = 0; i < w.Length; i++) w[i] *= 1 - lr * decay; // every row, every step
            if (grads.Count > 0)
            {
                t++;
                foreach (var (row, g) in grads)
                    for (int c = 0; c < Width; c++)
                    {
                        int i = row * Width + c;
                        m[i] = b1 * m[i] + (1 - b1) * g[c];
                        v[i] = b2 * v[i] + (1 - b2) * g[c] * g[c];
                        w[i] -= lr * (m[i] / (1 - Math.Pow(b1, t))) / (Math.Sqrt(v[i] / (1 - Math.Pow(b2, t))) + eps);
                    }
            }
            AssertRowsClose(table.ToArray(), w, 2e-5, $"step {step}");
        }
    }

    [TestCase("adam")]
    [TestCase("adagrad")]
    [TestCase("momentum")]
    public void Dense_table_mode_follows_the_dense_rule_with_zero_gradients_for_untouched_rows(string kind)
    {
        // The reference is the same optimizer over a dense copy of the table: every row, every step, zero gradient
        // where the batch did not touch, coupled L2 on every row — PyTorch's dense update of an embedding.
        var w0 = Values(Rows * Width, 3);
        var table = Table(w0, Rows, Width, "emb");
        var dense = DenseParam(w0, "dense", Rows, Width);
        Optimizer Build(Tensor<float> p) => kind switch
        {
            "adam" => new Adam([p], 0.05f),
            "adagrad" => new Adagrad([p], 0.1f),
            _ => new Sgd([p], 0.05f, 0.9f),
        };
        var sparse = Build(table);
        sparse.TableUpdate = TableUpdateMode.Dense;
        sparse.EmbeddingL2 = 0.1f;
        sparse.EmbeddingWeightDecay = 0.2f;
        var reference = Build(dense);
        reference.DenseL2 = 0.1f;
        reference.DenseWeightDecay = 0.2f;
        for (int step = 0; step < Touched.Length; step++)
        {
            var g = new float[Rows * Width];
            int j = 0;
            table.SparseGradOrEmpty();
            foreach (int row in Touched[step])
            {
                var gr = Values(Width, 300 * step + j++);
                table.SparseGrad!.Add(row, gr);
                for (int c = 0; c < Width; c++) g[row * Width + c] += gr[c];
            }
            dense.GradOrZeros();
            g.CopyTo(dense.Grad!.AsSpan());
            sparse.Step();
            reference.Step();
            Assert.That(table.ToArray(), Is.EqualTo(dense.ToArray()), $"{kind} step {step}: bit for bit");
        }
        Assert.That(sparse.ParameterStepCount(0), Is.EqualTo(Touched.Length), "a dense-mode table steps every step (Adam's t)");
    }

    [Test]
    public void Coupled_L2_in_lazy_mode_reaches_touched_rows_only_and_dense_mode_reaches_every_row()
    {
        var w0 = Values(Rows * Width, 4);
        foreach (var mode in new[] { TableUpdateMode.Lazy, TableUpdateMode.Dense })
        {
            var table = Table(w0, Rows, Width, "emb");
            var adam = new Adam([table], 0.01f) { EmbeddingL2 = 0.5f, TableUpdate = mode };
            table.SparseGradOrEmpty().Add(3, new float[Width]); // a zero gradient on row 3 only
            adam.Step();
            bool row0Moved = !table.AsSpan()[..Width].SequenceEqual(w0.AsSpan(0, Width));
            bool row3Moved = !table.AsSpan().Slice(3 * Width, Width).SequenceEqual(w0.AsSpan(3 * Width, Width));
            Assert.That(row3Moved, Is.True, $"{mode}: the touched row gets its L2");
            Assert.That(row0Moved, Is.EqualTo(mode == TableUpdateMode.Dense), $"{mode}: an untouched row gets L2 only in dense mode");
        }
    }

    [Test]
    public void Exported_state_with_the_raw_table_resumes_bit_identically_with_rows_still_pending()
    {
        var w0 = Values(Rows * Width, 5);
        var a = Table(w0, Rows, Width, "emb");
        var optA = new Adam([a], 0.05f) { EmbeddingWeightDecay = 0.4f };
        for (int step = 0; step < 4; step++)
        {
            foreach (int row in Touched[step]) a.SparseGradOrEmpty().Add(row, Values(Width, 400 * step + row));
            optA.Step();
        }
        // The state carries the table's clock and every row's; export applies nothing (row 0 still owes its decay).
        var raw = a.AsSpan().ToArray();
        var state = optA.ExportState();
        Assert.That(state.Single(e => e.Name == "emb.row_clock").Shape, Is.EqualTo(new[] { Rows, 3 }));
        Assert.That(a.AsSpan().ToArray(), Is.EqualTo(raw), "export leaves the table as it is");
        Assert.That(raw[0], Is.EqualTo(w0[0]), "row 0 is still pending");

        var b = Table(raw, Rows, Width, "emb");
        var optB = new Adam([b], 0.05f) { EmbeddingWeightDecay = 0.4f };
        optB.ImportState(state);
        for (int step = 4; step < Touched.Length; step++)
        {
            if (step == 6)
            {
                // Reads on one side only would round differently; both sides read the same rows as training would.
                using var tape = Tape<float>.NoGrad();
                Op.EmbeddingGather(a, new[] { 0, 3 });
                Op.EmbeddingGather(b, new[] { 0, 3 });
            }
            foreach (int row in Touched[step])
            {
                a.SparseGradOrEmpty().Add(row, Values(Width, 400 * step + row));
                b.SparseGradOrEmpty().Add(row, Values(Width, 400 * step + row));
            }
            optA.Step();
            optB.Step();
        }
        Assert.That(b.AsSpan().ToArray(), Is.EqualTo(a.AsSpan().ToArray()), "raw storage continues bit-identically");
        Assert.That(b.ToArray(), Is.EqualTo(a.ToArray()));

        // An optimizer without decay has no clock entries: state from one with decay does not fit it.
        var plain = new Adam([Table(raw, Rows, Width, "emb")], 0.05f);
        Assert.Throws<ArgumentException>(() => plain.ImportState(state));
    }

    [Test]
    public void The_predictor_the_checkpoint_and_clone_see_deferred_decay()
    {
        var w0 = Values(Rows * Width, 6);
        var table = Table(w0, Rows, Width, "emb");
        var sgd = new Sgd([table], 0.1f) { EmbeddingWeightDecay = 1f };
        table.SparseGradOrEmpty().Add(3, new float[Width]);
        sgd.Step(); // every row owes ×0.9; row 3 got it already
        Assert.That(table.AsSpan()[0], Is.EqualTo(w0[0]), "row 0's decay is deferred in storage");
        Assert.That(table.Clone().AsSpan()[0], Is.EqualTo(w0[0] * 0.9f).Within(1e-6), "Clone applies deferred rows");
        Assert.That(table.AsSpan()[0], Is.EqualTo(w0[0] * 0.9f).Within(1e-6), "and the table is now current");
        Assert.That(table.AsSpan()[3 * Width], Is.EqualTo(w0[3 * Width] * 0.9f).Within(1e-6));
    }

    [Test]
    public void Turning_decay_off_or_switching_to_dense_applies_every_pending_row_first()
    {
        var w0 = Values(Rows * Width, 7);
        var table = Table(w0, Rows, Width, "emb");
        var sgd = new Sgd([table], 0.1f) { EmbeddingWeightDecay = 1f };
        table.SparseGradOrEmpty().Add(1, new float[Width]);
        sgd.Step();
        sgd.EmbeddingWeightDecay = 0f;
        Assert.That(table.DeferredRows, Is.Null, "no deferral without decay");
        Assert.That(table.AsSpan()[0], Is.EqualTo(w0[0] * 0.9f).Within(1e-6), "the pending factor was applied when decay stopped");
        sgd.EmbeddingWeightDecay = 1f;
        table.SparseGradOrEmpty().Add(1, new float[Width]);
        sgd.Step();
        sgd.TableUpdate = TableUpdateMode.Dense;
        Assert.That(table.AsSpan()[0], Is.EqualTo(w0[0] * 0.81f).Within(1e-6));
    }

    [Test]
    public void A_decay_factor_that_is_not_positive_is_rejected_naming_the_values()
    {
        var table = Table(Values(Rows * Width, 8), Rows, Width, "emb");
        var sgd = new Sgd([table], 2f) { EmbeddingWeightDecay = 0.6f };
        table.SparseGradOrEmpty().Add(1, new float[Width]);
        var e = Assert.Throws<InvalidOperationException>(() => sgd.Step())!;
        Assert.That(e.Message, Does.Contain("weight decay").And.Contain("'emb'"));
    }

    [Test]
    public void StepRows_updates_chosen_rows_exactly_as_Step_does()
    {
        var w0 = Values(Rows * Width, 9);
        var a = Table(w0, Rows, Width, "emb");
        var b = Table(w0, Rows, Width, "emb");
        var optA = new Adam([a], 0.05f) { EmbeddingWeightDecay = 0.3f };
        var optB = new Adam([b], 0.05f) { EmbeddingWeightDecay = 0.3f };
        for (int step = 0; step < Touched.Length; step++)
        {
            var rows = Touched[step].Distinct().Order().ToArray();
            var grads = new float[rows.Length * Width];
            for (int k = 0; k < rows.Length; k++)
            {
                var g = Values(Width, 500 * step + rows[k]);
                a.SparseGradOrEmpty().Add(rows[k], g);
                g.CopyTo(grads, k * Width);
            }
            optA.Step();
            optB.StepRows(b, rows, grads);
        }
        Assert.That(b.ToArray(), Is.EqualTo(a.ToArray()));
        Assert.That(optB.ParameterStepCount(0), Is.EqualTo(optA.ParameterStepCount(0)));
        Assert.Throws<ArgumentException>(() => optB.StepRows(b, [3, 1], new float[2 * Width]), "rows must ascend");
        Assert.Throws<ArgumentException>(() => optB.StepRows(b, [1], new float[Width - 1]), "one gradient row per row");
    }

    // ---------- FTRL-Proximal ----------

    /// <summary>
    /// McMahan et al.'s Algorithm 1 by hand, α = 0.5, β = 1, λ1 = 0.1, λ2 = 0.2, two coordinates from w = z = n = 0.
    /// Coordinate 0, gradients 0.3, −0.4, −1.2:
    ///   1: n = 0.09, σ = 0.3/0.5 = 0.6, z = 0.3 − 0.6·0 = 0.3 → w = −(0.3 − 0.1)/((1 + 0.3)/0.5 + 0.2) = −0.2/2.8 = −1/14
    ///   2: n = 0.25, σ = (0.5 − 0.3)/0.5 = 0.4, z = 0.3 − 0.4 − 0.4·(−1/14) = −1/14; |z| ≤ 0.1 → w = 0
    ///   3: n = 1.69, σ = (1.3 − 0.5)/0.5 = 1.6, z = −1/14 − 1.2 − 0 = −89/70 → w = (89/70 − 0.1)/((1 + 1.3)/0.5 + 0.2) = 41/168
    /// Coordinate 1, gradients 0, 0.5, 0: step 1 keeps w = 0; 2: n = 0.25, σ = 1, z = 0.5 → w = −0.4/3.2 = −0.125; 3 keeps it.
    /// Per-step regularisation multiplies λ1, λ2 by t: step 2 of coordinate 1 gives −(0.5 − 0.2)/(3 + 0.4) = −3/34, step 3
    /// −(0.5 − 0.3)/(3 + 0.6) = −1/18 (its z and n unchanged); coordinate 0's step 3 gives (89/70 − 0.3)/(4.6 + 0.6) = 34/182.
    /// </summary>
    [TestCase(FtrlRegularization.Absolute)]
    [TestCase(FtrlRegularization.PerStep)]
    public void Ftrl_matches_a_hand_computed_three_step_sequence(FtrlRegularization mode)
    {
        var w = DenseParam([0f, 0f], "w", 2);
        var ftrl = new Ftrl([w], alpha: 0.5f, beta: 1f, l1: 0.1f, l2: 0.2f, mode);
        float[][] g = [[0.3f, 0f], [-0.4f, 0.5f], [-1.2f, 0f]];
        double[][] expected = mode == FtrlRegularization.Absolute
            ? [[-1.0 / 14, 0], [0, -0.125], [41.0 / 168, -0.125]]
            : [[-1.0 / 14, 0], [0, -3.0 / 34], [34.0 / 182, -1.0 / 18]];
        for (int step = 0; step < 3; step++)
        {
            w.GradOrZeros();
            g[step].CopyTo(w.Grad!.AsSpan());
            ftrl.Step();
            Assert.That(w.AsSpan()[0], Is.EqualTo(expected[step][0]).Within(1e-6), $"{mode} step {step + 1}, coordinate 0");
            Assert.That(w.AsSpan()[1], Is.EqualTo(expected[step][1]).Within(1e-6), $"{mode} step {step + 1}, coordinate 1");
        }
        var z = ftrl.ExportState().Single(e => e.Name == "w.z").Data;
        Assert.That(z[0], Is.EqualTo(-89.0 / 70).Within(1e-6));
    }

    [Test]
    public void Ftrl_per_step_on_a_table_defers_the_shrinking_of_idle_rows()
    {
        // The same sequence on a table [2, 1]: row 0 is coordinate 0, row 1 coordinate 1 — touched only at step 2. Its
        // weight after step 3 (−1/18) comes from (z, n, t = 3) when the row is read.
        var table = Table([0f, 0f], 2, 1, "wide");
        var ftrl = new Ftrl([table], alpha: 0.5f, beta: 1f, l1: 0.1f, l2: 0.2f, FtrlRegularization.PerStep);
        table.SparseGradOrEmpty().Add(0, [0.3f]); ftrl.Step();
        table.SparseGradOrEmpty().Add(0, [-0.4f]); table.SparseGradOrEmpty().Add(1, [0.5f]); ftrl.Step();
        table.SparseGradOrEmpty().Add(0, [-1.2f]); ftrl.Step();
        Assert.That(table.AsSpan()[1], Is.EqualTo(-3.0 / 34).Within(1e-6), "storage still holds the row as of its last update");
        using (Tape<float>.NoGrad())
            Assert.That(Op.EmbeddingGather(table, new[] { 1 }).ToArray()[0], Is.EqualTo(-1.0 / 18).Within(1e-6), "a read sees t = 3");
        Assert.That(table.ToArray()[0], Is.EqualTo(34.0 / 182).Within(1e-6));
    }

    [Test]
    public void Ftrl_continues_from_nonzero_initial_weights_and_keeps_its_rate_fixed()
    {
        var w = DenseParam([0.5f, -0.25f, 0f], "w", 3);
        var ftrl = new Ftrl([w], alpha: 0.1f, beta: 1f, l1: 0.01f, l2: 0.1f, FtrlRegularization.Absolute);
        w.GradOrZeros(); // a zero gradient: the closed form must give back the initial weights
        ftrl.Step();
        Assert.That(w.ToArray(), Is.EqualTo(new[] { 0.5f, -0.25f, 0f }).Within(1e-6));
        Assert.Throws<InvalidOperationException>(() => ftrl.LearningRate = 0.01f);
        Assert.That(ftrl.SchedulesLearningRate, Is.False);
        Assert.Throws<InvalidOperationException>(() => { ftrl.DenseL2 = 0.1f; w.GradOrZeros(); ftrl.Step(); }, "L2 belongs to FTRL's own λ2");
    }

    /// <summary>
    /// Weights written from outside after FTRL has trained (restored best weights, a wide part copied in): anchored, the
    /// state returns them under a zero gradient (with absolute λ, c stays 1), keeping n; not anchored, the next update
    /// replaces them with the closed form of the old z. Per step, the table's deferred rows use the table clock.
    /// </summary>
    [TestCase(FtrlRegularization.Absolute)]
    [TestCase(FtrlRegularization.PerStep)]
    public void Ftrl_anchored_to_written_weights_continues_from_them(FtrlRegularization mode)
    {
        var w = DenseParam([0f, 0f, 0f], "w", 3);
        var table = Table([0f, 0f, 0f, 0f], 4, 1, "wide");
        var ftrl = new Ftrl([w, table], alpha: 0.5f, beta: 1f, l1: 0.01f, l2: 0.2f, mode);
        float[][] g = [[0.3f, -0.2f, 0.1f], [-0.4f, 0.5f, 0.2f]];
        foreach (var step in g)
        {
            w.GradOrZeros(); step.CopyTo(w.Grad!.AsSpan());
            table.SparseGradOrEmpty().Add(0, [step[0]]); table.SparseGradOrEmpty().Add(2, [step[1]]);
            ftrl.Step();
        }
        var n = ftrl.ExportState().Single(e => e.Name == "w.n").Data.ToArray();
        float[] written = [0.7f, 0f, -0.3f];
        float[] writtenRows = [0.4f, -0.6f, 0f, 0.05f];
        written.CopyTo(w.AsSpan()); writtenRows.CopyTo(table.AsSpan());
        ftrl.ReloadDeviceParameters();
        ftrl.AnchorStateToWeights();
        Assert.That(ftrl.ExportState().Single(e => e.Name == "w.n").Data, Is.EqualTo(n), "n (the per-coordinate rates) is kept");

        // The closed form of the anchored state gives the written weights back: at the same c (a zero-gradient step
        // moves c on only per step, so compare there with the weights the written ones shrink to at c + 1).
        w.GradOrZeros();
        table.SparseGradOrEmpty().Add(1, [0f]); table.SparseGradOrEmpty().Add(3, [0f]);
        ftrl.Step();
        if (mode == FtrlRegularization.Absolute)
        {
            Assert.That(w.ToArray(), Is.EqualTo(written).Within(1e-6));
            Assert.That(table.ToArray(), Is.EqualTo(writtenRows).Within(1e-6));
        }
        else
        {
            // t went from 2 to 3: w = −z/((β + √n)/α + 3λ2) with z = −w₀·((β + √n)/α + 2λ2) − sgn(w₀)·2λ1, shrunk as every
            // idle coordinate is per step, and still of the written weights' sign.
            var after = w.ToArray();
            for (int k = 0; k < 3; k++)
            {
                double d2 = (1 + Math.Sqrt(n[k])) / 0.5 + 2 * 0.2, d3 = (1 + Math.Sqrt(n[k])) / 0.5 + 3 * 0.2;
                double z = written[k] == 0 ? 0 : -(written[k] * d2 + Math.CopySign(2 * 0.01, written[k]));
                double expected = Math.Abs(z) <= 3 * 0.01 ? 0 : -(z - Math.CopySign(3 * 0.01, z)) / d3;
                Assert.That(after[k], Is.EqualTo(expected).Within(1e-6), $"coordinate {k}");
            }
        }

        // Without anchoring, the same written weights do not survive an update.
        var v = DenseParam([0f, 0f, 0f], "v", 3);
        var plain = new Ftrl([v], alpha: 0.5f, beta: 1f, l1: 0.01f, l2: 0.2f, mode);
        foreach (var step in g) { v.GradOrZeros(); step.CopyTo(v.Grad!.AsSpan()); plain.Step(); }
        written.CopyTo(v.AsSpan());
        v.GradOrZeros(); plain.Step();
        Assert.That(v.ToArray()[0], Is.Not.EqualTo(written[0]).Within(0.1));
    }

    // ---------- groups ----------

    [Test]
    public void A_group_clips_by_the_norm_over_all_members_and_scales_only_scheduled_rates()
    {
        var a = DenseParam([1f, 1f], "a", 2);
        var b = DenseParam([1f], "b", 1);
        var c = DenseParam([1f, 1f], "c", 2);
        var c2 = DenseParam([1f], "c2", 1);
        var group = new OptimizerGroup(new Sgd([a], 0.1f), new Sgd([b], 0.2f)) { ClipNorm = 1f };
        var single = new Sgd([c, c2], 0.1f) { ClipNorm = 1f };
        a.GradOrZeros(); new[] { 3f, 0f }.CopyTo(a.Grad!.AsSpan());
        b.GradOrZeros(); b.Grad!.AsSpan()[0] = 4f;                 // global norm 5 → scale 0.2
        group.Step();
        Assert.That(a.ToArray(), Is.EqualTo(new[] { 1 - 0.1f * 0.6f, 1f }).Within(1e-6));
        Assert.That(b.ToArray()[0], Is.EqualTo(1 - 0.2f * 0.8f).Within(1e-6));
        c.GradOrZeros(); new[] { 3f, 0f }.CopyTo(c.Grad!.AsSpan());
        c2.GradOrZeros(); c2.Grad!.AsSpan()[0] = 4f;
        single.Step();
        Assert.That(c.ToArray()[0], Is.EqualTo(a.ToArray()[0]), "the same scale one optimizer over all of them would use");

        group.LearningRate = 0.05f; // half of the lead's initial rate: every scheduled member halves
        Assert.That(group.Members[1].LearningRate, Is.EqualTo(0.1f).Within(1e-7));
        var withFtrl = new OptimizerGroup(new Ftrl([DenseParam([0f], "f", 1)]), new Adam([DenseParam([0f], "d", 1)], 1e-3f));
        withFtrl.LearningRate = 1e-4f;
        Assert.That(((Ftrl)withFtrl.Members[0]).LearningRate, Is.EqualTo(0.05f), "FTRL keeps α");
        Assert.That(withFtrl.Description, Is.EqualTo("Group(Ftrl(perStep)+Adam)"));
    }

    [Test]
    public void Group_state_round_trips_and_rejects_a_foreign_entry()
    {
        var p = DenseParam([0.1f, 0.2f], "p", 2);
        var q = DenseParam([0.3f], "q", 1);
        var g1 = new OptimizerGroup(new Ftrl([p]), new Adam([q], 0.01f));
        p.GradOrZeros(); p.Grad!.AsSpan().Fill(0.5f);
        q.GradOrZeros(); q.Grad!.AsSpan().Fill(-0.5f);
        g1.Step();
        var state = g1.ExportState();
        var g2 = new OptimizerGroup(new Ftrl([DenseParam([0.1f, 0.2f], "p", 2)]), new Adam([DenseParam([0.3f], "q", 1)], 0.01f));
        g2.ImportState(state);
        Assert.That(g2.StepCount, Is.EqualTo(1));
        Assert.That(g2.ExportState().Select(e => e.Data), Is.EqualTo(state.Select(e => e.Data)));
        var bad = state.Append(("1.q.extra", new float[1], new[] { 1 })).ToList();
        Assert.Throws<ArgumentException>(() => g2.ImportState(bad));
    }

    /// <summary>
    /// A separate L2 for the wide part (LIBFFM's λ_linear beside λ_latent): under SGD, two steps with fixed gradients by
    /// hand — w ← w − lr·(g + λ·w) with λ = l2Wide for <c>linear.*</c> (table rows touched, and the dense bias) and
    /// l2Embedding / l2Dense for the rest; without l2Wide the wide part keeps the others' values.
    /// </summary>
    [TestCase(true)]
    [TestCase(false)]
    public void A_separate_wide_L2_reaches_the_wide_part_only(bool separate)
    {
        const float lr = 0.1f, wideL2 = 0.5f, tableL2 = 0.2f, denseL2 = 0.05f;
        var wideTable = Table([1f, 2f, -1f], 3, 1, "linear.C1.weight");
        var bias = DenseParam([0.5f], "linear.bias", 1);
        var latent = Table([1f, -2f, 3f, 0.5f], 2, 2, "ffm.C1.weight");
        var dense = DenseParam([2f, -4f], "dnn.0.weight", 2);
        var settings = new TrainingSettings { Optimizer = OptimizerKind.Sgd, LearningRate = lr, L2Embedding = tableL2, L2Dense = denseL2, L2Wide = separate ? wideL2 : null };
        var optimizer = settings.BuildOptimizer([wideTable, bias, latent, dense]);
        for (int step = 0; step < 2; step++)
        {
            wideTable.SparseGradOrEmpty();
            wideTable.SparseGrad!.Add(1, [0.3f]);      // row 1 touched; rows 0 and 2 (lazy) are not
            latent.SparseGradOrEmpty();
            latent.SparseGrad!.Add(0, [0.1f, -0.1f]);
            bias.GradOrZeros();
            bias.Grad!.AsSpan()[0] = 0.2f;
            dense.GradOrZeros();
            dense.Grad!.AsSpan().Fill(-0.5f);
            optimizer.Step();
        }
        static double Two(double w, double g, double l2) { for (int i = 0; i < 2; i++) w -= 0.1 * (g + l2 * w); return w; }
        double wTable = separate ? wideL2 : tableL2, wBias = separate ? wideL2 : denseL2;
        Assert.That(wideTable.ToArray(), Is.EqualTo(new[] { 1.0, Two(2, 0.3, wTable), -1.0 }).Within(1e-6));
        Assert.That(bias.ToArray()[0], Is.EqualTo(Two(0.5, 0.2, wBias)).Within(1e-6));
        Assert.That(latent.ToArray(), Is.EqualTo(new[] { Two(1, 0.1, tableL2), Two(-2, -0.1, tableL2), 3.0, 0.5 }).Within(1e-6));
        Assert.That(dense.ToArray(), Is.EqualTo(new[] { Two(2, -0.5, denseL2), Two(-4, -0.5, denseL2) }).Within(1e-6));
        Assert.That(settings.Describe(), separate ? Does.Contain("L2 wide 0.5") : Does.Not.Contain("L2 wide"));
        Assert.Throws<ConfigException>(() => (settings with { L2Wide = -1f }).Validate());
        Assert.That(TrainingSettings.ParseStrict<TrainingSettings>("""{"l2Wide": 0.25}""", "test").L2Wide, Is.EqualTo(0.25f));
    }
    /// <summary>
    /// Adagrad with its accumulators starting at 1 (LIBFFM's and ML.NET's field-aware factorization machine), set through
    /// the settings' JSON, against three steps by hand: ĝ = g + λ·w; a ← a + ĝ²; w ← w − lr·ĝ/√a (ε 1e-10 is below the
    /// printed digits). lr 0.1; a latent table row with λ_latent 0.1 (l2Embedding), w0 = 0.5, g = 0.3, −0.6, 0.2:
    ///   ĝ1 = 0.35,       a1 = 1.1225,    w1 = 0.5 − 0.035/√1.1225 = 0.4669650
    ///   ĝ2 = −0.5533035, a2 = 1.4286448, w2 = 0.5132565
    ///   ĝ3 = 0.2513256,  a3 = 1.4918093, w3 = 0.4926796;
    /// a wide row with λ_linear 0.01 (l2Wide), w0 = 0, g = 0.4, 0.4, −0.1: w = −0.0371391, −0.0719262, −0.0631922 and
    /// a = 1.16, 1.3197030, 1.3298474. Untouched rows keep weights and accumulators (1). From the default accumulator 0 the
    /// first step is lr·sign(ĝ) instead (w1 = 0.4), which is why the setting matters at LIBFFM's learning rates.
    /// </summary>
    [Test]
    public void Adagrad_from_an_initial_accumulator_of_one_matches_three_steps_by_hand()
    {
        var settings = TrainingSettings.ParseStrict<TrainingSettings>(
            """{"optimizer": "adagrad", "learningRate": 0.1, "adagradInitialAccumulator": 1, "l2Embedding": 0.1, "l2Wide": 0.01}""", "test");
        var latent = Table([0.5f, 7f], 2, 1, "ffm.C1.weight");
        var wide = Table([0f, 3f], 2, 1, "linear.C1.weight");
        var optimizer = settings.BuildOptimizer([latent, wide]);
        float[] latentGradients = [0.3f, -0.6f, 0.2f], wideGradients = [0.4f, 0.4f, -0.1f];
        double[] latentWeights = [0.4669650, 0.5132565, 0.4926796], latentSums = [1.1225, 1.4286448, 1.4918093];
        double[] wideWeights = [-0.0371391, -0.0719262, -0.0631922], wideSums = [1.16, 1.3197030, 1.3298474];
        float[] Sum(string parameter) => optimizer.ExportState().Single(e => e.Name.EndsWith(parameter + ".sum", StringComparison.Ordinal)).Data;
        for (int step = 0; step < 3; step++)
        {
            latent.SparseGradOrEmpty();
            latent.SparseGrad!.Add(0, [latentGradients[step]]);
            wide.SparseGradOrEmpty();
            wide.SparseGrad!.Add(0, [wideGradients[step]]);
            optimizer.Step();
            Assert.That(latent.ToArray(), Is.EqualTo(new[] { latentWeights[step], 7.0 }).Within(1e-6), $"latent, step {step + 1}");
            Assert.That(Sum("ffm.C1.weight"), Is.EqualTo(new[] { latentSums[step], 1.0 }).Within(1e-6), $"latent accumulator, step {step + 1}");
            Assert.That(wide.ToArray(), Is.EqualTo(new[] { wideWeights[step], 3.0 }).Within(1e-6), $"wide, step {step + 1}");
            Assert.That(Sum("linear.C1.weight"), Is.EqualTo(new[] { wideSums[step], 1.0 }).Within(1e-6), $"wide accumulator, step {step + 1}");
        }
        Assert.That(settings.Describe(), Does.Contain("adagrad lr 0.1 initial accumulator 1"));

        var fromZero = Table([0.5f], 1, 1, "ffm.C1.weight");
        var zeroOptimizer = (settings with { AdagradInitialAccumulator = 0f, L2Wide = null }).BuildOptimizer([fromZero]);
        fromZero.SparseGradOrEmpty();
        fromZero.SparseGrad!.Add(0, [0.3f]);
        zeroOptimizer.Step();
        Assert.That(fromZero.ToArray()[0], Is.EqualTo(0.4).Within(1e-6));
    }

    /// <summary>The default (0) is PyTorch's and is not written to JSON, so existing configs and checkpoints read and write as
    /// before; a negative value, or one set for an optimizer other than Adagrad, is refused naming the key.</summary>
    [Test]
    public void The_initial_accumulator_defaults_to_zero_and_is_validated()
    {
        var defaults = new TrainingSettings { Optimizer = OptimizerKind.Adagrad };
        Assert.That(defaults.ToJson(), Does.Not.Contain("adagradInitialAccumulator"));
        Assert.That(defaults.Describe(), Does.Not.Contain("initial accumulator"));
        var optimizer = defaults.BuildOptimizer([Table([1f], 1, 1, "ffm.C1.weight")]);
        Assert.That(((Adagrad)optimizer).InitialAccumulator, Is.Zero);
        Assert.That(TrainingSettings.ParseStrict<TrainingSettings>((defaults with { AdagradInitialAccumulator = 0.5f }).ToJson(), "test").AdagradInitialAccumulator,
            Is.EqualTo(0.5f));
        var negative = Assert.Throws<ConfigException>(() => (defaults with { AdagradInitialAccumulator = -1f }).Validate());
        Assert.That(negative!.Message, Does.Contain("adagradInitialAccumulator"));
        var notAdagrad = Assert.Throws<ConfigException>(() => new TrainingSettings { AdagradInitialAccumulator = 1f }.Validate());
        Assert.That(notAdagrad!.Message, Does.Contain("adagradInitialAccumulator").And.Contain("adam"));
        Assert.DoesNotThrow(() => new TrainingSettings { WideOptimizer = OptimizerKind.Adagrad, AdagradInitialAccumulator = 1f }.Validate());
    }
    /// <summary>
    /// ML.NET's FFM scales every input to x = c = 1/√F (instance normalisation of one-hot rows) and trains the linear weights w
    /// with Adagrad from accumulator 1 at rate lr with L2 λ: g = c·s + λ·w (s: the loss's slope in the logit). Our wide part
    /// adds u = c·w unscaled; Adagrad on u at rate lr·c from accumulator 1/c² with L2 λ/c² takes exactly the same steps in u
    /// (a = c²·(1/c² + Σ ĝ_u²), so lr·c·ĝ_u/√(1/c² + Σ ĝ_u²) = c·lr·g/√a). Three steps with fixed slopes, F = 39.
    /// </summary>
    [Test]
    public void The_wide_part_settings_reproduce_adagrad_on_normalised_inputs()
    {
        const int F = 39;
        const double lr = 0.1, lambda = 1e-4;
        double c = 1 / Math.Sqrt(F);
        var settings = new TrainingSettings
        {
            Optimizer = OptimizerKind.Adagrad, LearningRate = 0.1f, AdagradInitialAccumulator = 1f, L2Embedding = 1e-4f,
            WideLearningRate = (float)(lr * c), WideAdagradInitialAccumulator = F, L2Wide = (float)(lambda * F),
        };
        var wide = Table([0.02f, 0f], 2, 1, "linear.C1.weight");
        var latent = Table([0.5f], 1, 1, "ffm.C1.weight");
        var optimizer = settings.BuildOptimizer([wide, latent]);
        double w = 0.02 / c, a = 1;   // ML.NET's weight for the same starting logit contribution, its accumulator
        foreach (double slope in new[] { 0.8, -0.3, 0.45 })
        {
            double g = c * slope + lambda * w;
            a += g * g;
            w -= lr * g / Math.Sqrt(a);
            wide.SparseGradOrEmpty();
            wide.SparseGrad!.Add(0, [(float)slope]);
            latent.SparseGradOrEmpty();
            latent.SparseGrad!.Add(0, [0.1f]);
            optimizer.Step();
            Assert.That(wide.ToArray()[0], Is.EqualTo(c * w).Within(1e-6), "u = c·w after each step");
        }
        Assert.That(wide.ToArray()[1], Is.Zero, "an untouched row stays");
        Assert.That(settings.Describe(), Does.Contain("wide part lr").And.Contain("wide part initial accumulator 39"));
        Assert.Throws<ConfigException>(() => (settings with { WideLearningRate = 0f }).Validate());
        Assert.Throws<ConfigException>(() => (settings with { WideAdagradInitialAccumulator = -1f }).Validate());
        Assert.Throws<ConfigException>(() => (settings with { Optimizer = OptimizerKind.Adam, AdagradInitialAccumulator = 0f }).Validate(),
            "a wide accumulator for a wide part that trains with adam");
        Assert.That(new TrainingSettings().ToJson(), Does.Not.Contain("wideLearningRate").And.Not.Contain("wideAdagradInitialAccumulator"));
    }
}
