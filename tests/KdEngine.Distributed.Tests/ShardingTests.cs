using System.Text.Json;
using System.Text.RegularExpressions;
using KdEngine.Cli;
using KdEngine.Kernels.Cpu;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Pipelines;
using KdEngine.Sharding;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Distributed.Tests;

/// <summary>
/// Row-sharded embedding tables under <c>mpirun --oversubscribe -np 2</c> and <c>-np 4</c>: the exchange on hand-made
/// batches, sharded runs against replicated runs and one process at the same global batch (WDL, xDeepFM, Rocket Launching
/// co-trained, logits KD from a frozen sharded teacher), checkpoints gathered from 4 ranks loaded in 1 process and in 2
/// ranks, a rank killed mid-epoch and the run resumed on another rank count, and the per-rank memory budget. Small
/// models and 1,600 rows keep the suite short (4 ranks share 2 cores here).
/// </summary>
[TestFixture]
public sealed class ShardingTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(300);
    private const int GlobalBatch = 64;
    private const string Runs = "wdl,xdeepfm,rocket,logits";
    private string _dir = "";
    private string _data = "";
    private string _teacher = "";
    private readonly Dictionary<string, MpiJob.Outcome> _jobs = [];
    private Dictionary<string, ShardedScenarios.Result>? _oneProcess;

    [OneTimeSetUp]
    public void MakeData()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-sharding-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(_dir);
        _data = Path.Combine(_dir, "clicks.tsv");
        _teacher = Path.Combine(_dir, "teacher.kde");
        var o = new StringWriter();
        Assert.That(CliApp.Run(["synth", "--rows", "1600", "--fields", "8", "--privileged", "1", "--vocab", "300", "--seed", "3", "--out", _data], o, o), Is.EqualTo(0), o.ToString());
        Assert.That(CliApp.Run(["train", "--model", "fm", "--data", _data, "--schema", _data + ".schema.json", "--epochs", "1", "--batch-size", "64", "--out", _teacher], o, o),
            Is.EqualTo(0), o.ToString());
    }

    [OneTimeTearDown]
    public void Clean()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Runs an mpirun job once per fixture (several tests read one job's files).</summary>
    private MpiJob.Outcome Job(int ranks, params string[] args)
    {
        string key = ranks + " " + string.Join(" ", args);
        if (!_jobs.TryGetValue(key, out var job)) _jobs[key] = job = MpiJob.Run(ranks, Limit, args);
        return job;
    }

    private MpiJob.Outcome ShardedJob(int ranks, string mode)
    {
        var job = Job(ranks, "sharded", _data, _dir, (GlobalBatch / ranks).ToString(), mode, Runs, _teacher);
        Assert.That(job.ExitCode, Is.EqualTo(0), job.Output);
        return job;
    }

    private ShardedScenarios.Result Read(string run, string mode, int ranks) =>
        JsonSerializer.Deserialize<ShardedScenarios.Result>(File.ReadAllText(Path.Combine(_dir, $"{run}.{mode}.{ranks}.json")))!;

    /// <summary>The same runs in this process with the global batch (one thread, as each rank uses).</summary>
    private Dictionary<string, ShardedScenarios.Result> OneProcess()
    {
        if (_oneProcess is not null) return _oneProcess;
        int threads = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = 1;
        try
        {
            var source = ShardedScenarios.Source(_data);
            _oneProcess = Runs.Split(',').ToDictionary(run => run, run => ShardedScenarios.Run(run, source, SingleProcess.Instance, GlobalBatch,
                EmbeddingSharding.Replicated, teacher: run == "logits" ? _teacher : null));
        }
        finally { CpuParallel.ThreadCount = threads; }
        return _oneProcess;
    }

    /// <summary>The hand-made exchange (<see cref="ShardedScenarios.Exchange"/>), run at the start of the row-sharded job.</summary>
    [TestCase(2)]
    [TestCase(4)]
    public void Exchange_FetchesRowsAndReturnsGradientsToTheirOwners(int ranks)
    {
        var job = ShardedJob(ranks, "row");
        for (int r = 0; r < ranks; r++) Assert.That(job.Output, Does.Contain($"rank {r}: ok exchange"));
    }

    /// <summary>
    /// Byte-range input (<see cref="ShardedScenarios.ByteRanges"/>, run at the start of the row-sharded job): each rank
    /// parses only its range, yet holds exactly the row-based shard and preprocessing.
    /// </summary>
    [TestCase(2)]
    [TestCase(4)]
    public void ByteRangeInput_GivesEveryRankTheRowBasedShard(int ranks)
    {
        var job = ShardedJob(ranks, "row");
        for (int r = 0; r < ranks; r++) Assert.That(job.Output, Does.Contain($"rank {r}: ok byte ranges"));
    }

    /// <summary>
    /// With shuffling off, N ranks × B/N see the one-process batches of B row for row. Row-sharded tables then give
    /// bit-identical results to replicated tables (the same row additions in the same rank order), and both follow one
    /// process to rounding level (partial means per rank instead of one mean).
    /// </summary>
    [TestCase(2)]
    [TestCase(4)]
    public void ShardedRuns_EqualReplicatedRunsAndOneProcess_ToRoundingLevel(int ranks)
    {
        ShardedJob(ranks, "row");
        if (ranks == 2) ShardedJob(ranks, "replicated");
        var one = OneProcess();
        foreach (var run in Runs.Split(','))
        {
            var sharded = Read(run, "row", ranks);
            var single = one[run];
            Assert.That(sharded.Steps, Is.EqualTo(single.Steps), $"{run}: steps");
            Assert.That(sharded.TrainLoss, Has.Length.EqualTo(single.TrainLoss.Length), $"{run}: validations");
            double loss = sharded.TrainLoss.Zip(single.TrainLoss, (a, b) => Math.Abs(a - b)).Max();
            double auc = sharded.ValidationAuc.Zip(single.ValidationAuc, (a, b) => Math.Abs(a - b)).Max();
            double logit = sharded.TestLogits.Zip(single.TestLogits, (a, b) => Math.Abs(a - b)).Max();
            TestContext.Out.WriteLine($"{run}, {ranks} ranks row-sharded vs 1 process × {GlobalBatch}: max |Δ train loss| {loss:E2}, |Δ valid AUC| {auc:E2}, |Δ test logit| {logit:E2}; " +
                $"tables {sharded.TableBytes} B on rank 0 vs {single.TableBytes} B whole; {sharded.BytesSentPerStep:F0} B sent per step");
            Assert.That(loss, Is.LessThan(1e-6), $"{run}: train loss curve");
            Assert.That(auc, Is.LessThan(1e-6), $"{run}: validation AUC curve");
            Assert.That(logit, Is.LessThan(1e-4), $"{run}: final test logits");
            Assert.That(sharded.TableBytes, Is.LessThan(single.TableBytes / ranks + 4096), $"{run}: rank 0 holds about 1/{ranks} of the tables");
            if (ranks != 2) continue;
            var replicated = Read(run, "replicated", ranks);
            Assert.That(sharded.TrainLoss, Is.EqualTo(replicated.TrainLoss), $"{run}: sharded vs replicated train loss (bit-identical)");
            Assert.That(sharded.ValidationAuc, Is.EqualTo(replicated.ValidationAuc), $"{run}: sharded vs replicated validation AUC");
            Assert.That(sharded.TestLogits, Is.EqualTo(replicated.TestLogits), $"{run}: sharded vs replicated test logits");
        }
    }

    /// <summary>
    /// The 4-rank run's checkpoint (rank 0 wrote it while the others streamed their rows) is an ordinary file: one
    /// process loads it whole, 2 ranks load it re-sharded (each keeps rows g ≡ r mod 2), and both predict the test rows
    /// exactly as the 4-rank job did.
    /// </summary>
    [Test]
    public void CheckpointFromFourRanks_LoadsInOneProcessAndInTwoRanks_AndPredictsIdentically()
    {
        ShardedJob(4, "row");
        string model = Path.Combine(_dir, "wdl.row.4.kde");
        var four = Read("wdl", "row", 4).TestLogits;

        var loaded = CtrPipeline.Load(model);
        Assert.That(loaded.Model.Embedding!.IsSharded, Is.False);
        var test = CtrPipeline.PrepareWith(ShardedScenarios.Source(_data), loaded.Preprocessor!).Test;
        Assert.That(CtrPipeline.Logits(loaded.Model, test), Is.EqualTo(four), "one process, whole tables");
        Assert.That(new KdEngine.Serving.Predictor(loaded.Model).Kind, Is.EqualTo(ModelKind.Wdl), "the gathered checkpoint compiles for serving");

        string output = Path.Combine(_dir, "predict.2.json");
        var job = MpiJob.Run(2, Limit, "predict", model, _data, output);
        Assert.That(job.ExitCode, Is.EqualTo(0), job.Output);
        Assert.That(JsonSerializer.Deserialize<float[]>(File.ReadAllText(output)), Is.EqualTo(four), "two ranks, tables re-sharded on load");
    }

    /// <summary>
    /// A rank killed (SIGKILL) mid-epoch ends the 4-rank job with an error naming it; the last training checkpoint (rows,
    /// optimizer state and position gathered from 4 ranks) resumes on 2 ranks at the same global batch and finishes as
    /// an uninterrupted run does, to rounding level.
    /// </summary>
    [Test]
    public void KilledRank_EndsTheJobNamingIt_AndTheLastCheckpointResumesOnTwoRanks()
    {
        string dir = Path.Combine(_dir, "fault");
        Directory.CreateDirectory(dir);
        var fault = MpiJob.Run(4, Limit, "fault", _data, dir, (GlobalBatch / 4).ToString(), "2", "7");
        Assert.That(fault.TimedOut, Is.False, "the job ended by itself");
        Assert.That(fault.ExitCode, Is.Not.EqualTo(0));
        Assert.That(fault.Output, Does.Contain("rank 2: killing myself at step 7"));
        Assert.That(fault.Output, Does.Match(@"rank 2 with PID \d+ .*(killed|signal 9)|rank 2 did not answer"), "the error names the dead rank");
        Assert.That(File.Exists(Path.Combine(dir, "fault.ckpt")), "a checkpoint was written before the failure");

        var resume = MpiJob.Run(2, Limit, "resume", _data, dir, (GlobalBatch / 2).ToString());
        Assert.That(resume.ExitCode, Is.EqualTo(0), resume.Output);
        var resumed = JsonSerializer.Deserialize<ShardedScenarios.Result>(File.ReadAllText(Path.Combine(dir, "resumed.2.json")))!;

        int threads = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = 1;
        try
        {
            var (objective, optimizer, data) = ShardedScenarios.FaultRun(SingleProcess.Instance, _data, GlobalBatch);
            var options = ShardedScenarios.Settings(GlobalBatch, EmbeddingSharding.Row).ToTrainerOptions() with { RestoreBest = false };
            var report = new Trainer(options).Fit(objective, optimizer, data.Train, data.Validation);
            var logits = Trainer.Evaluate(objective.Predictor, data.Test, 1024, null).Logits;
            Assert.That(resumed.Steps, Is.EqualTo(report.Steps));
            Assert.That(resumed.TrainLoss, Has.Length.EqualTo(report.History.Count));
            double loss = resumed.TrainLoss.Zip(report.History, (a, b) => Math.Abs(a - b.TrainLoss)).Max();
            double auc = resumed.ValidationAuc.Zip(report.History, (a, b) => Math.Abs(a - b.Auc)).Max();
            double logit = resumed.TestLogits.Zip(logits, (a, b) => Math.Abs(a - b)).Max();
            TestContext.Out.WriteLine($"killed at step 7 on 4 ranks, resumed from step 6 on 2 ranks vs uninterrupted: max |Δ train loss| {loss:E2}, |Δ valid AUC| {auc:E2}, |Δ test logit| {logit:E2}");
            Assert.That(loss, Is.LessThan(1e-6));
            Assert.That(auc, Is.LessThan(1e-6));
            Assert.That(logit, Is.LessThan(1e-4));
        }
        finally { CpuParallel.ThreadCount = threads; }
    }

    /// <summary>
    /// The CLI: <c>train --embedding-sharding row</c> on 4 ranks within a per-rank budget and <c>distill --method logits</c> on 2
    /// from a frozen teacher whose tables are sharded too (forward-only lookups); each saves one ordinary checkpoint
    /// (rank 0 alone prints) that <c>eval</c> loads in one process.
    /// </summary>
    [Test]
    public void Cli_TrainAndDistillRowSharded_SaveOrdinaryCheckpoints()
    {
        string schema = _data + ".schema.json", model = Path.Combine(_dir, "cli-row.kde"), student = Path.Combine(_dir, "cli-row-student.kde");
        var train = MpiJob.Run(4, Limit, "cli", "train", "--model", "wdl", "--data", _data, "--schema", schema, "--epochs", "1", "--batch-size", "32",
            "--distributed", "mpi", "--embedding-sharding", "row", "--max-table-bytes-per-rank", "64K", "--input-split", "bytes", "--out", model);
        Assert.That(train.ExitCode, Is.EqualTo(0), train.Output);
        Assert.That(train.Output, Does.Contain("embedding tables: row-sharded over 4 ranks").And.Contain("budget 64.0 KiB"));
        Assert.That(Regex.Matches(train.Output, "saved ").Count, Is.EqualTo(1), "rank 0 alone prints");
        var distill = MpiJob.Run(2, Limit, "cli", "distill", "--method", "logits", "--teacher", _teacher, "--data", _data, "--epochs", "1", "--batch-size", "32",
            "--distributed", "mpi", "--embedding-sharding", "row", "--out", student);
        Assert.That(distill.ExitCode, Is.EqualTo(0), distill.Output);
        Assert.That(distill.Output, Does.Contain("saved student"));
        foreach (var path in new[] { model, student })
        {
            var o = new StringWriter();
            Assert.That(CliApp.Run(["eval", "--model", path, "--data", _data], o, o), Is.EqualTo(0), o.ToString());
            Assert.That(o.ToString(), Does.Contain("AUC"));
        }
    }

    /// <summary>
    /// 8 fields of 20,000 ids at D = 16 with Adam: 10.9 MB of WDL table weights, 32.6 MB with the optimizer state. Under a
    /// 12 MB budget one process (replicated) fails before allocating, naming the ranks needed; 4 ranks row-sharded hold
    /// 8.2 MB each and train.
    /// </summary>
    [Test]
    public void TableBudget_RejectsAReplicatedTableThatDoesNotFit_AndFourRanksHoldItSharded()
    {
        var settings = new TrainingSettings { EmbeddingSharding = EmbeddingSharding.Replicated, MaxTableBytesPerRank = 12_000_000 };
        var placement = settings.TablePlacement(SingleProcess.Instance);
        var fields = Enumerable.Range(0, 8).Select(f => new InputField($"C{f}", 20_000)).ToArray();
        var error = Assert.Throws<TableBudgetExceededException>(() =>
        {
            using (placement.Use()) _ = new ZooModel(new ModelConfig { Model = ModelKind.Wdl, EmbeddingDim = 16, Dnn = [32] }, fields);
        })!;
        TestContext.Out.WriteLine(error.Message);
        Assert.That(error.Message, Does.Contain("--max-table-bytes-per-rank").And.Contain("--embedding-sharding row").And.Contain("at least 3 ranks"));

        var job = MpiJob.Run(4, Limit, "memory", "20000", "8", "16", "12000000");
        Assert.That(job.ExitCode, Is.EqualTo(0), job.Output);
        for (int r = 0; r < 4; r++)
            Assert.That(job.Output, Does.Contain($"rank {r}: memory Row N=4: tables 2720000 B, optimizer state 5440000 B, total 8160000 B"));
    }
}
