using KdEngine.Autograd;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Sharding;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Distillation;

/// <summary>
/// Where a frozen teacher's logits come from: a model run on each batch (<see cref="ModelTeacher"/>), external scores
/// that travel with the batch (<see cref="ExternalTeacher"/>: a GBDT's or any scorer's logits read from a file), or a
/// cache aligned by row (<see cref="CachedTeacher"/>).
/// </summary>
public interface ITeacher
{
    /// <summary>
    /// The teacher's logits [B, 1] for the batch and its hidden layers when it has them — all under StopGradient, so
    /// no loss built on them can reach (or grow gradient buffers in) a frozen teacher.
    /// </summary>
    (Tensor<float> Logits, IReadOnlyDictionary<string, Tensor<float>> Hidden) Run(in CtrBatch batch);

    /// <summary>Whether <see cref="Run"/> returns hidden layers (hint terms and gate inputs need them).</summary>
    bool HasHiddenLayers { get; }
}

/// <summary>A pre-trained, frozen teacher model (its parameters are never updated by distillation).</summary>
public sealed class ModelTeacher(CtrModel model) : ITeacher
{
    /// <summary>The teacher model.</summary>
    public CtrModel Model => model;

    /// <inheritdoc/>
    public bool HasHiddenLayers => true;

    /// <summary>Runs the teacher in evaluation mode (no dropout) on the batch; its logits and hidden layers come back under StopGradient.</summary>
    public (Tensor<float>, IReadOnlyDictionary<string, Tensor<float>>) Run(in CtrBatch batch)
    {
        bool was = model.Training;
        model.Training = false; // a frozen teacher runs deterministically (no dropout)
        var output = model.Forward(batch);
        model.Training = was;
        // Every output is cut from the teacher's graph: a gate or a hint that reads a hidden layer must not send a
        // gradient into the frozen teacher (its parameters are outside the optimizer, so their gradient buffers —
        // sparse embedding rows included — would never be cleared and would grow with every step).
        var hidden = new Dictionary<string, Tensor<float>>(output.Hidden.Count, StringComparer.Ordinal);
        foreach (var (name, h) in output.Hidden) hidden[name] = Op.StopGradient(h);
        return (Op.StopGradient(output.Logits), hidden);
    }
}

/// <summary>
/// An external teacher whose logits travel with the data: column <see cref="Column"/> of the batch's
/// <see cref="CtrBatch.TeacherLogits"/> (attached with <c>EncodedDataset.WithTeacherLogits</c>, e.g. from a column of
/// the training file or a side file, see <c>KdEngine.Data.TeacherScores</c>). Because the score is carried by its row,
/// it is right on every split (train, validation, test), under any shuffle and any row re-indexing.
/// </summary>
public sealed class ExternalTeacher : ITeacher
{
    private static readonly IReadOnlyDictionary<string, Tensor<float>> NoHidden = new Dictionary<string, Tensor<float>>();
    private float[] _column = [];

    /// <param name="column">Which teacher-logit column of the data (0-based).</param>
    /// <param name="name">For messages (e.g. the file the scores came from).</param>
    public ExternalTeacher(int column = 0, string? name = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(column);
        Column = column;
        Name = name ?? $"external teacher {column}";
    }

    /// <summary>The teacher's column in the batches' teacher logits (the order the score sources were given in).</summary>
    public int Column { get; }
    /// <summary>A name for messages (the column or file the scores came from).</summary>
    public string Name { get; }
    /// <inheritdoc/>
    public bool HasHiddenLayers => false;

    /// <summary>The batch's rows' logits of this teacher as a constant [B, 1]; no hidden layers. A batch without teacher
    /// logits, or with too few columns, is an <see cref="ArgumentException"/>.</summary>
    public (Tensor<float>, IReadOnlyDictionary<string, Tensor<float>>) Run(in CtrBatch batch)
    {
        int k = batch.TeacherCount;
        if (Column >= k)
            throw new ArgumentException(k == 0
                ? $"{Name}: the batch carries no teacher scores; attach them to the data first (TeacherScores.Read + EncodedDataset.WithTeacherLogits, or PreparedData.WithTeacherLogits)."
                : $"{Name}: reads teacher-score column {Column}, but the data carries {k} column(s).");
        if (_column.Length < batch.Size) _column = new float[batch.Size];
        var all = batch.TeacherLogits.Span;                          // [B, K]
        for (int i = 0; i < batch.Size; i++) _column[i] = all[i * k + Column];
        return (Op.Constant<float>(_column.AsSpan(0, batch.Size), new Shape(batch.Size, 1)), NoHidden);
    }
}

/// <summary>
/// Teacher logits computed once and cached (see <see cref="TeacherLogitCache"/>), looked up by the batch's row index:
/// right only for batches of the one dataset the array is aligned with (e.g. the train part). Prefer attaching the
/// cache to the data (<c>PreparedData.WithTeacherLogits</c>) and reading it with <see cref="ExternalTeacher"/>, which is
/// right on every split.
/// </summary>
public sealed class CachedTeacher(float[] logits) : ITeacher
{
    private static readonly IReadOnlyDictionary<string, Tensor<float>> NoHidden = new Dictionary<string, Tensor<float>>();

    /// <summary>Rows in the cache.</summary>
    public int Count => logits.Length;

    /// <inheritdoc/>
    public bool HasHiddenLayers => false;

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
        if (_hints.Length > 0 && !teacher.HasHiddenLayers)
            throw new ArgumentException("hint distillation needs the teacher's hidden layers; external scores and logit caches have none.");
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
        // Row-sharded tables fetch the probe's rows first (collective: every rank builds the same objective).
        var output = model.Forward(RowSharding.PrepareForward(model, batch));
        model.Training = was;
        return output.Hidden.ToDictionary(kv => kv.Key, kv => kv.Value.Length);
    }
}
