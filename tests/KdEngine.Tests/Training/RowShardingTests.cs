using KdEngine.Autograd;
using KdEngine.Data;
using KdEngine.Kernels.Cpu;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Pipelines;
using KdEngine.Serving;
using KdEngine.Sharding;
using KdEngine.Tensors;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Training;

/// <summary>
/// Row-sharded tables in one process (a sharding over a group of one: every exchange is a local copy, so the whole
/// path — lookup, working sets, gradient push, optimizer, streamed checkpoints — runs without MPI). The multi-rank
/// behaviour is tested under mpirun in KdEngine.Distributed.Tests.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class RowShardingTests
{
    private int _threads;
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _threads = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = 1;
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-sharding", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown()
    {
        CpuParallel.ThreadCount = _threads;
        Directory.Delete(_dir, recursive: true);
    }

    private static readonly SyntheticCtr Generator = new(new SyntheticCtrOptions { Fields = 5, VocabSize = 40, Seed = 3 });
    private static readonly EncodedDataset Train = Generator.Generate(600);
    private static readonly EncodedDataset Valid = new SyntheticCtr(new SyntheticCtrOptions { Fields = 5, VocabSize = 40, Seed = 4 }).Generate(200);
    private static readonly ModelConfig Config = new() { Model = ModelKind.XDeepFm, EmbeddingDim = 4, Dnn = [8], Cin = [4], Seed = 9, EmbeddingInitStd = 0.05f };

    private static ZooModel Build(TablePlacement? placement)
    {
        var fields = CtrPipeline.InputFields(Train.FeatureSpace);
        if (placement is null) return CtrPipeline.BuildModel(Config, fields);
        using (placement.Use()) return CtrPipeline.BuildModel(Config, fields);
    }

    [Test]
    public void NormalRows_KeepsTheRowsOfNormalValues_AndLeavesTheGeneratorInTheSameState()
    {
        var whole = new Random(5);
        var expected = Init.NormalValues(whole, 0.1f, 7 * 3);
        var strided = new Random(5);
        var kept = new float[2 * 3]; // rows 1 and 4 of 7 (every third row from row 1)
        Init.NormalRows(strided, 0.1f, 7, 3, 1, 3, kept);
        Assert.That(kept, Is.EqualTo(expected.Skip(3).Take(3).Concat(expected.Skip(12).Take(3))));
        Assert.That(strided.Next(), Is.EqualTo(whole.Next()), "the same number of draws");
    }

    /// <summary>
    /// One rank owning every row: tables, working sets and the gradient push must reproduce the whole-table run bit for
    /// bit — the same rows, the same per-row sums, the same lazy Adam steps — with clipping (whose norm adds the
    /// shards' sums over the ranks) and with and without the next batch's lookup begun early.
    /// </summary>
    [TestCase(true)]
    [TestCase(false)]
    public void OneRankSharding_TrainsBitIdenticalToWholeTables(bool prefetch)
    {
        var options = new TrainerOptions { Epochs = 2, BatchSize = 64, EvaluateEvery = 5, Patience = 0, Seed = 2 };
        var settings = new TrainingSettings { ClipNorm = 0.5f, LearningRate = 0.01f };

        var whole = Build(null);
        var wholeReport = new Trainer(options).Fit(new SupervisedObjective(whole), settings.BuildOptimizer(whole.Parameters().Select(p => p.Tensor)), Train, Valid);

        var placement = new TablePlacement(EmbeddingSharding.Row, SingleProcess.Instance, optimizerSlots: 2);
        placement.Sharding!.Prefetch = prefetch;
        var sharded = Build(placement);
        Assert.That(sharded.Embedding!.IsSharded);
        var shardedReport = new Trainer(options).Fit(new SupervisedObjective(sharded), settings.BuildOptimizer(sharded.Parameters().Select(p => p.Tensor)), Train, Valid);

        Assert.That(shardedReport.History.Select(p => p.TrainLoss), Is.EqualTo(wholeReport.History.Select(p => p.TrainLoss)));
        Assert.That(shardedReport.History.Select(p => p.Auc), Is.EqualTo(wholeReport.History.Select(p => p.Auc)));
        var a = whole.Parameters();
        var b = sharded.Parameters();
        Assert.That(b.Select(p => p.Name), Is.EqualTo(a.Select(p => p.Name)));
        for (int i = 0; i < a.Count; i++) Assert.That(b[i].Tensor.ToArray(), Is.EqualTo(a[i].Tensor.ToArray()), a[i].Name);
        Assert.That(Trainer.Evaluate(sharded, Valid).Logits, Is.EqualTo(Trainer.Evaluate(whole, Valid).Logits));
        var stats = placement.Sharding.Stats;
        Assert.That(stats.Pushes, Is.EqualTo(shardedReport.Steps));
        Assert.That(stats.BytesSent, Is.Zero, "one rank sends nothing over the wire");
    }

    /// <summary>
    /// Every distillation method under row sharding (one rank): co-trained nets share sharded tables (rocket,
    /// double-DNN's shared embeddings, PFD's common-field tables, a joint ensemble's teachers), frozen teachers are
    /// loaded sharded and looked up forward-only, hint widths are probed through a lookup. Each trains exactly as with
    /// whole tables.
    /// </summary>
    [TestCase(DistillMethod.Logits)]
    [TestCase(DistillMethod.Hint)]
    [TestCase(DistillMethod.Rocket)]
    [TestCase(DistillMethod.DoubleDnn)]
    [TestCase(DistillMethod.Pfd)]
    [TestCase(DistillMethod.Ensemble)]
    public void EveryDistillationMethod_RowSharded_TrainsAsWithWholeTables(DistillMethod method)
    {
        var gen = new SyntheticCtr(new SyntheticCtrOptions { Fields = 4, VocabSize = 30, PrivilegedFields = 1, Seed = 8 });
        string path = Path.Combine(_dir, "d.tsv");
        using (var w = new StreamWriter(path))
        {
            w.Write("label\tC1\tC2\tC3\tC4\tP1\n");
            gen.WriteCriteoTsv(w, 400);
        }
        var source = new DataSource(path) { Schema = gen.Schema };
        var data = CtrPipeline.Prepare(source, preprocessing: new PreprocessorOptions { MinCount = 1 });
        string teacher = Path.Combine(_dir, "t.kde");
        var frozen = CtrPipeline.BuildModel(new ModelConfig { Model = ModelKind.Wdl, EmbeddingDim = 4, Dnn = [8], Seed = 4 }, data.Fields);
        CtrPipeline.Train(frozen, data, new TrainingSettings { Epochs = 1, BatchSize = 64 });
        CtrPipeline.Save(teacher, frozen, data.Preprocessor, data.Source);
        var config = new DistillConfig
        {
            Student = new() { Model = ModelKind.Dnn, EmbeddingDim = 4, Dnn = [8], Seed = 5 },
            Teacher = new() { Model = ModelKind.XDeepFm, EmbeddingDim = 4, Dnn = [8], Cin = [4], Seed = 6 },
            Teachers = [new() { Model = ModelKind.XDeepFm, EmbeddingDim = 4, Dnn = [8], Cin = [4], Seed = 7 }, new() { Model = ModelKind.Dcn, EmbeddingDim = 4, Dnn = [8], Seed = 8 }],
            EnsembleMode = KdEngine.Distillation.EnsembleMode.Joint,
        };
        var settings = new TrainingSettings { Epochs = 1, BatchSize = 32, EvaluateEvery = 3, Patience = 0 };

        (double[] Loss, float[] Logits) Run(TablePlacement? placement)
        {
            using var scope = placement?.Use();
            IReadOnlyList<KdEngine.Distillation.ITeacher> teachers = method is DistillMethod.Logits or DistillMethod.Hint
                ? [new KdEngine.Distillation.ModelTeacher(CtrPipeline.Load(teacher).Model)] : [];
            var run = DistillPipeline.Build(method, config, data, teachers);
            if (placement is not null) Assert.That(run.Student.Embedding!.IsSharded, "the student's tables are sharded");
            var outcome = CtrPipeline.Fit(run.Objective, data, settings);
            return (outcome.Report.History.Select(p => p.TrainLoss).ToArray(), Trainer.Evaluate(run.Student, data.Test).Logits);
        }

        var whole = Run(null);
        var sharded = Run(new TablePlacement(EmbeddingSharding.Row, SingleProcess.Instance));
        Assert.That(whole.Loss, Is.Not.Empty);
        Assert.That(sharded.Loss, Is.EqualTo(whole.Loss), "train loss at every validation");
        Assert.That(sharded.Logits, Is.EqualTo(whole.Logits), "the student's test logits");
    }

    [Test]
    public void ForwardOverABatchNotLookedUp_Throws_NamingTheTable()
    {
        var placement = new TablePlacement(EmbeddingSharding.Row, SingleProcess.Instance);
        var model = Build(placement);
        _ = model.Parameters(); // names the tables
        var ids = new int[2 * Train.FieldCount];
        var batch = new CtrBatch(2, Train.FieldCount, ids, new float[2]);
        using var tape = Tape<float>.NoGrad();
        var e = Assert.Throws<InvalidOperationException>(() => model.Forward(batch))!;
        Assert.That(e.Message, Does.Contain(".C1.weight").And.Contain("row-sharded"));

        var sharding = placement.Sharding!;
        var plan = sharding.PlanFor(RowSharding.TablesOf(model));
        var looked = sharding.Lookup(batch, plan);
        Assert.DoesNotThrow(() => model.Forward(looked));
        var other = sharding.Lookup(batch, plan);
        Assert.Throws<InvalidOperationException>(() => model.Forward(looked), "a batch whose rows were replaced by a later lookup");
        Assert.DoesNotThrow(() => model.Forward(other));
    }

    /// <summary>
    /// Steady state: a lookup (distinct ids, owners, rows into the working sets, remapped batch) and a gradient push
    /// allocate nothing once their pooled buffers have grown — with a next lookup begun before the current one is
    /// pushed, as the trainer's lookahead does.
    /// </summary>
    [Test]
    public void LookupAndPush_AllocateNothingInSteadyState()
    {
        var placement = new TablePlacement(EmbeddingSharding.Row, SingleProcess.Instance);
        var embeddings = Build(placement).Embedding!;
        var sharding = placement.Sharding!;
        var plan = sharding.PlanForAll();
        var owned = new HashSet<Tensor<float>>(sharding.Tables.Select(t => t.Owned), ReferenceEqualityComparer.Instance);
        var rng = new Random(3);
        int f = Train.FieldCount;
        var batches = Enumerable.Range(0, 2).Select(_ => Enumerable.Range(0, 64 * f).Select(i => rng.Next(Train.FeatureSpace.SingleFields[i % f].Cardinality)).ToArray()).ToArray();
        var labels = new float[64];
        var row = new float[Config.EmbeddingDim];
        Array.Fill(row, 0.5f);
        long Window(int steps)
        {
            long allocated = 0;
            var next = sharding.BeginLookup(new CtrBatch(64, f, batches[0], labels), plan);
            for (int step = 0; step < steps; step++)
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                var current = next;
                var batch = sharding.CompleteLookup(current);
                next = sharding.BeginLookup(new CtrBatch(64, f, batches[(step + 1) % 2], labels), plan);
                allocated += GC.GetAllocatedBytesForCurrentThread() - before;
                foreach (var table in sharding.Tables) // what a backward leaves: a gradient row per distinct id of the batch
                    for (int k = 0; k < 10; k++) table.WorkingSet.SparseGradOrEmpty().Add(batch.Ids.Span[k * f + table.Column.Column], row.AsSpan(0, table.Width));
                before = GC.GetAllocatedBytesForCurrentThread();
                sharding.PushGradients(current, owned);
                allocated += GC.GetAllocatedBytesForCurrentThread() - before;
                foreach (var table in sharding.Tables) table.Owned.ZeroGrad();
            }
            sharding.CancelLookup(next);
            return allocated;
        }
        Window(50);
        // Up to three 20-step windows: the runtime's tiered recompilation (after ~30 calls, on a timer) can allocate once
        // in a window on this thread; an allocation per step fails every window.
        var windows = new List<long>();
        for (int w = 0; w < 3 && (windows.Count == 0 || windows[^1] != 0); w++) windows.Add(Window(20));
        Assert.That(windows[^1], Is.Zero, $"bytes allocated by 20 steady-state lookups and pushes, per window: {string.Join(", ", windows)}");
        Assert.That(embeddings.IsSharded);
    }

    [Test]
    public void LookupOfAnIdOutsideTheTable_Throws_NamingTableAndSample()
    {
        var placement = new TablePlacement(EmbeddingSharding.Row, SingleProcess.Instance);
        var model = Build(placement);
        _ = model.Parameters();
        var ids = new int[2 * Train.FieldCount];
        ids[Train.FieldCount + 2] = 1_000_000;
        var sharding = placement.Sharding!;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => sharding.Lookup(new CtrBatch(2, Train.FieldCount, ids, new float[2]), sharding.PlanForAll()))!;
        Assert.That(e.Message, Does.Contain("id 1000000").And.Contain("sample 1").And.Contain("id column 2").And.Contain(".weight"));
    }

    [Test]
    public void Budget_CountsWeightsAndOptimizerState_BeforeAllocating()
    {
        var fields = CtrPipeline.InputFields(Train.FeatureSpace);
        long weights = fields.Sum(f => (long)f.Cardinality) * (1 + Config.EmbeddingDim) * sizeof(float);
        var fits = new TablePlacement(EmbeddingSharding.Replicated, SingleProcess.Instance, weights * 3, optimizerSlots: 2);
        using (fits.Use()) _ = CtrPipeline.BuildModel(Config, fields);
        Assert.That(fits.TableAndOptimizerBytes, Is.EqualTo(weights * 3));
        var tight = new TablePlacement(EmbeddingSharding.Replicated, SingleProcess.Instance, weights * 3 - 1, optimizerSlots: 2);
        var e = Assert.Throws<TableBudgetExceededException>(() => { using (tight.Use()) CtrPipeline.BuildModel(Config, fields); })!;
        Assert.That(e.Message, Does.Contain("--max-table-bytes-per-rank").And.Contain("--embedding-sharding row over at least 2 ranks"));
    }

    /// <summary>
    /// Saving a sharded model writes an ordinary checkpoint (streamed: header first, data digest filled in after); it
    /// loads whole in one process and re-sharded under a row placement, with the same weights either way.
    /// </summary>
    [Test]
    public void ShardedModelCheckpoint_LoadsWholeAndResharded_WithTheSameWeights()
    {
        var placement = new TablePlacement(EmbeddingSharding.Row, SingleProcess.Instance);
        var model = Build(placement);
        string path = Path.Combine(_dir, "m.kde");
        Assert.Throws<InvalidOperationException>(() => ModelCheckpoint.Save(path, model), "the plain save refuses a sharded model");
        ModelCheckpoint.Save(path, model, null, null, SingleProcess.Instance);
        var whole = ModelCheckpoint.Load(path);
        Assert.That(whole.Model.Embedding!.IsSharded, Is.False);
        LoadedModel resharded;
        using (new TablePlacement(EmbeddingSharding.Row, SingleProcess.Instance).Use()) resharded = ModelCheckpoint.Load(path);
        Assert.That(resharded.Model.Embedding!.IsSharded);
        var expected = model.Parameters();
        foreach (var loaded in new[] { whole.Model, resharded.Model })
        {
            var got = loaded.Parameters();
            for (int i = 0; i < expected.Count; i++) Assert.That(got[i].Tensor.ToArray(), Is.EqualTo(expected[i].Tensor.ToArray()), expected[i].Name);
        }
        Assert.Throws<NotSupportedException>(() => _ = new Predictor(resharded.Model));
        Assert.DoesNotThrow(() => _ = new Predictor(whole.Model));
    }

    [Test]
    public void StreamedSafetensors_AreByteIdenticalToTheOrdinaryWriter_AndReadBackByRows()
    {
        var a = Enumerable.Range(0, 5 * 3).Select(i => i * 0.5f).ToArray();
        var b = new[] { 7f, -1f };
        var meta = new Dictionary<string, string> { ["note"] = "x" };
        string plain = Path.Combine(_dir, "plain.safetensors"), streamed = Path.Combine(_dir, "streamed.safetensors");
        SafeTensorsFile.Write(plain, [NamedArray.Float32("b", b, 2), NamedArray.Float32("a", a, 5, 3)], meta);
        SafeTensorsFile.WriteStreamed(streamed,
        [
            new StreamedTensor("a", [5, 3], sink => { for (int r = 0; r < 5; r++) sink(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.AsSpan(r * 3, 3))); }),
            new StreamedTensor("b", [2], sink => sink(System.Runtime.InteropServices.MemoryMarshal.AsBytes(b.AsSpan()))),
        ], meta);
        Assert.That(File.ReadAllBytes(streamed), Is.EqualTo(File.ReadAllBytes(plain)));

        var header = SafeTensorsFile.ReadHeaderOnly(streamed);
        SafeTensorsFile.VerifyData(header);
        var rows = new List<float>();
        SafeTensorsFile.ReadRows(header, "a", [5, 3], (first, values) => { Assert.That(first, Is.EqualTo(rows.Count / 3)); rows.AddRange(values.ToArray()); });
        Assert.That(rows, Is.EqualTo(a));

        Assert.Throws<InvalidOperationException>(() => SafeTensorsFile.WriteStreamed(Path.Combine(_dir, "short.safetensors"),
            [new StreamedTensor("a", [5, 3], sink => sink(new byte[8]))]), "a producer that writes too few bytes");
        Assert.That(Directory.GetFiles(_dir, "short*"), Is.Empty, "no file, not even a temporary one, is left");

        var bytes = File.ReadAllBytes(streamed);
        bytes[^3] ^= 1;
        File.WriteAllBytes(streamed, bytes);
        var e = Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.VerifyData(SafeTensorsFile.ReadHeaderOnly(streamed)))!;
        Assert.That(e.Message, Does.Contain("data checksum mismatch"));
    }

    [Test]
    public void Optimizer_CountsAStepForATableTouchedOnlyOnAnotherShard()
    {
        var table = EmbeddingTable.Zeros<float>(4, 2, "t").RequireGrad();
        var adam = new Adam([table], 0.1f);
        table.SparseGradOrEmpty().TouchedElsewhere = true;
        adam.Step();
        Assert.That(adam.ParameterStepCount(0), Is.EqualTo(1), "the table's step count grows as one process's would");
        Assert.That(table.ToArray(), Is.All.EqualTo(0f), "no row of this shard moves");
        Assert.That(table.SparseGrad!.TouchedElsewhere, Is.False, "cleared with the gradient");
        adam.Step();
        Assert.That(adam.ParameterStepCount(0), Is.EqualTo(1), "untouched everywhere: no step");
    }
}
