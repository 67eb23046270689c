using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using KdEngine.Data;
using KdEngine.Server.Batching;
using KdEngine.Server.Models;

namespace KdEngine.Server.Api;

/// <summary>
/// The JSON edge of <c>POST /v1/models/{name}:predict</c>: reads <c>{"context": {…}, "candidates": [{…}, …]}</c> or
/// <c>{"instances": [{…}, …]}</c> straight from the request's byte sequence (no DOM) and encodes every row through the
/// version's fitted preprocessing — the same mapping as training — into a <see cref="ScoreJob"/>'s id matrix.
/// </summary>
/// <remarks>
/// <para><b>Two passes.</b> The context may come after the candidates in the object, so pass 1 checks the top level,
/// parses the context and counts the rows; pass 2 resumes from a saved copy of the reader at the list and encodes each
/// row as context values overlaid by the row's own (a row's explicit <c>null</c> overrides a context value). The context
/// is encoded once per request, each row's own fields once per row.</para>
/// <para><b>Values.</b> Categorical: a string, or a number taken as its literal text (<c>5</c> → "5"). Numeric: a
/// number, or numeric text. Multi-valued: a list of strings/numbers, or one string already joined with the field's
/// separator. <c>null</c>, an empty string and an empty list are missing values; every input field is optional.
/// Label and user-id fields are accepted and ignored. Anything else is a <see cref="RequestException"/> (400) that
/// names the field and the row.</para>
/// <para><b>Allocation.</b> Per request: the job, and per categorical/multi value the string the vocabulary lookup
/// needs. The record, encoded row and context buffers are per thread and reused (the read is synchronous).</para>
/// </remarks>
public static class PredictRequestReader
{
    private static readonly JsonReaderOptions ReaderOptions = new() { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 16 };

    /// <summary>
    /// Parses and encodes <paramref name="body"/> for <paramref name="version"/>. Returns the job with every row's ids
    /// filled (not yet submitted), or null for an empty list (nothing to score). Throws <see cref="RequestException"/>.
    /// </summary>
    public static ScoreJob? Read(ReadOnlySequence<byte> body, ModelVersion version, UnknownFieldPolicy unknownFields, int maxCandidates)
    {
        var ws = Workspace.For(version.Schema);
        ws.Reset();
        var r = new Utf8JsonReader(body, ReaderOptions);
        Utf8JsonReader list = default;
        string? listName = null;
        int rows = 0;
        bool sawContext = false;
        try
        {
            if (!r.Read() || r.TokenType != JsonTokenType.StartObject)
                throw new RequestException(400, ErrorCodes.BadRequest,
                    "the body must be a JSON object: {\"context\": {…}, \"candidates\": [{…}, …]} or {\"instances\": [{…}, …]}");
            while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
            {
                if (r.ValueTextEquals("context"u8))
                {
                    if (sawContext) throw new RequestException(400, ErrorCodes.BadRequest, "'context' appears twice", location: "context");
                    sawContext = true;
                    r.Read();
                    if (r.TokenType == JsonTokenType.Null) continue;
                    if (r.TokenType != JsonTokenType.StartObject)
                        throw new RequestException(400, ErrorCodes.BadRequest, $"'context' must be an object of field values, found {TokenName(ref r)}", location: "context");
                    ReadObject(ref r, ws, "context", null, ws.ContextRecord, unknownFields);
                }
                else if (r.ValueTextEquals("candidates"u8) || r.ValueTextEquals("instances"u8))
                {
                    string name = r.ValueTextEquals("candidates"u8) ? "candidates" : "instances";
                    if (listName is not null)
                        throw new RequestException(400, ErrorCodes.BadRequest, listName == name
                            ? $"'{name}' appears twice"
                            : "give either 'candidates' (with an optional 'context') or 'instances', not both", location: name);
                    listName = name;
                    r.Read();
                    if (r.TokenType != JsonTokenType.StartArray)
                        throw new RequestException(400, ErrorCodes.BadRequest, $"'{name}' must be a list of objects, found {TokenName(ref r)}", location: name);
                    list = r; // a copy of the reader at '[': pass 2 resumes here
                    while (r.Read() && r.TokenType != JsonTokenType.EndArray)
                    {
                        if (r.TokenType != JsonTokenType.StartObject)
                            throw new RequestException(400, ErrorCodes.BadRequest, $"{name}[{rows}] must be an object of field values, found {TokenName(ref r)}",
                                location: name, index: rows);
                        if (rows == maxCandidates)
                            throw new RequestException(413, ErrorCodes.TooManyCandidates,
                                $"'{name}' has more than {maxCandidates} entries, the most a request may have (Server:MaxCandidates); split the request",
                                field: name, location: name);
                        r.Skip();
                        rows++;
                    }
                }
                else
                {
                    throw new RequestException(400, ErrorCodes.BadRequest,
                        $"unknown key '{r.GetString()}' at the top level (expected 'context', 'candidates' or 'instances')");
                }
            }
            if (r.Read()) throw new RequestException(400, ErrorCodes.MalformedJson, "malformed JSON: content after the top-level object");
        }
        catch (JsonException e)
        {
            throw new RequestException(400, ErrorCodes.MalformedJson, $"malformed JSON: {e.Message}");
        }
        if (listName is null)
            throw new RequestException(400, ErrorCodes.BadRequest, "the body has neither 'candidates' (with an optional 'context') nor 'instances'");
        if (listName == "instances" && sawContext)
            throw new RequestException(400, ErrorCodes.BadRequest,
                "'context' applies to 'candidates'; with 'instances' every instance carries all its fields", location: "context");
        if (rows == 0) return null;

        // The context is encoded once; each row then encodes only its own fields (the others are missing, which costs
        // nothing) and takes a column from the context wherever the row did not name that column's field.
        var pre = version.Schema.Preprocessor;
        try { pre.Encode(ws.ContextRecord, ws.ContextRow); }
        catch (DataFormatException e)
        {
            throw new RequestException(400, ErrorCodes.BadValue, $"context.{e.Key}: {e.Problem}", e.Key, "context");
        }
        var job = new ScoreJob(version, rows);
        try
        {
            int columns = version.Columns;
            var record = ws.Record;
            var columnField = version.Schema.ColumnFields;
            ReadOnlySpan<int> context = ws.ContextRow.Ids.AsSpan(0, columns);
            r = list;
            for (int i = 0; i < rows; i++)
            {
                r.Read(); // '{' (checked in pass 1)
                int stamp = ReadObject(ref r, ws, listName, i, record, unknownFields);
                try { pre.Encode(record, ws.Row); }
                catch (DataFormatException e)
                {
                    throw new RequestException(400, ErrorCodes.BadValue, $"{listName}[{i}].{e.Key}: {e.Problem}", e.Key, listName, i);
                }
                var own = ws.Row.Ids;
                var destination = job.RowIds(i);
                for (int c = 0; c < columns; c++) destination[c] = ws.Seen[columnField[c]] == stamp ? own[c] : context[c];
                ws.ClearTouched(record);
            }
        }
        catch
        {
            job.Discard();
            throw;
        }
        return job;
    }

    /// <summary>
    /// Reads one object of field values (the reader is on its '{'; ends on its '}') into <paramref name="record"/> by
    /// schema index. Returns the object's stamp: <c>ws.Seen[f] == stamp</c> for exactly the fields it named.
    /// </summary>
    private static int ReadObject(ref Utf8JsonReader r, Workspace ws, string location, int? index, RawRecord record, UnknownFieldPolicy unknownFields)
    {
        var schema = ws.Schema;
        var values = record.Values;
        var numbers = record.Numbers;
        int stamp = ws.NextStamp();
        while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
        {
            int f = schema.IndexOf(ws.PropertyName(ref r));
            r.Read(); // the value
            if (f < 0)
            {
                if (unknownFields == UnknownFieldPolicy.Ignore)
                {
                    r.Skip();
                    continue;
                }
                string name = PropertyNameBefore(ws);
                throw new RequestException(400, ErrorCodes.UnknownField,
                    $"{Where(location, index)}.{name}: unknown field '{name}' (GET /v1/models/{{name}} lists the model's fields; Server:UnknownFields=Ignore skips unknown fields)",
                    name, location, index);
            }
            if (ws.Seen[f] == stamp)
                throw new RequestException(400, ErrorCodes.DuplicateField, $"{Where(location, index)}.{schema.Schema[f].Name}: the field appears twice",
                    schema.Schema[f].Name, location, index);
            ws.Seen[f] = stamp;
            ws.Touch(f);
            var spec = schema.Schema[f];
            switch (spec.Kind)
            {
                case FieldKind.Categorical:
                    values[f] = ReadCategorical(ref r, spec, location, index);
                    numbers[f] = double.NaN;
                    break;
                case FieldKind.Numeric:
                    numbers[f] = ReadNumeric(ref r, spec, location, index);
                    values[f] = null;
                    break;
                case FieldKind.Multi:
                    values[f] = ReadMulti(ref r, ws, spec, location, index);
                    numbers[f] = double.NaN;
                    break;
                default:
                    r.Skip(); // label, user id: accepted and ignored
                    break;
            }
        }
        return stamp;
    }

    private static string? ReadCategorical(ref Utf8JsonReader r, FieldSpec spec, string location, int? index)
    {
        switch (r.TokenType)
        {
            case JsonTokenType.Null: return null;
            case JsonTokenType.String:
                var s = r.GetString();
                return string.IsNullOrEmpty(s) ? null : s;
            case JsonTokenType.Number: return LiteralText(ref r);
            case JsonTokenType.StartArray: throw MultiValueInSingleField(spec, location, index);
            default:
                throw new RequestException(400, ErrorCodes.WrongType,
                    $"{Where(location, index)}.{spec.Name}: field '{spec.Name}' is categorical and takes a string (or a number, taken as its literal text); found {TokenName(ref r)}",
                    spec.Name, location, index);
        }
    }

    private static double ReadNumeric(ref Utf8JsonReader r, FieldSpec spec, string location, int? index)
    {
        double v;
        switch (r.TokenType)
        {
            case JsonTokenType.Null: return double.NaN;
            case JsonTokenType.Number:
                if (!r.TryGetDouble(out v) || !double.IsFinite(v))
                    throw new RequestException(400, ErrorCodes.BadValue,
                        $"{Where(location, index)}.{spec.Name}: {LiteralText(ref r)} is outside the range of a double", spec.Name, location, index);
                return v;
            case JsonTokenType.String:
                if (r.ValueSpan.Length == 0 && !r.HasValueSequence) return double.NaN; // "" = missing, as in text files
                bool parsed = !r.ValueIsEscaped && !r.HasValueSequence
                    ? double.TryParse(r.ValueSpan, NumberStyles.Float, CultureInfo.InvariantCulture, out v)
                    : double.TryParse(r.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out v);
                if (!parsed || !double.IsFinite(v))
                    throw new RequestException(400, ErrorCodes.WrongType,
                        $"{Where(location, index)}.{spec.Name}: field '{spec.Name}' is numeric and takes a number (or numeric text); found \"{r.GetString()}\"",
                        spec.Name, location, index);
                return v;
            case JsonTokenType.StartArray: throw MultiValueInSingleField(spec, location, index);
            default:
                throw new RequestException(400, ErrorCodes.WrongType,
                    $"{Where(location, index)}.{spec.Name}: field '{spec.Name}' is numeric and takes a number (or numeric text); found {TokenName(ref r)}",
                    spec.Name, location, index);
        }
    }

    private static string? ReadMulti(ref Utf8JsonReader r, Workspace ws, FieldSpec spec, string location, int? index)
    {
        switch (r.TokenType)
        {
            case JsonTokenType.Null: return null;
            case JsonTokenType.String:
                var s = r.GetString();
                return string.IsNullOrEmpty(s) ? null : s;
            case JsonTokenType.StartArray:
                var sb = ws.Multi.Clear();
                int element = 0;
                while (r.Read() && r.TokenType != JsonTokenType.EndArray)
                {
                    string? value = r.TokenType switch
                    {
                        JsonTokenType.String => r.GetString(),
                        JsonTokenType.Number => LiteralText(ref r),
                        JsonTokenType.Null => null,
                        _ => throw new RequestException(400, ErrorCodes.WrongType,
                            $"{Where(location, index)}.{spec.Name}[{element}]: a multi-valued field's list holds strings or numbers; found {TokenName(ref r)}",
                            spec.Name, location, index),
                    };
                    if (value is not null && value.Contains(spec.Separator))
                        throw new RequestException(400, ErrorCodes.BadValue,
                            $"{Where(location, index)}.{spec.Name}[{element}]: \"{value}\" contains the field's separator '{spec.Separator}' (give the values as separate list entries)",
                            spec.Name, location, index);
                    if (!string.IsNullOrEmpty(value))
                    {
                        if (sb.Length > 0) sb.Append(spec.Separator);
                        sb.Append(value);
                    }
                    element++;
                }
                return sb.Length == 0 ? null : sb.ToString();
            default:
                throw new RequestException(400, ErrorCodes.WrongType,
                    $"{Where(location, index)}.{spec.Name}: field '{spec.Name}' is multi-valued and takes a list of strings or numbers (or one '{spec.Separator}'-separated string); found {TokenName(ref r)}",
                    spec.Name, location, index);
        }
    }

    private static RequestException MultiValueInSingleField(FieldSpec spec, string location, int? index) =>
        new(400, ErrorCodes.MultiValueInSingleField,
            $"{Where(location, index)}.{spec.Name}: field '{spec.Name}' is single-valued ({RequestSchema.KindName(spec)}) and takes one value; found a list (only multi-valued fields take lists)",
            spec.Name, location, index);

    private static string Where(string location, int? index) => index is int i ? $"{location}[{i}]" : location;

    private static string LiteralText(ref Utf8JsonReader r) =>
        r.HasValueSequence ? Encoding.UTF8.GetString(r.ValueSequence.ToArray()) : Encoding.UTF8.GetString(r.ValueSpan);

    private static string TokenName(ref Utf8JsonReader r) => r.TokenType switch
    {
        JsonTokenType.True => "true",
        JsonTokenType.False => "false",
        JsonTokenType.Null => "null",
        JsonTokenType.Number => "the number " + LiteralText(ref r),
        JsonTokenType.String => "a string",
        JsonTokenType.StartArray => "a list",
        JsonTokenType.StartObject => "an object",
        _ => r.TokenType.ToString(),
    };

    private static string PropertyNameBefore(Workspace ws) => new(ws.LastName);

    /// <summary>Per-thread buffers of the reader for one schema (rebuilt when a request for another schema comes).</summary>
    private sealed class Workspace
    {
        [ThreadStatic] private static Workspace? t_current;

        private char[] _name = new char[64];
        private int _nameLength;
        private int _stamp;

        private Workspace(RequestSchema schema)
        {
            Schema = schema;
            Record = new RawRecord(schema.Schema);
            Row = new EncodedRow(schema.Preprocessor.FeatureSpace);
            ContextRecord = new RawRecord(schema.Schema);
            ContextRow = new EncodedRow(schema.Preprocessor.FeatureSpace);
            Seen = new int[schema.Schema.Count];
            _touched = new int[schema.Schema.Count];
        }

        private readonly int[] _touched;
        private int _touchedCount;

        public RequestSchema Schema { get; }

        /// <summary>The row being read: every field missing except those the row names (cleared after each row).</summary>
        public RawRecord Record { get; }
        public EncodedRow Row { get; }
        public RawRecord ContextRecord { get; }
        public EncodedRow ContextRow { get; }

        /// <summary>[schema fields] the stamp of the last object that set the field (duplicate detection without clearing).</summary>
        public int[] Seen { get; }

        public StringBuilder Multi { get; } = new();

        public ReadOnlySpan<char> LastName => _name.AsSpan(0, _nameLength);

        public static Workspace For(RequestSchema schema)
        {
            var ws = t_current;
            if (ws is null || !ReferenceEquals(ws.Schema, schema)) t_current = ws = new Workspace(schema);
            return ws;
        }

        /// <summary>Every field of the context and the row missing (a previous request may have failed half-way).</summary>
        public void Reset()
        {
            Array.Fill(Record.Values, null);
            Array.Fill(Record.Numbers, double.NaN);
            Array.Fill(ContextRecord.Values, null);
            Array.Fill(ContextRecord.Numbers, double.NaN);
            _touchedCount = 0;
        }

        public void Touch(int field) => _touched[_touchedCount++] = field;

        /// <summary>Makes the fields the last row named missing again (the context's are left alone: it is read once).</summary>
        public void ClearTouched(RawRecord record)
        {
            for (int k = 0; k < _touchedCount; k++)
            {
                record.Values[_touched[k]] = null;
                record.Numbers[_touched[k]] = double.NaN;
            }
            _touchedCount = 0;
        }

        /// <summary>A new object begins: a fresh stamp, and its touched-field list starts empty.</summary>
        public int NextStamp()
        {
            _touchedCount = 0;
            if (++_stamp == int.MaxValue)
            {
                Array.Clear(Seen);
                _stamp = 1;
            }
            return _stamp;
        }

        /// <summary>The current property name as chars (unescaped), in a reused buffer.</summary>
        public ReadOnlySpan<char> PropertyName(ref Utf8JsonReader r)
        {
            int bytes = r.HasValueSequence ? checked((int)r.ValueSequence.Length) : r.ValueSpan.Length;
            if (_name.Length < bytes) _name = new char[Math.Max(bytes, _name.Length * 2)];
            _nameLength = r.CopyString(_name);
            return LastName;
        }
    }
}
