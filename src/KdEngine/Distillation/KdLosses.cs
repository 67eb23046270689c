using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Distillation;

/// <summary>The distillation losses shared by every method.</summary>
public static class KdLosses
{
    /// <summary>
    /// Hinton's logits KD for a binary CTR head: (1−α)·BCE(y, z_s) + α·T²·KL(σ(z_t/T) ‖ σ(z_s/T)), the teacher
    /// under StopGradient (the student learns from the teacher, never the reverse). All logits [B, 1].
    /// </summary>
    public static Tensor<float> Logits(Tensor<float> studentLogits, Tensor<float> teacherLogits, Tensor<float> labels,
        float alpha, float temperature, IDictionary<string, float>? terms = null)
    {
        if (alpha is < 0 or > 1) throw new ArgumentException($"KD weight alpha = {alpha}; expected 0 ≤ alpha ≤ 1.");
        if (!(temperature > 0)) throw new ArgumentException($"KD temperature = {temperature}; expected > 0.");
        var hard = Op.BceWithLogits(studentLogits, labels);
        var soft = Op.BinaryKd(Op.StopGradient(teacherLogits), studentLogits, temperature); // includes T²
        if (terms is not null) { terms["bce"] = hard.Item(); terms["kd"] = soft.Item(); }
        return Op.Add(Op.Scale(hard, 1 - alpha), Op.Scale(soft, alpha));
    }
}

/// <summary>
/// Hint (intermediate-feature) distillation: L = mean‖W·h_s − sg(h_t)‖² with a learned projection W
/// [teacherWidth, studentWidth] (<c>proj.weight</c>) when the widths differ, identity when equal.
/// Hidden tensors of any rank are flattened to [B, width].
/// </summary>
public sealed class HintLoss : Module
{
    private readonly Linear? _projection;

    /// <summary>
    /// A hint from the student's layer <paramref name="studentLayer"/> (width <paramref name="studentWidth"/>) to the
    /// teacher's <paramref name="teacherLayer"/> (width <paramref name="teacherWidth"/>); a projection drawn from
    /// <paramref name="rng"/> is created when the widths differ.
    /// </summary>
    public HintLoss(string studentLayer, int studentWidth, string teacherLayer, int teacherWidth, Random rng)
    {
        StudentLayer = studentLayer;
        TeacherLayer = teacherLayer;
        StudentWidth = studentWidth;
        TeacherWidth = teacherWidth;
        if (studentWidth != teacherWidth) _projection = AddModule("proj", new Linear(studentWidth, teacherWidth, rng, bias: false));
    }

    /// <summary>The student's hidden-layer name (e.g. <c>dnn.1</c>).</summary>
    public string StudentLayer { get; }
    /// <summary>The teacher's hidden-layer name.</summary>
    public string TeacherLayer { get; }
    /// <summary>Flattened width of the student's layer.</summary>
    public int StudentWidth { get; }
    /// <summary>Flattened width of the teacher's layer.</summary>
    public int TeacherWidth { get; }

    /// <summary>
    /// The hint loss from both models' named hidden layers: mean‖W·h_s − sg(h_t)‖² (a scalar). A missing layer or a
    /// width other than the one built for is an <see cref="ArgumentException"/> naming the layer.
    /// </summary>
    public Tensor<float> Forward(IReadOnlyDictionary<string, Tensor<float>> student, IReadOnlyDictionary<string, Tensor<float>> teacher)
    {
        var hs = Pick(student, StudentLayer, "student", StudentWidth);
        var ht = Pick(teacher, TeacherLayer, "teacher", TeacherWidth);
        var projected = _projection is null ? hs : _projection.Forward(hs);
        return Op.Mse(projected, Op.StopGradient(ht));
    }

    /// <summary>W·h_s (h_s itself when the widths are equal): [B, studentWidth] → [B, teacherWidth].</summary>
    public Tensor<float> Project(Tensor<float> studentHidden) => _projection is null ? studentHidden : _projection.Forward(studentHidden);

    private static Tensor<float> Pick(IReadOnlyDictionary<string, Tensor<float>> hidden, string name, string who, int width)
    {
        if (!hidden.TryGetValue(name, out var h))
            throw new ArgumentException($"hint: the {who} has no layer '{name}' (it has: {string.Join(", ", hidden.Keys)}).");
        var flat = h.Rank == 2 ? h : Op.Flatten(h);
        if (flat.Shape[1] != width)
            throw new ArgumentException($"hint: {who} layer '{name}' has width {flat.Shape[1]}, expected {width}.");
        return flat;
    }
}
