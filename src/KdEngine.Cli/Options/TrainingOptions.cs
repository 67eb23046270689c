using System.CommandLine;
using KdEngine.Pipelines;

namespace KdEngine.Cli.Options;

/// <summary>
/// The trainer and optimizer options of train and distill, one per <see cref="TrainingSettings"/> property; defaults
/// (and so help) are a fresh <see cref="TrainingSettings"/>'s.
/// </summary>
internal sealed class TrainingOptions
{
    private static readonly TrainingSettings Defaults = new();

    public Option<int> Epochs { get; } = CliOptions.Int("--epochs", "N", "maximum epochs", Defaults.Epochs, min: 1);
    public Option<int> BatchSize { get; } = CliOptions.Int("--batch-size", "N", "mini-batch size", Defaults.BatchSize, min: 1);
    public Option<float> LearningRate { get; } = CliOptions.Float("--lr", "X", "learning rate", Defaults.LearningRate, CliOptions.Positive);

    public Option<OptimizerKind> Optimizer { get; } = CliOptions.Parsed("--optimizer", "NAME",
        string.Join("|", Enum.GetNames<OptimizerKind>().Select(n => n.ToLowerInvariant())), TrainingSettings.ParseOptimizer, () => Defaults.Optimizer);

    public Option<float> L2Embedding { get; } = CliOptions.Float("--l2-embedding", "X", "L2 on the touched embedding rows", Defaults.L2Embedding, CliOptions.NonNegative);
    public Option<float> L2Dense { get; } = CliOptions.Float("--l2-dense", "X", "L2 on dense weights", Defaults.L2Dense, CliOptions.NonNegative);
    public Option<float?> Clip { get; } = CliOptions.OptionalFloat("--clip", "X", "clip the global gradient norm at X (default: off)", CliOptions.Positive);

    public Option<int> Patience { get; } = CliOptions.Int("--patience", "N",
        "stop after N validations without a better validation score (0 = never)", Defaults.Patience, min: 0);

    public Option<int> Seed { get; } = CliOptions.Int("--seed", "N", "seed of the model init, the shuffling and a random split", Defaults.Seed);

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { Epochs, BatchSize, LearningRate, Optimizer, L2Embedding, L2Dense, Clip, Patience, Seed })
            command.Options.Add(option);
    }

    /// <summary><paramref name="defaults"/> (e.g. with a verb's own stopping metric) with every option applied.</summary>
    public TrainingSettings SettingsFrom(ParseResult parse, TrainingSettings defaults)
    {
        var settings = defaults with
        {
            Epochs = parse.GetValue(Epochs),
            BatchSize = parse.GetValue(BatchSize),
            LearningRate = parse.GetValue(LearningRate),
            Optimizer = parse.GetValue(Optimizer),
            L2Embedding = parse.GetValue(L2Embedding),
            L2Dense = parse.GetValue(L2Dense),
            ClipNorm = parse.GetValue(Clip),
            Patience = parse.GetValue(Patience),
            Seed = parse.GetValue(Seed),
        };
        settings.Validate("options");
        return settings;
    }
}
