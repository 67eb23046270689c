using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using KdEngine.Cli.Options;
using KdEngine.Data;
using KdEngine.Distillation;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Training;

namespace KdEngine.Cli.Verbs;

/// <summary>
/// The README's main job: on the bundled Criteo sample, an xDeepFM teacher, a small DNN student trained alone and
/// the same student distilled from the teacher (logits KD), in one table with test AUC/logloss, parameter count and
/// measured inference latency.
/// </summary>
internal static class QuickstartVerb
{
    /// <summary>Training of all three models: the library defaults (Adam 1e-3, batch 256, early stopping on validation AUC or logloss, the logloss-guarded best restored).</summary>
    internal static readonly TrainingSettings Training = new();

    /// <summary>The logits-KD knobs: the library's <see cref="DistillConfig"/> defaults.</summary>
    private static readonly DistillConfig Kd = new();

    private const int MinCount = SplitOptionsGroup.DefaultMinCount;

    public static Command Create()
    {
        var data = CliOptions.Text("--data", "FILE", $"Criteo-format file (default: the bundled sample {DataPaths.CriteoSampleRelative})");
        var seed = CliOptions.Int("--seed", "N", "seed of the models and the shuffling", Training.Seed);
        var epochs = CliOptions.Int("--epochs", "N",
            $"maximum epochs per model; early stopping on validation AUC or logloss with patience {Training.Patience}, the logloss-guarded best weights restored", Training.Epochs, min: 1);
        var alpha = CliOptions.Float("--alpha", "X", "KD weight α in (1−α)·BCE + α·T²·KL", Kd.Alpha);
        var temperature = CliOptions.Float("--temperature", "T", "KD temperature", Kd.Temperature, CliOptions.Positive);
        var output = CliOptions.Text("--out", "DIR",
            $"also save the three models there ({TeacherFile}, {AloneFile}, {StudentFile} — the distilled one) for eval, predict and serve");
        var command = new Command("quickstart",
            "The main job: an xDeepFM teacher, a DNN student alone and the student distilled from it, on the Criteo sample. " +
            $"Sequential 8:1:1 split, ⌊ln(v)²⌋ buckets, min-count {MinCount} (fitted on the train part); trains an xDeepFM teacher, " +
            "a DNN student alone and a DNN student distilled from the teacher (logits KD), and prints one " +
            "table: test AUC/logloss, parameters, training time, and the latency of the compiled Predictor (the serving path) per example " +
            "at batch 1 and 1024.");
        foreach (var option in new Option[] { data, seed, epochs, alpha, temperature, output }) command.Options.Add(option);
        command.SetAction(parse => Run(new CliOutput(parse.InvocationConfiguration.Output), parse.GetValue(data), parse.GetValue(seed),
            parse.GetValue(epochs), parse.GetValue(alpha), parse.GetValue(temperature), parse.GetValue(output)));
        return command;
    }

    internal const string TeacherFile = "teacher.kde", AloneFile = "student-alone.kde", StudentFile = "student.kde";

    private static int Run(CliOutput o, string? dataPath, int seed, int epochs, float alpha, float temperature, string? outDir)
    {
        var total = Stopwatch.StartNew();
        var settings = Training with { Epochs = epochs, Seed = seed };
        var teacherConfig = new ModelConfig { Model = ModelKind.XDeepFm, EmbeddingDim = 10, Dnn = [400, 400], Cin = [100, 100], CinSplitHalf = true, Seed = seed };
        var studentConfig = new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 10, Dnn = [64, 32], Seed = seed };

        var path = dataPath ?? DataPaths.FindCriteoSample();
        var data = CtrPipeline.Prepare(new DataSource(path) { Format = DataFormat.Criteo }, new SplitOptions(), new PreprocessorOptions { MinCount = MinCount });
        Report.Data(o, data);
        var teacherSettings = TrainingSettings.For(ModelKind.XDeepFm) with { Epochs = epochs, Seed = seed };
        o.Line($"seed {seed}; teacher training: {teacherSettings.Describe()}");
        o.Line($"student training: {settings.Describe()}");
        o.Line($"teacher config {teacherConfig.ToJson()}");
        o.Line($"student config {studentConfig.ToJson()}");
        o.Line($"distillation: logits KD, loss (1−α)·BCE(y, z_s) + α·T²·KL(σ(z_t/T) ‖ σ(z_s/T)), α = {alpha}, T = {temperature}, frozen teacher, its train-part logits computed once");

        var rows = new List<(string Name, ZooModel Model, TrainOutcome Outcome)>();
        TrainOutcome Train(string title, Func<TextWriter, bool, TrainOutcome> run)
        {
            o.Line(title);
            return o.Progress(title, run);
        }
        var teacher = CtrPipeline.BuildModel(teacherConfig, data.Fields);
        rows.Add(("xDeepFM teacher", teacher, Train("[1/3] teacher xDeepFM", (w, i) => CtrPipeline.Train(teacher, data, teacherSettings, w, i))));
        var alone = CtrPipeline.BuildModel(studentConfig, data.Fields);
        rows.Add(("DNN student alone", alone, Train("[2/3] DNN student alone", (w, i) => CtrPipeline.Train(alone, data, settings, w, i))));
        var distilled = CtrPipeline.BuildModel(studentConfig, data.Fields);
        // The frozen teacher's logits over the train part are computed once (as cache-logits does), not per batch and epoch.
        var teacherLogits = TeacherLogitCache.Compute(teacher, data.Train);
        var objective = new TeacherStudentObjective(distilled, new CachedTeacher(teacherLogits), alpha, temperature);
        rows.Add(("DNN student distilled", distilled, Train("[3/3] DNN student distilled from the teacher", (w, i) => CtrPipeline.Fit(objective, data, settings, w, i))));

        o.Line("measuring inference latency (Predictor over test rows, after warm-up) …");
        var table = new List<string[]>();
        foreach (var (name, model, outcome) in rows)
        {
            double b1 = CtrPipeline.LatencyMicroseconds(model, data.Test, 1, warmup: 50, minExamples: 2_000, minSeconds: 0.4);
            double b1024 = CtrPipeline.LatencyMicroseconds(model, data.Test, 1024, warmup: 3, minExamples: 8 * 1024, minSeconds: 0.4);
            table.Add(string.Create(CultureInfo.InvariantCulture,
                $"{name}\t{outcome.Test.Auc:F4}\t{outcome.Test.LogLoss:F4}\t{model.ParameterCount():N0}\t{b1:F1}\t{b1024:F2}\t{outcome.Report.Elapsed.TotalSeconds:F1} s, {outcome.Report.Steps} steps").Split('\t'));
        }
        o.Line();
        o.Table(["model", "test AUC", "test logloss", "parameters", "latency µs/example, batch 1", "latency µs/example, batch 1024", "training"], table);
        o.Line();
        o.Line($"test = the last 10 % of the file ({data.Test.Count} rows); latency = Stopwatch over repeated calls of the compiled, allocation-free Predictor (the serving path), this machine. Total {total.Elapsed.TotalSeconds:F0} s.");
        if (outDir is not null)
        {
            Directory.CreateDirectory(outDir);
            var source = new DataSource(path) { Format = DataFormat.Criteo };
            foreach (var (file, (_, model, _)) in new[] { TeacherFile, AloneFile, StudentFile }.Zip(rows))
                CtrPipeline.Save(Path.Combine(outDir, file), model, data.Preprocessor, source);
            o.Line($"saved {Path.Combine(outDir, TeacherFile)}, {Path.Combine(outDir, AloneFile)}, {Path.Combine(outDir, StudentFile)} (distilled); " +
                   $"serve the student with: kdengine serve --model student={Path.Combine(outDir, StudentFile)}");
        }
        return 0;
    }
}
