using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Pipelines;
using NUnit.Framework;

namespace KdEngine.Tests.Pipelines;

/// <summary>The streaming pipeline against the in-memory one, and the encoded cache.</summary>
public class StreamingPipelineTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-streaming-pipeline", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private static readonly ModelConfig Small = new() { Model = ModelKind.Wdl, EmbeddingDim = 4, Dnn = [16], Seed = 3 };

    private static readonly TrainingSettings Settings = new() { Epochs = 2, BatchSize = 128, LearningRate = 0.01f, Patience = 0, Seed = 5 };

    private (string Path, Schema Schema) Synthetic(int rows, string name = "synth.tsv")
    {
        var gen = new SyntheticCtr(new SyntheticCtrOptions { Fields = 6, VocabSize = 60, Seed = 9 });
        string path = Path.Combine(_dir, name);
        gen.WriteCriteoTsv(path, rows);
        return (path, gen.Schema);
    }

    private static float[] Weights(ZooModel m) => m.Parameters().SelectMany(p => p.Tensor.ToArray()).ToArray();

    [Test]
    public void Streaming_training_equals_the_in_memory_path_bit_for_bit_when_the_buffer_holds_every_row()
    {
        var (path, schema) = Synthetic(3000);
        var source = new DataSource(path) { Schema = schema, Format = DataFormat.Criteo };
        var preprocessing = new PreprocessorOptions { MinCount = 2 };

        var memory = CtrPipeline.Prepare(source, new SplitOptions(), preprocessing);
        var m1 = CtrPipeline.BuildModel(Small, memory.Fields);
        var o1 = CtrPipeline.Train(m1, memory, Settings);

        // Several byte-range units, small chunks, two parsing threads: none of it may change a bit.
        var options = new StreamingOptions { ShuffleBuffer = 1_000_000, Workers = 2, UnitBytes = 9_000, ChunkBytes = 2_000 };
        using var streamed = StreamingPipeline.Prepare(StreamingInputs.SplitOf(source, [8, 1, 1]), preprocessing, options);
        Assert.That(streamed.Train.Input.Units, Has.Count.GreaterThan(3));
        Assert.That(streamed.Preprocessor.ToJson(), Is.EqualTo(memory.Preprocessor.ToJson()), "fitted on the same train rows");
        Assert.That((streamed.Train.Rows, streamed.Validation.Rows, streamed.Test!.Rows), Is.EqualTo((2400L, 300L, 300L)));
        var m2 = CtrPipeline.BuildModel(Small, streamed.Fields);
        var o2 = StreamingPipeline.Train(m2, streamed, Settings, options.ShuffleBuffer);

        Assert.That(Weights(m2), Is.EqualTo(Weights(m1)), "same seed, same rows, same batches → same weights");
        Assert.That(o2.Report.History.Select(h => h.Auc), Is.EqualTo(o1.Report.History.Select(h => h.Auc)));
        Assert.That((o2.Validation.Auc, o2.Test.Auc, o2.Test.LogLoss), Is.EqualTo((o1.Validation.Auc, o1.Test.Auc, o1.Test.LogLoss)));
        Assert.That(o2.Report.InputTime, Is.GreaterThan(TimeSpan.Zero));
    }

    [Test]
    public void A_streamed_search_equals_the_in_memory_search_trial_for_trial_and_on_the_final_test_read()
    {
        var (path, schema) = Synthetic(3000);
        var source = new DataSource(path) { Schema = schema, Format = DataFormat.Criteo };
        var preprocessing = new PreprocessorOptions { MinCount = 2 };
        var baseConfig = new TrialConfig(Small, Settings);
        var space = new SearchSpace().AddSpec("lr=0.003|0.01").AddSpec("dropout=0|0.2");
        var tuneOptions = new TuneOptions { FinalSeeds = 2, Calibration = KdEngine.Metrics.CalibrationKind.Temperature };

        var memory = new PreparedTuneData(CtrPipeline.Prepare(source, new SplitOptions(), preprocessing));
        var inMemory = new Tuner(memory, baseConfig, Tuner.ZooTrials(memory.Fields), tuneOptions).Run(space);

        var options = new StreamingOptions { ShuffleBuffer = 1_000_000, Workers = 2, UnitBytes = 9_000, ChunkBytes = 2_000 };
        using var streamedParts = StreamingPipeline.Prepare(StreamingInputs.SplitOf(source, [8, 1, 1]), preprocessing, options);
        var streamedData = new StreamedTuneData(streamedParts, options.ShuffleBuffer);
        Assert.That((streamedData.TrainRows, streamedData.ValidationRows), Is.EqualTo((2400L, 300L)));
        var streamed = new Tuner(streamedData, baseConfig, Tuner.ZooTrials(streamedData.Fields), tuneOptions).Run(space);

        Assert.That(streamed.Trials.Select(t => (t.SettingText, t.ValidAuc, t.ValidLogLoss, t.BestStep)),
            Is.EqualTo(inMemory.Trials.Select(t => (t.SettingText, t.ValidAuc, t.ValidLogLoss, t.BestStep))), "every trial, in rank order");
        Assert.That(streamed.Final, Is.EqualTo(inMemory.Final), "the final seeds' validation, test and calibrated test metrics");
        Assert.That(Weights(streamed.FinalModels[1]), Is.EqualTo(Weights(inMemory.FinalModels[1])));
        // The trials differ from one another, or equality above would prove little.
        Assert.That(streamed.Trials.Select(t => t.ValidAuc).Distinct().Count(), Is.GreaterThan(1));
    }

    [Test]
    public void A_streamed_search_needs_a_test_part()
    {
        var (path, schema) = Synthetic(600);
        var source = new DataSource(path) { Schema = schema, Format = DataFormat.Criteo };
        using var parts = StreamingPipeline.Prepare(StreamingInputs.SplitOf(source, [8, 2]), new PreprocessorOptions { MinCount = 2 }, new StreamingOptions { Workers = 1 });
        var e = Assert.Throws<ConfigException>(() => new StreamedTuneData(parts, 1000))!;
        Assert.That(e.Message, Does.Contain("test part"));
    }

    [Test]
    public void A_hash_split_streams_the_in_memory_hash_splits_parts_trains_identically_and_keeps_caches_apart_by_seed()
    {
        var (path, schema) = Synthetic(3000);
        var source = new DataSource(path) { Schema = schema, Format = DataFormat.Criteo };
        var preprocessing = new PreprocessorOptions { MinCount = 2 };
        var memory = CtrPipeline.Prepare(source, new SplitOptions { Mode = SplitMode.Hash, Seed = 7 }, preprocessing);
        var m1 = CtrPipeline.BuildModel(Small, memory.Fields);
        var o1 = CtrPipeline.Train(m1, memory, Settings);

        string cache = Path.Combine(_dir, "cache");
        var options = new StreamingOptions { ShuffleBuffer = 1_000_000, Workers = 2, UnitBytes = 9_000, ChunkBytes = 2_000, CacheDirectory = cache };
        using (var streamed = StreamingPipeline.Prepare(StreamingInputs.SplitOf(source, [8, 1, 1], SplitMode.Hash, 7), preprocessing, options))
        {
            Assert.That((streamed.Train.Rows, streamed.Validation.Rows, streamed.Test!.Rows),
                Is.EqualTo(((long)memory.Train.Count, (long)memory.Validation.Count, (long)memory.Test.Count)));
            Assert.That(streamed.Train.Rows, Is.Not.EqualTo(2400L), "binomial part sizes, not the sequential split's ⌊n·ratio⌋");
            Assert.That(streamed.Preprocessor.ToJson(), Is.EqualTo(memory.Preprocessor.ToJson()), "fitted on the same train rows");
            var m2 = CtrPipeline.BuildModel(Small, streamed.Fields);
            var o2 = StreamingPipeline.Train(m2, streamed, Settings, options.ShuffleBuffer);
            Assert.That(Weights(m2), Is.EqualTo(Weights(m1)), "same seed, same rows, same batches → same weights");
            Assert.That((o2.Validation.Auc, o2.Test.LogLoss), Is.EqualTo((o1.Validation.Auc, o1.Test.LogLoss)));
        }
        // Another seed cuts other parts from the same units: its caches are other files, never the first seed's reported stale or reused.
        using (var other = StreamingPipeline.Prepare(StreamingInputs.SplitOf(source, [8, 1, 1], SplitMode.Hash, 8), preprocessing, options))
            Assert.That(other.Train.Rows, Is.Not.EqualTo(memory.Train.Count));
        Assert.That(Directory.GetFiles(cache), Has.Length.EqualTo(6));
        Assert.Throws<ArgumentException>(() => StreamingInputs.SplitOf(source, [8, 1, 1], SplitMode.Random, 7));
    }

    [Test]
    public void The_encoded_cache_trains_exactly_as_text_is_reused_with_its_preprocessing_and_rejected_when_stale()
    {
        var (train, schema) = Synthetic(4000, "train.tsv");
        var (valid, _) = Synthetic(600, "valid.tsv");
        var source = new DataSource(train) { Schema = schema, Format = DataFormat.Criteo };
        var inputs = StreamingInputs.Separate(source, new DataSource(valid), null);
        var preprocessing = new PreprocessorOptions { MinCount = 2 };
        // A buffer smaller than the data: units are shuffled between epochs and the buffer replaces rows at random.
        var text = new StreamingOptions { ShuffleBuffer = 700, Workers = 2, UnitBytes = 8_000, ChunkBytes = 3_000 };
        string cacheDir = Path.Combine(_dir, "cache");
        var cached = text with { CacheDirectory = cacheDir };

        float[] Run(StreamingOptions options, out StreamedData data, TextWriter? log = null)
        {
            data = StreamingPipeline.Prepare(inputs, preprocessing, options with { Progress = log });
            var model = CtrPipeline.BuildModel(Small, data.Fields);
            StreamingPipeline.Train(model, data, Settings with { Epochs = 3 }, options.ShuffleBuffer);
            return Weights(model);
        }

        var fromText = Run(text, out var d1);
        Assert.That(d1.Train.Origin, Is.EqualTo("text"));
        d1.Dispose();
        var log = new StringWriter();
        var firstCached = Run(cached, out var d2, log);
        Assert.That(d2.Train.Origin, Does.StartWith("cache train.train.tsv."));
        Assert.That(log.ToString(), Does.Contain("wrote cache"));
        d2.Dispose();
        Assert.That(firstCached, Is.EqualTo(fromText), "rows from the cache come in the same order as from the text");

        log = new StringWriter();
        var second = Run(cached, out var d3, log);
        Assert.That(d3.Passes, Is.Empty, "the second run parses no text: preprocessing and rows come from the caches");
        Assert.That(log.ToString(), Does.Contain("reused (no text parsed)"));
        Assert.That(second, Is.EqualTo(fromText));
        var cacheFile = Directory.GetFiles(cacheDir, "train.*").Single();
        d3.Dispose();

        // The cache refuses other preprocessing, and a changed data file makes it stale: rebuilt, never used silently.
        var other = Preprocessor.Fit(schema, new DelimitedReader(valid, schema, new DelimitedOptions { HasHeader = false }));
        using (var c = EncodedCache.Open(cacheFile, other.FeatureSpace))
        {
            var input = source.OpenInput(text.UnitBytes);
            Assert.That(() => c.CheckFresh(input, other.ToJson()), Throws.TypeOf<StaleCacheException>().With.Message.Contains("other preprocessing"));
        }
        File.AppendAllText(train, "1\t00000001\t00000002\t00000003\t00000004\t00000005\t00000006\n");
        log = new StringWriter();
        Run(cached, out var d4, log);
        Assert.That(log.ToString(), Does.Contain("is stale: ").And.Contain("train.tsv changed size"));
        Assert.That(d4.Train.Rows, Is.EqualTo(4001));
        d4.Dispose();
    }

    [Test]
    public void Streamed_eval_and_predict_match_the_in_memory_scores()
    {
        var (path, schema) = Synthetic(1500);
        var source = new DataSource(path) { Schema = schema, Format = DataFormat.Criteo };
        var memory = CtrPipeline.Prepare(source, new SplitOptions(), new PreprocessorOptions { MinCount = 2 });
        var model = CtrPipeline.BuildModel(Small, memory.Fields);
        CtrPipeline.Train(model, memory, Settings with { Epochs = 1 });
        var all = CtrPipeline.Encode(source, memory.Preprocessor);
        var expected = CtrPipeline.Logits(model, all);

        var input = source.OpenInput(5_000);
        var options = new StreamingOptions { Workers = 2, ChunkBytes = 1_000 };
        var (result, rows) = StreamingPipeline.Evaluate(model, input, memory.Preprocessor, options);
        Assert.That(rows, Is.EqualTo(1500));
        Assert.That(result.Auc, Is.EqualTo(KdEngine.Metrics.CtrMetrics.EvaluateLogits(expected, all.Labels).Auc));
        string scores = Path.Combine(_dir, "scores.csv");
        StreamingPipeline.Predict(model, input, memory.Preprocessor, scores, options);
        var lines = File.ReadAllLines(scores);
        Assert.That(lines[0], Is.EqualTo("probability"));
        // σ in double rounded once to float (the service's probability), written so that it parses back to the same float.
        static float Probability(float z) => (float)(1.0 / (1.0 + Math.Exp(-(double)z)));
        Assert.That(lines.Skip(1).Select(t => float.Parse(t, System.Globalization.CultureInfo.InvariantCulture)), Is.EqualTo(expected.Select(Probability)));

        // Through the compiled Predictor in batches of 1,024 + 476 rows, as the service scores them.
        var predictor = new KdEngine.Serving.Predictor(model, memory.Preprocessor);
        var served = new float[all.Count];
        for (int b0 = 0; b0 < all.Count; b0 += 1024)
        {
            int n = Math.Min(1024, all.Count - b0);
            predictor.Predict(all.Ids.AsSpan(b0 * all.FieldCount, n * all.FieldCount), served.AsSpan(b0, n));
        }
        StreamingPipeline.Predict(model, input, memory.Preprocessor, scores, options, predictor, 1024);
        Assert.That(File.ReadLines(scores).Skip(1).Select(t => float.Parse(t, System.Globalization.CultureInfo.InvariantCulture)),
            Is.EqualTo(served.Select(Probability)));
    }
}
