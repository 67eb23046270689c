using System.Text.Json;
using KdEngine.Models;

namespace KdEngine.Pipelines;

/// <summary>
/// Hyper-parameters of the model-zoo experiment (strict JSON, camelCase, unknown keys rejected):
/// <c>{"training": {…TrainingSettings…}, "minCount": 2, "models": {"xdeepfm": {…ModelConfig…}, …}}</c>.
/// A model left out of <c>models</c> gets the "sample" reference configuration of docs/models.md (D = 10, DNN [400, 400], CIN [100, 100] split-half;
/// FFM: D = 4, the dimension LIBFFM and ML.NET use; DCN-V2: full-rank cross layers in parallel with the DNN).
/// Without <c>training</c> each model trains with its defaults (<see cref="TrainingSettings.For"/>).
/// </summary>
public sealed record ZooExperimentConfig
{
    /// <summary>One set of settings for every model; null: each model's defaults.</summary>
    public TrainingSettings? Training { get; init; }
    /// <summary>Categories seen fewer times in the train part map to the OOV id.</summary>
    public int MinCount { get; init; } = 2;
    /// <summary>Per-model configs by name (<see cref="ModelNames"/>); a model left out gets the sample reference configuration.</summary>
    public Dictionary<string, ModelConfig> Models { get; init; } = new();

    /// <summary>The zoo's model names, in table order.</summary>
    public static readonly string[] ModelNames = ["lr", "fm", "dnn", "wdl", "deepfm", "dcn", "xdeepfm", "ffm", "dcnv2"];

    /// <summary>Reads and validates a config file; a missing file is a <see cref="FileNotFoundException"/>, a bad one a <see cref="ConfigException"/> naming the key.</summary>
    public static ZooExperimentConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{Path.GetFileName(path)}: config file not found ({Path.GetFullPath(path)}).", path);
        return FromJson(File.ReadAllText(path), Path.GetFileName(path));
    }

    /// <summary>Parses and validates config JSON; <paramref name="source"/> names it in errors.</summary>
    public static ZooExperimentConfig FromJson(string json, string source = "zoo.json")
    {
        var c = TrainingSettings.ParseStrict<ZooExperimentConfig>(json, source);
        c.Validate(source);
        return c;
    }

    /// <summary>Checks the training settings, minCount and every model config; a problem is a <see cref="ConfigException"/> naming the key.</summary>
    public void Validate(string source = "zoo.json")
    {
        Training?.Validate(source + ": training");
        if (MinCount < 1) throw new ConfigException($"{source}: minCount = {MinCount}; expected ≥ 1.");
        if (Models is null) throw new ConfigException($"{source}: models must be an object.");
        foreach (var (name, config) in Models)
        {
            if (Array.IndexOf(ModelNames, name) < 0) throw new ConfigException($"{source}: models.{name}: unknown model (expected {string.Join("|", ModelNames)}).");
            if (config is null) throw new ConfigException($"{source}: models.{name} must be a model config.");
            config.Validate($"{source}: models.{name}");
            if (config.Model != KindOf(name)) throw new ConfigException($"{source}: models.{name}.model is {config.Model}; leave it out or make it match the key.");
        }
    }

    /// <summary>The training settings of model <paramref name="name"/>: the file's, or the model's defaults.</summary>
    public TrainingSettings TrainingFor(string name) => Training ?? TrainingSettings.For(KindOf(name));

    /// <summary>The config of model <paramref name="name"/> (the file's, or the sample reference configuration) with the given seed.</summary>
    public ModelConfig ConfigFor(string name, int seed) =>
        (Models.TryGetValue(name, out var c) ? c : new ModelConfig
        {
            Model = KindOf(name), EmbeddingDim = KindOf(name) == ModelKind.Ffm ? 4 : 10, Dnn = [400, 400], Cin = [100, 100], CinSplitHalf = true,
        }) with { Seed = seed };

    /// <summary>The model kind of a zoo name (<c>lr</c> … <c>dcnv2</c>); an unknown name is a <see cref="ConfigException"/>.</summary>
    public static ModelKind KindOf(string name) => name switch
    {
        "lr" => ModelKind.Lr,
        "fm" => ModelKind.Fm,
        "dnn" => ModelKind.Dnn,
        "wdl" => ModelKind.Wdl,
        "deepfm" => ModelKind.DeepFm,
        "dcn" => ModelKind.Dcn,
        "xdeepfm" => ModelKind.XDeepFm,
        "ffm" => ModelKind.Ffm,
        "dcnv2" => ModelKind.DcnV2,
        _ => throw new ConfigException($"unknown model '{name}' (expected {string.Join("|", ModelNames)})."),
    };

    /// <summary>The config as indented JSON (what <see cref="FromJson"/> reads back).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, TrainingSettings.Json);
}

/// <summary>One model × seed run of the zoo experiment (seconds and steps of the whole training, a wide stage included).</summary>
public sealed record ZooRun(string Model, int Seed, double TestAuc, double TestLogLoss, double ValidAuc, double Seconds, long Steps, long Parameters);

/// <summary>Trains every requested zoo model for every seed on the same prepared data and collects test metrics.</summary>
public static class ZooExperiment
{
    /// <summary>
    /// Trains each of <paramref name="models"/> once per seed on <paramref name="data"/> (early stopping on the
    /// validation part) and evaluates it on the test part; runs are in model-major order.
    /// </summary>
    /// <param name="data">The prepared file (split and preprocessing fixed for every run).</param>
    /// <param name="config">Training settings and per-model configs.</param>
    /// <param name="models">Zoo names (<see cref="ZooExperimentConfig.ModelNames"/>) to train.</param>
    /// <param name="seeds">Seeds of the model initialisation and the shuffling, one run each.</param>
    /// <param name="onRun">Called after each run (progress).</param>
    public static IReadOnlyList<ZooRun> Run(PreparedData data, ZooExperimentConfig config, IReadOnlyList<string> models, IReadOnlyList<int> seeds, Action<ZooRun>? onRun = null)
    {
        var runs = new List<ZooRun>();
        foreach (var name in models)
            foreach (int seed in seeds)
            {
                var model = CtrPipeline.BuildModel(config.ConfigFor(name, seed), data.Fields);
                var outcome = CtrPipeline.Train(model, data, config.TrainingFor(name) with { Seed = seed });
                // Time and steps of the whole training: a wide part trained first counts too.
                var wide = outcome.Report.WideStage;
                var run = new ZooRun(name, seed, outcome.Test.Auc, outcome.Test.LogLoss, outcome.Validation.Auc,
                    (outcome.Report.Elapsed + (wide?.Elapsed ?? TimeSpan.Zero)).TotalSeconds, outcome.Report.Steps + (wide?.Steps ?? 0), model.ParameterCount());
                runs.Add(run);
                onRun?.Invoke(run);
            }
        return runs;
    }

    /// <summary>Mean and sample standard deviation (n − 1; NaN for a single value).</summary>
    public static (double Mean, double Std) MeanStd(IReadOnlyList<double> values)
    {
        double mean = values.Average();
        if (values.Count < 2) return (mean, double.NaN);
        double ss = values.Sum(v => (v - mean) * (v - mean));
        return (mean, Math.Sqrt(ss / (values.Count - 1)));
    }
}
