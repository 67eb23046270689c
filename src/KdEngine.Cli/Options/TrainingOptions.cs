using System.CommandLine;
using KdEngine.Metrics;
using KdEngine.Pipelines;
using KdEngine.Training;

namespace KdEngine.Cli.Options;

/// <summary>
/// The trainer and optimizer options of train, distill and tune, one per <see cref="TrainingSettings"/> property; help
/// shows a fresh <see cref="TrainingSettings"/>'s defaults. An option the user does not give keeps the verb's default
/// (<see cref="TrainingSettings.For"/>: logistic regression trains with FTRL).
/// </summary>
internal sealed class TrainingOptions
{
    private static readonly TrainingSettings Defaults = new();

    public Option<int> Epochs { get; } = CliOptions.Int("--epochs", "N", "maximum epochs (early stopping usually ends training before)", Defaults.Epochs, min: 1);
    public Option<int> BatchSize { get; } = CliOptions.Int("--batch-size", "N", "mini-batch size", Defaults.BatchSize, min: 1);
    public Option<float> LearningRate { get; } = CliOptions.Float("--lr", "X", "learning rate of adam/adagrad/sgd (models with a wide part: the other parts')", Defaults.LearningRate, CliOptions.Positive);

    public Option<float> AdagradInitialAccumulator { get; } = CliOptions.Float("--adagrad-initial-accumulator", "X",
        "adagrad: the accumulators' starting value (0: PyTorch's; 1: LIBFFM's and ML.NET's FFM, first step lr·g)", Defaults.AdagradInitialAccumulator, CliOptions.NonNegative);

    public Option<OptimizerKind> Optimizer { get; } = CliOptions.Parsed("--optimizer", "NAME",
        string.Join("|", Enum.GetNames<OptimizerKind>().Select(n => n.ToLowerInvariant())) + " (lr trains with ftrl unless given)",
        TrainingSettings.ParseOptimizer, () => Defaults.Optimizer);

    public Option<OptimizerKind?> WideOptimizer { get; } = CliOptions.Parsed<OptimizerKind?>("--wide-optimizer", "NAME",
        "optimizer of the wide (linear) part of lr/fm/wdl/deepfm/xdeepfm, e.g. ftrl beside adam (default: --optimizer)", text => TrainingSettings.ParseOptimizer(text));

    public Option<float> L2Embedding { get; } = CliOptions.Float("--l2-embedding", "X",
        "coupled L2 on embedding tables: the batch's rows (lazy), every row (dense)", Defaults.L2Embedding, CliOptions.NonNegative);
    public Option<float> L2Dense { get; } = CliOptions.Float("--l2-dense", "X", "coupled L2 on dense weights", Defaults.L2Dense, CliOptions.NonNegative);
    public Option<float?> L2Wide { get; } = CliOptions.OptionalFloat("--l2-wide", "X",
        "coupled L2 on the wide (linear) part instead of --l2-embedding/--l2-dense, e.g. FFM's λ_linear beside λ_latent (default: none)", CliOptions.NonNegative);
    public Option<float?> WideLearningRate { get; } = CliOptions.OptionalFloat("--wide-lr", "X",
        "learning rate of the wide (linear) part's adam/adagrad/sgd instead of --lr (default: --lr)", CliOptions.Positive);
    public Option<float?> WideAdagradInitialAccumulator { get; } = CliOptions.OptionalFloat("--wide-adagrad-initial-accumulator", "X",
        "the wide part's adagrad accumulators start here instead of --adagrad-initial-accumulator (default: the same)", CliOptions.NonNegative);
    public Option<float> WeightDecayEmbedding { get; } = CliOptions.Float("--weight-decay-embedding", "X",
        "decoupled (AdamW) weight decay on every embedding row every step, applied lazily and exactly", Defaults.WeightDecayEmbedding, CliOptions.NonNegative);
    public Option<float> WeightDecayDense { get; } = CliOptions.Float("--weight-decay-dense", "X", "decoupled weight decay on dense weights", Defaults.WeightDecayDense, CliOptions.NonNegative);
    public Option<TableUpdateMode> TableUpdate { get; } = CliOptions.Parsed("--table-update", "lazy|dense",
        "lazy: the rule updates the batch's rows (decay still reaches all, deferred); dense: every row every step (small tables)",
        TrainingSettings.ParseTableUpdate, () => Defaults.TableUpdate);

    public Option<float> FtrlAlpha { get; } = CliOptions.Float("--ftrl-alpha", "X", "FTRL α", Defaults.FtrlAlpha, CliOptions.Positive);
    public Option<float> FtrlBeta { get; } = CliOptions.Float("--ftrl-beta", "X", "FTRL β", Defaults.FtrlBeta, CliOptions.NonNegative);
    public Option<float> FtrlL1 { get; } = CliOptions.Float("--ftrl-l1", "X", "FTRL λ1", Defaults.FtrlL1, CliOptions.NonNegative);
    public Option<float> FtrlL2 { get; } = CliOptions.Float("--ftrl-l2", "X", "FTRL λ2 (per step: the L2 of the mean loss)", Defaults.FtrlL2, CliOptions.NonNegative);

    public Option<float?> Clip { get; } = CliOptions.OptionalFloat("--clip", "X", "clip the global gradient norm at X (default: off)", CliOptions.Positive);
    public Option<float> Momentum { get; } = CliOptions.Float("--momentum", "X", "SGD momentum", Defaults.Momentum, v => v is >= 0 and < 1 ? null : $"= {CliOptions.Show(v)} must be in [0, 1).");

    public Option<int> Patience { get; } = CliOptions.Int("--patience", "N",
        "stop after N validations without improvement of the --metric (0 = never)", Defaults.Patience, min: 0);
    public Option<StoppingMetric> Metric { get; } = CliOptions.Parsed("--metric", "auc|logloss|both|objective|kd",
        "what early stopping watches (both: go on while either improves; kd: the validation distillation term, distill only)", TrainingSettings.ParseMetric, () => Defaults.Metric);
    public Option<SelectionMetric?> RestoreBy { get; } = CliOptions.Parsed<SelectionMetric?>("--restore-by", "auc|logloss|guarded-auc|objective|kd|last",
        "whose weights are restored (default: implied by --metric; both → guarded-auc; last: keep the final weights)", text => TrainingSettings.ParseSelection(text));
    public Option<double> MinDelta { get; } = CliOptions.Double("--min-delta", "X", "the smallest change that counts as an improvement", Defaults.MinDelta, CliOptions.NonNegative);
    public Option<double> GuardBand { get; } = CliOptions.Double("--guard-band", "X",
        "guarded-auc: the logloss band, relative to the lowest logloss", Defaults.GuardBand, CliOptions.NonNegative);
    public Option<double> GuardStandardErrors { get; } = CliOptions.Double("--guard-se", "K",
        "guarded-auc: a point other than the lowest-logloss one must beat its AUC by more than K standard errors of the validation AUC (0 = any gain)",
        Defaults.GuardStandardErrors, CliOptions.NonNegative);
    public Option<double> PlateauFactor { get; } = CliOptions.Double("--plateau-factor", "X",
        "multiply the learning rate by X after --plateau-patience validations without improvement (1 = off)", Defaults.PlateauFactor,
        v => v > 0 && v <= 1 ? null : $"= {CliOptions.Show(v)} must be in (0, 1].");
    public Option<int> PlateauPatience { get; } = CliOptions.Int("--plateau-patience", "N", "validations without improvement before the rate is reduced", Defaults.PlateauPatience, min: 1);
    public Option<int> EvaluateEvery { get; } = CliOptions.Int("--evaluate-every", "N", "validate every N steps as well as after each epoch (0 = per epoch)", Defaults.EvaluateEvery, min: 0);

    // A string, not a bool: System.CommandLine reads a bool option as a flag and leaves "on"/"off" as a stray argument.
    public Option<string> WideFirst { get; } = CliOptions.Parsed("--wide-first", "on|off",
        "fm/wdl/deepfm/xdeepfm/ffm/dnn/dcn/dcnv2 (on by default for them): fit the wide part alone first (a logistic regression to its early stop), then train jointly from it with the other parts' outputs at zero, the start kept as a restore candidate (dnn, dcn and dcnv2 have no wide part: their DNN carries the fitted regression in its own weights); off: every part trains jointly from its random init",
        text => text.ToLowerInvariant() switch { "on" => "on", "off" => "off", _ => throw new ArgumentException($"expected on or off, not '{text}'.") },
        fallback: null);

    public Option<int> Seed { get; } = CliOptions.Int("--seed", "N", "seed of the model init, the shuffling and a random split", Defaults.Seed);

    public Option<CalibrationKind> Calibration { get; } = CliOptions.Parsed("--calibration", "none|temperature|platt",
        "post-hoc calibration fitted on the validation split and saved with the model", LogitCalibration.ParseKind, () => CalibrationKind.None);

    private Option[] All => [Epochs, BatchSize, LearningRate, AdagradInitialAccumulator, Optimizer, WideOptimizer, L2Embedding, L2Dense, L2Wide, WideLearningRate, WideAdagradInitialAccumulator, WeightDecayEmbedding, WeightDecayDense,
        TableUpdate, FtrlAlpha, FtrlBeta, FtrlL1, FtrlL2, Clip, Momentum, Patience, Metric, RestoreBy, MinDelta, GuardBand, GuardStandardErrors, PlateauFactor,
        PlateauPatience, EvaluateEvery, WideFirst, Seed];

    public void AddTo(Command command, bool calibration = true)
    {
        foreach (var option in All) command.Options.Add(option);
        if (calibration) command.Options.Add(Calibration);
    }

    /// <summary>
    /// Refuses <c>--metric kd</c> / <c>--restore-by kd</c> where nothing is distilled: a plain model reports no KD term, so
    /// the trainer could only fail after the first epoch.
    /// </summary>
    public static void RequireNoDistillationMetric(TrainingSettings settings, string verb)
    {
        if (settings.Metric == StoppingMetric.DistillationLoss || settings.RestoreBy == SelectionMetric.DistillationLoss)
            throw new CliException($"{verb}: --metric kd and --restore-by kd watch the distillation term, which only 'kdengine distill' (and 'tune --method') trains.");
    }

    /// <summary><paramref name="defaults"/> (the verb's, e.g. per model kind) with every option the user gave applied.</summary>
    public TrainingSettings SettingsFrom(ParseResult parse, TrainingSettings defaults)
    {
        T Pick<T>(Option<T> option, T fallback) => parse.Given(option) ? parse.GetValue(option)! : fallback;
        var settings = defaults with
        {
            Epochs = Pick(Epochs, defaults.Epochs),
            BatchSize = Pick(BatchSize, defaults.BatchSize),
            LearningRate = Pick(LearningRate, defaults.LearningRate),
            AdagradInitialAccumulator = Pick(AdagradInitialAccumulator, defaults.AdagradInitialAccumulator),
            Optimizer = Pick(Optimizer, defaults.Optimizer),
            WideOptimizer = parse.Given(WideOptimizer) ? parse.GetValue(WideOptimizer) : defaults.WideOptimizer,
            L2Embedding = Pick(L2Embedding, defaults.L2Embedding),
            L2Dense = Pick(L2Dense, defaults.L2Dense),
            L2Wide = parse.Given(L2Wide) ? parse.GetValue(L2Wide) : defaults.L2Wide,
            WideLearningRate = parse.Given(WideLearningRate) ? parse.GetValue(WideLearningRate) : defaults.WideLearningRate,
            WideAdagradInitialAccumulator = parse.Given(WideAdagradInitialAccumulator) ? parse.GetValue(WideAdagradInitialAccumulator) : defaults.WideAdagradInitialAccumulator,
            WeightDecayEmbedding = Pick(WeightDecayEmbedding, defaults.WeightDecayEmbedding),
            WeightDecayDense = Pick(WeightDecayDense, defaults.WeightDecayDense),
            TableUpdate = Pick(TableUpdate, defaults.TableUpdate),
            FtrlAlpha = Pick(FtrlAlpha, defaults.FtrlAlpha),
            FtrlBeta = Pick(FtrlBeta, defaults.FtrlBeta),
            FtrlL1 = Pick(FtrlL1, defaults.FtrlL1),
            FtrlL2 = Pick(FtrlL2, defaults.FtrlL2),
            ClipNorm = parse.Given(Clip) ? parse.GetValue(Clip) : defaults.ClipNorm,
            Momentum = Pick(Momentum, defaults.Momentum),
            Patience = Pick(Patience, defaults.Patience),
            Metric = Pick(Metric, defaults.Metric),
            RestoreBy = parse.Given(RestoreBy) ? parse.GetValue(RestoreBy) : defaults.RestoreBy,
            MinDelta = Pick(MinDelta, defaults.MinDelta),
            GuardBand = Pick(GuardBand, defaults.GuardBand),
            GuardStandardErrors = Pick(GuardStandardErrors, defaults.GuardStandardErrors),
            PlateauFactor = Pick(PlateauFactor, defaults.PlateauFactor),
            PlateauPatience = Pick(PlateauPatience, defaults.PlateauPatience),
            EvaluateEvery = Pick(EvaluateEvery, defaults.EvaluateEvery),
            WideFirst = parse.Given(WideFirst) ? parse.GetValue(WideFirst) == "on" : defaults.WideFirst,
            Seed = Pick(Seed, defaults.Seed),
        };
        settings.Validate("options");
        return settings;
    }
}
