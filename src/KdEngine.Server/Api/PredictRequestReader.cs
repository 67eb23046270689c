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
/// <c>{"instances": [{…}, …]}</c> straight from the request's byte sequence (no DOM) and encodes every value through
/// the version's fitted preprocessing — <see cref="Preprocessor.EncodeValue(int, ReadOnlySpan{char})"/>, the same
/// mapping as training — into a <see cref="ScoreJob"/>'s id matrix.
/// </summary>
/// <remarks>
/// <para><b>Two passes.</b> The context may come after the candidates in the object, so pass 1 checks the top level,
/// encodes the context into one id row and counts the rows; pass 2 resumes from a saved copy of the reader at the list
/// and writes each row as the context's ids overlaid by the ids of the row's own values (a row's explicit <c>null</c>
/// overrides a context value). Each value is encoded once.</para>
/// <para><b>Values.</b> Categorical: a string, or a number taken as its literal text (<c>5</c> → "5"). Numeric: a
/// number, or numeric text. Multi-valued: a list of strings/numbers, or one string already joined with the field's
/// separator (checked, not encoded: the zoo models read single-valued ids only). <c>null</c>, an empty string and an
/// empty list are missing values; every input field is optional. Label and user-id fields are accepted and ignored.
/// Anything else is a <see cref="RequestException"/> (400) that names the field and the row.</para>
/// <para><b>Allocation.</b> Per request: the job. Values are decoded into a per-thread character buffer and looked up
/// without making strings (the read is synchronous, so the buffers cannot be shared by two requests).</para>
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
        var schema = version.Schema;
        schema.MissingIds.CopyTo(ws.ContextIds, 0);
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
                    ReadObject(ref r, ws, "context", null, ws.ContextIds, unknownFields);
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

        var job = new ScoreJob(version, rows);
        try
        {
            r = list;
            for (int i = 0; i < rows; i++)
            {
                r.Read(); // '{' (checked in pass 1)
                var ids = job.RowIds(i);
                ws.ContextIds.CopyTo(ids);
                ReadObject(ref r, ws, listName, i, ids, unknownFields);
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
    /// Reads one object of field values (the reader is on its '{'; ends on its '}') and writes each single-valued input
    /// field's id into its column of <paramref name="ids"/>; columns of fields the object does not name keep their value.
    /// </summary>
    private static void ReadObject(ref Utf8JsonReader r, Workspace ws, string location, int? index, Span<int> ids, UnknownFieldPolicy unknownFields)
    {
        var schema = ws.Schema;
        var pre = schema.Preprocessor;
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
                string name = new(ws.LastName);
                throw new RequestException(400, ErrorCodes.UnknownField,
                    $"{Where(location, index)}.{name}: unknown field '{name}' (GET /v1/models/{{name}} lists the model's fields; Server:UnknownFields=Ignore skips unknown fields)",
                    name, location, index);
            }
            var spec = schema.Schema[f];
            if (ws.Seen[f] == stamp)
                throw new RequestException(400, ErrorCodes.DuplicateField, $"{Where(location, index)}.{spec.Name}: the field appears twice", spec.Name, location, index);
            ws.Seen[f] = stamp;
            int column = schema.FieldColumns[f];
            switch (spec.Kind)
            {
                case FieldKind.Categorical:
                    ids[column] = ReadCategorical(ref r, ws, pre, f, spec, location, index) is var c and >= 0 ? c : schema.MissingIds[column];
                    break;
                case FieldKind.Numeric:
                    ids[column] = ReadNumeric(ref r, ws, pre, f, spec, location, index) is var n and >= 0 ? n : schema.MissingIds[column];
                    break;
                case FieldKind.Multi:
                    CheckMulti(ref r, ws, spec, location, index);
                    break;
                default:
                    r.Skip(); // label, user id: accepted and ignored
                    break;
            }
        }
    }

    /// <summary>A categorical value's id, or −1 for a missing value.</summary>
    private static int ReadCategorical(ref Utf8JsonReader r, Workspace ws, Preprocessor pre, int f, FieldSpec spec, string location, int? index)
    {
        switch (r.TokenType)
        {
            case JsonTokenType.Null: return -1;
            case JsonTokenType.String:
                var text = ws.Text(ref r);
                return text.IsEmpty ? -1 : pre.EncodeValue(f, text);
            case JsonTokenType.Number: return pre.EncodeValue(f, ws.Literal(ref r));
            case JsonTokenType.StartArray: throw MultiValueInSingleField(spec, location, index);
            default:
                throw new RequestException(400, ErrorCodes.WrongType,
                    $"{Where(location, index)}.{spec.Name}: field '{spec.Name}' is categorical and takes a string (or a number, taken as its literal text); found {TokenName(ref r)}",
                    spec.Name, location, index);
        }
    }

    /// <summary>A numeric value's id, or −1 for a missing value.</summary>
    private static int ReadNumeric(ref Utf8JsonReader r, Workspace ws, Preprocessor pre, int f, FieldSpec spec, string location, int? index)
    {
        double v;
        switch (r.TokenType)
        {
            case JsonTokenType.Null: return -1;
            case JsonTokenType.Number:
                if (!r.TryGetDouble(out v) || !double.IsFinite(v))
                    throw new RequestException(400, ErrorCodes.BadValue,
                        $"{Where(location, index)}.{spec.Name}: {new string(ws.Literal(ref r))} is outside the range of a double", spec.Name, location, index);
                return pre.EncodeValue(f, v);
            case JsonTokenType.String:
                var text = ws.Text(ref r);
                if (text.IsEmpty) return -1; // "" = missing, as in text files
                if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out v) || !double.IsFinite(v))
                    throw new RequestException(400, ErrorCodes.WrongType,
                        $"{Where(location, index)}.{spec.Name}: field '{spec.Name}' is numeric and takes a number (or numeric text); found \"{text}\"",
                        spec.Name, location, index);
                return pre.EncodeValue(f, v);
            case JsonTokenType.StartArray: throw MultiValueInSingleField(spec, location, index);
            default:
                throw new RequestException(400, ErrorCodes.WrongType,
                    $"{Where(location, index)}.{spec.Name}: field '{spec.Name}' is numeric and takes a number (or numeric text); found {TokenName(ref r)}",
                    spec.Name, location, index);
        }
    }

    /// <summary>Checks a multi-valued field's value (the zoo models do not read it, so it is not encoded).</summary>
    private static void CheckMulti(ref Utf8JsonReader r, Workspace ws, FieldSpec spec, string location, int? index)
    {
        switch (r.TokenType)
        {
            case JsonTokenType.Null:
            case JsonTokenType.String:
                return;
            case JsonTokenType.StartArray:
                int element = 0;
                while (r.Read() && r.TokenType != JsonTokenType.EndArray)
                {
                    switch (r.TokenType)
                    {
                        case JsonTokenType.String:
                            if (ws.Text(ref r).Contains(spec.Separator))
                                throw new RequestException(400, ErrorCodes.BadValue,
                                    $"{Where(location, index)}.{spec.Name}[{element}]: \"{ws.Text(ref r)}\" contains the field's separator '{spec.Separator}' (give the values as separate list entries)",
                                    spec.Name, location, index);
                            break;
                        case JsonTokenType.Number:
                        case JsonTokenType.Null:
                            break;
                        default:
                            throw new RequestException(400, ErrorCodes.WrongType,
                                $"{Where(location, index)}.{spec.Name}[{element}]: a multi-valued field's list holds strings or numbers; found {TokenName(ref r)}",
                                spec.Name, location, index);
                    }
                    element++;
                }
                return;
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

    /// <summary>Per-thread buffers of the reader for one schema (rebuilt when a request for another schema comes).</summary>
    private sealed class Workspace
    {
        [ThreadStatic] private static Workspace? t_current;

        private char[] _name = new char[64];
        private char[] _text = new char[256];
        private int _nameLength;
        private int _stamp;

        private Workspace(RequestSchema schema)
        {
            Schema = schema;
            ContextIds = new int[schema.Columns];
            Seen = new int[schema.Schema.Count];
        }

        public RequestSchema Schema { get; }

        /// <summary>[Columns] the context's encoding (the missing ids where the context names nothing).</summary>
        public int[] ContextIds { get; }

        /// <summary>[schema fields] the stamp of the last object that set the field (duplicate detection without clearing).</summary>
        public int[] Seen { get; }

        public ReadOnlySpan<char> LastName => _name.AsSpan(0, _nameLength);

        public static Workspace For(RequestSchema schema)
        {
            var ws = t_current;
            if (ws is null || !ReferenceEquals(ws.Schema, schema)) t_current = ws = new Workspace(schema);
            return ws;
        }

        /// <summary>A new object begins: a fresh stamp.</summary>
        public int NextStamp()
        {
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
            _nameLength = CopyString(ref r, ref _name);
            return LastName;
        }

        /// <summary>The current string value as chars (unescaped), in a reused buffer: valid until the next call.</summary>
        public ReadOnlySpan<char> Text(ref Utf8JsonReader r) => _text.AsSpan(0, CopyString(ref r, ref _text));

        /// <summary>The current number's literal text (ASCII) as chars, in the same buffer as <see cref="Text"/>.</summary>
        public ReadOnlySpan<char> Literal(ref Utf8JsonReader r)
        {
            int bytes = r.HasValueSequence ? checked((int)r.ValueSequence.Length) : r.ValueSpan.Length;
            if (_text.Length < bytes) _text = new char[Math.Max(bytes, _text.Length * 2)];
            if (!r.HasValueSequence) return _text.AsSpan(0, Encoding.UTF8.GetChars(r.ValueSpan, _text));
            int n = 0;
            foreach (var segment in r.ValueSequence) n += Encoding.UTF8.GetChars(segment.Span, _text.AsSpan(n));
            return _text.AsSpan(0, n);
        }

        private static int CopyString(ref Utf8JsonReader r, ref char[] buffer)
        {
            // Unescaped UTF-8 never has more chars than bytes; escapes only shrink it.
            int bytes = r.HasValueSequence ? checked((int)r.ValueSequence.Length) : r.ValueSpan.Length;
            if (buffer.Length < bytes) buffer = new char[Math.Max(bytes, buffer.Length * 2)];
            return r.CopyString(buffer);
        }
    }
}
