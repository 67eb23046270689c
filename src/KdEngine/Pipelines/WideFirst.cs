using KdEngine.Models;
using KdEngine.Models.Parts;
using KdEngine.Nn;
using KdEngine.Sharding;
using KdEngine.Training;

namespace KdEngine.Pipelines;

/// <summary>
/// Stage-wise training of a model with a wide part beside other parts (WDL, DeepFM, xDeepFM, FM, FFM), when
/// <see cref="TrainingSettings.WideFirst"/> is set: first a logistic regression over the same features, trained alone with
/// the wide part's optimizer to its own early stop; its weights become the model's wide part, the other parts' output
/// layers start at zero (so the starting model scores as that logistic regression, FM/FFM terms aside), and the joint
/// training validates that start as step 0, a candidate for the restored point like any later one.
/// </summary>
/// <remarks>
/// Why: trained jointly from scratch, a deep part on small or rare-id data memorises within one or two epochs and early
/// stopping ends the run while the wide part — a whole logistic regression, which FTRL needs many epochs to fit — is far
/// from converged; such a model ends below a plain LR in AUC and logloss. Fitted first, the wide part is converged
/// before the deep part starts, and the start being a candidate means the joint model ends no worse on validation than
/// the LR it started from. The cost is one LR training (cheap beside the deep model's). The first stage trains on the
/// labels (with a distillation objective too: the wide part is the student's own).
/// </remarks>
public static class WideFirst
{
    /// <summary>
    /// Trains <paramref name="objective"/> with <paramref name="optimizer"/> through <paramref name="fit"/> (a trainer
    /// over the caller's data: in memory, streamed, data-parallel), wide part first when the settings say so.
    /// <paramref name="fit"/> is called once per stage with the stage's trainer options, objective and optimizer; with a
    /// <paramref name="cache"/> (one per data set) a first stage already trained with the same inputs is reused instead.
    /// </summary>
    public static TrainingReport Fit(IObjective objective, IOptimizer optimizer, TrainingSettings settings, TrainerOptions options,
        Func<TrainerOptions, IObjective, IOptimizer, TrainingReport> fit, TextWriter? progress = null, WideStageCache? cache = null)
    {
        ArgumentNullException.ThrowIfNull(objective);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(fit);
        if (!settings.WideFirst) return fit(options, objective, optimizer);
        var model = CheckApplies(objective.Predictor);
        if (LinearInModel(model) && LinearInDnn.WhyNot(model) is { } why)
        {
            // A default that cannot apply to this configuration must not make it fail: train as usual, and say why.
            progress?.WriteLine($"wide part first: not applied — {why}; the model trains jointly from its random init");
            return fit(options, objective, optimizer);
        }
        if (RowSharding.Of(model) is not null)
        {
            // Row-sharded tables: the first stage's logistic regression would need the same sharding; train as usual, and say so.
            progress?.WriteLine("wide part first: not applied — the tables are row-sharded (the first stage runs on replicated tables only); the model trains jointly from the start");
            return fit(options, objective, optimizer);
        }

        // Stage 1: a logistic regression over the model's own fields and batch columns. Its parameters carry the wide
        // part's names (linear.{field}.weight [V, 1], linear.bias [1]), so they copy across by name.
        var linear = new ZooModel(model.Config with { Model = ModelKind.Lr }, model.Fields, model.Columns);
        bool intoDnn = LinearInModel(model);
        // A DNN has no wide part whose optimizer the stage could borrow; its logistic regression trains with FTRL (the
        // LR's own default, with the settings' α and λ2) unless a wide optimizer is named.
        var wideSettings = intoDnn
            ? settings with { WideFirst = false, WideOptimizer = settings.WideOptimizer ?? OptimizerKind.Ftrl }
            : settings with { WideFirst = false };
        var wideOptimizer = wideSettings.BuildOptimizer(linear.Parameters().Select(p => p.Tensor));
        var wideOptions = options with { CheckpointPath = null, CheckpointEvery = 0, OnValidation = null, ValidateAtStart = false, Schedule = null };
        string? key = cache is null ? null : WideStageCache.KeyOf(wideSettings, wideOptions, linear);
        TrainingReport? wideReport = cache?.TryRestore(key!, linear, wideOptimizer);
        if (wideReport is not null)
            progress?.WriteLine($"wide part first: logistic regression on the same features ({DescribeWide(wideSettings)}) — reused: an earlier run trained this very stage");
        else
        {
            progress?.WriteLine($"wide part first: logistic regression on the same features ({DescribeWide(wideSettings)})");
            wideReport = fit(wideOptions, new SupervisedObjective(linear), wideOptimizer);
            cache?.Store(key!, linear, wideOptimizer, wideReport);
        }

        // Stage 2: the model starts as the fitted LR (wide part copied, the other parts' output layers zero; a DNN carries
        // it in its own weights), and that start is validation point 0.
        var fitted = linear.Parameters().ToDictionary(p => p.Name, p => p.Tensor, StringComparer.Ordinal);
        if (intoDnn)
        {
            LinearInDnn.Write(model, fitted);
            optimizer.ReloadDeviceParameters();
            optimizer.AnchorStateToWeights();
            progress?.WriteLine($"joint training from the fitted logistic regression written into the {(model.Config.Model == ModelKind.Dnn ? "" : model.TypeName + "'s ")}DNN (embedding column 0 holds its weights, " +
                "two ReLU units per hidden layer carry its logit, the other output weights start at zero; the start is validation point 0, a candidate for the restored weights)");
            return fit(options with { ValidateAtStart = true }, objective, optimizer) with { WideStage = wideReport };
        }
        foreach (var p in model.Parameters().Where(p => TrainingSettings.IsWideParameter(p.Name)))
        {
            var values = fitted[p.Name].ToArray(); // with any lazily deferred decay applied
            p.Tensor.Backend.Upload(values, p.Tensor.Storage);
        }
        var zeroed = model.Parts.Select(part => (Part: part, Zeroed: part.ZeroOutputLayer())).ToList();
        var silenced = zeroed.Where(z => z.Zeroed).Select(z => z.Part.GetType().Name.Replace("Part", "", StringComparison.Ordinal)).ToList();
        // When every part that reads the shared embedding starts silent (WDL, xDeepFM; not FM/DeepFM/FFM, whose products of
        // embeddings cannot be zeroed), the fitted wide weights also become column 0 of the embedding, as in a DNN's start
        // (LinearInDnn): the deep parts then read each id's fitted first-order effect from the first step instead of only
        // 0.01-std noise, and learn interactions on top of it. The start still scores exactly as the LR.
        bool seeded = model.Embedding is { IsSharded: false } && zeroed.Where(z => z.Part.ReadsEmbedding).All(z => z.Zeroed);
        if (seeded) LinearInDnn.WriteFirstColumn(model.Embedding!, fitted);
        optimizer.ReloadDeviceParameters(); // an optimizer holding device copies of the weights takes the new ones
        // The wide part goes on training where its stage left it: with its own optimizer (FTRL beside Adam, the default)
        // that optimizer takes the stage's state — FTRL's z, n and step counts, without which its per-coordinate rates
        // would start large again — and every rule then re-derives what depends on the weights (FTRL's z: the stage
        // restored its best weights, not the state of its last step).
        if (WideMember(optimizer, model) is { } member && member.GetType() == wideOptimizer.GetType())
            member.ImportState(wideOptimizer.ExportState());
        optimizer.AnchorStateToWeights();
        progress?.WriteLine($"joint training from the fitted wide part ({(silenced.Count > 0 ? string.Join(", ", silenced) + " output layer(s) start at zero; " : "")}" +
            (seeded ? "its weights also start column 0 of the embedding; " : "") + "the start is validation point 0, a candidate for the restored weights)");
        var report = fit(options with { ValidateAtStart = true }, objective, optimizer);
        return report with { WideStage = wideReport };
    }

    /// <summary>The member of an optimizer group that trains exactly the model's wide parameters (null: none, e.g. one
    /// optimizer over every parameter).</summary>
    private static Optimizer? WideMember(IOptimizer optimizer, ZooModel model)
    {
        if (optimizer is not OptimizerGroup group) return null;
        var wide = new HashSet<Tensors.Tensor<float>>(model.Parameters().Where(p => TrainingSettings.IsWideParameter(p.Name)).Select(p => p.Tensor), ReferenceEqualityComparer.Instance);
        return group.Members.FirstOrDefault(m => m.Parameters.Count == wide.Count && m.Parameters.All(wide.Contains));
    }

    /// <summary>A model without a wide part whose DNN carries the fitted logistic regression (<see cref="LinearInDnn"/>).</summary>
    private static bool LinearInModel(ZooModel model) => model.Config.Model is ModelKind.Dnn or ModelKind.Dcn or ModelKind.DcnV2;

    /// <summary>Whether a model of this kind can train wide part first: a wide part beside at least one other part, or the
    /// DNN, DCN or DCN-V2 (the fitted logistic regression is written into the DNN's weights; a configuration that cannot
    /// carry it — not ReLU, a layer narrower than 2, DCN-V2 stacked — trains jointly, with a printed note).</summary>
    public static bool Supports(ModelKind kind)
    {
        if (kind is ModelKind.Dnn or ModelKind.Dcn or ModelKind.DcnV2) return true;
        var recipe = ZooModel.RecipeOf(kind);
        return recipe.Length > 1 && recipe.Contains(WidePart.Recipe);
    }

    private static ZooModel CheckApplies(CtrModel predictor)
    {
        if (predictor is not ZooModel model)
            throw new ConfigException($"training: wideFirst needs a zoo model with a wide part; the model trained is a {predictor.TypeName}.");
        if (!Supports(model.Config.Model))
            throw new ConfigException($"training: wideFirst trains a wide part before the rest of the model, and {model.TypeName} has " +
                (model.Config.Model == ModelKind.Lr ? "nothing beside its wide part" : "no wide part") + " (models with one: fm, wdl, deepfm, xdeepfm, ffm; and dnn, dcn and dcnv2, which carry the fitted logistic regression in their DNN's own weights).");
        return model;
    }

    private static string DescribeWide(TrainingSettings s)
    {
        var kind = s.WideOptimizer ?? s.Optimizer;
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        return kind == OptimizerKind.Ftrl
            ? string.Create(inv, $"ftrl α {s.FtrlAlpha} λ2 {s.FtrlL2}")
            : string.Create(inv, $"{kind.ToString().ToLowerInvariant()} lr {s.WideLearningRate ?? s.LearningRate}");
    }
}
