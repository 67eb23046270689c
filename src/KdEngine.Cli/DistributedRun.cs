using KdEngine.Distributed;
using KdEngine.Distributed.Native;
using KdEngine.Kernels.Cpu;
using KdEngine.Training;

namespace KdEngine.Cli;

/// <summary>
/// <c>--distributed none|mpi</c> for train and distill: picks the process group and runs the verb in it. Under
/// <c>mpirun</c>, rank 0 alone prints and writes files, each rank uses its share of the machine's cores, and an
/// error on any rank (a timeout naming a silent rank included) is printed with the rank and ends the whole job
/// (MPI_Abort), so no rank is left waiting.
/// </summary>
internal static class DistributedRun
{
    internal static readonly CliOption[] Options =
    [
        new("distributed", "MODE", "none|mpi (default none). mpi: run under 'mpirun -np N'; each rank trains on its 1/N of the rows, " +
            "gradients are averaged over the ranks, rank 0 prints and saves; without mpirun it runs as rank 0 of 1"),
        new("distributed-timeout", "S", "seconds a rank waits for the others in one collective before the job is aborted, naming the ranks that did not answer (default 600)"),
    ];

    public static int Run(CliArgs a, TextWriter stdout, Func<IProcessGroup, TextWriter, int> body)
    {
        string mode = a.String("distributed") ?? "none";
        int timeout = a.Int("distributed-timeout", 600, 1);
        IProcessGroup group;
        try { group = ProcessGroups.Create(mode, TimeSpan.FromSeconds(timeout)); }
        catch (ArgumentException e) { throw new CliException(e.Message); }
        catch (MpiUnavailableException e) { throw new CliException("--distributed mpi: " + e.Message); }
        if (group is not MpiProcessGroup mpi)
        {
            if (mode.Equals("mpi", StringComparison.OrdinalIgnoreCase))
                stdout.WriteLine("distributed: not started by mpirun; training as rank 0 of 1.");
            return body(group, stdout);
        }
        using (mpi)
        {
            int threads = Math.Max(1, Environment.ProcessorCount / ProcessGroups.LocalSize);
            CpuParallel.ThreadCount = threads;
            var output = mpi.Rank == 0 ? stdout : TextWriter.Null;
            output.WriteLine($"distributed: {mpi.Size} ranks ({mpi.LibraryVersion.Split(',')[0]}), {threads} thread{(threads == 1 ? "" : "s")} per rank; " +
                $"each rank trains on its 1/{mpi.Size} of the rows, batch {a.String("batch-size") ?? "256"} per rank");
            try
            {
                return body(mpi, output);
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"error: rank {mpi.Rank}: {e.Message.ReplaceLineEndings(" ")}");
                if (a.Flag("verbose")) Console.Error.WriteLine(e);
                mpi.Abort(1);
                throw;
            }
        }
    }
}
