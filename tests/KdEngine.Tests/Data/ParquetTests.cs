using System.Globalization;
using KdEngine.Data;
using KdEngine.Data.Parquet;
using KdEngine.Models;
using KdEngine.Pipelines;
using NUnit.Framework;
using Parquet;
using Parquet.Schema;

namespace KdEngine.Tests.Data;

/// <summary>Parquet input and the text ↔ Parquet conversion.</summary>
public class ParquetTests
{
    private string _dir = "";

    [OneTimeSetUp]
    public void Register() => ParquetFormat.Register();

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-parquet", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private static readonly Schema Rich = new([
        FieldSpec.Label("y"), FieldSpec.Categorical("site"), FieldSpec.Numeric("n"), FieldSpec.Multi("tags", pooling: Pooling.Mean),
        FieldSpec.DenseNumeric("price"), FieldSpec.Categorical("h") with { HashBuckets = 7 }, FieldSpec.UserId("user")]);

    private string Csv(string name, int rows, int seed)
    {
        var rng = new Random(seed);
        string[] sites = ["a", "b", "c", "\"q,1\"", "é", "z z", ""];
        var lines = Enumerable.Range(0, rows).Select(_ =>
            $"{rng.Next(2)},{sites[rng.Next(sites.Length)]},{(rng.Next(8) == 0 ? "" : (rng.Next(-3, 3000) / (rng.Next(3) == 0 ? 4.0 : 1)).ToString(CultureInfo.InvariantCulture))}," +
            $"{string.Join("|", Enumerable.Range(0, rng.Next(0, 4)).Select(_ => "t" + rng.Next(6)))},{(rng.Next(5) == 0 ? "" : (rng.Next(100) / 8.0).ToString(CultureInfo.InvariantCulture))}," +
            $"h{rng.Next(50)},{(rng.Next(10) == 0 ? "" : rng.Next(30).ToString(CultureInfo.InvariantCulture))}");
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, "y,site,n,tags,price,h,user\n" + string.Join("\n", lines) + "\n");
        return path;
    }

    private string ToParquet(string csv, int rowGroupRows)
    {
        string output = Path.ChangeExtension(csv, ".parquet");
        ParquetConvert.ToParquet(new DataSource(csv) { Schema = Rich, Format = DataFormat.Csv }.OpenInput(), output, rowGroupRows);
        return output;
    }

    private static EncodedDataset Encode(InputSet input, Preprocessor pre)
    {
        var b = new EncodedDatasetBuilder(pre.FeatureSpace);
        foreach (var block in DataPasses.Encode(input, pre, null, new PassOptions { Workers = 2 })) b.AddRange(block, 0, block.Count);
        return b.Build();
    }

    [Test]
    public void Parquet_and_csv_of_the_same_rows_give_identical_encoded_data_and_identical_models()
    {
        string trainCsv = Csv("train.csv", 2000, 1), validCsv = Csv("valid.csv", 400, 2);
        string trainPq = ToParquet(trainCsv, rowGroupRows: 300), validPq = ToParquet(validCsv, rowGroupRows: 1000);
        var csvInput = new DataSource(trainCsv) { Schema = Rich, Format = DataFormat.Csv }.OpenInput();
        var pqInput = new DataSource(trainPq) { Schema = Rich }.OpenInput();
        Assert.That(pqInput.Format, Is.TypeOf<ParquetFormat>());
        Assert.That(pqInput.Units, Has.Count.EqualTo(7), "one unit per row group (2000 rows / 300)");
        var options = new PreprocessorOptions { MinCount = 2 };
        var preCsv = DataPasses.Fit(csvInput, options, null, out _);
        var prePq = DataPasses.Fit(pqInput, options, new PassOptions { Workers = 2 }, out var report);
        Assert.That(report.Rows, Is.EqualTo(2000));
        Assert.That(prePq.ToJson(), Is.EqualTo(preCsv.ToJson()));
        var a = Encode(csvInput, preCsv);
        var b = Encode(pqInput, prePq);
        Assert.That(b.Ids, Is.EqualTo(a.Ids));
        Assert.That(b.Labels, Is.EqualTo(a.Labels));
        Assert.That(b.DenseValues, Is.EqualTo(a.DenseValues));
        Assert.That(b.UserIds, Is.EqualTo(a.UserIds));
        Assert.That(b.Multi[0].Offsets, Is.EqualTo(a.Multi[0].Offsets));
        Assert.That(b.Multi[0].Ids, Is.EqualTo(a.Multi[0].Ids));

        float[] Train(DataSource train, DataSource valid)
        {
            // The whole train part fits the shuffle buffer: the 7 row groups and the single CSV unit give one row order.
            using var data = StreamingPipeline.Prepare(StreamingInputs.Separate(train, valid, null), options, new StreamingOptions { Workers = 2 });
            var model = CtrPipeline.BuildModel(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 4, Dnn = [8], Seed = 2 }, data.Fields);
            StreamingPipeline.Train(model, data, new TrainingSettings { Epochs = 2, BatchSize = 64, Patience = 0, Seed = 4 }, 1_000_000);
            return model.Parameters().SelectMany(p => p.Tensor.ToArray()).ToArray();
        }
        var fromCsv = Train(new DataSource(trainCsv) { Schema = Rich, Format = DataFormat.Csv }, new DataSource(validCsv));
        var fromParquet = Train(new DataSource(trainPq) { Schema = Rich }, new DataSource(validPq) { Format = DataFormat.Parquet });
        Assert.That(fromParquet, Is.EqualTo(fromCsv));

        // And back: Parquet → CSV reads as the same rows again.
        string back = Path.Combine(_dir, "back.csv");
        Assert.That(ParquetConvert.ToCsv(pqInput, back), Is.EqualTo(2000));
        var c = Encode(new DataSource(back) { Schema = Rich, Format = DataFormat.Csv }.OpenInput(), preCsv);
        Assert.That(c.Ids, Is.EqualTo(a.Ids));
        Assert.That(c.Multi[0].Ids, Is.EqualTo(a.Multi[0].Ids));
    }

    private string WriteParquet(string name, params (Field Field, Action<ParquetRowGroupWriter, DataField> Write)[] columns)
    {
        var path = Path.Combine(_dir, name);
        var schema = new ParquetSchema(columns.Select(c => c.Field));
        using var fs = File.Create(path);
        var w = ParquetWriter.CreateAsync(schema, fs).GetAwaiter().GetResult();
        try
        {
            using var rg = w.CreateRowGroup();
            for (int i = 0; i < columns.Length; i++) columns[i].Write(rg, schema.DataFields[i]);
            rg.CompleteValidate();
        }
        finally { w.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
        return path;
    }

    [Test]
    public void Typed_columns_nulls_and_lists_read_as_the_schema_says()
    {
        var schema = new Schema([FieldSpec.Label("click"), FieldSpec.Categorical("ad"), FieldSpec.Numeric("age"), FieldSpec.Multi("tags"), FieldSpec.Categorical("flag")]);
        string path = WriteParquet("typed.parquet",
            (new DataField<bool>("click"), (rg, f) => rg.WriteAsync(f, new ReadOnlyMemory<bool>([true, false, true])).GetAwaiter().GetResult()),
            (new DataField<long?>("ad"), (rg, f) => rg.WriteAsync(f, new ReadOnlyMemory<long?>([12, null, 7])).GetAwaiter().GetResult()),
            (new DataField<int?>("age"), (rg, f) => rg.WriteAsync(f, new ReadOnlyMemory<int?>([30, 41, null])).GetAwaiter().GetResult()),
            (new ListField("tags", new DataField<int?>("element")), (rg, f) => rg.WriteAsync(f, new ReadOnlyMemory<int?>([1, 2, 5, 1]), new ReadOnlyMemory<int>([0, 1, 0, 0])).GetAwaiter().GetResult()),
            (new DataField<bool?>("flag"), (rg, f) => rg.WriteAsync(f, new ReadOnlyMemory<bool?>([true, null, false])).GetAwaiter().GetResult()));
        var input = new InputSet([path], new ParquetFormat(schema));
        var rows = new List<RawRecord>();
        var worker = new ChunkWorker(schema, ReaderOptions.Default);
        foreach (var chunk in input.Format.ReadUnit(path, 0, input.Units[0], 0, ReaderOptions.Default, 0, null))
            chunk.Parse(worker, new Collect(rows));
        Assert.That(rows.Select(r => r.Label), Is.EqualTo(new[] { 1f, 0f, 1f }));
        Assert.That(rows.Select(r => r.Values[1]), Is.EqualTo(new[] { "12", null, "7" }), "integers as decimal text; null = missing");
        Assert.That(rows.Select(r => r.Numbers[2]), Is.EqualTo(new[] { 30.0, 41.0, double.NaN }));
        Assert.That(rows.Select(r => r.Values[3]), Is.EqualTo(new[] { "1|2", "5", "1" }), "list elements joined by the field's separator");
        Assert.That(rows.Select(r => r.Values[4]), Is.EqualTo(new[] { "true", null, "false" }));
    }

    private sealed class Collect(List<RawRecord> rows) : IRowSink
    {
        public void Row(RawRow row) => rows.Add(row.ToRecord());
    }

    [Test]
    public void A_column_whose_type_does_not_fit_the_schema_is_refused_before_training_naming_the_column()
    {
        var schema = new Schema([FieldSpec.Label("y"), FieldSpec.Categorical("site"), FieldSpec.Numeric("n")]);
        string good = WriteParquet("good.parquet",
            (new DataField<int>("y"), (rg, f) => rg.WriteAsync(f, new ReadOnlyMemory<int>([1, 0])).GetAwaiter().GetResult()),
            (new DataField<string>("site", true), (rg, f) => rg.WriteAsync(f, new[] { "a", "b" }).GetAwaiter().GetResult()),
            (new DataField<double>("n"), (rg, f) => rg.WriteAsync(f, new ReadOnlyMemory<double>([1, 2])).GetAwaiter().GetResult()));
        string bad = WriteParquet("bad.parquet",
            (new DataField<int>("y"), (rg, f) => rg.WriteAsync(f, new ReadOnlyMemory<int>([1, 0])).GetAwaiter().GetResult()),
            (new DataField<string>("site", true), (rg, f) => rg.WriteAsync(f, new[] { "a", "b" }).GetAwaiter().GetResult()),
            (new DataField<string>("n", true), (rg, f) => rg.WriteAsync(f, new[] { "1", "2" }).GetAwaiter().GetResult()));
        var log = new StringWriter();
        var e = Assert.Throws<DataFormatException>(() => StreamingPipeline.Prepare(
            StreamingInputs.Separate(new DataSource([good, bad]) { Schema = schema }, new DataSource(good), null), null, new StreamingOptions { Progress = log }))!;
        Assert.That(e.Message, Is.EqualTo("bad.parquet: n: column 'n' holds string, which the numeric field 'n' cannot take (expected int, long, float or double)"));
        Assert.That(log.ToString(), Is.Empty, "refused before any pass over the data");
        string missing = WriteParquet("missing.parquet",
            (new DataField<int>("y"), (rg, f) => rg.WriteAsync(f, new ReadOnlyMemory<int>([1])).GetAwaiter().GetResult()),
            (new DataField<double>("n"), (rg, f) => rg.WriteAsync(f, new ReadOnlyMemory<double>([1])).GetAwaiter().GetResult()));
        Assert.That(() => new ParquetFormat(schema).Check(missing), Throws.TypeOf<DataFormatException>().With.Message.StartsWith("missing.parquet: site: schema field 'site' has no column in the file"));
    }
}
