using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace KdEngine.Cli.Options;

/// <summary>
/// Factories for the options of every verb. Each option converts its text when the command line is parsed, so a bad
/// value is a parse error that names the option and the value (<c>option '--epochs' expects an integer, got 'x'.</c>)
/// before any work starts. A default passed here is the value the code uses and the value help shows
/// (<c>[default: 10]</c>): help never states a default of its own.
/// </summary>
internal static class CliOptions
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>A number as help and messages print it (invariant culture, shortest round-trip form).</summary>
    public static string Show(double value) => value.ToString(Inv);

    /// <summary>A list of numbers as the command line takes it: <c>400,400</c>.</summary>
    public static string Show<T>(IEnumerable<T> values) where T : IFormattable =>
        string.Join(",", values.Select(v => v.ToString(null, Inv)));

    /// <summary>
    /// An option whose text <paramref name="parse"/> converts. An exception from it (the library's own parsers throw
    /// <see cref="ArgumentException"/> naming the bad value) becomes a parse error prefixed with the option's name.
    /// With <paramref name="fallback"/> the option is optional, shows that default in help and yields it when absent.
    /// </summary>
    public static Option<T> Parsed<T>(string name, string helpName, string description, Func<string, T> parse, Func<T>? fallback = null)
    {
        var option = new Option<T>(name) { HelpName = helpName, Description = description };
        option.CustomParser = result =>
        {
            if (result.Tokens.Count == 0) return fallback is null ? default! : fallback();
            string text = result.Tokens[^1].Value;
            try { return parse(text); }
            catch (Exception e) when (e is ArgumentException or FormatException or CliException or KdEngine.Models.ConfigException or IOException)
            {
                string message = e.Message;
                // The factories below say "expects …, got 'x'." or "= x must be …"; a library parser's message gets the option name in front.
                bool fragment = message.StartsWith("expects ", StringComparison.Ordinal) || message.StartsWith("= ", StringComparison.Ordinal);
                result.AddError(fragment ? $"option '{name}' {message}" : $"option '{name}': {message}");
                return default!;
            }
        };
        if (fallback is not null) option.DefaultValueFactory = _ => fallback();
        return option;
    }

    /// <summary>A required option (parse error <c>Option '--out' is required.</c> when absent).</summary>
    public static Option<string> Required(string name, string helpName, string description) =>
        new(name) { HelpName = helpName, Description = description, Required = true };

    /// <summary>An optional text option; null when absent.</summary>
    public static Option<string?> Text(string name, string helpName, string description) =>
        new(name) { HelpName = helpName, Description = description };

    /// <summary>A text option that may be given several times (<c>--teacher a --teacher b</c>); empty when absent.</summary>
    public static Option<string[]> Repeated(string name, string helpName, string description) =>
        new(name) { HelpName = helpName, Description = description, Arity = ArgumentArity.OneOrMore, DefaultValueFactory = _ => [] };

    /// <summary>An integer in [<paramref name="min"/>, <paramref name="max"/>] with a default.</summary>
    public static Option<int> Int(string name, string helpName, string description, int fallback, int min = int.MinValue, int max = int.MaxValue) =>
        Parsed(name, helpName, description, text => ParseInt(text, min, max), () => fallback);

    /// <summary>An optional integer in [<paramref name="min"/>, <paramref name="max"/>]; null when absent.</summary>
    public static Option<int?> OptionalInt(string name, string helpName, string description, int min = int.MinValue, int max = int.MaxValue) =>
        Parsed<int?>(name, helpName, description, text => ParseInt(text, min, max));

    /// <summary>A 64-bit integer in [<paramref name="min"/>, <paramref name="max"/>] with a default.</summary>
    public static Option<long> Long(string name, string helpName, string description, long fallback, long min = long.MinValue, long max = long.MaxValue) =>
        Parsed(name, helpName, description, text =>
        {
            if (!long.TryParse(text, NumberStyles.Integer, Inv, out long v)) throw new CliException($"expects an integer, got '{text}'.");
            return InRange(v, min, max);
        }, () => fallback);

    /// <summary>A finite number with a default, checked by <paramref name="check"/> (returns the problem, or null).</summary>
    public static Option<float> Float(string name, string helpName, string description, float fallback, Func<float, string?>? check = null) =>
        Parsed(name, helpName, description, text => Checked(ParseFloat(text), check), () => fallback);

    /// <summary>An optional finite number; null when absent.</summary>
    public static Option<float?> OptionalFloat(string name, string helpName, string description, Func<float, string?>? check = null) =>
        Parsed<float?>(name, helpName, description, text => Checked(ParseFloat(text), check));

    /// <summary>A finite double with a default, checked by <paramref name="check"/>.</summary>
    public static Option<double> Double(string name, string helpName, string description, double fallback, Func<double, string?>? check = null) =>
        Parsed(name, helpName, description, text =>
        {
            if (!double.TryParse(text, NumberStyles.Float, Inv, out double v) || !double.IsFinite(v)) throw new CliException($"expects a number, got '{text}'.");
            return Checked(v, check);
        }, () => fallback);

    /// <summary>One of <paramref name="choices"/> (case-insensitive, returned lower-case) with a default.</summary>
    public static Option<string> Choice(string name, string description, IReadOnlyList<string> choices, string fallback) =>
        Parsed(name, string.Join("|", choices), description, text =>
        {
            string lower = text.ToLowerInvariant();
            return choices.Contains(lower) ? lower : throw new CliException($"expects one of {string.Join("|", choices)}, got '{text}'.");
        }, () => fallback);

    /// <summary>Comma-separated positive integers (<c>400,400</c>); null when absent (the caller's default applies).</summary>
    public static Option<int[]?> IntList(string name, string helpName, string description) =>
        Parsed<int[]?>(name, helpName, description, text => Items(text).Select(x =>
            int.TryParse(x, NumberStyles.Integer, Inv, out int w) && w > 0 ? w : throw new CliException($"expects positive integers separated by commas, got '{x}'.")).ToArray());

    /// <summary>Comma-separated numbers ≥ 0 (duplicates dropped); null when absent.</summary>
    public static Option<float[]?> NonNegativeList(string name, string helpName, string description) =>
        Parsed<float[]?>(name, helpName, description, text =>
        {
            var values = Items(text).Select(x => float.TryParse(x, NumberStyles.Float, Inv, out float v) && float.IsFinite(v) && v >= 0
                ? v : throw new CliException($"expects numbers ≥ 0 separated by commas, got '{x}'.")).Distinct().ToArray();
            return values.Length > 0 ? values : throw new CliException("expects numbers ≥ 0 separated by commas, got nothing.");
        });

    /// <summary>A problem check for numbers: must be &gt; 0.</summary>
    public static string? Positive(float v) => v > 0 ? null : $"= {Show(v)} must be > 0.";

    /// <summary>A problem check for numbers: must be ≥ 0.</summary>
    public static string? NonNegative(float v) => v >= 0 ? null : $"= {Show(v)} must be ≥ 0.";

    /// <summary>A problem check for numbers: must be ≥ 0.</summary>
    public static string? NonNegative(double v) => v >= 0 ? null : $"= {Show(v)} must be ≥ 0.";

    /// <summary>True when the user gave <paramref name="option"/> (not just its default).</summary>
    public static bool Given(this ParseResult parse, Option option) => parse.GetResult(option) is { Implicit: false };

    /// <summary>The comma-separated items of a list option, blanks dropped.</summary>
    public static string[] Items(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static int ParseInt(string text, int min, int max)
    {
        if (!int.TryParse(text, NumberStyles.Integer, Inv, out int v)) throw new CliException($"expects an integer, got '{text}'.");
        return (int)InRange(v, min, max);
    }

    private static long InRange(long v, long min, long max) =>
        v >= min && v <= max ? v
            : throw new CliException($"= {v} is out of range [{min.ToString(Inv)}, {(max is int.MaxValue or long.MaxValue ? "∞" : max.ToString(Inv))}].");

    private static float ParseFloat(string text) =>
        float.TryParse(text, NumberStyles.Float, Inv, out float v) && float.IsFinite(v) ? v : throw new CliException($"expects a number, got '{text}'.");

    private static T Checked<T>(T value, Func<T, string?>? check) =>
        check?.Invoke(value) is { } problem ? throw new CliException(problem) : value;
}
