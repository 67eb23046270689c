using KdEngine.Data;
using KdEngine.Pipelines;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Distributed.Tests;

/// <summary>
/// Byte-range input splits in one process: the cut rule (a range starts at the first line beginning at or after its
/// byte; the straddling line belongs to the previous range), line ends LF/CRLF/CR, ranges read back to the whole file
/// with the file's own line numbers, and a group of one preparing exactly what <see cref="CtrPipeline.Prepare"/> does.
/// The multi-rank equivalence runs under mpirun (<see cref="ShardingTests"/>).
/// </summary>
[TestFixture]
public sealed class ByteRangeTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-ranges-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    [TestCase("\n")]
    [TestCase("\r\n")]
    [TestCase("\r")]
    public void Cuts_FallOnLineStarts_AndTheStraddlingLineBelongsToThePreviousRange(string eol)
    {
        // Lines of different lengths, one long line, a blank line, no final line end.
        string[] lines = ["label,a", "1,aaaa", "0,b", "1,cccccccccccccccccccccccc", "", "0,dd", "1,e"];
        string path = Write("x.csv", string.Join(eol, lines));
        var bytes = File.ReadAllBytes(path);
        var starts = new List<long> { 0 };
        for (int i = 0; i < bytes.Length; i++)
            if (bytes[i] == '\n' || (bytes[i] == '\r' && (i + 1 == bytes.Length || bytes[i + 1] != '\n'))) starts.Add(i + 1);
        using var file = File.OpenRead(path);
        for (long at = 0; at <= bytes.Length; at++)
        {
            long expected = starts.Where(s => s >= at).DefaultIfEmpty(bytes.Length).Min();
            Assert.That(ByteRangeInput.LineStartAtOrAfter(file, at, bytes.Length), Is.EqualTo(expected), $"byte {at}");
        }
        foreach (int n in new[] { 1, 2, 3, 5, 40 })
        {
            var cuts = ByteRangeInput.Boundaries(path, n);
            Assert.That(cuts[0], Is.Zero);
            Assert.That(cuts[^1], Is.EqualTo(bytes.Length));
            Assert.That(cuts, Is.Ordered);
            long ends = 0;
            for (int r = 0; r < n; r++) ends += ByteRangeInput.CountLineEnds(path, cuts[r], cuts[r + 1]);
            Assert.That(ends, Is.EqualTo(lines.Length - 1), $"{n} ranges: every line end counted once");
        }
    }

    [Test]
    public void Ranges_ReadBackTheWholeFile_WithTheFilesLineNumbersInErrors()
    {
        var text = "label,a,b\n" + string.Concat(Enumerable.Range(0, 30).Select(i => $"{i % 2},x{i % 7},y{i % 3}\n")) + "1,q,BAD,extra\n" + "0,z,w\n";
        string path = Write("r.csv", text);
        var schema = new Schema([FieldSpec.Label(), FieldSpec.Categorical("a"), FieldSpec.Categorical("b")]);
        var whole = new DelimitedReader(path, schema, new DelimitedOptions { HasHeader = true }, new ReaderOptions { BadRows = BadRowPolicy.Skip });
        var expected = whole.Select(r => string.Join(",", r.Values.Select(v => v ?? "∅")) + ":" + r.Label).ToList();
        foreach (int n in new[] { 2, 3, 7 })
        {
            var cuts = ByteRangeInput.Boundaries(path, n);
            var got = new List<string>();
            long before = 0;
            for (int r = 0; r < n; r++)
            {
                got.AddRange(whole.ReadRange(cuts[r], cuts[r + 1], before).Select(rec => string.Join(",", rec.Values.Select(v => v ?? "∅")) + ":" + rec.Label));
                before += ByteRangeInput.CountLineEnds(path, cuts[r], cuts[r + 1]);
            }
            Assert.That(got, Is.EqualTo(expected), $"{n} ranges");
        }
        // The bad row is line 32 of the file, whichever range holds it.
        var strict = new DelimitedReader(path, schema, new DelimitedOptions { HasHeader = true });
        var cut = ByteRangeInput.Boundaries(path, 3);
        var e = Assert.Throws<DataFormatException>(() =>
        {
            long before = 0;
            for (int r = 0; r < 3; r++)
            {
                foreach (var _ in strict.ReadRange(cut[r], cut[r + 1], before)) { }
                before += ByteRangeInput.CountLineEnds(path, cut[r], cut[r + 1]);
            }
        })!;
        Assert.That(e.Line, Is.EqualTo(32), e.Message);
    }

    [Test]
    public void OneRank_PreparesWhatOneProcessPrepares()
    {
        var gen = new SyntheticCtr(new SyntheticCtrOptions { Fields = 3, VocabSize = 40, Seed = 5 });
        string path = Path.Combine(_dir, "s.tsv");
        using (var w = new StreamWriter(path))
        {
            w.Write("label\tC1\tC2\tC3\n");
            gen.WriteCriteoTsv(w, 300);
        }
        var source = new DataSource(path) { Schema = gen.Schema };
        var one = CtrPipeline.Prepare(source);
        var ranged = ByteRangeInput.PrepareShard(source, SingleProcess.Instance);
        Assert.That(ranged.Preprocessor.ToJson(), Is.EqualTo(one.Preprocessor.ToJson()));
        Assert.That(ranged.SplitIndices, Is.EqualTo(one.SplitIndices));
        foreach (var (a, b) in new[] { (ranged.Train, one.Train), (ranged.Validation, one.Validation), (ranged.Test, one.Test), (ranged.All, one.All) })
        {
            Assert.That(a.Ids, Is.EqualTo(b.Ids));
            Assert.That(a.Labels, Is.EqualTo(b.Labels));
        }
    }

    [Test]
    public void PreprocessorCounts_OfByteRanges_MergeToTheWholeFilesCounts_AndRoundTripAsBytes()
    {
        var schema = new Schema([FieldSpec.Label(), FieldSpec.Categorical("a"), FieldSpec.Categorical("b")]);
        string path = Write("c.csv", "label,a,b\n1,x,y\n0,x,z\n1,w,y\n0,x,\n");
        var reader = new DelimitedReader(path, schema);
        var options = new PreprocessorOptions { MinCount = 1 };
        static PreprocessorCounts Count(Schema schema, IEnumerable<RawRecord> records, PreprocessorOptions options)
        {
            var counts = new PreprocessorCounts(schema, options);
            foreach (var r in records) counts.Add(r);
            return counts;
        }
        static byte[] Bytes(PreprocessorCounts c)
        {
            using var m = new MemoryStream();
            c.WriteTo(m);
            return m.ToArray();
        }
        var whole = Count(schema, reader, options);
        var cuts = ByteRangeInput.Boundaries(path, 2);
        var first = Count(schema, reader.ReadRange(cuts[0], cuts[1], 0), options);
        var second = Count(schema, reader.ReadRange(cuts[1], cuts[2], ByteRangeInput.CountLineEnds(path, cuts[0], cuts[1])), options);
        first.Merge(PreprocessorCounts.ReadFrom(new MemoryStream(Bytes(second)), schema, options));
        Assert.That(Bytes(first), Is.EqualTo(Bytes(whole)));
        Assert.That(first.DistinctValues("a"), Is.EqualTo(2));
        Assert.That(Preprocessor.Fit(first).ToJson(), Is.EqualTo(Preprocessor.Fit(schema, reader, options).ToJson()));
        Assert.Throws<InvalidDataException>(() => PreprocessorCounts.ReadFrom(new MemoryStream([1, 2, 3, 4, 5, 6, 7, 8, 9]), schema, options));
    }
}
