using System.CommandLine;
using KdEngine.Data;
using KdEngine.Pipelines;

namespace KdEngine.Cli.Options;

/// <summary>
/// How a verb reads its data file: <c>--data</c>, <c>--format</c>, <c>--schema</c>, <c>--ranges</c> (train, distill),
/// and the format/ranges overrides alone for verbs that read a file the way a saved model's data was read
/// (eval, predict, cache-logits).
/// </summary>
internal sealed class DataOptions
{
    public Option<string> Data { get; } = CliOptions.Required("--data", "FILE", "data file");

    public Option<DataFormat> Format { get; } = FormatOption(
        "criteo|csv|libsvm|libffm|auto; auto: .svm/.libfm → libsvm, .ffm → libffm, else criteo (csv with --schema)");

    public Option<string?> Schema { get; } = CliOptions.Text("--schema", "FILE", "schema JSON (needed for csv; overrides a format's default schema)");

    public Option<IReadOnlyList<IndexRange>?> Ranges { get; } = RangesOption(
        "libSVM field index ranges: name=start-end,… (half-open) | FxN (F fields of N indices) | @FILE");

    public void AddTo(Command command)
    {
        command.Options.Add(Data);
        command.Options.Add(Format);
        command.Options.Add(Schema);
        command.Options.Add(Ranges);
    }

    /// <summary>The data file as the options describe it (the schema file is read here, its errors name it).</summary>
    public DataSource Source(ParseResult parse)
    {
        Schema? schema = null;
        if (parse.GetValue(Schema) is { } path)
        {
            if (!File.Exists(path)) throw new CliException($"{System.IO.Path.GetFileName(path)}: schema file not found ({System.IO.Path.GetFullPath(path)}).");
            schema = KdEngine.Data.Schema.Load(path);
        }
        return new DataSource(parse.GetValue(Data)!) { Format = parse.GetValue(Format), Schema = schema, Ranges = parse.GetValue(Ranges) };
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

    public Option<SplitMode> Mode { get; } = CliOptions.Parsed("--split-mode", "sequential|random",
        "sequential (time-ordered data) or random (seeded by --seed)", SplitOptions.ParseMode, () => Defaults.Mode);

    public Option<int> MinCount { get; } = CliOptions.Int("--min-count", "N",
        "categories seen fewer times in the train part map to the OOV id", DefaultMinCount, min: 1);

    public void AddTo(Command command)
    {
        command.Options.Add(Split);
        command.Options.Add(Mode);
        command.Options.Add(MinCount);
    }

    public SplitOptions SplitFrom(ParseResult parse, int seed) => new()
    {
        Ratios = parse.GetValue(Split) ?? Defaults.Ratios,
        Mode = parse.GetValue(Mode),
        Seed = seed,
    };

    public PreprocessorOptions PreprocessingFrom(ParseResult parse) => new() { MinCount = parse.GetValue(MinCount) };
}
