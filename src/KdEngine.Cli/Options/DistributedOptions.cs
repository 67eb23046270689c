using System.CommandLine;
using KdEngine.Distributed;
using KdEngine.Distributed.Native;
using KdEngine.Kernels.Cpu;
using KdEngine.Pipelines;
using KdEngine.Sharding;
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

    public Option<EmbeddingSharding> Sharding { get; } = CliOptions.Parsed("--embedding-sharding", "replicated|row",
        "replicated: every rank holds every embedding table and its optimizer state (touched rows allgathered each step). " +
        "row: rank r of N holds rows id ≡ r (mod N) of every table and their optimizer state; each step the batch's ids go to " +
        "their owners and the rows come back (alltoall), row gradients go back to the owners; the dense part stays allreduced",
        text => text.ToLowerInvariant() switch
        {
            "replicated" => EmbeddingSharding.Replicated,
            "row" => EmbeddingSharding.Row,
            _ => throw new CliException($"expects replicated|row, got '{text}'."),
        },
        () => EmbeddingSharding.Replicated);

    public Option<long> MaxTableBytes { get; } = CliOptions.Parsed("--max-table-bytes-per-rank", "BYTES",
        "budget of one rank for embedding-table weights plus their optimizer state (e.g. 12000000, 512M, 16G; K/M/G are powers " +
        "of 1024); a layout that needs more fails before allocating, saying how many ranks would hold it (0 = no limit)",
        ParseBytes, () => 0L);

    public Option<string> InputSplit { get; } = CliOptions.Parsed("--input-split", "rows|bytes",
        "how ranks read the data file: rows (every rank parses the whole file and keeps its rows; rank 0 fits the " +
        "preprocessing) or bytes (each rank parses only its byte range, the preprocessing is fitted from every rank's counts, " +
        "and the encoded rows are exchanged so each rank holds the same shard as with rows)",
        text => text.ToLowerInvariant() is "rows" or "bytes" ? text.ToLowerInvariant() : throw new CliException($"expects rows|bytes, got '{text}'."),
        () => "rows");

    public void AddTo(Command command)
    {
        command.Options.Add(Mode);
        command.Options.Add(Timeout);
        command.Options.Add(Sharding);
        command.Options.Add(MaxTableBytes);
        command.Options.Add(InputSplit);
    }

    /// <summary>This rank's shard of the data, read as <c>--input-split</c> says (the same shard either way).</summary>
    public PreparedData Prepare(ParseResult parse, DataSource source, IProcessGroup group, SplitOptions split,
        KdEngine.Data.PreprocessorOptions? preprocessing = null, KdEngine.Data.Preprocessor? fitted = null) =>
        parse.GetValue(InputSplit) == "bytes"
            ? ByteRangeInput.PrepareShard(source, group, split, preprocessing, fitted)
            : CtrPipeline.PrepareShard(source, group, split, preprocessing, fitted);

    /// <summary><paramref name="settings"/> with the table layout and budget options applied.</summary>
    public TrainingSettings Apply(ParseResult parse, TrainingSettings settings) =>
        settings with { EmbeddingSharding = parse.GetValue(Sharding), MaxTableBytesPerRank = parse.GetValue(MaxTableBytes) };

    /// <summary>Bytes with an optional K, M or G suffix (powers of 1024).</summary>
    internal static long ParseBytes(string text)
    {
        string t = text.Trim();
        long unit = 1;
        if (t.Length > 0 && char.ToUpperInvariant(t[^1]) is 'K' or 'M' or 'G')
        {
            unit = char.ToUpperInvariant(t[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, _ => 1L << 30 };
            t = t[..^1];
        }
        if (!long.TryParse(t, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out long n) || n < 0 || n > long.MaxValue / unit)
            throw new CliException($"expects a byte count ≥ 0 (e.g. 12000000, 512M, 16G), got '{text}'.");
        return n * unit;
    }

    /// <summary>The line that says how this rank holds the embedding tables (rank 0's view; row-sharded ranks differ by at most a row per table).</summary>
    public static string Describe(TablePlacement placement, IProcessGroup group) => placement.Mode == EmbeddingSharding.Row
        ? $"embedding tables: row-sharded over {group.Size} rank{(group.Size == 1 ? "" : "s")}: {TablePlacement.Bytes(placement.TableAndOptimizerBytes)} of weights and optimizer state on rank {group.Rank} " +
          $"(whole: {TablePlacement.Bytes(placement.FullTableAndOptimizerBytes)})" + (placement.MaxTableBytesPerRank > 0 ? $", budget {TablePlacement.Bytes(placement.MaxTableBytesPerRank)}" : "")
        : $"embedding tables: replicated: {TablePlacement.Bytes(placement.TableAndOptimizerBytes)} of weights and optimizer state on every rank" +
          (placement.MaxTableBytesPerRank > 0 ? $", budget {TablePlacement.Bytes(placement.MaxTableBytesPerRank)}" : "");

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
