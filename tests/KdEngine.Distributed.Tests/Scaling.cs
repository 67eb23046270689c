using System.Diagnostics;
using System.Globalization;
using KdEngine.Data;
using KdEngine.Kernels.Cpu;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Sharding;
using KdEngine.Training;

namespace KdEngine.Distributed.Tests;

/// <summary>
/// The scaling measurement of docs/distributed.md (not a test): the bench configuration (F = 39 fields, D = 16,
/// 65,536 ids per field; DNN [400, 400, 400], WDL adding the wide table, or xDeepFM adding CIN [200, 200, 200] to WDL) on seeded synthetic rows, trained
/// data-parallel for a fixed number of steps. Runs with or without mpirun:
/// <c>mpirun -np 2 dotnet KdEngine.Distributed.Tests.dll scaling dnn 128 40 1 [replicated|row] [prefetch|noprefetch]</c>.
/// With <c>row</c> the tables are row-sharded over the ranks (the next batch's ids sent early unless <c>noprefetch</c>).
/// Rank 0 prints one line.
/// </summary>
public static class Scaling
{
    public static int Run(string[] args)
    {
        string kind = args[0];
        int batch = int.Parse(args[1], CultureInfo.InvariantCulture);
        int steps = int.Parse(args[2], CultureInfo.InvariantCulture);
        CpuParallel.ThreadCount = int.Parse(args[3], CultureInfo.InvariantCulture);
        bool row = args.Length > 4 && args[4] == "row";
        bool prefetch = !(args.Length > 5 && args[5] == "noprefetch");
        var group = ProcessGroups.Create("mpi", TimeSpan.FromMinutes(10));
        var mpi = group as MpiProcessGroup;
        try
        {
            const int warmup = 3;
            var gen = new SyntheticCtr(new SyntheticCtrOptions { Fields = 39, VocabSize = 65_536, Seed = 11 });
            var all = gen.Generate(batch * group.Size * (steps + warmup));
            var rows = Enumerable.Range(0, all.Count).ToArray();
            var shard = all.Select(Shard.Of(rows, group.Rank, group.Size));
            var warm = shard.Slice(0, batch * warmup);
            var timed = shard.Slice(batch * warmup, batch * steps);
            var config = new ModelConfig
            {
                Model = kind switch { "xdeepfm" => ModelKind.XDeepFm, "wdl" => ModelKind.Wdl, _ => ModelKind.Dnn }, // wdl: xDeepFM's tables (wide + embeddings) without the CIN
                EmbeddingDim = 16, Dnn = [400, 400, 400], Cin = [200, 200, 200], Seed = 1,
            };
            var placement = new TablePlacement(row ? EmbeddingSharding.Row : EmbeddingSharding.Replicated, group, optimizerSlots: 2);
            if (placement.Sharding is { } sharding) sharding.Prefetch = prefetch;
            ZooModel model;
            using (placement.Use()) model = CtrPipeline.BuildModel(config, CtrPipeline.InputFields(all.FeatureSpace));
            var objective = new SupervisedObjective(model);
            var optimizer = new TrainingSettings().BuildOptimizer(model.Parameters().Select(p => p.Tensor));
            var options = new TrainerOptions { Epochs = 1, BatchSize = batch, Shuffle = false, Patience = 0, RestoreBest = false };
            var trainer = new Trainer(options, null, false, group);
            trainer.Fit(objective, optimizer, warm, null);
            // Fit starts by broadcasting rank 0's weights (170 MB of tables here): timed once apart and left out.
            var sw = Stopwatch.StartNew();
            group.BroadcastParameters(model.Parameters().Where(p => p.Tensor.RowShard is null).ToArray());
            double broadcast = sw.Elapsed.TotalSeconds;
            mpi?.ResetStats();
            placement.Sharding?.ResetStats();
            sw.Restart();
            trainer.Fit(objective, optimizer, timed, null);
            double seconds = sw.Elapsed.TotalSeconds - broadcast;
            // Every rank's sharded-table bytes sent per step, to show the load is even (rank r's slot, summed over ranks).
            var perRank = new double[group.Size];
            if (placement.Sharding is { } sh) perRank[group.Rank] = sh.Stats.BytesSent / (double)Math.Max(1, sh.Stats.Pushes);
            group.AllReduceSum(perRank);
            if (group.Rank == 0)
            {
                long dense = model.Parameters().Where(p => !p.Tensor.HasSparseGradient).Sum(p => (long)p.Tensor.Length);
                var s = mpi?.Stats;
                var t = placement.Sharding?.Stats;
                long tables = model.Parameters().Where(p => p.Tensor.HasSparseGradient).Sum(p => (long)p.Tensor.Length * sizeof(float));
                Console.Out.WriteLine(
                    $"scaling {kind} {(row ? "row-sharded" + (prefetch ? "" : " no-prefetch") : "replicated")}: ranks {group.Size}, threads/rank {CpuParallel.ThreadCount}, batch/rank {batch}, steps {steps}: " +
                    $"{(double)batch * group.Size * steps / seconds:F0} ex/s, {seconds / steps * 1e3:F1} ms/step; dense params {dense:N0}; tables on rank 0 {tables / 1e6:F1} MB (+{2 * tables / 1e6:F1} MB Adam state); " +
                    $"weight broadcast {broadcast * 1e3:F0} ms (once per run); " +
                    (s is null ? "no exchange" :
                    $"per step: dense {s.PerStep(s.DenseBytes) / 1e6:F2} MB, sparse sent {s.PerStep(s.SparseBytesSent) / 1e6:F3} MB, received {s.PerStep(s.SparseBytesReceived) / 1e6:F3} MB, " +
                    $"exchange {s.PerStep(s.Seconds) * 1e3:F1} ms (waiting {s.PerStep(s.WaitSeconds) * 1e3:F1} ms)") +
                    (t is null ? "" :
                    $"; sharded tables per step: sent {t.BytesSent / (double)t.Pushes / 1e6:F3} MB (ids {t.IdBytesSent / (double)t.Pushes / 1e6:F3}, rows {t.RowBytesSent / (double)t.Pushes / 1e6:F3}, " +
                    $"gradients {t.GradientBytesSent / (double)t.Pushes / 1e6:F3}, counts {t.CountBytesSent / (double)t.Pushes / 1e6:F4}), received {t.BytesReceived / (double)t.Pushes / 1e6:F3} MB, " +
                    $"lookup+push {t.Seconds / t.Pushes * 1e3:F1} ms (waiting {t.WaitSeconds / t.Pushes * 1e3:F1} ms); " +
                    $"sent per rank [{string.Join(", ", perRank.Select(b => (b / 1e6).ToString("F3", CultureInfo.InvariantCulture)))}] MB"));
            }
            return 0;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"error: rank {group.Rank}: {e}");
            mpi?.Abort(3);
            return 3;
        }
        finally
        {
            mpi?.Dispose();
        }
    }
}
