using System.Globalization;
using KdEngine.Data;
using KdEngine.Distillation;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Serving;
using KdEngine.Pipelines;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Pipelines;

/// <summary>
/// Distillation from teacher-logit caches and external scores on the streaming pipeline: the same student as the
/// in-memory path bit for bit, scores paired with their rows under a small shuffle buffer, and bad scores refused
/// naming the file and row.
/// </summary>
public class StreamedTeacherScoresTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-streamed-teacher", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private static readonly Schema ThreeFields = new([FieldSpec.Label("y"), FieldSpec.Categorical("a"), FieldSpec.Categorical("b"), FieldSpec.Categorical("c")]);

    private static readonly TrainingSettings Settings = new() { Epochs = 2, BatchSize = 64, LearningRate = 0.01f, Patience = 0, Seed = 5 };

    private static readonly DistillConfig Kd = new() { Student = new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 4, Dnn = [8], Seed = 3 } };

    /// <summary>n rows "id,y,a,b,c,t": t is a teacher logit that knows the label rule, distinct per row (so a wrong pairing changes the student).</summary>
    private (string Path, float[] Scores, float[] Labels) DataFile(int n, string name = "data.csv") =>
        KdEngine.Tests.Distillation.ExternalTeacherTests.DataFile(_dir, n, name: name);

    private string Write(string name, IEnumerable<string> lines)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return path;
    }

    private string AlignedFile(float[] scores, float[] labels, string name = "aligned.csv") =>
        Write(name, new[] { "row,y,logit" }.Concat(scores.Select((s, i) => string.Create(CultureInfo.InvariantCulture, $"{i},{labels[i]},{s}"))));

    private string KeyedFile(float[] scores, string name = "keyed.csv") =>
        Write(name, new[] { "id,logit" }.Concat(Enumerable.Range(0, scores.Length).Reverse().Select(i => string.Create(CultureInfo.InvariantCulture, $"r{i},{scores[i]}"))));

    private static DataSource Source(string path) => new(path) { Schema = ThreeFields, Format = DataFormat.Csv };

    /// <summary>Small units and chunks on two threads, so the streamed parts are really cut and parsed in pieces.</summary>
    private StreamingOptions Streamed(int shuffleBuffer = 1_000_000) =>
        new() { ShuffleBuffer = shuffleBuffer, Workers = 2, UnitBytes = 6_000, ChunkBytes = 1_500, InMemoryBytes = 0, TemporaryDirectory = _dir };

    /// <summary>A teacher-logit cache of an untrained WDL over the whole file (any deterministic scorer will do).</summary>
    private (string Path, Preprocessor Preprocessor) Cache(string data, string name = "teacher.logits.safetensors")
    {
        var source = Source(data);
        var pre = CtrPipeline.Prepare(source).Preprocessor;
        var teacher = CtrPipeline.BuildModel(new ModelConfig { Model = ModelKind.Wdl, EmbeddingDim = 4, Dnn = [8], Seed = 7 }, CtrPipeline.InputFields(pre.FeatureSpace));
        string path = Path.Combine(_dir, name);
        TeacherLogitCache.ComputeStreamed(path, teacher, (source with { Schema = pre.Schema }).OpenInput(InputSet.DefaultUnitBytes), pre, Path.GetFileName(data), "wdl");
        return (path, pre);
    }

    private static float[] Weights(Module m) => m.Parameters().SelectMany(p => p.Tensor.ToArray()).ToArray();

    /// <summary>The in-memory distillation: every part in memory, the scores attached by file row.</summary>
    private static (float[] Weights, TrainOutcome Outcome) InMemory(DataSource source, Preprocessor? fixedPre, string[] caches, TeacherScoreSource[] external, DistillMethod method, DistillConfig config)
    {
        var data = fixedPre is null ? CtrPipeline.Prepare(source, teacherScores: external) : CtrPipeline.PrepareWith(source, fixedPre, teacherScores: external);
        var columns = caches.Select(c => TeacherLogitCache.Load(c, data.All, source.FileName)).ToList();
        if (external.Length > 0)
        {
            var byRecord = data.All.TeacherLogits!;
            for (int k = 0; k < external.Length; k++)
                columns.Add(Enumerable.Range(0, data.All.Count).Select(r => byRecord[r * external.Length + k]).ToArray());
        }
        int teachers = columns.Count;
        var all = new float[data.All.Count * teachers];
        for (int r = 0; r < data.All.Count; r++)
            for (int k = 0; k < teachers; k++) all[r * teachers + k] = columns[k][r];
        data = data.WithTeacherLogits(all, teachers);
        var run = DistillPipeline.Build(method, config, data, Enumerable.Range(0, teachers).Select(k => (ITeacher)new ExternalTeacher(k)).ToList());
        var outcome = CtrPipeline.Fit(run.Objective, data, Settings);
        return (Weights(run.Student), outcome);
    }

    private static (float[] Weights, TrainOutcome Outcome) Streaming(DataSource source, Preprocessor? fixedPre, string[] caches, TeacherScoreSource[] external,
        DistillMethod method, DistillConfig config, StreamingOptions options)
    {
        using var data = StreamingPipeline.Prepare(StreamingInputs.SplitOf(source, [8, 1, 1]), new PreprocessorOptions(), options, fixedPre);
        var table = StreamedTeacherScores.Attach(data, caches, external, options);
        Assert.That(table.Count, Is.EqualTo(caches.Length + external.Length));
        var run = DistillPipeline.Build(method, config, data.Fields, data.Privileged, Enumerable.Range(0, table.Count).Select(k => (ITeacher)new ExternalTeacher(k)).ToList());
        var outcome = StreamingPipeline.Fit(run.Objective, data, Settings, options.ShuffleBuffer);
        return (Weights(run.Student), outcome);
    }

    [TestCase("cache")]
    [TestCase("column")]
    [TestCase("aligned file")]
    [TestCase("keyed file")]
    [TestCase("all three, averaged")]
    public void Streamed_distillation_equals_the_in_memory_one_bit_for_bit(string what)
    {
        var (data, scores, labels) = DataFile(2000);
        var source = Source(data);
        string[] caches = [];
        Preprocessor? pre = null;
        TeacherScoreSource[] external = [];
        var method = DistillMethod.Logits;
        var config = Kd;
        switch (what)
        {
            case "cache":
                var only = Cache(data);
                (caches, pre) = ([only.Path], only.Preprocessor);
                break;
            case "column": external = [TeacherScoreSource.FromColumn("t")]; break;
            case "aligned file": external = [TeacherScoreSource.FromFile(AlignedFile(scores, labels))]; break;
            case "keyed file": external = [TeacherScoreSource.FromKeyedFile(KeyedFile(scores), "id")]; break;
            default:
                var c = Cache(data);
                (caches, pre) = ([c.Path], c.Preprocessor);
                external = [TeacherScoreSource.FromColumn("t"), TeacherScoreSource.FromFile(AlignedFile(scores.Select(s => -s).ToArray(), labels))];
                method = DistillMethod.Ensemble;
                config = Kd with { EnsembleMode = EnsembleMode.Average };
                break;
        }
        var memory = InMemory(source, pre, caches, external, method, config);
        var streamed = Streaming(source, pre, caches, external, method, config, Streamed());
        Assert.That(streamed.Weights, Is.EqualTo(memory.Weights), "same seed, rows, scores and batches → same student");
        Assert.That(streamed.Outcome.Report.History.Select(h => h.Auc), Is.EqualTo(memory.Outcome.Report.History.Select(h => h.Auc)));
        Assert.That((streamed.Outcome.Validation.Auc, streamed.Outcome.Test.LogLoss), Is.EqualTo((memory.Outcome.Validation.Auc, memory.Outcome.Test.LogLoss)));
        Assert.That(Directory.GetFiles(_dir, "kdengine-*"), Is.Empty, "temporary files are deleted");
    }

    [Test]
    public void A_small_shuffle_buffer_pairs_every_row_with_its_own_score_and_is_deterministic()
    {
        var (data, scores, labels) = DataFile(2000);
        var source = Source(data);
        var options = Streamed(shuffleBuffer: 100);
        using var prepared = StreamingPipeline.Prepare(StreamingInputs.SplitOf(source, [8, 1, 1]), new PreprocessorOptions(), options);
        StreamedTeacherScores.Attach(prepared, [], [TeacherScoreSource.FromColumn("t"), TeacherScoreSource.FromFile(AlignedFile(scores, labels))], options);
        Assert.That(prepared.Train.Input.Units.Count, Is.GreaterThan(3));
        long[] offsets = [0, prepared.Train.Rows, prepared.Train.Rows + prepared.Validation.Rows];
        var seen = new HashSet<long>();
        foreach (var (part, offset) in new[] { (prepared.Train, offsets[0]), (prepared.Validation, offsets[1]), (prepared.Test!, offsets[2]) })
        {
            var batches = part == prepared.Train ? part.TrainingBatches(64, shuffle: true, seed: 11, shuffleBuffer: 100) : part.OrderedBatches(64);
            foreach (var b in batches)
            {
                Assert.That(b.TeacherCount, Is.EqualTo(2));
                for (int i = 0; i < b.Size; i++)
                {
                    long fileRow = offset + b.Rows[i];
                    Assert.That(seen.Add(fileRow), Is.True);
                    Assert.That((b.TeacherLogits[2 * i], b.TeacherLogits[2 * i + 1], b.Labels[i]), Is.EqualTo((scores[fileRow], scores[fileRow], labels[fileRow])), $"file row {fileRow}");
                }
            }
        }
        Assert.That(seen, Has.Count.EqualTo(2000));

        // Shuffled by a buffer of 100 rows (not the in-memory permutation), the student still trains, and the same seed gives the same student.
        var external = new[] { TeacherScoreSource.FromColumn("t") };
        var first = Streaming(source, null, [], external, DistillMethod.Logits, Kd, options);
        var second = Streaming(source, null, [], external, DistillMethod.Logits, Kd, options);
        Assert.That(second.Weights, Is.EqualTo(first.Weights));
        Assert.That(first.Outcome.Test.Auc, Is.GreaterThan(0.75), "the student learns the label rule from a 100-row buffer's order");
        var memory = InMemory(source, null, [], external, DistillMethod.Logits, Kd);
        Assert.That(first.Weights, Is.Not.EqualTo(memory.Weights), "another order than the in-memory permutation");
    }

    private Exception Refused(string data, Preprocessor? pre, string[] caches, params TeacherScoreSource[] external)
    {
        var options = Streamed();
        using var prepared = StreamingPipeline.Prepare(StreamingInputs.SplitOf(Source(data), [8, 1, 1]), new PreprocessorOptions(), options, pre);
        var e = Assert.Catch(() => StreamedTeacherScores.Attach(prepared, caches, external, options))!;
        Assert.That(e, Is.InstanceOf<DataFormatException>().Or.InstanceOf<ArgumentException>().Or.InstanceOf<CheckpointFormatException>());
        Assert.That(Directory.GetFiles(_dir, "kdengine-*"), Is.Empty, "temporary files are deleted");
        return e;
    }

    [Test]
    public void A_stale_cache_is_refused_naming_both_files()
    {
        var (data, _, _) = DataFile(600);
        var (cache, pre) = Cache(data);
        // Same rows and row count, one label flipped: the fingerprint differs.
        var lines = File.ReadAllLines(data);
        var cells = lines[301].Split(',');
        cells[1] = cells[1] == "1" ? "0" : "1";
        lines[301] = string.Join(",", cells);
        var changed = Write("changed.csv", lines);
        var e = Refused(changed, pre, [cache]);
        Assert.That(e.Message, Does.Contain("teacher.logits.safetensors").And.Contain("'data.csv'").And.Contain("'changed.csv'").And.Contain("fingerprint"));
        // Fewer rows: refused by the count.
        var shorter = Write("shorter.csv", lines.Take(500));
        e = Refused(shorter, pre, [cache]);
        Assert.That(e.Message, Does.Contain("600 rows").And.Contain("499 rows").And.Contain("shorter.csv"));
        // A non-finite logit in the cache names the cache and the row.
        var bytes = File.ReadAllBytes(cache);
        var header = TeacherLogitCache.ReadHeader(cache);
        BitConverter.GetBytes(float.NaN).CopyTo(bytes, header.LogitsOffset + 4 * 123);
        var nanCache = Path.Combine(_dir, "nan.logits.safetensors");
        File.WriteAllBytes(nanCache, bytes);
        e = Refused(data, pre, [nanCache]);
        Assert.That(e, Is.InstanceOf<CheckpointFormatException>());
        Assert.That(e.Message, Does.Contain("nan.logits.safetensors").And.Contain("checksum"), "the data checksum catches a changed logit first");
        // A cache written with a NaN logit (its checksum right) names the cache and the row.
        var logits = TeacherLogitCache.Read(cache).Logits;
        logits[123] = float.NaN;
        var rows = CtrPipeline.PrepareWith(Source(data), pre).All;
        var written = Path.Combine(_dir, "nan-written.logits.safetensors");
        TeacherLogitCache.Save(written, logits, rows, "data.csv", "wdl", pre);
        e = Refused(data, pre, [written]);
        Assert.That(e.Message, Does.Contain("nan-written.logits.safetensors").And.Contain("data row 123 is NaN"));
    }

    [Test]
    public void Short_misaligned_missing_key_and_non_finite_scores_are_refused_naming_file_and_row()
    {
        var (data, scores, labels) = DataFile(600);
        var aligned = File.ReadAllLines(AlignedFile(scores, labels));

        var e = Refused(data, null, [], TeacherScoreSource.FromFile(Write("short.csv", aligned.Take(401))));
        Assert.That(e.Message, Does.Contain("short.csv").And.Contain("no score for data row 400").And.Contain("data.csv line 402"));

        var swapped = (string[])aligned.Clone();
        (swapped[51], swapped[52]) = (swapped[52], swapped[51]);
        e = Refused(data, null, [], TeacherScoreSource.FromFile(Write("swapped.csv", swapped)));
        Assert.That(e.Message, Does.Contain("swapped.csv:52").And.Contain("misaligned"));

        var keyed = File.ReadAllLines(KeyedFile(scores)).Where(l => !l.StartsWith("r77,", StringComparison.Ordinal));
        e = Refused(data, null, [], TeacherScoreSource.FromKeyedFile(Write("keyed-missing.csv", keyed), "id"));
        Assert.That(e.Message, Does.Contain("keyed-missing.csv").And.Contain("'r77'").And.Contain("data row 77"));

        var nan = (string[])aligned.Clone();
        nan[11] = $"10,{labels[10]},NaN";
        e = Refused(data, null, [], TeacherScoreSource.FromFile(Write("nan.csv", nan)));
        Assert.That(e.Message, Does.Contain("nan.csv:12").And.Contain("data row 10"));

        var lines = File.ReadAllLines(data);
        lines[31] = lines[31][..lines[31].LastIndexOf(',')] + ",-Infinity";
        e = Refused(Write("inf.csv", lines), null, [], TeacherScoreSource.FromColumn("t"));
        Assert.That(e.Message, Does.Contain("inf.csv:32").And.Contain("data row 30").And.Contain("not a finite number"));
    }

    [Test]
    public void Input_sets_are_refused_since_scores_index_one_files_rows()
    {
        var (data, _, _) = DataFile(300);
        var options = Streamed();
        using var prepared = StreamingPipeline.Prepare(StreamingInputs.Separate(Source(data), Source(data), null), new PreprocessorOptions(), options);
        var e = Assert.Throws<ArgumentException>(() => StreamedTeacherScores.Attach(prepared, [], [TeacherScoreSource.FromColumn("t")], options))!;
        Assert.That(e.Message, Does.Contain("one data file").And.Contain("data.csv"));
    }
}
