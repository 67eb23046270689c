using System.Diagnostics;
using System.Globalization;
using KdEngine.Data;
using KdEngine.Kernels.Cpu;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Training;

namespace KdEngine.Distributed.Tests;

/// <summary>
/// The scaling measurement of docs/distributed.md (not a test): the bench configuration (F = 39 fields, D = 16,
/// 65,536 ids per field; DNN [400, 400, 400], or xDeepFM adding CIN [200, 200, 200]) on seeded synthetic rows, trained
/// data-parallel for a fixed number of steps. Runs with or without mpirun:
/// <c>mpirun -np 2 dotnet KdEngine.Distributed.Tests.dll scaling dnn 128 40 1</c>. Rank 0 prints one line.
/// </summary>
public static class Scaling
{
    public static int Run(string[] args)
    {
        string kind = args[0];
        int batch = int.Parse(args[1], CultureInfo.InvariantCulture);
        int steps = int.Parse(args[2], CultureInfo.InvariantCulture);
        CpuParallel.ThreadCount = int.Parse(args[3], CultureInfo.InvariantCulture);
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
                Model = kind == "xdeepfm" ? ModelKind.XDeepFm : ModelKind.Dnn,
                EmbeddingDim = 16, Dnn = [400, 400, 400], Cin = [200, 200, 200], Seed = 1,
            };
            var model = CtrPipeline.BuildModel(config, CtrPipeline.InputFields(all.FeatureSpace));
            var objective = new SupervisedObjective(model);
            var optimizer = new TrainingSettings().BuildOptimizer(model.Parameters().Select(p => p.Tensor));
            var options = new TrainerOptions { Epochs = 1, BatchSize = batch, Shuffle = false, Patience = 0, RestoreBest = false };
            var trainer = new Trainer(options, null, false, group);
            trainer.Fit(objective, optimizer, warm, null);
            // Fit starts by broadcasting rank 0's weights (170 MB of tables here): timed once apart and left out.
            var sw = Stopwatch.StartNew();
            group.BroadcastParameters(model.Parameters());
            double broadcast = sw.Elapsed.TotalSeconds;
            mpi?.ResetStats();
            sw.Restart();
            trainer.Fit(objective, optimizer, timed, null);
            double seconds = sw.Elapsed.TotalSeconds - broadcast;
            if (group.Rank == 0)
            {
                long dense = model.Parameters().Where(p => !p.Tensor.HasSparseGradient).Sum(p => (long)p.Tensor.Length);
                var s = mpi?.Stats;
                Console.Out.WriteLine(
                    $"scaling {kind}: ranks {group.Size}, threads/rank {CpuParallel.ThreadCount}, batch/rank {batch}, steps {steps}: " +
                    $"{(double)batch * group.Size * steps / seconds:F0} ex/s, {seconds / steps * 1e3:F1} ms/step; dense params {dense:N0}; weight broadcast {broadcast * 1e3:F0} ms (once per run); " +
                    (s is null ? "no exchange" :
                    $"per step: dense {s.PerStep(s.DenseBytes) / 1e6:F2} MB, sparse sent {s.PerStep(s.SparseBytesSent) / 1e6:F3} MB, received {s.PerStep(s.SparseBytesReceived) / 1e6:F3} MB, " +
                    $"exchange {s.PerStep(s.Seconds) * 1e3:F1} ms (waiting {s.PerStep(s.WaitSeconds) * 1e3:F1} ms)"));
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
