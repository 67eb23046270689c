using System.Text.Json;
using System.Text.Json.Serialization;
using KdEngine.Models;
using KdEngine.Sharding;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Pipelines;

/// <summary>The optimizers a pipeline can build.</summary>
public enum OptimizerKind
{
    /// <summary>Adam (β₁ 0.9, β₂ 0.999); the default.</summary>
    Adam,
    /// <summary>Adagrad: per-coordinate steps shrinking with the summed squared gradients.</summary>
    Adagrad,
    /// <summary>Plain SGD, with optional momentum.</summary>
    Sgd,
    /// <summary>FTRL-Proximal (McMahan et al. 2013): per-coordinate rates, L1/L2; the default of logistic regression and wide parts.</summary>
    Ftrl,
}

/// <summary>
/// Trainer and optimizer settings in one typed record (CLI flags, experiment JSON, quickstart, tune). JSON keys are
/// camelCase; unknown keys are rejected naming the key. The defaults are the ones docs/results.md measures ("Defaults"):
/// Adam 1e-3, batch 256, at most 50 epochs with early stopping while validation AUC or logloss improves (patience 3,
/// restoring the logloss-guarded best AUC, the learning rate × 0.1 at each plateau); <see cref="For"/> gives the
/// per-model defaults (FTRL α 1, λ2 1e-4 per step for logistic regression and for wide parts; WDL's deep part at Adam 1e-4).
/// </summary>
public sealed record TrainingSettings
{
    /// <summary>The maximum number of epochs: high, so that early stopping (<see cref="Patience"/>) decides when to stop.</summary>
    public int Epochs { get; init; } = 50;
    /// <summary>Rows per optimizer step.</summary>
    public int BatchSize { get; init; } = 256;
    /// <summary>The optimizer <see cref="BuildOptimizer"/> makes.</summary>
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Adam;
    /// <summary>Learning rate of Adam / Adagrad / SGD (&gt; 0; FTRL uses <see cref="FtrlAlpha"/>).</summary>
    public float LearningRate { get; init; } = 1e-3f;
    /// <summary>Adagrad's accumulators start here (≥ 0): 0 is PyTorch's default (the first step is then about lr·sign(g));
    /// LIBFFM and ML.NET's field-aware factorization machine start at 1 (the first step is lr·g), TensorFlow at 0.1.
    /// Only for <see cref="OptimizerKind.Adagrad"/>; not written to JSON while 0.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public float AdagradInitialAccumulator { get; init; }
    /// <summary>Coupled L2 on embedding tables (ĝ = g + λ·w): the touched rows in lazy table mode, every row in dense mode.</summary>
    public float L2Embedding { get; init; }
    /// <summary>Coupled L2 on dense weights.</summary>
    public float L2Dense { get; init; }
    /// <summary>Coupled L2 on the wide (linear) part's weights and bias instead of <see cref="L2Embedding"/> / <see cref="L2Dense"/>
    /// (LIBFFM's and ML.NET's separate λ for the linear and the latent weights); null = no separate value. Setting it gives
    /// the wide part its own optimizer of the same kind (stepping with the rest, as with <see cref="WideOptimizer"/>).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? L2Wide { get; init; }
    /// <summary>Learning rate of the wide (linear) part's Adam / Adagrad / SGD instead of <see cref="LearningRate"/>; null = the same.
    /// Setting it gives the wide part its own optimizer (as <see cref="L2Wide"/> does).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? WideLearningRate { get; init; }
    /// <summary>The wide part's Adagrad accumulators start here instead of at <see cref="AdagradInitialAccumulator"/>; null = the same.
    /// With <see cref="WideLearningRate"/> and <see cref="L2Wide"/> it reproduces a linear term over normalised inputs exactly:
    /// for inputs scaled by c (ML.NET's FFM: c = 1/√F) Adagrad from accumulator 1 at rate lr with L2 λ on the weights w is
    /// Adagrad on u = c·w at rate lr·c from accumulator 1/c² with L2 λ/c² (docs/training.md).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float? WideAdagradInitialAccumulator { get; init; }
    /// <summary>Decoupled weight decay on every embedding row every step (AdamW's form; deferred and exact in lazy mode).</summary>
    public float WeightDecayEmbedding { get; init; }
    /// <summary>Decoupled weight decay on dense weights.</summary>
    public float WeightDecayDense { get; init; }
    /// <summary>How embedding tables are updated: lazy (touched rows; decay deferred) or dense (every row every step).</summary>
    public TableUpdateMode TableUpdate { get; init; } = TableUpdateMode.Lazy;
    /// <summary>The optimizer of the wide (linear) part of LR / WDL / DeepFM / xDeepFM; null = <see cref="Optimizer"/>.</summary>
    public OptimizerKind? WideOptimizer { get; init; }
    /// <summary>FTRL's α (per-coordinate rate α/(β + √n)). 1 with <see cref="FtrlL2"/> 1e-4: the grid point with the smallest
    /// worst-case validation regret over the Criteo sample's two splits and synthetic data with mostly rare ids (docs/results.md, "Defaults").</summary>
    public float FtrlAlpha { get; init; } = 1f;
    /// <summary>FTRL's β (the rate's offset; 1 is the paper's).</summary>
    public float FtrlBeta { get; init; } = 1f;
    /// <summary>FTRL's L1 λ1 (sparsity; 0 = off).</summary>
    public float FtrlL1 { get; init; }
    /// <summary>FTRL's L2 λ2 (per step in <see cref="FtrlRegularization.PerStep"/> mode: the L2 of the mean loss).</summary>
    public float FtrlL2 { get; init; } = 1e-4f;
    /// <summary>Whether FTRL's λ1/λ2 are absolute (the paper) or per step (converges to the regularised mean-loss optimum).</summary>
    public FtrlRegularization FtrlRegularization { get; init; } = FtrlRegularization.PerStep;
    /// <summary>Global gradient-norm clipping; null = none.</summary>
    public float? ClipNorm { get; init; }
    /// <summary>SGD momentum.</summary>
    public float Momentum { get; init; }
    /// <summary>Validations without improvement before stopping; 0 = never stop early.</summary>
    public int Patience { get; init; } = 3;
    /// <summary>Validate every N steps (as well as after each epoch); 0 = once per epoch.</summary>
    public int EvaluateEvery { get; init; }
    /// <summary>What early stopping watches: auc, logLoss, both (go on while either improves) or objectiveLoss.</summary>
    public StoppingMetric Metric { get; init; } = StoppingMetric.Both;
    /// <summary>Whose weights are restored; null: implied by <see cref="Metric"/> (both → logloss-guarded AUC).</summary>
    public SelectionMetric? RestoreBy { get; init; }
    /// <summary>Minimum improvement that counts (absolute).</summary>
    public double MinDelta { get; init; }
    /// <summary>The logloss band of the guarded-AUC selection (relative).</summary>
    public double GuardBand { get; init; } = 0.005;
    /// <summary>Guarded-AUC selection: the AUC gain over the lowest-logloss point must exceed this many standard errors (0 = any gain).</summary>
    public double GuardStandardErrors { get; init; }
    /// <summary>Reduce-on-plateau factor (1 = off).</summary>
    public double PlateauFactor { get; init; } = 0.1;
    /// <summary>Validations without improvement before the learning rate is reduced.</summary>
    public int PlateauPatience { get; init; } = 1;
    /// <summary>Shuffling seed of the trainer.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Shuffle the training rows each epoch (false: file order, e.g. to compare runs row for row).</summary>
    public bool Shuffle { get; init; } = true;
    /// <summary>
    /// Train the wide part first: a logistic regression over the same features fitted alone to its early stop, copied into
    /// the wide part, the other parts' output layers started at zero, and that start kept as a restore candidate
    /// (<see cref="WideFirst"/>, <see cref="TrainerOptions.ValidateAtStart"/>). For models with a wide part beside others,
    /// and for the DNN, DCN and DCN-V2, which have none: the logistic regression (FTRL unless <see cref="WideOptimizer"/> names
    /// another) is written into the DNN's own weights (<see cref="LinearInDnn"/>), so the model starts as that LR.
    /// </summary>
    public bool WideFirst { get; init; }
    /// <summary>Data-parallel runs: replicate every embedding table on every rank, or shard them by row over the ranks.</summary>
    public EmbeddingSharding EmbeddingSharding { get; init; } = EmbeddingSharding.Replicated;
    /// <summary>Budget of one rank for embedding-table weights plus their optimizer state, in bytes; 0 = no limit.</summary>
    public long MaxTableBytesPerRank { get; init; }

    /// <summary>Per-weight state buffers the configured optimizers keep (Adam 2, FTRL 2 — z and n —, Adagrad 1, SGD with
    /// momentum 1, plain SGD 0; with a separate wide-part optimizer, the larger of the two).</summary>
    public int OptimizerSlots => Math.Max(SlotsOf(Optimizer), WideOptimizer is { } wide ? SlotsOf(wide) : 0);

    private int SlotsOf(OptimizerKind kind) => kind switch
    {
        OptimizerKind.Adam or OptimizerKind.Ftrl => 2,
        OptimizerKind.Adagrad => 1,
        _ => Momentum > 0 ? 1 : 0,
    };

    /// <summary>
    /// The table placement for models of a run in <paramref name="group"/>: build them inside its
    /// <see cref="TablePlacement.Use"/> scope (replicated or row-sharded tables, checked against
    /// <see cref="MaxTableBytesPerRank"/> before they are allocated).
    /// </summary>
    public TablePlacement TablePlacement(IProcessGroup group) =>
        new(EmbeddingSharding, group, MaxTableBytesPerRank, OptimizerSlots);

    /// <summary>
    /// The defaults for a model kind (docs/results.md, "Defaults"): logistic regression trains with FTRL; a model with a
    /// wide part (FM, WDL, DeepFM, xDeepFM) trains that part with FTRL beside Adam 1e-3; DNN and DCN with
    /// <c>new TrainingSettings()</c>. Every model with a wide part beside others (FM, WDL, DeepFM, xDeepFM, FFM) trains it
    /// first (<see cref="WideFirst"/>): trained jointly from scratch, a [400, 400] DNN memorises small data within one or
    /// two epochs and early stopping ends the run before the wide part — a whole logistic regression that FTRL needs many
    /// epochs to fit — has converged (chosen on validation over four sets: it never lost more than 0.0011 AUC on one and
    /// gained up to 0.065 on another). The DNN (and DCN's and DCN-V2's DNN) starts from a fitted logistic regression written into its
    /// own weights (<see cref="LinearInDnn"/>) for the same reason: alone it ends below a plain LR in AUC and logloss on every set
    /// measured; from the LR it never does. WDL's and xDeepFM's deep parts trained at Adam 1e-4 while they trained jointly
    /// from scratch (the cure for that failure before wide-first); with the wide part first and its weights also in
    /// column 0 of their embedding they train at 1e-3 and learn interactions the slower rate never reached.
    /// </summary>
    public static TrainingSettings For(ModelKind kind) => kind switch
    {
        ModelKind.Lr => new TrainingSettings { Optimizer = OptimizerKind.Ftrl },
        ModelKind.Wdl or ModelKind.XDeepFm or ModelKind.DeepFm => new TrainingSettings { WideOptimizer = OptimizerKind.Ftrl, WideFirst = true },
        ModelKind.Fm => new TrainingSettings { WideOptimizer = OptimizerKind.Ftrl, WideFirst = true },
        ModelKind.Ffm => new TrainingSettings { WideFirst = true },
        ModelKind.Dnn or ModelKind.Dcn or ModelKind.DcnV2 => new TrainingSettings { WideFirst = true },
        _ => new TrainingSettings(),
    };

    /// <summary>Checks every setting; a bad one is a <see cref="ConfigException"/> naming it, prefixed with <paramref name="source"/>.</summary>
    public void Validate(string source = "training")
    {
        if (Epochs < 1) throw new ConfigException($"{source}: epochs = {Epochs}; expected ≥ 1.");
        if (BatchSize < 1) throw new ConfigException($"{source}: batchSize = {BatchSize}; expected ≥ 1.");
        if (!Enum.IsDefined(Optimizer)) throw new ConfigException($"{source}: optimizer = {(int)Optimizer} is not an optimizer.");
        if (WideOptimizer is { } wide && !Enum.IsDefined(wide)) throw new ConfigException($"{source}: wideOptimizer = {(int)wide} is not an optimizer.");
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate)) throw new ConfigException($"{source}: learningRate = {LearningRate}; expected > 0.");
        if (!(AdagradInitialAccumulator >= 0) || !float.IsFinite(AdagradInitialAccumulator))
            throw new ConfigException($"{source}: adagradInitialAccumulator = {AdagradInitialAccumulator}; expected ≥ 0.");
        if (AdagradInitialAccumulator > 0 && Optimizer != OptimizerKind.Adagrad && WideOptimizer != OptimizerKind.Adagrad)
            throw new ConfigException($"{source}: adagradInitialAccumulator = {AdagradInitialAccumulator} is for optimizer adagrad; the optimizer is {Optimizer.ToString().ToLowerInvariant()}.");
        if (WideLearningRate is { } wideLr && (!(wideLr > 0) || !float.IsFinite(wideLr)))
            throw new ConfigException($"{source}: wideLearningRate = {wideLr}; expected > 0.");
        if (WideLearningRate is not null && (WideOptimizer ?? Optimizer) == OptimizerKind.Ftrl)
            throw new ConfigException($"{source}: wideLearningRate is for adam, adagrad or sgd; the wide part's FTRL has its own α (ftrlAlpha).");
        if (WideAdagradInitialAccumulator is { } wideAcc)
        {
            if (!(wideAcc >= 0) || !float.IsFinite(wideAcc)) throw new ConfigException($"{source}: wideAdagradInitialAccumulator = {wideAcc}; expected ≥ 0.");
            if ((WideOptimizer ?? Optimizer) != OptimizerKind.Adagrad)
                throw new ConfigException($"{source}: wideAdagradInitialAccumulator is for a wide part trained with adagrad; it trains with {(WideOptimizer ?? Optimizer).ToString().ToLowerInvariant()}.");
        }
        if (!(L2Embedding >= 0) || !float.IsFinite(L2Embedding)) throw new ConfigException($"{source}: l2Embedding = {L2Embedding}; expected ≥ 0.");
        if (!(L2Dense >= 0) || !float.IsFinite(L2Dense)) throw new ConfigException($"{source}: l2Dense = {L2Dense}; expected ≥ 0.");
        if (L2Wide is { } l2Wide)
        {
            if (!(l2Wide >= 0) || !float.IsFinite(l2Wide)) throw new ConfigException($"{source}: l2Wide = {l2Wide}; expected ≥ 0.");
            if ((WideOptimizer ?? Optimizer) == OptimizerKind.Ftrl) throw new ConfigException($"{source}: l2Wide is for adam, adagrad or sgd; the wide part's FTRL has its own λ2 (ftrlL2).");
        }
        if (!(WeightDecayEmbedding >= 0) || !float.IsFinite(WeightDecayEmbedding)) throw new ConfigException($"{source}: weightDecayEmbedding = {WeightDecayEmbedding}; expected ≥ 0.");
        if (!(WeightDecayDense >= 0) || !float.IsFinite(WeightDecayDense)) throw new ConfigException($"{source}: weightDecayDense = {WeightDecayDense}; expected ≥ 0.");
        if (LearningRate * Math.Max(WeightDecayEmbedding, WeightDecayDense) >= 1)
            throw new ConfigException($"{source}: learningRate × weight decay = {LearningRate * Math.Max(WeightDecayEmbedding, WeightDecayDense)}; expected < 1 (the decay factor 1 − lr·δ must stay positive).");
        if (!Enum.IsDefined(TableUpdate)) throw new ConfigException($"{source}: tableUpdate = {(int)TableUpdate} is not a table update mode.");
        if (!(FtrlAlpha > 0) || !float.IsFinite(FtrlAlpha)) throw new ConfigException($"{source}: ftrlAlpha = {FtrlAlpha}; expected > 0.");
        if (!(FtrlBeta >= 0) || !float.IsFinite(FtrlBeta)) throw new ConfigException($"{source}: ftrlBeta = {FtrlBeta}; expected ≥ 0.");
        if (!(FtrlL1 >= 0) || !float.IsFinite(FtrlL1)) throw new ConfigException($"{source}: ftrlL1 = {FtrlL1}; expected ≥ 0.");
        if (!(FtrlL2 >= 0) || !float.IsFinite(FtrlL2)) throw new ConfigException($"{source}: ftrlL2 = {FtrlL2}; expected ≥ 0.");
        if (!Enum.IsDefined(FtrlRegularization)) throw new ConfigException($"{source}: ftrlRegularization = {(int)FtrlRegularization} is not a mode.");
        if (ClipNorm is { } c && !(c > 0)) throw new ConfigException($"{source}: clipNorm = {c}; expected > 0.");
        if (!(Momentum >= 0 && Momentum < 1)) throw new ConfigException($"{source}: momentum = {Momentum}; expected 0 ≤ momentum < 1.");
        if (Patience < 0) throw new ConfigException($"{source}: patience = {Patience}; expected ≥ 0.");
        if (EvaluateEvery < 0) throw new ConfigException($"{source}: evaluateEvery = {EvaluateEvery}; expected ≥ 0.");
        if (!Enum.IsDefined(Metric)) throw new ConfigException($"{source}: metric = {(int)Metric} is not a stopping metric.");
        if (RestoreBy is { } r && !Enum.IsDefined(r)) throw new ConfigException($"{source}: restoreBy = {(int)r} is not a selection metric.");
        if (!(MinDelta >= 0)) throw new ConfigException($"{source}: minDelta = {MinDelta}; expected ≥ 0.");
        if (!(GuardBand >= 0)) throw new ConfigException($"{source}: guardBand = {GuardBand}; expected ≥ 0.");
        if (!(GuardStandardErrors >= 0 && double.IsFinite(GuardStandardErrors))) throw new ConfigException($"{source}: guardStandardErrors = {GuardStandardErrors}; expected a finite value ≥ 0.");
        if (!(PlateauFactor > 0 && PlateauFactor <= 1)) throw new ConfigException($"{source}: plateauFactor = {PlateauFactor}; expected 0 < factor ≤ 1 (1 = off).");
        if (PlateauPatience < 1) throw new ConfigException($"{source}: plateauPatience = {PlateauPatience}; expected ≥ 1.");
        if (MaxTableBytesPerRank < 0) throw new ConfigException($"{source}: maxTableBytesPerRank = {MaxTableBytesPerRank}; expected ≥ 0 (0 = no limit).");
    }

    /// <summary>The settings as JSON (camelCase, as <see cref="ParseStrict{T}"/> reads them).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>The trainer's part of the settings (epochs, batch size, validation, stopping, seed, shuffling).</summary>
    public TrainerOptions ToTrainerOptions() => new()
    {
        Epochs = Epochs,
        BatchSize = BatchSize,
        EvaluateEvery = EvaluateEvery,
        Metric = Metric,
        RestoreBy = RestoreBy,
        Patience = Patience,
        MinDelta = MinDelta,
        GuardBand = GuardBand,
        GuardStandardErrors = GuardStandardErrors,
        PlateauFactor = PlateauFactor,
        PlateauPatience = PlateauPatience,
        Seed = Seed,
        Shuffle = Shuffle,
    };

    /// <summary>The settings that decide a run, in one line (printed by the CLI so a run can be repeated).</summary>
    public string Describe()
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        string Rule(OptimizerKind k) => k == OptimizerKind.Ftrl
            ? string.Create(inv, $"ftrl α {FtrlAlpha} β {FtrlBeta} λ1 {FtrlL1} λ2 {FtrlL2} ({(FtrlRegularization == FtrlRegularization.PerStep ? "per step" : "absolute")})")
            : string.Create(inv, $"{k.ToString().ToLowerInvariant()} lr {LearningRate}{(k == OptimizerKind.Sgd && Momentum > 0 ? $" momentum {Momentum}" : "")}"
                + $"{(k == OptimizerKind.Adagrad && AdagradInitialAccumulator > 0 ? $" initial accumulator {AdagradInitialAccumulator}" : "")}");
        var parts = new List<string> { Rule(Optimizer) };
        if (WideOptimizer is { } w && w != Optimizer) parts.Add("wide part: " + Rule(w));
        if (WideLearningRate is { } wideRate) parts.Add(string.Create(inv, $"wide part lr {wideRate}"));
        if (WideAdagradInitialAccumulator is { } wideStart) parts.Add(string.Create(inv, $"wide part initial accumulator {wideStart}"));
        if (Optimizer != OptimizerKind.Ftrl)
        {
            if (L2Embedding > 0 || L2Dense > 0) parts.Add(string.Create(inv, $"L2 embedding {L2Embedding} dense {L2Dense}"));
            if (L2Wide is { } l2Wide) parts.Add(string.Create(inv, $"L2 wide {l2Wide}"));
            if (WeightDecayEmbedding > 0 || WeightDecayDense > 0) parts.Add(string.Create(inv, $"weight decay embedding {WeightDecayEmbedding} dense {WeightDecayDense}"));
        }
        parts.Add($"{TableUpdate.ToString().ToLowerInvariant()} tables");
        if (ClipNorm is { } c) parts.Add(string.Create(inv, $"clip {c}"));
        parts.Add(string.Create(inv, $"batch {BatchSize}, ≤ {Epochs} epochs"));
        string metric = Metric switch { StoppingMetric.Both => "AUC or logloss", StoppingMetric.LogLoss => "logloss", StoppingMetric.Auc => "AUC", _ => "objective loss" };
        var selection = ToTrainerOptions().Selection;
        string restore = selection switch
        {
            SelectionMetric.GuardedAuc => string.Create(inv, $"best AUC within {GuardBand * 100:G3}% of the lowest logloss")
                + (GuardStandardErrors > 0 ? string.Create(inv, $", {GuardStandardErrors:G3} SE above its AUC") : ""),
            SelectionMetric.Last => "last point (nothing restored)",
            _ => "best " + selection.ToString().ToLowerInvariant(),
        };
        string delta = MinDelta > 0 ? string.Create(inv, $", min-delta {MinDelta}") : "";
        string every = EvaluateEvery > 0 ? string.Create(inv, $", every {EvaluateEvery} steps and epoch") : ", every epoch";
        parts.Add(string.Create(inv, $"early stopping on validation {metric} (patience {Patience}{delta}{every}), restoring the {restore}"));
        if (PlateauFactor < 1) parts.Add(string.Create(inv, $"lr × {PlateauFactor} after {PlateauPatience} validation(s) without improvement"));
        if (WideFirst) parts.Add("wide part fitted first (the start kept as a candidate)");
        parts.Add(string.Create(inv, $"seed {Seed}"));
        return string.Join("; ", parts);
    }

    /// <summary>Whether a parameter belongs to a model's wide (linear) part: named <c>linear.…</c> at any depth (<c>linear.C1.weight</c>, <c>linear.bias</c>).</summary>
    public static bool IsWideParameter(string? name) =>
        name is not null && (name.StartsWith("linear.", StringComparison.Ordinal) || name.Contains(".linear.", StringComparison.Ordinal));

    /// <summary>
    /// Builds the optimizer over <paramref name="parameters"/> (named, as a module tree gives them) with the learning rate,
    /// L2, decay, table mode and clipping set. With a <see cref="WideOptimizer"/> other than <see cref="Optimizer"/>, the wide
    /// part gets its own optimizer and the two step together (<see cref="OptimizerGroup"/>).
    /// </summary>
    public IOptimizer BuildOptimizer(IEnumerable<Tensor<float>> parameters)
    {
        Validate();
        var all = parameters.ToArray();
        var wideKind = WideOptimizer ?? Optimizer;
        bool separateWide = wideKind != Optimizer || L2Wide is not null || WideLearningRate is not null || WideAdagradInitialAccumulator is not null;
        var wide = separateWide ? all.Where(p => IsWideParameter(p.Name)).ToArray() : [];
        var rest = wide.Length == 0 ? all : all.Where(p => !IsWideParameter(p.Name)).ToArray();
        if (rest.Length == 0) return ConfigureWide(Configure(BuildWide(wideKind, wide), clip: true));
        if (wide.Length == 0) return Configure(Build(Optimizer, rest), clip: true);
        return new OptimizerGroup(ConfigureWide(Configure(BuildWide(wideKind, wide), clip: false)), Configure(Build(Optimizer, rest), clip: false)) { ClipNorm = ClipNorm };
    }

    private KdEngine.Training.Optimizer ConfigureWide(KdEngine.Training.Optimizer opt)
    {
        if (L2Wide is { } l2 && opt is not Ftrl) opt.EmbeddingL2 = opt.DenseL2 = l2;
        return opt;
    }

    private KdEngine.Training.Optimizer BuildWide(OptimizerKind kind, Tensor<float>[] parameters) =>
        Build(kind, parameters, WideLearningRate ?? LearningRate, WideAdagradInitialAccumulator ?? AdagradInitialAccumulator);

    private KdEngine.Training.Optimizer Build(OptimizerKind kind, Tensor<float>[] parameters) => Build(kind, parameters, LearningRate, AdagradInitialAccumulator);

    private KdEngine.Training.Optimizer Build(OptimizerKind kind, Tensor<float>[] parameters, float learningRate, float adagradInitialAccumulator) => kind switch
    {
        OptimizerKind.Adam => new Adam(parameters, learningRate),
        OptimizerKind.Adagrad => new Adagrad(parameters, learningRate, adagradInitialAccumulator),
        OptimizerKind.Sgd => new Sgd(parameters, learningRate, Momentum),
        OptimizerKind.Ftrl => new Ftrl(parameters, FtrlAlpha, FtrlBeta, FtrlL1, FtrlL2, FtrlRegularization),
        _ => throw new ConfigException($"training: unknown optimizer {kind}."),
    };

    private KdEngine.Training.Optimizer Configure(KdEngine.Training.Optimizer opt, bool clip)
    {
        opt.TableUpdate = TableUpdate;
        if (opt is not Ftrl)
        {
            opt.EmbeddingL2 = L2Embedding;
            opt.DenseL2 = L2Dense;
            opt.EmbeddingWeightDecay = WeightDecayEmbedding;
            opt.DenseWeightDecay = WeightDecayDense;
        }
        if (clip) opt.ClipNorm = ClipNorm;
        return opt;
    }

    /// <summary>Parses <c>adam</c>, <c>adagrad</c> or <c>sgd</c> (case-insensitive); anything else is an <see cref="ArgumentException"/>.</summary>
    public static OptimizerKind ParseOptimizer(string text) => text.ToLowerInvariant() switch
    {
        "adam" => OptimizerKind.Adam,
        "adagrad" => OptimizerKind.Adagrad,
        "sgd" => OptimizerKind.Sgd,
        "ftrl" => OptimizerKind.Ftrl,
        _ => throw new ArgumentException($"unknown optimizer '{text}' (expected adam|adagrad|sgd|ftrl)."),
    };

    /// <summary>auc|logloss|both|objective|kd (case-insensitive; kd: the distillation term, for distillation objectives).</summary>
    public static StoppingMetric ParseMetric(string text) => text.ToLowerInvariant() switch
    {
        "auc" => StoppingMetric.Auc,
        "logloss" => StoppingMetric.LogLoss,
        "both" => StoppingMetric.Both,
        "objective" => StoppingMetric.ObjectiveLoss,
        "kd" => StoppingMetric.DistillationLoss,
        _ => throw new ArgumentException($"unknown stopping metric '{text}' (expected auc|logloss|both|objective|kd)."),
    };

    /// <summary>auc|logloss|guarded-auc|objective|kd|last (case-insensitive).</summary>
    public static SelectionMetric ParseSelection(string text) => text.ToLowerInvariant() switch
    {
        "auc" => SelectionMetric.Auc,
        "logloss" => SelectionMetric.LogLoss,
        "guarded-auc" or "guardedauc" => SelectionMetric.GuardedAuc,
        "objective" => SelectionMetric.ObjectiveLoss,
        "kd" => SelectionMetric.DistillationLoss,
        "last" => SelectionMetric.Last,
        _ => throw new ArgumentException($"unknown selection metric '{text}' (expected auc|logloss|guarded-auc|objective|kd|last)."),
    };

    /// <summary>lazy|dense (case-insensitive).</summary>
    public static TableUpdateMode ParseTableUpdate(string text) => text.ToLowerInvariant() switch
    {
        "lazy" => TableUpdateMode.Lazy,
        "dense" => TableUpdateMode.Dense,
        _ => throw new ArgumentException($"unknown table update mode '{text}' (expected lazy|dense)."),
    };

    /// <summary>Strict JSON options shared by the pipeline's config records (camelCase, unknown keys rejected).</summary>
    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase, allowIntegerValues: false) },
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        WriteIndented = true,
    };

    /// <summary>Deserializes a strict JSON config record; errors name the file and the key.</summary>
    internal static T ParseStrict<T>(string json, string source) where T : class
    {
        T? value;
        try
        {
            value = JsonSerializer.Deserialize<T>(json, Json);
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{source}: {ModelConfig.Describe(e)}", e);
        }
        return value ?? throw new ConfigException($"{source}: the config is empty (null).");
    }
}
