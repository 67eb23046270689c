using System.Globalization;
using System.Text.Json;
using KdEngine.Autograd;
using KdEngine.Distillation;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Pipelines;
using KdEngine.Serving;
using KdEngine.Sharding;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Distributed.Tests;

/// <summary>
/// The row-sharding scenarios the MPI tests run under <c>mpirun -np 2</c> and <c>-np 4</c> (each rank runs one), and the
/// runs they compare against (also run in the test process as a single process).
/// </summary>
public static class ShardedScenarios
{
    private static int _failures;

    private static void Expect(bool condition, IProcessGroup g, string what)
    {
        if (condition) return;
        _failures++;
        Console.Out.WriteLine($"rank {g.Rank}: FAILED {what}");
    }

    private static int Done(IProcessGroup g, string scenario)
    {
        Console.Out.WriteLine(_failures == 0 ? $"rank {g.Rank}: ok {scenario}" : $"rank {g.Rank}: {_failures} failure(s)");
        return _failures == 0 ? 0 : 1;
    }

    // ---------------------------------------------------------------- the exchange on hand-made batches

    /// <summary>
    /// Two row-sharded tables (fields a: 10 rows, b: 7 rows; D = 3) whose row g holds 100·table + g + d/10. Every rank's
    /// batch repeats ids (within the rank) and shares ids with other ranks; rank 1's batch touches only ids ≡ 0 (mod N),
    /// none of the rows it owns. Checks the rows each rank reads, the gradients each owner receives (Σ_r w_r·c_r·count_r(g),
    /// w_r = B_r/ΣB), that a table touched only by other ranks still counts an optimizer step on every rank, and the
    /// traffic counters.
    /// </summary>
    public static int Exchange(IProcessGroup g)
    {
        int n = g.Size, r = g.Rank;
        var placement = new TablePlacement(EmbeddingSharding.Row, g);
        var sharding = placement.Sharding!;
        FieldEmbeddings embeddings;
        using (placement.Use())
            embeddings = new FieldEmbeddings([new InputField("a", 10), new InputField("b", 7)], [0, 1], 3, 0f, new Random(1));
        var tables = embeddings.Tables;
        for (int t = 0; t < 2; t++)
        {
            var shard = tables[t].RowShard!;
            Expect(shard.Rank == r && shard.Size == n && tables[t].Shape[0] == RowShard.RowsOf(shard.GlobalRows, r, n), g, $"table {t} holds {tables[t].Shape} of {shard}");
            var values = tables[t].AsSpan();
            for (int l = 0; l < shard.LocalRows; l++)
                for (int d = 0; d < 3; d++) values[l * 3 + d] = Value(t, (int)shard.GlobalRow(l), d);
        }

        int[][] batches = Enumerable.Range(0, n).Select(BatchOf).ToArray();
        int[] mine = batches[r];
        int rows = mine.Length / 2;
        var batch = new CtrBatch(rows, 2, mine, new float[rows]);
        var plan = sharding.PlanFor(RowSharding.TablesOf(embeddings));
        var looked = sharding.Lookup(batch, plan);

        using var tape = new Tape<float>();
        var x0 = embeddings.Forward(looked); // [B, 2, 3]
        var seen = x0.ToArray();
        bool rowsRight = true;
        for (int b = 0; b < rows; b++)
            for (int t = 0; t < 2; t++)
                for (int d = 0; d < 3; d++)
                    rowsRight &= seen[(b * 2 + t) * 3 + d] == Value(t, mine[b * 2 + t], d);
        Expect(rowsRight, g, "every rank reads the rows of its ids from their owners");

        // Loss Σ c_r·x0: each occurrence of id g in table t adds c_r to row g's gradient (all D entries).
        float c = r + 1;
        var loss = Op.Sum(Op.Scale(Op.Reshape(x0, -1), c));
        tape.Backward(loss);
        var owned = new HashSet<Tensor<float>>(tables, ReferenceEqualityComparer.Instance);
        sharding.PushGradients(sharding.Current!, owned);
        double total = batches.Sum(x => x.Length / 2);
        for (int t = 0; t < 2; t++)
        {
            var grad = tables[t].SparseGrad;
            var shard = tables[t].RowShard!;
            int expectedRows = 0;
            bool right = true;
            for (int l = 0; l < shard.LocalRows; l++)
            {
                int global = (int)shard.GlobalRow(l);
                double expected = 0;
                for (int q = 0; q < n; q++)
                {
                    int count = 0;
                    for (int b = 0; b < batches[q].Length / 2; b++) if (batches[q][b * 2 + t] == global) count++;
                    expected += (batches[q].Length / 2 / total) * (q + 1) * count;
                }
                bool touched = Enumerable.Range(0, n).Any(q => Enumerable.Range(0, batches[q].Length / 2).Any(b => batches[q][b * 2 + t] == global));
                if (!touched) continue;
                expectedRows++;
                var dense = grad!.ToDense();
                for (int d = 0; d < 3; d++) right &= Math.Abs(dense[l * 3 + d] - expected) < 1e-5;
            }
            Expect(right, g, $"table {t}: owned rows received Σ_r w_r·c_r·count_r");
            Expect((grad?.Count ?? 0) == expectedRows, g, $"table {t}: {grad?.Count ?? 0} owned rows touched, expected {expectedRows}");
            Expect(grad is { TouchedElsewhere: true }, g, $"table {t}: marked touched on every rank");
        }
        Expect(looked.Ids.Span.ToArray().All(id => id >= 0 && id < 2 * rows), g, "remapped ids index the working set");

        // An optimizer step on every rank: a table touched anywhere counts a step everywhere (rank 1 owns no row its
        // batch touched, yet its Adam step count for both tables must equal rank 0's).
        var adam = new Adam(tables, 0.1f);
        adam.Step();
        string steps = $"{adam.ParameterStepCount(0)},{adam.ParameterStepCount(1)}";
        Expect(g.BroadcastText(r == 0 ? steps : null) == steps && steps == "1,1", g, $"table step counts {steps} equal on every rank");

        var stats = sharding.Stats;
        Expect(stats.Lookups == 1 && stats.Pushes == 1, g, $"stats {stats}");
        int idsToOthers = 0;
        for (int t = 0; t < 2; t++)
            idsToOthers += Enumerable.Range(0, rows).Select(b => mine[b * 2 + t]).Distinct().Count(id => id % n != r);
        Expect(stats.IdBytesSent == idsToOthers * sizeof(int), g, $"id bytes sent {stats.IdBytesSent}, expected {idsToOthers * sizeof(int)}");
        int rowsServed = 0;
        for (int q = 0; q < n; q++)
            for (int t = 0; t < 2 && q != r; t++)
                rowsServed += Enumerable.Range(0, batches[q].Length / 2).Select(b => batches[q][b * 2 + t]).Distinct().Count(id => id % n == r);
        Expect(stats.RowBytesSent == rowsServed * 3 * sizeof(float), g, $"row bytes served {stats.RowBytesSent}, expected {rowsServed * 3 * sizeof(float)}");
        return Done(g, "exchange");

        static float Value(int table, int row, int d) => 100 * table + row + d / 10f;

        // Rank 1: ids ≡ 0 (mod N) only (none of its rows). Others: duplicates (4 twice, 9) shared across ranks, plus their own rank.
        int[] BatchOf(int q) => q == 1
            ? [0, 0, n % 10, 0, 0, n % 7]
            : [4, 2, 4, 2, 9, 6, q % 10, q % 7, 4, 6];
    }

    /// <summary>
    /// Byte-range input (each rank parses 1/N of the file, the vocabularies counted in parallel) gives every rank exactly
    /// the shard of the row-based preparation (every rank parses the whole file, rank 0 fits): the same preprocessing,
    /// the same file rows in each part, the same encoded rows.
    /// </summary>
    public static int ByteRanges(IProcessGroup g, DataSource source)
    {
        var rows = CtrPipeline.PrepareShard(source, g, new SplitOptions());
        var bytes = ByteRangeInput.PrepareShard(source, g, new SplitOptions());
        Expect(bytes.Preprocessor.ToJson() == rows.Preprocessor.ToJson(), g, "byte ranges: the same preprocessing");
        for (int k = 0; k < 3; k++) Expect(bytes.SplitIndices[k].SequenceEqual(rows.SplitIndices[k]), g, $"byte ranges: the same file rows in part {k}");
        foreach (var (a, b, part) in new[] { (bytes.Train, rows.Train, "train"), (bytes.Validation, rows.Validation, "validation"), (bytes.Test, rows.Test, "test"), (bytes.All, rows.All, "all") })
            Expect(a.Ids.SequenceEqual(b.Ids) && a.Labels.SequenceEqual(b.Labels), g, $"byte ranges: the same encoded {part} rows");
        var cuts = ByteRangeInput.Boundaries(source.Path, g.Size);
        Console.Out.WriteLine($"rank {g.Rank}: parsed bytes {cuts[g.Rank]}..{cuts[g.Rank + 1]} of {cuts[^1]}");
        if (_failures == 0) Console.Out.WriteLine($"rank {g.Rank}: ok byte ranges");
        return _failures == 0 ? 0 : 1;
    }

    // ---------------------------------------------------------------- training runs

    /// <summary>One training run's results (rank 0 writes them as JSON).</summary>
    public sealed record Result(string Name, string Mode, int Ranks, double[] TrainLoss, double[] ValidationAuc, double TestAuc, float[] TestLogits,
        long Steps, long TableBytes, long OptimizerBytes, double BytesSentPerStep, double BytesReceivedPerStep, double DenseBytesPerStep, double SecondsPerStep);

    public static readonly ModelConfig Wdl = new() { Model = ModelKind.Wdl, EmbeddingDim = 4, Dnn = [16, 8], Seed = 5 };
    public static readonly ModelConfig XDeepFm = new() { Model = ModelKind.XDeepFm, EmbeddingDim = 4, Dnn = [16], Cin = [6, 6], Seed = 6 };
    public static readonly DistillConfig Distill = new()
    {
        Student = new() { Model = ModelKind.Dnn, EmbeddingDim = 4, Dnn = [8], Seed = 7 },
        Teacher = new() { Model = ModelKind.XDeepFm, EmbeddingDim = 4, Dnn = [16], Cin = [6], Seed = 8 },
        Lambda = 0.5f, Alpha = 0.5f, Temperature = 2f,
    };

    /// <summary>Unshuffled, one epoch, validation every 4 steps: sharded, replicated and one-process runs see the same rows.</summary>
    public static TrainingSettings Settings(int batch, EmbeddingSharding mode) => new()
    {
        Epochs = 1, BatchSize = batch, LearningRate = 5e-3f, Patience = 0, EvaluateEvery = 4, Seed = 7, Shuffle = false, EmbeddingSharding = mode,
    };

    /// <summary>
    /// Trains run <paramref name="name"/> (wdl, xdeepfm, rocket: Rocket Launching with shared embeddings co-trained,
    /// logits: KD from the frozen teacher checkpoint <paramref name="teacher"/>) with tables laid out by
    /// <paramref name="mode"/>; <paramref name="save"/>: where to save the predictor (collective).
    /// </summary>
    public static Result Run(string name, DataSource source, IProcessGroup group, int batch, EmbeddingSharding mode, bool prefetch = true,
        string? teacher = null, string? save = null)
    {
        var settings = Settings(batch, mode);
        var placement = settings.TablePlacement(group);
        if (placement.Sharding is { } s) s.Prefetch = prefetch;
        IObjective objective;
        ZooModel predictor;
        PreparedData data;
        using (placement.Use())
        {
            LoadedModel? frozen = teacher is null ? null : CtrPipeline.Load(teacher); // sharded: each rank reads its rows only
            data = CtrPipeline.PrepareShard(source, group, new SplitOptions(), fitted: frozen?.Preprocessor);
            switch (name)
            {
                case "wdl" or "xdeepfm":
                    predictor = CtrPipeline.BuildModel(name == "wdl" ? Wdl : XDeepFm, data.Fields);
                    objective = new SupervisedObjective(predictor);
                    break;
                case "rocket":
                {
                    var run = DistillPipeline.Build(DistillMethod.Rocket, Distill, data, []);
                    (objective, predictor) = (run.Objective, run.Student);
                    break;
                }
                case "logits":
                {
                    var run = DistillPipeline.Build(DistillMethod.Logits, Distill, data, [new ModelTeacher(frozen!.Model)]);
                    (objective, predictor) = (run.Objective, run.Student);
                    break;
                }
                default: throw new ArgumentException($"unknown run '{name}'");
            }
        }
        var mpi = group as MpiProcessGroup;
        mpi?.ResetStats();
        var outcome = CtrPipeline.Fit(objective, data, settings, null, false, group);
        var test = Trainer.Evaluate(predictor, data.Test, 1024, group).Logits;
        if (save is not null) CtrPipeline.Save(save, predictor, data.Preprocessor, data.Source, null, group);
        var stats = placement.Sharding?.Stats;
        var dense = mpi?.Stats;
        long steps = outcome.Report.Steps;
        return new Result(name, mode.ToString().ToLowerInvariant(), group.Size,
            outcome.Report.History.Select(p => p.TrainLoss).ToArray(), outcome.Report.History.Select(p => p.Auc).ToArray(), outcome.Test.Auc, test, steps,
            placement.TableBytes, placement.TableBytes * settings.OptimizerSlots,
            stats is null ? 0 : (double)stats.BytesSent / Math.Max(1, stats.Pushes), stats is null ? 0 : (double)stats.BytesReceived / Math.Max(1, stats.Pushes),
            dense is null ? 0 : dense.PerStep(dense.DenseBytes), outcome.Report.Elapsed.TotalSeconds / Math.Max(1, steps));
    }

    /// <summary>
    /// <c>sharded DATA DIR BATCH MODE RUNS [TEACHER]</c>: with row sharding, <see cref="Exchange"/> first; then runs the comma-separated RUNS with tables MODE (replicated|row),
    /// batch BATCH per rank; rank 0 writes DIR/RUN.MODE.N.json, and with row sharding saves DIR/RUN.row.N.kde.
    /// </summary>
    public static int Sharded(IProcessGroup g, string[] args)
    {
        var source = Source(args[0]);
        string dir = args[1];
        int batch = int.Parse(args[2], CultureInfo.InvariantCulture);
        var mode = args[3] == "row" ? EmbeddingSharding.Row : EmbeddingSharding.Replicated;
        string? teacher = args.Length > 5 ? args[5] : null;
        // The hand-made exchange and the byte-range input first: one job start (N dotnet processes) serves them all.
        if (mode == EmbeddingSharding.Row && (Exchange(g) != 0 || ByteRanges(g, source) != 0)) return 1;
        foreach (var name in args[4].Split(','))
        {
            string stem = Path.Combine(dir, $"{name}.{args[3]}.{g.Size}");
            var result = Run(name, source, g, batch, mode, teacher: name == "logits" ? teacher : null, save: mode == EmbeddingSharding.Row ? stem + ".kde" : null);
            if (g.Rank == 0) File.WriteAllText(stem + ".json", JsonSerializer.Serialize(result));
            Console.Out.WriteLine($"rank {g.Rank}: {name} {args[3]}: {result.Steps} steps, test AUC {result.TestAuc:F4}, tables {result.TableBytes} B here, " +
                $"sent {result.BytesSentPerStep:F0} B/step, {result.SecondsPerStep * 1e3:F1} ms/step");
        }
        return Done(g, "sharded");
    }

    /// <summary><c>predict MODEL DATA OUT</c>: loads the checkpoint with its tables row-sharded over the ranks and scores the test part; rank 0 writes OUT (JSON logits).</summary>
    public static int Predict(IProcessGroup g, string[] args)
    {
        var placement = new TablePlacement(EmbeddingSharding.Row, g);
        LoadedModel loaded;
        using (placement.Use()) loaded = CtrPipeline.Load(args[0]);
        Expect(loaded.Model.Embedding!.IsSharded, g, "the loaded model's tables are sharded");
        Expect(loaded.Model.Parameters().Where(p => p.Tensor.RowShard is not null).All(p => p.Tensor.Shape[0] == p.Tensor.RowShard!.LocalRows), g, "each rank holds its rows only");
        var data = CtrPipeline.PrepareShard(Source(args[1]), g, new SplitOptions(), fitted: loaded.Preprocessor);
        var logits = Trainer.Evaluate(loaded.Model, data.Test, 1024, g).Logits;
        if (g.Rank == 0) File.WriteAllText(args[2], JsonSerializer.Serialize(logits));
        return Done(g, "predict");
    }

    // ---------------------------------------------------------------- a rank killed mid-epoch, resumed on another rank count

    /// <summary>Checkpoint options of the fault scenario: a training checkpoint every 2 steps.</summary>
    private static TrainerOptions FaultOptions(int batch, string checkpoint) =>
        Settings(batch, EmbeddingSharding.Row).ToTrainerOptions() with { CheckpointPath = checkpoint, CheckpointEvery = 2, RestoreBest = false };

    /// <summary>
    /// <c>fault DATA DIR BATCH KILLRANK KILLSTEP</c>: trains WDL row-sharded with a checkpoint every 2 steps; rank KILLRANK
    /// kills itself (SIGKILL) at step KILLSTEP. The job must end with an error naming that rank.
    /// </summary>
    public static int Fault(IProcessGroup g, string[] args)
    {
        int batch = int.Parse(args[2], CultureInfo.InvariantCulture);
        int killRank = int.Parse(args[3], CultureInfo.InvariantCulture), killStep = int.Parse(args[4], CultureInfo.InvariantCulture);
        var (objective, optimizer, data) = FaultRun(g, args[0], batch);
        var dying = new DyingObjective(objective, g.Rank == killRank ? killStep : -1, g.Rank);
        new Trainer(FaultOptions(batch, Path.Combine(args[1], "fault.ckpt")), null, false, g).Fit(dying, optimizer, data.Train, data.Validation);
        Console.Out.WriteLine($"rank {g.Rank}: FAILED training finished although rank {killRank} was killed");
        return 1;
    }

    /// <summary><c>resume DATA DIR BATCH</c>: resumes DIR/fault.ckpt on this job's rank count; rank 0 writes DIR/resumed.N.json.</summary>
    public static int Resume(IProcessGroup g, string[] args)
    {
        int batch = int.Parse(args[2], CultureInfo.InvariantCulture);
        var (objective, optimizer, data) = FaultRun(g, args[0], batch);
        var trainer = new Trainer(FaultOptions(batch, Path.Combine(args[1], "fault.resumed.ckpt")), null, false, g);
        var report = trainer.Resume(Path.Combine(args[1], "fault.ckpt"), objective, optimizer, data.Train, data.Validation);
        var test = Trainer.Evaluate(objective.Predictor, data.Test, 1024, g).Logits;
        if (g.Rank == 0)
            File.WriteAllText(Path.Combine(args[1], $"resumed.{g.Size}.json"), JsonSerializer.Serialize(new Result("wdl", "row", g.Size,
                report.History.Select(p => p.TrainLoss).ToArray(), report.History.Select(p => p.Auc).ToArray(), 0, test, report.Steps, 0, 0, 0, 0, 0, 0)));
        return Done(g, "resume");
    }

    /// <summary>The fault scenario's run (also the uninterrupted reference, in one process): WDL, row-sharded tables.</summary>
    public static (IObjective Objective, Optimizer Optimizer, PreparedData Data) FaultRun(IProcessGroup g, string dataPath, int batch)
    {
        var settings = Settings(batch, EmbeddingSharding.Row);
        var placement = settings.TablePlacement(g);
        var data = CtrPipeline.PrepareShard(Source(dataPath), g, new SplitOptions());
        ZooModel model;
        using (placement.Use()) model = CtrPipeline.BuildModel(Wdl, data.Fields);
        var objective = new SupervisedObjective(model);
        return (objective, (Optimizer)settings.BuildOptimizer(model.Parameters().Select(p => p.Tensor)), data);
    }

    /// <summary>An objective whose rank kills its own process (SIGKILL, no cleanup) when it reaches a given step.</summary>
    private sealed class DyingObjective(IObjective inner, long killAt, int rank) : IObjective
    {
        public Module Trainable => inner.Trainable;
        public CtrModel Predictor => inner.Predictor;

        public Tensor<float> Loss(in CtrBatch batch, long step, IDictionary<string, float>? terms)
        {
            if (step == killAt)
            {
                Console.Out.WriteLine($"rank {rank}: killing myself at step {step}");
                Console.Out.Flush();
                System.Diagnostics.Process.GetCurrentProcess().Kill();
                Thread.Sleep(Timeout.Infinite);
            }
            return inner.Loss(batch, step, terms);
        }
    }

    // ---------------------------------------------------------------- memory per rank

    /// <summary>
    /// <c>memory VOCAB FIELDS DIM CAP [MODE]</c>: builds a WDL over FIELDS fields of VOCAB ids (D = DIM) with Adam under a
    /// budget of CAP bytes per rank, trains 3 steps on synthetic ids, and prints each rank's table and optimizer bytes —
    /// or the budget error.
    /// </summary>
    public static int Memory(IProcessGroup g, string[] args)
    {
        int vocab = int.Parse(args[0], CultureInfo.InvariantCulture), fields = int.Parse(args[1], CultureInfo.InvariantCulture);
        int dim = int.Parse(args[2], CultureInfo.InvariantCulture);
        long cap = long.Parse(args[3], CultureInfo.InvariantCulture);
        var mode = args.Length > 4 && args[4] == "replicated" ? EmbeddingSharding.Replicated : EmbeddingSharding.Row;
        var settings = new TrainingSettings { BatchSize = 64, EmbeddingSharding = mode, MaxTableBytesPerRank = cap };
        var placement = settings.TablePlacement(g);
        var inputs = Enumerable.Range(0, fields).Select(f => new InputField($"C{f}", vocab)).ToArray();
        ZooModel model;
        try
        {
            using (placement.Use()) model = new ZooModel(new ModelConfig { Model = ModelKind.Wdl, EmbeddingDim = dim, Dnn = [32], Seed = 3 }, inputs);
        }
        catch (TableBudgetExceededException e)
        {
            Console.Out.WriteLine($"rank {g.Rank}: memory {mode} N={g.Size}: {e.Message}");
            return 0;
        }
        var optimizer = settings.BuildOptimizer(model.Parameters().Select(p => p.Tensor));
        var objective = new SupervisedObjective(model);
        var rng = new Random(100 + g.Rank);
        var ids = new int[64 * fields];
        var labels = new float[64];
        for (int i = 0; i < ids.Length; i++) ids[i] = (int)Math.Min(vocab - 1, Math.Floor(Math.Pow(rng.NextDouble(), 3) * vocab)); // skewed: small ids hot
        for (int i = 0; i < labels.Length; i++) labels[i] = rng.Next(2);
        // Three steps straight through the sharded path, on ids drawn here (no file to preprocess).
        var plan = placement.Sharding?.PlanForAll();
        var owned = new HashSet<Tensor<float>>(model.Parameters().Where(p => p.Tensor.RowShard is not null).Select(p => p.Tensor), ReferenceEqualityComparer.Instance);
        var dense = model.Parameters().Where(p => p.Tensor.RowShard is null).ToArray();
        using (var tape = new Tape<float>())
            for (int step = 0; step < 3; step++)
            {
                tape.Reset();
                var batch = new CtrBatch(64, fields, ids, labels);
                if (plan is not null) batch = placement.Sharding!.Lookup(batch, plan);
                tape.Backward(objective.Loss(batch, step, null));
                if (plan is not null) placement.Sharding!.PushGradients(placement.Sharding.Current!, owned);
                g.AverageGradients(plan is null ? model.Parameters() : dense, 64);
                optimizer.Step();
            }
        long tables = model.Parameters().Where(p => p.Tensor.HasSparseGradient).Sum(p => (long)p.Tensor.Length * sizeof(float));
        long state = tables * ((Optimizer)optimizer).SlotCount;
        Console.Out.WriteLine($"rank {g.Rank}: memory {mode} N={g.Size}: tables {tables} B, optimizer state {state} B, total {tables + state} B " +
            $"(budget {cap} B; whole tables with state {placement.FullTableAndOptimizerBytes} B); working sets {placement.Sharding?.WorkingSetBytes ?? 0} B; " +
            $"peak RSS {System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64 / 1e6:F0} MB");
        return 0;
    }

    public static DataSource Source(string path) => new(path) { Schema = Data.Schema.Load(path + ".schema.json") };
}
