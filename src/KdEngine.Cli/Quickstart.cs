using System.Diagnostics;
using System.Globalization;
using KdEngine.Data;
using KdEngine.Distillation;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Training;

namespace KdEngine.Cli;

/// <summary>
/// The README's main job: on the bundled Criteo sample, an xDeepFM teacher, a small DNN student trained alone and
/// the same student distilled from the teacher (logits KD), in one table with test AUC/logloss, parameter count and
/// measured inference latency.
/// </summary>
internal static class Quickstart
{
    private static readonly CliOption[] Options =
    [
        new("data", "FILE", "Criteo-format file (default: the bundled sample data/criteo-sample/criteo_sampled_data_10k.csv)"),
        new("seed", "N", "seed of the models and the shuffling (default 1)"),
        new("epochs", "N", "maximum epochs per model (default 3; early stopping on validation AUC, patience 1)"),
        new("alpha", "X", "KD weight α in (1−α)·BCE + α·T²·KL (default 0.5)"),
        new("temperature", "T", "KD temperature (default 2)"),
    ];

    public static int Run(string[] args, TextWriter o)
    {
        var a = CliArgs.Parse("quickstart", args, Options);
        if (a.Flag("help"))
        {
            o.WriteLine(CliArgs.Help("kdengine quickstart [--seed N]",
                "Criteo sample, sequential 8:1:1 split, ⌊ln(v)²⌋ buckets, min-count 2 (fitted on the train part): trains an xDeepFM\n" +
                "teacher, a DNN student alone and a DNN student distilled from the teacher, and prints one table.", Options));
            return 0;
        }
        var total = Stopwatch.StartNew();
        int seed = a.Int("seed", 1);
        float alpha = a.Float("alpha") ?? 0.5f, temperature = a.Float("temperature") ?? 2f;
        var settings = new TrainingSettings { Epochs = a.Int("epochs", 10, 1), BatchSize = 256, LearningRate = 1e-3f, Patience = 2, Seed = seed };
        var teacherConfig = new ModelConfig { Model = ModelKind.XDeepFm, EmbeddingDim = 10, Dnn = [400, 400], Cin = [100, 100], CinSplitHalf = true, Seed = seed };
        var studentConfig = new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 10, Dnn = [64, 32], Seed = seed };

        var path = a.String("data") ?? DataPaths.FindCriteoSample();
        var data = CtrPipeline.Prepare(new DataSource(path) { Format = DataFormat.Criteo }, new SplitOptions(), new PreprocessorOptions { MinCount = 2 });
        Commands.PrintData(o, data);
        o.WriteLine($"seed {seed}; training: {settings.Optimizer.ToString().ToLowerInvariant()} lr {settings.LearningRate}, batch {settings.BatchSize}, ≤ {settings.Epochs} epochs, early stopping on validation AUC (patience {settings.Patience}, best weights restored)");
        o.WriteLine($"teacher config {teacherConfig.ToJson()}");
        o.WriteLine($"student config {studentConfig.ToJson()}");
        o.WriteLine($"distillation: logits KD, loss (1−α)·BCE(y, z_s) + α·T²·KL(σ(z_t/T) ‖ σ(z_s/T)), α = {alpha}, T = {temperature}, frozen teacher, its train-part logits computed once");

        var rows = new List<(string Name, ZooModel Model, TrainOutcome Outcome)>();
        o.WriteLine("[1/3] teacher xDeepFM");
        var teacher = CtrPipeline.BuildModel(teacherConfig, data.Fields);
        rows.Add(("xDeepFM teacher", teacher, CtrPipeline.Train(teacher, data, settings, o, CliApp.IsTerminal(o))));
        o.WriteLine("[2/3] DNN student alone");
        var alone = CtrPipeline.BuildModel(studentConfig, data.Fields);
        rows.Add(("DNN student alone", alone, CtrPipeline.Train(alone, data, settings, o, CliApp.IsTerminal(o))));
        o.WriteLine("[3/3] DNN student distilled from the teacher");
        var distilled = CtrPipeline.BuildModel(studentConfig, data.Fields);
        // The frozen teacher's logits over the train part are computed once (as cache-logits does), not per batch and epoch.
        var teacherLogits = TeacherLogitCache.Compute(teacher, data.Train);
        var objective = new TeacherStudentObjective(distilled, new CachedTeacher(teacherLogits), alpha, temperature);
        rows.Add(("DNN student distilled", distilled, CtrPipeline.Fit(objective, data, settings, o, CliApp.IsTerminal(o))));

        o.WriteLine("measuring inference latency (Predictor over test rows, after warm-up) …");
        var table = new List<string>
        {
            "| model | test AUC | test logloss | parameters | latency µs/example, batch 1 | latency µs/example, batch 1024 | training |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        };
        foreach (var (name, model, outcome) in rows)
        {
            double b1 = CtrPipeline.LatencyMicroseconds(model, data.Test, 1, warmup: 50, minExamples: 2_000, minSeconds: 0.4);
            double b1024 = CtrPipeline.LatencyMicroseconds(model, data.Test, 1024, warmup: 3, minExamples: 8 * 1024, minSeconds: 0.4);
            table.Add(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {outcome.Test.Auc:F4} | {outcome.Test.LogLoss:F4} | {model.ParameterCount():N0} | {b1:F1} | {b1024:F2} | {outcome.Report.Elapsed.TotalSeconds:F1} s, {outcome.Report.Steps} steps |"));
        }
        o.WriteLine();
        foreach (var line in table) o.WriteLine(line);
        o.WriteLine();
        o.WriteLine($"test = the last 10 % of the file ({data.Test.Count} rows); latency = Stopwatch over repeated calls of the compiled, allocation-free Predictor (the serving path), this machine. Total {total.Elapsed.TotalSeconds:F0} s.");
        return 0;
    }
}
