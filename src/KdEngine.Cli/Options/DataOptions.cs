using System.CommandLine;
using KdEngine.Data;
using KdEngine.Pipelines;

namespace KdEngine.Cli.Options;

/// <summary>
/// How a verb reads its data: <c>--data</c> (one file, split by <c>--split</c>), or for train also <c>--train</c>,
/// <c>--valid</c>, <c>--test</c> (each one or more files or globs, plain or gzip, streamed); <c>--format</c>,
/// <c>--schema</c>, <c>--ranges</c>, <c>--bad-rows</c>; and the format/ranges overrides alone for verbs that read files
/// the way a saved model's data was read (eval, predict, cache-logits).
/// </summary>
internal sealed class DataOptions
{
    private readonly bool _inputSets;

    /// <param name="inputSets">Offer --train/--valid/--test (streamed input sets) beside --data.</param>
    public DataOptions(bool inputSets = false)
    {
        _inputSets = inputSets;
        Data = new Option<string?>("--data")
        {
            HelpName = "FILE",
            Description = inputSets ? "one data file, cut by --split (or give --train/--valid/--test)" : "data file",
            Required = !inputSets,
        };
    }

    public Option<string?> Data { get; }

    public Option<string[]> Train { get; } = Patterns("--train", "train files: paths, globs (day_*.tsv.gz) or brace ranges (day_{0..20}.tsv.gz), plain or gzip");

    public Option<string[]> Valid { get; } = Patterns("--valid", "validation files (as --train)");

    public Option<string[]> Test { get; } = Patterns("--test", "test files (as --train; optional)");

    public Option<DataFormat> Format { get; } = FormatOption(
        "criteo|csv|libsvm|libffm|parquet|auto; auto from the extension (.gz ignored): .svm/.libfm → libsvm, .ffm → libffm, .parquet → parquet, else criteo (csv with --schema)");

    public Option<string> BadRows { get; } = CliOptions.Choice("--bad-rows",
        "fail: a bad row stops with its file, line and column; skip: bad rows are skipped and counted per file", ["fail", "skip"], "fail");

    /// <summary>One or more patterns (<c>--train a.tsv b.tsv</c> or <c>--train a.tsv --train b.tsv</c>).</summary>
    public static Option<string[]> Patterns(string name, string description) =>
        new(name) { HelpName = "FILE…", Description = description, Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => [] };

    public Option<string?> Schema { get; } = CliOptions.Text("--schema", "FILE", "schema JSON (needed for csv; overrides a format's default schema)");

    public Option<IReadOnlyList<IndexRange>?> Ranges { get; } = RangesOption(
        "libSVM field index ranges: name=start-end,… (half-open) | FxN (F fields of N indices) | @FILE");

    public void AddTo(Command command)
    {
        command.Options.Add(Data);
        if (_inputSets)
        {
            command.Options.Add(Train);
            command.Options.Add(Valid);
            command.Options.Add(Test);
        }
        command.Options.Add(Format);
        command.Options.Add(Schema);
        command.Options.Add(Ranges);
        command.Options.Add(BadRows);
    }

    /// <summary>How bad rows are handled (--bad-rows).</summary>
    public ReaderOptions Reader(ParseResult parse) => new() { BadRows = parse.GetValue(BadRows) == "skip" ? BadRowPolicy.Skip : BadRowPolicy.Throw };

    /// <summary>Whether --train was given (the data comes as separate input sets).</summary>
    public bool HasInputSets(ParseResult parse) => _inputSets && parse.GetValue(Train) is { Length: > 0 };

    /// <summary>The data file as the options describe it (the schema file is read here, its errors name it).</summary>
    public DataSource Source(ParseResult parse)
    {
        if (parse.GetValue(Data) is not { } data)
            throw new CliException(_inputSets ? "give --data FILE (cut by --split) or --train FILE… --valid FILE… [--test FILE…]." : "option '--data' is required.");
        if (HasInputSets(parse)) throw new CliException("give either --data (one file, cut by --split) or --train/--valid/--test, not both.");
        return SourceOf([data], parse);
    }

    /// <summary>The data as separate train/validation/test sources (--train, --valid, --test).</summary>
    public (DataSource Train, DataSource Valid, DataSource? Test) InputSets(ParseResult parse)
    {
        var train = parse.GetValue(Train)!;
        var valid = parse.GetValue(Valid)!;
        var test = parse.GetValue(Test)!;
        if (parse.GetValue(Data) is not null) throw new CliException("give either --data (one file, cut by --split) or --train/--valid/--test, not both.");
        if (valid.Length == 0) throw new CliException("--train needs --valid FILE… (the validation files early stopping watches).");
        return (SourceOf(train, parse), SourceOf(valid, parse), test.Length > 0 ? SourceOf(test, parse) : null);
    }

    private DataSource SourceOf(IReadOnlyList<string> patterns, ParseResult parse)
    {
        Schema? schema = null;
        if (parse.GetValue(Schema) is { } path)
        {
            if (!File.Exists(path)) throw new CliException($"{System.IO.Path.GetFileName(path)}: schema file not found ({System.IO.Path.GetFullPath(path)}).");
            schema = KdEngine.Data.Schema.Load(path);
        }
        return new DataSource(patterns) { Format = parse.GetValue(Format), Schema = schema, Ranges = parse.GetValue(Ranges), ReaderOptions = Reader(parse) };
    }

    /// <summary><c>--format</c>: a <see cref="DataFormat"/> name; absent = <see cref="DataFormat.Auto"/> (or the saved format).</summary>
    public static Option<DataFormat> FormatOption(string description) =>
        CliOptions.Parsed("--format", "FMT", description, DataSource.ParseFormat, () => DataFormat.Auto);

    /// <summary><c>--ranges</c>: a range spec, or <c>@FILE</c> holding one (read when the command line is parsed).</summary>
    public static Option<IReadOnlyList<IndexRange>?> RangesOption(string description) =>
        CliOptions.Parsed<IReadOnlyList<IndexRange>?>("--ranges", "SPEC", description, spec =>
        {
            if (spec.StartsWith('@'))
            {
                var file = spec[1..];
                if (!File.Exists(file)) throw new CliException($"{Path.GetFileName(file)}: ranges file not found ({Path.GetFullPath(file)}).");
                spec = File.ReadAllText(file);
            }
            return DataSource.ParseRanges(spec);
        });
}

/// <summary><c>--split</c>, <c>--split-mode</c>, <c>--min-count</c>: how the file is cut and the preprocessing fitted.</summary>
internal sealed class SplitOptionsGroup
{
    private static readonly SplitOptions Defaults = new();

    /// <summary>The CLI's rare-category threshold (the library's own default keeps every category).</summary>
    public const int DefaultMinCount = 2;

    public Option<IReadOnlyList<double>> Split { get; } = CliOptions.Parsed("--split", "A:B:C",
        $"train:validation:test ratios [default: {string.Join(":", Defaults.Ratios.Select(CliOptions.Show))}]",
        SplitOptions.ParseRatios);

    public Option<SplitMode> Mode { get; } = CliOptions.Parsed("--split-mode", "sequential|random|hash",
        "sequential (time-ordered data; streams), random (a permutation seeded by --seed; reads --data into memory) or hash (each row's part " +
        "from a --seed-ed hash of its row number: streams; part sizes binomial around the ratios; other parts than random)", SplitOptions.ParseMode, () => Defaults.Mode);

    public Option<int> MinCount { get; } = CliOptions.Int("--min-count", "N",
        "categories seen fewer times in the train part map to the OOV id", DefaultMinCount, min: 1);

    public Option<int> MaxVocab { get; } = CliOptions.Int("--max-vocab", "N",
        "largest vocabulary per field: the N most frequent values get ids, the rest map to the OOV id (0 = no cap)", 0, min: 0);

    public void AddTo(Command command)
    {
        command.Options.Add(Split);
        command.Options.Add(Mode);
        command.Options.Add(MinCount);
        command.Options.Add(MaxVocab);
    }

    public SplitOptions SplitFrom(ParseResult parse, int seed) => new()
    {
        Ratios = parse.GetValue(Split) ?? Defaults.Ratios,
        Mode = parse.GetValue(Mode),
        Seed = seed,
    };

    public PreprocessorOptions PreprocessingFrom(ParseResult parse) => new() { MinCount = parse.GetValue(MinCount), MaxVocab = parse.GetValue(MaxVocab) };
}

/// <summary>
/// How train streams its data: <c>--shuffle-buffer</c>, <c>--workers</c>, <c>--cache</c>. Memory is bounded by the
/// model, the vocabularies and the shuffle buffer, whatever the size of the files.
/// </summary>
internal sealed class StreamingOptionsGroup
{
    private static readonly StreamingOptions Defaults = new();

    public Option<int> ShuffleBuffer { get; } = CliOptions.Int("--shuffle-buffer", "N",
        "rows held by the training shuffle buffer (with a new seeded order of the input's files/blocks each epoch; 0 = input order)",
        Defaults.ShuffleBuffer, min: 0);

    public Option<int> Workers { get; } = CliOptions.Int("--workers", "N", "parsing threads", Defaults.Workers, min: 1);

    public Option<string?> Cache { get; } = CliOptions.Text("--cache", "DIR",
        "keep the encoded rows in DIR (memory-mapped): later epochs and runs parse no text; a cache whose files or preprocessing changed is rebuilt");

    public void AddTo(Command command)
    {
        command.Options.Add(ShuffleBuffer);
        command.Options.Add(Workers);
        command.Options.Add(Cache);
    }

    public StreamingOptions OptionsFrom(ParseResult parse, ReaderOptions reader, TextWriter progress, bool interactive) => new()
    {
        ShuffleBuffer = parse.GetValue(ShuffleBuffer),
        Workers = parse.GetValue(Workers),
        CacheDirectory = parse.GetValue(Cache),
        Reader = reader,
        Progress = progress,
        Interactive = interactive,
    };
}
