using System.Buffers.Text;
using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Text;

namespace KdEngine.Data;

/// <summary>What a <see cref="TextFormat"/> learned from the first line of one file (header, delimiter, column map).</summary>
public class TextLayout
{
    /// <summary>The first non-blank line was a header (consumed), not data.</summary>
    public bool HeaderConsumed { get; init; }
}

/// <summary>
/// A line-oriented text format over UTF-8 bytes: <see cref="Inspect"/> reads a file's first non-blank line (a header, or
/// the first data row), <see cref="CreateParser"/> makes a parser for that file's rows. Parsers are single-threaded and
/// reusable; make one per thread.
/// </summary>
public abstract class TextFormat
{
    /// <summary>A format reading the fields of <paramref name="schema"/>.</summary>
    protected TextFormat(Schema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        Schema = schema;
    }

    /// <summary>The fields read.</summary>
    public Schema Schema { get; }

    /// <summary>Name for messages (csv, libSVM, libFFM).</summary>
    public abstract string Name { get; }

    /// <param name="firstLine">The file's first non-blank line (its UTF-8 bytes, without the line end).</param>
    /// <param name="lineNumber">Its 1-based line number.</param>
    /// <param name="fileName">The file name for messages.</param>
    public abstract TextLayout Inspect(ReadOnlySpan<byte> firstLine, long lineNumber, string fileName);

    /// <summary>A parser for one file of layout <paramref name="layout"/> (one per thread; <paramref name="fileName"/> names the file in errors).</summary>
    public abstract TextRowParser CreateParser(TextLayout layout, string fileName);
}

/// <summary>Parses one non-blank line of one file into a <see cref="RawRow"/>; bad rows throw <see cref="DataFormatException"/>.</summary>
public abstract class TextRowParser
{
    /// <summary>A parser of rows of <paramref name="schema"/> from file <paramref name="fileName"/> (for messages).</summary>
    protected TextRowParser(Schema schema, string fileName)
    {
        Schema = schema;
        FileName = fileName;
        LabelName = schema[schema.LabelIndex].Name;
    }

    /// <summary>The fields parsed.</summary>
    public Schema Schema { get; }

    /// <summary>The file name, for messages.</summary>
    public string FileName { get; }

    /// <summary>The label field's name (for messages).</summary>
    protected string LabelName { get; }

    /// <summary>Parses <paramref name="buffer"/>[start, start + length) (one line) into <paramref name="row"/>.</summary>
    /// <param name="buffer">The bytes holding the line.</param>
    /// <param name="start">The line's first byte in <paramref name="buffer"/>.</param>
    /// <param name="length">The line's length in bytes, without its line end.</param>
    /// <param name="row">The reused row to fill (every field is set: values, missing or numbers).</param>
    /// <param name="line">The line number for messages (0 = unknown: the caller fills it in).</param>
    public abstract void Parse(byte[] buffer, int start, int length, RawRow row, long line);

    /// <summary>A bad-row error naming this file, <paramref name="line"/> (0 = unknown), <paramref name="column"/> (1-based) and field <paramref name="key"/>.</summary>
    protected DataFormatException RowError(long line, int? column, string? key, string problem) =>
        new(problem, FileName, line > 0 ? line : null, column, key);

    /// <summary>A label: 1 → 1; 0 and −1 → 0; anything else is a bad row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    protected float ParseLabel(ReadOnlySpan<byte> text, long line, int column)
    {
        if (text.Length == 1)
        {
            if (text[0] == (byte)'1') return 1f;
            if (text[0] == (byte)'0') return 0f;
        }
        return ParseLabelSlow(text, line, column);
    }

    private float ParseLabelSlow(ReadOnlySpan<byte> text, long line, int column)
    {
        if (text.IsEmpty) throw RowError(line, column, LabelName, "missing label");
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v))
            throw RowError(line, column, LabelName, $"non-numeric label '{Encoding.UTF8.GetString(text)}'");
        if (v == 1) return 1f;
        if (v == 0 || v == -1) return 0f;
        throw RowError(line, column, LabelName, $"label {Encoding.UTF8.GetString(text)} is outside the allowed set {{0, 1}} or {{-1, 1}}");
    }

    /// <summary>A finite number (invariant culture, surrounding whitespace allowed) or a bad row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    protected double ParseNumber(ReadOnlySpan<byte> text, long line, int column, string key)
    {
        if (NumberText.TryParse(text, out double v)) return v;
        throw RowError(line, column, key, $"non-numeric value '{Encoding.UTF8.GetString(text)}' in a numeric field");
    }
}

/// <summary>Number parsing over UTF-8 with a fast path for plain integers and <c>123.0</c>-style values.</summary>
public static class NumberText
{
    /// <summary>
    /// Parses a finite number exactly as <c>double.TryParse(text, NumberStyles.Float, InvariantCulture)</c> does
    /// (infinities and NaN rejected). Plain integers of up to 15 digits, optionally signed and followed by a
    /// decimal point and zeros, skip the general parser (they are exact doubles either way).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryParse(ReadOnlySpan<byte> text, out double value)
    {
        int i = 0, n = text.Length;
        bool negative = false;
        if (n > 0 && text[0] == (byte)'-') { negative = true; i = 1; }
        int digitsStart = i;
        long acc = 0;
        while (i < n && i - digitsStart < 15)
        {
            uint d = (uint)(text[i] - '0');
            if (d > 9) break;
            acc = acc * 10 + d;
            i++;
        }
        if (i > digitsStart)
        {
            int end = i;
            if (end < n && text[end] == (byte)'.')
            {
                end++;
                while (end < n && text[end] == (byte)'0') end++;
            }
            if (end == n && (i == n || i - digitsStart < 15 || text[i] == (byte)'.'))
            {
                value = negative ? -acc : acc;
                if (negative && acc == 0) value = -0.0;
                return true;
            }
        }
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value) && double.IsFinite(value)) return true;
        value = double.NaN;
        return false;
    }
}

/// <summary>
/// CSV/TSV over UTF-8 bytes (see <see cref="DelimitedReader"/> for the rules: minimal RFC 4180 quoting, empty cell =
/// missing, a header matched by name or positional columns). Cells are located with a SIMD scan for the delimiter
/// (64 or 32 bytes per step); a line with a quote takes the general path.
/// </summary>
public sealed class DelimitedFormat : TextFormat
{
    /// <summary>Delimited text with the fields of <paramref name="schema"/>; <paramref name="options"/>: delimiter (null = tab when the first line has one, else comma) and header.</summary>
    public DelimitedFormat(Schema schema, DelimitedOptions? options = null) : base(schema)
    {
        Options = options ?? new DelimitedOptions();
    }

    /// <summary>Delimiter and header options.</summary>
    public DelimitedOptions Options { get; }

    /// <inheritdoc/>
    public override string Name => "csv";

    /// <summary>The layout of one delimited file.</summary>
    public sealed class Layout : TextLayout
    {
        /// <summary>The delimiter byte (ASCII).</summary>
        public required byte Delimiter { get; init; }
        /// <summary>Columns every row must have.</summary>
        public required int ColumnCount { get; init; }
        /// <summary>Schema field → column index.</summary>
        public required int[] ColumnOfField { get; init; }
        /// <summary>Column names (from the header, or the schema's field names), for messages.</summary>
        public required string[] ColumnNames { get; init; }
    }

    /// <inheritdoc/>
    public override TextLayout Inspect(ReadOnlySpan<byte> firstLine, long lineNumber, string fileName)
    {
        char delimiterChar = Options.Delimiter ?? (firstLine.Contains((byte)'\t') ? '\t' : ',');
        if (delimiterChar > 0x7F) throw new ArgumentException($"{fileName}: the delimiter must be an ASCII character, got '{delimiterChar}'.");
        byte delimiter = (byte)delimiterChar;
        var probe = new Parser(this, new Layout { Delimiter = delimiter, ColumnCount = 0, ColumnOfField = [], ColumnNames = [] }, fileName);
        var cells = probe.SplitForHeader(firstLine, lineNumber);
        bool header = Options.HasHeader;
        if (Options.DetectHeader)
            header = Encoding.UTF8.GetString(firstLine).TrimStart('\uFEFF').StartsWith(Schema[Schema.LabelIndex].Name, StringComparison.Ordinal);
        var columnOfField = new int[Schema.Count];
        if (header)
        {
            var names = new string[cells.Count];
            var byName = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int c = 0; c < cells.Count; c++)
            {
                var name = cells[c].Trim();
                names[c] = name;
                if (!byName.TryAdd(name, c))
                    throw new DataFormatException($"duplicate column name '{name}' in the header (also column {byName[name] + 1})", fileName, lineNumber, c + 1, name);
            }
            for (int f = 0; f < Schema.Count; f++)
            {
                if (!byName.TryGetValue(Schema[f].Name, out int c))
                    throw new DataFormatException(
                        $"schema field '{Schema[f].Name}' is not a column of the header ({string.Join(delimiter == '\t' ? "\\t" : ((char)delimiter).ToString(), names)})",
                        fileName, lineNumber, key: Schema[f].Name);
                columnOfField[f] = c;
            }
            return new Layout { HeaderConsumed = true, Delimiter = delimiter, ColumnCount = cells.Count, ColumnOfField = columnOfField, ColumnNames = names };
        }
        for (int f = 0; f < Schema.Count; f++) columnOfField[f] = f;
        return new Layout { HeaderConsumed = false, Delimiter = delimiter, ColumnCount = Schema.Count, ColumnOfField = columnOfField, ColumnNames = Schema.Fields.Select(x => x.Name).ToArray() };
    }

    /// <inheritdoc/>
    public override TextRowParser CreateParser(TextLayout layout, string fileName) => new Parser(this, (Layout)layout, fileName);

    private sealed class Parser : TextRowParser
    {
        private readonly Layout _layout;
        private readonly byte _delimiter;
        private readonly int _columns;
        private readonly int[] _columnOfField;
        private readonly FieldKind[] _kinds;
        private readonly string[] _names;
        private readonly int _labelIndex;
        private int[] _ends;           // cell c is [previous end + 1, _ends[c])
        private int[] _starts;
        private bool[] _quoted;

        public Parser(DelimitedFormat format, Layout layout, string fileName) : base(format.Schema, fileName)
        {
            _layout = layout;
            _delimiter = layout.Delimiter;
            _columns = layout.ColumnCount;
            _columnOfField = layout.ColumnOfField;
            _kinds = Schema.Fields.Select(f => f.Kind).ToArray();
            _names = Schema.Fields.Select(f => f.Name).ToArray();
            _labelIndex = Schema.LabelIndex;
            _ends = new int[Math.Max(_columns, 1) + 1];
            _starts = new int[_ends.Length];
            _quoted = new bool[_ends.Length];
        }

        public override void Parse(byte[] buffer, int start, int length, RawRow row, long line)
        {
            var span = buffer.AsSpan(start, length);
            row.Clear();
            row.SetSource(buffer);
            row.Line = line;
            row.File = FileName;
            int found = span.Contains((byte)'"') ? SplitQuoted(span, start, row, line) : SplitFast(span, start);
            if (found != _columns)
                throw RowError(line, Math.Min(found, _columns) + 1, null, $"expected {_columns} columns, found {found}");
            var kinds = _kinds;
            for (int f = 0; f < kinds.Length; f++)
            {
                int c = _columnOfField[f];
                int s = _starts[c], n = _ends[c] - s;
                if (f == _labelIndex)
                {
                    row.Label = ParseLabel(CellBytes(buffer, row, c), line, c + 1);
                    continue;
                }
                if (n == 0) continue; // missing
                if (_quoted[c]) row.SetScratchSpan(f, ~s, n); else row.SetSpan(f, s, n);
                if (kinds[f] == FieldKind.Numeric)
                    row.Numbers[f] = ParseNumber(row.Value(f), line, c + 1, _names[f]);
            }
        }

        private ReadOnlySpan<byte> CellBytes(byte[] buffer, RawRow row, int c)
        {
            int s = _starts[c], n = _ends[c] - s;
            return _quoted[c] ? row.Scratch(~s, n) : buffer.AsSpan(s, n);
        }

        /// <summary>Cells of a line without quotes: a SIMD scan marks delimiters 64 (or 32) bytes at a time.</summary>
        private int SplitFast(ReadOnlySpan<byte> span, int offset)
        {
            int count = 0, cellStart = 0, max = _ends.Length - 1;
            ref byte first = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(span);
            int i = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                var d = Vector512.Create(_delimiter);
                for (; i + 64 <= span.Length; i += 64)
                {
                    ulong mask = Vector512.Equals(Vector512.LoadUnsafe(ref first, (nuint)i), d).ExtractMostSignificantBits();
                    while (mask != 0)
                    {
                        int p = i + BitOperations.TrailingZeroCount(mask);
                        if (count >= max) return count + 1 + span[(p + 1)..].Count(_delimiter);
                        _starts[count] = offset + cellStart; _ends[count] = offset + p; _quoted[count] = false; count++;
                        cellStart = p + 1;
                        mask &= mask - 1;
                    }
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                var d = Vector256.Create(_delimiter);
                for (; i + 32 <= span.Length; i += 32)
                {
                    uint mask = Vector256.Equals(Vector256.LoadUnsafe(ref first, (nuint)i), d).ExtractMostSignificantBits();
                    while (mask != 0)
                    {
                        int p = i + BitOperations.TrailingZeroCount(mask);
                        if (count >= max) return count + 1 + span[(p + 1)..].Count(_delimiter);
                        _starts[count] = offset + cellStart; _ends[count] = offset + p; _quoted[count] = false; count++;
                        cellStart = p + 1;
                        mask &= mask - 1;
                    }
                }
            }
            for (; i < span.Length; i++)
            {
                if (span[i] != _delimiter) continue;
                if (count >= max) return count + 1 + span[(i + 1)..].Count(_delimiter);
                _starts[count] = offset + cellStart; _ends[count] = offset + i; _quoted[count] = false; count++;
                cellStart = i + 1;
            }
            if (count >= max + 1) return count + 1;
            _starts[count] = offset + cellStart; _ends[count] = offset + span.Length; _quoted[count] = false;
            return count + 1;
        }

        /// <summary>The general path: quoted cells (unescaped into the row's scratch; their starts are stored as ~scratch offset).</summary>
        private int SplitQuoted(ReadOnlySpan<byte> line, int offset, RawRow row, long lineNumber)
        {
            int count = 0, i = 0, max = _ends.Length - 1;
            while (true)
            {
                bool extra = count >= max;
                if (i < line.Length && line[i] == (byte)'"')
                {
                    int startQ = i + 1, j = startQ;
                    while (true)
                    {
                        int k = line[j..].IndexOf((byte)'"');
                        if (k < 0)
                            throw RowError(lineNumber, count + 1, null, "unterminated quoted field (quoted fields spanning lines are not supported)");
                        j += k;
                        if (j + 1 < line.Length && line[j + 1] == (byte)'"') { j += 2; continue; }
                        break;
                    }
                    if (!extra)
                    {
                        // Unescape "" → " into the scratch.
                        var raw = line[startQ..j];
                        int at = row.Reserve(raw.Length);
                        var dst = row.Scratch(at, raw.Length);
                        int w = 0;
                        for (int r = 0; r < raw.Length; r++)
                        {
                            dst[w++] = raw[r];
                            if (raw[r] == (byte)'"') r++; // the second quote of a doubled pair
                        }
                        row.TrimScratch(at, w);
                        _starts[count] = ~at; _ends[count] = ~at + w; _quoted[count] = true;
                    }
                    count++;
                    i = j + 1;
                    if (i == line.Length) return count;
                    if (line[i] != _delimiter)
                        throw RowError(lineNumber, count, null, "a closing quote must be followed by the delimiter or the end of the line");
                    i++;
                }
                else
                {
                    int k = line[i..].IndexOf(_delimiter);
                    int end = k < 0 ? line.Length : i + k;
                    if (!extra) { _starts[count] = offset + i; _ends[count] = offset + end; _quoted[count] = false; }
                    count++;
                    if (k < 0) return count;
                    i = end + 1;
                }
            }
        }

        /// <summary>Cells of a header or first line as strings (quotes handled), any number of them.</summary>
        public List<string> SplitForHeader(ReadOnlySpan<byte> line, long lineNumber)
        {
            var cells = new List<string>();
            int i = 0;
            while (true)
            {
                if (i < line.Length && line[i] == (byte)'"')
                {
                    int startQ = i + 1, j = startQ;
                    while (true)
                    {
                        int k = line[j..].IndexOf((byte)'"');
                        if (k < 0) throw RowError(lineNumber, cells.Count + 1, null, "unterminated quoted field (quoted fields spanning lines are not supported)");
                        j += k;
                        if (j + 1 < line.Length && line[j + 1] == (byte)'"') { j += 2; continue; }
                        break;
                    }
                    cells.Add(Encoding.UTF8.GetString(line[startQ..j]).Replace("\"\"", "\""));
                    i = j + 1;
                    if (i == line.Length) return cells;
                    if (line[i] != _delimiter) throw RowError(lineNumber, cells.Count, null, "a closing quote must be followed by the delimiter or the end of the line");
                    i++;
                }
                else
                {
                    int k = line[i..].IndexOf(_delimiter);
                    int end = k < 0 ? line.Length : i + k;
                    cells.Add(Encoding.UTF8.GetString(line[i..end]));
                    if (k < 0) return cells;
                    i = end + 1;
                }
            }
        }
    }
}

/// <summary>
/// libSVM / libFM (<c>label idx:val …</c>) and libFFM (<c>label field:idx:val …</c>) over UTF-8 bytes; the rules are
/// those of <see cref="SparseReader"/>. Error columns count tokens (label = 1).
/// </summary>
public sealed class SparseFormat : TextFormat
{
    private readonly LibSvmOptions? _ranges;

    /// <summary>libSVM/libFM: fields are index ranges.</summary>
    public SparseFormat(LibSvmOptions ranges) : base((ranges ?? throw new ArgumentNullException(nameof(ranges))).Schema)
    {
        _ranges = ranges;
    }

    /// <summary>libFFM: field number k is the k-th input field of <paramref name="schema"/>.</summary>
    public SparseFormat(Schema schema) : base(schema) { }

    /// <summary>libFFM (field numbers in the tokens) rather than libSVM (fields from index ranges).</summary>
    public bool IsFieldAware => _ranges is null;

    /// <inheritdoc/>
    public override string Name => IsFieldAware ? "libFFM" : "libSVM";

    /// <inheritdoc/>
    public override TextLayout Inspect(ReadOnlySpan<byte> firstLine, long lineNumber, string fileName) => new() { HeaderConsumed = false };

    /// <inheritdoc/>
    public override TextRowParser CreateParser(TextLayout layout, string fileName) => new Parser(this, fileName);

    /// <summary>Schema field of a feature, or −1 with the problem.</summary>
    private int FieldOf(long field, long index, out string problem)
    {
        if (_ranges is not null)
        {
            int f = _ranges.FieldOf(index);
            problem = f < 0 ? $"index {index} is in no field's index range" : "";
            return f;
        }
        if (field >= Schema.InputIndices.Count)
        {
            problem = $"field {field} is out of range (the schema has {Schema.InputIndices.Count} input fields, 0..{Schema.InputIndices.Count - 1})";
            return -1;
        }
        problem = "";
        return Schema.InputIndices[(int)field];
    }

    private sealed class Parser : TextRowParser
    {
        private readonly SparseFormat _format;
        private readonly int _parts;
        private readonly string _name;
        private readonly byte[][] _separators;
        private readonly bool _hasUserId;

        public Parser(SparseFormat format, string fileName) : base(format.Schema, fileName)
        {
            _format = format;
            _parts = format.IsFieldAware ? 3 : 2;
            _name = format.Name;
            _separators = Schema.Fields.Select(f => Encoding.UTF8.GetBytes(f.Separator.ToString())).ToArray();
            _hasUserId = Schema.UserIdIndex >= 0;
        }

        public override void Parse(byte[] buffer, int start, int length, RawRow row, long line)
        {
            var span = buffer.AsSpan(start, length);
            row.Clear();
            row.SetSource(buffer);
            row.Line = line;
            row.File = FileName;
            var scales = row.Scales ??= new float[Schema.Count];
            scales.AsSpan().Fill(float.NaN);
            int i = 0, token = 0;
            while (true)
            {
                while (i < span.Length && (span[i] == (byte)' ' || span[i] == (byte)'\t')) i++;
                if (i >= span.Length) break;
                int end = span[i..].IndexOfAny((byte)' ', (byte)'\t');
                end = end < 0 ? span.Length : i + end;
                token++;
                var tok = span[i..end];
                if (token == 1) row.Label = ParseLabel(tok, line, 1);
                else Feature(tok, start + i, token, row, scales, line);
                i = end;
            }
        }

        private void Feature(ReadOnlySpan<byte> tok, int tokOffset, int col, RawRow row, float[] scales, long line)
        {
            if (_hasUserId && tok.StartsWith("qid:"u8))
            {
                if (tok.Length == 4) throw RowError(line, col, null, $"malformed {_name} token '{Text(tok)}': empty qid");
                row.SetSpan(Schema.UserIdIndex, tokOffset + 4, tok.Length - 4);
                return;
            }
            // Split into 2 (idx:val) or 3 (field:idx:val) parts.
            int c1 = tok.IndexOf((byte)':');
            int c2 = c1 < 0 ? -1 : tok[(c1 + 1)..].IndexOf((byte)':');
            if (c2 >= 0) c2 += c1 + 1;
            int c3 = c2 < 0 ? -1 : tok[(c2 + 1)..].IndexOf((byte)':');
            int parts = c1 < 0 ? 1 : c2 < 0 ? 2 : c3 < 0 ? 3 : 4;
            if (parts != _parts)
                throw RowError(line, col, null, $"malformed {_name} token '{Text(tok)}' (expected {(_parts == 2 ? "idx:val" : "field:idx:val")})");
            long field = 0;
            int idxStart, idxEnd, valStart;
            if (_parts == 3)
            {
                var fieldText = tok[..c1];
                if (!long.TryParse(fieldText, NumberStyles.None, CultureInfo.InvariantCulture, out field))
                    throw RowError(line, col, null, $"malformed {_name} token '{Text(tok)}': field '{Text(fieldText)}' is not a non-negative integer");
                idxStart = c1 + 1; idxEnd = c2; valStart = c2 + 1;
            }
            else { idxStart = 0; idxEnd = c1; valStart = c1 + 1; }
            var idxText = tok[idxStart..idxEnd];
            if (!long.TryParse(idxText, NumberStyles.None, CultureInfo.InvariantCulture, out long index))
                throw RowError(line, col, null, $"malformed {_name} token '{Text(tok)}': index '{Text(idxText)}' is not a non-negative integer");
            var valText = tok[valStart..];
            if (!NumberText.TryParse(valText, out double val))
                throw RowError(line, col, null, $"malformed {_name} token '{Text(tok)}': value '{Text(valText)}' is not a number");
            int f = _format.FieldOf(field, index, out var problem);
            if (f < 0) throw RowError(line, col, null, $"{_name} token '{Text(tok)}': {problem}");
            var spec = Schema[f];
            switch (spec.Kind)
            {
                case FieldKind.Numeric:
                    if (!double.IsNaN(row.Numbers[f])) throw RowError(line, col, spec.Name, $"{_name} token '{Text(tok)}': numeric field '{spec.Name}' already has a value in this row");
                    row.SetSpan(f, tokOffset + valStart, valText.Length);
                    row.Numbers[f] = val;
                    break;
                case FieldKind.Multi:
                    row.AppendToValue(f, _separators[f], idxText);
                    break;
                default:
                    if (row.Has(f))
                        throw RowError(line, col, spec.Name,
                            $"{_name} token '{Text(tok)}': field '{spec.Name}' already has index {Text(row.Value(f))} in this row (declare it multi-valued)");
                    row.SetSpan(f, tokOffset + idxStart, idxText.Length);
                    scales[f] = (float)val;
                    break;
            }
        }

        private static string Text(ReadOnlySpan<byte> bytes) => Encoding.UTF8.GetString(bytes);
    }
}
