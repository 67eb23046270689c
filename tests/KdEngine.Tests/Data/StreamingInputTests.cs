using System.IO.Compression;
using System.Text;
using KdEngine.Data;
using NUnit.Framework;

namespace KdEngine.Tests.Data;

/// <summary>Byte ranges, gzip, input sets and the parallel passes of the streaming data layer.</summary>
public class StreamingInputTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-streaming-input", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string content)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, Encoding.UTF8.GetBytes(content));
        return path;
    }

    private string Gzip(string name, params string[] members)
    {
        // Each member compressed on its own and concatenated (as `cat a.gz b.gz` does).
        var path = Path.Combine(_dir, name);
        using var file = File.Create(path);
        foreach (var m in members)
        {
            using var gz = new GZipStream(file, CompressionLevel.Fastest, leaveOpen: true);
            gz.Write(Encoding.UTF8.GetBytes(m));
        }
        return path;
    }

    /// <summary>All lines (numbers and text) a reader of [start, end) returns.</summary>
    private static List<(long Line, string Text)> ReadRange(string path, long start, long end, long firstLine, int chunkBytes)
    {
        var result = new List<(long, string)>();
        using var reader = new LineChunkReader(path, start, end, firstLine, chunkBytes);
        var chunk = new LineChunk(chunkBytes);
        while (reader.Read(chunk))
        {
            var cursor = new LineCursor(chunk.Bytes, chunk.FirstLine == 0 ? 1 : chunk.FirstLine);
            while (cursor.Next(out var line)) result.Add((chunk.FirstLine == 0 ? 0 : cursor.LineNumber, Encoding.UTF8.GetString(line)));
        }
        return result;
    }

    [Test]
    public void Byte_ranges_tile_the_file_every_line_read_exactly_once_for_any_cut_points()
    {
        // Mixed line ends (LF, CRLF, lone CR), blank lines, a BOM, a last line without a line end, long and empty lines.
        var rng = new Random(5);
        var sb = new StringBuilder("\uFEFF");
        string[] ends = ["\n", "\r\n", "\r"];
        for (int i = 0; i < 400; i++)
        {
            sb.Append(i % 37 == 0 ? "" : $"row{i}," + new string('x', rng.Next(0, 60)));
            sb.Append(ends[rng.Next(3)]);
        }
        sb.Append("last-without-end");
        string path = Write("mixed.txt", sb.ToString());
        long length = new FileInfo(path).Length;
        var whole = ReadRange(path, 0, long.MaxValue, 1, 64);
        Assert.That(whole[0].Text, Is.EqualTo(""), "the BOM is not part of the first line");
        Assert.That(whole[1].Text, Does.StartWith("row1,"));
        Assert.That(whole[^1].Text, Is.EqualTo("last-without-end"));
        Assert.That(whole.Select(l => l.Line), Is.EqualTo(Enumerable.Range(1, whole.Count).Select(i => (long)i)), "lines are numbered 1..n, blank ones included");

        for (int trial = 0; trial < 60; trial++)
        {
            // Random cut points, including ones inside a CRLF, at 0, at the end and repeated.
            var cuts = Enumerable.Range(0, rng.Next(1, 12)).Select(_ => (long)rng.Next(0, (int)length + 1)).Append(0).Append(length).Distinct().Order().ToList();
            var pieces = new List<(long Line, string Text)>();
            long nextLine = 1;
            for (int k = 0; k + 1 < cuts.Count; k++)
            {
                // Known first line for even ranges (as a pass in file order passes it on), unknown for odd ones.
                bool known = k % 2 == 0;
                var part = ReadRange(path, cuts[k], cuts[k + 1], known ? nextLine : 0, rng.Next(64, 300));
                if (known) Assert.That(part.Select(l => l.Line), Is.EqualTo(Enumerable.Range(0, part.Count).Select(i => nextLine + i)), $"line numbers of range {k}");
                if (part.Count > 0 && !known)
                    Assert.That(LineChunkReader.LineNumberAt(path, FirstLineStart(path, cuts[k])), Is.EqualTo(nextLine), "LineNumberAt finds the range's first line");
                nextLine += part.Count;
                pieces.AddRange(part);
            }
            Assert.That(pieces.Select(p => p.Text), Is.EqualTo(whole.Select(w => w.Text)), $"cuts {string.Join(",", cuts)}");
        }
    }

    /// <summary>Offset of the first line starting at or after <paramref name="start"/> (found by reading a range from there).</summary>
    private static long FirstLineStart(string path, long start)
    {
        using var reader = new LineChunkReader(path, start, long.MaxValue, 0, 64);
        var chunk = new LineChunk(64);
        return reader.Read(chunk) ? chunk.FileOffset : new FileInfo(path).Length;
    }

    [Test]
    public void Gzip_members_read_as_one_stream_and_a_cut_file_is_an_error_naming_file_and_offset()
    {
        var text = string.Concat(Enumerable.Range(0, 3000).Select(i => $"{i % 2}\t{i:x8}\n"));
        var path = Gzip("two.tsv.gz", text[..20000], text[20000..]);
        using (var gz = new GzipReader(path))
        using (var ms = new MemoryStream())
        {
            gz.CopyTo(ms);
            Assert.That(Encoding.UTF8.GetString(ms.ToArray()), Is.EqualTo(text));
        }
        byte[] bytes = File.ReadAllBytes(path);
        foreach (int cut in new[] { bytes.Length - 1, bytes.Length - 8, bytes.Length / 2, 30 })
        {
            var cutPath = Path.Combine(_dir, $"cut{cut}.tsv.gz");
            File.WriteAllBytes(cutPath, bytes[..cut]);
            var e = Assert.Throws<DataFormatException>(() =>
            {
                using var gz = new GzipReader(cutPath);
                gz.CopyTo(Stream.Null);
            })!;
            Assert.That(e.File, Is.EqualTo($"cut{cut}.tsv.gz"));
            Assert.That(e.Message, Does.Contain("truncated gzip data").And.Contain($"the file ends at byte {cut}"), e.Message);
        }
        // A flipped byte in the last trailer: the CRC no longer matches.
        var bad = (byte[])bytes.Clone();
        bad[^6] ^= 0x55;
        var badPath = Path.Combine(_dir, "crc.tsv.gz");
        File.WriteAllBytes(badPath, bad);
        Assert.That(() => { using var gz = new GzipReader(badPath); gz.CopyTo(Stream.Null); },
            Throws.TypeOf<DataFormatException>().With.Message.Contains("crc.tsv.gz").And.Message.Contains("gzip"));
    }

    [Test]
    public void Brace_ranges_and_globs_expand_in_order()
    {
        Assert.That(InputFiles.ExpandBraces("day_{0..2}.tsv.gz"), Is.EqualTo(new[] { "day_0.tsv.gz", "day_1.tsv.gz", "day_2.tsv.gz" }));
        Assert.That(InputFiles.ExpandBraces("d{08..10}/{a,b}"), Is.EqualTo(new[] { "d08/a", "d08/b", "d09/a", "d09/b", "d10/a", "d10/b" }));
        foreach (var n in new[] { "p_2.csv", "p_10.csv", "p_1.csv", "q.csv" }) Write(n, "x\n");
        var files = InputFiles.Expand([Path.Combine(_dir, "p_*.csv"), Path.Combine(_dir, "q.csv")]);
        Assert.That(files.Select(Path.GetFileName), Is.EqualTo(new[] { "p_1.csv", "p_10.csv", "p_2.csv", "q.csv" }), "glob matches sorted ordinally, then the next pattern");
        Assert.Throws<FileNotFoundException>(() => InputFiles.Expand([Path.Combine(_dir, "none_*.csv")]));
        Assert.Throws<FileNotFoundException>(() => InputFiles.Expand([Path.Combine(_dir, "day_{0..1}.csv")]));
    }

    private static readonly Schema Rich = new([
        FieldSpec.Label("y"), FieldSpec.Categorical("site"), FieldSpec.Numeric("n"), FieldSpec.Multi("tags"),
        FieldSpec.DenseNumeric("price"), FieldSpec.Categorical("h") with { HashBuckets = 7 }, FieldSpec.UserId("user")]);

    /// <summary>CSV rows with quotes, unicode, missing values, multi-valued lists.</summary>
    private static List<string> RichRows(int n, int seed)
    {
        var rng = new Random(seed);
        string[] sites = ["a", "b", "c", "\"q,1\"", "é", "z z", ""];
        return Enumerable.Range(0, n).Select(i =>
            $"{rng.Next(2)},{sites[rng.Next(sites.Length)]},{(rng.Next(8) == 0 ? "" : (rng.Next(-3, 3000) / (rng.Next(3) == 0 ? 4.0 : 1)).ToString(System.Globalization.CultureInfo.InvariantCulture))}," +
            $"{string.Join("|", Enumerable.Range(0, rng.Next(0, 4)).Select(_ => "t" + rng.Next(6)))},{(rng.Next(5) == 0 ? "" : (rng.Next(100) / 8.0).ToString(System.Globalization.CultureInfo.InvariantCulture))}," +
            $"h{rng.Next(50)},u{rng.Next(30)}").ToList();
    }

    private const string RichHeader = "y,site,n,tags,price,h,user";

    private static void AssertSame(EncodedDataset a, EncodedDataset b, string what)
    {
        Assert.That(b.Count, Is.EqualTo(a.Count), what + ": rows");
        Assert.That(b.Ids, Is.EqualTo(a.Ids), what + ": ids");
        Assert.That(b.Labels, Is.EqualTo(a.Labels), what + ": labels");
        Assert.That(b.DenseValues, Is.EqualTo(a.DenseValues), what + ": dense values");
        Assert.That(b.UserIds, Is.EqualTo(a.UserIds), what + ": user ids");
        for (int k = 0; k < a.Multi.Count; k++)
        {
            Assert.That(b.Multi[k].Offsets, Is.EqualTo(a.Multi[k].Offsets), what + ": multi offsets");
            Assert.That(b.Multi[k].Ids, Is.EqualTo(a.Multi[k].Ids), what + ": multi ids");
        }
    }

    private static EncodedDataset Collect(IEnumerable<IRowBlock> blocks, FeatureSpace space)
    {
        var builder = new EncodedDatasetBuilder(space);
        long expectedFirst = 0;
        foreach (var b in blocks)
        {
            Assert.That(b.FirstRow, Is.EqualTo(expectedFirst), "blocks in file order carry consecutive row ordinals");
            expectedFirst += b.Count;
            builder.AddRange(b, 0, b.Count);
        }
        return builder.Build();
    }

    [TestCase(1, 100_000)]
    [TestCase(2, 512)]
    [TestCase(3, 300)]
    public void Parallel_passes_over_units_and_chunks_equal_the_single_reader(int workers, int chunkBytes)
    {
        var rows = RichRows(1500, 1);
        string path = Write("rich.csv", RichHeader + "\n" + string.Join("\n", rows) + "\n");
        var reader = new DelimitedReader(path, Rich);
        var options = new PreprocessorOptions { MinCount = 2, MaxVocab = 4 };
        var reference = Preprocessor.Fit(Rich, reader, options);
        var expected = reference.EncodeAll(reader);

        var input = new InputSet([path], new TextFileFormat(new DelimitedFormat(Rich)), unitBytes: 7_000);
        Assert.That(input.Units, Has.Count.GreaterThan(5), "the file is cut into several byte-range units");
        var pass = new PassOptions { Workers = workers, ChunkBytes = chunkBytes };
        var pre = DataPasses.Fit(input, options, pass, out var report);
        Assert.That(report.Rows, Is.EqualTo(1500));
        Assert.That(pre.ToJson(), Is.EqualTo(reference.ToJson()), "the same vocabularies, whatever the threads and cuts");
        Assert.That(pre.VocabularyOf("site")!.Count, Is.EqualTo(4), "max-vocab keeps the 4 most frequent sites");
        Assert.That(input.Rows, Is.EqualTo(1500), "a pass in file order counts the units' rows");
        AssertSame(expected, Collect(DataPasses.Encode(input, pre, null, pass), pre.FeatureSpace), $"{workers} workers");
    }

    [Test]
    public void Multi_file_and_gzip_inputs_equal_the_concatenated_plain_file()
    {
        var rows = RichRows(900, 2);
        string all = Write("all.csv", RichHeader + "\n" + string.Join("\n", rows) + "\n");
        // Three files with their own header: plain, gzip (two members), plain with CRLF.
        string a = Write("part_0.csv", RichHeader + "\n" + string.Join("\n", rows[..300]) + "\n");
        string b = Gzip("part_1.csv.gz", RichHeader + "\n" + string.Join("\n", rows[300..450]) + "\n", string.Join("\n", rows[450..600]) + "\n");
        string c = Write("part_2.csv", RichHeader + "\r\n" + string.Join("\r\n", rows[600..]));
        var format = new TextFileFormat(new DelimitedFormat(Rich));
        var options = new PreprocessorOptions { MinCount = 1 };
        var single = new InputSet([all], format);
        var preSingle = DataPasses.Fit(single, options, null, out _);
        var multi = new InputSet(InputFiles.Expand([Path.Combine(_dir, "part_{0..1}.csv*"), c]), format);
        Assert.That(multi.Files.Select(Path.GetFileName), Is.EqualTo(new[] { "part_0.csv", "part_1.csv.gz", "part_2.csv" }));
        var preMulti = DataPasses.Fit(multi, options, new PassOptions { Workers = 2, ChunkBytes = 700 }, out var report);
        Assert.That(preMulti.ToJson(), Is.EqualTo(preSingle.ToJson()));
        Assert.That(report.Files.Select(f => f.Rows), Is.EqualTo(new long[] { 300, 300, 300 }), "rows per file");
        AssertSame(Collect(DataPasses.Encode(single, preSingle), preSingle.FeatureSpace), Collect(DataPasses.Encode(multi, preMulti, null, new PassOptions { Workers = 2, ChunkBytes = 700 }), preMulti.FeatureSpace), "3 files vs 1");
    }

    [Test]
    public void Counts_per_byte_range_merge_into_the_whole_files_counts_and_move_between_processes()
    {
        var rows = RichRows(700, 3);
        string path = Write("r.csv", RichHeader + "\n" + string.Join("\n", rows) + "\n");
        var format = new DelimitedFormat(Rich);
        var options = new PreprocessorOptions { MinCount = 2 };
        var whole = new PreprocessorCounts(Rich, options);
        var row = new RawRow(Rich);
        using (var r = new TextRowReader(path, format)) while (r.Next(row)) whole.Add(row);
        long length = new FileInfo(path).Length;
        var layout = TextRowReader.LayoutOf(path, format);
        var merged = new PreprocessorCounts(Rich, options);
        long[] cuts = [0, 1, length / 3, length / 3 + 1, 2 * length / 3, length];
        for (int k = 0; k + 1 < cuts.Length; k++)
        {
            var part = new PreprocessorCounts(Rich, options);
            using (var r = new TextRowReader(path, format, null, cuts[k], cuts[k + 1], 0, layout)) while (r.Next(row)) part.Add(row);
            // As another rank would send them: serialized and read back.
            using var ms = new MemoryStream();
            part.WriteTo(ms);
            ms.Position = 0;
            merged.Merge(PreprocessorCounts.ReadFrom(ms, Rich, options));
        }
        Assert.That(merged.Rows, Is.EqualTo(700));
        Assert.That(Preprocessor.Fit(merged).ToJson(), Is.EqualTo(Preprocessor.Fit(whole).ToJson()));
        using var a = new MemoryStream();
        using var b = new MemoryStream();
        merged.WriteTo(a);
        whole.WriteTo(b);
        Assert.That(a.ToArray(), Is.EqualTo(b.ToArray()), "equal counts serialize to equal bytes");
        Assert.Throws<ArgumentException>(() => merged.Merge(new PreprocessorCounts(Rich, new PreprocessorOptions { MinCount = 3 })));
    }

    [Test]
    public void Max_vocab_keeps_the_most_frequent_values_and_maps_the_rest_to_oov()
    {
        var s = new Schema([FieldSpec.Label(), FieldSpec.Categorical("c") with { MaxVocab = 2 }, FieldSpec.Categorical("d")]);
        var counts = new PreprocessorCounts(s);
        var row = new RawRow(s);
        foreach (var (c, times) in new[] { ("x", 5), ("y", 3), ("z", 3), ("w", 1) })
            for (int i = 0; i < times; i++)
            {
                row.Clear();
                row.SetValue(1, c);
                row.SetValue(2, c);
                counts.Add(row);
            }
        var pre = Preprocessor.Fit(counts);
        var c1 = pre.VocabularyOf("c")!;
        Assert.That(c1.Count, Is.EqualTo(2));
        Assert.That(c1.IdOf("x"), Is.EqualTo(2), "most frequent first");
        // y and z tie (3 each): the one with the smaller value hash is kept.
        string kept = StableHash.OfValue("y") < StableHash.OfValue("z") ? "y" : "z", dropped = kept == "y" ? "z" : "y";
        Assert.That((c1.IdOf(kept), c1.IdOf(dropped), c1.IdOf("w")), Is.EqualTo((3, 1, 1)), "past max-vocab → OOV");
        Assert.That(pre.VocabularyOf("d")!.Count, Is.EqualTo(4), "no cap on d");
        Assert.That(pre.FeatureSpace["c"].Cardinality, Is.EqualTo(4));
        var back = Preprocessor.FromJson(pre.ToJson());
        Assert.That(back.VocabularyOf("c")!.MaxVocab, Is.EqualTo(2));
        Assert.That(back.ToJson(), Is.EqualTo(pre.ToJson()));
    }

    [Test]
    public void A_bad_row_deep_in_a_later_unit_names_file_line_and_column_and_skips_are_counted_per_file()
    {
        var lines = Enumerable.Range(0, 3000).Select(i => $"{i % 2}\t{i % 50}\tv{i % 7}").ToList();
        lines[2345] = "1\tnotanumber\tv1";
        var schema = new Schema([FieldSpec.Label(), FieldSpec.Numeric("n"), FieldSpec.Categorical("c")]);
        string good = Write("good.tsv", string.Join("\n", lines.Take(100)) + "\n");
        string bad = Write("bad.tsv", string.Join("\n", lines) + "\n");
        var format = new TextFileFormat(new DelimitedFormat(schema, new DelimitedOptions { HasHeader = false }));
        var input = new InputSet([good, bad], format, unitBytes: 4000);
        var e = Assert.Throws<DataFormatException>(() => DataPasses.Count(input, null, new PassOptions { Workers = 2, ChunkBytes = 256 }, out _))!;
        Assert.That(e.Message, Does.StartWith("bad.tsv:2346: column 2 (n): non-numeric value 'notanumber'"));

        // A unit read on its own, without its first line number (as after a shuffle before any pass), still names the line.
        var alone = new InputSet([bad], format, unitBytes: 4000);
        long offset = lines.Take(2345).Sum(l => l.Length + 1);
        int unit = alone.Units.Select((u, i) => (u, i)).First(x => x.u.Start <= offset && offset < x.u.End).i;
        var order = Enumerable.Range(0, alone.Units.Count).Reverse().ToArray();
        alone.LearnRows(Enumerable.Repeat(0L, alone.Units.Count).ToArray());
        var pre = Preprocessor.Fit(schema, Array.Empty<RawRecord>());
        e = Assert.Throws<DataFormatException>(() => DataPasses.Encode(alone, pre, order).ToList())!;
        Assert.That(e.Line, Is.EqualTo(2346));
        Assert.That(unit, Is.GreaterThan(0));

        var skip = new PassOptions { Reader = new ReaderOptions { BadRows = BadRowPolicy.Skip }, Workers = 2, ChunkBytes = 256 };
        DataPasses.Count(new InputSet([good, bad], format, 4000), null, skip, out var report);
        Assert.That(report.Rows, Is.EqualTo(3099));
        Assert.That(report.Files.Select(f => (f.File, f.Rows, f.Skipped)), Is.EqualTo(new[] { ("good.tsv", 100L, 0L), ("bad.tsv", 2999L, 1L) }));
        Assert.That(report.SkipSummary().Single(), Does.StartWith("skipped 1 bad row(s) of 3,000 in bad.tsv (first: bad.tsv:2346: column 2 (n)"));
    }

    [Test]
    public void Parsing_counting_and_encoding_rows_allocate_nothing_in_steady_state()
    {
        // Every kind of cell: quoted with a delimiter and a doubled quote, unicode, numbers, lists, dense, hashed, user ids.
        var rows = RichRows(400, 6);
        rows[3] = "1,\"a,\"\"b\"\"\",12.5,t1|t2,3,h1,u1";
        string path = Write("alloc.csv", RichHeader + "\n" + string.Join("\n", rows) + "\n");
        var format = new DelimitedFormat(Rich);
        var layout = TextRowReader.LayoutOf(path, format);
        var parser = format.CreateParser(layout, "alloc.csv");
        var pre = Preprocessor.Fit(Rich, new DelimitedReader(path, Rich), new PreprocessorOptions { MinCount = 1 });
        var counts = new PreprocessorCounts(Rich);
        var row = new RawRow(Rich);
        var encoded = new EncodedRow(pre.FeatureSpace);
        var block = new EncodedBlock(pre.FeatureSpace, 1024);
        var bytes = File.ReadAllBytes(path);
        void Pass()
        {
            block.Clear();
            var cursor = new LineCursor(bytes, 1);
            cursor.Next(out _); // header
            while (cursor.Next(out var line))
            {
                if (line.IsEmpty) continue;
                parser.Parse(bytes, cursor.LineStart, line.Length, row, cursor.LineNumber);
                counts.Add(row);
                pre.Encode(row, encoded);
                block.Add(encoded);
            }
        }
        Pass();
        Pass(); // warm: count tables, multi-valued buffers and the block have grown to their size
        long before = GC.GetAllocatedBytesForCurrentThread();
        Pass();
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.Zero);
        Assert.That(block.Count, Is.EqualTo(400));
    }

    [Test]
    public void Sequential_split_by_row_count_matches_the_in_memory_split_without_loading_the_file()
    {
        var rows = RichRows(1003, 4);
        string path = Write("s.csv", RichHeader + "\n\n" + string.Join("\n", rows) + "\n");
        string gz = Gzip("s.csv.gz", RichHeader + "\n\n" + string.Join("\n", rows) + "\n");
        var reader = new DelimitedReader(path, Rich);
        var all = Preprocessor.Fit(Rich, reader).EncodeAll(reader);
        var expected = all.Split([8, 1, 1]);
        foreach (var file in new[] { path, gz })
        {
            var input = new InputSet([file], new TextFileFormat(new DelimitedFormat(Rich)), unitBytes: 5_000);
            var parts = input.SplitSequential([8, 1, 1]);
            // The split knows each part's rows before any pass reads it (the streamed log prints them).
            Assert.That(parts.Select(p => p.SplitRows), Is.EqualTo(expected.Select(e => (long?)e.Count)));
            Assert.That(input.SplitRows, Is.Null);
            var pre = Preprocessor.Fit(Rich, reader); // the same preprocessing for both sides of the comparison
            for (int k = 0; k < 3; k++)
                AssertSame(expected[k], Collect(DataPasses.Encode(parts[k], pre), pre.FeatureSpace), $"{Path.GetFileName(file)} part {k}");
        }
    }

    [Test]
    public void Hash_split_streams_the_in_memory_hash_splits_parts_from_any_units_and_threads()
    {
        var rows = RichRows(1003, 4);
        string path = Write("h.csv", RichHeader + "\n\n" + string.Join("\n", rows) + "\n");
        string gz = Gzip("h.csv.gz", RichHeader + "\n\n" + string.Join("\n", rows) + "\n");
        var reader = new DelimitedReader(path, Rich);
        var pre = Preprocessor.Fit(Rich, reader);
        var all = pre.EncodeAll(reader);
        var expected = all.Split([8, 1, 1], SplitMode.Hash, seed: 7);
        Assert.That(expected.Sum(p => p.Count), Is.EqualTo(1003));
        foreach (var (file, unitBytes, workers) in new[] { (path, 5_000L, 2), (path, 1L << 20, 1), (gz, 5_000L, 2) })
        {
            var input = new InputSet([file], new TextFileFormat(new DelimitedFormat(Rich)), unitBytes);
            var parts = input.SplitHash([8, 1, 1], seed: 7);
            if (file == path && unitBytes == 5_000) Assert.That(parts[0].Units, Has.Count.GreaterThan(3));
            for (int k = 0; k < 3; k++)
                AssertSame(expected[k], Collect(DataPasses.Encode(parts[k], pre, null, new PassOptions { Workers = workers, ChunkBytes = 700 }), pre.FeatureSpace),
                    $"{Path.GetFileName(file)} units of {unitBytes} bytes, part {k}");
        }
    }

    [Test]
    public void Hash_split_part_sizes_are_binomial_and_a_rows_part_depends_only_on_its_ordinal_and_the_seed()
    {
        const int n = 200_000;
        double[] share = [0.8, 0.1, 0.1];
        var split = new HashSplit([8, 1, 1], seed: 3);
        var parts = split.Indices(n);
        Assert.That(parts.SelectMany(p => p).Order(), Is.EqualTo(Enumerable.Range(0, n)), "disjoint, and every row in one part");
        for (int k = 0; k < 3; k++)
        {
            double mean = n * share[k], sd = Math.Sqrt(n * share[k] * (1 - share[k]));
            Assert.That(parts[k].Length, Is.InRange(mean - 5 * sd, mean + 5 * sd), $"part {k}: binomial({n}, {share[k]})");
        }
        // The same ordinal and seed give the same part from any instance, in any order; another seed moves about a third of the rows.
        var again = new HashSplit([8, 1, 1], seed: 3);
        Assert.That(Enumerable.Range(0, 1000).Reverse().Select(i => again.PartOf(i)), Is.EqualTo(Enumerable.Range(0, 1000).Reverse().Select(i => split.PartOf(i))));
        var other = new HashSplit([8, 1, 1], seed: 4);
        double moved = Enumerable.Range(0, n).Count(i => other.PartOf(i) != split.PartOf(i)) / (double)n;
        Assert.That(moved, Is.InRange(0.33, 0.35), "1 − (0.8² + 0.1² + 0.1²) = 0.34 for independent assignments");
        Assert.That(DataSplit.Indices(n, [8, 1, 1], SplitMode.Random, 3)[1], Is.Not.EqualTo(parts[1]), "other parts than the random split");
        Assert.That(split.ToString(), Is.EqualTo("hash 8:1:1 seed 3"));
    }

    [Test]
    public void A_checkpoint_written_before_hashed_vocabularies_loads_and_predicts_exactly_as_it_did()
    {
        // Fixture made by the previous release (string vocabularies, preprocessing format version 1): `kdengine train
        // --config tiny.json --data old.csv --schema old.schema.json --epochs 2 --min-count 1 --split 6:2:2`, then
        // `kdengine predict` wrote old.scores.csv. Loading and predicting now must give the same nine digits.
        string dir = Path.Combine(AppContext.BaseDirectory, "Data", "Fixtures", "v1-checkpoint");
        var loaded = KdEngine.Pipelines.CtrPipeline.Load(Path.Combine(dir, "old.kde"));
        var meta = KdEngine.Serving.SafeTensorsFile.ReadHeaderOnly(Path.Combine(dir, "old.kde")).Metadata;
        string json = meta[KdEngine.Serving.ModelCheckpoint.PreprocessingKey];
        Assert.That(json, Does.Contain("\"version\":1").And.Contain("\"vocabulary\":["), "the fixture holds the old format");
        var data = KdEngine.Pipelines.CtrPipeline.EncodeFor(loaded, Path.Combine(dir, "old.csv"));
        var logits = KdEngine.Pipelines.CtrPipeline.Logits(loaded.Model, data);
        var expected = File.ReadAllLines(Path.Combine(dir, "old.scores.csv")).Skip(1).ToArray();
        Assert.That(logits.Select(z => (1.0 / (1.0 + Math.Exp(-z))).ToString("G9", System.Globalization.CultureInfo.InvariantCulture)), Is.EqualTo(expected));
        // Every old vocabulary string keeps its id (entry i → id i + 2).
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        foreach (var field in doc.RootElement.GetProperty("fields").EnumerateArray())
        {
            if (!field.TryGetProperty("vocabulary", out var vocab)) continue;
            string name = field.GetProperty("name").GetString()!;
            int i = 0;
            foreach (var entry in vocab.EnumerateArray())
            {
                var value = entry.GetString()!;
                var spec = loaded.Preprocessor!.Schema[loaded.Preprocessor.Schema.IndexOf(name)];
                int id = spec.Kind == FieldKind.Numeric ? loaded.Preprocessor.VocabularyOf(name)!.IdOf(value) : loaded.Preprocessor.IdOf(name, value);
                Assert.That(id, Is.EqualTo(i + 2), $"{name}[{i}] = '{value}'");
                i++;
            }
        }
        // Saved again, it is written in the new format and still encodes the same.
        var again = Preprocessor.FromJson(loaded.Preprocessor!.ToJson());
        Assert.That(again.ToJson(), Does.Contain("\"version\":2"));
        AssertSame(data, again.EncodeAll(new DelimitedReader(Path.Combine(dir, "old.csv"), again.Schema)), "v1 → v2");
    }
}
