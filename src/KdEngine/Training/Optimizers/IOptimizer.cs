using KdEngine.Tensors;

namespace KdEngine.Training;

/// <summary>
/// What a trainer needs from an optimizer: one update per step, a learning rate to schedule, deferred rows to
/// bring up to date, and state for checkpoints. <see cref="Optimizer"/> (one update rule over its parameters) and
/// <see cref="OptimizerGroup"/> (several optimizers over disjoint parameters, e.g. FTRL on the wide part and Adam on
/// the rest) implement it.
/// </summary>
public interface IOptimizer
{
    /// <summary>Every parameter updated by this optimizer.</summary>
    IReadOnlyList<Tensor<float>> Parameters { get; }

    /// <summary>The learning rate of the next step (for a group: the first scheduled member's; others follow in proportion).</summary>
    float LearningRate { get; set; }

    /// <summary>False when the rule's rate must not change during a run (FTRL: its per-coordinate rates adapt themselves).</summary>
    bool SchedulesLearningRate { get; }

    /// <summary>Number of completed <see cref="Step"/> calls.</summary>
    long StepCount { get; }

    /// <summary>Updates every parameter from its gradient, then clears the gradients.</summary>
    void Step();

    /// <summary>Clears every parameter's gradient.</summary>
    void ZeroGrad();

    /// <summary>
    /// Brings every embedding row up to date where row updates are deferred (lazy weight decay): call before reading
    /// whole tables outside the ops. Readers in the library (checkpoints, the predictor, ONNX export,
    /// <see cref="Tensor{T}.ToArray"/>) do it themselves through <see cref="Tensor{T}.DeferredRows"/>.
    /// </summary>
    void ApplyDeferredRows();

    /// <summary>
    /// Call after writing parameters outside the optimizer (loading a checkpoint, restoring best weights): device
    /// mirrors are re-read, and every deferred row counts as current (the written values are final as of now).
    /// </summary>
    void ReloadDeviceParameters();

    /// <summary>
    /// After weights were replaced from outside to continue training from them (a part copied from another model, restored
    /// best weights): rules whose weights are a function of their state (FTRL: w from z and n) re-derive that state so the
    /// next update starts from the weights as they now are; other rules keep their state. Call
    /// <see cref="ReloadDeviceParameters"/> first when parameters live on a device.
    /// </summary>
    void AnchorStateToWeights();

    /// <summary>The rule(s), for checkpoint compatibility checks (e.g. <c>Adam</c>, <c>Group(Ftrl+Adam)</c>).</summary>
    string Description { get; }

    /// <summary>Copies of the state (step counts and every state buffer) for a training checkpoint.</summary>
    IReadOnlyList<(string Name, float[] Data, int[] Shape)> ExportState();

    /// <summary>Restores exported state; validates everything before writing anything.</summary>
    void ImportState(IReadOnlyList<(string Name, float[] Data, int[] Shape)> state);
}
