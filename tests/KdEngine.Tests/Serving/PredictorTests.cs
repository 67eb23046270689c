using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Serving;
using NUnit.Framework;
using static KdEngine.Tests.Serving.ServingTestModels;

namespace KdEngine.Tests.Serving;

public class PredictorTests
{
    private static IEnumerable<TestCaseData> KindsAndBatches() =>
        from k in Kinds from b in new[] { 1, 7, 64 } select new TestCaseData(k, b);

    [TestCaseSource(nameof(KindsAndBatches))]
    public void Predictor_equals_the_training_forward(ModelKind kind, int batch)
    {
        var fields = Fields(6);
        var model = Random(Config(kind), fields, seed: 3);
        var ids = Ids(fields, batch, seed: batch);
        var expected = Forward(model, ids, batch);
        var predictor = new Predictor(model);
        var actual = new float[batch];
        predictor.Predict(ids, actual);
        Assert.That(Compare(actual, expected, 1e-5f), Is.Null, kind.ToString());
        Assert.That(expected.Select(Math.Abs).Max(), Is.GreaterThan(0.05f), "the test needs non-trivial logits");

        var probabilities = new float[batch];
        predictor.Predict(ids, probabilities, probabilities: true);
        for (int b = 0; b < batch; b++)
            Assert.That(probabilities[b], Is.EqualTo(1 / (1 + MathF.Exp(-actual[b]))).Within(1e-6f));
    }

    private static IEnumerable<TestCaseData> DcnV2FormsAndBatches() =>
        from f in DcnV2Forms from b in new[] { 1, 37 } select new TestCaseData(f.Rank, f.Experts, f.Stacked, b);

    [TestCaseSource(nameof(DcnV2FormsAndBatches))]
    public void Every_dcn_v2_form_predicts_as_the_training_forward(int rank, int experts, bool stacked, int batch)
    {
        var fields = Fields(6);
        var model = Random(DcnV2(rank, experts, stacked), fields, seed: 14, scale: 0.3f);
        var ids = Ids(fields, batch, seed: 5 + batch);
        var expected = Forward(model, ids, batch);
        var actual = new float[batch];
        new Predictor(model).Predict(ids, actual);
        Assert.That(Compare(actual, expected, 1e-5f), Is.Null);
        Assert.That(expected.Select(Math.Abs).Max(), Is.GreaterThan(0.05f), "the test needs non-trivial logits");
    }

    [TestCase(2, 1, 7, false)]
    [TestCase(9, 4, 64, false)]
    [TestCase(3, 17, 5, false)]
    [TestCase(5, 3, 9, true)]
    [TestCase(2, 7, 33, true)]
    public void Ffm_predicts_as_the_training_forward_at_any_field_count_and_width(int fieldCount, int dim, int batch, bool normalize)
    {
        var fields = Fields(fieldCount);
        var model = Random(new ModelConfig { Model = ModelKind.Ffm, EmbeddingDim = dim, FfmNormalize = normalize, Seed = 1 }, fields, seed: 17, scale: 0.4f);
        var ids = Ids(fields, batch, seed: 3);
        var actual = new float[batch];
        new Predictor(model).Predict(ids, actual);
        Assert.That(Compare(actual, Forward(model, ids, batch), 1e-5f), Is.Null);
    }

    private static IEnumerable<TestCaseData> CinVariants()
    {
        // (cin sizes, split-half, activation, direct connections, D, batch)
        yield return new TestCaseData(new[] { 6, 4 }, true, Activation.Identity, true, 5, 9);
        yield return new TestCaseData(new[] { 6, 4 }, false, Activation.Identity, true, 5, 9);
        yield return new TestCaseData(new[] { 8, 6, 3 }, true, Activation.Relu, true, 3, 200);   // tile = 85 samples: 3 tiles
        yield return new TestCaseData(new[] { 7, 5 }, false, Activation.Relu, true, 7, 40);
        yield return new TestCaseData(new[] { 5, 9 }, false, Activation.Identity, false, 1, 300); // D = 1, 2 tiles
        yield return new TestCaseData(new[] { 12 }, false, Activation.Tanh, true, 17, 33);         // D = 17: Vector512 + tail
        yield return new TestCaseData(new[] { 10, 10, 10 }, true, Activation.Sigmoid, true, 11, 1);
    }

    [TestCaseSource(nameof(CinVariants))]
    public void Fused_cin_equals_the_training_cin_within_1e5_relative(int[] sizes, bool splitHalf, Activation activation, bool direct, int dim, int batch)
    {
        var fields = Fields(5);
        var config = new ModelConfig
        {
            Model = ModelKind.XDeepFm, EmbeddingDim = dim, Dnn = [4], Cin = sizes, CinSplitHalf = splitHalf,
            CinActivation = activation, CinDirectConnections = direct, Seed = 2,
        };
        var model = Random(config, fields, seed: 8);
        // Zero every non-CIN part of the logit so that the comparison is relative to z_cin alone.
        foreach (var p in model.Parameters())
            if (p.Name.StartsWith("linear.", StringComparison.Ordinal) || p.Name == "dnn_out.weight") p.Tensor.AsSpan().Clear();
        var ids = Ids(fields, batch, seed: 77);
        var expected = Forward(model, ids, batch);
        var actual = new float[batch];
        new Predictor(model).Predict(ids, actual);
        Assert.That(expected.Count(v => v != 0), Is.EqualTo(batch), "every sample must have a CIN logit");
        Assert.That(Compare(actual, expected, 1e-5f, relativeOnly: true), Is.Null);
    }

    [Test]
    public void A_student_reading_a_subset_of_columns_takes_full_rows()
    {
        var all = Fields(6);
        int[] columns = [0, 2, 3, 5];
        var sub = columns.Select(c => all[c]).ToArray();
        var model = Random(Config(ModelKind.Wdl), sub, seed: 4, columns: columns);
        var ids = Ids(all, 13, seed: 1);
        var predictor = new Predictor(model);
        Assert.That(predictor.InputColumns, Is.EqualTo(6));
        var actual = new float[13];
        predictor.Predict(ids, actual);
        Assert.That(Compare(actual, Forward(model, ids, 13), 1e-5f), Is.Null);
    }

    [Test]
    public void Bad_inputs_are_clear_errors()
    {
        var fields = Fields(3);
        var predictor = new Predictor(Random(Config(ModelKind.DeepFm), fields, seed: 1));
        var ids = Ids(fields, 2, seed: 1);
        var e = Assert.Throws<ArgumentException>(() => predictor.Predict(ids.AsSpan(0, 5), new float[2]));
        Assert.That(e!.Message, Does.Contain("[B = 2, C = 3]"));
        ids[4] = fields[1].Cardinality;
        var oob = Assert.Throws<ArgumentOutOfRangeException>(() => predictor.Predict(ids, new float[2]));
        Assert.That(oob!.Message, Does.Contain("row 1").And.Contain("'f1'").And.Contain($"id {fields[1].Cardinality}"));
        Assert.Throws<InvalidOperationException>(() => predictor.PredictRaw(Array.Empty<RawRecord>(), new float[0]));
    }

    [Test]
    public void Raw_rows_score_as_encode_then_score_with_oov_missing_and_extra_columns()
    {
        var pre = FittedPreprocessor(out var schema);
        var fields = FieldsOf(pre);
        var model = Random(Config(ModelKind.XDeepFm), fields, seed: 6);
        var predictor = new Predictor(model, pre);
        var records = new List<RawRecord>
        {
            Record(schema, "3", "a1", "h2", "z0"),
            Record(schema, null, "never-seen", "h999", null),   // missing numeric, OOV category, hashed unseen, missing
            Record(schema, "1000", "a5", null, "z3"),
        };
        var encoded = pre.EncodeAll(records);
        var expected = new float[records.Count];
        predictor.Predict(encoded.Ids, expected);
        Assert.That(encoded.Ids[1 * fields.Length + 1], Is.EqualTo(1), "unseen vocabulary value → OOV id 1");
        Assert.That(encoded.Ids[1 * fields.Length + 0], Is.EqualTo(0), "missing → id 0");

        var fromRecords = new float[records.Count];
        predictor.PredictRaw(records, fromRecords);
        Assert.That(fromRecords, Is.EqualTo(expected));

        // Text rows in another column order, with an extra column and without C3 (→ missing) and the label.
        var columns = predictor.MapColumns(["extra", "C2", "C1", "I1"]);
        Assert.That(columns.PositionOf("C3"), Is.EqualTo(-1));
        var rows = new List<string?[]>
        {
            new[] { "x", "h2", "a1", "3" },
            new[] { "y", "h999", "never-seen", "" },
            new[] { "z", null, "a5", "1000" },
        };
        var fromText = new float[rows.Count];
        predictor.PredictRaw(columns, rows, fromText);
        var withoutC3 = records.Select(r => Record(schema, r.Values[1], r.Values[2], r.Values[3], null)).ToList();
        var expectedText = new float[rows.Count];
        predictor.PredictRaw(withoutC3, expectedText);
        Assert.That(fromText, Is.EqualTo(expectedText));
        Assert.Throws<ArgumentException>(() => predictor.PredictRaw(columns, [new[] { "x", "h2" }], new float[1]));
    }

    [Test]
    public void Concurrent_callers_get_exactly_the_single_thread_scores()
    {
        var fields = Fields(6);
        var predictor = new Predictor(Random(Config(ModelKind.XDeepFm), fields, seed: 9));
        int[] sizes = [1, 7, 64, 300];
        var inputs = sizes.Select((b, i) => Ids(fields, b, seed: 100 + i)).ToArray();
        var reference = sizes.Select((b, i) => { var o = new float[b]; predictor.Predict(inputs[i], o); return o; }).ToArray();
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        var threads = Enumerable.Range(0, 8).Select(t => new Thread(() =>
        {
            var outs = sizes.Select(b => new float[b]).ToArray();
            for (int call = 0; call < 40; call++)
            {
                int i = (call + t) % sizes.Length;
                predictor.Predict(inputs[i], outs[i]);
                if (!outs[i].AsSpan().SequenceEqual(reference[i])) failures.Add($"thread {t}, call {call}, batch {sizes[i]}");
            }
        })).ToList();
        threads.ForEach(th => th.Start());
        threads.ForEach(th => th.Join());
        Assert.That(failures, Is.Empty);
    }

    [Test]
    public void Eight_threads_times_100000_predictions_match_single_threaded_scoring_exactly()
    {
        var fields = Fields(6);
        var predictor = new Predictor(Random(Config(ModelKind.DeepFm), fields, seed: 21));
        const int rows = 100_000;
        var ids = Ids(fields, rows, seed: 22);
        int[] schedule = [1, 7, 64, 256, 1000, 3]; // batch sizes, cycled over the rows
        void ScoreAll(float[] scores)
        {
            int f = fields.Length;
            for (int start = 0, k = 0; start < rows; k++)
            {
                int b = Math.Min(schedule[k % schedule.Length], rows - start);
                predictor.Predict(ids.AsSpan(start * f, b * f), scores.AsSpan(start, b));
                start += b;
            }
        }
        var reference = new float[rows];
        ScoreAll(reference);
        var results = new float[8][];
        var threads = Enumerable.Range(0, 8).Select(t => new Thread(() => { results[t] = new float[rows]; ScoreAll(results[t]); })).ToList();
        threads.ForEach(th => th.Start());
        threads.ForEach(th => th.Join());
        for (int t = 0; t < 8; t++)
            Assert.That(results[t].AsSpan().SequenceEqual(reference), Is.True, $"thread {t} differs from single-threaded scoring");
    }

    [TestCase(ModelKind.XDeepFm, 1)]
    [TestCase(ModelKind.XDeepFm, 1024)]
    [TestCase(ModelKind.DeepFm, 1)]
    [TestCase(ModelKind.Dcn, 1024)]
    [TestCase(ModelKind.Wdl, 1024)]
    [TestCase(ModelKind.Ffm, 1)]
    [TestCase(ModelKind.Ffm, 1024)]
    [TestCase(ModelKind.DcnV2, 1024)]
    public void Steady_state_calls_allocate_nothing(ModelKind kind, int batch)
    {
        var fields = Fields(6);
        var predictor = new Predictor(Random(Config(kind), fields, seed: 2));
        var ids = Ids(fields, batch, seed: 3);
        var output = new float[batch];
        predictor.Predict(ids, output);          // warm-up: grows this thread's workspace
        predictor.Predict(ids, output, probabilities: true);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++) predictor.Predict(ids, output, probabilities: i % 2 == 0);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(allocated, Is.Zero);
    }

    [Test]
    public void Raw_row_scoring_allocates_nothing_in_steady_state()
    {
        var pre = FittedPreprocessor(out var schema);
        var predictor = new Predictor(Random(Config(ModelKind.Wdl), FieldsOf(pre), seed: 6), pre);
        var records = Enumerable.Range(0, 16).Select(i => Record(schema, (i * 7).ToString(), "a" + i % 8, "h" + i, i % 3 == 0 ? null : "z1")).ToList();
        var output = new float[records.Count];
        predictor.PredictRaw(records, output);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10; i++) predictor.PredictRaw(records, output);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
    }

    [TestCase(ModelKind.XDeepFm)]
    [TestCase(ModelKind.Dcn)]
    [TestCase(ModelKind.Fm)]
    [TestCase(ModelKind.Ffm)]
    [TestCase(ModelKind.DcnV2)]
    public void Checkpoint_round_trip_predicts_bit_identically(ModelKind kind)
    {
        var pre = FittedPreprocessor(out var schema);
        var fields = FieldsOf(pre);
        var model = Random(Config(kind), fields, seed: 12);
        string path = Path.Combine(Path.GetTempPath(), $"kdengine-predictor-{Guid.NewGuid():N}.safetensors");
        try
        {
            ModelCheckpoint.Save(path, model, pre);
            var loaded = Predictor.Load(path);
            Assert.That(loaded.Preprocessor, Is.Not.Null);
            var ids = Ids(fields, 37, seed: 5);
            var a = new float[37];
            var b = new float[37];
            new Predictor(model).Predict(ids, a);
            loaded.Predict(ids, b);
            Assert.That(b, Is.EqualTo(a));
            var rows = new List<RawRecord> { Record(schema, "5", "a2", "h1", "z2") };
            var raw = new float[1];
            loaded.PredictRaw(rows, raw);
            var enc = new float[1];
            loaded.Predict(pre.EncodeAll(rows).Ids, enc);
            Assert.That(raw, Is.EqualTo(enc));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
