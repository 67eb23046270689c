using System.Globalization;

namespace KdEngine.Training;

/// <summary>What early stopping watches on the validation split (whether training is still improving).</summary>
public enum StoppingMetric
{
    /// <summary>Validation AUC of the predictor (higher is better).</summary>
    Auc,
    /// <summary>Validation logloss of the predictor (lower is better).</summary>
    LogLoss,
    /// <summary>The objective's own loss on the validation split (e.g. ECKD's distillation loss; lower is better).</summary>
    ObjectiveLoss,
    /// <summary>AUC and logloss: training goes on while either improves (the default).</summary>
    Both,
    /// <summary>
    /// The distillation term alone on the validation split: the mean of the term the objective reports as
    /// <c>kd</c> (T²·KL(σ(z_t/T) ‖ σ(z_s/T)) between the teacher — or the ensemble — and the student, before the α weight;
    /// lower is better). ECKD's early-stopping criterion. An objective that reports no <c>kd</c> term cannot be stopped on it.
    /// </summary>
    DistillationLoss,
}

/// <summary>Which validation point's weights are restored at the end.</summary>
public enum SelectionMetric
{
    /// <summary>The highest validation AUC.</summary>
    Auc,
    /// <summary>The lowest validation logloss.</summary>
    LogLoss,
    /// <summary>The lowest objective loss on the validation split.</summary>
    ObjectiveLoss,
    /// <summary>The lowest distillation term (<see cref="StoppingMetric.DistillationLoss"/>) on the validation split.</summary>
    DistillationLoss,
    /// <summary>
    /// Logloss-guarded AUC (the default): the highest AUC among points whose logloss stays within a band of the lowest
    /// logloss — precisely as <see cref="EarlyStopping"/> defines it.
    /// </summary>
    GuardedAuc,
    /// <summary>
    /// The last point: the weights training ended with are kept (a fixed number of passes, as LIBFFM and ML.NET's
    /// field-aware factorization machine train). With patience 0 and no plateau reduction, validation only reports.
    /// </summary>
    Last,
}

/// <summary>What <see cref="EarlyStopping.Observe"/> decided about one validation point.</summary>
/// <param name="Improved">The monitored metric(s) improved (by more than the min-delta): the patience counter restarted.</param>
/// <param name="Selected">This point is now the one to restore: snapshot the weights.</param>
/// <param name="LowestLogLoss">This point has the lowest logloss so far (guarded selection keeps its weights as the fallback).</param>
/// <param name="FallbackSelected">The selected point fell out of the logloss band and the lowest-logloss point replaces it: restore
/// the fallback snapshot as the selected one.</param>
/// <param name="ReduceLearningRate">A plateau: multiply the learning rate by the plateau factor.</param>
/// <param name="Stop">Patience ran out.</param>
public readonly record struct StoppingDecision(bool Improved, bool Selected, bool LowestLogLoss, bool FallbackSelected, bool ReduceLearningRate, bool Stop);

/// <summary>
/// Early stopping, best-point selection and reduce-on-plateau over a sequence of validation points, as pure logic (the
/// trainer keeps the weights it says to keep). Its state is plain data, saved in training checkpoints.
/// </summary>
/// <remarks>
/// <para><b>Monitor</b> (<see cref="StoppingMetric"/>): a point improves when its AUC exceeds the reference AUC by more than
/// <c>minDelta</c>, or its logloss (objective loss) is below the reference by more than <c>minDelta</c>; the reference is the
/// value at the last improvement (so gains smaller than min-delta add up, as in Keras); with
/// <see cref="StoppingMetric.Both"/> either counts. After <c>patience</c> points in a row without improvement training
/// stops (patience 0: never). A NaN AUC (one class only) never improves.</para>
/// <para><b>Plateau</b>: after <c>plateauPatience</c> points in a row without improvement (counted since the last improvement
/// or the last reduction) the learning rate is multiplied by <c>plateauFactor</c> (1 = off), as FuxiCTR's
/// reduce-LR-on-plateau does; the trainer keeps it above a floor.</para>
/// <para><b>Logloss-guarded AUC</b> (<see cref="SelectionMetric.GuardedAuc"/>), defined online so that two snapshots suffice. Let
/// L* be the lowest validation logloss seen so far (the current point included) and g the band (relative,
/// <c>guardBand</c>, default 0.5 %). A point is <i>eligible</i> while its logloss ≤ L*·(1 + g) and — unless it is the
/// lowest-logloss point itself — its AUC is more than k standard errors above the lowest-logloss point's AUC (k =
/// <c>guardStandardErrors</c>, default 0 = any gain; the standard error is <see cref="ValidationPoint.AucStandardError"/> of
/// the lowest-logloss point, from the validation set's class counts; an unknown error drops this condition). With k > 0 a
/// small validation set does not trade logloss for AUC gains smaller than its own sampling error; on a large one the error
/// is small and the rule is the plain band. For each new point p, in order:
/// (1) if p's logloss is below L*, L* becomes it and p is the fallback (the lowest-logloss point); (2) if the selected point
/// is no longer eligible under the new L*, the fallback becomes the selected point; (3) if p is eligible and its AUC is above
/// the selected point's (or nothing is selected yet), p becomes the selected point. The selected point at the end is restored.
/// It is the highest-AUC point of the run unless that point's logloss was more than g above the best logloss — the
/// over-trained, badly calibrated tail that AUC alone would pick.</para>
/// </remarks>
public sealed class EarlyStopping
{
    /// <summary>A rule with its settings; each bad value is an <see cref="ArgumentOutOfRangeException"/> naming it.</summary>
    public EarlyStopping(StoppingMetric monitor, SelectionMetric selection, int patience, double minDelta = 0, double guardBand = 0.005,
        double plateauFactor = 1, int plateauPatience = 1, double guardStandardErrors = 0)
    {
        if (!Enum.IsDefined(monitor)) throw new ArgumentOutOfRangeException(nameof(monitor), monitor, "early stopping: unknown monitor.");
        if (!Enum.IsDefined(selection)) throw new ArgumentOutOfRangeException(nameof(selection), selection, "early stopping: unknown selection metric.");
        if (patience < 0) throw new ArgumentOutOfRangeException(nameof(patience), patience, $"early stopping: patience = {patience}; expected ≥ 0.");
        if (!(minDelta >= 0)) throw new ArgumentOutOfRangeException(nameof(minDelta), minDelta, $"early stopping: minDelta = {minDelta}; expected ≥ 0.");
        if (!(guardBand >= 0)) throw new ArgumentOutOfRangeException(nameof(guardBand), guardBand, $"early stopping: guardBand = {guardBand}; expected ≥ 0.");
        if (!(guardStandardErrors >= 0 && double.IsFinite(guardStandardErrors)))
            throw new ArgumentOutOfRangeException(nameof(guardStandardErrors), guardStandardErrors, $"early stopping: guardStandardErrors = {guardStandardErrors}; expected a finite value ≥ 0.");
        if (!(plateauFactor > 0 && plateauFactor <= 1)) throw new ArgumentOutOfRangeException(nameof(plateauFactor), plateauFactor, $"early stopping: plateauFactor = {plateauFactor}; expected 0 < factor ≤ 1.");
        if (plateauPatience < 1) throw new ArgumentOutOfRangeException(nameof(plateauPatience), plateauPatience, $"early stopping: plateauPatience = {plateauPatience}; expected ≥ 1.");
        Monitor = monitor;
        Selection = selection;
        Patience = patience;
        MinDelta = minDelta;
        GuardBand = guardBand;
        GuardStandardErrors = guardStandardErrors;
        PlateauFactor = plateauFactor;
        PlateauPatience = plateauPatience;
    }

    /// <summary>What counts as an improvement: AUC, logloss, either of them, or the objective's loss.</summary>
    public StoppingMetric Monitor { get; }
    /// <summary>Which validation point's weights are restored at the end.</summary>
    public SelectionMetric Selection { get; }
    /// <summary>Validations without improvement before training stops; 0 = never stop early.</summary>
    public int Patience { get; }
    /// <summary>The smallest change that counts as an improvement (absolute).</summary>
    public double MinDelta { get; }
    /// <summary>The logloss band of the guarded-AUC selection, relative to the lowest logloss.</summary>
    public double GuardBand { get; }
    /// <summary>Guarded AUC: how many standard errors of the validation AUC a point must gain over the lowest-logloss point (0 = any gain).</summary>
    public double GuardStandardErrors { get; }
    /// <summary>Reduce-on-plateau: the learning-rate multiplier (1 = off).</summary>
    public double PlateauFactor { get; }
    /// <summary>Validations without improvement before the learning rate is reduced.</summary>
    public int PlateauPatience { get; }

    /// <summary>The mutable state (saved in training checkpoints).</summary>
    public EarlyStoppingState State { get; set; } = new();

    /// <summary>The point whose weights are to be restored (null before the first point).</summary>
    public ValidationPoint? Selected => State.Selected;

    /// <summary>
    /// Takes the next validation point and says what to do. A <paramref name="candidateOnly"/> point (the starting weights,
    /// <see cref="TrainerOptions.ValidateAtStart"/>) takes part in the selection only: it can be the restored point, but it
    /// sets no reference for the monitor, so patience and plateau reductions count from the first trained point — a strong
    /// start (a fitted wide part) does not cut the rate or end the run before the rest of the model has had a chance.
    /// </summary>
    public StoppingDecision Observe(ValidationPoint p, bool candidateOnly = false)
    {
        var s = State;

        bool aucBetter = !double.IsNaN(p.Auc) && (double.IsNaN(s.BestAuc) || p.Auc > s.BestAuc + MinDelta);
        bool logLossBetter = !double.IsNaN(p.LogLoss) && (double.IsNaN(s.BestLogLoss) || p.LogLoss < s.BestLogLoss - MinDelta);
        bool objectiveBetter = !double.IsNaN(p.ObjectiveLoss) && (double.IsNaN(s.BestObjectiveLoss) || p.ObjectiveLoss < s.BestObjectiveLoss - MinDelta);
        bool distillationBetter = !double.IsNaN(p.DistillationLoss)
            && (double.IsNaN(s.BestDistillationLoss) || p.DistillationLoss < s.BestDistillationLoss - MinDelta);
        if (candidateOnly) aucBetter = logLossBetter = objectiveBetter = distillationBetter = false; // no reference moves
        bool improved = Monitor switch
        {
            StoppingMetric.Auc => aucBetter,
            StoppingMetric.LogLoss => logLossBetter,
            StoppingMetric.ObjectiveLoss => objectiveBetter,
            StoppingMetric.DistillationLoss => distillationBetter,
            _ => aucBetter || logLossBetter,
        };
        // The monitor's reference values move only on an improvement (as Keras' EarlyStopping): small gains accumulate
        // until together they exceed min-delta.
        if (aucBetter) s.BestAuc = p.Auc;
        if (logLossBetter) s.BestLogLoss = p.LogLoss;
        if (objectiveBetter) s.BestObjectiveLoss = p.ObjectiveLoss;
        if (distillationBetter) s.BestDistillationLoss = p.DistillationLoss;
        bool lowest = !double.IsNaN(p.LogLoss) && (s.LowestLogLoss is null || p.LogLoss < s.LowestLogLoss.LogLoss);
        if (lowest) s.LowestLogLoss = p;

        bool selected = false, fallback = false;
        switch (Selection)
        {
            case SelectionMetric.Auc:
                selected = s.Selected is null || (!double.IsNaN(p.Auc) && !(p.Auc <= s.Selected.Auc));
                break;
            case SelectionMetric.LogLoss:
                selected = s.Selected is null || p.LogLoss < s.Selected.LogLoss;
                break;
            case SelectionMetric.ObjectiveLoss:
                selected = s.Selected is null || p.ObjectiveLoss < s.Selected.ObjectiveLoss;
                break;
            case SelectionMetric.DistillationLoss:
                selected = s.Selected is null || p.DistillationLoss < s.Selected.DistillationLoss;
                break;
            case SelectionMetric.Last:
                selected = true;
                break;
            default:
                if (s.Selected is not null && !Eligible(s.Selected)) { s.Selected = s.LowestLogLoss; fallback = true; }
                if (Eligible(p) && (s.Selected is null || (!double.IsNaN(p.Auc) && (double.IsNaN(s.Selected.Auc) || p.Auc > s.Selected.Auc))))
                    selected = true;
                break;
        }
        if (selected) s.Selected = p;

        bool reduce = false;
        if (candidateOnly) return new StoppingDecision(false, selected, lowest, fallback && !selected, false, false);
        if (improved) { s.SinceImprovement = 0; s.SinceReduction = 0; }
        else
        {
            s.SinceImprovement++;
            s.SinceReduction++;
            if (PlateauFactor < 1 && s.SinceReduction >= PlateauPatience) { reduce = true; s.SinceReduction = 0; }
        }
        bool stop = Patience > 0 && s.SinceImprovement >= Patience;
        return new StoppingDecision(improved, selected, lowest, fallback && !selected, reduce, stop);
    }

    private bool Eligible(ValidationPoint p) => State.LowestLogLoss is { } lowest && p.LogLoss <= lowest.LogLoss * (1 + GuardBand)
        && (p == lowest || ClearsAucError(p.Auc, lowest));

    /// <summary>Whether <paramref name="auc"/> is more than <see cref="GuardStandardErrors"/> standard errors above the lowest-logloss point's AUC.</summary>
    private bool ClearsAucError(double auc, ValidationPoint lowest) =>
        GuardStandardErrors == 0 || double.IsNaN(lowest.AucStandardError) || double.IsNaN(lowest.Auc)
        || auc - lowest.Auc > GuardStandardErrors * lowest.AucStandardError;

    /// <summary>Why training stopped early, in words.</summary>
    public string StopReason()
    {
        string what = Monitor switch
        {
            StoppingMetric.Auc => "validation AUC",
            StoppingMetric.LogLoss => "validation logloss",
            StoppingMetric.ObjectiveLoss => "validation objective loss",
            StoppingMetric.DistillationLoss => "validation distillation (kd) loss",
            _ => "validation AUC or logloss",
        };
        return string.Create(CultureInfo.InvariantCulture,
            $"no improvement of {what}{(MinDelta > 0 ? $" by more than {MinDelta:G3}" : "")} in the last {State.SinceImprovement} validations (patience {Patience})");
    }

    /// <summary>How the restored point was chosen, in words.</summary>
    public string SelectionText() => Selection switch
    {
        SelectionMetric.Auc => "best validation AUC",
        SelectionMetric.LogLoss => "best validation logloss",
        SelectionMetric.ObjectiveLoss => "best validation objective loss",
        SelectionMetric.DistillationLoss => "best validation distillation (kd) loss",
        SelectionMetric.Last => "last validation point",
        _ => string.Create(CultureInfo.InvariantCulture, $"best validation AUC within {GuardBand * 100:G3}% of the lowest logloss")
            + (GuardStandardErrors > 0 ? string.Create(CultureInfo.InvariantCulture, $" and {GuardStandardErrors:G3} AUC standard error(s) above its AUC") : ""),
    };
}

/// <summary>The state of <see cref="EarlyStopping"/> (JSON in training checkpoints; doubles round-trip exactly).</summary>
public sealed class EarlyStoppingState
{
    /// <summary>The monitor's reference values (moved only by improvements larger than min-delta).</summary>
    public double BestAuc { get; set; } = double.NaN;
    /// <summary>The lowest validation logloss the monitor has accepted.</summary>
    public double BestLogLoss { get; set; } = double.NaN;
    /// <summary>The lowest validation objective loss the monitor has accepted.</summary>
    public double BestObjectiveLoss { get; set; } = double.NaN;
    /// <summary>The lowest validation distillation loss the monitor has accepted.</summary>
    public double BestDistillationLoss { get; set; } = double.NaN;
    /// <summary>Validations since the last improvement (compared with the patience).</summary>
    public int SinceImprovement { get; set; }
    /// <summary>Validations without improvement since the learning rate was last reduced.</summary>
    public int SinceReduction { get; set; }
    /// <summary>The point whose weights would be restored now.</summary>
    public ValidationPoint? Selected { get; set; }
    /// <summary>The point with the lowest logloss so far (L* of the guarded selection).</summary>
    public ValidationPoint? LowestLogLoss { get; set; }
}
