using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Distillation;

/// <summary>
/// Privileged-features distillation (Xu et al., KDD 2020). The teacher f(X, X*) sees every field, the student
/// f(X) not the privileged ones; both are co-trained on
/// <code>L = (1−λ)·BCE(y, z_s) + λ·BCE(σ(sg(z_t)), z_s) + BCE(y, z_t)</code>
/// The StopGradient on the teacher's logit keeps the distillation term out of the teacher's gradient.
/// λ = 0 for the first <see cref="WarmupSteps"/> steps (the teacher must first be worth learning from).
/// The student's embedding tables for the common fields are the teacher's (shared).
/// </summary>
public sealed class PfdObjective : IObjective
{
    private readonly ModuleGroup _trainable;

    /// <summary>
    /// Co-trains <paramref name="student"/> (without the privileged fields) and <paramref name="teacher"/> (with them),
    /// distilling with weight <paramref name="lambda"/> ∈ [0, 1] after <paramref name="warmupSteps"/> steps.
    /// </summary>
    public PfdObjective(ZooModel student, ZooModel teacher, float lambda, long warmupSteps)
    {
        if (lambda is < 0 or > 1) throw new ArgumentException($"PFD: λ = {lambda}; expected 0 ≤ λ ≤ 1.");
        if (warmupSteps < 0) throw new ArgumentException($"PFD: warm-up of {warmupSteps} steps must be ≥ 0.");
        Student = student;
        Teacher = teacher;
        Lambda = lambda;
        WarmupSteps = warmupSteps;
        _trainable = new ModuleGroup(("student", student), ("teacher", teacher));
    }

    /// <summary>The student (what is saved and served).</summary>
    public ZooModel Student { get; }
    /// <summary>The co-trained teacher that sees the privileged fields.</summary>
    public ZooModel Teacher { get; }
    /// <summary>λ after the warm-up.</summary>
    public float Lambda { get; }
    /// <summary>Steps trained with λ = 0.</summary>
    public long WarmupSteps { get; }
    /// <inheritdoc/>
    public Module Trainable => _trainable;
    /// <inheritdoc/>
    public CtrModel Predictor => Student;

    /// <summary>λ in effect at <paramref name="step"/>.</summary>
    public float LambdaAt(long step) => step < WarmupSteps ? 0f : Lambda;

    /// <inheritdoc/>
    public Tensor<float> Loss(in CtrBatch batch, long step, IDictionary<string, float>? terms)
    {
        var y = SupervisedObjective.LabelTensor(batch);
        var zt = Teacher.Forward(batch).Logits;
        var zs = Student.Forward(batch).Logits;
        float lambda = LambdaAt(step);
        var teacherBce = Op.BceWithLogits(zt, y);
        var studentBce = Op.BceWithLogits(zs, y);
        var loss = Op.Add(teacherBce, Op.Scale(studentBce, 1 - lambda));
        if (terms is not null) { terms["bce_teacher"] = teacherBce.Item(); terms["bce_student"] = studentBce.Item(); }
        if (lambda > 0)
        {
            var softLabels = Op.Sigmoid(Op.StopGradient(zt)); // σ(z_t) as a soft label; no gradient to the teacher
            var distill = Op.BceWithLogits(zs, softLabels);
            if (terms is not null) terms["distill"] = distill.Item();
            loss = Op.Add(loss, Op.Scale(distill, lambda));
        }
        return loss;
    }

    /// <summary>
    /// Builds a teacher over all fields and a student over the non-privileged ones, sharing the teacher's
    /// tables for the common fields. <paramref name="privileged"/>[f] marks field f privileged;
    /// <paramref name="columns"/>[f] is the batch column field f reads (default: column f).
    /// </summary>
    public static (ZooModel Student, ZooModel Teacher) Build(ModelConfig studentConfig, ModelConfig teacherConfig,
        IReadOnlyList<InputField> fields, IReadOnlyList<bool> privileged, IReadOnlyList<int>? columns = null)
    {
        columns ??= Enumerable.Range(0, fields.Count).ToArray();
        if (privileged.Count != fields.Count) throw new ArgumentException($"PFD: {privileged.Count} privileged flags for {fields.Count} fields.");
        if (studentConfig.EmbeddingDim != teacherConfig.EmbeddingDim)
            throw new ConfigException($"PFD: student embeddingDim {studentConfig.EmbeddingDim} differs from the teacher's {teacherConfig.EmbeddingDim}; shared embeddings need one width.");
        var common = Enumerable.Range(0, fields.Count).Where(f => !privileged[f]).ToArray();
        if (common.Length == 0) throw new ArgumentException("PFD: every field is privileged; the student would see nothing.");
        if (common.Length == fields.Count) throw new ArgumentException("PFD: no field is privileged; declare at least one.");
        var teacher = new ZooModel(teacherConfig, fields, columns);
        var commonColumns = common.Select(f => columns[f]).ToArray();
        var shared = new FieldEmbeddings(teacher.Embedding!, common, commonColumns);
        var student = new ZooModel(studentConfig, common.Select(f => fields[f]).ToArray(), commonColumns, shared);
        return (student, teacher);
    }
}
