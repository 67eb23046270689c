using System.CommandLine;
using KdEngine.Cli.Options;
using KdEngine.Data;
using KdEngine.Pipelines;
using KdEngine.Serving;

namespace KdEngine.Cli.Verbs;

/// <summary>
/// The options of verbs that run a saved model over data (eval, predict, cache-logits): the checkpoint, the files (one
/// or more, globs and gzip allowed), and overrides of the way the model's training data was read (saved in the checkpoint).
/// </summary>
internal sealed class SavedModelInput(string modelDescription)
{
    public Option<string> Model { get; } = CliOptions.Required("--model", "FILE", modelDescription);

    public Option<string[]> Data { get; } = Required(DataOptions.Patterns("--data",
        "data files (paths, globs, brace ranges; plain or gzip); read the way the model's training data was unless --format/--ranges say otherwise"));

    public Option<DataFormat> Format { get; } = DataOptions.FormatOption("override the saved format (criteo|csv|libsvm|libffm|parquet)");

    public Option<IReadOnlyList<IndexRange>?> Ranges { get; } = DataOptions.RangesOption("override the saved libSVM ranges (a spec or @FILE)");

    public Option<int> Workers { get; } = CliOptions.Int("--workers", "N", "parsing threads", Environment.ProcessorCount, min: 1);

    public Option<string> BadRows { get; } = CliOptions.Choice("--bad-rows",
        "fail: a bad row stops with its file, line and column; skip: bad rows are skipped and counted per file", ["fail", "skip"], "fail");

    private static Option<string[]> Required(Option<string[]> option)
    {
        option.Required = true;
        return option;
    }

    public void AddTo(Command command)
    {
        command.Options.Add(Model);
        command.Options.Add(Data);
        command.Options.Add(Format);
        command.Options.Add(Ranges);
        command.Options.Add(Workers);
        command.Options.Add(BadRows);
    }

    public LoadedModel Load(ParseResult parse) => CtrPipeline.Load(parse.GetValue(Model)!);

    /// <summary>The first data pattern (names of derived files).</summary>
    public string FirstData(ParseResult parse) => parse.GetValue(Data)![0];

    /// <summary>The data files, read as the model's training data was.</summary>
    public InputSet Input(ParseResult parse, LoadedModel loaded) =>
        DataSource.FromMetadata(parse.GetValue(Data)!, loaded.Metadata, loaded.Preprocessor!.Schema, parse.GetValue(Format), parse.GetValue(Ranges)).OpenInput();

    /// <summary>How the passes over the data run (threads, bad rows, progress to <paramref name="o"/>).</summary>
    public StreamingOptions Options(ParseResult parse, CliOutput o) => new()
    {
        Workers = parse.GetValue(Workers),
        Reader = new ReaderOptions { BadRows = parse.GetValue(BadRows) == "skip" ? BadRowPolicy.Skip : BadRowPolicy.Throw },
        Progress = o.Writer,
        Interactive = o.IsTerminal,
    };
}
