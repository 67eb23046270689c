using System.Text.Json;

namespace KdEngine.Data;

/// <summary>
/// Small helpers for strict JSON documents: every object lists its allowed keys, every value is type-checked, and
/// every failure is a <see cref="DataFormatException"/> naming the document and the key path.
/// </summary>
internal readonly struct StrictJson
{
    private readonly string _source;

    public StrictJson(string source) => _source = source;

    public string Source => _source;

    public JsonDocument Parse(string json)
    {
        try
        {
            return JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new DataFormatException($"invalid JSON: {e.Message}", _source, inner: e);
        }
    }

    public DataFormatException Error(string path, string problem) => new(problem, _source, key: path);

    /// <summary>Checks that <paramref name="element"/> is an object whose keys are all in <paramref name="allowed"/>.</summary>
    public void Object(JsonElement element, string path, params string[] allowed)
    {
        if (element.ValueKind != JsonValueKind.Object)
            throw Error(path, $"expected an object, found {Describe(element)}");
        foreach (var p in element.EnumerateObject())
            if (System.Array.IndexOf(allowed, p.Name) < 0)
                throw Error(Join(path, p.Name), $"unknown key (expected one of {string.Join(", ", allowed)})");
    }

    public static string Join(string path, string key) => path.Length == 0 ? key : path + "." + key;

    public bool TryGet(JsonElement obj, string key, out JsonElement value) => obj.TryGetProperty(key, out value);

    public JsonElement Required(JsonElement obj, string path, string key)
    {
        if (!obj.TryGetProperty(key, out var v)) throw Error(Join(path, key), "missing required key");
        return v;
    }

    public string String(JsonElement value, string path)
    {
        if (value.ValueKind != JsonValueKind.String) throw Error(path, $"expected a string, found {Describe(value)}");
        return value.GetString()!;
    }

    public bool Bool(JsonElement value, string path)
    {
        if (value.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            throw Error(path, $"expected true or false, found {Describe(value)}");
        return value.GetBoolean();
    }

    public int Int(JsonElement value, string path, int min, int max = int.MaxValue)
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int v))
            throw Error(path, $"expected an integer, found {Describe(value)}");
        if (v < min || v > max) throw Error(path, $"value {v} is out of range [{min}, {max}]");
        return v;
    }

    public T Enum<T>(JsonElement value, string path, params (string Name, T Value)[] choices)
    {
        var s = String(value, path);
        foreach (var (name, v) in choices)
            if (name == s) return v;
        throw Error(path, $"unknown value '{s}' (expected {string.Join("|", choices.Select(c => c.Name))})");
    }

    public JsonElement Array(JsonElement value, string path)
    {
        if (value.ValueKind != JsonValueKind.Array) throw Error(path, $"expected an array, found {Describe(value)}");
        return value;
    }

    private static string Describe(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => $"string '{e.GetString()}'",
        JsonValueKind.Number => $"number {e.GetRawText()}",
        JsonValueKind.True or JsonValueKind.False => e.GetRawText(),
        JsonValueKind.Null => "null",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        _ => e.ValueKind.ToString(),
    };
}
