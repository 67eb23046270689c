using KdEngine.Training;

namespace KdEngine.Distributed;

/// <summary>Chooses the process group a run trains in, from the user's <c>--distributed</c> mode.</summary>
public static class ProcessGroups
{
    /// <summary>The modes <see cref="Create"/> accepts.</summary>
    public static readonly IReadOnlyList<string> Modes = ["none", "mpi"];

    /// <summary>
    /// True when a process manager started this process as one rank of a job: Open MPI's mpirun sets
    /// OMPI_COMM_WORLD_SIZE; PMIx / Hydra launchers set PMIX_RANK / PMI_SIZE.
    /// </summary>
    public static bool LaunchedByMpirun =>
        Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null
        || Environment.GetEnvironmentVariable("PMIX_RANK") is not null
        || Environment.GetEnvironmentVariable("PMI_SIZE") is not null;

    /// <summary>Ranks of this job on this machine (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE), 1 when unknown.</summary>
    public static int LocalSize =>
        int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_SIZE"), out int n) && n > 0 ? n : 1;

    /// <summary>
    /// <c>none</c>: this process alone. <c>mpi</c>: the MPI world when mpirun started this process (libmpi is loaded
    /// and MPI initialised now), otherwise this process alone as rank 0 of 1 — the same command line works with and
    /// without mpirun, and without Open MPI installed. Anything else is an <see cref="ArgumentException"/>.
    /// </summary>
    public static IProcessGroup Create(string mode, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(mode);
        return mode.ToLowerInvariant() switch
        {
            "none" => SingleProcess.Instance,
            "mpi" => LaunchedByMpirun ? MpiProcessGroup.Initialize(timeout) : SingleProcess.Instance,
            _ => throw new ArgumentException($"--distributed: unknown mode '{mode}' (expected {string.Join("|", Modes)})."),
        };
    }
}
