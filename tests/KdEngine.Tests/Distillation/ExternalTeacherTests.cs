using System.Globalization;
using KdEngine.Data;
using KdEngine.Distillation;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Serving;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Distillation;

/// <summary>External teacher scores: read from a column, a row-aligned or a keyed side file; validated; used by KD and the ensemble.</summary>
public class ExternalTeacherTests
{
    private static string Dir()
    {
        var dir = Path.Combine(Path.GetTempPath(), "kdengine-teacher-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static readonly Schema ThreeFields = new([FieldSpec.Label("y"), FieldSpec.Categorical("a"), FieldSpec.Categorical("b"), FieldSpec.Categorical("c")]);

    /// <summary>
    /// n rows "id,y,a,b,c,t": the label follows a + b ≥ 6 (a, b in 0..5) with 10 % noise, and t (a teacher logit) knows
    /// that rule: +2 / −2 plus a row-specific offset, so each row's score is distinct and a shifted pairing is visible.
    /// </summary>
    internal static (string Path, float[] Scores, float[] Labels) DataFile(string dir, int n, int seed = 1, string name = "data.csv")
    {
        var rng = new Random(seed);
        var scores = new float[n];
        var labels = new float[n];
        var lines = new List<string> { "id,y,a,b,c,t" };
        for (int i = 0; i < n; i++)
        {
            int a = rng.Next(6), b = rng.Next(6), c = rng.Next(4);
            bool rule = a + b >= 6;
            bool y = rule ^ (rng.NextDouble() < 0.1);
            scores[i] = (rule ? 2f : -2f) + i * 1e-3f;
            labels[i] = y ? 1 : 0;
            lines.Add(string.Create(CultureInfo.InvariantCulture, $"r{i},{(y ? 1 : 0)},a{a},b{b},c{c},{scores[i]}"));
        }
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return (path, scores, labels);
    }

    private static string SideFile(string dir, string name, IEnumerable<string> lines)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return path;
    }

    private static IEnumerable<string> Aligned(float[] scores, float[] labels, Func<int, int>? rowOf = null) =>
        new[] { "row,y,logit" }.Concat(Enumerable.Range(0, scores.Length).Select(i =>
        {
            int r = rowOf?.Invoke(i) ?? i;
            return string.Create(CultureInfo.InvariantCulture, $"{r},{labels[r]},{scores[r]}");
        }));

    private static float[] Read(string data, params TeacherScoreSource[] sources)
    {
        var reader = new DelimitedReader(data, ThreeFields);
        return TeacherScores.Read(sources, data, ThreeFields, reader.ToList());
    }

    [Test]
    public void Scores_are_read_from_a_column_an_aligned_file_and_a_keyed_file_in_any_order()
    {
        var dir = Dir();
        var (data, scores, labels) = DataFile(dir, 40);
        Assert.That(Read(data, TeacherScoreSource.FromColumn("t")), Is.EqualTo(scores));
        var aligned = SideFile(dir, "aligned.csv", Aligned(scores, labels));
        Assert.That(Read(data, TeacherScoreSource.FromFile(aligned)), Is.EqualTo(scores));
        // One number per line, no header.
        var bare = SideFile(dir, "bare.txt", scores.Select(s => s.ToString("R", CultureInfo.InvariantCulture)));
        Assert.That(Read(data, TeacherScoreSource.FromFile(bare)), Is.EqualTo(scores));
        // Keyed: the side file lists the ids in another order (tab-separated, with an unrelated extra column named).
        var keyed = SideFile(dir, "keyed.tsv", new[] { "id\tp\tnote" }.Concat(Enumerable.Range(0, 40).Reverse().Select(i =>
            string.Create(CultureInfo.InvariantCulture, $"r{i}\t{1 / (1 + Math.Exp(-scores[i]))}\tx"))));
        var fromKeys = Read(data, TeacherScoreSource.FromKeyedFile(keyed, "id", "p", TeacherScoreKind.Probability));
        Assert.That(fromKeys, Is.EqualTo(scores).Within(1e-4f));
        // Several sources at once: [rows, K] row-major.
        var both = Read(data, TeacherScoreSource.FromColumn("t"), TeacherScoreSource.FromFile(aligned));
        Assert.That(both.Length, Is.EqualTo(80));
        Assert.That(both.Where((_, i) => i % 2 == 1), Is.EqualTo(scores));
    }

    [Test]
    public void Probabilities_become_logits_and_the_ends_are_clamped()
    {
        Assert.That(TeacherScores.ToLogit("0.5", TeacherScoreKind.Probability, out _), Is.EqualTo(0f));
        Assert.That(TeacherScores.ToLogit("0.880797", TeacherScoreKind.Probability, out _), Is.EqualTo(2f).Within(1e-4f));
        Assert.That(TeacherScores.ToLogit("1", TeacherScoreKind.Probability, out _), Is.EqualTo(16.118f).Within(1e-3f));
        Assert.That(TeacherScores.ToLogit("0", TeacherScoreKind.Probability, out _), Is.EqualTo(-16.118f).Within(1e-3f));
        Assert.That(TeacherScores.ToLogit("1.2", TeacherScoreKind.Probability, out var problem), Is.Null);
        Assert.That(problem, Does.Contain("outside [0, 1]"));
    }

    private static DataFormatException Refused(string data, TeacherScoreSource source) =>
        Assert.Throws<DataFormatException>(() => Read(data, source))!;

    [Test]
    public void A_short_long_misaligned_or_non_finite_teacher_file_is_refused_naming_the_file_and_row()
    {
        var dir = Dir();
        var (data, scores, labels) = DataFile(dir, 30);

        var shortFile = SideFile(dir, "short.csv", Aligned(scores, labels).Take(26)); // header + 25 rows
        var e = Refused(data, TeacherScoreSource.FromFile(shortFile));
        Assert.That(e.Message, Does.Contain("short.csv").And.Contain("data row 25").And.Contain("data.csv line 27"));

        var longFile = SideFile(dir, "long.csv", Aligned(scores, labels).Append("30,0,1.5"));
        e = Refused(data, TeacherScoreSource.FromFile(longFile));
        Assert.That(e.Message, Does.StartWith("long.csv:32").And.Contain("more data rows than the data (30)"));

        // Rows 10 and 11 swapped: the row column says so.
        var swapped = SideFile(dir, "swapped.csv", Aligned(scores, labels, i => i == 10 ? 11 : i == 11 ? 10 : i));
        e = Refused(data, TeacherScoreSource.FromFile(swapped));
        Assert.That(e.Message, Does.StartWith("swapped.csv:12").And.Contain("misaligned").And.Contain("data row 10"));

        // Shifted by one without a row column: the label column disagrees somewhere.
        var shifted = SideFile(dir, "shifted.csv", new[] { "y,logit" }.Concat(Enumerable.Range(0, 30).Select(i =>
            string.Create(CultureInfo.InvariantCulture, $"{labels[(i + 1) % 30]},{scores[(i + 1) % 30]}"))));
        e = Refused(data, TeacherScoreSource.FromFile(shifted));
        Assert.That(e.Message, Does.StartWith("shifted.csv:").And.Contain("misaligned: label").And.Contain("data row"));

        foreach (var bad in new[] { "NaN", "Infinity", "-inf", "abc", "" })
        {
            var lines = Aligned(scores, labels).ToArray();
            lines[8] = $"7,{labels[7].ToString(CultureInfo.InvariantCulture)},{bad}"; // data row 7 is on line 9
            var file = SideFile(dir, "bad.csv", lines);
            e = Refused(data, TeacherScoreSource.FromFile(file));
            Assert.That(e.Message, Does.StartWith("bad.csv:9: column 3 (logit)").And.Contain("data row 7"), $"value '{bad}'");
        }

        var dataLines = File.ReadAllLines(data);
        dataLines[6] = dataLines[6][..(dataLines[6].LastIndexOf(',') + 1)] + "nan"; // data row 5 (line 7): its teacher column
        var badData = SideFile(dir, "bad-column.csv", dataLines);
        e = Assert.Throws<DataFormatException>(() => Read(badData, TeacherScoreSource.FromColumn("t")))!;
        Assert.That(e.Message, Does.StartWith("bad-column.csv:7: column 6 (t)").And.Contain("not a finite number").And.Contain("data row 5"));

        var probabilities = SideFile(dir, "p.csv", new[] { "p" }.Concat(Enumerable.Range(0, 30).Select(i => i == 4 ? "1.5" : "0.3")));
        e = Refused(data, TeacherScoreSource.FromFile(probabilities, kind: TeacherScoreKind.Probability));
        Assert.That(e.Message, Does.StartWith("p.csv:6").And.Contain("outside [0, 1]").And.Contain("data row 4"));
    }

    [Test]
    public void Keyed_files_refuse_missing_duplicate_and_too_many_keys()
    {
        var dir = Dir();
        var (data, scores, _) = DataFile(dir, 20);
        var missing = SideFile(dir, "k.csv", new[] { "id,logit" }.Concat(Enumerable.Range(0, 20).Where(i => i != 13).Select(i => $"r{i},1")));
        var e = Refused(data, TeacherScoreSource.FromKeyedFile(missing, "id"));
        Assert.That(e.Message, Does.StartWith("data.csv:15: column 1 (id)").And.Contain("'r13'").And.Contain("k.csv").And.Contain("data row 13"));

        var duplicate = SideFile(dir, "d.csv", ["id,logit", "r1,1", "r2,1", "r1,2"]);
        e = Refused(data, TeacherScoreSource.FromKeyedFile(duplicate, "id"));
        Assert.That(e.Message, Does.StartWith("d.csv:4").And.Contain("duplicate key 'r1'"));

        var full = SideFile(dir, "f.csv", new[] { "id,logit" }.Concat(Enumerable.Range(0, 20).Select(i => $"r{i},1")));
        e = Refused(data, TeacherScoreSource.FromKeyedFile(full, "id", maxKeys: 10));
        Assert.That(e.Message, Does.StartWith("f.csv:12").And.Contain("more than 10 keys").And.Contain("by row"));

        e = Refused(data, TeacherScoreSource.FromKeyedFile(full, "key"));
        Assert.That(e.Message, Does.StartWith("f.csv:1").And.Contain("'key'"));
        e = Assert.Throws<DataFormatException>(() => Read(data, TeacherScoreSource.FromColumn("score")))!;
        Assert.That(e.Message, Does.StartWith("data.csv:1").And.Contain("'score'"));
        Assert.That(scores, Has.Length.EqualTo(20));
    }

    [Test]
    public void A_column_follows_rows_the_reader_skipped_but_a_row_aligned_file_refuses_them()
    {
        var dir = Dir();
        var (path, scores, labels) = DataFile(dir, 12);
        var lines = File.ReadAllLines(path).ToList();
        lines[4] = "r3,7,a1,b1,c1,0.5"; // label 7: a malformed row the reader skips
        File.WriteAllLines(path, lines);
        var reader = new DelimitedReader(path, ThreeFields, options: new ReaderOptions { BadRows = BadRowPolicy.Skip });
        var records = reader.ToList();
        Assert.That(reader.SkippedRows, Is.EqualTo(1));
        var fromColumn = TeacherScores.Read([TeacherScoreSource.FromColumn("t")], path, ThreeFields, records, reader.SkippedRows);
        Assert.That(fromColumn, Is.EqualTo(scores.Where((_, i) => i != 3)));
        var aligned = SideFile(dir, "a.csv", Aligned(scores, labels));
        var e = Assert.Throws<DataFormatException>(() =>
            TeacherScores.Read([TeacherScoreSource.FromFile(aligned)], path, ThreeFields, records, reader.SkippedRows))!;
        Assert.That(e.Message, Does.StartWith("a.csv").And.Contain("skipped 1 malformed row"));
    }

    [Test]
    public void Scores_stay_with_their_rows_under_a_random_split_and_in_every_batch()
    {
        var dir = Dir();
        var (path, scores, _) = DataFile(dir, 200);
        var data = CtrPipeline.Prepare(new DataSource(path) { Schema = ThreeFields }, new SplitOptions { Mode = SplitMode.Random, Seed = 5 },
            new PreprocessorOptions { MinCount = 1 }, [TeacherScoreSource.FromColumn("t")]);
        var parts = new[] { data.Train, data.Validation, data.Test };
        for (int k = 0; k < 3; k++)
        {
            Assert.That(parts[k].TeacherCount, Is.EqualTo(1));
            Assert.That(parts[k].TeacherLogits, Is.EqualTo(data.SplitIndices[k].Select(r => scores[r])), $"part {k}");
        }
        // Shuffled batches carry each row's own score.
        var scratch = new BatchScratch();
        var teacher = new ExternalTeacher();
        foreach (var batch in data.Train.Batches(16, shuffle: true, seed: 3))
        {
            var ctr = scratch.From(batch);
            using var tape = KdEngine.Autograd.Tape<float>.NoGrad();
            var (z, hidden) = teacher.Run(ctr);
            var rows = batch.Rows.ToArray();
            Assert.That(z.ToArray(), Is.EqualTo(rows.Select(r => scores[data.SplitIndices[0][r]])));
            Assert.That(hidden, Is.Empty);
        }
        var e = Assert.Throws<ArgumentException>(() => new ExternalTeacher(1, "gbdt.csv").Run(scratch.From(data.Test.Batches(4).First())));
        Assert.That(e!.Message, Does.Contain("gbdt.csv").And.Contain("column 1").And.Contain("1 column"));
        e = Assert.Throws<ArgumentException>(() => new ExternalTeacher(0, "gbdt.csv").Run(new BatchScratch().From(data.Test.WithoutTeacherLogits().Batches(4).First())));
        Assert.That(e!.Message, Does.Contain("gbdt.csv").And.Contain("no teacher scores"));
    }

    [Test]
    public void Select_and_split_carry_each_rows_teacher_logits()
    {
        var gen = new SyntheticCtr(new SyntheticCtrOptions { Fields = 3, VocabSize = 10, Seed = 2 });
        var data = gen.Generate(50);
        var logits = Enumerable.Range(0, 100).Select(i => i * 0.5f).ToArray(); // two teachers: row r holds r and r + 0.5
        var scored = data.WithTeacherLogits(logits, 2);
        Assert.That(scored.Ids, Is.SameAs(data.Ids), "the rows are shared, not copied");
        var picked = scored.Select([7, 3, 3, 41]);
        Assert.That(picked.TeacherCount, Is.EqualTo(2));
        Assert.That(picked.TeacherLogits, Is.EqualTo(new[] { 7f, 7.5f, 3f, 3.5f, 3f, 3.5f, 41f, 41.5f }));
        var parts = scored.Split([8, 1, 1], SplitMode.Random, seed: 4);
        var rows = DataSplit.Indices(50, [8, 1, 1], SplitMode.Random, 4);
        for (int k = 0; k < 3; k++)
            Assert.That(parts[k].TeacherLogits, Is.EqualTo(rows[k].SelectMany(r => new[] { r * 1f, r + 0.5f })), $"part {k}");
        var e = Assert.Throws<ArgumentException>(() => data.WithTeacherLogits([.. logits[..99], float.NaN], 2));
        Assert.That(e!.Message, Does.Contain("row 49, teacher 1"));
        Assert.Throws<ArgumentException>(() => data.WithTeacherLogits(logits, 3));
    }

    private static readonly ModelConfig Student = new() { Model = ModelKind.Dnn, EmbeddingDim = 4, Dnn = [8], Seed = 3 };

    [Test]
    public void A_teacher_logit_cache_gives_the_same_student_as_the_live_teacher_under_a_random_split()
    {
        var dir = Dir();
        var (path, _, _) = DataFile(dir, 300);
        var split = new SplitOptions { Mode = SplitMode.Random, Seed = 11 };
        var data = CtrPipeline.Prepare(new DataSource(path) { Schema = ThreeFields }, split, new PreprocessorOptions { MinCount = 1 });
        var teacher = CtrPipeline.BuildModel(new ModelConfig { Model = ModelKind.Wdl, EmbeddingDim = 4, Dnn = [8], Seed = 2 }, data.Fields);
        CtrPipeline.Train(teacher, data, new TrainingSettings { Epochs = 2, BatchSize = 32, Patience = 0 });
        // The cache is over the whole file in file order (what cache-logits writes); attaching re-indexes it per part.
        var cache = TeacherLogitCache.Compute(teacher, data.All);
        var cached = data.WithTeacherLogits(cache, 1);
        var settings = new TrainingSettings { Epochs = 2, BatchSize = 32, Patience = 0, Metric = StoppingMetric.DistillationLoss };

        var fromLive = CtrPipeline.BuildModel(Student, data.Fields);
        var live = CtrPipeline.Fit(new TeacherStudentObjective(fromLive, new ModelTeacher(teacher), 0.7f, 2f), data, settings);
        var fromCache = CtrPipeline.BuildModel(Student, data.Fields);
        var viaCache = CtrPipeline.Fit(new TeacherStudentObjective(fromCache, new ExternalTeacher(0, "cache"), 0.7f, 2f), cached, settings);

        var a = CtrPipeline.Logits(fromLive, data.Test);
        var b = CtrPipeline.Logits(fromCache, data.Test);
        for (int i = 0; i < a.Length; i++) Assert.That(b[i], Is.EqualTo(a[i]).Within(1e-4f), $"test row {i}");
        Assert.That(viaCache.Report.History.Select(p => p.DistillationLoss),
            Is.EqualTo(live.Report.History.Select(p => p.DistillationLoss)).Within(1e-5));
    }

    [Test]
    public void A_gbdt_like_external_teacher_distils_into_a_student_the_predictor_serves()
    {
        var dir = Dir();
        var (path, scores, labels) = DataFile(dir, 600, seed: 4);
        var side = SideFile(dir, "gbdt.csv", Aligned(scores, labels));
        var source = new DataSource(path) { Schema = ThreeFields };
        var data = CtrPipeline.Prepare(source, new SplitOptions(), new PreprocessorOptions { MinCount = 1 }, [TeacherScoreSource.FromFile(side)]);
        var config = DistillConfig.FromJson("""{"student": {"model": "dnn", "embeddingDim": 4, "dnn": [8]}, "alpha": 0.8, "temperature": 1}""");
        var run = DistillPipeline.Build(DistillMethod.Logits, config, data, [new ExternalTeacher(0, "gbdt.csv")]);
        var outcome = CtrPipeline.Fit(run.Objective, data, new TrainingSettings { Epochs = 8, BatchSize = 32, LearningRate = 0.01f, Patience = 0 });
        Assert.That(outcome.Test.Auc, Is.GreaterThan(0.8), "the teacher's rule is learnable from a and b");

        var kde = Path.Combine(dir, "student.kde");
        CtrPipeline.Save(kde, run.Student, data.Preprocessor, data.Source);
        var loaded = CtrPipeline.Load(kde);
        var predictor = new Predictor(loaded.Model);
        var expected = CtrPipeline.Logits(run.Student, data.Test);
        var served = new float[data.Test.Count];
        predictor.Predict(data.Test.Ids, served);
        for (int i = 0; i < served.Length; i++) Assert.That(served[i], Is.EqualTo(expected[i]).Within(1e-5f), $"row {i}");

        // An external teacher has no hidden layers: hint distillation says so.
        var e = Assert.Throws<ArgumentException>(() => DistillPipeline.Build(DistillMethod.Hint, config, data, [new ExternalTeacher()]));
        Assert.That(e!.Message, Does.Contain("hidden layers"));
    }

    [Test]
    public void External_scores_are_members_of_the_gated_and_the_averaging_ensemble()
    {
        var dir = Dir();
        var (path, scores, _) = DataFile(dir, 400, seed: 6);
        var noise = new Random(9);
        var noisy = Path.Combine(dir, "noise.txt");
        File.WriteAllLines(noisy, scores.Select(_ => (noise.NextDouble() * 6 - 3).ToString("R", CultureInfo.InvariantCulture)));
        var data = CtrPipeline.Prepare(new DataSource(path) { Schema = ThreeFields }, new SplitOptions(), new PreprocessorOptions { MinCount = 1 },
            [TeacherScoreSource.FromFile(noisy), TeacherScoreSource.FromColumn("t")]);
        var model = CtrPipeline.BuildModel(new ModelConfig { Model = ModelKind.Lr, Seed = 1 }, data.Fields);
        var members = new ITeacher[] { new ExternalTeacher(0, "noise.txt"), new ExternalTeacher(1, "t"), new ModelTeacher(model) };
        var settings = new TrainingSettings { Epochs = 6, BatchSize = 32, LearningRate = 0.02f, Patience = 0, Metric = StoppingMetric.DistillationLoss };

        var gated = new EnsembleObjective(CtrPipeline.BuildModel(Student, data.Fields), members, EnsembleMode.TwoStage, 0.5f, 1f, null, [], 0f, seed: 2);
        CtrPipeline.Fit(gated, data, settings);
        var weights = gated.GateWeights(new BatchScratch().From(data.Validation.Batches(data.Validation.Count).First()));
        double onRule = Enumerable.Range(0, data.Validation.Count).Average(i => weights[3 * i + 1]);
        double onNoise = Enumerable.Range(0, data.Validation.Count).Average(i => weights[3 * i]);
        Assert.That(onRule, Is.GreaterThan(onNoise), "the gate prefers the informative external teacher");

        var average = new EnsembleObjective(CtrPipeline.BuildModel(Student, data.Fields), members, EnsembleMode.Average, 0.5f, 1f, null, [], 0f, seed: 2);
        Assert.That(average.Gate, Is.Null);
        Assert.That(average.Trainable.Parameters().Select(p => p.Name), Has.All.StartsWith("student."));
        var uniform = average.GateWeights(new BatchScratch().From(data.Validation.Batches(8).First()));
        Assert.That(uniform, Has.All.EqualTo(1f / 3));
    }
}
