using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Distillation;

/// <summary>
/// iQIYI's double-DNN distillation: a student DNN and a teacher that adds a feature-interaction layer (CIN
/// in xDeepFM, or a cross network in DCN) share the field embeddings and are co-trained on
/// <code>L = BCE(y, z_t) + BCE(y, z_s) + α·T²·KL(σ(z_t/T) ‖ σ(z_s/T)) + β·Σ_l ‖W_l·h_s^l − sg(h_t^l)‖²</code>
/// with the teacher's logit and middle layers under StopGradient in the distillation terms, so the teacher
/// learns from the labels only and the student learns from labels, logits and middle layers.
/// </summary>
public sealed class DoubleDnnObjective : IObjective
{
    private readonly HintLoss[] _hints;
    private readonly ModuleGroup _trainable;

    /// <summary>
    /// Co-trains <paramref name="student"/> and <paramref name="teacher"/>, which must share one embedding module and
    /// whose teacher must have a feature-interaction part (xDeepFM's CIN or DCN's cross network); otherwise an
    /// <see cref="ArgumentException"/>. <paramref name="hints"/> pair student and teacher middle layers, weighted by <paramref name="hintWeight"/>.
    /// </summary>
    public DoubleDnnObjective(ZooModel student, ZooModel teacher, float alpha, float temperature, IReadOnlyList<HintLoss> hints, float hintWeight)
    {
        if (student.Embedding is null || !ReferenceEquals(student.Embedding, teacher.Embedding))
            throw new ArgumentException("double-DNN: the student and the teacher must share one embedding module.");
        if (!teacher.Parts.Any(p => p.IsInteractionLayer))
            throw new ArgumentException($"double-DNN: the teacher adds a feature-interaction layer (a CIN or a cross network), so it must be xdeepfm or dcn (got {teacher.TypeName}).");
        Student = student;
        Teacher = teacher;
        Alpha = alpha;
        Temperature = temperature;
        HintWeight = hintWeight;
        _hints = hints.ToArray();
        var children = new List<(string, Module)> { ("student", student), ("teacher", teacher) };
        for (int i = 0; i < _hints.Length; i++) children.Add(($"hint{i}", _hints[i]));
        _trainable = new ModuleGroup(children.ToArray());
    }

    /// <summary>The student DNN (what is saved and served).</summary>
    public ZooModel Student { get; }
    /// <summary>The co-trained teacher with the interaction layer.</summary>
    public ZooModel Teacher { get; }
    /// <summary>α: the weight of the KD term in the student's loss.</summary>
    public float Alpha { get; }
    /// <summary>T: the KD temperature.</summary>
    public float Temperature { get; }
    /// <summary>β: the weight of each middle-layer hint term.</summary>
    public float HintWeight { get; }
    /// <inheritdoc/>
    public Module Trainable => _trainable;
    /// <inheritdoc/>
    public CtrModel Predictor => Student;

    /// <inheritdoc/>
    public Tensor<float> Loss(in CtrBatch batch, long step, IDictionary<string, float>? terms)
    {
        var y = SupervisedObjective.LabelTensor(batch);
        var t = Teacher.Forward(batch);
        var s = Student.Forward(batch);
        var teacherBce = Op.BceWithLogits(t.Logits, y);
        var studentLoss = KdLosses.Logits(s.Logits, t.Logits, y, Alpha, Temperature, terms); // teacher stopped inside
        var loss = Op.Add(teacherBce, studentLoss);
        if (terms is not null) terms["bce_teacher"] = teacherBce.Item();
        for (int i = 0; i < _hints.Length; i++)
        {
            var h = _hints[i].Forward(s.Hidden, t.Hidden); // teacher layer under StopGradient inside
            if (terms is not null) terms[$"hint{i}"] = h.Item();
            loss = Op.Add(loss, Op.Scale(h, HintWeight));
        }
        return loss;
    }
}
