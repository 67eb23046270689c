using System.Diagnostics;
using System.Globalization;
using KdEngine.Data;
using KdEngine.Distillation;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Training;

namespace KdEngine.Experiments;

/// <summary>The splits and model inputs an experiment runs on.</summary>
public sealed record ExperimentData(EncodedDataset Train, EncodedDataset Validation, EncodedDataset Test,
    InputField[] Fields, int[] Columns, bool[] Privileged, string Name);

/// <summary>Settings of a distillation experiment (every method against the same student trained alone).</summary>
public sealed record KdExperimentOptions
{
    /// <summary>The teacher of logits/hint KD and the co-trained teacher of the other methods (xDeepFM, sample configuration).</summary>
    public ModelConfig Teacher { get; init; } = new() { Model = ModelKind.XDeepFm, EmbeddingDim = 10, Dnn = [400, 400], Cin = [100, 100] };
    /// <summary>The student of every method (a DNN [32] at D = 10).</summary>
    public ModelConfig Student { get; init; } = new() { Model = ModelKind.Dnn, EmbeddingDim = 10, Dnn = [32] };
    /// <summary>Extra teachers of the gated ensemble (the main teacher is the first).</summary>
    public ModelConfig[] EnsembleTeachers { get; init; } =
    [
        new() { Model = ModelKind.Dcn, EmbeddingDim = 10, Dnn = [400, 400], CrossLayers = 3 },
        new() { Model = ModelKind.DeepFm, EmbeddingDim = 10, Dnn = [400, 400] },
    ];
    /// <summary>
    /// How the main teacher, trained alone, is trained when it needs other settings than the student (an FFM teacher with
    /// Adagrad, say): optimizer, learning rate, L2, batch size, epochs, patience. Null: the options below, as for the
    /// student. Co-trained teachers (Rocket Launching, double-DNN, PFD) train with the student and use the options below.
    /// </summary>
    public KdEngine.Pipelines.TrainingSettings? TeacherTraining { get; init; }
    /// <summary>The same for each of <see cref="EnsembleTeachers"/> (by position; a missing or null entry: the options below).</summary>
    public KdEngine.Pipelines.TrainingSettings?[]? EnsembleTeacherTraining { get; init; }
    /// <summary>Adam's learning rate for every model (but a teacher given its own training above).</summary>
    public float LearningRate { get; init; } = 1e-3f;
    /// <summary>Rows per step.</summary>
    public int BatchSize { get; init; } = 256;
    /// <summary>Most epochs (early stopping on the validation split).</summary>
    public int Epochs { get; init; } = 10;
    /// <summary>Validations without improvement before stopping.</summary>
    public int Patience { get; init; } = 2;
    /// <summary>L2 on the touched embedding rows.</summary>
    public float EmbeddingL2 { get; init; }
    /// <summary>L2 on dense weights.</summary>
    public float DenseL2 { get; init; }
    /// <summary>α: the KD weight of the logits-based methods.</summary>
    public float Alpha { get; init; } = 0.5f;
    /// <summary>T: the KD temperature.</summary>
    public float Temperature { get; init; } = 2f;
    /// <summary>β: the weight of hint terms.</summary>
    public float HintWeight { get; init; } = 0.1f;
    /// <summary>
    /// Rocket Launching hint weights λ to try. With one value that λ is used; with several, each is trained and, per seed,
    /// the light net of the λ with the best validation <see cref="RocketSelection"/> is the reported "rocket" run
    /// (every λ's test result is reported too, as "rocket λ=…", but never used to choose).
    /// </summary>
    public float[] RocketLambdas { get; init; } = [1f];
    /// <summary>The validation score the λ sweep picks by: <see cref="StoppingMetric.LogLoss"/> or <see cref="StoppingMetric.Auc"/>.</summary>
    public StoppingMetric RocketSelection { get; init; } = StoppingMetric.LogLoss;
    /// <summary>
    /// What the gated and the averaging ensemble's students stop early on (and are restored by): the student's own
    /// validation <see cref="StoppingMetric.Auc"/>, as every other method here (the default), or
    /// <see cref="StoppingMetric.DistillationLoss"/>, the validation KD term, as ECKD does. Both ensembles use the same rule,
    /// so only the gate differs. The KD term is not the default: the gate keeps moving the target it is measured against,
    /// and on the synthetic set it was lowest at the first epoch for two seeds in five (docs/results.md).
    /// </summary>
    public StoppingMetric EnsembleStopping { get; init; } = StoppingMetric.Auc;
    /// <summary>PFD's λ after the warm-up.</summary>
    public float PfdLambda { get; init; } = 0.5f;
    /// <summary>PFD's warm-up steps (λ = 0).</summary>
    public long PfdWarmupSteps { get; init; } = 100;
    /// <summary>
    /// The methods to run: logits, hint, rocket, double-dnn, pfd, ensemble (two-stage gated ECKD) and average (the same
    /// frozen teachers averaged, no gate: the baseline the gate must beat).
    /// </summary>
    public string[] Methods { get; init; } = ["logits", "hint", "rocket", "double-dnn", "pfd", "ensemble", "average"];
    /// <summary>Called with every trained model and its test result (e.g. to serve it afterwards); optional.</summary>
    public Action<KdRun, ZooModel>? OnTrained { get; init; }

    /// <summary>
    /// Reads options from strict JSON (camelCase keys of this record, unknown keys rejected naming them); keys left out keep
    /// their defaults, e.g. <c>{"teacher": {"model": "ffm", "embeddingDim": 4}, "teacherTraining": {"optimizer": "adagrad",
    /// "learningRate": 0.05}, "ensembleTeachers": [{"model": "dcnV2"}]}</c>.
    /// </summary>
    public static KdExperimentOptions FromJson(string json, string source = "kd.json")
    {
        var o = KdEngine.Pipelines.TrainingSettings.ParseStrict<KdExperimentOptions>(json, source);
        if (o.Teacher is null || o.Student is null || o.EnsembleTeachers is null || o.Methods is null || o.RocketLambdas is null)
            throw new ConfigException($"{source}: teacher, student, ensembleTeachers, methods and rocketLambdas cannot be null.");
        o.Teacher.Validate(source + ": teacher");
        o.Student.Validate(source + ": student");
        for (int i = 0; i < o.EnsembleTeachers.Length; i++) o.EnsembleTeachers[i].Validate($"{source}: ensembleTeachers[{i}]");
        if (!Enum.IsDefined(o.EnsembleStopping) || o.EnsembleStopping == StoppingMetric.ObjectiveLoss)
            throw new ConfigException($"{source}: ensembleStopping must be auc, logLoss, both or distillationLoss.");
        o.TeacherTraining?.Validate(source + ": teacherTraining");
        if (o.EnsembleTeacherTraining is { } list)
        {
            if (list.Length > o.EnsembleTeachers.Length)
                throw new ConfigException($"{source}: ensembleTeacherTraining has {list.Length} entries for {o.EnsembleTeachers.Length} ensemble teachers.");
            for (int i = 0; i < list.Length; i++) list[i]?.Validate($"{source}: ensembleTeacherTraining[{i}]");
        }
        return o;
    }
}

/// <summary>One method's outcome on one seed (test split); <paramref name="Note"/> records a choice made on validation (e.g. Rocket's λ).</summary>
public sealed record KdRun(string Method, int Seed, string Role, double Auc, double LogLoss, long Parameters, double Seconds, string? Note = null);

/// <summary>
/// Runs every distillation method against the same student trained alone, on fixed splits, for several
/// seeds; tunes nothing on the test split (early stopping watches the validation split only).
/// </summary>
public static class KdExperiment
{
    /// <summary>
    /// Trains the teacher, the student alone and the student by every method of <c>options.Methods</c> for each seed,
    /// and returns one run per method, role and seed with its test AUC and logloss; <paramref name="log"/> gets progress.
    /// </summary>
    public static List<KdRun> Run(ExperimentData data, KdExperimentOptions options, IReadOnlyList<int> seeds, TextWriter? log = null)
    {
        var runs = new List<KdRun>();
        foreach (int seed in seeds)
        {
            var teacherConfig = options.Teacher with { Seed = seed };
            var studentConfig = options.Student with { Seed = seed + 1000 };
            // Teacher and student trained alone on all (non-privileged for PFD) fields.
            var teacher = new ZooModel(teacherConfig, data.Fields, data.Columns);
            runs.Add(FitTeacher("teacher", seed, teacher, options.TeacherTraining, data, options, log));
            var alone = new ZooModel(studentConfig, data.Fields, data.Columns);
            runs.Add(Fit("alone", seed, "student", alone, new SupervisedObjective(alone), data, options, log));
            // The ensemble's extra teachers, trained once per seed and shared by the gated and the averaging ensembles.
            List<ITeacher>? ensembleTeachers = null;
            List<ITeacher> EnsembleTeachers()
            {
                if (ensembleTeachers is not null) return ensembleTeachers;
                ensembleTeachers = [new ModelTeacher(teacher)];
                int k = 0;
                foreach (var extra in options.EnsembleTeachers)
                {
                    var training = options.EnsembleTeacherTraining is { } list && k < list.Length ? list[k] : null;
                    var m = new ZooModel(extra with { Seed = seed + 100 + k++ }, data.Fields, data.Columns);
                    runs.Add(FitTeacher($"ensemble-teacher-{extra.Model.ToString().ToLowerInvariant()}", seed, m, training, data, options, log));
                    ensembleTeachers.Add(new ModelTeacher(m));
                }
                return ensembleTeachers;
            }

            foreach (var method in options.Methods)
            {
                switch (method)
                {
                    case "logits":
                    {
                        var s = new ZooModel(studentConfig, data.Fields, data.Columns);
                        runs.Add(Fit(method, seed, "student", s, new TeacherStudentObjective(s, new ModelTeacher(teacher), options.Alpha, options.Temperature), data, options, log));
                        break;
                    }
                    case "hint":
                    {
                        var s = new ZooModel(studentConfig, data.Fields, data.Columns);
                        var hints = TeacherStudentObjective.BuildHints(s, teacher, [(LastHidden(s), LastHidden(teacher))], seed);
                        runs.Add(Fit(method, seed, "student", s, new TeacherStudentObjective(s, new ModelTeacher(teacher), options.Alpha, options.Temperature, hints, options.HintWeight), data, options, log));
                        break;
                    }
                    case "rocket":
                    {
                        if (options.RocketLambdas.Length == 0) throw new ArgumentException("Rocket Launching: no λ to try.");
                        if (options.RocketSelection is not (StoppingMetric.Auc or StoppingMetric.LogLoss))
                            throw new ArgumentException($"Rocket Launching: the λ sweep selects by validation AUC or logloss, not {options.RocketSelection}.");
                        KdRun? best = null;
                        double bestScore = double.NegativeInfinity;
                        var scores = new List<string>();
                        foreach (float lambda in options.RocketLambdas)
                        {
                            var booster = new ZooModel(teacherConfig with { EmbeddingDim = studentConfig.EmbeddingDim }, data.Fields, data.Columns);
                            var light = new ZooModel(studentConfig, data.Fields, data.Columns, booster.Embedding);
                            var objective = new RocketLaunchingObjective(light, booster, lambda);
                            string name = options.RocketLambdas.Length == 1 ? method : "rocket λ=" + lambda.ToString(CultureInfo.InvariantCulture);
                            var run = Fit(name, seed, "student", light, objective, data, options, log);
                            if (options.RocketLambdas.Length == 1) { runs.Add(run); break; }
                            runs.Add(run);
                            var (valid, _) = Trainer.Evaluate(light, data.Validation);
                            double score = options.RocketSelection == StoppingMetric.Auc ? valid.Auc : -valid.LogLoss;
                            scores.Add(string.Create(CultureInfo.InvariantCulture, $"λ={lambda}: valid AUC {valid.Auc:F4} logloss {valid.LogLoss:F4}"));
                            if (score > bestScore) { bestScore = score; best = run with { Method = method, Note = "λ=" + lambda.ToString(CultureInfo.InvariantCulture) }; }
                        }
                        if (best is not null)
                        {
                            runs.Add(best);
                            log?.WriteLine($"{data.Name} seed {seed} rocket sweep ({string.Join("; ", scores)}) → {best.Note} by validation {options.RocketSelection.ToString().ToLowerInvariant()}");
                        }
                        break;
                    }
                    case "double-dnn":
                    {
                        var t = new ZooModel(teacherConfig with { EmbeddingDim = studentConfig.EmbeddingDim }, data.Fields, data.Columns);
                        var s = new ZooModel(studentConfig, data.Fields, data.Columns, t.Embedding);
                        var hints = TeacherStudentObjective.BuildHints(s, t, [(LastHidden(s), LastHidden(t))], seed);
                        runs.Add(Fit(method, seed, "student", s, new DoubleDnnObjective(s, t, options.Alpha, options.Temperature, hints, options.HintWeight), data, options, log));
                        break;
                    }
                    case "pfd":
                    {
                        if (!data.Privileged.Any(p => p)) throw new ArgumentException($"{data.Name}: PFD needs privileged fields; none are declared.");
                        var common = Enumerable.Range(0, data.Fields.Length).Where(f => !data.Privileged[f]).ToArray();
                        var aloneNp = new ZooModel(studentConfig, common.Select(f => data.Fields[f]).ToArray(), common.Select(f => data.Columns[f]).ToArray());
                        runs.Add(Fit("pfd-alone", seed, "student", aloneNp, new SupervisedObjective(aloneNp), data, options, log));
                        var (s, t) = PfdObjective.Build(studentConfig, teacherConfig with { EmbeddingDim = studentConfig.EmbeddingDim }, data.Fields, data.Privileged, data.Columns);
                        var objective = new PfdObjective(s, t, options.PfdLambda, options.PfdWarmupSteps);
                        runs.Add(Fit(method, seed, "student", s, objective, data, options, log));
                        runs.Add(Evaluate("pfd-teacher", seed, "teacher", t, data, 0));
                        break;
                    }
                    case "ensemble":
                    case "average":
                    {
                        // Stopped on the student's validation AUC by default, or on the KD term as ECKD (EnsembleStopping);
                        // the averaging baseline is stopped the same way so that only the gate differs.
                        var s = new ZooModel(studentConfig, data.Fields, data.Columns);
                        var mode = method == "ensemble" ? EnsembleMode.TwoStage : EnsembleMode.Average;
                        var objective = new EnsembleObjective(s, EnsembleTeachers(), mode, options.Alpha, options.Temperature, null, [], 0f, seed);
                        runs.Add(Fit(method, seed, "student", s, objective, data, options, log, options.EnsembleStopping));
                        break;
                    }
                    default:
                        throw new ArgumentException($"unknown method '{method}' (expected logits, hint, rocket, double-dnn, pfd, ensemble, average).");
                }
            }
        }
        return runs;
    }

    private static string LastHidden(CtrModel model) => "dnn." + (model.Config.Dnn.Length - 1).ToString(CultureInfo.InvariantCulture);

    /// <summary>A teacher trained alone: with its own <paramref name="training"/> settings when given (the seed stays the run's).</summary>
    private static KdRun FitTeacher(string method, int seed, ZooModel teacher, KdEngine.Pipelines.TrainingSettings? training, ExperimentData data,
        KdExperimentOptions o, TextWriter? log)
    {
        if (training is not { } t) return Fit(method, seed, "teacher", teacher, new SupervisedObjective(teacher), data, o, log);
        var sw = Stopwatch.StartNew();
        var objective = new SupervisedObjective(teacher);
        var optimizer = t.BuildOptimizer(objective.Trainable.Parameters().Select(p => p.Tensor));
        var report = KdEngine.Pipelines.WideFirst.Fit(objective, optimizer, t with { Seed = seed }, t.ToTrainerOptions() with { Seed = seed },
            (options, stageObjective, stageOptimizer) => new Trainer(options).Fit(stageObjective, stageOptimizer, data.Train, data.Validation));
        var run = Evaluate(method, seed, "teacher", teacher, data, sw.Elapsed.TotalSeconds);
        log?.WriteLine($"{data.Name} seed {seed} {method,-28} teacher  test AUC {run.Auc:F4} logloss {run.LogLoss:F4} ({run.Seconds:F1} s, " +
            $"{report.Steps} steps, best at epoch {report.Best?.Epoch.ToString(CultureInfo.InvariantCulture) ?? "-"})");
        return run;
    }

    private static KdRun Fit(string method, int seed, string role, ZooModel model, IObjective objective, ExperimentData data,
        KdExperimentOptions o, TextWriter? log, StoppingMetric metric = StoppingMetric.Auc)
    {
        var sw = Stopwatch.StartNew();
        var optimizer = new Adam(objective.Trainable.Parameters().Select(p => p.Tensor), o.LearningRate)
        {
            EmbeddingL2 = o.EmbeddingL2,
            DenseL2 = o.DenseL2,
        };
        var trainer = new Trainer(new TrainerOptions { Epochs = o.Epochs, BatchSize = o.BatchSize, Patience = o.Patience, Seed = seed, Metric = metric });
        var report = trainer.Fit(objective, optimizer, data.Train, data.Validation);
        var run = Evaluate(method, seed, role, model, data, sw.Elapsed.TotalSeconds);
        o.OnTrained?.Invoke(run, model);
        log?.WriteLine($"{data.Name} seed {seed} {method,-28} {role,-8} test AUC {run.Auc:F4} logloss {run.LogLoss:F4} ({run.Seconds:F1} s, " +
            $"{report.Steps} steps, best at epoch {report.Best?.Epoch.ToString(CultureInfo.InvariantCulture) ?? "-"})");
        return run;
    }

    private static KdRun Evaluate(string method, int seed, string role, ZooModel model, ExperimentData data, double seconds)
    {
        var (result, _) = Trainer.Evaluate(model, data.Test);
        return new KdRun(method, seed, role, result.Auc, result.LogLoss, model.ParameterCount(), seconds);
    }

    /// <summary>mean ± std (sample std; 0 for one seed) of AUC and logloss per (method, role), as a markdown table.</summary>
    public static string Table(IEnumerable<KdRun> runs)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine("| method | role | test AUC | test logloss | parameters | seconds/run | seeds |");
        sb.AppendLine("|---|---|---|---|---:|---:|---:|");
        foreach (var g in runs.GroupBy(r => (r.Method, r.Role)))
        {
            var auc = g.Select(r => r.Auc).ToArray();
            var ll = g.Select(r => r.LogLoss).ToArray();
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {g.Key.Method} | {g.Key.Role} | {Mean(auc):F4} ± {Std(auc):F4} | {Mean(ll):F4} ± {Std(ll):F4} | {g.First().Parameters:N0} | {g.Average(r => r.Seconds):F1} | {auc.Length} |");
        }
        foreach (var g in runs.Where(r => r.Note is not null).GroupBy(r => r.Method))
            sb.AppendLine().Append(CultureInfo.InvariantCulture, $"{g.Key}: chosen on validation per seed: {string.Join(", ", g.Select(r => $"seed {r.Seed} {r.Note}"))}").AppendLine();
        return sb.ToString();
    }

    /// <summary>The mean of <paramref name="x"/>.</summary>
    public static double Mean(double[] x) => x.Average();

    /// <summary>The sample standard deviation of <paramref name="x"/> (n − 1 in the denominator; 0 for fewer than 2 values).</summary>
    public static double Std(double[] x)
    {
        if (x.Length < 2) return 0;
        double m = x.Average();
        return Math.Sqrt(x.Sum(v => (v - m) * (v - m)) / (x.Length - 1));
    }
}

/// <summary>Chooses privileged fields for a PFD stand-in on data with none (Criteo).</summary>
public static class PrivilegedFieldAblation
{
    /// <summary>
    /// Trains a logistic regression on all fields, then once without each field, and ranks the fields by how
    /// much validation AUC drops without them (validation split only — never the test split). The top
    /// <paramref name="count"/> are the strongest single signals: the honest stand-in for "privileged".
    /// </summary>
    public static (int[] Chosen, (string Field, double Drop)[] Ranking) Choose(ExperimentData data, int count, int seed, TextWriter? log = null)
    {
        double Auc(int[] fields)
        {
            var config = new ModelConfig { Model = ModelKind.Lr, Seed = seed };
            var model = new ZooModel(config, fields.Select(f => data.Fields[f]).ToArray(), fields.Select(f => data.Columns[f]).ToArray());
            var optimizer = new Adam(model.Parameters().Select(p => p.Tensor), 1e-3f);
            new Trainer(new TrainerOptions { Epochs = 10, BatchSize = 256, Patience = 2, Seed = seed }).Fit(new SupervisedObjective(model), optimizer, data.Train, data.Validation);
            return Trainer.Evaluate(model, data.Validation).Result.Auc;
        }
        var all = Enumerable.Range(0, data.Fields.Length).ToArray();
        double full = Auc(all);
        var drops = all.Select(f => (Field: f, Drop: full - Auc(all.Where(g => g != f).ToArray()))).OrderByDescending(x => x.Drop).ToArray();
        log?.WriteLine($"{data.Name}: validation AUC with all fields {full:F4}; largest drops: " +
            string.Join(", ", drops.Take(count + 3).Select(d => $"{data.Fields[d.Field].Name} {d.Drop:+0.0000;-0.0000}")));
        return (drops.Take(count).Select(d => d.Field).OrderBy(f => f).ToArray(), drops.Select(d => (data.Fields[d.Field].Name, d.Drop)).ToArray());
    }
}
