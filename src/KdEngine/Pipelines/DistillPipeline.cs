using System.Text.Json;
using KdEngine.Distillation;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Training;

namespace KdEngine.Pipelines;

/// <summary>The distillation methods (defined in docs/models.md).</summary>
public enum DistillMethod
{
    /// <summary>Logits KD from a frozen teacher (or its cached logits).</summary>
    Logits,
    /// <summary>Logits KD plus hidden-layer hints from a frozen teacher.</summary>
    Hint,
    /// <summary>Rocket Launching: light and booster nets co-trained on shared embeddings.</summary>
    Rocket,
    /// <summary>iQIYI's double DNN: a student and an interaction-layer teacher co-trained on shared embeddings.</summary>
    DoubleDnn,
    /// <summary>Privileged-features distillation: a co-trained teacher sees fields the student does not.</summary>
    Pfd,
    /// <summary>ECKD: a gated ensemble of teachers distilled into one student.</summary>
    Ensemble,
}

/// <summary>A (student layer → teacher layer) pair for hint distillation, e.g. <c>{"student":"dnn.1","teacher":"dnn.1"}</c>.</summary>
public sealed record HintPair(string Student, string Teacher);

/// <summary>
/// The typed config of <c>kdengine distill</c> (strict JSON: camelCase keys, unknown keys rejected naming the key).
/// Which keys a method reads:
/// <list type="bullet">
/// <item>logits: <c>student</c>, <c>alpha</c>, <c>temperature</c> (teacher from a checkpoint or a logit cache).</item>
/// <item>hint: as logits plus <c>hints</c> (default: the last DNN layers) and <c>hintWeight</c>.</item>
/// <item>rocket: <c>student</c> (light net), <c>teacher</c> (booster), <c>lambda</c> (hint weight on the logit MSE),
/// <c>lightInputStopGradient</c>.</item>
/// <item>doubleDnn: <c>student</c>, <c>teacher</c> (xdeepfm or dcn), <c>alpha</c>, <c>temperature</c>, <c>hints</c>, <c>hintWeight</c>.</item>
/// <item>pfd: <c>student</c>, <c>teacher</c>, <c>lambda</c>, <c>warmupSteps</c>, <c>privileged</c> (field names; default: the
/// schema's privileged fields).</item>
/// <item>ensemble: <c>ensembleMode</c> (twoStage: teachers from checkpoints or caches; joint: <c>teachers</c> trained
/// together), <c>student</c>, <c>alpha</c>, <c>temperature</c>, <c>gateHiddenLayers</c>, <c>hints</c> (one per teacher), <c>hintWeight</c>.</item>
/// </list>
/// Model configs left out get the defaults below; a model config given without <c>model</c> is xDeepFM.
/// </summary>
public sealed record DistillConfig
{
    /// <summary>The student: a small DNN (D = 10, [64, 32]) by default.</summary>
    public ModelConfig Student { get; init; } = new() { Model = ModelKind.Dnn, Dnn = [64, 32] };
    /// <summary>The co-trained teacher / booster (rocket, doubleDnn, pfd): xDeepFM with the sample configuration's sizes (docs/models.md) by default.</summary>
    public ModelConfig Teacher { get; init; } = new() { Model = ModelKind.XDeepFm };
    /// <summary>Joint-mode ensemble teachers: xDeepFM and DCN by default.</summary>
    public ModelConfig[] Teachers { get; init; } = [new() { Model = ModelKind.XDeepFm, Seed = 11 }, new() { Model = ModelKind.Dcn, Seed = 12 }];
    /// <summary>Weight of the KD term: (1−α)·BCE + α·T²·KL.</summary>
    public float Alpha { get; init; } = 0.5f;
    /// <summary>T: the KD temperature (&gt; 0).</summary>
    public float Temperature { get; init; } = 2f;
    /// <summary>Hint pairs (hint, doubleDnn; one per teacher for the ensemble); empty: the method's default.</summary>
    public HintPair[] Hints { get; init; } = [];
    /// <summary>β: the weight of each hint term.</summary>
    public float HintWeight { get; init; } = 1f;
    /// <summary>Rocket Launching's hint weight λ (on the mean squared logit gap) and PFD's distillation weight λ.</summary>
    public float Lambda { get; init; } = 0.5f;
    /// <summary>Rocket Launching: EasyRec's variant (the light net reads sg(embeddings)).</summary>
    public bool LightInputStopGradient { get; init; }
    /// <summary>PFD: steps with λ = 0 before distillation starts.</summary>
    public long WarmupSteps { get; init; }
    /// <summary>PFD: names of the teacher-only fields (empty: the schema's privileged fields).</summary>
    public string[] Privileged { get; init; } = [];
    /// <summary>Ensemble: two-stage (frozen teachers, the default) or joint.</summary>
    public EnsembleMode EnsembleMode { get; init; } = EnsembleMode.TwoStage;
    /// <summary>Ensemble: per teacher, a hidden layer fed to the gate with its logit (null: logits only).</summary>
    public string[]? GateHiddenLayers { get; init; }
    /// <summary>Seed of the hint projections and the gate.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Reads and validates a config file; a missing file is a <see cref="FileNotFoundException"/>, a bad key a <see cref="ConfigException"/> naming it.</summary>
    public static DistillConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{Path.GetFileName(path)}: config file not found ({Path.GetFullPath(path)}).", path);
        return FromJson(File.ReadAllText(path), Path.GetFileName(path));
    }

    /// <summary>Parses and validates config JSON; <paramref name="source"/> names it in errors.</summary>
    public static DistillConfig FromJson(string json, string source = "kd.json")
    {
        var c = TrainingSettings.ParseStrict<DistillConfig>(json, source);
        c.Validate(source);
        return c;
    }

    /// <summary>The config as indented JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, TrainingSettings.Json);

    /// <summary>Checks every value and model config; a problem is a <see cref="ConfigException"/> naming the key, prefixed with <paramref name="source"/>.</summary>
    public void Validate(string source = "kd.json")
    {
        if (Student is null) throw new ConfigException($"{source}: student must be a model config.");
        if (Teacher is null) throw new ConfigException($"{source}: teacher must be a model config.");
        Student.Validate(source + ": student");
        Teacher.Validate(source + ": teacher");
        if (Teachers is null) throw new ConfigException($"{source}: teachers must be a list of model configs.");
        for (int i = 0; i < Teachers.Length; i++)
        {
            if (Teachers[i] is null) throw new ConfigException($"{source}: teachers[{i}] must be a model config.");
            Teachers[i].Validate($"{source}: teachers[{i}]");
        }
        if (Alpha is < 0 or > 1 || float.IsNaN(Alpha)) throw new ConfigException($"{source}: alpha = {Alpha}; expected 0 ≤ alpha ≤ 1.");
        if (!(Temperature > 0) || !float.IsFinite(Temperature)) throw new ConfigException($"{source}: temperature = {Temperature}; expected > 0.");
        if (!(HintWeight >= 0) || !float.IsFinite(HintWeight)) throw new ConfigException($"{source}: hintWeight = {HintWeight}; expected ≥ 0.");
        if (!(Lambda >= 0) || !float.IsFinite(Lambda)) throw new ConfigException($"{source}: lambda = {Lambda}; expected ≥ 0.");
        if (WarmupSteps < 0) throw new ConfigException($"{source}: warmupSteps = {WarmupSteps}; expected ≥ 0.");
        if (Hints is null) throw new ConfigException($"{source}: hints must be a list.");
        for (int i = 0; i < Hints.Length; i++)
            if (Hints[i] is null || string.IsNullOrEmpty(Hints[i].Student) || string.IsNullOrEmpty(Hints[i].Teacher))
                throw new ConfigException($"{source}: hints[{i}] needs both 'student' and 'teacher' layer names.");
        if (Privileged is null) throw new ConfigException($"{source}: privileged must be a list of field names.");
    }

    /// <summary>Parses a method name (<c>logits</c>, <c>hint</c>, <c>rocket</c>, <c>double-dnn</c>, <c>pfd</c>, <c>ensemble</c>; case-insensitive); anything else is an <see cref="ArgumentException"/>.</summary>
    public static DistillMethod ParseMethod(string text) => text.ToLowerInvariant() switch
    {
        "logits" => DistillMethod.Logits,
        "hint" => DistillMethod.Hint,
        "rocket" => DistillMethod.Rocket,
        "double-dnn" or "doublednn" => DistillMethod.DoubleDnn,
        "pfd" => DistillMethod.Pfd,
        "ensemble" => DistillMethod.Ensemble,
        _ => throw new ArgumentException($"unknown distillation method '{text}' (expected logits|hint|rocket|double-dnn|pfd|ensemble)."),
    };
}

/// <summary>An objective ready to train and the student it exports.</summary>
public sealed record DistillRun(IObjective Objective, ZooModel Student);

/// <summary>
/// Builds the objective of each distillation method over prepared data. The student never sees fields the schema
/// (or, for PFD, the config) declares privileged; the exported student (<see cref="DistillRun.Student"/>) holds only
/// its own parameters — for Rocket Launching, double-DNN and PFD those include the shared embeddings and nothing of
/// the booster/teacher.
/// </summary>
public static class DistillPipeline
{
    /// <summary>
    /// The objective and the student of <paramref name="method"/> over <paramref name="data"/>'s fields, configured by
    /// <paramref name="config"/> (validated here; a problem is a <see cref="ConfigException"/>).
    /// </summary>
    /// <param name="method">The distillation method.</param>
    /// <param name="config">Model configs and the method's knobs.</param>
    /// <param name="data">The prepared data (its fields, and the schema's privileged flags).</param>
    /// <param name="teachers">Frozen pre-trained teachers (models or cached logits): one for logits/hint, ≥ 2 for a
    /// two-stage ensemble, none for the co-trained methods.</param>
    public static DistillRun Build(DistillMethod method, DistillConfig config, PreparedData data, IReadOnlyList<ITeacher> teachers) =>
        Build(method, config, data.Fields, data.Privileged, teachers);

    /// <summary>
    /// <see cref="Build(DistillMethod, DistillConfig, PreparedData, IReadOnlyList{ITeacher})"/> over the model inputs of any data
    /// (in memory or streamed): <paramref name="schemaPrivileged"/>[f] says whether input field f is declared privileged.
    /// </summary>
    public static DistillRun Build(DistillMethod method, DistillConfig config, IReadOnlyList<InputField> fields, IReadOnlyList<bool> schemaPrivileged,
        IReadOnlyList<ITeacher> teachers)
    {
        config.Validate("distill config");
        var columns = ModelInputs.ColumnsOf(fields);
        var privileged = PrivilegedFlags(method, config, fields, schemaPrivileged);
        var common = Enumerable.Range(0, fields.Count).Where(f => !privileged[f]).ToArray();
        ZooModel StudentOverCommon(ModelConfig c, FieldEmbeddings? shared = null) =>
            new(c, common.Select(f => fields[f]).ToArray(), common.Select(f => columns[f]).ToArray(), shared);
        void NoTeachers()
        {
            if (teachers.Count > 0) throw new ArgumentException($"distill {Name(method)}: the teacher is co-trained from the config; do not pass --teacher or --teacher-logits.");
        }

        switch (method)
        {
            case DistillMethod.Logits:
            case DistillMethod.Hint:
            {
                if (teachers.Count != 1) throw new ArgumentException($"distill {Name(method)}: needs exactly one teacher (--teacher model.kde{(method == DistillMethod.Logits ? " or --teacher-logits FILE" : "")}), got {teachers.Count}.");
                var student = StudentOverCommon(config.Student);
                HintLoss[] hints = [];
                if (method == DistillMethod.Hint)
                {
                    if (teachers[0] is not ModelTeacher mt) throw new ArgumentException("distill hint: needs the teacher's hidden layers, so a teacher model (--teacher), not cached logits.");
                    hints = TeacherStudentObjective.BuildHints(student, mt.Model, HintPairs(config, student, mt.Model), config.Seed);
                }
                return new DistillRun(new TeacherStudentObjective(student, teachers[0], config.Alpha, config.Temperature, hints, config.HintWeight), student);
            }
            case DistillMethod.Rocket:
            {
                NoTeachers();
                var booster = StudentOverCommon(config.Teacher);
                if (booster.Embedding is null) throw new ConfigException("distill rocket: the booster (teacher) must have embeddings (not lr).");
                var light = StudentOverCommon(config.Student, booster.Embedding);
                return new DistillRun(new RocketLaunchingObjective(light, booster, config.Lambda, config.LightInputStopGradient), light);
            }
            case DistillMethod.DoubleDnn:
            {
                NoTeachers();
                var teacher = StudentOverCommon(config.Teacher);
                if (teacher.Embedding is null) throw new ConfigException("distill double-dnn: the teacher must be xdeepfm or dcn.");
                var student = StudentOverCommon(config.Student, teacher.Embedding);
                var hints = TeacherStudentObjective.BuildHints(student, teacher, HintPairs(config, student, teacher), config.Seed);
                return new DistillRun(new DoubleDnnObjective(student, teacher, config.Alpha, config.Temperature, hints, config.HintWeight), student);
            }
            case DistillMethod.Pfd:
            {
                NoTeachers();
                var (student, teacher) = PfdObjective.Build(config.Student, config.Teacher, fields, privileged, columns);
                return new DistillRun(new PfdObjective(student, teacher, config.Lambda, config.WarmupSteps), student);
            }
            case DistillMethod.Ensemble:
            {
                var student = StudentOverCommon(config.Student);
                IReadOnlyList<ITeacher> members;
                if (config.EnsembleMode == EnsembleMode.Joint)
                {
                    NoTeachers();
                    members = config.Teachers.Select(c => (ITeacher)new ModelTeacher(new ZooModel(c, fields, columns))).ToArray();
                }
                else
                {
                    if (teachers.Count < 2) throw new ArgumentException($"distill ensemble (twoStage): needs at least 2 teachers (--teacher or --teacher-logits, repeated), got {teachers.Count}; or set \"ensembleMode\": \"joint\".");
                    members = teachers;
                }
                if (config.GateHiddenLayers is not null && config.GateHiddenLayers.Length != members.Count)
                    throw new ConfigException($"distill config: gateHiddenLayers has {config.GateHiddenLayers.Length} entries for {members.Count} teachers.");
                HintLoss[] hints = [];
                if (config.Hints.Length > 0)
                {
                    if (config.Hints.Length != members.Count)
                        throw new ConfigException($"distill config: hints has {config.Hints.Length} pairs for {members.Count} teachers (one per teacher, or none).");
                    hints = members.Select((t, i) => t is ModelTeacher mt
                        ? TeacherStudentObjective.BuildHints(student, mt.Model, [(config.Hints[i].Student, config.Hints[i].Teacher)], config.Seed + i)[0]
                        : throw new ArgumentException("distill ensemble: hints need teacher models, not cached logits.")).ToArray();
                }
                var objective = new EnsembleObjective(student, members, config.EnsembleMode, config.Alpha, config.Temperature,
                    config.GateHiddenLayers, hints, config.HintWeight, config.Seed);
                return new DistillRun(objective, student);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(method), method, "unknown distillation method");
        }
    }

    /// <summary>The method's CLI name (<c>double-dnn</c>, else the lower-case enum name).</summary>
    public static string Name(DistillMethod method) => method switch
    {
        DistillMethod.DoubleDnn => "double-dnn",
        _ => method.ToString().ToLowerInvariant(),
    };

    /// <summary>Per input field: teacher-only? PFD takes the config's names when given; otherwise the schema decides.</summary>
    private static bool[] PrivilegedFlags(DistillMethod method, DistillConfig config, IReadOnlyList<InputField> fields, IReadOnlyList<bool> schemaPrivileged)
    {
        var flags = schemaPrivileged.ToArray();
        if (method == DistillMethod.Pfd && config.Privileged.Length > 0)
        {
            Array.Clear(flags);
            foreach (var name in config.Privileged)
            {
                int i = -1;
                for (int f = 0; f < fields.Count; f++) if (fields[f].Name == name) i = f;
                if (i < 0) throw new ConfigException($"distill config: privileged field '{name}' is not an input field (fields: {string.Join(", ", fields.Select(f => f.Name))}).");
                flags[i] = true;
            }
        }
        return flags;
    }

    /// <summary>The config's hint pairs, or by default the student's last DNN layer → the teacher's last DNN layer.</summary>
    private static (string Student, string Teacher)[] HintPairs(DistillConfig config, CtrModel student, CtrModel teacher)
    {
        if (config.Hints.Length > 0) return config.Hints.Select(h => (h.Student, h.Teacher)).ToArray();
        string Last(CtrModel m, string who) =>
            ModelProbe.HiddenWidths(m).Keys.Where(k => k.StartsWith("dnn.", StringComparison.Ordinal)).LastOrDefault()
            ?? throw new ConfigException($"distill: the {who} has no DNN layer for the default hint; give \"hints\" in the config.");
        return [(Last(student, "student"), Last(teacher, "teacher"))];
    }
}
