namespace KdEngine.Data;

/// <summary>
/// Bad input data or a bad data description (schema, preprocessor JSON, a malformed row). The message always names
/// where: <c>file:line: column N (name): problem</c> for rows, <c>file: key.path: problem</c> for JSON documents.
/// </summary>
public sealed class DataFormatException : Exception
{
    /// <summary>
    /// A data error; the message is <paramref name="problem"/> prefixed with whichever of <paramref name="file"/>,
    /// <paramref name="line"/> (1-based), <paramref name="column"/> (1-based) and <paramref name="key"/> (a column name
    /// or a JSON key path) are given.
    /// </summary>
    public DataFormatException(string problem, string? file = null, long? line = null, int? column = null,
        string? key = null, Exception? inner = null)
        : base(Format(problem, file, line, column, key), inner)
    {
        Problem = problem;
        File = file;
        Line = line;
        Column = column;
        Key = key;
    }

    /// <summary>The problem alone, without the location prefix.</summary>
    public string Problem { get; }

    /// <summary>The file name (as given to the reader), or null for in-code input.</summary>
    public string? File { get; }

    /// <summary>1-based line number in the file (header = line 1), or null.</summary>
    public long? Line { get; }

    /// <summary>1-based column (CSV/TSV: the delimited column; libSVM/libFFM: the token, label = 1), or null.</summary>
    public int? Column { get; }

    /// <summary>The column name for rows, or the JSON key path (e.g. <c>fields[3].kind</c>) for documents.</summary>
    public string? Key { get; }

    private static string Format(string problem, string? file, long? line, int? column, string? key)
    {
        var location = file ?? "";
        if (line is not null) location += (location.Length > 0 ? ":" : "line ") + line;
        if (column is not null)
            location += (location.Length > 0 ? ": " : "") + "column " + column + (key is not null ? " (" + key + ")" : "");
        else if (key is not null)
            location += (location.Length > 0 ? ": " : "") + key;
        return location.Length > 0 ? location + ": " + problem : problem;
    }
}
