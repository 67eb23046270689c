using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Training;

/// <summary>
/// What a trainer optimises: a module tree (everything trainable, e.g. teacher + student + gate) and a scalar
/// loss per batch. Plain training and every distillation method are objectives; the trainer is shared.
/// </summary>
public interface IObjective
{
    /// <summary>The root of every trainable parameter (shared parts appear once).</summary>
    Module Trainable { get; }

    /// <summary>The model whose predictions are evaluated and exported (the student for KD methods).</summary>
    CtrModel Predictor { get; }

    /// <summary>
    /// Builds the loss for <paramref name="batch"/> on the current tape. <paramref name="step"/> is the
    /// global optimisation step (for warm-ups). Named loss terms are written to <paramref name="terms"/>.
    /// </summary>
    Tensor<float> Loss(in CtrBatch batch, long step, IDictionary<string, float>? terms);
}

/// <summary>Plain supervised training: BCE(y, z).</summary>
public sealed class SupervisedObjective(CtrModel model) : IObjective
{
    /// <inheritdoc/>
    public Module Trainable => model;
    /// <inheritdoc/>
    public CtrModel Predictor => model;

    /// <inheritdoc/>
    public Tensor<float> Loss(in CtrBatch batch, long step, IDictionary<string, float>? terms)
    {
        var z = model.Forward(batch).Logits;
        var loss = Op.BceWithLogits(z, LabelTensor(batch));
        if (terms is not null) terms["bce"] = loss.Item();
        return loss;
    }

    /// <summary>The batch labels as a [B, 1] tensor owned by the current tape (data: no gradient).</summary>
    public static Tensor<float> LabelTensor(in CtrBatch batch)
    {
        if (batch.Labels.IsEmpty) throw new ArgumentException("Training needs labels, but the batch has none.");
        return Op.Constant(batch.Labels.Span, new Shape(batch.Size, 1));
    }
}
