namespace KdEngine.Peers;

/// <summary>Run-wide settings the host process decides (BenchmarkDotNet evaluates ParamsSource in the host).</summary>
public static class PeerSettings
{
    /// <summary>Intra-op thread counts to measure (every engine gets the same count).</summary>
    public static int[] Threads { get; set; } = [1, 2];
}
