using KdEngine.Data;
using KdEngine.Distillation;
using KdEngine.Models;
using KdEngine.Pipelines;
using NUnit.Framework;

namespace KdEngine.Tests.Pipelines;

[TestFixture]
public class PipelineTests
{
    private static string Temp(string name, string content)
    {
        var dir = Path.Combine(Path.GetTempPath(), "kdengine-pipeline-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, content);
        return path;
    }

    private static readonly Schema TwoFields = new([FieldSpec.Label("y"), FieldSpec.Categorical("a"), FieldSpec.Categorical("b")]);

    /// <summary>10 rows; category 'late' appears only in the last (test) row, 'mid' only in the validation row.</summary>
    private static string TenRows() => Temp("ten.csv", "y,a,b\n" + string.Join("\n",
        Enumerable.Range(0, 8).Select(i => $"{i % 2},x{i % 2},k")
            .Append("1,mid,k").Append("0,late,k")) + "\n");

    [Test]
    public void PreprocessingIsFittedOnTheTrainPartOnly()
    {
        var data = CtrPipeline.Prepare(new DataSource(TenRows()) { Schema = TwoFields }, new SplitOptions(), new PreprocessorOptions { MinCount = 1 });
        Assert.That((data.Train.Count, data.Validation.Count, data.Test.Count), Is.EqualTo((8, 1, 1)));
        var vocabulary = data.Preprocessor.VocabularyOf("a")!;
        Assert.That(vocabulary.Count, Is.EqualTo(2));
        Assert.That(vocabulary.Contains("x0") && vocabulary.Contains("x1") && !vocabulary.Contains("mid"), Is.True);
        var oov = data.Preprocessor.FeatureSpace["a"].OovId;
        Assert.That(data.Validation.RowIds(0)[0], Is.EqualTo(oov));
        Assert.That(data.Test.RowIds(0)[0], Is.EqualTo(oov));
        Assert.That(data.Fields.Select(f => (f.Name, f.Cardinality)), Is.EqualTo(new[] { ("a", 4), ("b", 3) }));
    }

    [Test]
    public void RandomSplitIsSeededAndDiffersFromSequential()
    {
        var path = TenRows();
        var seq = CtrPipeline.Prepare(new DataSource(path) { Schema = TwoFields });
        var r1 = CtrPipeline.Prepare(new DataSource(path) { Schema = TwoFields }, new SplitOptions { Mode = SplitMode.Random, Seed = 3 });
        var r2 = CtrPipeline.Prepare(new DataSource(path) { Schema = TwoFields }, new SplitOptions { Mode = SplitMode.Random, Seed = 3 });
        Assert.That(r1.SplitIndices[2], Is.EqualTo(r2.SplitIndices[2]));
        Assert.That(seq.SplitIndices[2], Is.EqualTo(new[] { 9 }));
        Assert.That(r1.SplitIndices.SelectMany(p => p).OrderBy(i => i), Is.EqualTo(Enumerable.Range(0, 10)));
    }

    [Test]
    public void MultiValuedAndDenseFieldsTrainEndToEndAndTheCompiledPredictorRejectsThemByName()
    {
        // tags: a bag of ids (mean-pooled); v: a dense value scaling its field's embedding.
        var rows = Enumerable.Range(0, 40).Select(i => $"{i % 2},{(i % 3 == 0 ? "x" : "y")},{(i % 2 == 1 ? "p|q" : "q")},{(i % 5) * 0.5}");
        var path = Temp("m.csv", "y,a,tags,v\n" + string.Join("\n", rows) + "\n");
        var schema = new Schema([FieldSpec.Label("y"), FieldSpec.Categorical("a"), FieldSpec.Multi("tags", '|', Pooling.Mean), FieldSpec.DenseNumeric("v")]);
        var data = CtrPipeline.Prepare(new DataSource(path) { Schema = schema }, new SplitOptions(), new PreprocessorOptions { MinCount = 1 });
        Assert.That(data.Fields.Select(f => (f.Name, f.IsMultiValued, f.ScaleByValue)),
            Is.EqualTo(new[] { ("a", false, false), ("tags", true, false), ("v", false, true) }));
        var model = CtrPipeline.BuildModel(new ModelConfig { Model = ModelKind.DeepFm, EmbeddingDim = 4, Dnn = [8] }, data.Fields);
        var outcome = CtrPipeline.Train(model, data, new TrainingSettings { Epochs = 20, LearningRate = 0.05f, Patience = 0 });
        Assert.That(outcome.Validation.Auc, Is.GreaterThan(0.9), "the tags bag separates the classes");
        var e = Assert.Throws<NotSupportedException>(() => new KdEngine.Serving.Predictor(model));
        Assert.That(e!.Message, Does.Contain("'tags'").And.Contain("multi-valued"));
    }

    [Test]
    public void FormatsResolveFromTheExtensionAndRangesParse()
    {
        Assert.That(new DataSource("x.svm").ResolvedFormat, Is.EqualTo(DataFormat.LibSvm));
        Assert.That(new DataSource("x.ffm").ResolvedFormat, Is.EqualTo(DataFormat.LibFfm));
        Assert.That(new DataSource("x.csv").ResolvedFormat, Is.EqualTo(DataFormat.Criteo));
        Assert.That(new DataSource("x.csv") { Schema = TwoFields }.ResolvedFormat, Is.EqualTo(DataFormat.Csv));
        Assert.That(DataSource.ParseRanges("2x10"), Is.EqualTo(new[] { new IndexRange("f0", 0, 10), new IndexRange("f1", 10, 20) }));
        var ranges = DataSource.ParseRanges("C1=0-5,C2=5-9");
        Assert.That(DataSource.ParseRanges(DataSource.FormatRanges(ranges)), Is.EqualTo(ranges));
        Assert.Throws<ArgumentException>(() => DataSource.ParseRanges("C1:0-5"));
        var e = Assert.Throws<ArgumentException>(() => new DataSource(Temp("a.svm", "1 0:1\n")).Open());
        Assert.That(e!.Message, Does.Contain("a.svm").And.Contain("ranges"));
    }

    [Test]
    public void TeacherLogitCacheRoundTripsAndRejectsOtherData()
    {
        var gen = new SyntheticCtr(new SyntheticCtrOptions { Fields = 3, VocabSize = 10, Seed = 2 });
        var data = gen.Generate(50);
        var other = new SyntheticCtr(new SyntheticCtrOptions { Fields = 3, VocabSize = 10, Seed = 5 }).Generate(50);
        var model = new ZooModel(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 3, Dnn = [4] },
            data.FeatureSpace.SingleFields.Select(f => new KdEngine.Nn.InputField(f.Name, f.Cardinality)).ToArray());
        var logits = TeacherLogitCache.Compute(model, data);
        var path = Temp("c.logits.safetensors", "");
        TeacherLogitCache.Save(path, logits, data, "d.tsv", "t.kde", null);
        Assert.That(TeacherLogitCache.Load(path, data, "d.tsv"), Is.EqualTo(logits));
        var e = Assert.Throws<ArgumentException>(() => TeacherLogitCache.Load(path, other, "o.tsv"));
        Assert.That(e!.Message, Does.Contain("d.tsv").And.Contain("o.tsv"));
        e = Assert.Throws<ArgumentException>(() => TeacherLogitCache.Load(path, data.Slice(0, 40), "o.tsv"));
        Assert.That(e!.Message, Does.Contain("50 rows").And.Contain("40 rows"));
        Assert.That(TeacherLogitCache.Fingerprint(data), Is.EqualTo(TeacherLogitCache.Fingerprint(data.Slice(0, 50))));
    }

    [Test]
    public void ConfigsRejectUnknownKeysNamingThem()
    {
        var e = Assert.Throws<ConfigException>(() => DistillConfig.FromJson("""{"alpah": 0.3}""", "kd.json"));
        Assert.That(e!.Message, Does.Contain("kd.json").And.Contain("alpah"));
        e = Assert.Throws<ConfigException>(() => DistillConfig.FromJson("""{"student": {"model": "dnn", "dnnn": [3]}}""", "kd.json"));
        Assert.That(e!.Message, Does.Contain("dnnn"));
        e = Assert.Throws<ConfigException>(() => DistillConfig.FromJson("""{"alpha": 1.5}""", "kd.json"));
        Assert.That(e!.Message, Does.Contain("alpha"));
        e = Assert.Throws<ConfigException>(() => ZooExperimentConfig.FromJson("""{"models": {"bert": {}}}""", "zoo.json"));
        Assert.That(e!.Message, Does.Contain("bert"));
        var c = DistillConfig.FromJson(new DistillConfig { Alpha = 0.25f }.ToJson());
        Assert.That(c.Alpha, Is.EqualTo(0.25f));
    }

    [Test]
    public void TrainSaveLoadPredictsTheSameLogits()
    {
        var gen = new SyntheticCtr(new SyntheticCtrOptions { Fields = 3, VocabSize = 12, Seed = 7 });
        var path = Temp("s.tsv", "");
        using (var w = new StreamWriter(path))
        {
            w.Write("label\tC1\tC2\tC3\n");
            gen.WriteCriteoTsv(w, 200);
        }
        var source = new DataSource(path) { Schema = gen.Schema };
        var data = CtrPipeline.Prepare(source, preprocessing: new PreprocessorOptions { MinCount = 1 });
        var model = CtrPipeline.BuildModel(new ModelConfig { Model = ModelKind.Wdl, EmbeddingDim = 4, Dnn = [8] }, data.Fields);
        var outcome = CtrPipeline.Train(model, data, new TrainingSettings { Epochs = 2, BatchSize = 32 });
        Assert.That(outcome.Report.Steps, Is.GreaterThan(0));
        var kde = path + ".kde";
        CtrPipeline.Save(kde, model, data.Preprocessor, data.Source);
        var loaded = CtrPipeline.Load(kde);
        var again = CtrPipeline.EncodeFor(loaded, path);
        Assert.That(CtrPipeline.Logits(loaded.Model, again), Is.EqualTo(CtrPipeline.Logits(model, data.All)));
        Assert.That(CtrPipeline.LatencyMicroseconds(loaded.Model, data.Test, 4, warmup: 1, minExamples: 8, minSeconds: 0), Is.GreaterThan(0));
    }
}
