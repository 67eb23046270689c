using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Training;

public class OptimizerTests
{
    // ---------- helpers ----------

    private static Tensor<float> Dense(float[] values, string name, params int[] dims)
    {
        var t = Tensor<float>.FromArray(values, dims).RequireGrad();
        t.Name = name;
        return t;
    }

    /// <summary>An embedding table [rows, width] whose gradient is row-sparse.</summary>
    private static Tensor<float> Table(float[] values, int rows, int width, string name)
    {
        var t = new Tensor<float>(new Shape(rows, width), new CpuStorage<float>(rows * width), ownsStorage: true, name)
        {
            HasSparseGradient = true,
        };
        values.CopyTo(t.AsSpan());
        t.RequireGrad();
        t.SparseGrad = new SparseRowGradient<float>(rows, width);
        return t;
    }

    private static void SetGrad(Tensor<float> p, float[] g)
    {
        p.Grad ??= Tensor<float>.Zeros(p.Shape);
        g.CopyTo(p.Grad.AsSpan());
    }

    private static float[] Values(int n, int seed, float lo = -1f, float hi = 1f)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = lo + (hi - lo) * (float)rng.NextDouble();
        return a;
    }

    private static void AssertClose(ReadOnlySpan<float> actual, double[] expected, double rtol, string what)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), what);
        for (int i = 0; i < expected.Length; i++)
        {
            double tol = rtol * Math.Max(1.0, Math.Abs(expected[i]));
            Assert.That(actual[i], Is.EqualTo(expected[i]).Within(tol), $"{what}[{i}]");
        }
    }

    private static double[] ToDouble(float[] a) => Array.ConvertAll(a, x => (double)x);

    private static float[] StateOf(Optimizer opt, string name) => opt.ExportState().Single(e => e.Name == name).Data;

    // Reference rules in double, written from the textbook formulas (no FMA, no SIMD), one element at a time.
    private interface IReference { void Apply(int i, double g, ref double w, long t); }

    private sealed class RefSgd(double lr, double mu, bool nesterov, double l2, int n) : IReference
    {
        private readonly double[] _b = new double[n];
        public void Apply(int i, double g, ref double w, long t)
        {
            g += l2 * w;
            if (mu == 0) { w -= lr * g; return; }
            _b[i] = mu * _b[i] + g;
            w -= lr * (nesterov ? g + mu * _b[i] : _b[i]);
        }
    }

    private sealed class RefAdam(double lr, double b1, double b2, double eps, double l2, int n) : IReference
    {
        public readonly double[] M = new double[n], V = new double[n];
        public void Apply(int i, double g, ref double w, long t)
        {
            g += l2 * w;
            M[i] = b1 * M[i] + (1 - b1) * g;
            V[i] = b2 * V[i] + (1 - b2) * g * g;
            double mHat = M[i] / (1 - Math.Pow(b1, t)), vHat = V[i] / (1 - Math.Pow(b2, t));
            w -= lr * mHat / (Math.Sqrt(vHat) + eps);
        }
    }

    private sealed class RefAdagrad(double lr, double a0, double eps, double l2, int n) : IReference
    {
        private readonly double[] _a = Enumerable.Repeat(a0, n).ToArray();
        public void Apply(int i, double g, ref double w, long t)
        {
            g += l2 * w;
            _a[i] += g * g;
            w -= lr * g / (Math.Sqrt(_a[i]) + eps);
        }
    }

    private static (Optimizer Opt, IReference Ref) Make(string kind, Tensor<float>[] ps, int n, float l2Dense, float l2Emb) => kind switch
    {
        "sgd" => (new Sgd(ps, 0.1f) { DenseL2 = l2Dense, EmbeddingL2 = l2Emb }, new RefSgd(0.1, 0, false, l2Dense + l2Emb, n)),
        "momentum" => (new Sgd(ps, 0.1f, 0.9f) { DenseL2 = l2Dense, EmbeddingL2 = l2Emb }, new RefSgd(0.1, 0.9, false, l2Dense + l2Emb, n)),
        "nesterov" => (new Sgd(ps, 0.1f, 0.9f, nesterov: true) { DenseL2 = l2Dense, EmbeddingL2 = l2Emb }, new RefSgd(0.1, 0.9, true, l2Dense + l2Emb, n)),
        "adam" => (new Adam(ps, 0.05f) { DenseL2 = l2Dense, EmbeddingL2 = l2Emb }, new RefAdam(0.05, 0.9, 0.999, 1e-8, l2Dense + l2Emb, n)),
        "adagrad" => (new Adagrad(ps, 0.1f, initialAccumulator: 0.1f) { DenseL2 = l2Dense, EmbeddingL2 = l2Emb }, new RefAdagrad(0.1, 0.1, 1e-10, l2Dense + l2Emb, n)),
        _ => throw new ArgumentException(kind),
    };

    private static readonly string[] Kinds = ["sgd", "momentum", "nesterov", "adam", "adagrad"];

    // ---------- hand-computed values ----------

    [Test]
    public void Sgd_momentum_and_nesterov_match_hand_computed_steps()
    {
        // lr 0.1, μ 0.9, w0 = 1, g = 1 every step.
        // Momentum: b = 1, 1.9, 2.71 → w = 0.9, 0.71, 0.439.
        // Nesterov: d = g + μb = 1.9, 2.71, 3.439 → w = 0.81, 0.539, 0.1951.
        foreach (var (nesterov, expected) in new[] { (false, new[] { 0.9, 0.71, 0.439 }), (true, new[] { 0.81, 0.539, 0.1951 }) })
        {
            var w = Dense([1f], "w", 1);
            var opt = new Sgd([w], 0.1f, 0.9f, nesterov);
            for (int s = 0; s < 3; s++)
            {
                SetGrad(w, [1f]);
                opt.Step();
                Assert.That(w.AsSpan()[0], Is.EqualTo(expected[s]).Within(1e-6), $"nesterov={nesterov} step {s + 1}");
            }
        }
    }

    [Test]
    public void Adam_and_Adagrad_match_hand_computed_steps()
    {
        // Adam lr 0.1, β (0.9, 0.999), w0 = 1, g = 2 then −1.
        // Step 1: m̂ = 2, v̂ = 4 → w = 1 − 0.1·2/2 = 0.9.
        // Step 2: m = 0.08, v = 0.004996; m̂ = 0.08/0.19 = 0.4210526, v̂ = 0.004996/0.001999 = 2.4992496 →
        //         w = 0.9 − 0.1·0.4210526/1.5809015 = 0.8733662.
        var w = Dense([1f], "w", 1);
        var adam = new Adam([w], 0.1f);
        SetGrad(w, [2f]); adam.Step();
        Assert.That(w.AsSpan()[0], Is.EqualTo(0.9).Within(1e-6));
        SetGrad(w, [-1f]); adam.Step();
        Assert.That(w.AsSpan()[0], Is.EqualTo(0.8733662).Within(1e-6));

        // Adagrad lr 0.1, a0 = 0.1, w0 = 1, g = 1 twice: a = 1.1 → w = 1 − 0.1/√1.1 = 0.9046537;
        // a = 2.1 → w = 0.9046537 − 0.1/√2.1 = 0.8356469. The accumulator is the exported "sum".
        var u = Dense([1f], "u", 1);
        var adagrad = new Adagrad([u], 0.1f, initialAccumulator: 0.1f);
        SetGrad(u, [1f]); adagrad.Step();
        Assert.That(u.AsSpan()[0], Is.EqualTo(0.9046537).Within(1e-6));
        Assert.That(StateOf(adagrad, "u.sum")[0], Is.EqualTo(1.1f).Within(1e-6));
        SetGrad(u, [1f]); adagrad.Step();
        Assert.That(u.AsSpan()[0], Is.EqualTo(0.8356469).Within(1e-6));
        Assert.That(StateOf(adagrad, "u.sum")[0], Is.EqualTo(2.1f).Within(1e-6));
    }

    [TestCaseSource(nameof(Kinds))]
    public void Dense_update_matches_the_double_reference_over_three_steps(string kind)
    {
        const int n = 37; // two Vector512 blocks + a 5-element scalar tail
        var w0 = Values(n, 1);
        var w = Dense(w0, "w", n);
        var (opt, reference) = Make(kind, [w], n, l2Dense: 0.01f, l2Emb: 0f);
        var expected = ToDouble(w0);
        for (int step = 1; step <= 3; step++)
        {
            var g = Values(n, 100 + step);
            SetGrad(w, g);
            opt.Step();
            for (int i = 0; i < n; i++) reference.Apply(i, g[i], ref expected[i], step);
            AssertClose(w.AsSpan(), expected, 2e-6, $"{kind} step {step}");
            Assert.That(w.Grad!.ToArray(), Is.All.EqualTo(0f), "Step clears the dense gradient");
        }
        Assert.That(opt.StepCount, Is.EqualTo(3));
    }

    [TestCaseSource(nameof(Kinds))]
    public void Sparse_update_touches_only_the_rows_in_the_gradient(string kind)
    {
        const int rows = 7, width = 19; // 19 = one Vector512 block + a 3-element tail
        var w0 = Values(rows * width, 2);
        var table = Table(w0, rows, width, "emb");
        var (opt, reference) = Make(kind, [table], rows * width, l2Dense: 0f, l2Emb: 0.02f);
        var expected = ToDouble(w0);
        // Steps touch {4, 1}, {3, 1 twice (summed)}, {5}; rows 0, 2, 6 are never touched.
        int[][] touched = [[4, 1], [3, 1, 1], [5]];
        for (int step = 1; step <= 3; step++)
        {
            var summed = new Dictionary<int, double[]>();
            int k = 0;
            foreach (int row in touched[step - 1])
            {
                var g = Values(width, 1000 * step + k++);
                table.SparseGrad!.Add(row, g);
                if (!summed.TryGetValue(row, out var acc)) summed[row] = acc = new double[width];
                for (int j = 0; j < width; j++) acc[j] += g[j];
            }
            opt.Step();
            foreach (var (row, g) in summed)
                for (int j = 0; j < width; j++) reference.Apply(row * width + j, (float)g[j], ref expected[row * width + j], step);
            AssertClose(table.AsSpan(), expected, 2e-6, $"{kind} step {step}");
            Assert.That(table.SparseGrad!.Count, Is.EqualTo(0), "Step clears the sparse gradient");
        }
        foreach (int row in new[] { 0, 2, 6 })
            Assert.That(table.AsSpan().Slice(row * width, width).ToArray(), Is.EqualTo(w0.AsSpan(row * width, width).ToArray()),
                $"untouched row {row} must be bit-for-bit unchanged (no L2, no momentum drift)");
    }

    // ---------- lazy Adam ----------

    [Test]
    public void Lazy_Adam_leaves_untouched_rows_and_their_moments_unchanged_and_uses_the_table_step()
    {
        const int rows = 5, width = 3;
        var w0 = Values(rows * width, 3);
        var table = Table(w0, rows, width, "emb");
        var adam = new Adam([table], 0.1f);

        table.SparseGrad!.Add(1, [1f, 2f, 3f]);
        adam.Step();
        var m1 = StateOf(adam, "emb.exp_avg");
        var v1 = StateOf(adam, "emb.exp_avg_sq");
        var afterStep1 = table.ToArray();

        table.SparseGrad!.Add(3, [-1f, 0.5f, 2f]);
        adam.Step();
        var m2 = StateOf(adam, "emb.exp_avg");
        var v2 = StateOf(adam, "emb.exp_avg_sq");
        var afterStep2 = table.ToArray();

        // Row 1 was not touched in step 2: weights, m and v identical to after step 1 (dense Adam would have
        // moved it on its momentum and decayed m and v).
        Assert.That(afterStep2.AsSpan(width, width).ToArray(), Is.EqualTo(afterStep1.AsSpan(width, width).ToArray()));
        Assert.That(m2.AsSpan(width, width).ToArray(), Is.EqualTo(m1.AsSpan(width, width).ToArray()));
        Assert.That(v2.AsSpan(width, width).ToArray(), Is.EqualTo(v1.AsSpan(width, width).ToArray()));
        // Rows never touched: weights as initialised, moments zero.
        foreach (int row in new[] { 0, 2, 4 })
        {
            Assert.That(afterStep2.AsSpan(row * width, width).ToArray(), Is.EqualTo(w0.AsSpan(row * width, width).ToArray()));
            Assert.That(m2.AsSpan(row * width, width).ToArray(), Is.All.EqualTo(0f));
            Assert.That(v2.AsSpan(row * width, width).ToArray(), Is.All.EqualTo(0f));
        }
        // Row 3, first touched at table step t = 2 (global per-table step, PyTorch SparseAdam's choice):
        // m = 0.1·g, v = 0.001·g²; m̂ = 0.1g/0.19, v̂ = 0.001g²/0.001999 → update = 0.1·m̂/(√v̂ + ε) ≠ 0.1·sign(g).
        Assert.That(adam.ParameterStepCount(0), Is.EqualTo(2));
        float[] g3 = [-1f, 0.5f, 2f];
        for (int j = 0; j < width; j++)
        {
            double g = g3[j];
            double mHat = 0.1 * g / (1 - 0.9 * 0.9), vHat = 0.001 * g * g / (1 - 0.999 * 0.999);
            double expected = w0[3 * width + j] - 0.1 * mHat / (Math.Sqrt(vHat) + 1e-8);
            Assert.That(afterStep2[3 * width + j], Is.EqualTo(expected).Within(1e-6), $"row 3 col {j}");
        }
    }

    [TestCase("adam")]
    [TestCase("adagrad")]
    [TestCase("nesterov")]
    public void A_table_with_every_row_touched_follows_the_dense_rule_bit_for_bit(string kind)
    {
        const int rows = 4, width = 21;
        var w0 = Values(rows * width, 4);
        var dense = Dense(w0, "d", rows, width);
        var table = Table(w0, rows, width, "t");
        var (optDense, _) = Make(kind, [dense], 1, 0.01f, 0f);
        var (optSparse, _) = Make(kind, [table], 1, 0f, 0.01f);
        for (int step = 0; step < 4; step++)
        {
            var g = Values(rows * width, 50 + step);
            SetGrad(dense, g);
            foreach (int row in new[] { 2, 0, 3, 1 }) table.SparseGrad!.Add(row, g.AsSpan(row * width, width));
            optDense.Step();
            optSparse.Step();
        }
        Assert.That(table.ToArray(), Is.EqualTo(dense.ToArray()));
    }

    // ---------- L2 ----------

    [Test]
    public void L2_is_set_separately_for_dense_weights_and_tables_and_reaches_only_touched_rows()
    {
        // SGD lr 1 with zero loss gradients isolates the L2 term: w ← w − λ·w.
        var dense = Dense([1f, -2f], "dense", 2);
        var table = Table([1f, 1f, 2f, 2f, 3f, 3f], 3, 2, "emb");
        var opt = new Sgd([dense, table], 1f) { DenseL2 = 0.1f, EmbeddingL2 = 0.5f };
        SetGrad(dense, [0f, 0f]);
        table.SparseGrad!.Add(1, [0f, 0f]);
        opt.Step();
        Assert.That(dense.ToArray(), Is.EqualTo(new[] { 0.9f, -1.8f }).Within(1e-7), "DenseL2 = 0.1");
        Assert.That(table.ToArray(), Is.EqualTo(new[] { 1f, 1f, 1f, 1f, 3f, 3f }), "EmbeddingL2 = 0.5 on row 1 only");

        // Each group's coefficient reaches only its group.
        var d2 = Dense([1f], "d2", 1);
        var t2 = Table([4f, 4f], 1, 2, "t2");
        var onlyEmb = new Sgd([d2, t2], 1f) { EmbeddingL2 = 0.25f };
        SetGrad(d2, [0f]);
        t2.SparseGrad!.Add(0, [0f, 0f]);
        onlyEmb.Step();
        Assert.That(d2.ToArray(), Is.EqualTo(new[] { 1f }));
        Assert.That(t2.ToArray(), Is.EqualTo(new[] { 3f, 3f }));
    }

    // ---------- clipping ----------

    [Test]
    public void Clipping_scales_every_gradient_by_the_global_norm()
    {
        // Dense g = [3, 0], sparse row 2 g = [0, 4]: ‖g‖ = 5 across both; ClipNorm 1 → s = 0.2 everywhere.
        var dense = Dense([1f, 1f], "dense", 2);
        var table = Table([1f, 1f, 1f, 1f, 1f, 1f], 3, 2, "emb");
        var opt = new Sgd([dense, table], 1f) { ClipNorm = 1f };
        SetGrad(dense, [3f, 0f]);
        table.SparseGrad!.Add(2, [0f, 4f]);
        opt.Step();
        Assert.That(opt.LastGradientNorm, Is.EqualTo(5.0));
        Assert.That(dense.ToArray(), Is.EqualTo(new[] { 1f - 3f * 0.2f, 1f }));
        Assert.That(table.ToArray(), Is.EqualTo(new[] { 1f, 1f, 1f, 1f, 1f, 1f - 4f * 0.2f }));

        // Below the threshold nothing is scaled.
        opt.ClipNorm = 10f;
        SetGrad(dense, [3f, 0f]);
        table.SparseGrad!.Add(0, [0f, 4f]);
        opt.Step();
        float afterFirst = 1f - 3f * 0.2f;
        Assert.That(dense.ToArray()[0], Is.EqualTo(afterFirst - 3f));
        Assert.That(table.ToArray()[1], Is.EqualTo(1f - 4f));
    }

    [Test]
    public void Clipped_result_is_independent_of_the_order_rows_were_touched()
    {
        const int rows = 50, width = 23;
        var w0 = Values(rows * width, 5);
        var grads = Enumerable.Range(0, rows).Select(r => Values(width, 600 + r, -3f, 3f)).ToArray();
        int[] touched = Enumerable.Range(0, 40).Select(i => (i * 7) % rows).ToArray();
        float[] Run(IEnumerable<int> order, out double norm)
        {
            var table = Table(w0, rows, width, "emb");
            var opt = new Adam([table], 0.01f) { ClipNorm = 0.5f };
            foreach (int r in order) table.SparseGrad!.Add(r, grads[r]);
            opt.Step();
            norm = opt.LastGradientNorm;
            return table.ToArray();
        }
        var a = Run(touched, out double na);
        var b = Run(Enumerable.Reverse(touched), out double nb);
        Assert.That(nb, Is.EqualTo(na), "the norm is summed in ascending row order whatever the touch order");
        Assert.That(b, Is.EqualTo(a));
        double direct = Math.Sqrt(touched.Sum(r => grads[r].Sum(x => (double)x * x)));
        Assert.That(na, Is.EqualTo(direct).Within(1e-9 * direct));
    }

    [Test]
    public void A_non_finite_gradient_with_clipping_throws_and_updates_nothing()
    {
        var w = Dense([1f, 2f], "w", 2);
        var opt = new Sgd([w], 0.1f) { ClipNorm = 1f };
        SetGrad(w, [float.NaN, 1f]);
        var ex = Assert.Throws<InvalidOperationException>(() => opt.Step());
        Assert.That(ex!.Message, Does.Contain("NaN"));
        Assert.That(w.ToArray(), Is.EqualTo(new[] { 1f, 2f }));
    }

    // ---------- convergence ----------

    [TestCase("momentum", 300)]
    [TestCase("adam", 600)]
    [TestCase("adagrad", 600)]
    public void Quadratic_bowl_converges(string kind, int steps)
    {
        // f(w) = ½ Σ aᵢ (wᵢ − cᵢ)², ∇f = a ∘ (w − c), curvatures 0.5 … 2.
        const int n = 33;
        var c = Values(n, 7, -2f, 2f);
        var a = Values(n, 8, 0.5f, 2f);
        var w = Dense(new float[n], "w", n);
        var (opt, _) = Make(kind, [w], n, 0f, 0f);
        if (kind == "adam") opt.LearningRate = 0.05f;
        if (kind == "adagrad") opt.LearningRate = 0.5f;
        var g = new float[n];
        for (int s = 0; s < steps; s++)
        {
            var wv = w.AsSpan();
            for (int i = 0; i < n; i++) g[i] = a[i] * (wv[i] - c[i]);
            SetGrad(w, g);
            opt.Step();
        }
        var final = w.ToArray();
        for (int i = 0; i < n; i++) Assert.That(final[i], Is.EqualTo(c[i]).Within(1e-3), $"{kind} w[{i}]");
    }

    // ---------- checkpoint state ----------

    [TestCase("momentum")]
    [TestCase("adam")]
    [TestCase("adagrad")]
    public void Export_then_import_continues_bit_identically(string kind)
    {
        const int rows = 9, width = 17, n = 29;
        var dense0 = Values(n, 9);
        var table0 = Values(rows * width, 10);
        int[][] touched = [[1, 5], [5, 7, 0], [2], [8, 1], [1], [3, 4, 5]];

        (Tensor<float> D, Tensor<float> T, Optimizer Opt) Build(float[] d, float[] t)
        {
            var dp = Dense(d, "dnn.0.weight", n);
            var tp = Table(t, rows, width, "embedding.C1.weight");
            var (opt, _) = Make(kind, [dp, tp], 1, 1e-3f, 1e-2f);
            opt.ClipNorm = 2f;
            return (dp, tp, opt);
        }
        var schedule = LearningRateSchedule.Cosine(0.05f, decaySteps: 6, warmupSteps: 2);
        void RunStep(Tensor<float> dp, Tensor<float> tp, Optimizer opt)
        {
            int s = (int)opt.StepCount;
            opt.LearningRate = schedule.LearningRate(opt.StepCount);
            SetGrad(dp, Values(n, 200 + s));
            foreach (int r in touched[s]) tp.SparseGrad!.Add(r, Values(width, 300 + 10 * s + r));
            opt.Step();
        }

        var (d, t, o) = Build(dense0, table0);
        for (int s = 0; s < 6; s++) RunStep(d, t, o);

        var (d1, t1, o1) = Build(dense0, table0);
        for (int s = 0; s < 3; s++) RunStep(d1, t1, o1);
        var saved = o1.ExportState();
        var (d2, t2, o2) = Build(d1.ToArray(), t1.ToArray());
        o2.ImportState(saved);
        Assert.That(o2.StepCount, Is.EqualTo(3));
        for (int s = 0; s < 3; s++) RunStep(d2, t2, o2);

        Assert.That(d2.ToArray(), Is.EqualTo(d.ToArray()), "dense weights after resume");
        Assert.That(t2.ToArray(), Is.EqualTo(t.ToArray()), "table after resume");
        var expectedState = o.ExportState();
        var resumedState = o2.ExportState();
        Assert.That(resumedState.Select(e => e.Name), Is.EqualTo(expectedState.Select(e => e.Name)));
        for (int i = 0; i < expectedState.Count; i++)
            Assert.That(resumedState[i].Data, Is.EqualTo(expectedState[i].Data), expectedState[i].Name);
    }

    [Test]
    public void Step_counts_survive_export_beyond_float_precision()
    {
        var w = Dense([0f], "w", 1);
        var opt = new Adam([w]);
        var state = opt.ExportState().ToList();
        long big = (1L << 40) + 12345;
        state[0] = ("step", [(float)(big >> 24), big & 0xFFFFFF], [2]);
        opt.ImportState(state);
        Assert.That(opt.StepCount, Is.EqualTo(big));
        Assert.That(opt.ExportState()[0].Data, Is.EqualTo(state[0].Data));
    }

    [Test]
    public void ImportState_rejects_mismatched_state_and_changes_nothing()
    {
        var w = Dense([1f, 2f, 3f], "w", 3);
        var opt = new Adam([w]);
        SetGrad(w, [1f, 1f, 1f]);
        opt.Step();
        var good = opt.ExportState();
        var before = opt.ExportState();

        var missing = good.Where(e => e.Name != "w.exp_avg_sq").ToList();
        Assert.That(Assert.Throws<ArgumentException>(() => opt.ImportState(missing))!.Message, Does.Contain("'w.exp_avg_sq' is missing"));

        var misshapen = good.Select(e => e.Name == "w.exp_avg" ? (e.Name, new float[4], new[] { 4 }) : e).ToList();
        Assert.That(Assert.Throws<ArgumentException>(() => opt.ImportState(misshapen))!.Message, Does.Contain("'w.exp_avg' has shape [4]"));

        var extra = good.Append(("w.momentum_buffer", new float[3], new[] { 3 })).ToList();
        Assert.That(Assert.Throws<ArgumentException>(() => opt.ImportState(extra))!.Message, Does.Contain("unknown entry 'w.momentum_buffer'"));

        var badStep = good.Select(e => e.Name == "step" ? (e.Name, new[] { 0f, -1f }, new[] { 2 }) : e).ToList();
        Assert.That(Assert.Throws<ArgumentException>(() => opt.ImportState(badStep))!.Message, Does.Contain("'step'"));

        var after = opt.ExportState();
        for (int i = 0; i < before.Count; i++) Assert.That(after[i].Data, Is.EqualTo(before[i].Data), before[i].Name);
        Assert.That(opt.StepCount, Is.EqualTo(1));
    }

    // ---------- allocation and speed ----------

    [TestCase("momentum")]
    [TestCase("adam")]
    [TestCase("adagrad")]
    public void Step_allocates_nothing_in_steady_state(string kind)
    {
        var weight = Dense(Values(400 * 400, 11, -0.05f, 0.05f), "dnn.0.weight", 400, 400);
        var bias = Dense(new float[400], "dnn.0.bias", 400);
        var table = Table(Values(1000 * 16, 12), 1000, 16, "embedding.C1.weight");
        var (opt, _) = Make(kind, [weight, bias, table], 1, 1e-4f, 1e-4f);
        opt.ClipNorm = 5f;
        var wGrad = Values(400 * 400, 13);
        var bGrad = Values(400, 14);
        var rowGrad = Values(16, 15);
        var rng = new Random(16);
        var stopwatch = new System.Diagnostics.Stopwatch();
        long Window(int steps, bool timed)
        {
            long allocated = 0;
            for (int step = 0; step < steps; step++)
            {
                SetGrad(weight, wGrad);
                SetGrad(bias, bGrad);
                for (int k = 0; k < 256; k++) table.SparseGrad!.Add(rng.Next(1000), rowGrad);
                long before = GC.GetAllocatedBytesForCurrentThread();
                if (timed) stopwatch.Start();
                opt.Step();
                stopwatch.Stop();
                allocated += GC.GetAllocatedBytesForCurrentThread() - before;
            }
            return allocated;
        }
        Window(5, timed: false); // the first steps may grow the row-order buffer
        // Steady state: 20 steps allocate nothing. A one-off allocation by the runtime on this thread (seen once in
        // CI under load: 3,512 bytes in one window, never reproduced; the step's own buffers stop growing at step 2
        // for this seed) gets one more window; a per-step allocation shows up in both and fails.
        long first = Window(20, timed: true);
        long allocated = first == 0 ? 0 : Window(20, timed: false);
        Assert.That(allocated, Is.EqualTo(0), $"{kind}: bytes allocated by 20 steady-state steps (first window: {first})");
        TestContext.Out.WriteLine($"{kind}: {stopwatch.Elapsed.TotalMilliseconds / 20:F3} ms per step (400×400 + 400 dense, ≤256 of 1000×16 rows, clipping on)");
    }

    // ---------- validation ----------

    [Test]
    public void Bad_parameters_and_settings_are_rejected_with_the_name()
    {
        var frozen = Tensor<float>.FromArray([1f], 1);
        frozen.Name = "frozen";
        Assert.That(Assert.Throws<ArgumentException>(() => new Sgd([frozen], 0.1f))!.Message, Does.Contain("'frozen'"));
        var a = Dense([1f], "same", 1);
        var b = Dense([2f], "same", 1);
        Assert.That(Assert.Throws<ArgumentException>(() => new Adam([a, b]))!.Message, Does.Contain("'same'"));
        Assert.Throws<ArgumentException>(() => new Adam(Array.Empty<Tensor<float>>()));
        var unnamed = Tensor<float>.FromArray([1f], 1).RequireGrad();
        Assert.That(Assert.Throws<ArgumentException>(() => new Sgd([unnamed, unnamed], 0.1f))!.Message, Does.Contain("registered twice"));
        Assert.Throws<ArgumentException>(() => new Sgd([a], 0.1f, 0f, nesterov: true));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Adam([a], beta1: 1f));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Adagrad([a], epsilon: 0f));
        var opt = new Sgd([a], 0.1f);
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => opt.LearningRate = float.NaN)!.Message, Does.Contain("LearningRate"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => opt.DenseL2 = -1f)!.Message, Does.Contain("DenseL2"));
        Assert.That(Assert.Throws<ArgumentOutOfRangeException>(() => opt.ClipNorm = 0f)!.Message, Does.Contain("ClipNorm"));
    }

    [Test]
    public void A_parameter_without_gradient_is_skipped()
    {
        var used = Dense([1f], "used", 1);
        var idle = Dense([5f], "idle", 1);
        var table = Table([1f, 1f], 1, 2, "emb");
        var opt = new Adam([used, idle, table], 0.1f) { DenseL2 = 0.5f, EmbeddingL2 = 0.5f };
        SetGrad(used, [1f]);
        opt.Step();
        Assert.That(idle.ToArray(), Is.EqualTo(new[] { 5f }), "no gradient → no L2 decay and no update");
        Assert.That(table.ToArray(), Is.EqualTo(new[] { 1f, 1f }));
        Assert.That(opt.ParameterStepCount(0), Is.EqualTo(1));
        Assert.That(opt.ParameterStepCount(1), Is.EqualTo(0));
        Assert.That(opt.ParameterStepCount(2), Is.EqualTo(0));
    }

    // ---------- end to end ----------

    [Test]
    public void Adam_fits_logistic_regression_on_separable_data()
    {
        // x ~ U[-1, 1]^5, y = 1 when x·w* + 0.3 > 0, keeping only points with |x·w* + 0.3| ≥ 0.3: linearly
        // separable with a margin, so the mean BCE can go towards 0 and every point can be classified.
        const int batch = 256, features = 5;
        float[] wStar = [1.5f, -2f, 0.7f, 0f, 1f];
        var x = new float[batch * features];
        var y = new float[batch];
        var rng = new Random(21);
        for (int i = 0; i < batch;)
        {
            float z = 0.3f;
            for (int j = 0; j < features; j++) z += (x[i * features + j] = 2f * (float)rng.NextDouble() - 1f) * wStar[j];
            if (MathF.Abs(z) < 0.3f) continue; // too close to the boundary: draw again
            y[i++] = z > 0 ? 1f : 0f;
        }
        var xs = Tensor<float>.FromArray(x, batch, features);
        var ys = Tensor<float>.FromArray(y, batch, 1);
        var w = Dense(new float[features], "lr.weight", 1, features);
        var b = Dense([0f], "lr.bias", 1);
        var opt = new Adam([w, b], 0.1f);
        float first = 0, last = 0;
        for (int step = 0; step < 300; step++)
        {
            using var tape = new Tape<float>();
            var loss = Op.BceWithLogits(Op.Linear(xs, w, b), ys);
            last = loss.Item();
            if (step == 0) first = last;
            tape.Backward(loss);
            opt.Step();
        }
        Assert.That(first, Is.EqualTo(MathF.Log(2f)).Within(1e-5), "zero weights start at log 2");
        Assert.That(last, Is.LessThan(0.1f), $"loss went from {first} to {last}");
        using var noGrad = Tape<float>.NoGrad();
        var logits = Op.Linear(xs, w, b).ToArray();
        int correct = 0;
        for (int i = 0; i < batch; i++) if ((logits[i] > 0) == (y[i] == 1f)) correct++;
        Assert.That(correct, Is.EqualTo(batch), "separable data: every training point classified correctly");
    }
}
