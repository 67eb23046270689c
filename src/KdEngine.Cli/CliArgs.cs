using System.Globalization;

namespace KdEngine.Cli;

/// <summary>One option of a verb: <c>--name VALUE</c> (or a flag without a value), with its help line.</summary>
public sealed record CliOption(string Name, string? Value, string Help, bool Repeatable = false)
{
    public bool IsFlag => Value is null;
}

/// <summary>
/// Hand-written argument parsing (no package needed): <c>--name value</c>, <c>--name=value</c> and flags; an unknown
/// option, a missing value or a stray argument is a <see cref="CliException"/> naming it.
/// </summary>
public sealed class CliArgs
{
    private readonly string _verb;
    private readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);

    private CliArgs(string verb) => _verb = verb;

    public static CliArgs Parse(string verb, IReadOnlyList<string> args, IReadOnlyList<CliOption> options)
    {
        var result = new CliArgs(verb);
        var byName = options.ToDictionary(o => o.Name, StringComparer.Ordinal);
        for (int i = 0; i < args.Count; i++)
        {
            var a = args[i];
            if (a is "--verbose" or "--help" or "-h") { result.Add(a.TrimStart('-'), ""); continue; }
            if (!a.StartsWith("--", StringComparison.Ordinal))
                throw new CliException($"{verb}: unexpected argument '{a}' (options start with --; see 'kdengine {verb} --help').");
            string name = a[2..];
            string? inline = null;
            int eq = name.IndexOf('=');
            if (eq >= 0) { inline = name[(eq + 1)..]; name = name[..eq]; }
            if (!byName.TryGetValue(name, out var opt))
                throw new CliException($"{verb}: unknown option '--{name}' (see 'kdengine {verb} --help').");
            if (opt.IsFlag)
            {
                if (inline is not null) throw new CliException($"{verb}: option '--{name}' takes no value.");
                result.Add(name, "true");
                continue;
            }
            string value = inline ?? (i + 1 < args.Count ? args[++i] : throw new CliException($"{verb}: option '--{name}' needs a value ({opt.Value})."));
            if (!opt.Repeatable && result._values.ContainsKey(name)) throw new CliException($"{verb}: option '--{name}' is given twice.");
            result.Add(name, value);
        }
        return result;
    }

    private void Add(string name, string value)
    {
        if (!_values.TryGetValue(name, out var list)) _values[name] = list = new List<string>();
        list.Add(value);
    }

    public bool Has(string name) => _values.ContainsKey(name);

    public bool Flag(string name) => _values.ContainsKey(name);

    public string? String(string name) => _values.TryGetValue(name, out var v) ? v[^1] : null;

    public IReadOnlyList<string> All(string name) => _values.TryGetValue(name, out var v) ? v : [];

    public string Required(string name) =>
        String(name) ?? throw new CliException($"{_verb}: option '--{name}' is required (see 'kdengine {_verb} --help').");

    public int Int(string name, int fallback, int min = int.MinValue, int max = int.MaxValue)
    {
        var s = String(name);
        if (s is null) return fallback;
        if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v))
            throw new CliException($"{_verb}: option '--{name}' expects an integer, got '{s}'.");
        if (v < min || v > max) throw new CliException($"{_verb}: option '--{name}' = {v} is out of range [{min}, {(max == int.MaxValue ? "∞" : max.ToString(CultureInfo.InvariantCulture))}].");
        return v;
    }

    public int? OptionalInt(string name, int min = int.MinValue) => Has(name) ? Int(name, 0, min) : null;

    public float? Float(string name)
    {
        var s = String(name);
        if (s is null) return null;
        if (!float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out float v) || !float.IsFinite(v))
            throw new CliException($"{_verb}: option '--{name}' expects a number, got '{s}'.");
        return v;
    }

    public double? Double(string name)
    {
        var s = String(name);
        if (s is null) return null;
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v))
            throw new CliException($"{_verb}: option '--{name}' expects a number, got '{s}'.");
        return v;
    }

    /// <summary>The help text of a verb: usage line, description, then one line per option.</summary>
    public static string Help(string usage, string description, IReadOnlyList<CliOption> options)
    {
        var lines = new List<string> { "usage: " + usage, "", description, "", "options:" };
        int width = options.Max(o => o.Name.Length + (o.Value?.Length + 1 ?? 0)) + 4;
        foreach (var o in options)
            lines.Add(("  --" + o.Name + (o.Value is null ? "" : " " + o.Value)).PadRight(width + 2) + o.Help);
        lines.Add("  --verbose".PadRight(width + 2) + "stack traces on error");
        lines.Add("  --help".PadRight(width + 2) + "this help");
        return string.Join(Environment.NewLine, lines);
    }
}
