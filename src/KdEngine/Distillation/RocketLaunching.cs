using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Distillation;

/// <summary>
/// Rocket Launching (Zhou et al., AAAI 2018): a light net and a booster net share the bottom (the field
/// embeddings, optionally the first MLP layers) and train simultaneously on
/// <code>L = BCE(y, z_light) + BCE(y, z_booster) + λ·mean((z_light − sg(z_booster))²)</code>
/// The StopGradient on the booster's logit is the <b>gradient block</b>: the hint term updates the light net
/// only. In the paper both BCE terms train the shared bottom (the default); with
/// <see cref="LightInputStopGradient"/> (EasyRec's variant) the light net reads sg(embeddings), so only the
/// booster trains the shared bottom. Serving keeps the light net (with the shared embeddings) only.
/// </summary>
public sealed class RocketLaunchingObjective : IObjective
{
    private readonly ModuleGroup _trainable;

    /// <summary>
    /// Co-trains <paramref name="light"/> and <paramref name="booster"/>, which must share one embedding module, with hint
    /// weight <paramref name="hintWeight"/> (λ ≥ 0); <paramref name="lightInputStopGradient"/> selects EasyRec's variant.
    /// </summary>
    public RocketLaunchingObjective(ZooModel light, ZooModel booster, float hintWeight, bool lightInputStopGradient = false)
    {
        if (light.Embedding is null || booster.Embedding is null || !ReferenceEquals(light.Embedding, booster.Embedding))
            throw new ArgumentException("Rocket Launching: the light and booster nets must share one embedding module.");
        if (hintWeight < 0) throw new ArgumentException($"Rocket Launching: hint weight λ = {hintWeight} must be ≥ 0.");
        Light = light;
        Booster = booster;
        HintWeight = hintWeight;
        LightInputStopGradient = lightInputStopGradient;
        light.DetachEmbeddingInput = lightInputStopGradient;
        _trainable = new ModuleGroup(("light", light), ("booster", booster));
    }

    /// <summary>The light net (what is saved and served, with the shared embeddings).</summary>
    public ZooModel Light { get; }
    /// <summary>The booster net (training only).</summary>
    public ZooModel Booster { get; }
    /// <summary>λ: the weight of the logit-matching hint term.</summary>
    public float HintWeight { get; }
    /// <summary>True for EasyRec's variant: the light net reads sg(embeddings), so only the booster trains the shared bottom.</summary>
    public bool LightInputStopGradient { get; }

    /// <summary>Weights of the two BCE terms (1 in the paper; 0 drops a term entirely — used by tests).</summary>
    public float LightBceWeight { get; init; } = 1f;
    /// <summary>Weight of the booster's BCE term (1 in the paper).</summary>
    public float BoosterBceWeight { get; init; } = 1f;

    /// <inheritdoc/>
    public Module Trainable => _trainable;
    /// <inheritdoc/>
    public CtrModel Predictor => Light;

    /// <inheritdoc/>
    public Tensor<float> Loss(in CtrBatch batch, long step, IDictionary<string, float>? terms)
    {
        var y = SupervisedObjective.LabelTensor(batch);
        var zl = Light.Forward(batch).Logits;
        var zb = Booster.Forward(batch).Logits;
        Tensor<float>? loss = null;
        void Plus(string name, Tensor<float> term, float weight)
        {
            if (weight == 0) return;
            if (terms is not null) terms[name] = term.Item();
            var weighted = weight == 1 ? term : Op.Scale(term, weight);
            loss = loss is null ? weighted : Op.Add(loss, weighted);
        }
        Plus("bce_light", Op.BceWithLogits(zl, y), LightBceWeight);
        Plus("bce_booster", Op.BceWithLogits(zb, y), BoosterBceWeight);
        Plus("hint", Op.Mse(zl, Op.StopGradient(zb)), HintWeight); // the gradient block
        return loss ?? throw new InvalidOperationException("Rocket Launching: every loss term has weight 0.");
    }
}
