// A gradient-boosted-trees teacher for KdEngine, end to end:
//   1. KdEngine reads the file, splits it (sequential 8:1:1 by default) and fits its preprocessing on the train part.
//   2. LightGBM (through ML.NET) trains on exactly those encoded ids, each field one categorical feature with LightGBM's
//      native categorical splits; its hyper-parameters are chosen on the validation part (logloss), trees stop early on it.
//   3. The chosen booster scores every row of the file; the logits go to a side file aligned by row
//      (row,label,logit — the row and label columns let KdEngine check the alignment on every line).
//   4. KdEngine distils them into a DNN student (logits KD) and trains the same student alone; both students are
//      compiled into the Predictor and scored on the test part from the Predictor's outputs.
// Per seed; a markdown table of mean ± std over the seeds closes the run.
using System.Diagnostics;
using System.Globalization;
using KdEngine.Data;
using KdEngine.Distillation;
using KdEngine.Metrics;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Serving;
using KdEngine.Training;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Trainers.LightGbm;

var inv = CultureInfo.InvariantCulture;
var opt = GbdtOptions.Parse(args);
if (opt is null) return 0;

var source = new DataSource(opt.Data)
{
    Format = opt.Schema is null ? DataFormat.Criteo : DataFormat.Csv,
    Schema = opt.Schema is null ? null : Schema.Load(opt.Schema),
};
var split = new SplitOptions { Ratios = [8, 1, 1], Mode = SplitMode.Sequential };
var preprocessing = new PreprocessorOptions { MinCount = opt.MinCount };
var data = CtrPipeline.Prepare(source, split, preprocessing);
if (data.Privileged.Any(p => p))
    throw new ArgumentException($"{source.FileName}: the schema declares privileged fields; the plain teacher/student comparison here needs every model to see the same fields.");
var fieldNames = data.Preprocessor.FeatureSpace.SingleFields.Select(f => f.Name).ToArray();
var cardinalities = data.Preprocessor.FeatureSpace.SingleFields.Select(f => f.Cardinality).ToArray();
Console.WriteLine($"data: {source.FileName}, {data.Rows} rows → train {data.Train.Count} / validation {data.Validation.Count} / test {data.Test.Count}; " +
    $"{fieldNames.Length} fields, {cardinalities.Sum():N0} ids (min-count {opt.MinCount}); click rate {data.Train.LabelRate.ToString("F4", inv)} (train)");
if (!opt.FfmReference)
{
    Console.WriteLine($"student: {opt.Student.ToJson()}; Adam lr {opt.LearningRate.ToString(inv)}, batch {opt.BatchSize}, up to {opt.Epochs} epochs (patience {opt.Patience}, validation AUC); " +
        $"distilled: logits KD α {opt.Alpha.ToString(inv)}, T {opt.Temperature.ToString(inv)}");
    Console.WriteLine($"GBDT grid: leaves {string.Join(",", opt.Leaves)} × learning rate {string.Join(",", opt.LearningRates.Select(x => x.ToString(inv)))} × min leaf {string.Join(",", opt.MinLeaf)}; " +
        $"up to {opt.MaxTrees} trees, early stopping after {opt.EarlyStop} rounds on validation logloss; feature/bagging fraction 0.8; {opt.Threads} thread(s)");
}
Directory.CreateDirectory(opt.Out);

// The encoded ids as one text file per part for ML.NET's TextLoader: label, then one 0-based key per field.
string WriteIds(EncodedDataset part, string name)
{
    var path = Path.Combine(opt.Out, $"{name}.ids.tsv");
    using var w = new StreamWriter(path);
    w.Write("label\t" + string.Join('\t', fieldNames) + "\n");
    for (int i = 0; i < part.Count; i++)
    {
        w.Write(part.Labels[i] > 0.5f ? "1" : "0");
        foreach (int id in part.RowIds(i)) { w.Write('\t'); w.Write(id.ToString(inv)); }
        w.Write('\n');
    }
    return path;
}
var idFiles = new[] { WriteIds(data.Train, "train"), WriteIds(data.Validation, "valid"), WriteIds(data.Test, "test") };
if (opt.FfmReference)
{
    MlNetFfmReference.Run(opt, [data.Train, data.Validation, data.Test], idFiles, cardinalities);
    foreach (var f in idFiles) File.Delete(f);
    return 0;
}

var ml = new MLContext(seed: 0);
var loader = MlNetFfmReference.IdLoader(ml, cardinalities);
// Key → indicator vector per field: the vectors carry CategoricalSlotRanges, which ML.NET's LightGBM wrapper turns back
// into one categorical feature per field (native categorical splits, not one-hot splits) when UseCategoricalSplit is set.
var keys = Enumerable.Range(0, fieldNames.Length).Select(f => $"f{f}").ToArray();
var featurize = ml.Transforms.Conversion.MapKeyToVector(keys.Select(k => new InputOutputColumnPair(k + ".v", k)).ToArray())
    .Append(ml.Transforms.Concatenate("Features", keys.Select(k => k + ".v").ToArray()));
var raw = idFiles.Select(p => loader.Load(p)).ToArray();
var featurizer = featurize.Fit(raw[0]);
var parts = raw.Select(v => ml.Data.Cache(featurizer.Transform(v))).ToArray();
EncodedDataset[] encodedParts = [data.Train, data.Validation, data.Test];

float[] Logits(ITransformer model, IDataView part) =>
    model.Transform(part).GetColumn<float>("Score").ToArray(); // Sigmoid = 1: the raw margin is the logit

var runs = new List<(int Seed, string Role, double Auc, double LogLoss, string Note)>();
foreach (int seed in Enumerable.Range(1, opt.Seeds))
{
    var sw = Stopwatch.StartNew();
    (double ValidLogLoss, double ValidAuc, ITransformer Model, string Config)? best = null;
    foreach (int leaves in opt.Leaves)
    foreach (double rate in opt.LearningRates)
    foreach (int minLeaf in opt.MinLeaf)
    {
        var trainer = ml.BinaryClassification.Trainers.LightGbm(new LightGbmBinaryTrainer.Options
        {
            UseCategoricalSplit = true,
            NumberOfLeaves = leaves,
            LearningRate = rate,
            MinimumExampleCountPerLeaf = minLeaf,
            NumberOfIterations = opt.MaxTrees,
            EarlyStoppingRound = opt.EarlyStop,
            Sigmoid = 1.0,
            Seed = seed,
            NumberOfThreads = opt.Threads,
            Booster = new GradientBooster.Options { FeatureFraction = 0.8, SubsampleFraction = 0.8, SubsampleFrequency = 1 },
            Silent = true,
        });
        var model = trainer.Fit(parts[0], parts[1]);
        var valid = CtrMetrics.EvaluateLogits(Logits(model, parts[1]), data.Validation.Labels);
        int trees = model.Model.SubModel.TrainedTreeEnsemble.Trees.Count;
        string setting = string.Create(inv, $"leaves {leaves}, lr {rate}, min leaf {minLeaf}, {trees} trees");
        Console.WriteLine(string.Create(inv, $"seed {seed} GBDT {setting}: valid AUC {valid.Auc:F4} logloss {valid.LogLoss:F4}"));
        if (best is null || valid.LogLoss < best.Value.ValidLogLoss) best = (valid.LogLoss, valid.Auc, model, setting);
    }
    var chosen = best!.Value;
    var ensemble = ((Microsoft.ML.Calibrators.CalibratedModelParametersBase<LightGbmBinaryModelParameters, Microsoft.ML.Calibrators.PlattCalibrator>)
        ((BinaryPredictionTransformer<Microsoft.ML.Calibrators.CalibratedModelParametersBase<LightGbmBinaryModelParameters, Microsoft.ML.Calibrators.PlattCalibrator>>)chosen.Model).Model)
        .SubModel.TrainedTreeEnsemble;
    long splits = ensemble.Trees.Sum(t => (long)t.NumberOfNodes);
    long categorical = ensemble.Trees.Sum(t => (long)t.CategoricalSplitFlags.Count(c => c));

    // Every row's teacher logit, in file order (the parts hold file rows data.SplitIndices[k]).
    var byFileRow = new float[data.Rows];
    var labelsByFileRow = new float[data.Rows];
    for (int k = 0; k < 3; k++)
    {
        var z = Logits(chosen.Model, parts[k]);
        var probability = chosen.Model.Transform(parts[k]).GetColumn<float>("Probability").ToArray();
        for (int i = 0; i < z.Length; i++)
        {
            // The logit written must be the one the booster's own probabilities come from.
            double p = 1 / (1 + Math.Exp(-z[i]));
            if (Math.Abs(p - probability[i]) > 1e-4)
                throw new InvalidOperationException($"GBDT: σ(score) = {p} but ML.NET's probability is {probability[i]} (row {i} of part {k}); the score is not the logit.");
            byFileRow[data.SplitIndices[k][i]] = z[i];
            labelsByFileRow[data.SplitIndices[k][i]] = encodedParts[k].Labels[i];
        }
    }
    var sideFile = Path.Combine(opt.Out, $"{Path.GetFileNameWithoutExtension(source.FileName)}.gbdt-seed{seed}.teacher.csv");
    var tmp = sideFile + ".tmp";
    using (var w = new StreamWriter(tmp))
    {
        w.Write("row,label,logit\n");
        for (int r = 0; r < byFileRow.Length; r++) w.Write(string.Create(inv, $"{r},{labelsByFileRow[r]},{byFileRow[r]:R}\n"));
    }
    File.Move(tmp, sideFile, overwrite: true);
    var teacherTest = CtrMetrics.EvaluateLogits(data.SplitIndices[2].Select(r => byFileRow[r]).ToArray(), data.Test.Labels);
    runs.Add((seed, "teacher", teacherTest.Auc, teacherTest.LogLoss, chosen.Config));
    Console.WriteLine(string.Create(inv, $"seed {seed} GBDT teacher chosen on validation ({chosen.Config}; {categorical} of {splits} splits categorical): " +
        $"valid logloss {chosen.ValidLogLoss:F4}, test AUC {teacherTest.Auc:F4} logloss {teacherTest.LogLoss:F4} ({sw.Elapsed.TotalSeconds:F1} s) → {Path.GetFileName(sideFile)}"));

    // KdEngine reads the side file back through its validated reader (row and label checked on every line).
    var scored = CtrPipeline.Prepare(source, split, preprocessing, [TeacherScoreSource.FromFile(sideFile)]);
    var settings = new TrainingSettings { Epochs = opt.Epochs, BatchSize = opt.BatchSize, LearningRate = opt.LearningRate, Patience = opt.Patience, Seed = seed };
    var studentConfig = opt.Student with { Seed = seed + 1000 };

    double Served(ZooModel student, out double logLoss)
    {
        var predictor = new Predictor(student);
        var logits = new float[scored.Test.Count];
        predictor.Predict(scored.Test.Ids, logits);
        var result = CtrMetrics.EvaluateLogits(logits, scored.Test.Labels);
        logLoss = result.LogLoss;
        return result.Auc;
    }

    var alone = CtrPipeline.BuildModel(studentConfig, scored.Fields);
    CtrPipeline.Train(alone, scored, settings);
    double aloneAuc = Served(alone, out double aloneLogLoss);
    runs.Add((seed, "alone", aloneAuc, aloneLogLoss, ""));

    var config = new DistillConfig { Student = studentConfig, Alpha = opt.Alpha, Temperature = opt.Temperature, Seed = seed };
    var distill = DistillPipeline.Build(DistillMethod.Logits, config, scored, [new ExternalTeacher(0, Path.GetFileName(sideFile))]);
    CtrPipeline.Fit(distill.Objective, scored, settings);
    double kdAuc = Served(distill.Student, out double kdLogLoss);
    runs.Add((seed, "distilled", kdAuc, kdLogLoss, ""));
    Console.WriteLine(string.Create(inv, $"seed {seed} student (Predictor, test): alone AUC {aloneAuc:F4} logloss {aloneLogLoss:F4}; distilled from the GBDT AUC {kdAuc:F4} logloss {kdLogLoss:F4} ({sw.Elapsed.TotalSeconds:F1} s)"));
    if (!opt.KeepScores && seed > 1) File.Delete(sideFile);
}
foreach (var f in idFiles) File.Delete(f);

static (double Mean, double Std) MeanStd(IReadOnlyList<double> x)
{
    double m = x.Average();
    return (m, x.Count < 2 ? 0 : Math.Sqrt(x.Sum(v => (v - m) * (v - m)) / (x.Count - 1)));
}
string Cell(IReadOnlyList<double> x, bool signed = false)
{
    var (m, s) = MeanStd(x);
    return (signed && m >= 0 ? "+" : "") + m.ToString("F4", inv) + " ± " + s.ToString("F4", inv);
}
Console.WriteLine();
Console.WriteLine($"| model | test AUC ({opt.Seeds} seeds) | Δ AUC vs student alone | test logloss | Δ logloss |");
Console.WriteLine("|---|---|---|---|---|");
var alonePerSeed = runs.Where(r => r.Role == "alone").ToDictionary(r => r.Seed);
foreach (var (role, label) in new[] { ("teacher", "GBDT teacher (LightGBM, categorical splits)"), ("alone", "student alone"), ("distilled", "student distilled from the GBDT") })
{
    var mine = runs.Where(r => r.Role == role).ToArray();
    var dAuc = mine.Select(r => r.Auc - alonePerSeed[r.Seed].Auc).ToArray();
    var dLl = mine.Select(r => r.LogLoss - alonePerSeed[r.Seed].LogLoss).ToArray();
    Console.WriteLine($"| {label} | {Cell(mine.Select(r => r.Auc).ToArray())} | {(role == "alone" ? "" : Cell(dAuc, true))} | " +
        $"{Cell(mine.Select(r => r.LogLoss).ToArray())} | {(role == "alone" ? "" : Cell(dLl, true))} |");
}
Console.WriteLine();
Console.WriteLine("GBDT chosen on validation per seed: " + string.Join("; ", runs.Where(r => r.Role == "teacher").Select(r => $"seed {r.Seed}: {r.Note}")));
return 0;

/// <summary>Command-line options of the example (hand-parsed: it is a benchmark script, not a product CLI).</summary>
internal sealed record GbdtOptions
{
    public string Data { get; init; } = "";
    public string? Schema { get; init; }
    public string Out { get; init; } = "gbdt-teacher-out";
    public int Seeds { get; init; } = 5;
    public int MinCount { get; init; } = 2;
    public int[] Leaves { get; init; } = [15, 63];
    public double[] LearningRates { get; init; } = [0.05, 0.1];
    public int[] MinLeaf { get; init; } = [20, 100];
    public int MaxTrees { get; init; } = 1000;
    public int EarlyStop { get; init; } = 30;
    public int Threads { get; init; } = 1;
    public ModelConfig Student { get; init; } = new() { Model = ModelKind.Dnn, EmbeddingDim = 10, Dnn = [32] };
    public float LearningRate { get; init; } = 1e-3f;
    public int BatchSize { get; init; } = 256;
    public int Epochs { get; init; } = 10;
    public int Patience { get; init; } = 2;
    public float Alpha { get; init; } = 0.5f;
    public float Temperature { get; init; } = 2f;
    public bool KeepScores { get; init; }
    public bool FfmReference { get; init; }
    public int[] FfmDims { get; init; } = [4, 8];
    public int[] FfmIterations { get; init; } = [5, 10, 20];
    public double[] FfmLearningRates { get; init; } = [0.05, 0.1, 0.2];
    public double FfmLambda { get; init; } = 1e-4;

    private const string Usage = """
        usage: KdEngine.GbdtTeacher --data FILE [--schema FILE.schema.json] [--out DIR] [--seeds N] [--min-count N]
               [--leaves 15,63] [--gbdt-lr 0.05,0.1] [--min-leaf 20,100] [--max-trees N] [--early-stop N] [--threads N]
               [--student-dnn 32] [--embedding-dim 10] [--lr 0.001] [--batch-size 256] [--epochs 10] [--patience 2]
               [--alpha 0.5] [--temperature 2] [--keep-scores]
               [--ffm-reference [--ffm-dims 4,8] [--ffm-iterations 5,10,20] [--ffm-lr 0.05,0.1,0.2] [--ffm-lambda 1e-4]]
        Without --schema the file is read as Criteo. The split is sequential 8:1:1; every choice is made on validation.
        --ffm-reference trains ML.NET's field-aware FM on the same split and ids instead (no teacher, no students).
        Writes DIR/NAME.gbdt-seedS.teacher.csv (row,label,logit for every row of the file; seed 1's is kept unless
        --keep-scores keeps all) and prints a markdown table.
        """;

    public static GbdtOptions? Parse(string[] args)
    {
        var o = new GbdtOptions();
        var inv = CultureInfo.InvariantCulture;
        int[] Ints(string v) => v.Split(',').Select(x => int.Parse(x, inv)).ToArray();
        double[] Doubles(string v) => v.Split(',').Select(x => double.Parse(x, inv)).ToArray();
        for (int i = 0; i < args.Length; i++)
        {
            string key = args[i];
            if (key is "--help" or "-h") { Console.WriteLine(Usage); return null; }
            if (key == "--keep-scores") { o = o with { KeepScores = true }; continue; }
            if (key == "--ffm-reference") { o = o with { FfmReference = true }; continue; }
            if (i + 1 >= args.Length) throw new ArgumentException($"option '{key}' needs a value.\n{Usage}");
            string v = args[++i];
            o = key switch
            {
                "--data" => o with { Data = v },
                "--schema" => o with { Schema = v },
                "--out" => o with { Out = v },
                "--seeds" => o with { Seeds = int.Parse(v, inv) },
                "--min-count" => o with { MinCount = int.Parse(v, inv) },
                "--leaves" => o with { Leaves = Ints(v) },
                "--gbdt-lr" => o with { LearningRates = Doubles(v) },
                "--min-leaf" => o with { MinLeaf = Ints(v) },
                "--max-trees" => o with { MaxTrees = int.Parse(v, inv) },
                "--early-stop" => o with { EarlyStop = int.Parse(v, inv) },
                "--threads" => o with { Threads = int.Parse(v, inv) },
                "--student-dnn" => o with { Student = o.Student with { Dnn = Ints(v) } },
                "--embedding-dim" => o with { Student = o.Student with { EmbeddingDim = int.Parse(v, inv) } },
                "--lr" => o with { LearningRate = float.Parse(v, inv) },
                "--batch-size" => o with { BatchSize = int.Parse(v, inv) },
                "--epochs" => o with { Epochs = int.Parse(v, inv) },
                "--patience" => o with { Patience = int.Parse(v, inv) },
                "--alpha" => o with { Alpha = float.Parse(v, inv) },
                "--temperature" => o with { Temperature = float.Parse(v, inv) },
                "--ffm-dims" => o with { FfmDims = Ints(v) },
                "--ffm-iterations" => o with { FfmIterations = Ints(v) },
                "--ffm-lr" => o with { FfmLearningRates = Doubles(v) },
                "--ffm-lambda" => o with { FfmLambda = double.Parse(v, inv) },
                _ => throw new ArgumentException($"unknown option '{key}'.\n{Usage}"),
            };
        }
        if (o.Data.Length == 0) throw new ArgumentException($"--data is required.\n{Usage}");
        if (o.Seeds < 1) throw new ArgumentException("--seeds must be ≥ 1.");
        o.Student.Validate("--student-dnn/--embedding-dim");
        return o;
    }
}
