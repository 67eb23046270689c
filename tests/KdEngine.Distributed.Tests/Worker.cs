using System.Globalization;
using System.Text.Json;
using KdEngine.Autograd;
using KdEngine.Kernels.Cpu;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Pipelines;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Distributed.Tests;

/// <summary>
/// Entry point of the test assembly (the test SDK's generated one is switched off). Under <c>dotnet test</c> it is
/// never called; <see cref="MpiJob"/> starts <c>mpirun -np 2 dotnet KdEngine.Distributed.Tests.dll SCENARIO …</c>
/// and every rank runs one scenario here. A scenario prints <c>rank R: ok …</c> lines and exits 0, or prints what
/// failed and exits 1; MPI errors and timeouts end the job through MPI_Abort.
/// </summary>
public static class Worker
{
    public static int Main(string[] args)
    {
        if (args.Length == 0)
        {
            Console.Error.WriteLine("KdEngine.Distributed.Tests: run with 'dotnet test'; under mpirun: collectives | train DATA OUT BATCH [ordered] | hang TIMEOUT | exchange | sharded DATA DIR BATCH MODE RUNS [TEACHER] | predict MODEL DATA OUT | fault DATA DIR BATCH RANK STEP | resume DATA DIR BATCH | memory VOCAB FIELDS DIM CAP [MODE] | cli ARGS… | scaling MODEL BATCH STEPS THREADS");
            return 2;
        }
        if (args[0] == "cli") return KdEngine.Cli.CliApp.Run(args[1..], Console.Out, Console.Error);
        if (args[0] == "scaling") return Scaling.Run(args[1..]);
        CpuParallel.ThreadCount = 1; // one thread per rank: deterministic kernels and no oversubscription
        var group = MpiProcessGroup.Initialize(TimeSpan.FromSeconds(args[0] == "hang" ? double.Parse(args[1], CultureInfo.InvariantCulture) : 120));
        try
        {
            int code = args[0] switch
            {
                "collectives" => Collectives(group),
                "train" => Train(group, args[1], args[2], int.Parse(args[3], CultureInfo.InvariantCulture), shuffle: args.Length < 5 || args[4] != "ordered"),
                "hang" => Hang(group),
                "exchange" => ShardedScenarios.Exchange(group),
                "sharded" => ShardedScenarios.Sharded(group, args[1..]),
                "predict" => ShardedScenarios.Predict(group, args[1..]),
                "fault" => ShardedScenarios.Fault(group, args[1..]),
                "resume" => ShardedScenarios.Resume(group, args[1..]),
                "memory" => ShardedScenarios.Memory(group, args[1..]),
                _ => throw new ArgumentException($"unknown scenario '{args[0]}'"),
            };
            group.Dispose();
            return code;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"error: rank {group.Rank}: {e.Message}");
            group.Abort(3);
            return 3;
        }
    }

    private static int Failures;

    private static void Expect(bool condition, IProcessGroup g, string what)
    {
        if (condition) return;
        Failures++;
        Console.Out.WriteLine($"rank {g.Rank}: FAILED {what}");
    }

    /// <summary>Every collective against values each rank can compute for itself.</summary>
    private static int Collectives(MpiProcessGroup g)
    {
        int r = g.Rank, n = g.Size;
        Console.Out.WriteLine($"rank {r}: {g.LibraryVersion.Split(',')[0]}, {n} ranks");

        Span<double> sums = [r + 1, 0.5 * r, -3];
        g.AllReduceSum(sums);
        Expect(sums[0] == n * (n + 1) / 2.0 && sums[1] == 0.25 * n * (n - 1) && sums[2] == -3.0 * n, g, $"allreduce sum: [{string.Join(", ", sums.ToArray())}]");
        Expect(g.AllReduceMin(100 - r) == 100 - (n - 1), g, "allreduce min");

        string text = g.BroadcastText(r == 0 ? "préprocessing ✓ from rank 0" : null);
        Expect(text == "préprocessing ✓ from rank 0", g, $"broadcast text: '{text}'");
        Expect(g.BroadcastText(r == 0 ? "" : "ignored") == "", g, "broadcast empty text");

        // Round-robin shards of 0..10 gather back to file order.
        var rows = Enumerable.Range(0, 11).ToArray();
        var mine = Shard.Of(rows, r, n).Select(i => (float)i).ToArray();
        var all = g.AllGatherInterleaved(mine);
        Expect(all.SequenceEqual(rows.Select(i => (float)i)), g, $"allgather interleaved: [{string.Join(", ", all)}]");

        // Parameters: rank-dependent values become rank 0's.
        var w = Tensor<float>.FromArray(Enumerable.Range(0, 7).Select(i => (float)(i + 10 * r)).ToArray(), 7).RequireGrad();
        g.BroadcastParameters([new NamedParameter("w", w)]);
        Expect(w.ToArray().SequenceEqual(Enumerable.Range(0, 7).Select(i => (float)i)), g, $"broadcast parameters: [{string.Join(", ", w.ToArray())}]");

        // Gradients: dense g_r = (r+1)·(1, 2, …), batch B_r = 3 on rank 0 and 1 elsewhere; a table where rank r touches
        // rows {r, 5} with gradient rows (r+1)·(row+1); a dense parameter only rank 0's batch reached.
        var dense = Tensor<float>.Zeros(5).RequireGrad();
        var onlyRoot = Tensor<float>.Zeros(2).RequireGrad();
        var table = EmbeddingTable.Zeros<float>(8, 3, "table").RequireGrad();
        var g0 = dense.GradOrZeros().AsSpan();
        for (int i = 0; i < 5; i++) g0[i] = (r + 1) * (i + 1);
        if (r == 0) onlyRoot.GradOrZeros().AsSpan().Fill(4f);
        var sg = table.SparseGradOrEmpty();
        foreach (int row in new[] { 5, r }) sg.Add(row, [(r + 1) * (row + 1f), (r + 1) * (row + 1f), (r + 1) * (row + 1f)]);
        int batch = r == 0 ? 3 : 1;
        double total = 3 + (n - 1);
        NamedParameter[] ps = [new("dense", dense), new("table", table), new("onlyRoot", onlyRoot)];
        g.AverageGradients(ps, batch);
        double Weight(int rank) => (rank == 0 ? 3 : 1) / total;
        var gd = dense.Grad!.ToArray();
        for (int i = 0; i < 5; i++)
        {
            double expected = 0;
            for (int q = 0; q < n; q++) expected += Weight(q) * (q + 1) * (i + 1);
            Expect(Math.Abs(gd[i] - expected) < 1e-5, g, $"dense gradient [{i}] = {gd[i]}, expected {expected}");
        }
        var go = onlyRoot.Grad!.ToArray();
        Expect(Math.Abs(go[0] - Weight(0) * 4) < 1e-6, g, $"gradient only rank 0 had = {go[0]}, expected {Weight(0) * 4}");
        var merged = table.SparseGrad!.ToDense();
        for (int row = 0; row < 8; row++)
        {
            double expected = 0;
            for (int q = 0; q < n; q++) if (row == q || row == 5) expected += Weight(q) * (q + 1) * (row + 1);
            Expect(Math.Abs(merged[row * 3] - expected) < 1e-5, g, $"sparse gradient row {row} = {merged[row * 3]}, expected {expected}");
        }
        int union = new HashSet<int>(Enumerable.Range(0, n).Append(5)).Count;
        Expect(table.SparseGrad.Count == union, g, $"merged touched rows = {table.SparseGrad.Count}, expected {union}");

        // Bit-identical on every rank: rank 0's bytes are broadcast and compared.
        string mineText = Convert.ToHexString(System.Runtime.InteropServices.MemoryMarshal.AsBytes(gd.Concat(merged).Concat(go).ToArray().AsSpan()));
        Expect(g.BroadcastText(r == 0 ? mineText : null) == mineText, g, "gradients bit-identical to rank 0's");

        // All-to-all of int blocks: rank r sends (100·r + p, −p) to rank p.
        var blocks = new int[2 * n];
        for (int p = 0; p < n; p++) { blocks[2 * p] = 100 * r + p; blocks[2 * p + 1] = -p; }
        var got = new int[2 * n];
        g.AllToAll(blocks, got);
        Expect(Enumerable.Range(0, n).All(q => got[2 * q] == 100 * q + r && got[2 * q + 1] == -r), g, $"alltoall: [{string.Join(", ", got)}]");

        // All-to-all of bytes with different sizes: rank r sends r + p + 1 bytes of value (r·16 + p) to rank p (some ranks
        // send rank 0 nothing: r + 0 + 1 ≥ 1 always, so empty blocks come from the zero-length case below).
        int Size(int from, int to) => (from + to) % 3 == 0 ? 0 : from + to + 1;
        var sendCounts = Enumerable.Range(0, n).Select(p => Size(r, p)).ToArray();
        var receiveCounts = Enumerable.Range(0, n).Select(q => Size(q, r)).ToArray();
        var send = Enumerable.Range(0, n).SelectMany(p => Enumerable.Repeat((byte)(r * 16 + p), sendCounts[p])).ToArray();
        var receive = new byte[receiveCounts.Sum()];
        var pending = g.StartAllToAllV(send, sendCounts, receive, receiveCounts, "alltoallv (test)");
        g.WaitExchange(pending);
        var expectedBytes = Enumerable.Range(0, n).SelectMany(q => Enumerable.Repeat((byte)(q * 16 + r), receiveCounts[q])).ToArray();
        Expect(receive.SequenceEqual(expectedBytes), g, $"alltoallv: [{string.Join(", ", receive)}]");
        bool twice = false;
        try { g.WaitExchange(pending); } catch (InvalidOperationException) { twice = true; }
        Expect(twice, g, "waiting twice on one exchange is an error");

        // Gather to rank 0: rank q sends q + 1 bytes of value q.
        var counts = Enumerable.Range(0, n).Select(q => q + 1).ToArray();
        var gathered = new byte[r == 0 ? counts.Sum() : 0];
        g.GatherToRoot(Enumerable.Repeat((byte)r, r + 1).ToArray(), gathered, counts, "gather (test)");
        if (r == 0)
            Expect(gathered.SequenceEqual(Enumerable.Range(0, n).SelectMany(q => Enumerable.Repeat((byte)q, q + 1))), g, $"gather to root: [{string.Join(", ", gathered)}]");

        var stats = g.Stats;
        Expect(stats.Steps == 1 && stats.DenseBytes == 7 * sizeof(float) && stats.SparseBytesSent == 2 * (4 + 3 * 4), g, $"stats {stats}");
        Console.Out.WriteLine(Failures == 0 ? $"rank {r}: ok collectives" : $"rank {r}: {Failures} failure(s)");
        return Failures == 0 ? 0 : 1;
    }

    /// <summary>
    /// Data-parallel training of a seeded DNN on this rank's shard, batch <paramref name="batch"/> per rank. Rank 0
    /// writes OUT.json (validation history, test metrics and logits, communication stats) and OUT.kde (the model).
    /// Every rank checks that its final weights are bit-identical to rank 0's.
    /// </summary>
    private static int Train(MpiProcessGroup g, string dataPath, string output, int batch, bool shuffle)
    {
        var source = new DataSource(dataPath) { Schema = KdEngine.Data.Schema.Load(dataPath + ".schema.json") };
        var (model, data, outcome, testLogits) = TrainingRun.Run(source, g, batch, shuffle);
        string checksum = TrainingRun.WeightsHash(model);
        Expect(g.BroadcastText(g.Rank == 0 ? checksum : null) == checksum, g, "final weights bit-identical to rank 0's");
        if (g.Rank == 0)
        {
            CtrPipeline.Save(output + ".kde", model, data.Preprocessor, data.Source);
            var s = g.Stats;
            File.WriteAllText(output + ".json", JsonSerializer.Serialize(new TrainingRun.Result(
                outcome.Report.History.Select(p => p.TrainLoss).ToArray(), outcome.Report.History.Select(p => p.Auc).ToArray(),
                outcome.Validation.Auc, outcome.Test.Auc, outcome.Test.LogLoss, testLogits, outcome.Report.Steps,
                outcome.Report.Elapsed.TotalSeconds, s.PerStep(s.DenseBytes), s.PerStep(s.SparseBytesSent), s.PerStep(s.SparseBytesReceived),
                s.PerStep(s.Seconds), s.PerStep(s.WaitSeconds))));
        }
        Console.Out.WriteLine(Failures == 0 ? $"rank {g.Rank}: ok train" : $"rank {g.Rank}: {Failures} failure(s)");
        return Failures == 0 ? 0 : 1;
    }

    /// <summary>Rank 1 stops answering (hung outside MPI); rank 0 must time out naming it.</summary>
    private static int Hang(MpiProcessGroup g)
    {
        Span<double> x = [1];
        g.AllReduceSum(x); // everyone is up
        if (g.Rank == 1)
        {
            Console.Out.WriteLine("rank 1: hanging");
            Console.Out.Flush();
            Thread.Sleep(Timeout.Infinite);
        }
        g.AllReduceSum(x);
        Console.Out.WriteLine($"rank {g.Rank}: FAILED the allreduce completed without rank 1");
        return 1;
    }
}

/// <summary>The training run the 1-rank / 2-rank comparison uses (shared by the worker and the in-process baseline).</summary>
public static class TrainingRun
{
    public sealed record Result(double[] TrainLoss, double[] ValidationAuc, double FinalValidationAuc, double TestAuc, double TestLogLoss,
        float[] TestLogits, long Steps, double Seconds, double DenseBytesPerStep, double SparseBytesSentPerStep, double SparseBytesReceivedPerStep,
        double ExchangeSecondsPerStep, double WaitSecondsPerStep);

    public static readonly ModelConfig Model = new() { Model = ModelKind.Dnn, EmbeddingDim = 8, Dnn = [64, 32], Seed = 5 };

    public static TrainingSettings Settings(int batch, bool shuffle = true) => new()
    {
        Epochs = 3, BatchSize = batch, LearningRate = 2e-3f, Patience = 0, EvaluateEvery = 20, Seed = 7, Shuffle = shuffle,
    };

    public static (ZooModel Model, PreparedData Data, TrainOutcome Outcome, float[] TestLogits) Run(DataSource source, IProcessGroup group, int batch, bool shuffle = true)
    {
        var data = CtrPipeline.PrepareShard(source, group, new SplitOptions());
        var model = CtrPipeline.BuildModel(Model, data.Fields);
        var outcome = CtrPipeline.Train(model, data, Settings(batch, shuffle), null, false, group);
        var testLogits = Trainer.Evaluate(model, data.Test, 1024, group).Logits;
        return (model, data, outcome, testLogits);
    }

    public static string WeightsHash(Module model)
    {
        var bytes = model.Parameters().SelectMany(p => System.Runtime.InteropServices.MemoryMarshal.AsBytes(p.Tensor.ToArray().AsSpan()).ToArray()).ToArray();
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(bytes));
    }
}
