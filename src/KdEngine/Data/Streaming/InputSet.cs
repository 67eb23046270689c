namespace KdEngine.Data;

/// <summary>
/// One piece of an <see cref="InputSet"/>, the unit of reading and of shuffling files/blocks: a byte range
/// [<see cref="Start"/>, <see cref="End"/>) of a plain text file (lines as <see cref="LineChunkReader"/> cuts them), a
/// whole gzip file, or row groups [Start, End) of a Parquet file. <see cref="RowFrom"/>/<see cref="RowTo"/> optionally
/// keep only the unit's data rows [RowFrom, RowTo) (a row-count split of a file that cannot be cut by bytes).
/// </summary>
public sealed record InputUnit(int File, long Start, long End)
{
    /// <summary>First data row of the unit kept (0 = from its start).</summary>
    public long RowFrom { get; init; }

    /// <summary>Data row of the unit where keeping stops (exclusive; <see cref="long.MaxValue"/> = to its end).</summary>
    public long RowTo { get; init; } = long.MaxValue;

    /// <summary>Whether the unit keeps only some of its rows.</summary>
    public bool HasRowWindow => RowFrom > 0 || RowTo != long.MaxValue;

    /// <summary>Keep only the data rows of one part of a hash split (null: every row); rows are numbered from <see cref="FirstOrdinal"/>.</summary>
    public HashPartFilter? Filter { get; init; }

    /// <summary>The file's data-row ordinal of the unit's first data row (known for the units of a hash split).</summary>
    public long FirstOrdinal { get; init; }
}

/// <summary>
/// Receives the rows of a chunk, in order, on a worker thread. A sink may hold on to the last row it received until
/// the next <see cref="Row"/> or <see cref="Flush"/> (to overlap its table lookups with the next row's parsing): a chunk
/// fills <see cref="ChunkWorker.Row"/>, then moves on with <see cref="ChunkWorker.Flip"/>, and calls
/// <see cref="Flush"/> when its rows are done (before its buffers are released).
/// </summary>
public interface IRowSink
{
    /// <summary>Takes the next row (reused by the caller after the following call).</summary>
    void Row(RawRow row);

    /// <summary>Finishes any row still held.</summary>
    void Flush() { }
}

/// <summary>
/// A run of input rows produced by a <see cref="RowFileFormat"/> on the reading thread and parsed on a worker thread
/// (<see cref="Parse"/>). Text chunks hold raw lines; Parquet chunks hold decoded columns.
/// </summary>
public abstract class RowChunk
{
    /// <summary>Index of the file in the input set.</summary>
    public int File { get; init; }

    /// <summary>Index of the unit in the input set.</summary>
    public int Unit { get; init; }

    /// <summary>Bytes of the source this chunk accounts for (compressed bytes for gzip): progress only.</summary>
    public long SourceBytes { get; init; }

    /// <summary>Parses the rows into <paramref name="worker"/>'s row and gives each to <paramref name="sink"/>, in order; bad rows
    /// follow the worker's <see cref="ReaderOptions.BadRows"/> policy.</summary>
    public abstract void Parse(ChunkWorker worker, IRowSink sink);

    /// <summary>Gives pooled buffers back once parsed.</summary>
    public virtual void Release() { }
}

/// <summary>A worker thread's reusable state: its row, parsers, and the bad-row counts of the chunk it is parsing.</summary>
public sealed class ChunkWorker
{
    private readonly Dictionary<object, object> _cache = new(ReferenceEqualityComparer.Instance);

    private readonly RawRow[] _rows;
    private int _current;

    /// <summary>A worker parsing rows of <paramref name="schema"/> under <paramref name="options"/>.</summary>
    public ChunkWorker(Schema schema, ReaderOptions options)
    {
        Options = options;
        _rows = [new RawRow(schema), new RawRow(schema)];
    }

    /// <summary>Bad-row policy and line-length limit.</summary>
    public ReaderOptions Options { get; }

    /// <summary>The row to parse into next.</summary>
    public RawRow Row => _rows[_current];

    /// <summary>After giving <see cref="Row"/> to a sink: the other of the two rows, to parse the next line into (the sink may still read the first).</summary>
    public RawRow Flip()
    {
        _current ^= 1;
        return _rows[_current];
    }

    /// <summary>Rows of the current chunk skipped as bad.</summary>
    public long Skipped { get; private set; }

    /// <summary>Rows of the current chunk given to the sink (a chunk counts each row it hands over).</summary>
    public long Rows { get; set; }

    /// <summary>The first errors of skipped rows of the current chunk.</summary>
    public List<DataFormatException> Errors { get; } = new();

    /// <summary>Per-worker objects (parsers) keyed by what they are made from.</summary>
    public T Cached<T>(object key, Func<T> create) where T : class
    {
        if (_cache.TryGetValue(key, out var v)) return (T)v;
        var made = create();
        _cache[key] = made;
        return made;
    }

    /// <summary>Counts a bad row under <see cref="BadRowPolicy.Skip"/> or throws it.</summary>
    public void BadRow(DataFormatException e)
    {
        if (Options.BadRows != BadRowPolicy.Skip || e.Line is null) throw e;
        Skipped++;
        if (Errors.Count < Options.KeepSkippedErrors) Errors.Add(e);
    }

    internal void StartChunk()
    {
        Skipped = 0;
        Rows = 0;
        Errors.Clear();
    }
}

/// <summary>
/// A kind of input file as the streaming pipeline reads it: text formats (CSV/TSV, libSVM, libFFM; plain or gzip) in
/// the core, Parquet in <c>KdEngine.Data.Parquet</c>. A format cuts a file into <see cref="InputUnit"/>s, reads a unit
/// as <see cref="RowChunk"/>s on the reading thread, and checks a file before anything is trained on it.
/// </summary>
public abstract class RowFileFormat
{
    /// <summary>A file format reading the fields of <paramref name="schema"/>.</summary>
    protected RowFileFormat(Schema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        Schema = schema;
    }

    /// <summary>The fields read.</summary>
    public Schema Schema { get; }

    /// <summary>Name for messages.</summary>
    public abstract string Name { get; }

    /// <summary>Checks a file before reading it (e.g. column types against the schema); errors name the file and column.</summary>
    public virtual void Check(string path) { }

    /// <summary>The file's units, in order, of about <paramref name="unitBytes"/> bytes where the format can cut.</summary>
    public abstract IReadOnlyList<InputUnit> Units(string path, int fileIndex, long unitBytes);

    /// <summary>Reads one unit as chunks, in order (called on the reading thread).</summary>
    /// <param name="path">The file.</param>
    /// <param name="unitIndex">The unit's index in its input set (for ordering and messages).</param>
    /// <param name="unit">The unit.</param>
    /// <param name="firstLine">Line number of the unit's first line when known (0: unknown; text formats).</param>
    /// <param name="options">Bad-row policy and line-length limit.</param>
    /// <param name="chunkBytes">Bytes per chunk (text formats).</param>
    /// <param name="nextLine">Called with the line number after the unit once it is read (text formats; for the next unit).</param>
    public abstract IEnumerable<RowChunk> ReadUnit(string path, int unitIndex, InputUnit unit, long firstLine, ReaderOptions options,
        int chunkBytes, Action<long>? nextLine);

    /// <summary>Rows of each unit when the file says so without reading the rows (Parquet row groups), else null.</summary>
    public virtual long[]? RowsOfUnits(string path, IReadOnlyList<InputUnit> units) => null;

    /// <summary>Bytes a unit stands for (progress).</summary>
    public virtual long UnitBytes(string path, InputUnit unit) => unit.End == long.MaxValue ? new FileInfo(path).Length - unit.Start : unit.End - unit.Start;
}

/// <summary>
/// The files of one data part (train, validation or test): one or more files or globs (<see cref="InputFiles.Expand"/>),
/// plain or gzip, of one <see cref="RowFileFormat"/>, cut into <see cref="InputUnit"/>s. It learns, as passes read it in
/// order, how many rows each unit has and where its lines start, so later passes can read units in any order and
/// still number rows and lines as the file does.
/// </summary>
public sealed class InputSet
{
    /// <summary>Default unit size for plain files: 64 MiB (a unit is what is shuffled between epochs).</summary>
    public const long DefaultUnitBytes = 64L << 20;

    private readonly long[] _unitRows;
    private readonly long[] _unitFirstLine;

    /// <summary>An input set of <paramref name="files"/> (which must exist) in <paramref name="format"/>, cut into units of about <paramref name="unitBytes"/> bytes, or into <paramref name="units"/> when given.</summary>
    public InputSet(IReadOnlyList<string> files, RowFileFormat format, long unitBytes = DefaultUnitBytes, IReadOnlyList<InputUnit>? units = null)
    {
        ArgumentNullException.ThrowIfNull(files);
        ArgumentNullException.ThrowIfNull(format);
        if (files.Count == 0) throw new ArgumentException("an input set needs at least one file.");
        if (unitBytes < 1) throw new ArgumentOutOfRangeException(nameof(unitBytes), unitBytes, "units must be ≥ 1 byte.");
        Files = files.ToArray();
        Format = format;
        UnitBytes = unitBytes;
        foreach (var f in Files)
            if (!File.Exists(f)) throw new FileNotFoundException($"{Path.GetFileName(f)}: data file not found ({Path.GetFullPath(f)}).", f);
        if (units is null)
        {
            var list = new List<InputUnit>();
            for (int i = 0; i < Files.Count; i++) list.AddRange(format.Units(Files[i], i, unitBytes));
            units = list;
        }
        Units = units.ToArray();
        _unitRows = new long[Units.Count];
        Array.Fill(_unitRows, -1);
        _unitFirstLine = new long[Units.Count];
        for (int u = 0; u < Units.Count; u++) if (Units[u].Start == 0 && !Units[u].HasRowWindow) _unitFirstLine[u] = 1;
    }

    /// <summary>Expands <paramref name="patterns"/> (files, globs, brace ranges) into an input set.</summary>
    public static InputSet Open(IEnumerable<string> patterns, RowFileFormat format, long unitBytes = DefaultUnitBytes) =>
        new(InputFiles.Expand(patterns), format, unitBytes);

    /// <summary>The files, in order.</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>How the files are read.</summary>
    public RowFileFormat Format { get; }

    /// <summary>The unit size plain files are cut at.</summary>
    public long UnitBytes { get; }

    /// <summary>The units, in file order.</summary>
    public IReadOnlyList<InputUnit> Units { get; }

    /// <summary>"day_0.tsv.gz" or "21 files (day_0.tsv.gz … day_20.tsv.gz)".</summary>
    public string Name => Files.Count == 1 ? Path.GetFileName(Files[0])
        : $"{Files.Count} files ({Path.GetFileName(Files[0])} … {Path.GetFileName(Files[^1])})";

    /// <summary>Bytes the units stand for (compressed sizes for gzip).</summary>
    public long SourceBytes => Units.Sum(u => Format.UnitBytes(Files[u.File], u));

    /// <summary>Rows of each unit, when a complete pass has counted them (−1 before).</summary>
    public long RowsOf(int unit) => _unitRows[unit];

    /// <summary>Total rows when every unit has been counted, else null.</summary>
    public long? Rows => _unitRows.All(r => r >= 0) ? _unitRows.Sum() : null;

    /// <summary>
    /// The data rows a sequential split (<see cref="SplitSequential"/>) gave this part, known before any pass reads it;
    /// null for other inputs. It counts data lines, so a row the reader later skips as bad is in it.
    /// </summary>
    public long? SplitRows { get; private set; }

    /// <summary>The first row ordinal of each unit (canonical order), when all are counted.</summary>
    public long[]? UnitRowStarts()
    {
        if (Rows is null) return null;
        var starts = new long[Units.Count + 1];
        for (int u = 0; u < Units.Count; u++) starts[u + 1] = starts[u] + _unitRows[u];
        return starts;
    }

    internal long FirstLineOf(int unit) => _unitFirstLine[unit];

    internal void LearnFirstLine(int unit, long line)
    {
        if (unit >= 0 && unit < _unitFirstLine.Length && line > 0) _unitFirstLine[unit] = line;
    }

    internal void LearnRows(long[] rowsPerUnit)
    {
        for (int u = 0; u < rowsPerUnit.Length; u++) _unitRows[u] = rowsPerUnit[u];
    }

    /// <summary>Checks every file with the format (e.g. Parquet column types) before any training.</summary>
    public void Check()
    {
        foreach (var f in Files) Format.Check(f);
    }

    /// <summary>
    /// Cuts a single-file input into consecutive parts by data-row count (e.g. 8:1:1 → train, validation, test) without
    /// loading it: one fast pass finds the lines (no parsing), the boundaries are ⌊n·cumulative ratio⌋ as in
    /// <see cref="DataSplit.Boundaries(long, IReadOnlyList{double})"/>. Plain files are cut at the byte offsets of the boundary rows (each part
    /// reads only its bytes); a gzip file is read whole by each part, keeping only its rows.
    /// </summary>
    public InputSet[] SplitSequential(IReadOnlyList<double> ratios, ReaderOptions? options = null)
    {
        if (Files.Count != 1) throw new ArgumentException($"a row-count split needs one file; this input has {Files.Count} (give --train/--valid/--test instead).");
        if (Format is not TextFileFormat text)
        {
            // Formats that know their units' rows (Parquet row groups): each part keeps its rows of the units it overlaps.
            var unitRows = Format.RowsOfUnits(Files[0], Units)
                ?? throw new ArgumentException($"{Name}: a sequential split by rows needs row counts; give --train/--valid/--test for {Format.Name} files.");
            long total = unitRows.Sum();
            var cuts = DataSplit.Boundaries(total, ratios);
            var result = new InputSet[ratios.Count];
            for (int k = 0; k < ratios.Count; k++)
            {
                long from = k == 0 ? 0 : cuts[k - 1], to = cuts[k], first = 0;
                var units = new List<InputUnit>();
                for (int u = 0; u < Units.Count; u++)
                {
                    long a = Math.Max(from, first), b = Math.Min(to, first + unitRows[u]);
                    if (b > a) units.Add(Units[u] with { RowFrom = a - first, RowTo = b - first });
                    first += unitRows[u];
                }
                result[k] = new InputSet(Files, Format, UnitBytes, units) { SplitRows = to - from };
            }
            return result;
        }
        options ??= ReaderOptions.Default;
        var file = Files[0];
        var (rows, offsets, lines, gzip) = text.DataRowOffsets(file, options);
        var ends = DataSplit.Boundaries(rows, ratios);
        var parts = new InputSet[ratios.Count];
        for (int k = 0; k < ratios.Count; k++)
        {
            long from = k == 0 ? 0 : ends[k - 1], to = ends[k];
            List<InputUnit> units = new();
            if (gzip)
                units.Add(new InputUnit(0, 0, new FileInfo(file).Length) { RowFrom = from, RowTo = to });
            else if (to > from)
            {
                long start = offsets(from), end = to == rows ? new FileInfo(file).Length : offsets(to);
                for (long s = start; s < end; s += UnitBytes) units.Add(new InputUnit(0, s, Math.Min(end, s + UnitBytes)));
            }
            var part = new InputSet([file], Format, UnitBytes, units) { SplitRows = to - from };
            if (!gzip && units.Count > 0) part._unitFirstLine[0] = lines(from);
            parts[k] = part;
        }
        return parts;
    }

    /// <summary>
    /// Cuts a single-file input into the parts of a <see cref="HashSplit"/> (<see cref="SplitMode.Hash"/>) without loading
    /// it: one fast pass finds the data rows (no parsing) and cuts the file into units at row boundaries, so each unit knows
    /// its first row's ordinal; every part reads every unit and keeps its own rows (a row's part depends only on its
    /// ordinal and the seed). Text files only (plain or gzip).
    /// </summary>
    public InputSet[] SplitHash(IReadOnlyList<double> ratios, int seed, ReaderOptions? options = null)
    {
        if (Files.Count != 1) throw new ArgumentException($"a hash split needs one file; this input has {Files.Count} (give --train/--valid/--test instead).");
        if (Format is not TextFileFormat text) throw new ArgumentException($"{Name}: a hash split reads text files; give --train/--valid/--test for {Format.Name} files.");
        var split = new HashSplit(ratios, seed);
        options ??= ReaderOptions.Default;
        var file = Files[0];
        var (rows, offsets, lines, gzip) = text.DataRowOffsets(file, options);
        long length = new FileInfo(file).Length;
        var cuts = new List<(long Start, long End, long FirstRow, long FirstLine)>();
        if (gzip || rows == 0) cuts.Add((0, length, 0, 1));
        else
        {
            // Units of about UnitBytes, each starting at a data row (the first at row 0, after any header).
            long perUnit = Math.Max(1, (long)(rows * (double)UnitBytes / Math.Max(1, length)));
            for (long r = 0; r < rows; r += perUnit)
            {
                long next = Math.Min(rows, r + perUnit);
                cuts.Add((r == 0 ? 0 : offsets(r), next == rows ? length : offsets(next), r, r == 0 ? 1 : lines(r)));
            }
        }
        var parts = new InputSet[ratios.Count];
        for (int k = 0; k < parts.Length; k++)
        {
            var filter = new HashPartFilter(split, k);
            var units = cuts.Select(c => new InputUnit(0, c.Start, c.End) { Filter = filter, FirstOrdinal = c.FirstRow }).ToArray();
            var part = new InputSet([file], Format, UnitBytes, units);
            for (int u = 0; u < units.Length; u++) part._unitFirstLine[u] = cuts[u].FirstLine;
            parts[k] = part;
        }
        return parts;
    }

    /// <inheritdoc/>
    public override string ToString() => Name;
}
