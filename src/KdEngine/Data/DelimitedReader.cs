namespace KdEngine.Data;

/// <summary>Options of <see cref="DelimitedReader"/>.</summary>
public sealed record DelimitedOptions
{
    /// <summary>Column separator; null = detect from the first line (a tab → TSV, otherwise a comma).</summary>
    public char? Delimiter { get; init; }

    /// <summary>
    /// True: the first line names the columns, schema fields are matched by name, extra columns are ignored
    /// (e.g. Avazu's <c>id</c>). False: columns map to schema fields by position and their count must match.
    /// </summary>
    public bool HasHeader { get; init; } = true;
}

/// <summary>
/// CSV/TSV reader for Criteo (with or without header) and any delimited file described by a <see cref="Schema"/>.
/// <para>Quoting (minimal RFC 4180): a field that starts with <c>"</c> runs to the closing <c>"</c>, may contain the
/// delimiter, and writes a quote as <c>""</c>; the closing quote must be followed by the delimiter or the end of
/// the line. Quoted fields spanning lines are not supported (reported as an unterminated quote). An empty field
/// is a missing value; other whitespace is kept (numbers may have surrounding spaces).</para>
/// </summary>
public sealed class DelimitedReader : RecordReader
{
    private readonly DelimitedOptions _delimited;
    private readonly List<(int Start, int Length, bool Quoted)> _cells = new();
    private char _delimiter;
    private int _columnCount;
    private int[] _columnOfField = [];   // schema field → column index
    private string[] _columnNames = [];  // for messages
    private bool _headerConsumed;

    /// <summary>A reader of the delimited file at <paramref name="path"/> with the fields of <paramref name="schema"/>
    /// (the file is opened on each enumeration, not here).</summary>
    public DelimitedReader(string path, Schema schema, DelimitedOptions? delimited = null, ReaderOptions? options = null)
        : base(path, schema, options)
    {
        _delimited = delimited ?? new DelimitedOptions();
    }

    /// <inheritdoc/>
    protected override bool HasHeaderLine => _headerConsumed;

    /// <inheritdoc/>
    protected override void Begin(LineSource lines)
    {
        _headerConsumed = false;
        if (!lines.Next(out var first)) throw new DataFormatException("the file is empty", FileName);
        _delimiter = _delimited.Delimiter ?? (first.Contains('\t') ? '\t' : ',');
        Split(first, lines.LineNumber);
        _columnCount = _cells.Count;
        _columnOfField = new int[Schema.Count];
        if (_delimited.HasHeader)
        {
            _headerConsumed = true;
            _columnNames = new string[_columnCount];
            var byName = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int c = 0; c < _columnCount; c++)
            {
                var name = Cell(first, c).Trim();
                _columnNames[c] = name;
                if (!byName.TryAdd(name, c))
                    throw new DataFormatException($"duplicate column name '{name}' in the header (also column {byName[name] + 1})",
                        FileName, lines.LineNumber, c + 1, name);
            }
            for (int f = 0; f < Schema.Count; f++)
            {
                if (!byName.TryGetValue(Schema[f].Name, out int c))
                    throw new DataFormatException(
                        $"schema field '{Schema[f].Name}' is not a column of the header ({string.Join(_delimiter == '\t' ? "\\t" : _delimiter.ToString(), _columnNames)})",
                        FileName, lines.LineNumber, key: Schema[f].Name);
                _columnOfField[f] = c;
            }
        }
        else
        {
            // Positional: every row must have one column per schema field; the first line is data.
            _columnCount = Schema.Count;
            lines.PushBack();
            _columnNames = Schema.Fields.Select(f => f.Name).ToArray();
            for (int f = 0; f < Schema.Count; f++) _columnOfField[f] = f;
        }
    }

    /// <inheritdoc/>
    protected override RawRecord ParseRow(string line, long lineNumber)
    {
        Split(line, lineNumber);
        if (_cells.Count != _columnCount)
            throw RowError(lineNumber, Math.Min(_cells.Count, _columnCount) + 1, null,
                $"expected {_columnCount} columns, found {_cells.Count}");
        var r = new RawRecord(Schema) { File = FileName, Line = lineNumber };
        for (int f = 0; f < Schema.Count; f++)
        {
            int c = _columnOfField[f];
            var spec = Schema[f];
            if (f == Schema.LabelIndex)
            {
                r.Label = ParseLabel(CellSpan(line, c), lineNumber, c + 1);
                continue;
            }
            if (_cells[c].Length == 0) continue; // missing
            var text = Cell(line, c);
            r.Values[f] = text;
            if (spec.Kind == FieldKind.Numeric) r.Numbers[f] = ParseNumber(text, lineNumber, c + 1, spec.Name);
        }
        return r;
    }

    private ReadOnlySpan<char> CellSpan(string line, int c)
    {
        var (s, n, q) = _cells[c];
        return q ? Cell(line, c) : line.AsSpan(s, n);
    }

    private string Cell(string line, int c)
    {
        var (s, n, q) = _cells[c];
        var raw = line.Substring(s, n);
        return q ? raw.Replace("\"\"", "\"") : raw;
    }

    /// <summary>Splits a line into cells (start, length, quoted); quoted cells exclude their outer quotes.</summary>
    private void Split(string line, long lineNumber)
    {
        _cells.Clear();
        int i = 0;
        while (true)
        {
            if (i < line.Length && line[i] == '"')
            {
                int start = i + 1, j = start;
                while (true)
                {
                    j = line.IndexOf('"', j);
                    if (j < 0)
                        throw RowError(lineNumber, _cells.Count + 1, null,
                            "unterminated quoted field (quoted fields spanning lines are not supported)");
                    if (j + 1 < line.Length && line[j + 1] == '"') { j += 2; continue; }
                    break;
                }
                _cells.Add((start, j - start, true));
                i = j + 1;
                if (i == line.Length) return;
                if (line[i] != _delimiter)
                    throw RowError(lineNumber, _cells.Count, null, "a closing quote must be followed by the delimiter or the end of the line");
                i++;
            }
            else
            {
                int j = line.IndexOf(_delimiter, i);
                if (j < 0) { _cells.Add((i, line.Length - i, false)); return; }
                _cells.Add((i, j - i, false));
                i = j + 1;
            }
        }
    }
}

/// <summary>Opens Criteo files: the Kaggle CSV with header <c>label,I1..I13,C1..C26</c> or the original headerless TSV.</summary>
public static class CriteoReader
{
    /// <summary>
    /// Opens <paramref name="path"/> with <see cref="Schema.Criteo"/>. A first line starting with <c>label</c> is a
    /// header (matched by name); otherwise the 40 columns are positional. The delimiter is detected (tab or comma).
    /// </summary>
    public static DelimitedReader Open(string path, ReaderOptions? options = null, Bucketing bucketing = Bucketing.LogSquared)
    {
        bool header = false;
        if (File.Exists(path))
        {
            // Sniff the first non-blank characters only (never a whole line: the file may have no line breaks).
            using var r = new StreamReader(path);
            var head = new char[64];
            int n = 0;
            while (n < head.Length && r.Read() is var c and >= 0)
            {
                if (n == 0 && (char.IsWhiteSpace((char)c) || c == '\uFEFF')) continue;
                head[n++] = (char)c;
            }
            header = head.AsSpan(0, n).StartsWith("label", StringComparison.Ordinal);
        }
        return new DelimitedReader(path, Schema.Criteo(bucketing), new DelimitedOptions { HasHeader = header }, options);
    }
}
