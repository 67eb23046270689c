using KdEngine.Kernels.Cpu;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Serving;
using NUnit.Framework;
using static KdEngine.Tests.Serving.ServingTestModels;

namespace KdEngine.Tests.Serving;

/// <summary>
/// The predictor on several threads (ranges of samples, split products) and in reduced precision (int8 / bf16 weights,
/// bf16 embeddings): bits independent of the thread count, precision chosen at build or stored in the checkpoint, and no
/// allocation per call on any thread.
/// </summary>
[NonParallelizable]
public class PredictorThreadsAndPrecisionTests
{
    private int _savedThreads;
    private double _savedMacs;

    [SetUp]
    public void SetUp()
    {
        _savedThreads = CpuParallel.ThreadCount;
        _savedMacs = Predictor.MinMacsPerWeightByte;
    }

    [TearDown]
    public void TearDown()
    {
        CpuParallel.ThreadCount = _savedThreads;
        Predictor.MinMacsPerWeightByte = _savedMacs;
    }

    /// <summary>The serving-test zoo plus CINs whose tile rule matters: D = 16 (one sample fills the 16-row small path) and
    /// D = 3 (a tile of 85 samples; ranges of fewer than 6 samples would cross the 16-row line); and D = 10, whose bf16
    /// embedding rows widen as one 8-wide vector plus an overlapping one for the last 2 values.</summary>
    private static IEnumerable<(string Name, ZooModel Model, InputField[] Fields)> Models()
    {
        var fields = Fields(6);
        foreach (var kind in Kinds) yield return (kind.ToString(), Random(Config(kind), fields, seed: 3), fields);
        foreach (int d in new[] { 16, 3, 10 })
        {
            var config = new ModelConfig
            {
                Model = ModelKind.XDeepFm, EmbeddingDim = d, Dnn = [12, 7], Cin = [10, 8], CinSplitHalf = true, Seed = 4,
            };
            yield return ($"XDeepFm-D{d}", Random(config, fields, seed: 5, scale: 0.3f), fields);
        }
    }

    private static readonly int[] Batches = [1, 2, 5, 16, 17, 33, 40, 64, 100, 300];

    private static float[] Score(Predictor p, InputField[] fields, int batch, int threads)
    {
        CpuParallel.ThreadCount = threads;
        var logits = new float[batch];
        p.Predict(Ids(fields, batch, seed: 100 + batch), logits);
        return logits;
    }

    [TestCase("fp32")]
    [TestCase("bf16")]
    [TestCase("int8")]
    public void Every_thread_count_gives_the_one_thread_bits(string precision)
    {
        int split = 0;
        foreach (var (name, model, fields) in Models())
        {
            var predictor = new Predictor(model, precision: ServingPrecision.Parse(precision));
            foreach (int batch in Batches)
            {
                var one = Score(predictor, fields, batch, 1);
                foreach (double macs in new[] { 0.0, 8.0 })       // 0: split wherever the stages' rules allow
                {
                    Predictor.MinMacsPerWeightByte = macs;
                    foreach (int threads in new[] { 2, 3, 4 })
                    {
                        if (predictor.RangesFor(batch, threads) > 1) split++;
                        Assert.That(Score(predictor, fields, batch, threads), Is.EqualTo(one),
                            $"{name} {precision}, batch {batch}: {threads} threads (min MACs/byte {macs}) vs one");
                    }
                }
            }
        }
        Assert.That(split, Is.GreaterThan(100), "the test must exercise split batches");
    }

    [Test]
    public void Ranges_respect_the_stages_rules()
    {
        Predictor.MinMacsPerWeightByte = 0;
        var fields = Fields(6);
        var dnn = new Predictor(Random(Config(ModelKind.Dnn), fields, seed: 1));
        Assert.That(dnn.RangesFor(16, 2), Is.EqualTo(2), "≤ 16 rows split freely");
        Assert.That(dnn.RangesFor(20, 2), Is.EqualTo(1), "17–33 rows cannot split into two ranges of > 16");
        Assert.That(dnn.RangesFor(34, 2), Is.EqualTo(2));
        Assert.That(dnn.RangesFor(1000, 1), Is.EqualTo(1), "one thread, one range");
        var wide = new Predictor(Random(Config(ModelKind.Dnn) with { Dnn = [64, 64] }, fields, seed: 1), precision: ServingPrecision.Int8);
        Assert.That(wide.RangesFor(20, 2), Is.EqualTo(2), "int8 rows are exact whatever the range");
        var narrow = new Predictor(Random(Config(ModelKind.Dnn), fields, seed: 1), precision: ServingPrecision.Int8);
        Assert.That(narrow.RangesFor(20, 2), Is.EqualTo(1), "a narrow int8 layer runs its float32 copy above 16 rows: the float32 rule");
        Assert.That(narrow.RangesFor(16, 2), Is.EqualTo(2));
        Predictor.MinMacsPerWeightByte = 8;
        Assert.That(dnn.RangesFor(16, 2), Is.EqualTo(1), "too little arithmetic per weight byte for a range of its own");
    }

    [Test]
    public void A_bad_id_on_several_threads_is_the_first_one_in_the_batch()
    {
        Predictor.MinMacsPerWeightByte = 0;
        var fields = Fields(6);
        var predictor = new Predictor(Random(Config(ModelKind.Wdl), fields, seed: 2));
        foreach (var badRows in new[] { new[] { 70, 90 }, new[] { 10, 70 }, new[] { 99 } })
        {
            var ids = Ids(fields, 100, seed: 4);
            foreach (int r in badRows) ids[r * 6 + 2] = 1000 + r;
            CpuParallel.ThreadCount = 2;
            Assert.That(predictor.RangesFor(100, 2), Is.EqualTo(2));
            var ex = Assert.Throws<ArgumentOutOfRangeException>(() => predictor.Predict(ids, new float[100]));
            Assert.That(ex!.Message, Does.Contain($"row {badRows[0]}, column 2 (field 'f2'): id {1000 + badRows[0]} is outside [0, 13)"));
        }
    }

    [Test]
    public void Bf16_serving_is_the_float_predictor_of_the_rounded_weights_bit_for_bit()
    {
        foreach (var (name, model, fields) in Models())
        {
            var rounded = Copy(model, fields);
            var matrices = rounded.Parts.SelectMany(p => p.ServingMatrices).Concat(rounded.Embedding?.Tables ?? []).ToHashSet(ReferenceEqualityComparer.Instance);
            foreach (var p in rounded.Parameters())
                if (matrices.Contains(p.Tensor))
                {
                    var s = p.Tensor.AsSpan();
                    for (int i = 0; i < s.Length; i++) s[i] = Bf16.ToFloat(Bf16.FromFloat(s[i]));
                }
            var bf16 = new Predictor(model, precision: ServingPrecision.BFloat16);
            var reference = new Predictor(rounded);
            foreach (int batch in new[] { 1, 16, 40, 300 })
                foreach (int threads in new[] { 1, 2 })
                    Assert.That(Score(bf16, fields, batch, threads), Is.EqualTo(Score(reference, fields, batch, threads)), $"{name} batch {batch}");
        }
    }

    [Test]
    public void Int8_serving_stays_near_the_float_predictor_of_the_dequantised_weights()
    {
        foreach (var (name, model, fields) in Models())
        {
            var int8 = new Predictor(model, precision: ServingPrecision.Int8);
            var reference = new Predictor(Dequantised(model, fields));
            var fp32 = new Predictor(model);
            foreach (int batch in new[] { 1, 40 })
            {
                var q = Score(int8, fields, batch, 2);
                var r = Score(reference, fields, batch, 2);
                var f = Score(fp32, fields, batch, 2);
                double worst = 0, spread = 0;
                for (int i = 0; i < batch; i++)
                {
                    worst = Math.Max(worst, Math.Abs(q[i] - r[i]));
                    spread = Math.Max(spread, Math.Abs(f[i]));
                }
                // Only the activations' uint8 rounding separates them: a few thousandths of the logits' scale here (a
                // wrong packing, scale or zero point gives errors of the logits' own size).
                Assert.That(worst, Is.LessThanOrEqualTo(0.02 * Math.Max(1, spread)), $"{name} batch {batch}: max |Δ| {worst} (max |logit| {spread})");
                if (model.Parts.Any(p => p.ServingMatrices.Any()))
                    Assert.That(q, Is.Not.EqualTo(f), $"{name}: int8 must actually change something");
            }
        }
    }

    /// <summary>The model the int8 preset serves up to the activations' rounding: every serving matrix quantised and
    /// dequantised (s_j · q), the embedding tables rounded to bf16.</summary>
    private static ZooModel Dequantised(ZooModel model, InputField[] fields)
    {
        var dequantised = Copy(model, fields);
        foreach (var matrix in dequantised.Parts.SelectMany(p => p.ServingMatrices))
        {
            int n = matrix.Shape[0], k = matrix.Shape[1];
            Int8Weights.Quantize(matrix.ToArray(), n, k).Dequantize().CopyTo(matrix.AsSpan());
        }
        foreach (var table in dequantised.Embedding?.Tables ?? [])
        {
            var s = table.AsSpan();
            for (int i = 0; i < s.Length; i++) s[i] = Bf16.ToFloat(Bf16.FromFloat(s[i]));
        }
        return dequantised;
    }

    [Test]
    public void Narrow_int8_layers_run_their_float_copy_above_16_rows_and_int8_at_or_below()
    {
        var fields = Fields(6);
        // DNN [9, 6]: both layers narrower than 64 outputs. Above 16 rows nothing is quantised on the fly, so the int8
        // predictor is the float predictor of the dequantised weights bit for bit; at ≤ 16 rows the activations' uint8
        // rounding shows. DNN [64, 64]: int8 at every batch.
        var narrowModel = Random(Config(ModelKind.Dnn), fields, seed: 6);
        var narrow = new Predictor(narrowModel, precision: ServingPrecision.Int8);
        var narrowReference = new Predictor(Dequantised(narrowModel, fields));
        var wideModel = Random(Config(ModelKind.Dnn) with { Dnn = [64, 64] }, fields, seed: 6, scale: 0.3f);
        var wide = new Predictor(wideModel, precision: ServingPrecision.Int8);
        var wideReference = new Predictor(Dequantised(wideModel, fields));
        Predictor.MinMacsPerWeightByte = 0;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            foreach (int batch in new[] { 17, 40, 300 })
            {
                Assert.That(Score(narrow, fields, batch, threads), Is.EqualTo(Score(narrowReference, fields, batch, threads)), $"narrow, batch {batch}, {threads} threads");
                Assert.That(Score(wide, fields, batch, threads), Is.Not.EqualTo(Score(wideReference, fields, batch, threads)), $"wide, batch {batch}: int8 products");
            }
            foreach (int batch in new[] { 1, 16 })
                Assert.That(Score(narrow, fields, batch, threads), Is.Not.EqualTo(Score(narrowReference, fields, batch, threads)), $"narrow, batch {batch}: int8 products");
        }
    }

    [TestCase("int8")]
    [TestCase("bf16")]
    [TestCase("int8+fp32-embeddings")]
    public void A_quantised_checkpoint_serves_exactly_what_the_predictor_quantises(string precisionText)
    {
        var precision = ServingPrecision.Parse(precisionText);
        foreach (var kind in new[] { ModelKind.XDeepFm, ModelKind.Dcn, ModelKind.Wdl, ModelKind.Fm })
        {
            var fields = Fields(6);
            var model = Random(Config(kind), fields, seed: 12);
            string path = Path.Combine(Path.GetTempPath(), $"kdengine-quantised-{Guid.NewGuid():N}.kde");
            try
            {
                ModelCheckpoint.Save(path, model, null, null, precision);
                var loaded = ModelCheckpoint.Load(path);
                Assert.That(loaded.Precision, Is.EqualTo(precision));
                var served = Predictor.Load(path);
                Assert.That(served.Precision, Is.EqualTo(precision));
                var direct = new Predictor(model, precision: precision);
                foreach (int batch in new[] { 1, 37 })
                    Assert.That(Score(served, fields, batch, 2), Is.EqualTo(Score(direct, fields, batch, 2)), $"{kind} {precisionText} batch {batch}");

                // The stored tensors: int8 matrices with scales, bf16 where asked, float32 everywhere else.
                var content = SafeTensorsFile.Read(path);
                var matrices = model.Parts.SelectMany(p => p.ServingMatrices).ToHashSet(ReferenceEqualityComparer.Instance);
                var tables = (model.Embedding?.Tables ?? []).ToHashSet(ReferenceEqualityComparer.Instance);
                foreach (var p in model.Parameters())
                {
                    var expected = matrices.Contains(p.Tensor) ? precision.DenseWeights : tables.Contains(p.Tensor) ? precision.Embeddings : WeightFormat.Float32;
                    var dtype = expected switch { WeightFormat.Int8 => TensorDType.I8, WeightFormat.BFloat16 => TensorDType.BF16, _ => TensorDType.F32 };
                    Assert.That(content.DTypeOf(p.Name), Is.EqualTo(dtype), p.Name);
                    Assert.That(content.Contains(p.Name + ModelCheckpoint.ScaleSuffix), Is.EqualTo(dtype == TensorDType.I8), p.Name);
                }

                // Served as float32 on request: the dequantised weights (and the training forward agrees with it).
                var asFloat = Predictor.Load(path, ServingPrecision.Float32);
                var ids = Ids(fields, 9, seed: 8);
                var a = new float[9];
                asFloat.Predict(ids, a);
                Assert.That(Compare(a, Forward(loaded.Model, ids, 9), 1e-5f), Is.Null);
            }
            finally
            {
                File.Delete(path);
            }
        }
    }

    [Test]
    public void Float32_checkpoints_load_as_before_and_bad_quantised_tensors_are_named()
    {
        var fields = Fields(6);
        var model = Random(Config(ModelKind.Dnn), fields, seed: 1);
        string dir = Path.Combine(Path.GetTempPath(), $"kdengine-qbad-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string plain = Path.Combine(dir, "plain.kde");
            ModelCheckpoint.Save(plain, model);
            var loaded = ModelCheckpoint.Load(plain);
            Assert.That(loaded.Precision, Is.EqualTo(ServingPrecision.Float32));
            Assert.That(loaded.StoredInt8, Is.Null);
            Assert.That(loaded.Metadata.ContainsKey(ModelCheckpoint.PrecisionKey), Is.False);

            string good = Path.Combine(dir, "int8.kde");
            ModelCheckpoint.Save(good, model, null, null, ServingPrecision.Int8);
            var content = SafeTensorsFile.Read(good);
            var meta = content.Metadata.Where(kv => !kv.Key.StartsWith("kdengine.", StringComparison.Ordinal)).ToDictionary(kv => kv.Key, kv => kv.Value);
            string Rewrite(string name, Func<NamedArray, NamedArray?> change, Dictionary<string, string>? metadata = null)
            {
                string p = Path.Combine(dir, name);
                var tensors = content.Names.Select(n => change(content.Get(n))).Where(t => t is not null).Select(t => t!);
                SafeTensorsFile.Write(p, tensors, metadata ?? meta);
                return p;
            }
            string Fails(string p) => Assert.Throws<CheckpointFormatException>(() => ModelCheckpoint.Load(p))!.Message;

            Assert.That(Fails(Rewrite("noscale.kde", t => t.Name == "dnn.0.weight_scale" ? null : t)),
                Does.Contain("tensor 'dnn.0.weight' is I8 but its scales 'dnn.0.weight_scale' [9] are missing"));
            Assert.That(Fails(Rewrite("m128.kde", t => t.Name == "dnn.1.weight" ? NamedArray.Int8(t.Name, t.AsInt8().ToArray().Select((v, i) => i == 3 ? (sbyte)-128 : v).ToArray(), 6, 9) : t)),
                Does.Contain("tensor 'dnn.1.weight'").And.Contain("−128"));
            Assert.That(Fails(Rewrite("negscale.kde", t => t.Name == "dnn.1.weight_scale" ? NamedArray.Float32(t.Name, Enumerable.Repeat(-1f, 6).ToArray(), 6) : t)),
                Does.Contain("tensor 'dnn.1.weight'").And.Contain("scale 0 is -1"));
            Assert.That(Fails(Rewrite("badprecision.kde", t => t, new Dictionary<string, string>(meta) { [ModelCheckpoint.PrecisionKey] = "int4" })),
                Does.Contain("metadata 'serving.precision'").And.Contain("unknown format 'int4'"));
            // A scale tensor beside a float32 weight belongs to nothing (caught by the weight count, before any allocation).
            string stray = Path.Combine(dir, "stray.kde");
            ModelCheckpoint.Save(stray, model);
            var plainContent = SafeTensorsFile.Read(stray);
            var plainMeta = plainContent.Metadata.Where(kv => !kv.Key.StartsWith("kdengine.", StringComparison.Ordinal)).ToDictionary(kv => kv.Key, kv => kv.Value);
            SafeTensorsFile.Write(stray, plainContent.Names.Select(plainContent.Get).Append(NamedArray.Float32("dnn.0.weight_scale", new float[9], 9)), plainMeta);
            // A scale beside an F32 weight is a stray tensor: counted as a weight, so the file holds 9 more than the config describes.
            long weights = ZooModel.ParameterCount(model.Config, fields);
            Assert.That(Fails(stray), Does.Contain($"describes {weights} weights but the file holds {weights + 9}"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void Quantised_weights_take_fewer_bytes()
    {
        var fields = Fields(6);
        var model = Random(Config(ModelKind.XDeepFm) with { Dnn = [64, 64], Cin = [32, 32] }, fields, seed: 7);
        long fp32 = new Predictor(model).WeightBytes;
        long bf16 = new Predictor(model, precision: ServingPrecision.BFloat16).WeightBytes;
        long int8 = new Predictor(model, precision: ServingPrecision.Int8).WeightBytes;
        Assert.That(bf16, Is.LessThan(fp32 * 0.6));
        Assert.That(int8, Is.LessThan(bf16));
        Assert.That(fp32, Is.GreaterThanOrEqualTo(4 * model.ParameterCount()), "float32 holds at least every parameter (plus the CIN's padding)");
    }

    [TestCase("fp32", ModelKind.XDeepFm, 1)]
    [TestCase("fp32", ModelKind.XDeepFm, 300)]
    [TestCase("fp32", ModelKind.Wdl, 16)]
    [TestCase("fp32", ModelKind.Wdl, 1024)]
    [TestCase("int8", ModelKind.XDeepFm, 1)]
    [TestCase("int8", ModelKind.XDeepFm, 300)]
    [TestCase("int8", ModelKind.Dcn, 1024)]
    [TestCase("bf16", ModelKind.XDeepFm, 300)]
    [TestCase("bf16", ModelKind.Wdl, 16)]
    [TestCase("bf16", ModelKind.Wdl, 1024)]
    public void Steady_state_calls_allocate_nothing_on_any_thread(string precision, ModelKind kind, int batch)
    {
        Predictor.MinMacsPerWeightByte = 0;
        CpuParallel.ThreadCount = 2;
        var fields = Fields(6);
        var model = Random(Config(kind) with { Dnn = [64, 48], Cin = [24, 16] }, fields, seed: 2);
        var predictor = new Predictor(model, precision: ServingPrecision.Parse(precision));
        var ids = Ids(fields, batch, seed: 3);
        var output = new float[batch];
        for (int i = 0; i < 3; i++) predictor.Predict(ids, output);   // warm-up: this thread's and the workers' scratch
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++) predictor.Predict(ids, output, probabilities: i % 2 == 0);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero, "calling thread");
        // Workers too. The count is process-wide, so the test host's own threads add a few hundred bytes now and then
        // (measured: 168 B in a window of 20 calls, with or without the predictor); an allocation per call on any thread
        // is at least one 24-byte object per call, so the quietest of eight windows of 50 calls must stay below 50 × 24 B.
        // In a fresh test process the runtime's background tier-up compiles the predictor's methods after their first
        // 30 calls, and those compilations allocate on its own thread: let them happen before the windows are counted.
        for (int i = 0; i < 100; i++) predictor.Predict(ids, output);
        const int calls = 50;
        long least = long.MaxValue;
        for (int window = 0; window < 8 && least != 0; window++)
        {
            long total = GC.GetTotalAllocatedBytes(precise: true);
            for (int i = 0; i < calls; i++) predictor.Predict(ids, output);
            least = Math.Min(least, GC.GetTotalAllocatedBytes(precise: true) - total);
        }
        Assert.That(least, Is.LessThan(calls * 24), "all threads: less than one object per call");
    }

    [Test]
    public void Precision_spellings_round_trip_and_bad_ones_are_named()
    {
        foreach (var text in new[] { "fp32", "bf16", "int8", "int8+fp32-embeddings", "fp32+bf16-embeddings", "bf16+fp32-embeddings" })
            Assert.That(ServingPrecision.Parse(text).ToString(), Is.EqualTo(text));
        Assert.That(ServingPrecision.Parse("int8"), Is.EqualTo(ServingPrecision.Int8));
        Assert.That(Assert.Throws<FormatException>(() => ServingPrecision.Parse("fp16"))!.Message, Does.Contain("unknown format 'fp16'"));
        Assert.That(Assert.Throws<FormatException>(() => ServingPrecision.Parse("fp32+int8-embeddings"))!.Message, Does.Contain("embeddings can be float32 or bfloat16"));
        Assert.Throws<FormatException>(() => ServingPrecision.Parse("int8+bf16"));
    }

    private static ZooModel Copy(ZooModel model, InputField[] fields)
    {
        var copy = new ZooModel(model.Config, fields, model.Columns.ToArray()) { Training = false };
        foreach (var (a, b) in model.Parameters().Zip(copy.Parameters())) a.Tensor.AsSpan().CopyTo(b.Tensor.AsSpan());
        return copy;
    }
}

/// <summary>
/// Quantised serving on trained models, small: the full measurement (teacher and every method's student, Criteo sample and
/// synthetic data, bound |Δ AUC| ≤ 0.0005) is the serving-tradeoff benchmark in docs/serving.md; here a WDL and an xDeepFM
/// trained briefly on the Criteo sample must keep their validation AUC within 0.002 in int8 and bf16.
/// </summary>
[NonParallelizable]
public class QuantisedServingAccuracyTests
{
    [TestCase(ModelKind.Wdl)]
    [TestCase(ModelKind.XDeepFm)]
    public void Int8_and_bf16_keep_a_trained_models_auc(ModelKind kind)
    {
        var prepared = KdEngine.Pipelines.CtrPipeline.Prepare(
            new KdEngine.Pipelines.DataSource(KdEngine.Data.DataPaths.FindCriteoSample()) { Format = KdEngine.Pipelines.DataFormat.Criteo },
            new KdEngine.Pipelines.SplitOptions(), new KdEngine.Data.PreprocessorOptions { MinCount = 2 });
        var (fields, columns, _) = ModelInputs.From(prepared.Preprocessor.FeatureSpace);
        var config = new ModelConfig { Model = kind, EmbeddingDim = 8, Dnn = [64, 32], Cin = [12, 12], Seed = 3 };
        var model = new ZooModel(config, fields, columns);
        var objective = new KdEngine.Training.SupervisedObjective(model);
        var adam = new KdEngine.Training.Adam(objective.Trainable.Parameters().Select(p => p.Tensor), 3e-3f);
        new KdEngine.Training.Trainer(new KdEngine.Training.TrainerOptions { Epochs = 1, BatchSize = 256, Seed = 3 })
            .Fit(objective, adam, prepared.Train, prepared.Validation);
        model.Training = false;
        var valid = prepared.Validation;
        double Auc(ServingPrecision precision)
        {
            var logits = new float[valid.Count];
            new Predictor(model, precision: precision).Predict(valid.Ids, logits);
            return KdEngine.Metrics.CtrMetrics.Auc(logits, valid.Labels);
        }
        double fp32 = Auc(ServingPrecision.Float32);
        Assert.That(fp32, Is.GreaterThan(0.65), "the model learned something (chance is 0.5)");
        foreach (var precision in new[] { ServingPrecision.Int8, ServingPrecision.BFloat16 })
            Assert.That(Math.Abs(Auc(precision) - fp32), Is.LessThanOrEqualTo(0.002), $"{kind} {precision}");
    }
}
