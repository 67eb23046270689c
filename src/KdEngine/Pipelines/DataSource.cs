using System.Globalization;
using KdEngine.Data;

namespace KdEngine.Pipelines;

/// <summary>The file formats a <see cref="DataSource"/> reads.</summary>
public enum DataFormat
{
    /// <summary>From the extension: .svm/.libsvm/.libfm → libSVM, .ffm/.libffm → libFFM, otherwise delimited
    /// (Criteo when no schema is given, CSV/TSV with the schema otherwise).</summary>
    Auto,
    /// <summary>Criteo: CSV with the header <c>label,I1..I13,C1..C26</c> or the original headerless TSV.</summary>
    Criteo,
    /// <summary>Any CSV/TSV with a header, described by a schema (columns matched by name).</summary>
    Csv,
    /// <summary>libSVM / libFM (<c>label idx:val …</c>); fields are index ranges (<see cref="DataSource.Ranges"/>).</summary>
    LibSvm,
    /// <summary>libFFM (<c>label field:idx:val …</c>).</summary>
    LibFfm,
    /// <summary>Parquet (columns by schema field name; read by the <c>KdEngine.Data.Parquet</c> assembly, see <see cref="DataSource.RegisterFormat"/>).</summary>
    Parquet,
}

/// <summary>
/// Where and how to read a data file: the path, the format, the schema and (libSVM) the field index ranges.
/// <see cref="Open"/> returns a re-enumerable reader. The reading recipe (format and ranges, not the path) is saved
/// with a model (<see cref="ToMetadata"/>) so evaluation and prediction read new files exactly as training did.
/// </summary>
/// <remarks>
/// Defaults when no schema is given: Criteo → <see cref="Schema.Criteo"/>; libSVM → one categorical field per
/// range (the <c>val</c> of <c>idx:val</c> is ignored: one-hot, since the models take ids only); libFFM → one
/// categorical field per field number seen in the file (<c>f0</c>, <c>f1</c>, … ; one scan of the file).
/// CSV needs a schema.
/// </remarks>
public sealed record DataSource
{
    /// <summary>Checkpoint metadata key of the resolved format (<see cref="ToMetadata"/>).</summary>
    public const string FormatKey = "data.format";
    /// <summary>Checkpoint metadata key of the libSVM ranges (<see cref="FormatRanges"/> text).</summary>
    public const string RangesKey = "data.ranges";

    /// <summary>A source for the file at <paramref name="path"/>: format detected from the extension, the format's default schema.</summary>
    public DataSource(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        Path = path;
        Patterns = [path];
    }

    /// <summary>A source of several files: each pattern a file, a glob (<c>day_*.tsv.gz</c>) or a brace range (<c>day_{0..20}.tsv.gz</c>).</summary>
    public DataSource(IEnumerable<string> patterns)
    {
        ArgumentNullException.ThrowIfNull(patterns);
        Patterns = patterns.ToArray();
        if (Patterns.Count == 0 || Patterns.Any(string.IsNullOrEmpty)) throw new ArgumentException("a data source needs at least one non-empty file pattern.");
        Path = Patterns[0];
    }

    /// <summary>The first pattern (the file, for a single-file source).</summary>
    public string Path { get; init; }

    /// <summary>The file patterns (one entry, <see cref="Path"/>, for a single file).</summary>
    public IReadOnlyList<string> Patterns { get; init; }

    /// <summary>The files' format; <see cref="DataFormat.Auto"/> decides from the first pattern's extension (<c>.svm</c>/<c>.libfm</c> → libSVM, <c>.ffm</c> → libFFM, <c>.parquet</c> → Parquet, else Criteo, or CSV when a schema is given; a <c>.gz</c> suffix ignored).</summary>
    public DataFormat Format { get; init; } = DataFormat.Auto;

    /// <summary>The schema; null uses the format's default (see the remarks).</summary>
    public Schema? Schema { get; init; }

    /// <summary>libSVM only: which index range makes up which field.</summary>
    public IReadOnlyList<IndexRange>? Ranges { get; init; }

    /// <summary>Bad-row policy and line-length limit of the reader; null = <see cref="KdEngine.Data.ReaderOptions.Default"/>.</summary>
    public ReaderOptions? ReaderOptions { get; init; }

    /// <summary>The file name (or the patterns, for several), for messages and cache metadata.</summary>
    public string FileName => Patterns.Count == 1 ? System.IO.Path.GetFileName(Path) : string.Join(" ", Patterns.Select(System.IO.Path.GetFileName));

    /// <summary>The format after resolving <see cref="DataFormat.Auto"/> (from the first pattern's extension, a <c>.gz</c> suffix ignored).</summary>
    public DataFormat ResolvedFormat
    {
        get
        {
            if (Format != DataFormat.Auto) return Format;
            var name = Path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? Path[..^3] : Path;
            var ext = System.IO.Path.GetExtension(name).ToLowerInvariant();
            return ext switch
            {
                ".svm" or ".libsvm" or ".libfm" or ".fm" => DataFormat.LibSvm,
                ".ffm" or ".libffm" => DataFormat.LibFfm,
                ".parquet" or ".pq" => DataFormat.Parquet,
                _ => Schema is null ? DataFormat.Criteo : DataFormat.Csv,
            };
        }
    }

    private static readonly Dictionary<DataFormat, Func<DataSource, IReadOnlyList<string>, RowFileFormat>> External = new();

    /// <summary>
    /// Registers the reader of a format that lives outside the core (Parquet: <c>KdEngine.Data.Parquet.ParquetFormat.Register()</c>,
    /// which the kdengine CLI calls at startup). The factory gets the source and its expanded files.
    /// </summary>
    public static void RegisterFormat(DataFormat format, Func<DataSource, IReadOnlyList<string>, RowFileFormat> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        lock (External) External[format] = factory;
    }

    /// <summary>
    /// The files of this source as an <see cref="InputSet"/> for the streaming pipeline (patterns expanded; plain or gzip
    /// text, or a registered format such as Parquet).
    /// </summary>
    public InputSet OpenInput(long unitBytes = InputSet.DefaultUnitBytes)
    {
        var files = InputFiles.Expand(Patterns);
        return new InputSet(files, FileFormat(files), unitBytes);
    }

    /// <summary>The streaming reader of this source's format (text formats as <see cref="TextFileFormat"/>).</summary>
    public RowFileFormat FileFormat(IReadOnlyList<string> files)
    {
        var format = ResolvedFormat;
        if (format is DataFormat.Criteo or DataFormat.Csv or DataFormat.LibSvm or DataFormat.LibFfm) return new TextFileFormat(TextFormatFor(files[0]));
        Func<DataSource, IReadOnlyList<string>, RowFileFormat>? factory;
        lock (External) External.TryGetValue(format, out factory);
        if (factory is null)
            throw new ArgumentException($"{FileName}: reading {FormatName(format)} needs the KdEngine.Data.Parquet assembly (the kdengine command line includes it; a program registers it with ParquetFormat.Register()).");
        return factory(this, files);
    }

    /// <summary>The span parser of a text format (the schema and header rules of <see cref="Open"/>).</summary>
    public TextFormat TextFormatFor(string firstFile)
    {
        switch (ResolvedFormat)
        {
            case DataFormat.Criteo:
                return new DelimitedFormat(Schema ?? KdEngine.Data.Schema.Criteo(), new DelimitedOptions { DetectHeader = true });
            case DataFormat.Csv:
                if (Schema is null)
                    throw new ArgumentException($"{FileName}: a CSV file needs a schema (--schema FILE) saying which column is the label and what the others are.");
                return new DelimitedFormat(Schema, new DelimitedOptions { HasHeader = true });
            case DataFormat.LibSvm:
            {
                if (Ranges is null || Ranges.Count == 0)
                    throw new ArgumentException($"{FileName}: a libSVM file needs its field index ranges (--ranges, e.g. 'C1=0-1000,C2=1000-1500' or '10x1000').");
                var schema = Schema ?? DefaultSchema(Ranges.Select(r => r.Field));
                return new SparseFormat(new LibSvmOptions(schema, Ranges));
            }
            case DataFormat.LibFfm:
                return new SparseFormat(Schema ?? LibFfmReader.UniformSchema(CountFfmFields(firstFile), scaleByValue: false));
            default:
                throw new ArgumentException($"{FileName}: {FormatName(ResolvedFormat)} is not a text format.");
        }
    }

    /// <summary>Opens the file (checks that it exists and that the format has what it needs).</summary>
    public RecordReader Open()
    {
        if (!File.Exists(Path)) throw new FileNotFoundException($"{FileName}: data file not found ({System.IO.Path.GetFullPath(Path)}).", Path);
        switch (ResolvedFormat)
        {
            case DataFormat.Criteo:
                return Schema is null
                    ? CriteoReader.Open(Path, ReaderOptions)
                    : new DelimitedReader(Path, Schema, new DelimitedOptions { HasHeader = FirstLineIsHeader(Path, Schema) }, ReaderOptions);
            case DataFormat.Csv:
                if (Schema is null)
                    throw new ArgumentException($"{FileName}: a CSV file needs a schema (--schema FILE) saying which column is the label and what the others are.");
                return new DelimitedReader(Path, Schema, new DelimitedOptions { HasHeader = true }, ReaderOptions);
            case DataFormat.LibSvm:
            {
                if (Ranges is null || Ranges.Count == 0)
                    throw new ArgumentException($"{FileName}: a libSVM file needs its field index ranges (--ranges, e.g. 'C1=0-1000,C2=1000-1500' or '10x1000').");
                var schema = Schema ?? DefaultSchema(Ranges.Select(r => r.Field));
                return new LibSvmReader(Path, new LibSvmOptions(schema, Ranges), ReaderOptions);
            }
            case DataFormat.LibFfm:
                return new LibFfmReader(Path, Schema ?? LibFfmReader.UniformSchema(CountFfmFields(Path), scaleByValue: false), ReaderOptions);
            case DataFormat.Parquet:
                throw new ArgumentException($"{FileName}: Parquet files are read by the streaming pipeline (StreamingPipeline), not as records.");
            default:
                throw new ArgumentOutOfRangeException(nameof(Format), Format, "unknown data format");
        }
    }

    /// <summary>label + one categorical field per name.</summary>
    public static Schema DefaultSchema(IEnumerable<string> fieldNames) =>
        new(new[] { FieldSpec.Label() }.Concat(fieldNames.Select(FieldSpec.Categorical)));

    /// <summary>criteo|csv|libsvm|libffm|auto (case-insensitive); libfm is libSVM, tsv is CSV.</summary>
    public static DataFormat ParseFormat(string text) => text.ToLowerInvariant() switch
    {
        "auto" => DataFormat.Auto,
        "criteo" => DataFormat.Criteo,
        "csv" or "tsv" => DataFormat.Csv,
        "libsvm" or "libfm" or "svm" => DataFormat.LibSvm,
        "libffm" or "ffm" => DataFormat.LibFfm,
        "parquet" => DataFormat.Parquet,
        _ => throw new ArgumentException($"unknown data format '{text}' (expected criteo|csv|libsvm|libffm|parquet|auto)."),
    };

    /// <summary>The lower-case name of a format, as <see cref="ParseFormat"/> reads it and checkpoints store it.</summary>
    public static string FormatName(DataFormat format) => format switch
    {
        DataFormat.Criteo => "criteo",
        DataFormat.Csv => "csv",
        DataFormat.LibSvm => "libsvm",
        DataFormat.LibFfm => "libffm",
        DataFormat.Parquet => "parquet",
        _ => "auto",
    };

    /// <summary>
    /// Parses field index ranges: <c>name=start-end,…</c> (half-open [start, end)) or <c>FxN</c> (F fields
    /// <c>f0…</c> of N indices each, from 0).
    /// </summary>
    public static IReadOnlyList<IndexRange> ParseRanges(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        spec = spec.Trim();
        var x = spec.Split('x');
        if (x.Length == 2 && int.TryParse(x[0], NumberStyles.None, CultureInfo.InvariantCulture, out int f)
            && long.TryParse(x[1], NumberStyles.None, CultureInfo.InvariantCulture, out long n))
        {
            if (f < 1 || n < 1) throw new ArgumentException($"ranges '{spec}': need at least 1 field of at least 1 index.");
            return Enumerable.Range(0, f).Select(k => new IndexRange("f" + k, k * n, (k + 1) * n)).ToArray();
        }
        var result = new List<IndexRange>();
        foreach (var part in spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = part.IndexOf('='), dash = part.LastIndexOf('-');
            if (eq <= 0 || dash < eq
                || !long.TryParse(part.AsSpan(eq + 1, dash - eq - 1), NumberStyles.None, CultureInfo.InvariantCulture, out long start)
                || !long.TryParse(part.AsSpan(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out long end))
                throw new ArgumentException($"ranges: '{part}' is not name=start-end (e.g. C1=0-1000) in '{spec}'.");
            result.Add(new IndexRange(part[..eq], start, end));
        }
        if (result.Count == 0) throw new ArgumentException($"ranges '{spec}': no range given.");
        return result;
    }

    /// <summary>The ranges as <see cref="ParseRanges"/> reads them: <c>name=start-end,…</c>.</summary>
    public static string FormatRanges(IEnumerable<IndexRange> ranges) =>
        string.Join(",", ranges.Select(r => string.Create(CultureInfo.InvariantCulture, $"{r.Field}={r.Start}-{r.End}")));

    /// <summary>The reading recipe (format, ranges) as checkpoint metadata.</summary>
    public IReadOnlyDictionary<string, string> ToMetadata()
    {
        var meta = new Dictionary<string, string>(StringComparer.Ordinal) { [FormatKey] = FormatName(ResolvedFormat) };
        if (Ranges is not null) meta[RangesKey] = FormatRanges(Ranges);
        return meta;
    }

    /// <summary>
    /// A source for <paramref name="path"/> read the way a model's training data was (its metadata), with the schema
    /// of its preprocessing. <paramref name="format"/>/<paramref name="ranges"/> (when given) override the saved recipe.
    /// </summary>
    public static DataSource FromMetadata(string path, IReadOnlyDictionary<string, string> metadata, Schema? schema,
        DataFormat format = DataFormat.Auto, IReadOnlyList<IndexRange>? ranges = null) =>
        FromMetadata([path], metadata, schema, format, ranges);

    /// <summary><see cref="FromMetadata(string, IReadOnlyDictionary{string, string}, Schema?, DataFormat, IReadOnlyList{IndexRange}?)"/> for several files or globs.</summary>
    public static DataSource FromMetadata(IReadOnlyList<string> patterns, IReadOnlyDictionary<string, string> metadata, Schema? schema,
        DataFormat format = DataFormat.Auto, IReadOnlyList<IndexRange>? ranges = null)
    {
        if (format == DataFormat.Auto && metadata.TryGetValue(FormatKey, out var f)) format = ParseFormat(f);
        if (ranges is null && metadata.TryGetValue(RangesKey, out var r)) ranges = ParseRanges(r);
        return new DataSource(patterns) { Format = format, Schema = schema, Ranges = ranges };
    }

    private static bool FirstLineIsHeader(string path, Schema schema)
    {
        using var r = new StreamReader(path);
        string? first;
        while ((first = r.ReadLine()) is not null && string.IsNullOrWhiteSpace(first)) { }
        return first is not null && first.TrimStart('\uFEFF').StartsWith(schema[schema.LabelIndex].Name, StringComparison.Ordinal);
    }

    /// <summary>Number of libFFM fields = 1 + the largest field number in the file (a quick scan; bad tokens are left to the reader).</summary>
    private static int CountFfmFields(string path)
    {
        int max = -1;
        foreach (var line in File.ReadLines(path))
            foreach (var tok in line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries).Skip(1))
            {
                int colon = tok.IndexOf(':');
                if (colon > 0 && int.TryParse(tok.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out int field))
                    max = Math.Max(max, field);
            }
        if (max < 0) throw new DataFormatException("no field:idx:val token found; is this a libFFM file?", System.IO.Path.GetFileName(path));
        return max + 1;
    }
}
