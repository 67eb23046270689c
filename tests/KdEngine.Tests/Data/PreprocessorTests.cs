using KdEngine.Data;
using NUnit.Framework;

namespace KdEngine.Tests.Data;

public class PreprocessorTests
{
    [TestCase(3.0, 1)]      // ln 3 = 1.0986, ² = 1.207
    [TestCase(10.0, 5)]     // ln 10 = 2.3026, ² = 5.302
    [TestCase(100.0, 21)]   // ln 100 = 4.6052, ² = 21.208
    [TestCase(1382.0, 52)]  // ln 1382 = 7.2313, ² = 52.292
    [TestCase(2.5, 0)]      // ln 2.5 = 0.9163, ² = 0.8396
    public void LogSquared_buckets_known_values(double v, long bucket) =>
        Assert.That(NumericBuckets.LogSquared(v), Is.EqualTo(bucket));

    [TestCase(3.0, 1)]
    [TestCase(4.0, 2)]
    [TestCase(1023.0, 9)]
    [TestCase(1024.0, 10)]
    [TestCase(1382.0, 10)]
    public void Log2_buckets_known_values(double v, long bucket) =>
        Assert.That(NumericBuckets.Log2(v), Is.EqualTo(bucket));

    [Test]
    public void Small_values_are_their_own_buckets_and_never_collide_with_log_buckets()
    {
        Assert.That(NumericBuckets.Token(3, Bucketing.LogSquared), Is.EqualTo("b1"));
        Assert.That(NumericBuckets.Token(1, Bucketing.LogSquared), Is.EqualTo("v1"));
        Assert.That(NumericBuckets.Token(-1, Bucketing.LogSquared), Is.EqualTo("v-1"));
        Assert.That(NumericBuckets.Token(1382, Bucketing.Log2), Is.EqualTo("b10"));
        var values = new double[] { -3, -2, -1, 0, 1, 2, 3, 10, 100, 1382 };
        var tokens = values.Select(v => NumericBuckets.Token(v, Bucketing.LogSquared)).ToArray();
        Assert.That(tokens.Distinct().Count(), Is.EqualTo(values.Length));
        Assert.Throws<ArgumentOutOfRangeException>(() => NumericBuckets.LogSquared(2));
    }

    private static RawRecord Row(Schema s, string? c, double n = double.NaN, float label = 0)
    {
        var r = new RawRecord(s) { Label = label };
        r.Values[s.IndexOf("c")] = c;
        r.Numbers[s.IndexOf("n")] = n;
        return r;
    }

    [Test]
    public void Min_count_oov_and_missing_ids()
    {
        var s = DataTestFiles.SmallSchema();
        var train = new[] { "a", "b", "a", "c", null, "b", "a" }.Select(c => Row(s, c, 5)).ToList();
        var pre = Preprocessor.Fit(s, train, new PreprocessorOptions { MinCount = 2 });
        var field = pre.FeatureSpace["c"];
        var vocabulary = pre.VocabularyOf("c")!;
        Assert.That(vocabulary.Count, Is.EqualTo(2), "c (once) is below min-count");
        Assert.That((vocabulary.IdOf("a"), vocabulary.IdOf("b"), vocabulary.IdOf("c")), Is.EqualTo((2, 3, 1)), "most frequent first");
        Assert.That(vocabulary.Hashes.ToArray(), Is.EqualTo(new[] { StableHash.OfValue("a"), StableHash.OfValue("b") }));
        Assert.That((pre.IdOf("c", "a"), pre.IdOf("c", "zz"), pre.IdOf("c", (string?)null), pre.IdOf("n", "5"), pre.IdOfNumber("n", 5)), Is.EqualTo((2, 1, 0, 2, 2)));
        Assert.That(field.Cardinality, Is.EqualTo(4));
        Assert.That((field.MissingId, field.OovId), Is.EqualTo((0, 1)));
        var row = new EncodedRow(pre.FeatureSpace);
        int Id(string? c, double n = 5) { pre.Encode(Row(s, c, n), row); return row.Ids[1]; }
        Assert.That(Id("a"), Is.EqualTo(2));
        Assert.That(Id("b"), Is.EqualTo(3));
        Assert.That(Id("c"), Is.EqualTo(1), "rare in training → OOV");
        Assert.That(Id("never-seen"), Is.EqualTo(1), "unseen at serving → OOV");
        Assert.That(Id(null), Is.EqualTo(0), "missing → missing id");
        // numeric: every training value was 5 (b2); another bucket is OOV, NaN is missing.
        pre.Encode(Row(s, "a", 5), row); Assert.That(row.Ids[0], Is.EqualTo(2));
        pre.Encode(Row(s, "a", 1e6), row); Assert.That(row.Ids[0], Is.EqualTo(1));
        pre.Encode(Row(s, "a", double.NaN), row); Assert.That(row.Ids[0], Is.EqualTo(0));
    }

    [Test]
    public void Stable_hash_matches_fnv1a_reference_vectors_and_splitmix()
    {
        Assert.That(StableHash.Fnv1a64(""), Is.EqualTo(0xcbf29ce484222325UL));
        Assert.That(StableHash.Fnv1a64("a"), Is.EqualTo(0xaf63dc4c8601ec8cUL));
        Assert.That(StableHash.Fnv1a64("foobar"), Is.EqualTo(0x85944171f73967e8UL));
        // SplitMix64 seeded with 0: the first output is Mix(0x9e3779b97f4a7c15).
        Assert.That(StableHash.Mix(0x9e3779b97f4a7c15UL), Is.EqualTo(0xe220a8397b1dcdafUL));
        Assert.That(StableHash.Bucket("68fd1e64", 1000), Is.EqualTo((int)(StableHash.Mix(StableHash.Fnv1a64("68fd1e64")) % 1000)));
        var long1 = new string('x', 300) + "é";
        Assert.That(StableHash.Fnv1a64(long1), Is.EqualTo(StableHash.Fnv1a64(string.Concat(new string('x', 300), "é"))), "long strings take the heap path");
    }

    [Test]
    public void Hashing_gives_ids_1_to_N_spread_over_the_buckets_and_missing_0()
    {
        var s = new Schema([FieldSpec.Label(), FieldSpec.Numeric("n"), FieldSpec.Categorical("c") with { HashBuckets = 16 }]);
        var pre = Preprocessor.Fit(s, Array.Empty<RawRecord>());
        Assert.That(pre.FeatureSpace["c"].Cardinality, Is.EqualTo(17));
        Assert.That(pre.FeatureSpace["c"].OovId, Is.EqualTo(-1));
        var row = new EncodedRow(pre.FeatureSpace);
        var seen = new HashSet<int>();
        for (int i = 0; i < 400; i++)
        {
            pre.Encode(Row(s, "v" + i), row);
            Assert.That(row.Ids[1], Is.InRange(1, 16));
            Assert.That(row.Ids[1], Is.EqualTo(1 + StableHash.Bucket("v" + i, 16)));
            seen.Add(row.Ids[1]);
        }
        Assert.That(seen, Has.Count.EqualTo(16), "400 values fill all 16 buckets");
        pre.Encode(Row(s, null), row);
        Assert.That(row.Ids[1], Is.EqualTo(0));
    }

    private static (Schema Schema, List<RawRecord> Rows, int[][] Parts) CriteoSample(Schema? schema = null)
    {
        var reader = new DelimitedReader(DataPaths.FindCriteoSample(), schema ?? Schema.Criteo());
        var rows = reader.ToList();
        return (reader.Schema, rows, DataSplit.Indices(rows.Count, [8, 1, 1]));
    }

    [Test]
    public void Criteo_sample_fit_on_the_training_split_with_min_count_2()
    {
        var (schema, rows, parts) = CriteoSample();
        var pre = Preprocessor.Fit(schema, parts[0].Select(i => rows[i]), new PreprocessorOptions { MinCount = 2 });
        var fs = pre.FeatureSpace;
        Assert.That(fs.FieldCount, Is.EqualTo(39));
        Assert.That(fs.MultiFields, Is.Empty);
        Assert.That(fs.HasDenseValues, Is.False);
        // Independent count of C1 values with ≥ 2 occurrences in the first 7,999 rows.
        int c1 = schema.IndexOf("C1");
        int expected = rows.Take(7999).Where(r => r.Values[c1] is not null).GroupBy(r => r.Values[c1]).Count(g => g.Count() >= 2);
        Assert.That(fs["C1"].Cardinality, Is.EqualTo(expected + 2));
        var ds = pre.EncodeAll(rows);
        Assert.That(ds.Count, Is.EqualTo(9999));
        var (train, val, test) = (ds.Split([8, 1, 1])[0], ds.Split([8, 1, 1])[1], ds.Split([8, 1, 1])[2]);
        Assert.That((train.Count, val.Count, test.Count), Is.EqualTo((7999, 1000, 1000)));
        // Test rows have categories never seen in training: they must map to OOV somewhere.
        Assert.That(test.Ids.Count(id => id == 1), Is.GreaterThan(0));
    }

    [Test]
    public void Encoding_one_value_gives_what_encoding_the_record_writes_in_its_column()
    {
        // Every kind of single-valued field: vocabulary categories (seen, rare → OOV, unseen), hashed categories,
        // log² and log2 numeric buckets, a dense numeric field; values as text and as numbers; missing values.
        var fields = Schema.Criteo().Fields.ToList();
        fields[5] = fields[5] with { Bucketing = Bucketing.Log2 };
        fields[6] = FieldSpec.DenseNumeric(fields[6].Name);
        fields[20] = fields[20] with { HashBuckets = 100 };
        var (schema, rows, parts) = CriteoSample(new Schema(fields));
        var pre = Preprocessor.Fit(schema, parts[0].Select(i => rows[i]), new PreprocessorOptions { MinCount = 2 });
        var row = new EncodedRow(pre.FeatureSpace);
        var columns = schema.InputIndices.Select(pre.ColumnOf).ToArray();
        Assert.That(columns, Is.EqualTo(Enumerable.Range(0, 39)));
        Assert.That(pre.ColumnOf(schema.LabelIndex), Is.EqualTo(-1));
        int checkedValues = 0;
        foreach (var record in rows.Where((_, i) => i % 7 == 0).Append(new RawRecord(schema) { }))
        {
            pre.Encode(record, row);
            foreach (int f in schema.InputIndices)
            {
                string? text = record.Values[f];
                int expected = row.Ids[pre.ColumnOf(f)];
                Assert.That(pre.EncodeValue(f, text.AsSpan()), Is.EqualTo(expected), $"{schema[f].Name} = '{text}' as text");
                if (schema[f].Kind == FieldKind.Numeric)
                {
                    double v = text is null ? double.NaN : double.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
                    Assert.That(pre.EncodeValue(f, v), Is.EqualTo(expected), $"{schema[f].Name} = {v} as a number");
                }
                checkedValues++;
            }
        }
        Assert.That(checkedValues, Is.GreaterThan(50_000));
        Assert.That(pre.EncodeValue(schema.IndexOf("C1"), "never-seen-value"), Is.EqualTo(1), "OOV");
        Assert.Throws<DataFormatException>(() => pre.EncodeValue(schema.IndexOf("I1"), "twelve"));
        Assert.Throws<ArgumentException>(() => pre.EncodeValue(schema.LabelIndex, "1"));
        Assert.Throws<ArgumentException>(() => pre.EncodeValue(schema.IndexOf("C1"), 3.0));
    }

    [Test]
    public void Json_round_trip_gives_identical_encodings()
    {
        var fields = Schema.Criteo().Fields.ToList();
        fields[5] = fields[5] with { Bucketing = Bucketing.Log2 };
        fields[20] = fields[20] with { HashBuckets = 100 };
        fields[30] = fields[30] with { MinCount = 5, Privileged = true };
        var schema = new Schema(fields);
        var (_, rows, parts) = CriteoSample(schema);
        var pre = Preprocessor.Fit(schema, parts[0].Select(i => rows[i]), new PreprocessorOptions { MinCount = 2 });
        var json = pre.ToJson();
        var back = Preprocessor.FromJson(json);
        Assert.That(back.ToJson(), Is.EqualTo(json));
        Assert.That(back.FeatureSpace.Fields, Is.EqualTo(pre.FeatureSpace.Fields));
        var a = pre.EncodeAll(rows);
        var b = back.EncodeAll(rows);
        Assert.That(b.Ids, Is.EqualTo(a.Ids));
        Assert.That(b.Labels, Is.EqualTo(a.Labels));
        Assert.That(back.FeatureSpace[fields[20].Name].Encoding, Is.EqualTo(FieldEncoding.Hash));
        Assert.That(back.FeatureSpace[fields[30].Name].Privileged, Is.True);
    }

    [Test]
    public void Preprocessor_json_is_strict()
    {
        var s = DataTestFiles.SmallSchema();
        var json = Preprocessor.Fit(s, [Row(s, "a", 5)]).ToJson();
        var e = Assert.Throws<DataFormatException>(() => Preprocessor.FromJson(json.Replace("\"encoding\":\"vocabulary\"", "\"encoding\":\"vocabulary\",\"extra\":1"), "model.json"))!;
        Assert.That(e.Message, Does.StartWith("model.json: fields[0].extra: unknown key"));
        e = Assert.Throws<DataFormatException>(() => Preprocessor.FromJson(json.Replace("\"encoding\":\"vocabulary\"", "\"encoding\":\"vocab\""), "model.json"))!;
        Assert.That(e.Key, Is.EqualTo("fields[0].encoding"));
        e = Assert.Throws<DataFormatException>(() => Preprocessor.FromJson(json.Replace("\"name\":\"c\",\"encoding\"", "\"name\":\"d\",\"encoding\""), "model.json"))!;
        Assert.That(e.Message, Does.Contain("fields[1].name: expected 'c'"));
        e = Assert.Throws<DataFormatException>(() => Preprocessor.FromJson(json.Replace("\"version\":2", "\"version\":3"), "model.json"))!;
        Assert.That(e.Key, Is.EqualTo("version"));
        e = Assert.Throws<DataFormatException>(() => Preprocessor.FromJson(json.Replace("\"size\":1", "\"size\":2"), "model.json"))!;
        Assert.That(e.Message, Does.Contain("fields[0].hashes: holds 8 bytes, expected 2 hashes"));
        // A version-1 document (string vocabularies) with a repeated entry.
        string v1 = "{\"format\":\"kdengine.preprocessor\",\"version\":1,\"schema\":" + s.ToJson().ReplaceLineEndings("").Replace(" ", "") +
            ",\"fields\":[{\"name\":\"n\",\"encoding\":\"vocabulary\",\"minCount\":1,\"vocabulary\":[\"b2\"]},{\"name\":\"c\",\"encoding\":\"vocabulary\",\"minCount\":1,\"vocabulary\":[\"a\",\"a\"]}]}";
        e = Assert.Throws<DataFormatException>(() => Preprocessor.FromJson(v1, "model.json"))!;
        Assert.That(e.Message, Does.Contain("fields[1].vocabulary: vocabulary entries 0 and 1 of field 'c' have the same 64-bit hash"));
    }
}
