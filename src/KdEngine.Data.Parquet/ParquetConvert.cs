using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Parquet;
using Parquet.Schema;

namespace KdEngine.Data.Parquet;

/// <summary>
/// Streaming conversion between text inputs and Parquet (the <c>kdengine convert</c> verb). Text → Parquet writes one
/// column per schema field: the label as int32, numeric fields as nullable double, categorical and user-id fields as
/// nullable strings, multi-valued fields as lists of strings (an empty list is one null element), and for categorical
/// fields with <c>scaleByValue</c> (libSVM values) a nullable double column <c>{field}@value</c>. Parquet → CSV writes a
/// header of the schema's field names and one line per row (numbers in shortest round-trip form, values quoted when
/// they hold the delimiter, a quote or a line break). Rows are read once and written in row groups: memory is one row
/// group. Output goes to a temporary file renamed at the end.
/// </summary>
public static class ParquetConvert
{
    /// <summary>Rows per written row group (default).</summary>
    public const int DefaultRowGroupRows = 262_144;

    /// <summary>Converts the rows of a text input set (CSV/TSV/libSVM/libFFM, plain or gzip, any number of files) to one Parquet file.</summary>
    public static long ToParquet(InputSet input, string output, int rowGroupRows = DefaultRowGroupRows, ReaderOptions? options = null, TextWriter? progress = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(output);
        if (input.Format is not TextFileFormat text) throw new ArgumentException($"{input.Name}: convert to Parquet reads text inputs (csv, tsv, libsvm, libffm), not {input.Format.Name}.");
        if (rowGroupRows < 1) throw new ArgumentOutOfRangeException(nameof(rowGroupRows), rowGroupRows, "row groups need at least one row.");
        options ??= ReaderOptions.Default;
        var schema = text.Schema;
        var columns = new List<(int Field, DataField Column, bool Scale)>();
        var fields = new List<Field>();
        for (int f = 0; f < schema.Count; f++)
        {
            var spec = schema[f];
            switch (spec.Kind)
            {
                case FieldKind.Label:
                    var label = new DataField<int>(spec.Name);
                    fields.Add(label);
                    columns.Add((f, label, false));
                    break;
                case FieldKind.Numeric:
                    var number = new DataField<double?>(spec.Name);
                    fields.Add(number);
                    columns.Add((f, number, false));
                    break;
                case FieldKind.Multi:
                    var item = new DataField<string>("element", true);
                    fields.Add(new ListField(spec.Name, item));
                    columns.Add((f, item, false));
                    break;
                default:
                    var str = new DataField<string>(spec.Name, true);
                    fields.Add(str);
                    columns.Add((f, str, false));
                    if (spec.ScaleByValue)
                    {
                        var scale = new DataField<double?>(spec.Name + "@value");
                        fields.Add(scale);
                        columns.Add((f, scale, true));
                    }
                    break;
            }
        }
        var parquetSchema = new ParquetSchema(fields);
        var group = new GroupBuffer(schema, columns);
        string tmp = output + ".tmp-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        var progressReport = new ReadProgress(progress, false, $"convert {input.Name}", input.SourceBytes);
        long total = 0;
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.ReadWrite))
            {
                var writer = ParquetWriter.CreateAsync(parquetSchema, fs).GetAwaiter().GetResult();
                try
                {
                    var row = new RawRow(schema);
                    foreach (var file in input.Files)
                    {
                        using var reader = new TextRowReader(file, text.Text, options);
                        long before = 0;
                        while (reader.Next(row))
                        {
                            group.Add(row);
                            total++;
                            if (group.Rows == rowGroupRows) group.Flush(writer, parquetSchema);
                            if (total % 65536 == 0) { progressReport.Add(reader.BytesRead - before, 65536); before = reader.BytesRead; }
                        }
                        progressReport.Add(reader.BytesRead - before, 0);
                        if (reader.SkippedRows > 0) progress?.WriteLine($"skipped {reader.SkippedRows:N0} bad row(s) in {Path.GetFileName(file)} (first: {reader.SkippedErrors[0].Message})");
                    }
                    if (group.Rows > 0) group.Flush(writer, parquetSchema);
                }
                finally { writer.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
                fs.Flush(true);
            }
            File.Move(tmp, output, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
        progressReport.Finish();
        return total;
    }

    /// <summary>The rows of a row group being built, column by column.</summary>
    private sealed class GroupBuffer(Schema schema, List<(int Field, DataField Column, bool Scale)> columns)
    {
        private readonly List<int> _labels = new();
        private readonly Dictionary<int, List<double?>> _numbers = new();
        private readonly Dictionary<int, List<string?>> _strings = new();
        private readonly Dictionary<int, List<double?>> _scales = new();
        private readonly Dictionary<int, (List<string?> Values, List<int> Repetition)> _lists = new();

        public int Rows { get; private set; }

        public void Add(RawRow row)
        {
            foreach (var (f, _, scale) in columns)
            {
                var spec = schema[f];
                if (scale)
                {
                    Get(_scales, f).Add(row.Scales is { } s && !float.IsNaN(s[f]) ? s[f] : null);
                    continue;
                }
                switch (spec.Kind)
                {
                    case FieldKind.Label:
                        _labels.Add(row.Label == 1 ? 1 : 0);
                        break;
                    case FieldKind.Numeric:
                    {
                        double v = row.Numbers[f];
                        if (double.IsNaN(v) && row.Has(f)) v = double.Parse(Encoding.UTF8.GetString(row.Value(f)), NumberStyles.Float, CultureInfo.InvariantCulture);
                        Get(_numbers, f).Add(double.IsNaN(v) ? null : v);
                        break;
                    }
                    case FieldKind.Multi:
                    {
                        if (!_lists.TryGetValue(f, out var list)) _lists[f] = list = (new List<string?>(), new List<int>());
                        var parts = row.Has(f) ? row.ValueString(f)!.Split(spec.Separator, StringSplitOptions.RemoveEmptyEntries) : [];
                        if (parts.Length == 0) { list.Values.Add(null); list.Repetition.Add(0); }
                        for (int i = 0; i < parts.Length; i++) { list.Values.Add(parts[i]); list.Repetition.Add(i == 0 ? 0 : 1); }
                        break;
                    }
                    default:
                        Get(_strings, f).Add(row.ValueString(f));
                        break;
                }
            }
            Rows++;
        }

        private static List<T> Get<T>(Dictionary<int, List<T>> d, int f)
        {
            if (!d.TryGetValue(f, out var l)) d[f] = l = new List<T>();
            return l;
        }

        public void Flush(ParquetWriter writer, ParquetSchema parquetSchema)
        {
            using (var rg = writer.CreateRowGroup())
            {
                foreach (var (f, column, scale) in columns)
                {
                    if (scale) { rg.WriteAsync(column, new ReadOnlyMemory<double?>(Get(_scales, f).ToArray())).GetAwaiter().GetResult(); continue; }
                    switch (schema[f].Kind)
                    {
                        case FieldKind.Label:
                            rg.WriteAsync(column, new ReadOnlyMemory<int>(_labels.ToArray())).GetAwaiter().GetResult();
                            break;
                        case FieldKind.Numeric:
                            rg.WriteAsync(column, new ReadOnlyMemory<double?>(Get(_numbers, f).ToArray())).GetAwaiter().GetResult();
                            break;
                        case FieldKind.Multi:
                            (List<string?> Values, List<int> Repetition) list = _lists.TryGetValue(f, out var l) ? l : (new List<string?>(), new List<int>());
                            rg.WriteAsync(column, list.Values, new ReadOnlyMemory<int>(list.Repetition.ToArray())).GetAwaiter().GetResult();
                            break;
                        default:
                            rg.WriteAsync(column, Get(_strings, f)).GetAwaiter().GetResult();
                            break;
                    }
                }
                rg.CompleteValidate();
            }
            _labels.Clear();
            foreach (var l in _numbers.Values) l.Clear();
            foreach (var l in _strings.Values) l.Clear();
            foreach (var l in _scales.Values) l.Clear();
            foreach (var l in _lists.Values) { l.Values.Clear(); l.Repetition.Clear(); }
            Rows = 0;
        }
    }

    /// <summary>Converts Parquet files (read with <paramref name="input"/>'s schema) to one CSV/TSV file.</summary>
    public static long ToCsv(InputSet input, string output, char delimiter = ',', TextWriter? progress = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Format is not ParquetFormat format) throw new ArgumentException($"{input.Name}: convert to CSV reads Parquet inputs.");
        input.Check();
        var schema = format.Schema;
        string tmp = output + ".tmp-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        long rows = 0;
        try
        {
            using (var w = new StreamWriter(tmp, false, new UTF8Encoding(false), 1 << 20))
            {
                w.Write(string.Join(delimiter, schema.Fields.Select(f => Quote(f.Name, delimiter))));
                w.Write('\n');
                var sink = new CsvSink(w, schema, delimiter);
                var worker = new ChunkWorker(schema, ReaderOptions.Default);
                for (int u = 0; u < input.Units.Count; u++)
                {
                    var unit = input.Units[u];
                    foreach (var chunk in format.ReadUnit(input.Files[unit.File], u, unit, 0, ReaderOptions.Default, 0, null))
                    {
                        chunk.Parse(worker, sink);
                        chunk.Release();
                    }
                }
                rows = sink.Rows;
            }
            File.Move(tmp, output, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
        progress?.WriteLine($"convert {input.Name}: {rows:N0} rows");
        return rows;
    }

    private sealed class CsvSink(TextWriter w, Schema schema, char delimiter) : IRowSink
    {
        public long Rows { get; private set; }

        public void Row(RawRow row)
        {
            for (int f = 0; f < schema.Count; f++)
            {
                if (f > 0) w.Write(delimiter);
                var spec = schema[f];
                if (f == schema.LabelIndex) { w.Write(row.Label == 1 ? '1' : '0'); continue; }
                if (spec.Kind == FieldKind.Numeric)
                {
                    if (!double.IsNaN(row.Numbers[f])) w.Write(row.Numbers[f].ToString("R", CultureInfo.InvariantCulture));
                    continue;
                }
                if (row.Has(f)) w.Write(Quote(row.ValueString(f)!, delimiter));
            }
            w.Write('\n');
            Rows++;
        }
    }

    private static string Quote(string value, char delimiter) =>
        value.Length > 0 && (value[0] == '"' || value.Contains(delimiter) || value.Contains('\n') || value.Contains('\r'))
            ? "\"" + value.Replace("\"", "\"\"") + "\""
            : value;
}
