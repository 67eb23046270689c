using System.Text;
using CsCheck;
using KdEngine.Data;
using KdEngine.Tests.Data;
using NUnit.Framework;

namespace KdEngine.Tests.Hardening;

/// <summary>
/// Every data reader on random and mutated files: each case either parses (and then fits and encodes through the
/// <see cref="Preprocessor"/>, so the rows are usable) or raises <see cref="DataFormatException"/> naming the
/// file — and the line and column when a row is at fault. Fixed seeds and counts keep CI deterministic.
/// </summary>
[TestFixture]
public sealed class ReaderFuzzTests
{
    internal const int Iterations = 300;
    private string _dir = "";

    [OneTimeSetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-fuzz", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [OneTimeTearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    /// <summary>The first rows of the bundled Criteo sample, as CSV with its header.</summary>
    internal static byte[] CriteoCsvSeed()
    {
        var lines = File.ReadLines(DataPaths.FindCriteoSample()).Take(6);
        return Encoding.UTF8.GetBytes(string.Join('\n', lines) + "\n");
    }

    private static string? CheckDataError(DataFormatException e, string fileName)
    {
        if (e.File != fileName) return $"DataFormatException does not name the file ({e.File ?? "null"} ≠ {fileName}): {e.Message}";
        if (!e.Message.StartsWith(fileName, StringComparison.Ordinal)) return $"message does not start with the file name: {e.Message}";
        if (e.Line is { } line && !e.Message.StartsWith($"{fileName}:{line}", StringComparison.Ordinal))
            return $"message does not give the line as {fileName}:{line}: {e.Message}";
        if (e.Line is not null && e.Column is null && e.Key is null && !e.Problem.StartsWith("line is longer", StringComparison.Ordinal)
            && !e.Problem.Contains("header", StringComparison.Ordinal))
            return $"a row error names neither a column nor a key: {e.Message}";
        return null;
    }

    /// <summary>Reads every row, then fits and encodes them (the rows a reader returns must be usable).</summary>
    private static void Consume(RecordReader reader)
    {
        var rows = reader.ToList();
        var pre = Preprocessor.Fit(reader.Schema, rows, new PreprocessorOptions { MinCount = 1 });
        var data = pre.EncodeAll(rows);
        Assert.That(data.Count, Is.EqualTo(rows.Count));
    }

    private FuzzTally RunReader(string name, string fileName, Gen<byte[]> gen, ulong seed, Func<string, RecordReader> open)
    {
        string path = Path.Combine(_dir, fileName);
        return Fuzz.Run(name, gen, Iterations, seed,
            bytes =>
            {
                File.WriteAllBytes(path, bytes);
                Consume(open(path));
            },
            e => Fuzz.Expect<DataFormatException>(e, d => CheckDataError(d, fileName)));
    }

    private static Gen<byte[]> MutatedOrRandom(byte[] seed, string alphabet) =>
        Gen.Frequency((4, Fuzz.Mutated(seed)), (1, Fuzz.RandomText(alphabet)));

    [Test]
    public void Criteo_csv_with_header()
    {
        var t = RunReader("Criteo CSV", "criteo.csv", MutatedOrRandom(CriteoCsvSeed(), "0123456789abcdef,.-\"e \n"), 1000,
            p => CriteoReader.Open(p));
        Assert.That(t.Parsed, Is.GreaterThan(0), "some mutations must still parse (else the generator only tests the first check)");
    }

    [Test]
    public void Criteo_tsv_without_header()
    {
        var seed = File.ReadAllBytes(DataTestFiles.Fixture("criteo_like.tsv"));
        var t = RunReader("Criteo TSV", "criteo.tsv", MutatedOrRandom(seed, "0123456789abcdef\t.-e \n"), 2000,
            p => CriteoReader.Open(p));
        Assert.That(t.Parsed, Is.GreaterThan(0));
    }

    [Test]
    public void Generic_csv_with_schema()
    {
        var seed = File.ReadAllBytes(DataTestFiles.Fixture("avazu_like.csv"));
        var schema = Schema.Load(DataTestFiles.Fixture("avazu_schema.json"));
        var t = RunReader("generic CSV + schema", "avazu.csv", MutatedOrRandom(seed, "0123456789abcdef,|.\"e \nid"), 3000,
            p => new DelimitedReader(p, schema));
        Assert.That(t.Parsed, Is.GreaterThan(0));
    }

    [Test]
    public void Libsvm_and_libfm()
    {
        var svm = File.ReadAllBytes(DataTestFiles.Fixture("pm1.svm"));
        var t1 = RunReader("libSVM", "pm1.svm", MutatedOrRandom(svm, "0123456789: +-.e\n"), 4000,
            p => new LibSvmReader(p, LibSvmOptions.Uniform(2, 10)));
        var fm = File.ReadAllBytes(DataTestFiles.Fixture("labels01.libfm"));
        var t2 = RunReader("libFM", "labels01.libfm", MutatedOrRandom(fm, "0123456789: \t.\n"), 5000,
            p => new LibSvmReader(p, LibSvmOptions.Uniform(3, 5, scaleByValue: false)));
        Assert.That(t1.Parsed + t2.Parsed, Is.GreaterThan(0));
    }

    [Test]
    public void Libffm()
    {
        var ffm = File.ReadAllBytes(DataTestFiles.Fixture("pm1.ffm"));
        var t = RunReader("libFFM", "pm1.ffm", MutatedOrRandom(ffm, "0123456789: +-.e\n"), 6000,
            p => new LibFfmReader(p, LibFfmReader.UniformSchema(3)));
        Assert.That(t.Parsed, Is.GreaterThan(0));
    }

    [Test]
    public void Skip_policy_never_lets_an_exception_of_another_type_escape()
    {
        // Under Skip, malformed rows are counted instead of thrown; whole-file problems still throw.
        var t = RunReader("Criteo CSV, skip bad rows", "criteo-skip.csv", Fuzz.Mutated(CriteoCsvSeed()), 7000,
            p => CriteoReader.Open(p, new ReaderOptions { BadRows = BadRowPolicy.Skip }));
        Assert.That(t.Parsed, Is.GreaterThan(t.Rejected), "skipping bad rows should let most mutated files through");
    }

    [TestCase("criteo.csv")]
    [TestCase("criteo.tsv")]
    [TestCase("data.svm")]
    public void A_line_of_ten_million_characters_fails_fast_with_bounded_memory(string name)
    {
        string path = Path.Combine(_dir, "long-" + name);
        using (var w = new StreamWriter(path))
        {
            if (name.EndsWith(".csv", StringComparison.Ordinal))
                w.Write(Encoding.UTF8.GetString(CriteoCsvSeed()).Split('\n')[0] + "\n");
            w.Write('1');
            w.Write(new string(name.EndsWith(".svm", StringComparison.Ordinal) ? ' ' : ',', 5_000_000));
            w.Write(new string('7', 5_000_000));
            w.Write('\n');
        }
        Func<RecordReader> open = name.EndsWith(".svm", StringComparison.Ordinal)
            ? () => new LibSvmReader(path, LibSvmOptions.Uniform(2, 10))
            : () => CriteoReader.Open(path);
        var (parsed, problem, allocated, elapsed) = Fuzz.RunOne(() => open().ToList(), e => Fuzz.Expect<DataFormatException>(e, d =>
            d.Line is null ? $"no line number: {d.Message}"
            : d.Problem.StartsWith("line is longer than", StringComparison.Ordinal) ? null : $"unexpected problem: {d.Message}"));
        Assert.That(parsed, Is.False);
        Assert.That(problem, Is.Null);
        Assert.That(allocated, Is.LessThan(24L << 20), "the reader must stop at the line limit, not buffer the whole line");
        Assert.That(elapsed, Is.LessThan(TimeSpan.FromSeconds(5)));
    }

    [Test]
    public void A_header_of_a_million_columns_is_bounded_by_the_line_limit()
    {
        // 2 × 10^6 characters: a header "claiming" a million columns is over the default 1 Mi-character limit.
        string path = Path.Combine(_dir, "wide.csv");
        File.WriteAllText(path, "label" + string.Concat(Enumerable.Repeat(",c", 1_000_000)) + "\n1,x\n");
        var e = Assert.Throws<DataFormatException>(() => new DelimitedReader(path, DataTestFiles.SmallSchema()).ToList())!;
        Assert.That(e.Message, Does.StartWith("wide.csv:1: line is longer than 1048576 bytes"));
        // The limit is an option: a smaller one applies, and lines within it still read.
        string ok = Path.Combine(_dir, "ok.csv");
        File.WriteAllText(ok, "label,n,c\n1,3,x\n");
        Assert.That(new DelimitedReader(ok, DataTestFiles.SmallSchema(), options: new ReaderOptions { MaxLineLength = 9 }).Count(), Is.EqualTo(1));
        var e2 = Assert.Throws<DataFormatException>(() => new DelimitedReader(ok, DataTestFiles.SmallSchema(), options: new ReaderOptions { MaxLineLength = 8 }).ToList())!;
        Assert.That(e2.Line, Is.EqualTo(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new ReaderOptions { MaxLineLength = 0 });
    }

    [Test]
    public void Line_ends_lf_cr_and_crlf_split_across_buffers_number_lines_as_before()
    {
        // CRLF whose CR ends the 16 Ki-character read buffer must still count as one line end.
        var sb = new StringBuilder("label,n,c\r\n");
        string row = "1,3," + new string('x', (1 << 14) - sb.Length - 5);
        sb.Append(row).Append("\r\n").Append("0,1,y\r").Append("1,2,z\n\n0,4,w");
        Assert.That(sb.ToString().IndexOf('\r', 20), Is.EqualTo((1 << 14) - 1));
        string path = Path.Combine(_dir, "crlf.csv");
        File.WriteAllText(path, sb.ToString());
        var rows = new DelimitedReader(path, DataTestFiles.SmallSchema()).ToList();
        Assert.That(rows.Select(r => r.Line), Is.EqualTo(new long[] { 2, 3, 4, 6 }));
        Assert.That(rows.Select(r => r.Values[2]![0]), Is.EqualTo(new[] { 'x', 'y', 'z', 'w' }));
    }
}
