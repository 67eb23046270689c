using System.CommandLine;
using KdEngine.Distributed;
using KdEngine.Distributed.Native;
using KdEngine.Kernels.Cpu;
using KdEngine.Training;

namespace KdEngine.Cli.Options;

/// <summary>
/// <c>--distributed none|mpi</c> for train and distill: picks the process group and runs the verb in it. Under
/// <c>mpirun</c>, rank 0 alone prints and writes files, each rank uses its share of the machine's cores, and an
/// error on any rank (a timeout naming a silent rank included) is printed with the rank and ends the whole job
/// (MPI_Abort), so no rank is left waiting.
/// </summary>
internal sealed class DistributedOptions
{
    private const int DefaultTimeoutSeconds = 600;

    public Option<string> Mode { get; } = CliOptions.Parsed("--distributed", "none|mpi",
        "mpi: run under 'mpirun -np N'; each rank trains on its 1/N of the rows, gradients are averaged over the ranks, " +
        "rank 0 prints and saves; without mpirun it runs as rank 0 of 1",
        text => ProcessGroups.Modes.Contains(text.ToLowerInvariant()) ? text.ToLowerInvariant()
            : throw new CliException($"unknown mode '{text}' (expected {string.Join("|", ProcessGroups.Modes)})."),
        () => "none");

    public Option<int> Timeout { get; } = CliOptions.Int("--distributed-timeout", "S",
        "seconds a rank waits for the others in one collective before the job is aborted, naming the ranks that did not answer",
        DefaultTimeoutSeconds, min: 1);

    public void AddTo(Command command)
    {
        command.Options.Add(Mode);
        command.Options.Add(Timeout);
    }

    /// <summary>
    /// Runs <paramref name="body"/> in the chosen process group with the output only rank 0 prints to;
    /// <paramref name="batchSize"/> is for the banner.
    /// </summary>
    public int Run(ParseResult parse, CliOutput output, int batchSize, Func<IProcessGroup, CliOutput, int> body)
    {
        string mode = parse.GetValue(Mode)!;
        IProcessGroup group;
        try { group = ProcessGroups.Create(mode, TimeSpan.FromSeconds(parse.GetValue(Timeout))); }
        catch (ArgumentException e) { throw new CliException(e.Message); }
        catch (MpiUnavailableException e) { throw new CliException("--distributed mpi: " + e.Message); }
        if (group is not MpiProcessGroup mpi)
        {
            if (mode == "mpi") output.Line("distributed: not started by mpirun; training as rank 0 of 1.");
            return body(group, output);
        }
        using (mpi)
        {
            int threads = Math.Max(1, Environment.ProcessorCount / ProcessGroups.LocalSize);
            CpuParallel.ThreadCount = threads;
            var rankOutput = mpi.Rank == 0 ? output : new CliOutput(TextWriter.Null);
            rankOutput.Line($"distributed: {mpi.Size} ranks ({mpi.LibraryVersion.Split(',')[0]}), {threads} thread{(threads == 1 ? "" : "s")} per rank; " +
                $"each rank trains on its 1/{mpi.Size} of the rows, batch {batchSize} per rank");
            try
            {
                return body(mpi, rankOutput);
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"error: rank {mpi.Rank}: {e.Message.ReplaceLineEndings(" ")}");
                if (parse.GetValue<bool>(CliApp.VerboseName)) Console.Error.WriteLine(e);
                mpi.Abort(1);
                throw;
            }
        }
    }
}
