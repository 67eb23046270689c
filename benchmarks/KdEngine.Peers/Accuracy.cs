using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using KdEngine.Data;
using KdEngine.Metrics;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace KdEngine.Peers;

/// <summary>
/// The accuracy peer (the `accuracy` verb): KdEngine and TorchSharp trained on the same encoded data, the same model sizes
/// (D 10, DNN [400, 400], CIN [100, 100] split-half), the same initial weights (TorchSharp copies KdEngine's seeded init),
/// the same batch order (KdEngine's seeded shuffle), the same early-stopping rule (KdEngine's <see cref="EarlyStopping"/>:
/// go on while validation AUC or logloss improves, patience 3, restore the logloss-guarded best AUC) and the same
/// validation-only grid: Adam lr 1e-3, batch 256, weight decay on the embedding tables ∈ {0, 1e-5, 1e-4} × DNN dropout ∈
/// {0, 0.2}. The weight decay is the reference's: coupled L2 (Adam's weight_decay) on every row every step — dense Adam on
/// the tables in TorchSharp (nn.Embedding without sparse gradients), <see cref="TableUpdateMode.Dense"/> with
/// <see cref="Optimizer.EmbeddingL2"/> in KdEngine (the same arithmetic). The best grid point (seed 1, validation) is
/// retrained with seeds 1…K and only then is the test part read. A third row per (dataset, model) is KdEngine's own default
/// (`kdengine train` defaults, no grid) on the same seeds.
/// </summary>
public static class Accuracy
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public sealed record Options
    {
        public string[] Datasets { get; init; } = ["criteo", "criteo-random", "synthetic"];
        public string[] Models { get; init; } = ["lr", "dnn", "wdl", "xdeepfm"];
        public string[] Engines { get; init; } = ["kdengine", "torchsharp", "kdengine-defaults"];
        public int Seeds { get; init; } = 5;
        public int SyntheticRows { get; init; } = 200_000;
        public int MaxEpochs { get; init; } = 30;
        public float[] WeightDecays { get; init; } = [0f, 1e-5f, 1e-4f];
        public float[] Dropouts { get; init; } = [0f, 0.2f];
        public int Threads { get; init; } = 1;
        public string OutputDirectory { get; init; } = "BenchmarkDotNet.Artifacts/results/accuracy";
        /// <summary>Where TorchSharp's per-epoch validation lines go (its runs are long; null: silent).</summary>
        public TextWriter? Progress { get; init; }
    }

    /// <summary>One (dataset, model, engine) result: the chosen grid point and the test metrics over the seeds.</summary>
    public sealed record Row(string Dataset, string Model, string Engine, string Chosen, double[] TestAuc, double[] TestLogLoss, double Seconds);

    public static void Run(Options o, TextWriter log)
    {
        Directory.CreateDirectory(o.OutputDirectory);
        KdEngine.Kernels.Cpu.CpuParallel.ThreadCount = o.Threads;
        torch.set_num_threads(o.Threads);
        var rows = new List<Row>();
        string resultsPath = Path.Combine(o.OutputDirectory, "accuracy.json");
        if (File.Exists(resultsPath)) rows.AddRange(JsonSerializer.Deserialize<List<Row>>(File.ReadAllText(resultsPath)) ?? []);
        log.WriteLine($"accuracy peer: datasets {string.Join(",", o.Datasets)}, models {string.Join(",", o.Models)}, engines {string.Join(",", o.Engines)}, " +
            $"{o.Seeds} seeds, grid weight decay {{{string.Join(", ", o.WeightDecays)}}} × dropout {{{string.Join(", ", o.Dropouts)}}}; load average {Load()}");
        foreach (var dataset in o.Datasets)
        {
            var (train, valid, test, describe) = Load(dataset, o.SyntheticRows);
            log.WriteLine($"{dataset}: {describe}");
            var fields = ModelInputs.From(train.FeatureSpace).Fields;
            foreach (var model in o.Models)
            foreach (var engine in o.Engines)
            {
                if (rows.Any(r => r.Dataset == dataset && r.Model == model && r.Engine == engine)) { log.WriteLine($"  {model} {engine}: done before (in {resultsPath})"); continue; }
                var clock = Stopwatch.StartNew();
                var kind = ZooExperimentConfig.KindOf(model);
                var grid = GridFor(kind, o, engine);
                string chosen;
                if (grid.Count == 1) chosen = grid[0].Name;
                else
                {
                    var trials = grid.Select(g => (g.Name, Valid: Train(engine, kind, g.Wd, g.Dropout, 1, fields, train, valid, o).Valid)).ToList();
                    foreach (var t in trials) log.WriteLine($"  {model} {engine} {t.Name}: validation AUC {t.Valid.Auc:F4} logloss {t.Valid.LogLoss:F5}");
                    // Rank as `kdengine tune` does: the best AUC among trials within 0.5 % of the lowest logloss.
                    double lowest = trials.Min(t => t.Valid.LogLoss);
                    chosen = trials.Where(t => t.Valid.LogLoss <= lowest * 1.005).OrderByDescending(t => t.Valid.Auc).First().Name;
                }
                var point = grid.Single(g => g.Name == chosen);
                var aucs = new double[o.Seeds];
                var losses = new double[o.Seeds];
                var models = new List<Func<EncodedDataset, float[]>>();
                for (int seed = 1; seed <= o.Seeds; seed++) models.Add(Train(engine, kind, point.Wd, point.Dropout, seed, fields, train, valid, o).Score);
                for (int k = 0; k < models.Count; k++) // the test part, read once per run after every training
                {
                    var r = CtrMetrics.EvaluateLogits(models[k](test), test.Labels);
                    aucs[k] = r.Auc;
                    losses[k] = r.LogLoss;
                }
                var row = new Row(dataset, model, engine, chosen, aucs, losses, clock.Elapsed.TotalSeconds);
                rows.Add(row);
                log.WriteLine($"  {model} {engine} [{chosen}]: test AUC {Mean(aucs):F4} ± {Std(aucs):F4}, logloss {Mean(losses):F4} ± {Std(losses):F4} ({row.Seconds:F0} s; load {Load()})");
                File.WriteAllText(resultsPath, JsonSerializer.Serialize(rows, new JsonSerializerOptions { WriteIndented = true }));
            }
        }
        string md = Markdown(rows);
        File.WriteAllText(Path.Combine(o.OutputDirectory, "accuracy.md"), md);
        log.WriteLine(md);
    }

    private static List<(string Name, float Wd, float Dropout)> GridFor(ModelKind kind, Options o, string engine)
    {
        if (engine == "kdengine-defaults") return [("defaults", float.NaN, float.NaN)];
        var dropouts = kind == ModelKind.Lr ? [0f] : o.Dropouts;
        return (from wd in o.WeightDecays from d in dropouts select ($"wd {wd.ToString(Inv)}, dropout {d.ToString(Inv)}", wd, d)).ToList();
    }

    private static (EncodedDataset Train, EncodedDataset Valid, EncodedDataset Test, string Describe) Load(string dataset, int syntheticRows)
    {
        switch (dataset)
        {
            case "criteo":
            case "criteo-random":
            {
                var split = dataset == "criteo" ? new SplitOptions() : new SplitOptions { Mode = SplitMode.Random, Seed = 1 };
                var d = CtrPipeline.Prepare(new DataSource(DataPaths.FindCriteoSample()), split, new PreprocessorOptions { MinCount = 2 });
                return (d.Train, d.Validation, d.Test, $"Criteo sample, {(dataset == "criteo" ? "sequential" : "random (seed 1)")} 8:1:1, " +
                    $"{d.Train.Count}/{d.Validation.Count}/{d.Test.Count} rows, {d.Fields.Sum(f => f.Cardinality):N0} ids");
            }
            case "synthetic":
            {
                var options = SyntheticOptions();
                var parts = new SyntheticCtr(options).Generate(syntheticRows).Split([8, 1, 1]);
                int seenOnce = RareIds(parts[0], out int total);
                return (parts[0], parts[1], parts[2], $"SyntheticCtr {options.Fields} fields × {options.VocabSize} Zipf({options.ZipfExponent}) ids, {syntheticRows} rows " +
                    $"sequential 8:1:1; {seenOnce:N0} of the {total:N0} ids in the train part occur once");
            }
            default: throw new ArgumentException($"unknown dataset '{dataset}' (criteo, criteo-random, synthetic)");
        }
    }

    /// <summary>The synthetic set of docs/results.md: 20 fields of 20,000 Zipf(1.1) ids — a long tail of rare ids.</summary>
    public static SyntheticCtrOptions SyntheticOptions() => new() { Fields = 20, VocabSize = 20_000, ZipfExponent = 1.1, Seed = 7 };

    private static int RareIds(EncodedDataset data, out int distinct)
    {
        var counts = new Dictionary<long, int>();
        for (int i = 0; i < data.Count; i++)
        {
            var row = data.RowIds(i);
            for (int f = 0; f < row.Length; f++) { long key = ((long)f << 32) | (uint)row[f]; counts[key] = counts.GetValueOrDefault(key) + 1; }
        }
        distinct = counts.Count;
        return counts.Values.Count(c => c == 1);
    }

    private static ModelConfig ConfigFor(ModelKind kind, float dropout, int seed) =>
        new() { Model = kind, EmbeddingDim = 10, Dnn = [400, 400], Cin = [100, 100], CinSplitHalf = true, Dropout = dropout, Seed = seed };

    /// <summary>Trains one (engine, grid point, seed); returns the validation metrics of the restored weights and a scorer.</summary>
    private static (EvaluationResult Valid, Func<EncodedDataset, float[]> Score) Train(string engine, ModelKind kind, float wd, float dropout, int seed,
        IReadOnlyList<KdEngine.Nn.InputField> fields, EncodedDataset train, EncodedDataset valid, Options o)
    {
        if (engine == "kdengine-defaults")
        {
            var settings = TrainingSettings.For(kind) with { Seed = seed };
            var model = CtrPipeline.BuildModel(new ModelConfig { Model = kind, Seed = seed }, fields);
            var opt = settings.BuildOptimizer(model.Parameters().Select(p => p.Tensor));
            // As `kdengine train` does: through WideFirst (the wide part, or a DNN's logistic regression, fitted first).
            WideFirst.Fit(new SupervisedObjective(model), opt, settings, settings.ToTrainerOptions(),
                (options, objective, optimizer) => new Trainer(options).Fit(objective, optimizer, train, valid));
            return (Trainer.Evaluate(model, valid).Result, d => CtrPipeline.Logits(model, d));
        }
        var stopping = new TrainerOptions { Epochs = o.MaxEpochs, BatchSize = 256, Patience = 3, Metric = StoppingMetric.Both, Seed = seed };
        if (engine == "kdengine")
        {
            var model = CtrPipeline.BuildModel(ConfigFor(kind, dropout, seed), fields);
            var adam = new Adam(model.Parameters().Select(p => p.Tensor), 1e-3f) { TableUpdate = TableUpdateMode.Dense, EmbeddingL2 = wd };
            new Trainer(stopping).Fit(new SupervisedObjective(model), adam, train, valid);
            return (Trainer.Evaluate(model, valid).Result, d => CtrPipeline.Logits(model, d));
        }
        return TorchRun(kind, wd, dropout, seed, fields, train, valid, stopping, o.Progress);
    }

    /// <summary>
    /// The TorchSharp run: KdEngine's initial weights copied into <see cref="TorchCtr"/> (dense tables), Adam 1e-3 on the dense
    /// layers and Adam 1e-3 with weight_decay on the tables, KdEngine's batch order, per-epoch validation and KdEngine's
    /// early-stopping rule with the selected weights restored.
    /// </summary>
    private static (EvaluationResult Valid, Func<EncodedDataset, float[]> Score) TorchRun(ModelKind kind, float wd, float dropout, int seed,
        IReadOnlyList<KdEngine.Nn.InputField> fields, EncodedDataset train, EncodedDataset valid, TrainerOptions options, TextWriter? progress)
    {
        var clock = Stopwatch.StartNew();
        torch.manual_seed(seed);
        var init = CtrPipeline.BuildModel(ConfigFor(kind, dropout, seed), fields);
        var net = new TorchCtr(init, sparse: false);
        var (tables, dense) = net.ParameterGroups();
        var tableAdam = optim.Adam(tables, lr: 1e-3, weight_decay: wd);
        var denseAdam = dense.Length > 0 ? optim.Adam(dense, lr: 1e-3) : null;
        var stopping = new EarlyStopping(options.Metric, options.Selection, options.Patience, guardBand: options.GuardBand);
        Dictionary<string, Tensor>? best = null;
        int f = train.FieldCount;
        for (int epoch = 1; epoch <= options.Epochs; epoch++)
        {
            net.train();
            foreach (var batch in train.Batches(options.BatchSize, shuffle: true, seed: options.Seed + epoch))
            {
                using var scope = torch.NewDisposeScope();
                var ids = torch.tensor(ToLong(batch.Ids), new long[] { batch.Size, f });
                var labels = torch.tensor(batch.Labels.ToArray(), new long[] { batch.Size, 1 });
                tableAdam.zero_grad();
                denseAdam?.zero_grad();
                var loss = nn.functional.binary_cross_entropy_with_logits(net.forward(ids), labels);
                loss.backward();
                tableAdam.step();
                denseAdam?.step();
            }
            var logits = Score(net, valid);
            var r = CtrMetrics.EvaluateLogits(logits, valid.Labels);
            var d = stopping.Observe(new ValidationPoint(epoch, epoch, r.Auc, r.LogLoss, double.NaN, double.NaN));
            progress?.WriteLine($"    torchsharp seed {seed}, epoch {epoch}: validation AUC {r.Auc:F4} logloss {r.LogLoss:F5} ({clock.Elapsed.TotalSeconds:F0} s; load {Load()})");
            if (d.LowestLogLoss && options.Selection == SelectionMetric.GuardedAuc) Snapshot(net, "fallback", ref best);
            if (d.FallbackSelected) CopyFallback(best!);
            if (d.Selected) Snapshot(net, "best", ref best);
            if (d.Stop) break;
        }
        if (best is not null)
            using (torch.no_grad())
                foreach (var (name, p) in net.named_parameters()) p.copy_(best["best." + name]);
        return (CtrMetrics.EvaluateLogits(Score(net, valid), valid.Labels), data => Score(net, data));
    }

    private static void Snapshot(TorchCtr net, string slot, ref Dictionary<string, Tensor>? store)
    {
        store ??= new Dictionary<string, Tensor>();
        using (torch.no_grad())
            foreach (var (name, p) in net.named_parameters())
            {
                if (store.TryGetValue($"{slot}.{name}", out var old)) old.Dispose();
                store[$"{slot}.{name}"] = p.detach().clone().MoveToOuterDisposeScope();
            }
    }

    private static void CopyFallback(Dictionary<string, Tensor> store)
    {
        foreach (var key in store.Keys.Where(k => k.StartsWith("fallback.", StringComparison.Ordinal)).ToArray())
        {
            string target = "best." + key["fallback.".Length..];
            if (store.TryGetValue(target, out var old)) old.Dispose();
            store[target] = store[key].clone().MoveToOuterDisposeScope();
        }
    }

    private static float[] Score(TorchCtr net, EncodedDataset data)
    {
        net.eval();
        var logits = new float[data.Count];
        int f = data.FieldCount, at = 0;
        using var noGrad = torch.no_grad();
        foreach (var batch in data.Batches(1024))
        {
            using var scope = torch.NewDisposeScope();
            var z = net.forward(torch.tensor(ToLong(batch.Ids), new long[] { batch.Size, f }));
            z.data<float>().ToArray().CopyTo(logits, at);
            at += batch.Size;
        }
        return logits;
    }

    private static long[] ToLong(ReadOnlySpan<int> ids)
    {
        var r = new long[ids.Length];
        for (int i = 0; i < ids.Length; i++) r[i] = ids[i];
        return r;
    }

    private static double Mean(double[] x) => x.Average();
    private static double Std(double[] x) => x.Length < 2 ? 0 : Math.Sqrt(x.Sum(v => (v - Mean(x)) * (v - Mean(x))) / (x.Length - 1));

    /// <summary>The table of docs/results.md with the targets checked: KdEngine's mean test AUC ≥ TorchSharp's mean − its std, its logloss ≤ TorchSharp's + its std.</summary>
    public static string Markdown(IReadOnlyList<Row> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| dataset | model | engine | chosen on validation | test AUC (mean ± std) | test logloss | seeds | AUC target | logloss target |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var group in rows.GroupBy(r => (r.Dataset, r.Model)))
        {
            var torchRow = group.FirstOrDefault(r => r.Engine == "torchsharp");
            foreach (var r in group)
            {
                string aucTarget = "", llTarget = "";
                if (torchRow is not null && r.Engine != "torchsharp")
                {
                    double aucMin = Mean(torchRow.TestAuc) - Std(torchRow.TestAuc), llMax = Mean(torchRow.TestLogLoss) + Std(torchRow.TestLogLoss);
                    aucTarget = Mean(r.TestAuc) >= aucMin ? $"met (≥ {aucMin:F4})" : $"**missed** by {aucMin - Mean(r.TestAuc):F4}";
                    llTarget = Mean(r.TestLogLoss) <= llMax ? $"met (≤ {llMax:F4})" : $"**missed** by {Mean(r.TestLogLoss) - llMax:F4}";
                }
                sb.AppendLine($"| {r.Dataset} | {r.Model} | {r.Engine} | {r.Chosen} | {Mean(r.TestAuc):F4} ± {Std(r.TestAuc):F4} | {Mean(r.TestLogLoss):F4} ± {Std(r.TestLogLoss):F4} | {r.TestAuc.Length} | {aucTarget} | {llTarget} |");
            }
        }
        return sb.ToString();
    }

    private static string Load()
    {
        try { return File.ReadAllText("/proc/loadavg").Split(' ')[0]; }
        catch (IOException) { return "n/a"; }
    }
}
