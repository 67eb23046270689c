using KdEngine.Autograd;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Distillation;

/// <summary>Where a frozen teacher's logits come from: a model run on each batch, or a cache aligned by row.</summary>
public interface ITeacher
{
    /// <summary>The teacher's logits [B, 1] for the batch (no gradient), and its hidden layers when it has them.</summary>
    (Tensor<float> Logits, IReadOnlyDictionary<string, Tensor<float>> Hidden) Run(in CtrBatch batch);
}

/// <summary>A pre-trained, frozen teacher model (its parameters are never updated by distillation).</summary>
public sealed class ModelTeacher(CtrModel model) : ITeacher
{
    /// <summary>The teacher model.</summary>
    public CtrModel Model => model;

    /// <summary>Runs the teacher in evaluation mode (no dropout) on the batch; its logits come back under StopGradient.</summary>
    public (Tensor<float>, IReadOnlyDictionary<string, Tensor<float>>) Run(in CtrBatch batch)
    {
        bool was = model.Training;
        model.Training = false; // a frozen teacher runs deterministically (no dropout)
        var output = model.Forward(batch);
        model.Training = was;
        return (Op.StopGradient(output.Logits), output.Hidden);
    }
}

/// <summary>Teacher logits computed once and cached (see <see cref="TeacherLogitCache"/>), looked up by row index.</summary>
public sealed class CachedTeacher(float[] logits) : ITeacher
{
    private static readonly IReadOnlyDictionary<string, Tensor<float>> NoHidden = new Dictionary<string, Tensor<float>>();

    /// <summary>Rows in the cache.</summary>
    public int Count => logits.Length;

    /// <summary>The cached logits of the batch's rows (by <see cref="CtrBatch.RowIndex"/>) as a constant [B, 1]; no hidden layers.
    /// A batch without row indices, or a row beyond the cache, is an <see cref="ArgumentException"/>.</summary>
    public (Tensor<float>, IReadOnlyDictionary<string, Tensor<float>>) Run(in CtrBatch batch)
    {
        if (batch.RowIndex.IsEmpty) throw new ArgumentException("cached teacher logits need the batch's row indices.");
        var rows = batch.RowIndex.Span;
        var z = new float[batch.Size];
        for (int i = 0; i < z.Length; i++)
        {
            if ((uint)rows[i] >= (uint)logits.Length)
                throw new ArgumentException($"cached teacher logits: row {rows[i]} is beyond the cache's {logits.Length} rows (was the cache computed over another file?).");
            z[i] = logits[rows[i]];
        }
        return (Op.Constant<float>(z, new Shape(batch.Size, 1)), NoHidden);
    }
}

/// <summary>
/// Distils a frozen teacher into a student: (1−α)·BCE(y, z_s) + α·T²·KL(σ(z_t/T) ‖ σ(z_s/T)) + β·Σ hints.
/// Method "logits" has no hints; method "hint" names (student layer → teacher layer) pairs, each through a
/// learned projection when widths differ. Trainable: the student and the projections only.
/// </summary>
public sealed class TeacherStudentObjective : IObjective
{
    private readonly CtrModel _student;
    private readonly ITeacher _teacher;
    private readonly HintLoss[] _hints;
    private readonly ModuleGroup _trainable;

    /// <summary>
    /// Distils <paramref name="teacher"/> into <paramref name="student"/> with KD weight <paramref name="alpha"/> and
    /// temperature <paramref name="temperature"/>, plus <paramref name="hints"/> weighted by <paramref name="hintWeight"/>
    /// (hints need a teacher model: a logit cache has no hidden layers).
    /// </summary>
    public TeacherStudentObjective(CtrModel student, ITeacher teacher, float alpha, float temperature,
        IReadOnlyList<HintLoss>? hints = null, float hintWeight = 1f)
    {
        _student = student;
        _teacher = teacher;
        Alpha = alpha;
        Temperature = temperature;
        HintWeight = hintWeight;
        _hints = hints?.ToArray() ?? [];
        if (_hints.Length > 0 && teacher is CachedTeacher)
            throw new ArgumentException("hint distillation needs the teacher's hidden layers; a logit cache has none.");
        var children = new List<(string, Module)> { ("student", student) };
        for (int i = 0; i < _hints.Length; i++) children.Add(($"hint{i}", _hints[i]));
        _trainable = new ModuleGroup(children.ToArray());
    }

    /// <summary>α: the weight of the KD term.</summary>
    public float Alpha { get; }
    /// <summary>T: the KD temperature.</summary>
    public float Temperature { get; }
    /// <summary>β: the weight of each hint term.</summary>
    public float HintWeight { get; }
    /// <inheritdoc/>
    public Module Trainable => _trainable;
    /// <inheritdoc/>
    public CtrModel Predictor => _student;

    /// <inheritdoc/>
    public Tensor<float> Loss(in CtrBatch batch, long step, IDictionary<string, float>? terms)
    {
        var (zt, teacherHidden) = _teacher.Run(batch);
        var s = _student.Forward(batch);
        var y = SupervisedObjective.LabelTensor(batch);
        var loss = KdLosses.Logits(s.Logits, zt, y, Alpha, Temperature, terms);
        for (int i = 0; i < _hints.Length; i++)
        {
            var h = _hints[i].Forward(s.Hidden, teacherHidden);
            if (terms is not null) terms[$"hint{i}"] = h.Item();
            loss = Op.Add(loss, Op.Scale(h, HintWeight));
        }
        return loss;
    }

    /// <summary>Builds one hint term per (student layer, teacher layer) pair, probing both models for widths.</summary>
    public static HintLoss[] BuildHints(CtrModel student, CtrModel teacher, IReadOnlyList<(string Student, string Teacher)> pairs, int seed)
    {
        var sw = ModelProbe.HiddenWidths(student);
        var tw = ModelProbe.HiddenWidths(teacher);
        var rng = new Random(seed);
        return pairs.Select(p =>
        {
            if (!sw.TryGetValue(p.Student, out int a))
                throw new ArgumentException($"hint: the student has no layer '{p.Student}' (it has: {string.Join(", ", sw.Keys)}).");
            if (!tw.TryGetValue(p.Teacher, out int b))
                throw new ArgumentException($"hint: the teacher has no layer '{p.Teacher}' (it has: {string.Join(", ", tw.Keys)}).");
            return new HintLoss(p.Student, a, p.Teacher, b, rng);
        }).ToArray();
    }
}

/// <summary>Finds the widths of a model's named hidden representations with a one-row probe.</summary>
public static class ModelProbe
{
    /// <summary>The flattened width of every named hidden layer of <paramref name="model"/>, from one forward pass on a one-row batch of zero ids.</summary>
    public static Dictionary<string, int> HiddenWidths(CtrModel model)
    {
        int cols = 0, bags = 0;
        for (int f = 0; f < model.Fields.Count; f++)
        {
            if (model.Fields[f].IsMultiValued) bags = Math.Max(bags, model.Columns[f] + 1);
            else cols = Math.Max(cols, model.Columns[f] + 1);
        }
        var ones = new float[cols];
        Array.Fill(ones, 1f);
        var batch = new CtrBatch(1, cols, new int[cols], ReadOnlyMemory<float>.Empty)
        {
            DenseValues = ones,
            Bags = Enumerable.Range(0, bags).Select(_ => new BagColumn(new int[2], Array.Empty<int>())).ToArray(),
        };
        using var tape = Tape<float>.NoGrad();
        bool was = model.Training;
        model.Training = false;
        var output = model.Forward(batch);
        model.Training = was;
        return output.Hidden.ToDictionary(kv => kv.Key, kv => kv.Value.Length);
    }
}
