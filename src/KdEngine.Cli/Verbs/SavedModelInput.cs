using System.CommandLine;
using KdEngine.Cli.Options;
using KdEngine.Data;
using KdEngine.Pipelines;
using KdEngine.Serving;

namespace KdEngine.Cli.Verbs;

/// <summary>
/// The options of verbs that run a saved model over a data file (eval, predict, cache-logits): the checkpoint, the
/// file, and overrides of the way the model's training data was read (saved in the checkpoint).
/// </summary>
internal sealed class SavedModelInput(string modelDescription)
{
    public Option<string> Model { get; } = CliOptions.Required("--model", "FILE", modelDescription);

    public Option<string> Data { get; } = CliOptions.Required("--data", "FILE",
        "data file; read the way the model's training data was unless --format/--ranges say otherwise");

    public Option<DataFormat> Format { get; } = DataOptions.FormatOption("override the saved format (criteo|csv|libsvm|libffm)");

    public Option<IReadOnlyList<IndexRange>?> Ranges { get; } = DataOptions.RangesOption("override the saved libSVM ranges (a spec or @FILE)");

    public void AddTo(Command command)
    {
        command.Options.Add(Model);
        command.Options.Add(Data);
        command.Options.Add(Format);
        command.Options.Add(Ranges);
    }

    public LoadedModel Load(ParseResult parse) => CtrPipeline.Load(parse.GetValue(Model)!);

    /// <summary>The whole data file encoded with the model's saved preprocessing.</summary>
    public EncodedDataset Encode(ParseResult parse, LoadedModel loaded) =>
        CtrPipeline.EncodeFor(loaded, parse.GetValue(Data)!, parse.GetValue(Format), parse.GetValue(Ranges));
}
