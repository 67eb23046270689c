using System.Globalization;
using System.Text;

namespace KdEngine.Data;

/// <summary>What an external teacher's score is.</summary>
public enum TeacherScoreKind
{
    /// <summary>A logit z (probability σ(z)); any finite number.</summary>
    Logit,
    /// <summary>
    /// A probability p in [0, 1], turned into the logit ln(p / (1 − p)) in double precision after clamping p to
    /// [1e−7, 1 − 1e−7] (so 0 and 1 become logits of ∓16.1 instead of infinities).
    /// </summary>
    Probability,
}

/// <summary>Where an external teacher's scores are read from.</summary>
public enum TeacherScoreOrigin
{
    /// <summary>A column of the training file itself (EasyRec's soft-label column).</summary>
    Column,
    /// <summary>A side file with one data row per row of the training file, in the same order.</summary>
    FileByRow,
    /// <summary>A side file keyed by an id column that the training file has too.</summary>
    FileByKey,
}

/// <summary>
/// One external teacher's scores (a GBDT's, a model from another framework, any scorer): a column of the training file
/// (<see cref="FromColumn"/>), a side file aligned by row (<see cref="FromFile"/>) or keyed by an id column
/// (<see cref="FromKeyedFile"/>). Read with <see cref="TeacherScores"/>, which validates count, alignment and
/// finiteness and names the file and row of the first problem.
/// </summary>
/// <remarks>
/// Side files are delimited text (comma or tab, detected from the first line; minimal RFC 4180 quoting) with a header
/// naming the columns — or, for <see cref="FromFile"/>, one number per line with no header. The score column is
/// <see cref="ScoreColumn"/>, or by default the only column that is not <c>row</c>, the data's label column or the key.
/// A row-aligned file may carry <c>row</c> (the 0-based data row) and the data's label column: both are checked on
/// every row, which catches a shifted, shuffled or foreign file.
/// </remarks>
public sealed record TeacherScoreSource
{
    /// <summary>Default bound on the keys a keyed side file may hold in memory (each costs about 50 bytes plus two per key character).</summary>
    public const int DefaultMaxKeys = 20_000_000;

    private TeacherScoreSource(TeacherScoreOrigin origin, TeacherScoreKind kind)
    {
        if (!Enum.IsDefined(kind)) throw new ArgumentException($"teacher scores: unknown kind {(int)kind}.");
        Origin = origin;
        Kind = kind;
    }

    /// <summary>Where the scores are: a column of the data file, a side file aligned by row, or a side file keyed by an id.</summary>
    public TeacherScoreOrigin Origin { get; }

    /// <summary>What the scores are: logits, or probabilities (turned into logits when read).</summary>
    public TeacherScoreKind Kind { get; }

    /// <summary>The side file (null for <see cref="TeacherScoreOrigin.Column"/>).</summary>
    public string? File { get; private init; }

    /// <summary>The score column: in the training file (<see cref="TeacherScoreOrigin.Column"/>) or in the side file (null: the only candidate).</summary>
    public string? ScoreColumn { get; private init; }

    /// <summary>Keyed files: the id column, present in both the training file and the side file.</summary>
    public string? KeyColumn { get; private init; }

    /// <summary>Keyed files: the most keys held in memory; a larger file is refused (align it by row instead).</summary>
    public int MaxKeys { get; private init; } = DefaultMaxKeys;

    /// <summary>The scores are column <paramref name="column"/> of the training file (which needs a header).</summary>
    public static TeacherScoreSource FromColumn(string column, TeacherScoreKind kind = TeacherScoreKind.Logit)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(column);
        return new(TeacherScoreOrigin.Column, kind) { ScoreColumn = column };
    }

    /// <summary>The scores are a side file with one data row per row of the training file, in the same order.</summary>
    public static TeacherScoreSource FromFile(string path, string? scoreColumn = null, TeacherScoreKind kind = TeacherScoreKind.Logit)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        return new(TeacherScoreOrigin.FileByRow, kind) { File = path, ScoreColumn = scoreColumn };
    }

    /// <summary>The scores are a side file keyed by <paramref name="keyColumn"/>, a column of both files.</summary>
    public static TeacherScoreSource FromKeyedFile(string path, string keyColumn, string? scoreColumn = null,
        TeacherScoreKind kind = TeacherScoreKind.Logit, int maxKeys = DefaultMaxKeys)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentException.ThrowIfNullOrWhiteSpace(keyColumn);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxKeys, 1);
        return new(TeacherScoreOrigin.FileByKey, kind) { File = path, KeyColumn = keyColumn, ScoreColumn = scoreColumn, MaxKeys = maxKeys };
    }

    /// <summary>A short description for logs and messages.</summary>
    public override string ToString()
    {
        string kind = Kind == TeacherScoreKind.Logit ? "logits" : "probabilities";
        return Origin switch
        {
            TeacherScoreOrigin.Column => $"{kind} in column '{ScoreColumn}' of the data",
            TeacherScoreOrigin.FileByRow => $"{kind} in {Path.GetFileName(File)} (by row{(ScoreColumn is null ? "" : $", column '{ScoreColumn}'")})",
            _ => $"{kind} in {Path.GetFileName(File)} (by key '{KeyColumn}'{(ScoreColumn is null ? "" : $", column '{ScoreColumn}'")})",
        };
    }
}

/// <summary>
/// Reads external teacher scores alongside the records of a data file and turns them into logits, one per record and
/// source, validated: a missing or extra row, a row that does not match (its <c>row</c> or label column), a key the
/// side file lacks, or a value that is not a finite number (or, for probabilities, outside [0, 1]) is a
/// <see cref="DataFormatException"/> naming the file, the line and the data row.
/// </summary>
/// <remarks>
/// Streaming: <see cref="Open"/> returns a reader that takes the records one at a time in file order and keeps only a
/// line of each file (a keyed side file is held as a dictionary bounded by <see cref="TeacherScoreSource.MaxKeys"/>).
/// A column of the training file and a keyed file are matched to each record by its line number, so rows the data
/// reader skipped (<see cref="BadRowPolicy.Skip"/>) are skipped here too; a row-aligned side file is matched by
/// position and so refuses data from which rows were skipped.
/// </remarks>
public static class TeacherScores
{
    /// <summary>The column a row-aligned side file may carry to state which data row (0-based) each line is for.</summary>
    public const string RowColumn = "row";

    /// <summary>
    /// Every record's logits from every source: [records, sources] row-major (record i's scores together), in the order
    /// <paramref name="records"/> lists them (the data reader's order). <paramref name="skippedRows"/>: rows the data
    /// reader skipped as malformed (a row-aligned side file cannot be matched then).
    /// </summary>
    public static float[] Read(IReadOnlyList<TeacherScoreSource> sources, string dataPath, Schema dataSchema,
        IEnumerable<RawRecord> records, long skippedRows = 0)
    {
        ArgumentNullException.ThrowIfNull(sources);
        ArgumentNullException.ThrowIfNull(records);
        if (sources.Count == 0) throw new ArgumentException("teacher scores: no source given.", nameof(sources));
        using var reader = Open(sources, dataPath, dataSchema);
        reader.CheckSkipped(skippedRows); // before any row: a row-aligned file cannot be paired with data that lost rows
        var result = new List<float>();
        Span<float> row = sources.Count <= 64 ? stackalloc float[sources.Count] : new float[sources.Count];
        foreach (var record in records)
        {
            reader.Next(record, row);
            foreach (var v in row) result.Add(v);
        }
        reader.Finish(skippedRows);
        return result.ToArray();
    }

    /// <summary>
    /// As <see cref="Read(IReadOnlyList{TeacherScoreSource}, string, Schema, IEnumerable{RawRecord}, long)"/>, reading the
    /// records with <paramref name="reader"/> (one more pass over the data file, alongside the score files).
    /// </summary>
    public static float[] Read(IReadOnlyList<TeacherScoreSource> sources, RecordReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        if (sources.Count == 0) throw new ArgumentException("teacher scores: no source given.", nameof(sources));
        using var scores = Open(sources, reader.FilePath, reader.Schema);
        var result = new List<float>();
        var row = new float[sources.Count];
        foreach (var record in reader)
        {
            scores.Next(record, row);
            result.AddRange(row);
        }
        scores.Finish(reader.SkippedRows); // known once the pass is over
        return result.ToArray();
    }

    /// <summary>A reader that scores records one at a time (see the class remarks); dispose it to close the files.</summary>
    public static TeacherScoreReader Open(IReadOnlyList<TeacherScoreSource> sources, string dataPath, Schema dataSchema)
    {
        ArgumentNullException.ThrowIfNull(sources);
        ArgumentNullException.ThrowIfNull(dataSchema);
        ArgumentException.ThrowIfNullOrEmpty(dataPath);
        return new TeacherScoreReader(sources, dataPath, dataSchema);
    }

    /// <summary>A score's text as a logit (see <see cref="TeacherScoreKind"/>); null when it is not acceptable (then <paramref name="problem"/> says why).</summary>
    internal static float? ToLogit(ReadOnlySpan<char> text, TeacherScoreKind kind, out string? problem)
    {
        problem = null;
        if (text.Trim().IsEmpty) { problem = "the teacher score is missing"; return null; }
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v))
        {
            problem = $"the teacher score '{text}' is not a number";
            return null;
        }
        if (!double.IsFinite(v)) { problem = $"the teacher score is {text.Trim()}, not a finite number"; return null; }
        if (kind == TeacherScoreKind.Logit)
        {
            if (Math.Abs(v) > float.MaxValue) { problem = $"the teacher logit {text.Trim()} is beyond float range"; return null; }
            return (float)v;
        }
        if (v is < 0 or > 1) { problem = $"the teacher probability {text.Trim()} is outside [0, 1]"; return null; }
        const double eps = 1e-7;
        double p = Math.Clamp(v, eps, 1 - eps);
        return (float)(Math.Log(p) - Math.Log(1 - p));
    }
}

/// <summary>Scores records one at a time from every source (see <see cref="TeacherScores.Open"/>).</summary>
public sealed class TeacherScoreReader : IDisposable
{
    private readonly ScoreCursor[] _cursors;
    private readonly bool _byRow;
    private long _ordinal;

    internal TeacherScoreReader(IReadOnlyList<TeacherScoreSource> sources, string dataPath, Schema dataSchema)
    {
        _cursors = new ScoreCursor[sources.Count];
        try
        {
            for (int i = 0; i < sources.Count; i++)
            {
                var s = sources[i] ?? throw new ArgumentException($"teacher scores: source {i} is null.");
                _cursors[i] = s.Origin switch
                {
                    TeacherScoreOrigin.Column => new ColumnCursor(dataPath, s),
                    TeacherScoreOrigin.FileByRow => new RowCursor(s, dataSchema),
                    _ => new KeyCursor(dataPath, s),
                };
                _byRow |= s.Origin == TeacherScoreOrigin.FileByRow;
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Sources read.</summary>
    public int Count => _cursors.Length;

    /// <summary>Writes the next record's logits (one per source) into <paramref name="logits"/>.</summary>
    public void Next(RawRecord record, Span<float> logits)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (logits.Length != _cursors.Length) throw new ArgumentException($"teacher scores: {logits.Length} slots for {_cursors.Length} sources.");
        for (int i = 0; i < _cursors.Length; i++) logits[i] = _cursors[i].Next(record, _ordinal);
        _ordinal++;
    }

    /// <summary>
    /// Checks that nothing is left over (a row-aligned side file with more rows than the data is refused) and that a
    /// row-aligned file was not paired with data from which <paramref name="skippedRows"/> rows were dropped.
    /// </summary>
    public void Finish(long skippedRows = 0)
    {
        CheckSkipped(skippedRows);
        foreach (var c in _cursors) c.Finish(_ordinal);
    }

    internal void CheckSkipped(long skippedRows)
    {
        if (_byRow && skippedRows > 0)
        {
            var file = _cursors.OfType<RowCursor>().First().FileName;
            throw new DataFormatException($"the data reader skipped {skippedRows} malformed row(s), so a side file aligned by row cannot be matched to the rows that remain; fix the data or key the scores by an id column", file);
        }
    }

    /// <summary>Closes the side files.</summary>
    public void Dispose()
    {
        foreach (var c in _cursors) c?.Dispose();
    }
}

/// <summary>One source's position alongside the data.</summary>
internal abstract class ScoreCursor : IDisposable
{
    public abstract float Next(RawRecord record, long ordinal);

    public virtual void Finish(long rows) { }

    public abstract void Dispose();

    /// <summary>The data line of a record (1-based); records built in code have none and cannot be matched by line.</summary>
    protected static long LineOf(RawRecord record, string what)
    {
        if (record.Line <= 0)
            throw new ArgumentException($"teacher scores ({what}): the record has no line number; read the data with a KdEngine reader so that scores can be matched to rows.");
        return record.Line;
    }

    /// <summary>The index of the score column in <paramref name="table"/>'s header: the named one, or the only column not excluded.</summary>
    protected static int ScoreIndex(DelimitedTable table, string? named, IEnumerable<string?> excluded)
    {
        if (named is not null)
            return table.IndexOf(named) is int i and >= 0 ? i
                : throw new DataFormatException($"no column '{named}' in the header ({table.HeaderText})", table.FileName, table.HeaderLine, key: named);
        var skip = excluded.Where(e => e is not null).ToHashSet(StringComparer.Ordinal);
        var candidates = Enumerable.Range(0, table.Header.Count).Where(c => !skip.Contains(table.Header[c])).ToArray();
        if (candidates.Length == 1) return candidates[0];
        throw new DataFormatException(candidates.Length == 0
            ? $"no score column in the header ({table.HeaderText})"
            : $"several columns could be the score ({string.Join(", ", candidates.Select(c => table.Header[c]))}); name one", table.FileName, table.HeaderLine);
    }
}

/// <summary>A column of the training file, matched to each record by line number.</summary>
internal sealed class ColumnCursor : ScoreCursor
{
    private readonly DelimitedTable _data;
    private readonly int _column;
    private readonly TeacherScoreSource _source;

    public ColumnCursor(string dataPath, TeacherScoreSource source)
    {
        _source = source;
        _data = DelimitedTable.Open(dataPath, headerless: false);
        try
        {
            _column = _data.IndexOf(source.ScoreColumn!);
            if (_column < 0)
                throw new DataFormatException($"the teacher-score column '{source.ScoreColumn}' is not a column of the header ({_data.HeaderText}); the data file needs a header naming it",
                    _data.FileName, _data.HeaderLine, key: source.ScoreColumn);
        }
        catch
        {
            _data.Dispose();
            throw;
        }
    }

    public override float Next(RawRecord record, long ordinal)
    {
        _data.SeekLine(LineOf(record, "column"));
        var logit = TeacherScores.ToLogit(_data.Cell(_column), _source.Kind, out var problem);
        return logit ?? throw new DataFormatException($"{problem} (data row {ordinal})", _data.FileName, _data.LineNumber, _column + 1, _source.ScoreColumn);
    }

    public override void Dispose() => _data.Dispose();
}

/// <summary>A side file with one data row per record, in the same order; its <c>row</c> and label columns, when present, are checked.</summary>
internal sealed class RowCursor : ScoreCursor
{
    private readonly DelimitedTable _side;
    private readonly TeacherScoreSource _source;
    private readonly int _score, _row, _label;
    private readonly string _labelName;

    public RowCursor(TeacherScoreSource source, Schema dataSchema)
    {
        _source = source;
        _labelName = dataSchema[dataSchema.LabelIndex].Name;
        _side = DelimitedTable.Open(source.File!, headerless: null);
        try
        {
            if (_side.Headerless)
            {
                if (source.ScoreColumn is not null)
                    throw new DataFormatException($"the file has no header, so it has no column '{source.ScoreColumn}'", _side.FileName, _side.HeaderLine);
                _score = 0; _row = -1; _label = -1;
            }
            else
            {
                _row = _side.IndexOf(TeacherScores.RowColumn);
                _label = _side.IndexOf(_labelName);
                _score = ScoreIndex(_side, source.ScoreColumn, [TeacherScores.RowColumn, _labelName]);
            }
        }
        catch
        {
            _side.Dispose();
            throw;
        }
    }

    public string FileName => _side.FileName;

    public override float Next(RawRecord record, long ordinal)
    {
        if (!_side.NextRow())
            throw new DataFormatException($"the teacher-score file has {ordinal} data row(s), but the data has more: no score for data row {ordinal}" +
                (record.Line > 0 ? $" ({record.File ?? "data"} line {record.Line})" : ""), _side.FileName, _side.LineNumber + 1);
        if (_row >= 0)
        {
            var text = _side.Cell(_row);
            if (!long.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long stated) || stated != ordinal)
                throw new DataFormatException($"misaligned: this line is for data row '{text}', but it is the file's data row {ordinal}" +
                    (record.Line > 0 ? $" ({record.File ?? "data"} line {record.Line})" : ""), _side.FileName, _side.LineNumber, _row + 1, TeacherScores.RowColumn);
        }
        if (_label >= 0)
        {
            var text = _side.Cell(_label).Trim();
            bool ok = double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && (v == 1 ? 1f : v is 0 or -1 ? 0f : -1f) == record.Label;
            if (!ok)
                throw new DataFormatException($"misaligned: label '{text}' differs from data row {ordinal}'s label {record.Label}" +
                    (record.Line > 0 ? $" ({record.File ?? "data"} line {record.Line})" : ""), _side.FileName, _side.LineNumber, _label + 1, _labelName);
        }
        var logit = TeacherScores.ToLogit(_side.Cell(_score), _source.Kind, out var problem);
        return logit ?? throw new DataFormatException($"{problem} (data row {ordinal})", _side.FileName, _side.LineNumber, _score + 1,
            _side.Headerless ? null : _side.Header[_score]);
    }

    public override void Finish(long rows)
    {
        if (_side.NextRow())
            throw new DataFormatException($"the teacher-score file has more data rows than the data ({rows}): this line has no data row", _side.FileName, _side.LineNumber);
    }

    public override void Dispose() => _side.Dispose();
}

/// <summary>A side file keyed by an id column: loaded into a bounded dictionary, then looked up by each record's key (read from the data file by line).</summary>
internal sealed class KeyCursor : ScoreCursor
{
    private readonly Dictionary<string, float> _scores = new(StringComparer.Ordinal);
    private readonly DelimitedTable _data;
    private readonly int _dataKey;
    private readonly string _sideName;
    private readonly string _key;

    public KeyCursor(string dataPath, TeacherScoreSource source)
    {
        _key = source.KeyColumn!;
        using (var side = DelimitedTable.Open(source.File!, headerless: false))
        {
            _sideName = side.FileName;
            int key = side.IndexOf(_key);
            if (key < 0) throw new DataFormatException($"the key column '{_key}' is not a column of the header ({side.HeaderText})", side.FileName, side.HeaderLine, key: _key);
            int score = ScoreIndex(side, source.ScoreColumn, [_key, TeacherScores.RowColumn]);
            while (side.NextRow())
            {
                var k = side.Cell(key).ToString();
                if (k.Length == 0) throw new DataFormatException("empty key", side.FileName, side.LineNumber, key + 1, _key);
                var logit = TeacherScores.ToLogit(side.Cell(score), source.Kind, out var problem)
                    ?? throw new DataFormatException($"{problem} (key '{k}')", side.FileName, side.LineNumber, score + 1, side.Header[score]);
                if (!_scores.TryAdd(k, logit))
                    throw new DataFormatException($"duplicate key '{k}' (it appeared on an earlier line)", side.FileName, side.LineNumber, key + 1, _key);
                if (_scores.Count > source.MaxKeys)
                    throw new DataFormatException($"more than {source.MaxKeys:N0} keys: a keyed teacher-score file is held in memory and this one exceeds the bound (raise TeacherScoreSource.MaxKeys, or write the scores aligned by row, which streams)", side.FileName, side.LineNumber);
            }
            if (_scores.Count == 0) throw new DataFormatException("the teacher-score file has a header but no data rows", side.FileName);
        }
        _data = DelimitedTable.Open(dataPath, headerless: false);
        _dataKey = _data.IndexOf(_key);
        if (_dataKey < 0)
        {
            _data.Dispose();
            throw new DataFormatException($"the key column '{_key}' is not a column of the data's header ({_data.HeaderText})", _data.FileName, _data.HeaderLine, key: _key);
        }
    }

    public override float Next(RawRecord record, long ordinal)
    {
        _data.SeekLine(LineOf(record, "keyed file"));
        var key = _data.Cell(_dataKey).ToString();
        return _scores.TryGetValue(key, out float logit) ? logit
            : throw new DataFormatException($"no teacher score for key '{key}' (data row {ordinal}) in {_sideName}", _data.FileName, _data.LineNumber, _dataKey + 1, _key);
    }

    public override void Dispose() => _data.Dispose();
}

/// <summary>
/// A minimal delimited-text reader for teacher-score files and extra columns of a data file: a header line (or none),
/// comma or tab (detected from the first line), RFC 4180 quotes within a line, blank lines skipped, line numbers
/// 1-based and counting every line (as the data readers count them), lines bounded by
/// <see cref="ReaderOptions.DefaultMaxLineLength"/>.
/// </summary>
internal sealed class DelimitedTable : IDisposable
{
    private readonly StreamReader _reader;
    private readonly StringBuilder _line = new();
    private readonly List<(int Start, int Length, bool Quoted)> _cells = new();
    private string _current = "";
    private char _delimiter;
    private string[] _header = [];

    private DelimitedTable(string path)
    {
        FileName = Path.GetFileName(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{FileName}: file not found ({Path.GetFullPath(path)}).", path);
        _reader = new StreamReader(path, Encoding.UTF8, detectEncodingFromByteOrderMarks: true, bufferSize: 1 << 16);
    }

    public string FileName { get; }

    /// <summary>1-based line number of the current line.</summary>
    public long LineNumber { get; private set; }

    public long HeaderLine { get; private set; }

    public bool Headerless { get; private set; }

    public IReadOnlyList<string> Header => _header;

    public string HeaderText => string.Join(_delimiter == '\t' ? "\\t" : _delimiter.ToString(), _header);

    /// <param name="path">The delimited file.</param>
    /// <param name="headerless">false: the first line is a header; null: a first line holding a single number is data (no header).</param>
    public static DelimitedTable Open(string path, bool? headerless)
    {
        var t = new DelimitedTable(path);
        try
        {
            if (!t.ReadLine()) throw new DataFormatException("the file is empty", t.FileName);
            t._delimiter = t._current.Contains('\t') ? '\t' : ',';
            t.Split();
            t.HeaderLine = t.LineNumber;
            if (headerless is null && t._cells.Count == 1
                && double.TryParse(t.Cell(0), NumberStyles.Float, CultureInfo.InvariantCulture, out _))
            {
                t.Headerless = true;
                t._pending = true; // the first line is data
                t._header = [];
                return t;
            }
            t._header = Enumerable.Range(0, t._cells.Count).Select(c => t.Cell(c).Trim().ToString()).ToArray();
            var seen = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int c = 0; c < t._header.Length; c++)
                if (!seen.TryAdd(t._header[c], c))
                    throw new DataFormatException($"duplicate column name '{t._header[c]}' in the header (also column {seen[t._header[c]] + 1})", t.FileName, t.HeaderLine, c + 1, t._header[c]);
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    private bool _pending;

    public int IndexOf(string name) => Array.IndexOf(_header, name);

    /// <summary>Moves to the next non-blank line after the header; false at the end of the file.</summary>
    public bool NextRow()
    {
        if (_pending) { _pending = false; return true; }
        if (!ReadLine()) return false;
        Split();
        int expected = Headerless ? 1 : _header.Length;
        if (_cells.Count != expected)
            throw new DataFormatException($"expected {expected} columns, found {_cells.Count}", FileName, LineNumber);
        return true;
    }

    /// <summary>Moves forward to line <paramref name="line"/> (a data row the data reader returned).</summary>
    public void SeekLine(long line)
    {
        while (LineNumber < line)
            if (!NextRow())
                throw new DataFormatException($"the file ended before line {line}; was it changed while it was read?", FileName, LineNumber);
        if (LineNumber != line)
            throw new InvalidOperationException($"{FileName}: rows must be read in file order (at line {LineNumber}, asked for line {line}).");
    }

    public ReadOnlySpan<char> Cell(int c)
    {
        var (s, n, q) = _cells[c];
        var raw = _current.AsSpan(s, n);
        return q && raw.Contains("\"\"", StringComparison.Ordinal) ? raw.ToString().Replace("\"\"", "\"") : raw;
    }

    private bool ReadLine()
    {
        while (true)
        {
            _line.Clear();
            int c;
            bool any = false;
            while ((c = _reader.Read()) >= 0)
            {
                any = true;
                if (c == '\n') break;
                if (c == '\r')
                {
                    if (_reader.Peek() == '\n') _reader.Read();
                    break;
                }
                if (_line.Length >= ReaderOptions.DefaultMaxLineLength)
                    throw new DataFormatException($"line is longer than {ReaderOptions.DefaultMaxLineLength} characters; is this a text file with line breaks?", FileName, LineNumber + 1);
                _line.Append((char)c);
            }
            if (!any) return false;
            LineNumber++;
            if (_line.Length == 0 || string.IsNullOrWhiteSpace(_line.ToString())) continue;
            _current = _line.ToString();
            return true;
        }
    }

    private void Split()
    {
        _cells.Clear();
        var line = _current;
        int i = 0;
        while (true)
        {
            if (i < line.Length && line[i] == '"')
            {
                int start = i + 1, j = start;
                while (true)
                {
                    j = line.IndexOf('"', j);
                    if (j < 0) throw new DataFormatException("unterminated quoted field", FileName, LineNumber, _cells.Count + 1);
                    if (j + 1 < line.Length && line[j + 1] == '"') { j += 2; continue; }
                    break;
                }
                _cells.Add((start, j - start, true));
                i = j + 1;
                if (i == line.Length) return;
                if (line[i] != _delimiter) throw new DataFormatException("a closing quote must be followed by the delimiter or the end of the line", FileName, LineNumber, _cells.Count);
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

    public void Dispose() => _reader.Dispose();
}
