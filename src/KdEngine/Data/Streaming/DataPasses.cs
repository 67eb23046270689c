using System.Collections.Concurrent;
using System.Globalization;

namespace KdEngine.Data;

/// <summary>How a pass over an <see cref="InputSet"/> runs.</summary>
public sealed record PassOptions
{
    /// <summary>Parsing threads (default: one per core). The reading thread and the consumer (e.g. training) run beside them.</summary>
    public int Workers { get; init; } = Environment.ProcessorCount;

    /// <summary>Bytes of lines per chunk handed to a worker (default 1 MiB).</summary>
    public int ChunkBytes { get; init; } = LineChunkReader.DefaultChunkBytes;

    /// <summary>Chunks read ahead of the consumer at most (bounds memory: chunks + encoded blocks).</summary>
    public int MaxInFlight { get; init; } = 4 * Environment.ProcessorCount + 4;

    /// <summary>Bad-row policy and line-length limit.</summary>
    public ReaderOptions Reader { get; init; } = ReaderOptions.Default;

    /// <summary>Where reading progress goes (null: silent).</summary>
    public TextWriter? Progress { get; init; }

    /// <summary>Redraw one progress line (a terminal) instead of printing plain lines.</summary>
    public bool Interactive { get; init; }

    /// <summary>The progress label (e.g. "fit train.tsv").</summary>
    public string? Label { get; init; }
}

/// <summary>Rows read and bad rows skipped in one file during a pass.</summary>
public sealed record FileReport(string File, long Rows, long Skipped, IReadOnlyList<DataFormatException> FirstErrors);

/// <summary>What a pass read: rows and skipped rows per file, bytes and time.</summary>
public sealed record PassReport(long Rows, long Skipped, long Bytes, TimeSpan Elapsed, IReadOnlyList<FileReport> Files)
{
    /// <summary>One line per file with skipped rows (with its first error), or nothing.</summary>
    public IEnumerable<string> SkipSummary() => Files.Where(f => f.Skipped > 0).Select(f =>
        string.Create(CultureInfo.InvariantCulture, $"skipped {f.Skipped:N0} bad row(s) of {f.Rows + f.Skipped:N0} in {f.File}") +
        (f.FirstErrors.Count > 0 ? $" (first: {f.FirstErrors[0].Message})" : ""));

    /// <summary>Megabytes per second of source read.</summary>
    public double MegabytesPerSecond => Bytes / 1e6 / Math.Max(Elapsed.TotalSeconds, 1e-9);
}

/// <summary>
/// Passes over an <see cref="InputSet"/> on several cores: one thread reads chunks of lines (decompressing gzip), worker
/// threads parse them (and count or encode), the caller receives the results in input order. Memory is bounded by
/// <see cref="PassOptions.MaxInFlight"/> chunks and blocks, never by the input's size. A complete pass in file order
/// teaches the input set its unit row counts and line numbers (for later shuffled passes and error messages).
/// </summary>
public static class DataPasses
{
    /// <summary>Counts the values of every row (the fit's only pass): workers count into their own tables, merged at the end.</summary>
    public static PreprocessorCounts Count(InputSet input, PreprocessorOptions? options, PassOptions? pass, out PassReport report)
    {
        ArgumentNullException.ThrowIfNull(input);
        pass ??= new PassOptions();
        var schema = input.Format.Schema;
        int workers = Math.Max(1, pass.Workers);
        var perWorker = new PreprocessorCounts[workers];
        var states = new ChunkWorker[workers];
        for (int w = 0; w < workers; w++)
        {
            perWorker[w] = new PreprocessorCounts(schema, options);
            states[w] = new ChunkWorker(schema, pass.Reader);
        }
        var sinks = perWorker.Select(c => new CountSink(c)).ToArray();
        var tracker = new PassTracker(input, null, pass, pass.Label ?? $"fit {input.Name}");
        using (var pipeline = new OrderedPipeline<RowChunk, ChunkResult>(Chunks(input, null, pass), (chunk, w) =>
               {
                   var state = states[w];
                   state.StartChunk();
                   try { chunk.Parse(state, sinks[w]); }
                   finally { chunk.Release(); }
                   return new ChunkResult(chunk.File, chunk.Unit, chunk.SourceBytes, state.Rows, state.Skipped, state.Errors.ToArray(), null);
               }, workers, pass.MaxInFlight))
        {
            while (pipeline.TryTake(out var result)) tracker.Add(result);
        }
        report = tracker.Finish();
        var total = perWorker[0];
        for (int w = 1; w < workers; w++) total.Merge(perWorker[w]);
        return total;
    }

    /// <summary>Fits a preprocessor in one pass (<see cref="Count"/> then <see cref="Preprocessor.Fit(PreprocessorCounts)"/>).</summary>
    public static Preprocessor Fit(InputSet input, PreprocessorOptions? options, PassOptions? pass, out PassReport report) =>
        Preprocessor.Fit(Count(input, options, pass, out report));

    /// <summary>
    /// The rows of <paramref name="input"/> encoded with <paramref name="preprocessor"/>, as blocks in
    /// <paramref name="unitOrder"/> (null: file order). A block is valid until the next one is requested. Each block's
    /// <see cref="IRowBlock.FirstRow"/> is its first row's ordinal in file order (known once a pass in file order has
    /// counted the units; a shuffled order before that is an error). <paramref name="done"/> receives the pass report.
    /// </summary>
    public static IEnumerable<IRowBlock> Encode(InputSet input, Preprocessor preprocessor, int[]? unitOrder = null, PassOptions? pass = null,
        Action<PassReport>? done = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(preprocessor);
        if (unitOrder is not null && input.UnitRowStarts() is null)
            throw new InvalidOperationException($"{input.Name}: units can be read out of order only after a pass in file order has counted their rows.");
        return EncodeIterator(input, preprocessor, unitOrder, pass ?? new PassOptions(), done);
    }

    private static IEnumerable<IRowBlock> EncodeIterator(InputSet input, Preprocessor pre, int[]? order, PassOptions pass, Action<PassReport>? done)
    {
        var schema = pre.Schema;
        int workers = Math.Max(1, pass.Workers);
        var pool = new ConcurrentBag<EncodedBlock>();
        var states = new ChunkWorker[workers];
        var sinks = new EncodeSink[workers];
        for (int w = 0; w < workers; w++)
        {
            states[w] = new ChunkWorker(schema, pass.Reader);
            sinks[w] = new EncodeSink(pre, new EncodedRow(pre.FeatureSpace));
        }
        var starts = input.UnitRowStarts();
        var rowsInUnit = new long[input.Units.Count];
        long ordinal = 0;
        var tracker = new PassTracker(input, order, pass, pass.Label ?? $"read {input.Name}");
        EncodedBlock? lent = null;
        using (var pipeline = new OrderedPipeline<RowChunk, ChunkResult>(Chunks(input, order, pass), (chunk, w) =>
               {
                   var state = states[w];
                   state.StartChunk();
                   if (!pool.TryTake(out var block)) block = new EncodedBlock(pre.FeatureSpace, 4096);
                   block.Clear();
                   sinks[w].Block = block;
                   try { chunk.Parse(state, sinks[w]); }
                   finally { chunk.Release(); }
                   return new ChunkResult(chunk.File, chunk.Unit, chunk.SourceBytes, state.Rows, state.Skipped, state.Errors.ToArray(), block);
               }, workers, pass.MaxInFlight))
        {
            while (pipeline.TryTake(out var result))
            {
                if (lent is not null) { pool.Add(lent); lent = null; }
                tracker.Add(result);
                var block = result.Block!;
                if (block.Count == 0) { pool.Add(block); continue; }
                block.FirstRow = starts is not null ? starts[result.Unit] + rowsInUnit[result.Unit] : ordinal;
                rowsInUnit[result.Unit] += block.Count;
                ordinal += block.Count;
                lent = block;
                yield return block;
            }
        }
        var report = tracker.Finish();
        done?.Invoke(report);
    }

    /// <summary>The chunks of the units in order, read on the pipeline's reading thread.</summary>
    private static IEnumerable<RowChunk> Chunks(InputSet input, int[]? order, PassOptions pass)
    {
        int n = input.Units.Count;
        for (int i = 0; i < n; i++)
        {
            int u = order?[i] ?? i;
            var unit = input.Units[u];
            // In file order, the line after one unit is the first line of the next unit of the same file.
            Action<long>? next = order is null && u + 1 < n && input.Units[u + 1].File == unit.File && input.Units[u + 1].Start == unit.End
                                 && !unit.HasRowWindow && !input.Units[u + 1].HasRowWindow
                ? line => input.LearnFirstLine(u + 1, line)
                : null;
            foreach (var chunk in input.Format.ReadUnit(input.Files[unit.File], u, unit, input.FirstLineOf(u), pass.Reader, pass.ChunkBytes, next))
                yield return chunk;
        }
    }

    private sealed record ChunkResult(int File, int Unit, long Bytes, long Rows, long Skipped, DataFormatException[] Errors, EncodedBlock? Block);

    /// <summary>
    /// Counts rows one behind: a row's slots are prefetched when it arrives and counted when the next one has been
    /// parsed, so the loads overlap the parsing (see <see cref="Preprocessor.Prepare"/>).
    /// </summary>
    private sealed class CountSink(PreprocessorCounts counts) : IRowSink
    {
        private readonly ulong[][] _hashes = [new ulong[counts.InputCount], new ulong[counts.InputCount]];
        private readonly byte[][] _present = [new byte[counts.InputCount], new byte[counts.InputCount]];
        private RawRow? _pending;
        private int _slot;

        public void Row(RawRow row)
        {
            counts.Prepare(row, _hashes[_slot], _present[_slot]);
            if (_pending is not null) counts.Finish(_pending, _hashes[_slot ^ 1], _present[_slot ^ 1]);
            _pending = row;
            _slot ^= 1;
        }

        public void Flush()
        {
            if (_pending is not null) counts.Finish(_pending, _hashes[_slot ^ 1], _present[_slot ^ 1]);
            _pending = null;
        }
    }

    /// <summary>Encodes rows one behind, as <see cref="CountSink"/> counts them.</summary>
    private sealed class EncodeSink(Preprocessor pre, EncodedRow encoded) : IRowSink
    {
        private readonly ulong[][] _hashes = [new ulong[pre.InputCount], new ulong[pre.InputCount]];
        private readonly byte[][] _present = [new byte[pre.InputCount], new byte[pre.InputCount]];
        private RawRow? _pending;
        private int _slot;

        public EncodedBlock Block { get; set; } = null!;

        public void Row(RawRow row)
        {
            pre.Prepare(row, _hashes[_slot], _present[_slot]);
            if (_pending is not null) Emit(_slot ^ 1);
            _pending = row;
            _slot ^= 1;
        }

        public void Flush()
        {
            if (_pending is not null) Emit(_slot ^ 1);
            _pending = null;
        }

        private void Emit(int slot)
        {
            pre.Finish(_pending!, _hashes[slot], _present[slot], encoded);
            Block.Add(encoded);
        }
    }

    /// <summary>Per-file and per-unit bookkeeping of a pass, on the consumer thread.</summary>
    private sealed class PassTracker(InputSet input, int[]? order, PassOptions pass, string label)
    {
        private readonly ReadProgress _progress = new(pass.Progress, pass.Interactive, label, input.SourceBytes);
        private readonly long[] _fileRows = new long[input.Files.Count];
        private readonly long[] _fileSkipped = new long[input.Files.Count];
        private readonly List<DataFormatException>[] _fileErrors = input.Files.Select(_ => new List<DataFormatException>()).ToArray();
        private readonly long[] _unitRows = new long[input.Units.Count];

        public void Add(ChunkResult r)
        {
            _fileRows[r.File] += r.Rows;
            _fileSkipped[r.File] += r.Skipped;
            var errors = _fileErrors[r.File];
            foreach (var e in r.Errors) if (errors.Count < pass.Reader.KeepSkippedErrors) errors.Add(e);
            _unitRows[r.Unit] += r.Rows;
            _progress.Add(r.Bytes, r.Rows);
        }

        public PassReport Finish()
        {
            if (order is null) input.LearnRows(_unitRows);
            // A whole file with no data row at all is an error, as for a single reader.
            for (int f = 0; f < input.Files.Count; f++)
            {
                bool whole = input.Units.Where(u => u.File == f).Any(u => u.Start == 0 && !u.HasRowWindow);
                if (whole && _fileRows[f] == 0 && _fileSkipped[f] == 0)
                    throw new DataFormatException("the file has no data rows", Path.GetFileName(input.Files[f]));
            }
            long skipped = _fileSkipped.Sum();
            _progress.Finish(skipped > 0 ? string.Create(CultureInfo.InvariantCulture, $", {skipped:N0} bad rows skipped") : null);
            var files = input.Files.Select((f, i) => new FileReport(Path.GetFileName(f), _fileRows[i], _fileSkipped[i], _fileErrors[i])).ToArray();
            return new PassReport(_fileRows.Sum(), skipped, _progress.Bytes, _progress.Elapsed, files);
        }
    }
}
