using KdEngine.Data;
using NUnit.Framework;

namespace KdEngine.Tests.Data;

public class ReaderTests
{
    [Test]
    public void Bundled_criteo_sample_reads_9999_rows_with_its_label_rate()
    {
        var path = DataPaths.FindCriteoSample();
        Assert.That(path, Does.EndWith(Path.Combine("data", "criteo-sample", "criteo_sampled_data_10k.csv")));
        var reader = CriteoReader.Open(path);
        long rows = 0, positives = 0;
        RawRecord? first = null;
        foreach (var r in reader)
        {
            first ??= r;
            rows++;
            if (r.Label == 1) positives++;
        }
        Assert.That(rows, Is.EqualTo(9999));
        Assert.That(positives, Is.EqualTo(2181));
        Assert.That(reader.RowsRead, Is.EqualTo(9999));
        Assert.That(reader.SkippedRows, Is.Zero);
        // First data row: 0,1.0,1,5.0,0.0,1382.0,4.0,15.0,2.0,181.0,1.0,2.0,,2.0,68fd1e64,...,07b5194c,,3a171ecb,...
        var s = reader.Schema;
        Assert.That(first!.Line, Is.EqualTo(2));
        Assert.That(first.Label, Is.Zero);
        Assert.That(first.Numbers[s.IndexOf("I1")], Is.EqualTo(1.0));
        Assert.That(first.Numbers[s.IndexOf("I5")], Is.EqualTo(1382.0));
        Assert.That(first.Numbers[s.IndexOf("I12")], Is.NaN);
        Assert.That(first.Values[s.IndexOf("I12")], Is.Null);
        Assert.That(first.Values[s.IndexOf("C1")], Is.EqualTo("68fd1e64"));
        Assert.That(first.Values[s.IndexOf("C22")], Is.Null);
        Assert.That(first.Values[s.IndexOf("C26")], Is.EqualTo("9727dd16"));
    }

    [Test]
    public void Criteo_tsv_without_header_reads_positionally_with_negatives_and_missing_values()
    {
        var reader = CriteoReader.Open(DataTestFiles.Fixture("criteo_like.tsv"));
        var rows = reader.ToList();
        var s = reader.Schema;
        Assert.That(rows, Has.Count.EqualTo(3));
        Assert.That(rows.Select(r => r.Label), Is.EqualTo(new[] { 0f, 1f, 0f }));
        Assert.That(rows[0].Line, Is.EqualTo(1), "no header: the first line is data");
        Assert.That(rows[0].Numbers[s.IndexOf("I3")], Is.NaN);
        Assert.That(rows[1].Numbers[s.IndexOf("I1")], Is.EqualTo(-1));
        Assert.That(rows[1].Numbers[s.IndexOf("I13")], Is.EqualTo(-2));
        Assert.That(rows[1].Values[s.IndexOf("C2")], Is.EqualTo("f0cf0024"));
        Assert.That(rows[2].Values.Count(v => v is not null), Is.Zero, "an all-missing row is valid");
    }

    [Test]
    public void LibSvm_with_plus_minus_one_labels_and_crlf_maps_indices_to_fields_by_range()
    {
        var opts = LibSvmOptions.Uniform(2, 10);
        var rows = new LibSvmReader(DataTestFiles.Fixture("pm1.svm"), opts).ToList();
        Assert.That(rows.Select(r => r.Label), Is.EqualTo(new[] { 1f, 0f, 1f }));
        Assert.That(rows.Select(r => r.Values[1]), Is.EqualTo(new[] { "1", "3", "2" }));
        Assert.That(rows.Select(r => r.Values[2]), Is.EqualTo(new[] { "12", null, "15" }));
        Assert.That(rows[0].Scales![2], Is.EqualTo(0.5f));
        Assert.That(rows[2].Scales![2], Is.EqualTo(2f));

        var pre = Preprocessor.Fit(opts.Schema, rows);
        var ds = pre.EncodeAll(rows);
        Assert.That(ds.FieldCount, Is.EqualTo(2));
        Assert.That(ds.DenseValues, Is.EqualTo(new[] { 1f, 0.5f, 1f, 1f, 1f, 2f }), "libFM values scale the embedding; missing → 1");
        Assert.That(ds.Ids[3], Is.EqualTo(0), "row 2 has no index in f1: missing id");
    }

    [Test]
    public void LibFm_with_zero_one_labels_reads_end_to_end()
    {
        var opts = LibSvmOptions.Uniform(3, 5, scaleByValue: false);
        var reader = new LibSvmReader(DataTestFiles.Fixture("labels01.libfm"), opts);
        var pre = Preprocessor.Fit(opts.Schema, reader);
        var ds = pre.EncodeAll(reader);
        Assert.That(ds.Labels, Is.EqualTo(new[] { 1f, 0f, 0f }));
        Assert.That(ds.DenseValues, Is.Null);
        // f0: "0" ×2, "1" ×1 → ids 2, 3; f1: "5" ×2 → 2, "6" → 3; f2: "10" → 2, "11" → 3, row 3 missing → 0.
        Assert.That(ds.Ids, Is.EqualTo(new[] { 2, 2, 2, 3, 2, 3, 2, 3, 0 }));
    }

    [Test]
    public void LibFfm_maps_field_numbers_to_the_schema_input_fields()
    {
        var schema = LibFfmReader.UniformSchema(3);
        var rows = new LibFfmReader(DataTestFiles.Fixture("pm1.ffm"), schema).ToList();
        Assert.That(rows.Select(r => r.Label), Is.EqualTo(new[] { 1f, 0f }));
        Assert.That(rows[0].Values.Skip(1), Is.EqualTo(new[] { "3", "7", "1" }));
        Assert.That(rows[1].Values.Skip(1), Is.EqualTo(new[] { "4", null, "2" }));
        Assert.That(rows[0].Scales![3], Is.EqualTo(0.5f));
    }

    [Test]
    public void Generic_csv_with_schema_json_reads_an_avazu_like_file_end_to_end()
    {
        var schema = Schema.Load(DataTestFiles.Fixture("avazu_schema.json"));
        var reader = new DelimitedReader(DataTestFiles.Fixture("avazu_like.csv"), schema);
        var rows = reader.ToList();
        Assert.That(rows, Has.Count.EqualTo(5));
        Assert.That(rows[0].Values[schema.IndexOf("note")], Is.EqualTo("hello, world"), "quoted field with the delimiter");
        Assert.That(rows[2].Values[schema.IndexOf("note")], Is.EqualTo("say \"hi\""), "doubled quote");
        Assert.That(rows[2].Values[schema.IndexOf("tags")], Is.Null);

        var pre = Preprocessor.Fit(schema, rows);
        var fs = pre.FeatureSpace;
        Assert.That(fs.SingleFields.Select(f => f.Name), Is.EqualTo(new[] { "hour", "banner_pos", "site_id", "price", "dwell", "note" }));
        Assert.That(fs.MultiFields.Select(f => f.Name), Is.EqualTo(new[] { "tags" }));
        Assert.That(fs["tags"].Pooling, Is.EqualTo(Pooling.Mean));
        Assert.That(fs["dwell"].Privileged, Is.True);
        Assert.That(fs["site_id"].Privileged, Is.False);
        Assert.That(fs["price"].Encoding, Is.EqualTo(FieldEncoding.Dense));
        Assert.That(fs["price"].Cardinality, Is.EqualTo(2));
        Assert.That(fs["site_id"].Cardinality, Is.EqualTo(5), "missing + OOV + 3 sites");
        Assert.That(fs.HasUserIds, Is.True);

        var ds = pre.EncodeAll(rows);
        int F = ds.FieldCount, site = 2, price = 3, dwell = 4;
        // site_id: 1fbe01fe ×3 → 2; d6137915, fe8cc448 once each → 3 and 4 (ties in the order of their value hashes).
        var sites = pre.VocabularyOf("site_id")!;
        int d6 = sites.IdOf("d6137915"), fe = sites.IdOf("fe8cc448");
        Assert.That(new[] { d6, fe }, Is.EquivalentTo(new[] { 3, 4 }));
        Assert.That(d6 < fe, Is.EqualTo(StableHash.OfValue("d6137915") < StableHash.OfValue("fe8cc448")));
        Assert.That(Enumerable.Range(0, 5).Select(i => ds.Ids[i * F + site]), Is.EqualTo(new[] { 2, 2, fe, 2, d6 }));
        Assert.That(Enumerable.Range(0, 5).Select(i => ds.Ids[i * F + price]), Is.EqualTo(new[] { 1, 1, 1, 0, 1 }));
        Assert.That(Enumerable.Range(0, 5).Select(i => ds.DenseValues![i * F + price]), Is.EqualTo(new[] { 1.5f, 2f, 0.5f, 1f, 3.25f }));
        Assert.That(ds.Ids[2 * F + dwell], Is.EqualTo(0), "missing dwell");
        // dwell tokens: 3 → b1, 120 → b22, 45 → b14, 1 → v1 (each once → ids 2..5 in hash order).
        var dwellVocabulary = pre.VocabularyOf("dwell")!;
        Assert.That(dwellVocabulary.Hashes.ToArray(), Is.EqualTo(new[] { "b1", "b14", "b22", "v1" }.Select(t => StableHash.OfValue(t)).Order().ToArray()));
        Assert.That(new[] { 3.0, 120, 45, 1 }.Select(v => pre.IdOfNumber("dwell", v)), Is.EquivalentTo(new[] { 2, 3, 4, 5 }));
        // tags: a ×3, b ×2, c ×2 → a = 2, b = 3, c = 4; the empty list is the missing id.
        var tags = ds.Multi[0];
        Assert.That(tags.Row(0).ToArray(), Is.EqualTo(new[] { 2, 3 }));
        Assert.That(tags.Row(2).ToArray(), Is.EqualTo(new[] { 0 }));
        Assert.That(tags.Row(3).ToArray(), Is.EqualTo(new[] { 2, 4, 2 }));
        Assert.That(ds.UserIds![0], Is.EqualTo(ds.UserIds[3]), "same device_ip, same user");
        Assert.That(ds.UserIds[0], Is.Not.EqualTo(ds.UserIds[1]));
        Assert.That(ds.Labels, Is.EqualTo(new[] { 0f, 1f, 0f, 1f, 0f }));
    }

    private static readonly Schema Small = DataTestFiles.SmallSchema();

    private static RecordReader Csv(string content, BadRowPolicy policy = BadRowPolicy.Throw) =>
        new DelimitedReader(DataTestFiles.Temp("bad.csv", content), Small, options: new ReaderOptions { BadRows = policy });

    private static RecordReader Svm(string content, BadRowPolicy policy = BadRowPolicy.Throw) =>
        new LibSvmReader(DataTestFiles.Temp("bad.svm", content), LibSvmOptions.Uniform(2, 10), new ReaderOptions { BadRows = policy });

    // Each case: a file with two good rows around one bad row on line 3; the error names file, line and column.
    [TestCase("csv", "label,n,c\n1,2,a\n0,3\n1,4,b\n", 3, "bad.csv:3: column 3: expected 3 columns, found 2")]
    [TestCase("csv", "label,n,c\n1,2,a\n0,3,a,x\n1,4,b\n", 4, "bad.csv:3: column 4: expected 3 columns, found 4")]
    [TestCase("csv", "label,n,c\n1,2,a\nyes,3,a\n1,4,b\n", 1, "bad.csv:3: column 1 (label): non-numeric label 'yes'")]
    [TestCase("csv", "label,n,c\n1,2,a\n0,3x,a\n1,4,b\n", 2, "bad.csv:3: column 2 (n): non-numeric value '3x' in a numeric field")]
    [TestCase("csv", "label,n,c\n1,2,a\n2,3,a\n1,4,b\n", 1, "bad.csv:3: column 1 (label): label 2 is outside the allowed set {0, 1} or {-1, 1}")]
    [TestCase("csv", "label,n,c\n1,2,a\n,3,a\n1,4,b\n", 1, "bad.csv:3: column 1 (label): missing label")]
    [TestCase("csv", "label,n,c\n1,2,a\n0,3,\"a\n1,4,b\n", 3, "bad.csv:3: column 3: unterminated quoted field")]
    [TestCase("svm", "1 1:1\n0 1:1\n1 3:1 12-1\n0 2:1\n", 3, "bad.svm:3: column 3: malformed libSVM token '12-1' (expected idx:val)")]
    [TestCase("svm", "1 1:1\n0 1:1\n1 3:1 x:1\n0 2:1\n", 3, "bad.svm:3: column 3: malformed libSVM token 'x:1': index 'x' is not a non-negative integer")]
    [TestCase("svm", "1 1:1\n0 1:1\n1 3:abc\n0 2:1\n", 2, "bad.svm:3: column 2: malformed libSVM token '3:abc': value 'abc' is not a number")]
    [TestCase("svm", "1 1:1\n0 1:1\n1 3:1 25:1\n0 2:1\n", 3, "bad.svm:3: column 3: libSVM token '25:1': index 25 is in no field's index range")]
    [TestCase("svm", "1 1:1\n0 1:1\n1 3:1 4:1\n0 2:1\n", 3, "bad.svm:3: column 3 (f0): libSVM token '4:1': field 'f0' already has index 3")]
    [TestCase("svm", "1 1:1\n0 1:1\n0.5 3:1\n0 2:1\n", 1, "bad.svm:3: column 1 (label): label 0.5 is outside the allowed set")]
    [TestCase("svm", "1 1:1\n0 1:1\nclick 3:1\n0 2:1\n", 1, "bad.svm:3: column 1 (label): non-numeric label 'click'")]
    public void Every_bad_row_class_names_file_line_and_column_or_is_skipped_and_counted(string format, string content, int column, string message)
    {
        var strict = format == "csv" ? Csv(content) : Svm(content);
        var e = Assert.Throws<DataFormatException>(() => strict.ToList())!;
        Assert.That(e.Message, Does.StartWith(message));
        Assert.That(e.File, Is.EqualTo(format == "csv" ? "bad.csv" : "bad.svm"));
        Assert.That(e.Line, Is.EqualTo(3));
        Assert.That(e.Column, Is.EqualTo(column));

        var lenient = format == "csv" ? Csv(content, BadRowPolicy.Skip) : Svm(content, BadRowPolicy.Skip);
        var rows = lenient.ToList();
        Assert.That(rows.Select(r => r.Line), Is.EqualTo(format == "csv" ? new long[] { 2, 4 } : new long[] { 1, 2, 4 }));
        Assert.That(lenient.SkippedRows, Is.EqualTo(1));
        Assert.That(lenient.SkippedErrors.Single().Line, Is.EqualTo(3));
    }

    [TestCase("", "empty.csv: the file is empty")]
    [TestCase("\n\r\n  \n", "empty.csv: the file is empty")]
    [TestCase("label,n,c\n", "empty.csv: the file has a header but no data rows")]
    [TestCase("label,n,c\r\n\r\n", "empty.csv: the file has a header but no data rows")]
    public void Empty_and_header_only_files_are_clear_errors(string content, string message)
    {
        var reader = new DelimitedReader(DataTestFiles.Temp("empty.csv", content), Small);
        var e = Assert.Throws<DataFormatException>(() => reader.ToList())!;
        Assert.That(e.Message, Is.EqualTo(message));
        var svm = new LibSvmReader(DataTestFiles.Temp("empty.svm", content.Replace("label,n,c", "")), LibSvmOptions.Uniform(2, 10));
        Assert.That(Assert.Throws<DataFormatException>(() => svm.ToList())!.Message, Is.EqualTo("empty.svm: the file is empty"));
    }

    [Test]
    public void Header_missing_a_schema_field_is_an_error_naming_it()
    {
        var reader = new DelimitedReader(DataTestFiles.Temp("h.csv", "label,n,cc\n1,2,a\n"), Small);
        var e = Assert.Throws<DataFormatException>(() => reader.ToList())!;
        Assert.That(e.Message, Does.StartWith("h.csv:1: c: schema field 'c' is not a column of the header"));
    }

    [Test]
    public void Crlf_trailing_newline_and_tab_detection_are_handled()
    {
        var reader = new DelimitedReader(DataTestFiles.Temp("t.tsv", "label\tn\tc\r\n1\t2.5\ta\r\n0\t\tb\r\n"), Small);
        var rows = reader.ToList();
        Assert.That(rows, Has.Count.EqualTo(2));
        Assert.That(rows[0].Numbers[1], Is.EqualTo(2.5));
        Assert.That(rows[0].Values[2], Is.EqualTo("a"), "no stray \\r");
        Assert.That(rows[1].Values[2], Is.EqualTo("b"));
        Assert.That(rows[1].Numbers[1], Is.NaN);
    }

    [Test]
    public void Reader_is_re_enumerable_and_recounts_skips_each_time()
    {
        var reader = Csv("label,n,c\n1,2,a\nbad,2,a\n0,1,b\n", BadRowPolicy.Skip);
        Assert.That(reader.Count(), Is.EqualTo(2));
        Assert.That(reader.Count(), Is.EqualTo(2));
        Assert.That(reader.SkippedRows, Is.EqualTo(1));
    }
}
