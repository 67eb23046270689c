using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Distillation;

/// <summary>
/// The gate of ECKD (Zhu et al., CIKM 2020): per-sample attention weights over K teachers,
/// α_i(x) = softmax_i(w_iᵀ·v_i + b_i), where v_i is teacher i's logit, optionally concatenated with one of
/// its hidden vectors. Parameters <c>{i}.weight</c> [1, |v_i|] and <c>{i}.bias</c> [1] per teacher.
/// </summary>
public sealed class TeacherGate : Module
{
    private readonly Linear[] _scorers;

    /// <summary>A gate over <c>inputWidths.Count</c> ≥ 2 teachers; teacher i's gate input has width <paramref name="inputWidths"/>[i] (1 for the logit alone).</summary>
    public TeacherGate(IReadOnlyList<int> inputWidths, Random rng)
    {
        if (inputWidths.Count < 2) throw new ArgumentException($"gate: an ensemble needs at least 2 teachers, got {inputWidths.Count}.");
        _scorers = new Linear[inputWidths.Count];
        for (int i = 0; i < _scorers.Length; i++)
            _scorers[i] = AddModule(i.ToString(System.Globalization.CultureInfo.InvariantCulture), new Linear(inputWidths[i], 1, rng));
    }

    /// <summary>K: the number of teachers.</summary>
    public int Teachers => _scorers.Length;

    /// <summary>
    /// inputs[i] [B, |v_i|] → weights α [B, K] (each row sums to 1) and the ensemble logit Σ_i α_i·z_i [B, 1]
    /// from the teachers' logits [B, 1] each.
    /// </summary>
    public (Tensor<float> Weights, Tensor<float> Logit) Forward(IReadOnlyList<Tensor<float>> inputs, IReadOnlyList<Tensor<float>> teacherLogits)
    {
        if (inputs.Count != _scorers.Length || teacherLogits.Count != _scorers.Length)
            throw new ArgumentException($"gate: built for {_scorers.Length} teachers, given {inputs.Count} inputs and {teacherLogits.Count} logits.");
        return Combine(inputs, _scorers.Select(s => s.Weight).ToArray(), _scorers.Select(s => s.Bias!).ToArray(), teacherLogits);
    }

    /// <summary>
    /// The gate's math, generic so that it is gradient-checked in double on the very code that trains:
    /// s_i = v_i·w_iᵀ + b_i [B, 1]; α = softmax(concat_i s_i) [B, K]; z_e = Σ_i α_i·z_i [B, 1].
    /// </summary>
    public static (Tensor<T> Weights, Tensor<T> Logit) Combine<T>(IReadOnlyList<Tensor<T>> inputs, IReadOnlyList<Tensor<T>> weights,
        IReadOnlyList<Tensor<T>> biases, IReadOnlyList<Tensor<T>> teacherLogits) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        var scores = new Tensor<T>[inputs.Count];
        for (int i = 0; i < scores.Length; i++) scores[i] = Op.Linear(inputs[i], weights[i], biases[i]); // [B, 1]
        var alpha = Op.Softmax(Op.Concat(scores, axis: 1), axis: 1);                                     // [B, K]
        var z = Op.Concat(teacherLogits, axis: 1);                                                       // [B, K]
        var ensemble = Op.Reshape(Op.Sum(Op.Mul(alpha, z), axis: 1), -1, 1);                             // [B, 1]
        return (alpha, ensemble);
    }
}

/// <summary>ECKD training modes.</summary>
public enum EnsembleMode
{
    /// <summary>Teachers, gate and student trained together (fast; every model in memory).</summary>
    Joint,
    /// <summary>Pre-trained frozen teachers (or their cached logits); the gate and the student are trained.</summary>
    TwoStage,
}

/// <summary>
/// Ensembled CTR prediction via knowledge distillation (ECKD). The gated ensemble logit z_e = Σ α_i z_{T_i}
/// is the student's soft target:
/// <code>
/// L = [joint: Σ_i BCE(y, z_{T_i})] + BCE(y, z_e) + (1−α)·BCE(y, z_s) + α·T²·KL(σ(z_e/T) ‖ σ(z_s/T))
///     + β·Σ_i mean_b( sg(α_i)·‖W_i·h_s − sg(h_{T_i})‖² / width_i )
/// </code>
/// BCE(y, z_e) trains the gate (and, jointly, the teachers); the student sees the ensemble only through
/// StopGradient. The hidden term (optional) makes the student's chosen layer mimic each teacher's, weighted
/// per sample by that teacher's gate weight.
/// </summary>
public sealed class EnsembleObjective : IObjective
{
    private readonly ITeacher[] _teachers;
    private readonly CtrModel[] _trainableTeachers;
    private readonly TeacherGate _gate;
    private readonly string[]? _gateHiddenLayers;
    private readonly HintLoss[] _hints;
    private readonly ModuleGroup _trainable;

    /// <summary>
    /// The ECKD objective over ≥ 2 teachers. Joint mode needs teacher models (it trains them); gate inputs and hints from
    /// hidden layers need teacher models too. A violation is an <see cref="ArgumentException"/>.
    /// </summary>
    /// <param name="student">The student trained on the gated ensemble's logit.</param>
    /// <param name="teachers">Teacher models (joint mode or frozen two-stage) or cached logits (two-stage).</param>
    /// <param name="mode">Joint or two-stage.</param>
    /// <param name="alpha">α: the weight of the KD term.</param>
    /// <param name="temperature">T: the KD temperature.</param>
    /// <param name="gateHiddenLayers">Per teacher, a hidden layer concatenated to its logit as gate input; null: logits only.</param>
    /// <param name="hints">Optional per-teacher hints (student layer → teacher i's layer); empty for none.</param>
    /// <param name="hintWeight">β: the weight of the hidden-layer term.</param>
    /// <param name="seed">Seed of the gate's initial weights.</param>
    public EnsembleObjective(CtrModel student, IReadOnlyList<ITeacher> teachers, EnsembleMode mode, float alpha, float temperature,
        string[]? gateHiddenLayers, IReadOnlyList<HintLoss> hints, float hintWeight, int seed)
    {
        if (teachers.Count < 2) throw new ArgumentException($"ensemble: at least 2 teachers are needed, got {teachers.Count}.");
        if (mode == EnsembleMode.Joint && teachers.Any(t => t is not ModelTeacher))
            throw new ArgumentException("ensemble: joint mode trains the teachers, so they must be models, not cached logits.");
        if (hints.Count != 0 && hints.Count != teachers.Count)
            throw new ArgumentException($"ensemble: {hints.Count} hint terms for {teachers.Count} teachers; give one per teacher or none.");
        if ((gateHiddenLayers is not null || hints.Count != 0) && teachers.Any(t => t is not ModelTeacher))
            throw new ArgumentException("ensemble: gate inputs and hints from hidden layers need teacher models, not cached logits.");
        Student = student;
        Mode = mode;
        Alpha = alpha;
        Temperature = temperature;
        HintWeight = hintWeight;
        _teachers = teachers.ToArray();
        _trainableTeachers = mode == EnsembleMode.Joint ? _teachers.Select(t => ((ModelTeacher)t).Model).ToArray() : [];
        _gateHiddenLayers = gateHiddenLayers;
        _hints = hints.ToArray();
        var widths = new int[_teachers.Length];
        for (int i = 0; i < widths.Length; i++)
            widths[i] = 1 + (gateHiddenLayers is null ? 0 : ModelProbe.HiddenWidths(((ModelTeacher)_teachers[i]).Model)[gateHiddenLayers[i]]);
        _gate = new TeacherGate(widths, new Random(seed));
        var children = new List<(string, Module)> { ("student", student), ("gate", _gate) };
        for (int i = 0; i < _trainableTeachers.Length; i++) children.Add(($"teacher{i}", _trainableTeachers[i]));
        for (int i = 0; i < _hints.Length; i++) children.Add(($"hint{i}", _hints[i]));
        _trainable = new ModuleGroup(children.ToArray());
    }

    /// <summary>The student (what is saved and served).</summary>
    public CtrModel Student { get; }
    /// <summary>Joint or two-stage.</summary>
    public EnsembleMode Mode { get; }
    /// <summary>α: the weight of the KD term in the student's loss.</summary>
    public float Alpha { get; }
    /// <summary>T: the KD temperature.</summary>
    public float Temperature { get; }
    /// <summary>β: the weight of the hidden-layer term.</summary>
    public float HintWeight { get; }
    /// <summary>The gate network (trained with the student).</summary>
    public TeacherGate Gate => _gate;
    /// <inheritdoc/>
    public Module Trainable => _trainable;
    /// <inheritdoc/>
    public CtrModel Predictor => Student;

    /// <inheritdoc/>
    public Tensor<float> Loss(in CtrBatch batch, long step, IDictionary<string, float>? terms)
    {
        var y = SupervisedObjective.LabelTensor(batch);
        int k = _teachers.Length;
        var logits = new Tensor<float>[k];
        var hidden = new IReadOnlyDictionary<string, Tensor<float>>[k];
        Tensor<float>? loss = null;
        void Plus(Tensor<float> t) => loss = loss is null ? t : Op.Add(loss, t);
        for (int i = 0; i < k; i++)
        {
            if (Mode == EnsembleMode.Joint)
            {
                var output = _trainableTeachers[i].Forward(batch);
                logits[i] = output.Logits;
                hidden[i] = output.Hidden;
                var bce = Op.BceWithLogits(output.Logits, y);
                if (terms is not null) terms[$"bce_teacher{i}"] = bce.Item();
                Plus(bce);
            }
            else (logits[i], hidden[i]) = _teachers[i].Run(batch); // frozen: logits arrive under StopGradient
        }
        var gateInputs = new Tensor<float>[k];
        for (int i = 0; i < k; i++)
            gateInputs[i] = _gateHiddenLayers is null ? logits[i]
                : Op.Concat([logits[i], Flat(hidden[i], _gateHiddenLayers[i])], axis: 1); // [B, 1 + width_i]
        var (weights, ensemble) = _gate.Forward(gateInputs, logits);
        var gateBce = Op.BceWithLogits(ensemble, y);
        if (terms is not null) terms["bce_ensemble"] = gateBce.Item();
        Plus(gateBce);

        var s = Student.Forward(batch);
        Plus(KdLosses.Logits(s.Logits, ensemble, y, Alpha, Temperature, terms)); // ensemble under StopGradient inside

        if (_hints.Length > 0)
        {
            var alphaColumns = Op.Split(Op.StopGradient(weights), Enumerable.Repeat(1, k).ToArray(), axis: 1); // k × [B, 1]
            for (int i = 0; i < k; i++)
            {
                var hs = Flat(s.Hidden, _hints[i].StudentLayer);
                var ht = Op.StopGradient(Flat(hidden[i], _hints[i].TeacherLayer));
                var diff = Op.Sub(_hints[i].Project(hs), ht);                                      // [B, width_i]
                var perSample = Op.Scale(Op.Sum(Op.Mul(diff, diff), axis: 1), 1f / diff.Shape[1]); // [B]
                var weighted = Op.Mean(Op.Mul(perSample, Op.Reshape(alphaColumns[i], -1)));        // scalar
                if (terms is not null) terms[$"hint{i}"] = weighted.Item();
                Plus(Op.Scale(weighted, HintWeight));
            }
        }
        return loss!;
    }

    /// <summary>The gate's weights α [B, K] for a batch (no gradient), e.g. to inspect what the gate learned.</summary>
    public float[] GateWeights(in CtrBatch batch)
    {
        using var tape = KdEngine.Autograd.Tape<float>.NoGrad();
        int k = _teachers.Length;
        var logits = new Tensor<float>[k];
        var hidden = new IReadOnlyDictionary<string, Tensor<float>>[k];
        for (int i = 0; i < k; i++) (logits[i], hidden[i]) = _teachers[i].Run(batch);
        var inputs = new Tensor<float>[k];
        for (int i = 0; i < k; i++)
            inputs[i] = _gateHiddenLayers is null ? logits[i] : Op.Concat([logits[i], Flat(hidden[i], _gateHiddenLayers[i])], axis: 1);
        return _gate.Forward(inputs, logits).Weights.ToArray();
    }

    private static Tensor<float> Flat(IReadOnlyDictionary<string, Tensor<float>> hidden, string name)
    {
        if (!hidden.TryGetValue(name, out var h))
            throw new ArgumentException($"ensemble: no layer '{name}' (available: {string.Join(", ", hidden.Keys)}).");
        return h.Rank == 2 ? h : Op.Flatten(h);
    }
}
