using System.Globalization;
using System.Text;
using KdEngine.Pipelines;
using Parquet;
using Parquet.Data;
using Parquet.Schema;

namespace KdEngine.Data.Parquet;

/// <summary>
/// Parquet files for the streaming pipeline. Columns are matched to schema fields by name (top-level columns):
/// <list type="bullet">
/// <item>label: int, long, short, byte, bool, float or double holding 0/1 (or −1/1); a null label is a bad row;</item>
/// <item>numeric: int, long, short, byte, float or double (the number, bucketized or dense as the schema says);</item>
/// <item>categorical and user id: string, int, long, short, byte or bool (numbers as invariant decimal text, bools as
/// <c>true</c>/<c>false</c>, so a CSV of the same rows holding the same text encodes identically);</item>
/// <item>multi-valued: a list of strings or integers (each element a value), or a string column split by the field's separator.</item>
/// </list>
/// Null = missing; an empty or null list = missing. A categorical field with <c>scaleByValue</c> takes its scale from an
/// optional float/double column named <c>{field}@value</c>. Every file is checked against the schema before any row is
/// read (<see cref="Check"/>): a missing column or a column type the field cannot take is an error naming the file and
/// the column. Units are row groups; the reading thread decodes a row group's columns, workers turn slices of 8,192
/// rows into <see cref="RawRow"/>s. Errors name the file and the row (1-based over the file) as its "line".
/// </summary>
public sealed class ParquetFormat : RowFileFormat
{
    /// <summary>Rows per chunk handed to a worker.</summary>
    public const int ChunkRows = 8192;

    /// <summary>Parquet files read with the fields of <paramref name="schema"/> (columns by field name).</summary>
    public ParquetFormat(Schema schema) : base(schema) { }

    /// <inheritdoc/>
    public override string Name => "parquet";

    /// <summary>Makes <see cref="DataSource"/> read <c>.parquet</c> files (and <c>--format parquet</c>) with this assembly.</summary>
    public static void Register() => DataSource.RegisterFormat(DataFormat.Parquet, (source, files) => new ParquetFormat(source.Schema ?? InferSchema(files[0])));

    /// <summary>
    /// A schema for a Parquet file given without one: the Criteo layout when the file has its columns (label, I1–I13,
    /// C1–C26); otherwise an error asking for a schema.
    /// </summary>
    public static Schema InferSchema(string path)
    {
        var names = Open(path, r => r.Schema.Fields.Select(f => f.Name).ToHashSet(StringComparer.Ordinal));
        var criteo = Schema.Criteo();
        if (criteo.Fields.All(f => names.Contains(f.Name))) return criteo;
        throw new ArgumentException($"{Path.GetFileName(path)}: a Parquet file needs a schema (--schema FILE) naming its label and input columns " +
            $"(its columns: {string.Join(", ", names.Take(20))}{(names.Count > 20 ? ", …" : "")}).");
    }

    private static T Open<T>(string path, Func<ParquetReader, T> read)
    {
        var reader = OpenReader(path);
        try { return read(reader); }
        finally { reader.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
    }

    internal static ParquetReader OpenReader(string path)
    {
        try { return ParquetReader.CreateAsync(path).GetAwaiter().GetResult(); }
        catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException or ArgumentException or InvalidOperationException)
        {
            throw new DataFormatException($"not a readable Parquet file ({e.Message})", Path.GetFileName(path), inner: e);
        }
    }

    /// <summary>How one schema field is read from a file.</summary>
    internal sealed record Binding(int Field, DataField Column, bool IsList, DataField? ScaleColumn);

    /// <summary>Checks that every schema field has a column of a type it can take; returns the bindings.</summary>
    internal Binding[] Bind(ParquetReader reader, string fileName)
    {
        var bindings = new List<Binding>();
        foreach (var (spec, f) in Schema.Fields.Select((s, i) => (s, i)))
        {
            var top = reader.Schema.Fields.FirstOrDefault(x => x.Name == spec.Name)
                ?? throw new DataFormatException($"schema field '{spec.Name}' has no column in the file (columns: {string.Join(", ", reader.Schema.Fields.Select(x => x.Name))})", fileName, key: spec.Name);
            DataField column;
            bool isList = false;
            if (top is ListField list)
            {
                if (spec.Kind != FieldKind.Multi)
                    throw new DataFormatException($"column '{spec.Name}' is a list, but the schema field is {KindName(spec.Kind)} (only multi-valued fields take lists)", fileName, key: spec.Name);
                column = list.Item as DataField
                    ?? throw new DataFormatException($"column '{spec.Name}' is a list of {list.Item.SchemaType}, expected a list of strings or integers", fileName, key: spec.Name);
                isList = true;
            }
            else if (top is DataField data) column = data;
            else throw new DataFormatException($"column '{spec.Name}' is a {top.SchemaType}, expected a plain column{(spec.Kind == FieldKind.Multi ? " or a list" : "")}", fileName, key: spec.Name);
            if (column.MaxRepetitionLevel > (isList ? 1 : 0))
                throw new DataFormatException($"column '{spec.Name}' is nested (repetition level {column.MaxRepetitionLevel}); expected a flat column or a list", fileName, key: spec.Name);
            var type = column.ClrType;
            bool number = IsInteger(type) || type == typeof(float) || type == typeof(double);
            bool text = type == typeof(ReadOnlyMemory<char>) || type == typeof(string);
            bool ok = spec.Kind switch
            {
                FieldKind.Label => number || type == typeof(bool),
                FieldKind.Numeric => number,
                FieldKind.Categorical or FieldKind.UserId => text || IsInteger(type) || type == typeof(bool),
                FieldKind.Multi => isList ? text || IsInteger(type) : text,
                _ => false,
            };
            if (!ok)
                throw new DataFormatException($"column '{spec.Name}' holds {TypeName(type)}{(isList ? " lists" : "")}, which the {KindName(spec.Kind)} field '{spec.Name}' cannot take " +
                    $"(expected {Expected(spec.Kind)})", fileName, key: spec.Name);
            DataField? scale = null;
            if (spec.ScaleByValue && reader.Schema.Fields.FirstOrDefault(x => x.Name == spec.Name + "@value") is DataField s)
            {
                if (s.ClrType != typeof(double) && s.ClrType != typeof(float))
                    throw new DataFormatException($"column '{s.Name}' holds {TypeName(s.ClrType)}, expected float or double scales", fileName, key: s.Name);
                scale = s;
            }
            bindings.Add(new Binding(f, column, isList, scale));
        }
        return bindings.ToArray();
    }

    private static string KindName(FieldKind k) => k switch
    {
        FieldKind.Label => "label",
        FieldKind.Numeric => "numeric",
        FieldKind.Multi => "multi-valued",
        FieldKind.UserId => "user id",
        _ => "categorical",
    };

    private static string Expected(FieldKind k) => k switch
    {
        FieldKind.Label => "int, long, bool, float or double",
        FieldKind.Numeric => "int, long, float or double",
        FieldKind.Multi => "a list of strings or integers, or a string",
        _ => "string, int, long or bool",
    };

    private static bool IsInteger(Type t) => t == typeof(int) || t == typeof(long) || t == typeof(short) || t == typeof(byte) || t == typeof(sbyte) || t == typeof(ushort) || t == typeof(uint);

    private static string TypeName(Type t) => t == typeof(ReadOnlyMemory<char>) ? "string" : t == typeof(ReadOnlyMemory<byte>) || t == typeof(byte[]) ? "binary" : t.Name.ToLowerInvariant() switch
    {
        "int32" => "int",
        "int64" => "long",
        "single" => "float",
        "boolean" => "bool",
        var n => n,
    };

    /// <inheritdoc/>
    public override void Check(string path) => Open(path, r => Bind(r, Path.GetFileName(path)));

    /// <inheritdoc/>
    public override IReadOnlyList<InputUnit> Units(string path, int fileIndex, long unitBytes) =>
        Open(path, r => Enumerable.Range(0, r.RowGroupCount).Select(g => new InputUnit(fileIndex, g, g + 1)).ToArray());

    /// <inheritdoc/>
    public override long[]? RowsOfUnits(string path, IReadOnlyList<InputUnit> units) =>
        Open(path, r => units.Select(u => Enumerable.Range((int)u.Start, (int)(u.End - u.Start)).Sum(g => r.RowGroups[g].RowCount)).ToArray());

    /// <inheritdoc/>
    public override long UnitBytes(string path, InputUnit unit) =>
        Open(path, r => r.RowGroupCount == 0 ? 0 : new FileInfo(path).Length * (unit.End - unit.Start) / r.RowGroupCount);

    /// <inheritdoc/>
    public override IEnumerable<RowChunk> ReadUnit(string path, int unitIndex, InputUnit unit, long firstLine, ReaderOptions options, int chunkBytes, Action<long>? nextLine)
    {
        string name = Path.GetFileName(path);
        var reader = OpenReader(path);
        try
        {
            foreach (var chunk in ReadGroups(reader, name, unitIndex, unit)) yield return chunk;
        }
        finally { reader.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
    }

    private IEnumerable<RowChunk> ReadGroups(ParquetReader reader, string name, int unitIndex, InputUnit unit)
    {
        var bindings = Bind(reader, name);
        long bytesPerGroup = reader.RowGroupCount == 0 ? 0 : reader.RowGroups.Sum(g => g.RowGroup.TotalCompressedSize ?? 0) / reader.RowGroupCount;
        // Row numbers over the file: the rows of the groups before this unit.
        long firstRow = 0;
        for (int g = 0; g < unit.Start; g++) firstRow += reader.RowGroups[g].RowCount;
        for (int g = (int)unit.Start; g < unit.End; g++)
        {
            using var group = reader.OpenRowGroupReader(g);
            long rows = group.RowCount;
            var columns = bindings.Select(b => ParquetColumn.Read(group, b, Schema, rows, name)).ToArray();
            long kept = 0;
            for (long from = 0; from < rows; from += ChunkRows)
            {
                long to = Math.Min(rows, from + ChunkRows);
                // A row window (a split by rows) keeps only its rows of the unit.
                long a = Math.Max(from, unit.RowFrom - kept), b = Math.Min(to, unit.RowTo - kept);
                if (b > a)
                    yield return new ParquetChunk(this, columns, (int)a, (int)b, firstRow, name)
                    {
                        File = unit.File,
                        Unit = unitIndex,
                        SourceBytes = rows == 0 ? 0 : bytesPerGroup * (to - from) / rows,
                    };
            }
            kept += rows;
            firstRow += rows;
        }
    }

    /// <summary>Rows [From, To) of a decoded row group.</summary>
    private sealed class ParquetChunk(ParquetFormat format, ParquetColumn[] columns, int from, int to, long firstRow, string fileName) : RowChunk
    {
        public override void Parse(ChunkWorker worker, IRowSink sink)
        {
            var schema = format.Schema;
            var row = worker.Row;
            for (int r = from; r < to; r++)
            {
                long rowNumber = firstRow + r + 1;
                try
                {
                    row.Clear();
                    row.File = fileName;
                    row.Line = rowNumber;
                    foreach (var c in columns) c.Fill(row, r, rowNumber);
                }
                catch (DataFormatException e)
                {
                    worker.BadRow(e);
                    continue;
                }
                worker.Rows++;
                sink.Row(row);
                row = worker.Flip();
            }
            sink.Flush();
        }
    }
}

/// <summary>One decoded column of a row group, giving each row's value to a <see cref="RawRow"/>.</summary>
internal sealed class ParquetColumn
{
    private readonly ParquetFormat.Binding _binding;
    private readonly FieldSpec _spec;
    private readonly string _fileName;
    private readonly int _field;
    private readonly bool _label;
    private readonly byte[] _separator;
    // Values as read: doubles for numbers and labels, UTF-8 text (offsets into one byte buffer) for the rest.
    private double[]? _numbers;
    private byte[] _text = [];
    private int[] _textStart = [];     // [value + 1] offsets
    private int[] _rowFirstValue = []; // [row + 1] first value index of each row (lists); rows of flat columns have 0 or 1 value
    private float[]? _scales;

    private ParquetColumn(ParquetFormat.Binding binding, Schema schema, string fileName)
    {
        _binding = binding;
        _field = binding.Field;
        _spec = schema[binding.Field];
        _fileName = fileName;
        _label = binding.Field == schema.LabelIndex;
        _separator = Encoding.UTF8.GetBytes(_spec.Separator.ToString());
    }

    public static ParquetColumn Read(ParquetRowGroupReader group, ParquetFormat.Binding binding, Schema schema, long rows, string fileName)
    {
        var c = new ParquetColumn(binding, schema, fileName);
        c.Load(group, rows);
        return c;
    }

    private void Load(ParquetRowGroupReader group, long rowCount)
    {
        int rows = checked((int)rowCount);
        var column = _binding.Column;
        using var raw = group.ReadRawColumnDataBaseAsync(column).AsTask().GetAwaiter().GetResult();
        int maxDef = column.MaxDefinitionLevel;
        ReadOnlySpan<int> def = maxDef > 0 ? raw.DefinitionLevels : default;
        ReadOnlySpan<int> rep = _binding.IsList ? raw.RepetitionLevels : default;
        int entries = _binding.IsList ? rep.Length : rows;
        if (!_binding.IsList && maxDef > 0 && def.Length != rows)
            throw new DataFormatException($"column '{_spec.Name}' has {def.Length} entries for {rows} rows", _fileName, key: _spec.Name);
        // Which entries hold a value, and the row each entry belongs to.
        _rowFirstValue = new int[rows + 1];
        bool textual = _spec.Kind is not (FieldKind.Label or FieldKind.Numeric);
        var numbers = textual ? null : new double[rows];
        if (numbers is not null) numbers.AsSpan().Fill(double.NaN);
        var text = new List<byte>(rows * 8);
        var starts = new List<int>(rows + 1) { 0 };
        int value = 0, row = -1, values = 0;
        Span<byte> digits = stackalloc byte[32];
        for (int e = 0; e < entries; e++)
        {
            if (!_binding.IsList) row = e;
            else if (rep[e] == 0)
            {
                row++;
                if (row >= rows) throw new DataFormatException($"column '{_spec.Name}' holds more lists than the row group's {rows} rows", _fileName, key: _spec.Name);
                _rowFirstValue[row] = values;
            }
            bool present = maxDef == 0 || def[e] == maxDef;
            if (!present) continue;
            if (numbers is not null) numbers[row] = NumberAt(raw, value++);
            else
            {
                AppendText(raw, value++, text, digits);
                starts.Add(text.Count);
                values++;
            }
        }
        if (_binding.IsList)
        {
            for (int r = row + 1; r <= rows; r++) _rowFirstValue[r] = values;
            // Rows without a list entry at all cannot happen in valid files; a short column would leave them empty (missing).
        }
        else if (textual)
        {
            // Flat columns: row r holds value index = number of values before it (0 or 1 values per row).
            int v = 0;
            for (int r = 0; r < rows; r++)
            {
                _rowFirstValue[r] = v;
                bool present = maxDef == 0 || def[r] == maxDef;
                if (present) v++;
            }
            _rowFirstValue[rows] = v;
        }
        _numbers = numbers;
        _text = text.ToArray();
        _textStart = starts.ToArray();
        if (_binding.ScaleColumn is { } scaleColumn)
        {
            using var s = group.ReadRawColumnDataBaseAsync(scaleColumn).AsTask().GetAwaiter().GetResult();
            int sdef = scaleColumn.MaxDefinitionLevel;
            _scales = new float[rows];
            int sv = 0;
            for (int r = 0; r < rows; r++)
            {
                bool present = sdef == 0 || s.DefinitionLevels[r] == sdef;
                _scales[r] = present ? (float)NumberAt(s, sv++) : float.NaN;
            }
        }
    }

    private static double NumberAt(RawColumnData raw, int i) => raw switch
    {
        RawColumnData<int> x => x.Values[i],
        RawColumnData<long> x => x.Values[i],
        RawColumnData<short> x => x.Values[i],
        RawColumnData<byte> x => x.Values[i],
        RawColumnData<sbyte> x => x.Values[i],
        RawColumnData<ushort> x => x.Values[i],
        RawColumnData<uint> x => x.Values[i],
        RawColumnData<float> x => x.Values[i],
        RawColumnData<double> x => x.Values[i],
        RawColumnData<bool> x => x.Values[i] ? 1 : 0,
        _ => throw new InvalidOperationException($"unexpected Parquet column data {raw.GetType().Name}"),
    };

    private static void AppendText(RawColumnData raw, int i, List<byte> text, Span<byte> digits)
    {
        switch (raw)
        {
            case RawColumnData<ReadOnlyMemory<char>> s:
            {
                var chars = s.Values[i].Span;
                var bytes = new byte[Encoding.UTF8.GetByteCount(chars)];
                Encoding.UTF8.GetBytes(chars, bytes);
                text.AddRange(bytes);
                return;
            }
            case RawColumnData<bool> b:
                text.AddRange(b.Values[i] ? "true"u8 : "false"u8);
                return;
            default:
            {
                long v = (long)NumberAt(raw, i);
                v.TryFormat(digits, out int n, default, CultureInfo.InvariantCulture);
                text.AddRange(digits[..n]);
                return;
            }
        }
    }

    /// <summary>Sets row <paramref name="r"/>'s value of this column on <paramref name="row"/>.</summary>
    public void Fill(RawRow row, int r, long rowNumber)
    {
        if (_numbers is not null)
        {
            double v = _numbers[r];
            if (_label)
            {
                if (double.IsNaN(v)) throw new DataFormatException("missing label", _fileName, rowNumber, null, _spec.Name);
                if (v == 1) row.Label = 1f;
                else if (v == 0 || v == -1) row.Label = 0f;
                else throw new DataFormatException($"label {v.ToString(CultureInfo.InvariantCulture)} is outside the allowed set {{0, 1}} or {{-1, 1}}", _fileName, rowNumber, null, _spec.Name);
                return;
            }
            if (!double.IsNaN(v))
            {
                if (!double.IsFinite(v)) throw new DataFormatException($"non-finite value {v} in a numeric field", _fileName, rowNumber, null, _spec.Name);
                row.Numbers[_field] = v;
            }
            return;
        }
        int first = _rowFirstValue[r], end = _rowFirstValue[r + 1];
        if (end == first) return; // missing
        if (_binding.IsList)
        {
            for (int v = first; v < end; v++)
                row.AppendToValue(_field, _separator, _text.AsSpan(_textStart[v], _textStart[v + 1] - _textStart[v]));
        }
        else row.SetValue(_field, _text.AsSpan(_textStart[first], _textStart[first + 1] - _textStart[first]));
        if (_scales is not null)
        {
            row.Scales ??= NewScales(row.Schema.Count);
            row.Scales[_field] = _scales[r];
        }
    }

    private static float[] NewScales(int n)
    {
        var s = new float[n];
        s.AsSpan().Fill(float.NaN);
        return s;
    }
}
