using System.Diagnostics;
using KdEngine.Autograd;
using KdEngine.Data;
using KdEngine.Metrics;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Sharding;
using KdEngine.Tensors;

namespace KdEngine.Training;

/// <summary>Trainer settings; every value is validated with a message naming it.</summary>
public sealed record TrainerOptions
{
    /// <summary>The maximum number of epochs (early stopping usually ends training before).</summary>
    public int Epochs { get; init; } = 1;
    /// <summary>Rows per step (per rank when training data-parallel).</summary>
    public int BatchSize { get; init; } = 256;
    /// <summary>Validate every N steps as well as at the end of every epoch; 0 validates once per epoch.</summary>
    public int EvaluateEvery { get; init; }
    /// <summary>What early stopping watches (see <see cref="EarlyStopping"/>).</summary>
    public StoppingMetric Metric { get; init; } = StoppingMetric.Auc;
    /// <summary>
    /// Which validation point's weights are restored; null derives it from <see cref="Metric"/>: AUC → AUC, logloss →
    /// logloss, objective loss → objective loss, both → logloss-guarded AUC.
    /// </summary>
    public SelectionMetric? RestoreBy { get; init; }
    /// <summary>Stop after this many validations without improvement; 0 never stops early.</summary>
    public int Patience { get; init; } = 2;
    /// <summary>An improvement must exceed this (absolute, in AUC or logloss units).</summary>
    public double MinDelta { get; init; }
    /// <summary>The logloss band of <see cref="SelectionMetric.GuardedAuc"/>, relative to the lowest logloss (0.005 = 0.5 %).</summary>
    public double GuardBand { get; init; } = 0.005;
    /// <summary>
    /// <see cref="SelectionMetric.GuardedAuc"/>: a point other than the lowest-logloss one must beat its AUC by more than this
    /// many standard errors of the validation AUC (0, the default = any gain; see <see cref="EarlyStopping"/>).
    /// </summary>
    public double GuardStandardErrors { get; init; }
    /// <summary>Reduce-on-plateau: multiply the learning rate by this after <see cref="PlateauPatience"/> validations without improvement; 1 = off.</summary>
    public double PlateauFactor { get; init; } = 1;
    /// <summary>Validations without improvement before the learning rate is reduced.</summary>
    public int PlateauPatience { get; init; } = 1;
    /// <summary>Reduce-on-plateau never takes the learning rate below this.</summary>
    public float MinLearningRate { get; init; } = 1e-6f;
    /// <summary>At the end, put back the weights of the selected validation point (<see cref="RestoreBy"/>).</summary>
    public bool RestoreBest { get; init; } = true;
    /// <summary>Shuffle the training rows each epoch (seeded by <see cref="Seed"/> + epoch).</summary>
    public bool Shuffle { get; init; } = true;
    /// <summary>Seed of the shuffling.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Optional learning-rate schedule, applied before every step.</summary>
    public LearningRateSchedule? Schedule { get; init; }
    /// <summary>
    /// Where periodic training checkpoints go (weights, optimizer state, trainer position; see
    /// <see cref="Trainer.Resume"/>); null = none. Each is written atomically, so a crash or a divergence keeps
    /// the last good one.
    /// </summary>
    public string? CheckpointPath { get; init; }
    /// <summary>Write a checkpoint every N optimizer steps (needs <see cref="CheckpointPath"/>); 0 = never.</summary>
    public int CheckpointEvery { get; init; }
    /// <summary>Called after every validation with the point (e.g. a live table of a search); null = none.</summary>
    public Action<ValidationPoint>? OnValidation { get; init; }
    /// <summary>
    /// Validate once before the first step (step 0, epoch 0), so the starting weights are a candidate for the restored point
    /// like any later one: a model started from a fitted part (a wide part trained first) ends no worse on validation than
    /// where it started. The start sets no reference for patience or plateau reductions, which count from the first trained
    /// point (<see cref="EarlyStopping.Observe"/>). Not repeated when a run resumes.
    /// </summary>
    public bool ValidateAtStart { get; init; }

    /// <summary>The selection metric in effect (<see cref="RestoreBy"/> or the one <see cref="Metric"/> implies).</summary>
    public SelectionMetric Selection => RestoreBy ?? Metric switch
    {
        StoppingMetric.Auc => SelectionMetric.Auc,
        StoppingMetric.LogLoss => SelectionMetric.LogLoss,
        StoppingMetric.ObjectiveLoss => SelectionMetric.ObjectiveLoss,
        StoppingMetric.DistillationLoss => SelectionMetric.DistillationLoss,
        _ => SelectionMetric.GuardedAuc,
    };

    /// <summary>Checks every option; a bad one is an <see cref="ArgumentException"/> naming it.</summary>
    public void Validate()
    {
        if (Epochs < 1) throw new ArgumentException($"trainer: epochs = {Epochs}; expected ≥ 1.");
        if (BatchSize < 1) throw new ArgumentException($"trainer: batchSize = {BatchSize}; expected ≥ 1.");
        if (EvaluateEvery < 0) throw new ArgumentException($"trainer: evaluateEvery = {EvaluateEvery}; expected ≥ 0.");
        if (Patience < 0) throw new ArgumentException($"trainer: patience = {Patience}; expected ≥ 0.");
        if (!Enum.IsDefined(Metric)) throw new ArgumentException($"trainer: metric = {(int)Metric} is not a stopping metric.");
        if (RestoreBy is { } r && !Enum.IsDefined(r)) throw new ArgumentException($"trainer: restoreBy = {(int)r} is not a selection metric.");
        if (!(MinDelta >= 0)) throw new ArgumentException($"trainer: minDelta = {MinDelta}; expected ≥ 0.");
        if (!(GuardBand >= 0)) throw new ArgumentException($"trainer: guardBand = {GuardBand}; expected ≥ 0.");
        if (!(GuardStandardErrors >= 0 && double.IsFinite(GuardStandardErrors))) throw new ArgumentException($"trainer: guardStandardErrors = {GuardStandardErrors}; expected a finite value ≥ 0.");
        if (!(PlateauFactor > 0 && PlateauFactor <= 1)) throw new ArgumentException($"trainer: plateauFactor = {PlateauFactor}; expected 0 < factor ≤ 1 (1 = off).");
        if (PlateauPatience < 1) throw new ArgumentException($"trainer: plateauPatience = {PlateauPatience}; expected ≥ 1.");
        if (!(MinLearningRate >= 0)) throw new ArgumentException($"trainer: minLearningRate = {MinLearningRate}; expected ≥ 0.");
        if (CheckpointEvery < 0) throw new ArgumentException($"trainer: checkpointEvery = {CheckpointEvery}; expected ≥ 0.");
        if (CheckpointEvery > 0 && string.IsNullOrEmpty(CheckpointPath))
            throw new ArgumentException($"trainer: checkpointEvery = {CheckpointEvery} needs a checkpointPath.");
    }

    internal EarlyStopping NewEarlyStopping() =>
        new(Metric, Selection, Patience, MinDelta, GuardBand, PlateauFactor, PlateauPatience, GuardStandardErrors);
}

/// <summary>One validation point of a training run (<see cref="ObjectiveLoss"/> and <see cref="DistillationLoss"/> are NaN unless watched).</summary>
/// <param name="Step">Optimizer steps taken before this validation (0: the starting weights).</param>
/// <param name="Epoch">The epoch it ended or fell in (0: before training).</param>
/// <param name="Auc">Validation AUC.</param>
/// <param name="LogLoss">Validation logloss.</param>
/// <param name="ObjectiveLoss">The objective's validation loss (NaN unless watched).</param>
/// <param name="TrainLoss">Mean training loss since the previous validation.</param>
/// <param name="DistillationLoss">The distillation term on validation (NaN unless watched).</param>
/// <param name="AucStandardError">The standard error of <paramref name="Auc"/> from the validation set's class counts
/// (<see cref="Metrics.CtrMetrics.AucStandardError"/>); NaN when unknown. Logloss-guarded selection uses it.</param>
public sealed record ValidationPoint(long Step, int Epoch, double Auc, double LogLoss, double ObjectiveLoss, double TrainLoss,
    double DistillationLoss = double.NaN, double AucStandardError = double.NaN);

/// <summary>The outcome of <see cref="Trainer.Fit"/>.</summary>
/// <param name="History">Every validation point, in order.</param>
/// <param name="Steps">Optimizer steps taken.</param>
/// <param name="Elapsed">Wall-clock training time.</param>
/// <param name="StoppedEarly">Whether early stopping ended training before the epoch limit.</param>
/// <param name="Best">The selected validation point: its weights were restored (with <see cref="TrainerOptions.RestoreBest"/>).</param>
/// <param name="StopReason">Why training ended, in words (patience, the epoch limit, …), with how the restored point was chosen.</param>
public sealed record TrainingReport(IReadOnlyList<ValidationPoint> History, ValidationPoint? Best, long Steps, TimeSpan Elapsed, bool StoppedEarly,
    string StopReason = "")
{
    /// <summary>Time spent waiting for the next training batch (reading, parsing, shuffling): the input's share of <see cref="Elapsed"/>.</summary>
    public TimeSpan InputTime { get; init; }

    /// <summary>Time spent on validation.</summary>
    public TimeSpan ValidationTime { get; init; }

    /// <summary>With a wide-first start (<c>TrainingSettings.WideFirst</c>): the report of the first stage, the wide part
    /// fitted alone; null otherwise.</summary>
    public TrainingReport? WideStage { get; init; }
}

/// <summary>Training stopped because a loss or a gradient became NaN or infinite.</summary>
public sealed class TrainingDivergedException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Runs any <see cref="IObjective"/> (plain training or a distillation method) with an optimizer: seeded
/// shuffling, periodic validation, early stopping restoring the best weights, NaN/Inf detection, progress.
/// One tape is reused across steps, so steady-state steps rent their buffers from the pool.
/// </summary>
/// <remarks>
/// Data-parallel: given an <see cref="IProcessGroup"/> of N processes, each holding its own shard of the train and
/// validation rows (<see cref="Shard"/>), the trainer broadcasts rank 0's weights before the first step, averages the
/// gradients over the ranks after each backward (<see cref="IProcessGroup.AverageGradients"/>) and computes every
/// validation metric over all ranks' shards together, so every rank takes the same decisions (early stopping, best
/// weights) and keeps the same weights. Every rank takes the same number of steps per epoch: the fewest any rank's
/// shard gives (shards differ by at most one row, so at most one short batch per epoch is left out). Only rank 0
/// writes training checkpoints; give the others no progress writer.
/// </remarks>
public sealed class Trainer
{
    private readonly TrainerOptions _options;
    private readonly TextWriter? _progress;
    private readonly bool _interactive;
    private readonly IProcessGroup _group;

    /// <param name="options">Epochs, batch size, validation, early stopping (validated here).</param>
    /// <param name="progress">Where progress goes (null: silent).</param>
    /// <param name="interactive">Redraw one status line (a terminal) instead of printing plain lines.</param>
    /// <param name="group">The processes training together (see the class remarks); null: this process alone.</param>
    public Trainer(TrainerOptions options, TextWriter? progress = null, bool interactive = false, IProcessGroup? group = null)
    {
        options.Validate();
        _options = options;
        _progress = progress;
        _interactive = interactive;
        _group = group ?? SingleProcess.Instance;
    }

    /// <summary>
    /// Trains <paramref name="objective"/> with <paramref name="optimizer"/> on <paramref name="train"/> (in memory),
    /// validating on <paramref name="validation"/> (null: no validation, no early stopping) per the options.
    /// Throws <see cref="TrainingDivergedException"/> when a loss, gradient or weight becomes NaN or infinite.
    /// </summary>
    public TrainingReport Fit(IObjective objective, IOptimizer optimizer, EncodedDataset train, EncodedDataset? validation) =>
        Run(objective, optimizer, InMemory(train), StepsPerEpoch(train.Count), validation, null, new TrainerPosition());

    /// <summary>
    /// Trains on batches that stream from a file (e.g. <see cref="Streaming.Batches(IEnumerable{IRowBlock}, FeatureSpace, int, int, int, bool)"/> with a seeded shuffle buffer),
    /// so data larger than memory trains without being loaded: <paramref name="batchesOfEpoch"/>(epoch) yields
    /// epoch's batches (one pass each; re-open the reader per epoch, with seed + epoch for a new order). Validation,
    /// early stopping, NaN detection and checkpoints work as in <see cref="Fit"/>; <paramref name="stepsPerEpoch"/>
    /// only feeds the progress display's ETA (0 when unknown).
    /// </summary>
    public TrainingReport FitStream(IObjective objective, IOptimizer optimizer, Func<int, IEnumerable<Batch>> batchesOfEpoch,
        EncodedDataset? validation, long stepsPerEpoch = 0)
    {
        if (_group.Size > 1)
            throw new NotSupportedException($"Trainer.FitStream: streamed batches have no known count per rank, so {_group.Size} ranks cannot agree on the steps of an epoch; train data-parallel from in-memory shards (Fit).");
        return Run(objective, optimizer, batchesOfEpoch, stepsPerEpoch, validation, null, new TrainerPosition());
    }

    /// <summary>
    /// <see cref="FitStream(IObjective, IOptimizer, Func{int, IEnumerable{Batch}}, EncodedDataset?, long)"/> with a validation
    /// set that streams too: <paramref name="validationBatches"/>(batchSize) yields one pass over it (only its logits and
    /// labels, 8 bytes per row, are kept for the metrics).
    /// </summary>
    public TrainingReport FitStream(IObjective objective, IOptimizer optimizer, Func<int, IEnumerable<Batch>> batchesOfEpoch,
        Func<int, IEnumerable<Batch>>? validationBatches, long stepsPerEpoch = 0)
    {
        if (_group.Size > 1)
            throw new NotSupportedException($"Trainer.FitStream: streamed batches have no known count per rank, so {_group.Size} ranks cannot agree on the steps of an epoch; train data-parallel from in-memory shards (Fit).");
        return Run(objective, optimizer, batchesOfEpoch, stepsPerEpoch, null, validationBatches, new TrainerPosition());
    }

    private Func<int, IEnumerable<Batch>> InMemory(EncodedDataset train) =>
        epoch => train.Batches(_options.BatchSize, _options.Shuffle, _options.Seed + epoch);

    /// <summary>Batches per epoch: of this rank's rows alone, or the fewest over all ranks (every rank must step together).</summary>
    private long StepsPerEpoch(int rows) => _group.AllReduceMin((rows + _options.BatchSize - 1) / _options.BatchSize);

    /// <summary>
    /// Continues the run saved in the training checkpoint <paramref name="path"/> (written by a trainer with
    /// <see cref="TrainerOptions.CheckpointPath"/>): restores the weights, the optimizer state and the trainer
    /// position (epoch, batch within the epoch, global step, early-stopping state and best weights), then trains
    /// to the end as <see cref="Fit"/> would have. With the same options, data and a freshly built objective and
    /// optimizer, the result is bit-identical to an uninterrupted single-threaded run. Everything is validated
    /// before anything is written, so a bad checkpoint (<see cref="Serving.CheckpointFormatException"/>) leaves
    /// the objective and optimizer untouched.
    /// </summary>
    public TrainingReport Resume(string path, IObjective objective, IOptimizer optimizer, EncodedDataset train, EncodedDataset? validation)
    {
        var position = TrainingCheckpoint.Load(path, _options, objective.Trainable.Parameters(), optimizer, _group);
        // The file holds the loss terms per step (see SaveCheckpoint): here each step has one term per rank, all on rank 0.
        (position.LossSum, position.LossCount) = _group.Rank == 0 ? (position.LossSum * _group.Size, position.LossCount * _group.Size) : (0, 0);
        return Run(objective, optimizer, InMemory(train), StepsPerEpoch(train.Count), validation, null, position);
    }

    private TrainingReport Run(IObjective objective, IOptimizer optimizer, Func<int, IEnumerable<Batch>> batchesOfEpoch, long stepsPerEpoch,
        EncodedDataset? validation, Func<int, IEnumerable<Batch>>? validationStream, TrainerPosition state)
    {
        bool validates = validation is not null || validationStream is not null;
        long inputTicks = 0, validationTicks = 0;
        var o = _options;
        var stopwatch = Stopwatch.StartNew();
        var history = state.History;
        bool stoppedEarly = false;
        string stopReason = "";
        var parameters = objective.Trainable.Parameters();
        long totalSteps = stepsPerEpoch * o.Epochs;
        long examples = 0;
        var lastReport = TimeSpan.Zero;
        var scratches = new[] { new BatchScratch(), new BatchScratch() }; // two: with lookahead, the next batch is copied before this one is done
        int scratch = 0;
        var auxiliary = new List<Tensor<float>>();
        var stopping = o.NewEarlyStopping();
        stopping.State = state.Stopping;
        if (o.Schedule is not null && !optimizer.SchedulesLearningRate)
            throw new ArgumentException($"trainer: a learning-rate schedule was given, but {optimizer.Description} keeps its rate fixed.");
        float baseRate = optimizer.LearningRate;
        using var tape = new Tape<float>();
        bool parallel = _group.Size > 1;

        // Row-sharded tables (Sharding.RowSharding): each rank holds its rows of every table. They are fetched for each
        // batch before the forward and their gradients sent to their owners after the backward; only the replicated
        // (dense) parameters are broadcast and allreduced.
        var sharding = RowSharding.Of(objective.Trainable) ?? RowSharding.Of(objective.Predictor);
        if (sharding is not null && sharding.Group.Size != _group.Size)
            throw new InvalidOperationException($"Trainer: the tables are row-sharded over {sharding.Group.Size} rank(s) but the trainer's group has {_group.Size}.");
        var replicated = sharding is null ? parameters : parameters.Where(p => p.Tensor.RowShard is null).ToArray();
        var owned = new HashSet<Tensor<float>>(parameters.Where(p => p.Tensor.RowShard is not null).Select(p => p.Tensor), ReferenceEqualityComparer.Instance);
        var plan = sharding?.PlanForAll();
        bool lookahead = sharding is { Prefetch: true };
        if (parallel)
        {
            _group.BroadcastParameters(replicated);
            optimizer.ReloadDeviceParameters();
        }

        // The starting weights as validation point 0 (a fresh run only: a resumed one has its history).
        if (o.ValidateAtStart && validates && state.Step == 0 && history.Count == 0) Validate(0, 0, start: true);

        for (int epoch = state.Epoch; epoch <= o.Epochs && !stoppedEarly; epoch++)
        {
            objective.Trainable.Training = true;
            int skip = epoch == state.Epoch ? state.BatchInEpoch : 0; // batches a resumed epoch already trained on
            state.Epoch = epoch;
            state.BatchInEpoch = 0;
            var epochClock = Stopwatch.StartNew();
            int pulled = 0;
            using var batches = batchesOfEpoch(epoch).GetEnumerator();

            // The next batch to train on, copied (the source reuses its views) and, with sharded tables, its lookup
            // begun; false at the end of the epoch (or of the steps every rank can take).
            bool Pull(out CtrBatch next, out RowLookup? lookup)
            {
                next = default;
                lookup = null;
                while (true)
                {
                    if (parallel && pulled >= stepsPerEpoch) return false; // another rank's shard has no batch left
                    long waitStart = Stopwatch.GetTimestamp();
                    bool more = batches.MoveNext();
                    inputTicks += Stopwatch.GetTimestamp() - waitStart;
                    if (!more) return false;
                    pulled++;
                    if (pulled <= skip) { state.BatchInEpoch++; continue; }
                    scratch ^= 1;
                    next = scratches[scratch].From(batches.Current);
                    if (sharding is not null) lookup = sharding.BeginLookup(next, plan!);
                    return true;
                }
            }

            bool have = Pull(out var upcoming, out var upcomingLookup);
            while (have)
            {
                var ctr = upcoming;
                var lookup = upcomingLookup;
                if (lookup is not null) ctr = sharding!.CompleteLookup(lookup);
                // With lookahead the next batch's ids travel to their owners while this batch computes; its rows are
                // fetched only after this step's update (they change in it).
                have = lookahead && Pull(out upcoming, out upcomingLookup);
                long step = state.Step;
                tape.Reset();
                if (optimizer.SchedulesLearningRate && (o.Schedule is not null || state.LearningRateScale != 1))
                    optimizer.LearningRate = (float)((o.Schedule?.LearningRate(step) ?? baseRate) * state.LearningRateScale);
                objective.Trainable.RandomStep = step;
                Tensor<float> loss;
                try { loss = objective.Loss(ctr, step, null); }
                catch (ArgumentException e) when (e.Data.Contains(Ops.OpChecks.NonFiniteKey) || FirstNonFinite(parameters) is not null)
                {
                    // Ops reject non-finite inputs (e.g. BceWithLogits on NaN logits): the forward overflowed or a
                    // weight went bad. Report it as divergence, with the step and the tensor.
                    var bad = FirstNonFinite(parameters);
                    throw new TrainingDivergedException($"training diverged at step {step} (epoch {epoch}): "
                        + (bad is { } p ? $"parameter '{p.Name}' {p.Tensor.Shape} holds NaN or Inf" : "the forward pass overflowed")
                        + $", so the loss could not be computed ({e.Message})", e);
                }
                float value = loss.Item();
                if (!float.IsFinite(value))
                    throw new TrainingDivergedException($"training diverged at step {step} (epoch {epoch}): the loss is {value}.");
                // Regularisation terms the modules computed in this forward (e.g. L2 on the looked-up embeddings).
                objective.Trainable.TakeAuxiliaryLosses(auxiliary);
                foreach (var term in auxiliary) loss = Ops.Op.Add(loss, term);
                tape.Backward(loss);
                if (lookup is not null) sharding!.PushGradients(lookup, owned);
                if (parallel) _group.AverageGradients(replicated, ctr.Size);
                CheckGradients(parameters, step);
                optimizer.Step();
                state.Step = ++step;
                state.BatchInEpoch++;
                state.LossSum += value; state.LossCount++;
                examples += (long)ctr.Size * _group.Size;
                if (_progress is not null && (stopwatch.Elapsed - lastReport).TotalSeconds >= (_interactive ? 0.2 : 5))
                {
                    lastReport = stopwatch.Elapsed;
                    Report(epoch, state.BatchInEpoch, stepsPerEpoch, step, totalSteps, examples, state.LossSum / state.LossCount, stopwatch.Elapsed, epochClock.Elapsed);
                }
                bool validateNow = validates && o.EvaluateEvery > 0 && step % o.EvaluateEvery == 0;
                if (validateNow && Validate(step, epoch))
                {
                    stoppedEarly = true;
                    if (have && upcomingLookup is not null) sharding!.CancelLookup(upcomingLookup); // every rank stops here
                    break;
                }
                if (o.CheckpointEvery > 0 && step % o.CheckpointEvery == 0) SaveCheckpoint(parameters, optimizer, state, sharding is not null);
                if (!lookahead) have = Pull(out upcoming, out upcomingLookup);
            }
            // Every epoch ends with a validation, unless one just ran at this very step.
            bool validatedHere = history.Count > 0 && history[^1].Step == state.Step;
            if (!stoppedEarly && validates && !validatedHere && Validate(state.Step, epoch, last: epoch == o.Epochs)) stoppedEarly = true;
        }
        if (_interactive && _progress is not null) _progress.WriteLine();
        optimizer.ApplyDeferredRows(); // the final weights (or the snapshot below) hold every row's deferred decay
        if (o.RestoreBest && state.BestWeights is not null)
        {
            Restore(parameters, state.BestWeights);
            optimizer.ReloadDeviceParameters(); // device parameters have a host mirror in the optimizer; deferred rows are current
        }
        objective.Trainable.Training = false;
        if (!stoppedEarly)
            stopReason = !validates ? $"trained the maximum of {o.Epochs} epochs (no validation data)"
                : $"reached the maximum of {o.Epochs} epochs" + (stopping.State.SinceImprovement == 0
                    ? " while validation was still improving (raise the epoch limit to train longer)"
                    : $" ({stopping.State.SinceImprovement} validations without improvement at the end)");
        if (stopping.Selected is { } chosen)
            stopReason += $"; restored {stopping.SelectionText()}: step {chosen.Step} (epoch {chosen.Epoch}, AUC {chosen.Auc:F4}, logloss {chosen.LogLoss:F5})";
        if (!o.RestoreBest) stopReason += "; weights of the last step kept (restoring is off)";
        _progress?.WriteLine("stopped: " + stopReason);
        return new TrainingReport(history, stopping.Selected, state.Step, stopwatch.Elapsed, stoppedEarly, stopReason)
        {
            InputTime = TimeSpan.FromSeconds(inputTicks / (double)Stopwatch.Frequency),
            ValidationTime = TimeSpan.FromSeconds(validationTicks / (double)Stopwatch.Frequency),
        };

        // Validates, records, tracks the selected weights; true when training should stop.
        bool Validate(long atStep, int epoch, bool last = false, bool start = false)
        {
            optimizer.ApplyDeferredRows(); // snapshots below copy whole tables
            long validationStart = Stopwatch.GetTimestamp();
            var evaluated = validation is not null
                ? Evaluate(objective.Predictor, validation, Math.Max(o.BatchSize, 1024), _group).Result
                : Evaluate(objective.Predictor, validationStream!(Math.Max(o.BatchSize, 1024))).Result;
            double objectiveLoss = o.Metric != StoppingMetric.ObjectiveLoss && o.Selection != SelectionMetric.ObjectiveLoss ? double.NaN
                : validation is not null ? ObjectiveLoss(objective, validation, o.BatchSize, _group)
                : ObjectiveLoss(objective, validationStream!(o.BatchSize));
            double distillationLoss = o.Metric != StoppingMetric.DistillationLoss && o.Selection != SelectionMetric.DistillationLoss ? double.NaN
                : validation is not null ? ObjectiveTerm(objective, validation, DistillationTerm, o.BatchSize, _group)
                : ObjectiveTerm(objective, validationStream!(o.BatchSize), DistillationTerm);
            validationTicks += Stopwatch.GetTimestamp() - validationStart;
            Span<double> trainLoss = [state.LossSum, state.LossCount];
            _group.AllReduceSum(trainLoss); // every rank reports (and decides on) the same numbers
            var point = new ValidationPoint(atStep, epoch, evaluated.Auc, evaluated.LogLoss, objectiveLoss, trainLoss[1] == 0 ? double.NaN : trainLoss[0] / trainLoss[1],
                distillationLoss, evaluated.AucStandardError);
            state.LossSum = 0; state.LossCount = 0;
            history.Add(point);
            objective.Trainable.Training = true;
            var d = stopping.Observe(point, candidateOnly: start);
            if (o.RestoreBest && last)
            {
                // The run's last validation: nothing trains after it, so weights it selects are the current ones and
                // need no copy (a snapshot here would hold a second, or with the logloss guard a third, copy of every
                // parameter at the very end of training: the peak of a one-epoch run's memory).
                if (d.Selected || (d.FallbackSelected && d.LowestLogLoss)) state.BestWeights = null;
                else if (d.FallbackSelected && state.FallbackWeights is not null) state.BestWeights = state.FallbackWeights;
            }
            else if (o.RestoreBest)
            {
                if (d.LowestLogLoss && o.Selection == SelectionMetric.GuardedAuc) state.FallbackWeights = Snapshot(parameters, state.FallbackWeights);
                if (d.FallbackSelected && state.FallbackWeights is not null) state.BestWeights = CopyInto(state.FallbackWeights, state.BestWeights);
                if (d.Selected) state.BestWeights = Snapshot(parameters, state.BestWeights);
            }
            string lrNote = "";
            if (d.ReduceLearningRate && optimizer.SchedulesLearningRate)
            {
                double next = state.LearningRateScale * o.PlateauFactor;
                if (baseRate * next >= o.MinLearningRate)
                {
                    state.LearningRateScale = next;
                    lrNote = $"  lr → {baseRate * next:G3}";
                }
            }
            _progress?.WriteLine($"{(_interactive ? "\r" : "")}step {atStep,7}  epoch {epoch}  train loss {point.TrainLoss:F5}  valid AUC {point.Auc:F4}  logloss {point.LogLoss:F5}" +
                (double.IsNaN(objectiveLoss) ? "" : $"  objective {objectiveLoss:F5}") +
                (double.IsNaN(distillationLoss) ? "" : $"  distillation (kd) {distillationLoss:F5}") + (d.Selected ? "  *" : d.Improved ? "  +" : "") + lrNote);
            o.OnValidation?.Invoke(point);
            if (d.Stop) stopReason = stopping.StopReason();
            return d.Stop;
        }
    }

    /// <summary>
    /// Writes a training checkpoint. Replicated: rank 0 holds everything and writes alone. Sharded: every rank sends its
    /// rows to rank 0. The training-loss sum and count since the last validation are per rank (one term per rank and
    /// step); the file holds them per step — summed over the ranks and divided by their number — so a resume on any
    /// rank count can scale them back (see <see cref="Resume"/>) and report the next validation as an uninterrupted run would.
    /// </summary>
    private void SaveCheckpoint(IReadOnlyList<NamedParameter> parameters, IOptimizer optimizer, TrainerPosition state, bool sharded)
    {
        double localSum = state.LossSum;
        int localCount = state.LossCount;
        if (_group.Size > 1)
        {
            Span<double> loss = [state.LossSum, state.LossCount];
            _group.AllReduceSum(loss);
            (state.LossSum, state.LossCount) = (loss[0] / _group.Size, (int)(loss[1] / _group.Size));
        }
        try
        {
            if (_group.Rank == 0 || sharded) TrainingCheckpoint.Save(_options.CheckpointPath!, _options, parameters, optimizer, state, _group);
        }
        finally
        {
            (state.LossSum, state.LossCount) = (localSum, localCount);
        }
    }

    private static float[][] CopyInto(float[][] source, float[][]? reuse)
    {
        reuse ??= source.Select(a => new float[a.Length]).ToArray();
        for (int i = 0; i < source.Length; i++) source[i].CopyTo(reuse[i], 0);
        return reuse;
    }

    private void Report(int epoch, long stepInEpoch, long stepsPerEpoch, long step, long total, long examples, double loss, TimeSpan elapsed, TimeSpan epochElapsed)
    {
        double rate = examples / Math.Max(elapsed.TotalSeconds, 1e-9);
        string Eta(double seconds) => TimeSpan.FromSeconds(Math.Max(seconds, 0)).ToString(@"hh\:mm\:ss", System.Globalization.CultureInfo.InvariantCulture);
        // ETA of this epoch from its own pace; of the whole run from the pace so far (unknown when the epoch size is).
        string epochEta = stepsPerEpoch > 0 && stepInEpoch > 0 ? Eta(epochElapsed.TotalSeconds / stepInEpoch * (stepsPerEpoch - stepInEpoch)) : "?";
        string totalEta = total > 0 && step > 0 ? Eta(elapsed.TotalSeconds / step * (total - step)) : "?";
        string line = $"epoch {epoch}/{_options.Epochs}  step {step,7}/{(total > 0 ? total.ToString(System.Globalization.CultureInfo.InvariantCulture) : "?")}  {rate,9:F0} ex/s  loss {loss:F5}  epoch ETA {epochEta}  ETA {totalEta}";
        if (_interactive) _progress!.Write("\r" + line);
        else _progress!.WriteLine(line);
    }

    private static void CheckGradients(IReadOnlyList<NamedParameter> parameters, long step)
    {
        foreach (var p in parameters)
        {
            var t = p.Tensor;
            if (t.Grad is { } g && g.Backend.FirstNonFinite(g.Storage, g.Length) >= 0)
                throw new TrainingDivergedException($"training diverged at step {step}: the gradient of '{p.Name}' {t.Shape} holds NaN or Inf.");
            if (t.SparseGrad is { } s)
                for (int i = 0; i < s.Count; i++)
                    if (!AllFinite(s.Row(i)))
                        throw new TrainingDivergedException($"training diverged at step {step}: the gradient of '{p.Name}' row {s.Rows[i]} holds NaN or Inf.");
        }
    }

    private static NamedParameter? FirstNonFinite(IReadOnlyList<NamedParameter> parameters)
    {
        foreach (var p in parameters)
            if (!AllFinite(p.Tensor.AsSpan())) return p;
        return null;
    }

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        // x − x is 0 for finite x and NaN for ±Inf/NaN, so one sum tells.
        float acc = 0;
        foreach (var v in values) acc += v - v;
        return acc == 0;
    }

    private static float[][] Snapshot(IReadOnlyList<NamedParameter> parameters, float[][]? reuse)
    {
        reuse ??= parameters.Select(p => new float[p.Tensor.Length]).ToArray();
        for (int i = 0; i < parameters.Count; i++) parameters[i].Tensor.Backend.Download(parameters[i].Tensor.Storage, reuse[i]);
        return reuse;
    }

    private static void Restore(IReadOnlyList<NamedParameter> parameters, float[][] weights)
    {
        for (int i = 0; i < parameters.Count; i++) parameters[i].Tensor.Backend.Upload(weights[i], parameters[i].Tensor.Storage);
    }

    /// <summary>
    /// Scores each rank's shard of a dataset (<see cref="Shard"/>) and computes AUC/logloss/calibration over all shards
    /// together, exactly as one process holding every row would: the logits and labels are gathered back into the
    /// unsharded row order. Every rank gets the same result and the whole dataset's logits.
    /// </summary>
    public static (EvaluationResult Result, float[] Logits) Evaluate(CtrModel model, EncodedDataset shard, int batchSize, IProcessGroup? group)
    {
        if (group is null || group.Size == 1) return Evaluate(model, shard, batchSize);
        if (RowSharding.Of(model) is { } sharding && sharding.Group.Size != group.Size)
            throw new InvalidOperationException($"Evaluate: the model's tables are row-sharded over {sharding.Group.Size} rank(s) but the group has {group.Size}.");
        var local = Evaluate(model, shard, batchSize).Logits;
        var logits = group.AllGatherInterleaved(local);
        var labels = group.AllGatherInterleaved(shard.Labels);
        return (CtrMetrics.EvaluateLogits(logits, labels), logits);
    }

    /// <summary>
    /// Scores a stream of batches (one pass; no tape, evaluation mode) and computes AUC/logloss/calibration over all of them.
    /// Keeps a logit and a label per row (8 bytes), which exact AUC needs.
    /// </summary>
    public static (EvaluationResult Result, float[] Logits, float[] Labels) Evaluate(CtrModel model, IEnumerable<Batch> batches)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batches);
        bool was = model.Training;
        model.Training = false;
        var logits = new List<float>();
        var labels = new List<float>();
        var scratch = new BatchScratch();
        float[] buffer = [];
        try
        {
            using var tape = Tape<float>.NoGrad();
            foreach (var batch in batches)
            {
                tape.Reset();
                var z = model.Forward(scratch.From(batch)).Logits;
                if (buffer.Length < batch.Size) buffer = new float[batch.Size];
                z.Backend.Download(z.Storage, buffer.AsSpan(0, batch.Size));
                for (int i = 0; i < batch.Size; i++) logits.Add(buffer[i]);
                foreach (var l in batch.Labels) labels.Add(l);
            }
        }
        finally { model.Training = was; }
        var logitArray = logits.ToArray();
        var labelArray = labels.ToArray();
        if (logitArray.Length == 0) throw new ArgumentException("Evaluate: the data has no rows.");
        return (CtrMetrics.EvaluateLogits(logitArray, labelArray), logitArray, labelArray);
    }

    /// <summary>The mean of one named term of the objective over a stream of batches (evaluation mode, no tape).</summary>
    public static double ObjectiveTerm(IObjective objective, IEnumerable<Batch> batches, string term)
    {
        var (sum, n) = SumOfTerm(objective, batches, term);
        return sum / Math.Max(n, 1);
    }

    /// <summary>Σ over the batches of one named term × batch size, and the row count (evaluation mode, no tape).</summary>
    private static (double Sum, long Count) SumOfTerm(IObjective objective, IEnumerable<Batch> batches, string term)
    {
        bool was = objective.Trainable.Training;
        objective.Trainable.Training = false;
        double sum = 0;
        long n = 0;
        var scratch = new BatchScratch();
        var terms = new Dictionary<string, float>(StringComparer.Ordinal);
        try
        {
            using var tape = Tape<float>.NoGrad();
            foreach (var batch in batches)
            {
                tape.Reset();
                terms.Clear();
                objective.Loss(scratch.From(batch), long.MaxValue, terms);
                if (!terms.TryGetValue(term, out float value))
                    throw new ArgumentException($"trainer: the objective ({objective.GetType().Name}) reports no '{term}' term (it reports: {string.Join(", ", terms.Keys)}), so it cannot be watched for early stopping.");
                sum += value * (double)batch.Size;
                n += batch.Size;
            }
        }
        finally { objective.Trainable.Training = was; }
        return (sum, n);
    }

    /// <summary>The objective's mean loss over a stream of batches (evaluation mode, no tape).</summary>
    public static double ObjectiveLoss(IObjective objective, IEnumerable<Batch> batches)
    {
        bool was = objective.Trainable.Training;
        objective.Trainable.Training = false;
        double sum = 0;
        long n = 0;
        var scratch = new BatchScratch();
        try
        {
            using var tape = Tape<float>.NoGrad();
            foreach (var batch in batches)
            {
                tape.Reset();
                sum += objective.Loss(scratch.From(batch), long.MaxValue, null).Item() * batch.Size;
                n += batch.Size;
            }
        }
        finally { objective.Trainable.Training = was; }
        return sum / Math.Max(n, 1);
    }

    /// <summary>
    /// Scores a dataset with a model (no tape, evaluation mode) and computes AUC/logloss/calibration. A model with
    /// row-sharded tables is scored collectively: every rank of its sharding calls this with its own rows (the ranks'
    /// lookups are matched batch for batch), and each gets the metrics of its own rows.
    /// </summary>
    public static (EvaluationResult Result, float[] Logits) Evaluate(CtrModel model, EncodedDataset data, int batchSize = 1024)
    {
        bool was = model.Training;
        model.Training = false;
        var logits = new float[data.Count];
        var sharding = RowSharding.Of(model);
        var plan = sharding?.PlanFor(RowSharding.TablesOf(model));
        ForEachBatch(data, batchSize, sharding, plan, (batch, offset) =>
        {
            var z = model.Forward(batch).Logits;
            z.Backend.Download(z.Storage, logits.AsSpan(offset, batch.Size)); // backend-neutral: a device copies once per batch
        });
        model.Training = was;
        return (CtrMetrics.EvaluateLogits(logits, data.Labels), logits);
    }

    /// <summary>
    /// Runs <paramref name="body"/> over the batches of <paramref name="data"/> on a no-grad tape (reset per batch),
    /// with the batch's offset in the data. With row-sharded tables each batch is looked up first, and every rank
    /// takes as many lookups as the rank with the most batches (an empty batch when it has run out).
    /// </summary>
    private static void ForEachBatch(EncodedDataset data, int batchSize, RowSharding? sharding, LookupPlan? plan, Action<CtrBatch, int> body)
    {
        var scratch = new BatchScratch();
        int offset = 0;
        using var tape = Tape<float>.NoGrad();
        if (sharding is null)
        {
            foreach (var batch in data.Batches(batchSize))
            {
                tape.Reset();
                body(scratch.From(batch), offset);
                offset += batch.Size;
            }
            return;
        }
        long local = (data.Count + batchSize - 1) / batchSize;
        long rounds = -sharding.Group.AllReduceMin(-local);
        using var batches = data.Batches(batchSize).GetEnumerator();
        var empty = new CtrBatch(0, data.FieldCount, ReadOnlyMemory<int>.Empty, ReadOnlyMemory<float>.Empty);
        for (long r = 0; r < rounds; r++)
        {
            tape.Reset();
            if (r < local && batches.MoveNext())
            {
                var batch = sharding.Lookup(scratch.From(batches.Current), plan!);
                body(batch, offset);
                offset += batch.Size;
            }
            else sharding.Lookup(empty, plan!);
        }
    }

    /// <summary>The name under which distillation objectives report their KD term (see <see cref="StoppingMetric.DistillationLoss"/>).</summary>
    public const string DistillationTerm = "kd";

    /// <summary>
    /// The mean of one named term of the objective (e.g. <see cref="DistillationTerm"/>) over a dataset, without training
    /// (evaluation mode, no tape); with a group, over all ranks' shards. Throws when the objective does not report it.
    /// </summary>
    public static double ObjectiveTerm(IObjective objective, EncodedDataset data, string term, int batchSize, IProcessGroup? group = null)
    {
        var (sum, n) = SumOfTerm(objective, data.Batches(batchSize), term);
        Span<double> total = [sum, n];
        group?.AllReduceSum(total);
        return total[0] / Math.Max(total[1], 1);
    }

    /// <summary>The objective's mean loss over a dataset, without training (evaluation mode, no tape); with a group, over all ranks' shards.</summary>
    public static double ObjectiveLoss(IObjective objective, EncodedDataset data, int batchSize, IProcessGroup? group = null)
    {
        bool was = objective.Trainable.Training;
        objective.Trainable.Training = false;
        double sum = 0;
        long n = 0;
        var sharding = RowSharding.Of(objective.Trainable) ?? RowSharding.Of(objective.Predictor);
        ForEachBatch(data, batchSize, sharding, sharding?.PlanForAll(), (batch, _) =>
        {
            sum += objective.Loss(batch, long.MaxValue, null).Item() * batch.Size;
            n += batch.Size;
        });
        objective.Trainable.Training = was;
        Span<double> total = [sum, n];
        group?.AllReduceSum(total);
        return total[0] / Math.Max(total[1], 1);
    }
}

/// <summary>
/// Turns the data layer's reusable <see cref="Batch"/> views into <see cref="CtrBatch"/>es with arrays that
/// stay valid until the next call (ops keep the ids until backward).
/// </summary>
public sealed class BatchScratch
{
    private int[] _ids = [];
    private float[] _labels = [];
    private int[] _rows = [];
    private float[] _dense = [];
    private float[] _teacher = [];
    private int[][] _bagOffsets = [];
    private int[][] _bagIds = [];

    /// <summary>The batch as a <see cref="CtrBatch"/> over this scratch's arrays (valid until the next call).</summary>
    public CtrBatch From(Batch batch)
    {
        int n = batch.Size, f = batch.FieldCount;
        if (_ids.Length < n * f) _ids = new int[n * f];
        if (_labels.Length < n) { _labels = new float[n]; _rows = new int[n]; }
        batch.Ids.CopyTo(_ids);
        batch.Labels.CopyTo(_labels);
        var rows = batch.Rows;
        for (int i = 0; i < n; i++) _rows[i] = checked((int)rows[i]);
        var result = new CtrBatch(n, f, _ids.AsMemory(0, n * f), _labels.AsMemory(0, n), _rows.AsMemory(0, n));
        if (batch.HasDenseValues)
        {
            if (_dense.Length < n * f) _dense = new float[n * f];
            batch.DenseValues.CopyTo(_dense);
            result = result with { DenseValues = _dense.AsMemory(0, n * f) };
        }
        if (batch.TeacherCount > 0)
        {
            int k = batch.TeacherCount;
            if (_teacher.Length < n * k) _teacher = new float[n * k];
            batch.TeacherLogits.CopyTo(_teacher);
            result = result with { TeacherLogits = _teacher.AsMemory(0, n * k), TeacherCount = k };
        }
        int bags = batch.Space.MultiFields.Count;
        if (bags > 0)
        {
            if (_bagOffsets.Length != bags) { _bagOffsets = new int[bags][]; _bagIds = new int[bags][]; }
            var columns = new BagColumn[bags];
            for (int k = 0; k < bags; k++)
            {
                var offsets = batch.MultiOffsets(k);
                var ids = batch.MultiIds(k);
                if (_bagOffsets[k] is null || _bagOffsets[k].Length < offsets.Length) _bagOffsets[k] = new int[offsets.Length];
                if (_bagIds[k] is null || _bagIds[k].Length < ids.Length) _bagIds[k] = new int[Math.Max(ids.Length, 1)];
                offsets.CopyTo(_bagOffsets[k]);
                ids.CopyTo(_bagIds[k]);
                columns[k] = new BagColumn(_bagOffsets[k].AsMemory(0, offsets.Length), _bagIds[k].AsMemory(0, ids.Length));
            }
            result = result with { Bags = columns };
        }
        return result;
    }
}
