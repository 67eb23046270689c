using System.Text.Json;
using KdEngine.Cli;
using KdEngine.Data;
using KdEngine.Kernels.Cpu;
using KdEngine.Pipelines;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Distributed.Tests;

/// <summary>
/// The MPI tests: each starts <c>mpirun --allow-run-as-root --oversubscribe -np 2</c> over this assembly's
/// <see cref="Worker"/> (or the CLI through it) and checks what the ranks report. Skipped when mpirun is missing.
/// </summary>
[TestFixture]
public sealed class DataParallelTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(120);
    private string _dir = "";
    private string _data = "";

    [OneTimeSetUp]
    public void MakeData()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-mpi-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(_dir);
        _data = Path.Combine(_dir, "clicks.tsv");
        var o = new StringWriter();
        Assert.That(CliApp.Run(["synth", "--rows", "8000", "--fields", "8", "--privileged", "1", "--vocab", "300", "--seed", "3", "--out", _data], o, o), Is.EqualTo(0), o.ToString());
    }

    [OneTimeTearDown]
    public void Clean()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private string Schema => _data + ".schema.json";

    [Test]
    public void Collectives_AreCorrectAndBitIdenticalOnEveryRank()
    {
        var job = MpiJob.Run(2, Limit, "collectives");
        Assert.That(job.ExitCode, Is.EqualTo(0), job.Output);
        Assert.That(job.Output, Does.Contain("rank 0: ok collectives").And.Contain("rank 1: ok collectives"));
    }

    /// <summary>
    /// Two ranks with batch B each take the same steps as one process with batch 2B, on the same preprocessing; the
    /// curves differ only because the two runs draw different rows into each global batch (each rank shuffles its own
    /// shard), so they agree within sampling noise, not bit for bit. The 2-rank checkpoint, loaded in this process,
    /// predicts the test rows exactly as the 2-rank job computed them.
    /// </summary>
    [Test]
    public void TwoRanksWithBatchB_FollowOneProcessWithBatch2B_AndTheirCheckpointPredictsIdentically()
    {
        string output = Path.Combine(_dir, "two-ranks");
        var job = MpiJob.Run(2, Limit, "train", _data, output, "64");
        Assert.That(job.ExitCode, Is.EqualTo(0), job.Output);
        Assert.That(job.Output, Does.Contain("rank 0: ok train").And.Contain("rank 1: ok train")); // includes: final weights bit-identical
        var two = JsonSerializer.Deserialize<TrainingRun.Result>(File.ReadAllText(output + ".json"))!;

        var source = new DataSource(_data) { Schema = KdEngine.Data.Schema.Load(Schema) };
        int threads = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = 1;
        (KdEngine.Models.ZooModel Model, PreparedData Data, TrainOutcome Outcome, float[] TestLogits) one;
        try { one = TrainingRun.Run(source, SingleProcess.Instance, 128); }
        finally { CpuParallel.ThreadCount = threads; }

        TestContext.Out.WriteLine($"train loss 1×128: [{string.Join(", ", one.Outcome.Report.History.Select(p => p.TrainLoss.ToString("F4")))}]");
        TestContext.Out.WriteLine($"train loss 2×64:  [{string.Join(", ", two.TrainLoss.Select(v => v.ToString("F4")))}]");
        TestContext.Out.WriteLine($"valid AUC 1×128: [{string.Join(", ", one.Outcome.Report.History.Select(p => p.Auc.ToString("F4")))}]");
        TestContext.Out.WriteLine($"valid AUC 2×64:  [{string.Join(", ", two.ValidationAuc.Select(v => v.ToString("F4")))}]");
        Assert.That(two.Steps, Is.EqualTo(one.Outcome.Report.Steps), "2 ranks × B take as many steps as 1 × 2B");
        Assert.That(two.TrainLoss, Has.Length.EqualTo(one.Outcome.Report.History.Count));
        for (int i = 0; i < two.TrainLoss.Length; i++)
        {
            Assert.That(two.TrainLoss[i], Is.EqualTo(one.Outcome.Report.History[i].TrainLoss).Within(0.03), $"train loss at validation {i}");
            Assert.That(two.ValidationAuc[i], Is.EqualTo(one.Outcome.Report.History[i].Auc).Within(0.03), $"validation AUC at validation {i}");
        }
        Assert.That(two.TestAuc, Is.EqualTo(one.Outcome.Test.Auc).Within(0.02), "final test AUC");
        Assert.That(two.TestAuc, Is.GreaterThan(0.6), "the 2-rank run learned something");

        var loaded = CtrPipeline.Load(output + ".kde");
        Assert.That(loaded.Preprocessor!.ToJson(), Is.EqualTo(one.Data.Preprocessor.ToJson()), "rank 0 fitted the preprocessing one process would have");
        var test = CtrPipeline.PrepareWith(source, loaded.Preprocessor).Test;
        var logits = CtrPipeline.Logits(loaded.Model, test);
        Assert.That(logits, Is.EqualTo(two.TestLogits), "the checkpoint predicts, in one process, exactly what the 2-rank job computed");
    }

    /// <summary>
    /// Without shuffling, rank r's k-th batch of B holds rows 2kB + r, 2kB + r + 2, … (round-robin shards), so the two
    /// ranks' batches together are exactly the one-process batch of 2B, and the batch-weighted gradient average is
    /// that batch's mean gradient: the runs differ only in float summation order (two partial means averaged vs one
    /// mean over 2B rows, and the sparse rows merged in rank order), which stays at rounding level over the run.
    /// </summary>
    [Test]
    public void UnshuffledTwoRanksWithBatchB_MatchOneProcessWithBatch2B_ToRoundingLevel()
    {
        string output = Path.Combine(_dir, "two-ranks-ordered");
        var job = MpiJob.Run(2, Limit, "train", _data, output, "64", "ordered");
        Assert.That(job.ExitCode, Is.EqualTo(0), job.Output);
        var two = JsonSerializer.Deserialize<TrainingRun.Result>(File.ReadAllText(output + ".json"))!;

        var source = new DataSource(_data) { Schema = KdEngine.Data.Schema.Load(Schema) };
        int threads = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = 1;
        (KdEngine.Models.ZooModel Model, PreparedData Data, TrainOutcome Outcome, float[] TestLogits) one;
        try { one = TrainingRun.Run(source, SingleProcess.Instance, 128, shuffle: false); }
        finally { CpuParallel.ThreadCount = threads; }

        var history = one.Outcome.Report.History;
        double worstLoss = 0, worstAuc = 0;
        for (int i = 0; i < two.TrainLoss.Length; i++)
        {
            worstLoss = Math.Max(worstLoss, Math.Abs(two.TrainLoss[i] - history[i].TrainLoss));
            worstAuc = Math.Max(worstAuc, Math.Abs(two.ValidationAuc[i] - history[i].Auc));
        }
        double worstLogit = two.TestLogits.Zip(one.TestLogits, (x, y) => Math.Abs(x - y)).Max();
        TestContext.Out.WriteLine($"ordered 2×64 vs 1×128 over {two.Steps} steps: max |Δ train loss| {worstLoss:E2}, max |Δ valid AUC| {worstAuc:E2}, max |Δ test logit| {worstLogit:E2}");
        Assert.That(two.Steps, Is.EqualTo(one.Outcome.Report.Steps));
        Assert.That(two.TrainLoss, Has.Length.EqualTo(history.Count));
        Assert.That(worstLoss, Is.LessThan(1e-6), "train loss curve");
        // AUC is a rank statistic: logits equal to rounding give the same AUC unless two validation logits lie within
        // rounding of each other, and then it moves by a whole swapped (positive, negative) pair, 1/(P·N). Allow one.
        var labels = one.Data.Validation.Labels;
        long positives = labels.Count(y => y > 0.5f), negatives = labels.Length - positives;
        Assert.That(worstAuc, Is.LessThanOrEqualTo(1.0 / (positives * negatives) + 1e-9), "validation AUC curve: at most one near-tied pair swapped");
        Assert.That(worstLogit, Is.LessThan(1e-4), "final test logits");
    }

    [Test]
    public void HungRank_TimesOutWithAnErrorNamingIt()
    {
        var job = MpiJob.Run(2, Limit, "hang", "3");
        Assert.That(job.TimedOut, Is.False, "the job ended by itself");
        Assert.That(job.ExitCode, Is.Not.EqualTo(0));
        Assert.That(job.Output, Does.Contain("timed out").And.Contain("rank 1 did not answer a heartbeat"), job.Output);
        Assert.That(job.Elapsed, Is.LessThan(TimeSpan.FromSeconds(60)));
    }

    [Test]
    public void CliTrainAndRocketDistill_UnderMpirun_Rank0AloneSaves()
    {
        string model = Path.Combine(_dir, "cli-train.kde");
        var train = MpiJob.Run(2, Limit, "cli", "train", "--model", "deepfm", "--data", _data, "--schema", Schema,
            "--epochs", "1", "--batch-size", "128", "--distributed", "mpi", "--out", model);
        Assert.That(train.ExitCode, Is.EqualTo(0), train.Output);
        Assert.That(train.Output, Does.Contain("distributed: 2 ranks"));
        Assert.That(CountOf(train.Output, "saved "), Is.EqualTo(1), "rank 0 alone saves and prints");

        string student = Path.Combine(_dir, "cli-rocket.kde");
        var rocket = MpiJob.Run(2, Limit, "cli", "distill", "--method", "rocket", "--data", _data, "--schema", Schema,
            "--epochs", "1", "--batch-size", "128", "--distributed", "mpi", "--out", student);
        Assert.That(rocket.ExitCode, Is.EqualTo(0), rocket.Output);
        Assert.That(CountOf(rocket.Output, "saved student"), Is.EqualTo(1));
        var o = new StringWriter();
        Assert.That(CliApp.Run(["eval", "--model", student, "--data", _data], o, o), Is.EqualTo(0), o.ToString());
        Assert.That(o.ToString(), Does.Contain("AUC"));
    }

    [Test]
    public void CachedTeacherLogits_AreShardedAcrossRanks()
    {
        string teacher = Path.Combine(_dir, "teacher.kde"), cache = Path.Combine(_dir, "teacher.logits");
        var o = new StringWriter();
        Assert.That(CliApp.Run(["train", "--model", "fm", "--data", _data, "--schema", Schema, "--epochs", "1", "--out", teacher], o, o), Is.EqualTo(0), o.ToString());
        Assert.That(CliApp.Run(["cache-logits", "--model", teacher, "--data", _data, "--out", cache], o, o), Is.EqualTo(0), o.ToString());
        string student = Path.Combine(_dir, "logits-student.kde");
        var job = MpiJob.Run(2, Limit, "cli", "distill", "--method", "logits", "--teacher-logits", cache, "--data", _data,
            "--epochs", "1", "--batch-size", "128", "--distributed", "mpi", "--out", student);
        Assert.That(job.ExitCode, Is.EqualTo(0), job.Output);
        Assert.That(job.Output, Does.Contain("rank 0's shard of data").And.Contain("saved student"));
        Assert.That(File.Exists(student));
    }

    private static int CountOf(string text, string what)
    {
        int n = 0;
        for (int at = text.IndexOf(what, StringComparison.Ordinal); at >= 0; at = text.IndexOf(what, at + 1, StringComparison.Ordinal)) n++;
        return n;
    }
}
