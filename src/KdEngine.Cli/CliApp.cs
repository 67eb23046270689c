// The kdengine command line, on System.CommandLine. How it is put together, and where a change goes:
//
//  * One verb = one file in Verbs/: `internal static class XxxVerb` with `public static Command Create()`, which
//    declares the verb's options as locals, adds them to a System.CommandLine Command and sets its action
//    (`command.SetAction(parse => Run(parse, …))`). Register the verb in CliApp.Verbs below (the help lists them in
//    that order). A verb with sub-verbs (experiment zoo|kd) adds Commands to its Command instead of an action.
//  * One option = one call of a CliOptions factory (Options/CliOptions.cs: Int, Float, Choice, Parsed, Required, …).
//    The factory converts and checks the value while parsing, so a bad value is a one-line error naming the option;
//    its default is the value the code uses (taken from the library's record defaults, e.g. `new TrainingSettings()`),
//    and help prints that same value. Never write a default into a description.
//  * Options several verbs share are a group class in Options/ (DataOptions, SplitOptionsGroup, TrainingOptions,
//    DistributedOptions, SyntheticShapeOptions): `new TrainingOptions()` in the verb, `.AddTo(command)`, and
//    `.SettingsFrom(parse, …)` in its action. A new shared option goes into its group once.
//  * Output goes through CliOutput: plain lines (markdown tables) when stdout is not a terminal — tests, pipes, CI —
//    and Spectre.Console tables/status on a terminal.
//  * Errors: throw CliException (or let the library's ArgumentException/ConfigException/… through) with a message
//    naming the file, option or value; Run prints one `error: …` line and returns 1 (`--verbose` adds the trace).
//  * A verb's description starts with a one-sentence summary (the root help lists verbs by it), then the details.
//  * Global options (--device, --verbose) are recursive options of the root command, declared here.

using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using KdEngine.Cli.Options;
using KdEngine.Cli.Verbs;

namespace KdEngine.Cli;

/// <summary>
/// The <c>kdengine</c> command line: parses the verb and its options and runs it. Any error becomes exit code 1 and
/// a one-line <c>error: …</c> message on stderr (the stack trace only with <c>--verbose</c>).
/// </summary>
public static class CliApp
{
    /// <summary>The tool's command name (the packed .NET tool's <c>ToolCommandName</c>).</summary>
    public const string Name = "kdengine";

    /// <summary>The verbs, in help order.</summary>
    private static Command[] Verbs() =>
    [
        TrainVerb.Create(),
        EvalVerb.Create(),
        PredictVerb.Create(),
        QuantizeVerb.Create(),
        ServeVerb.Create(),
        SynthVerb.Create(),
        ConvertVerb.Create(),
        CacheLogitsVerb.Create(),
        DistillVerb.Create(),
        TuneVerb.Create(),
        QuickstartVerb.Create(),
        ExperimentVerb.Create(),
        DemoVerb.Create(),
    ];

    /// <summary>Global <c>--verbose</c>: stack traces on error (read by name, <c>parse.GetValue&lt;bool&gt;(CliApp.VerboseName)</c>).</summary>
    internal const string VerboseName = "--verbose";

    private const string DeviceName = "--device";

    /// <summary>Options whose value may start with '@' to name a file holding it (not a response file).</summary>
    private static readonly string[] AtFileOptions = ["--ranges"];

    static CliApp() => KdEngine.Data.Parquet.ParquetFormat.Register(); // .parquet inputs for every verb

    /// <summary>The root command with every verb (a fresh tree per call: commands hold no state between runs).</summary>
    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("kdengine: knowledge distillation for CTR ranking — train teachers, distil light students, evaluate and predict.")
        {
            HelpName = Name,
        };
        root.Options.Add(new Option<bool>(VerboseName) { Description = "stack traces on error", Recursive = true });
        var device = CliOptions.Parsed(DeviceName, string.Join("|", KdEngine.Gpu.ComputeDevice.Names), "where models train and run (docs/gpu.md)",
            text => KdEngine.Gpu.ComputeDevice.Names.Contains(text.ToLowerInvariant()) ? text.ToLowerInvariant()
                : throw new CliException($"unknown device '{text}' (expected {string.Join("|", KdEngine.Gpu.ComputeDevice.Names)})."),
            () => "cpu");
        device.Recursive = true;
        root.Options.Add(device);
        foreach (var verb in Verbs()) root.Subcommands.Add(verb);
        // No verb: the overview, and exit code 1 (a script that forgot the verb should not pass).
        root.SetAction(parse =>
        {
            new HelpAction().Invoke(parse);
            return 1;
        });
        return root;
    }

    /// <summary>
    /// Runs the command line <paramref name="args"/>, writing output to <paramref name="stdout"/> and errors to
    /// <paramref name="stderr"/>. Returns the exit code: 0 on success, 1 on any error (printed as one line).
    /// </summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        bool verbose = args.Contains("--verbose");
        try
        {
            var root = BuildRoot();
            var parse = root.Parse(Normalize(args));
            if (parse.Action is ParseErrorAction)
            {
                stderr.WriteLine("error: " + ErrorLine(parse));
                return 1;
            }
            var invocation = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false };
            string device = parse.GetValue<string>(DeviceName) ?? "cpu";
            if (parse.Action is HelpAction) ListVerbsBySummary(parse.CommandResult.Command);
            if (device == "cpu" || parse.Action is HelpAction) return parse.Invoke(invocation);
            // Models, labels and trainers made inside this scope live on the device; host↔device copies happen at
            // batch boundaries only (docs/gpu.md).
            var backend = KdEngine.Gpu.ComputeDevice.Create(device);
            using (KdEngine.Backends.DefaultBackend<float>.Use(backend))
            {
                stdout.WriteLine($"device: {backend.Name}");
                return parse.Invoke(invocation);
            }
        }
        catch (Exception e)
        {
            // Every failure is one line for the user; the trace is for --verbose.
            var message = e is CliException or ArgumentException or IOException or UnauthorizedAccessException or NotSupportedException
                or KdEngine.Data.DataFormatException or KdEngine.Models.ConfigException or KdEngine.Serving.CheckpointFormatException
                or KdEngine.Training.TrainingDivergedException or KdEngine.Gpu.DeviceUnavailableException or InvalidOperationException or KeyNotFoundException
                ? e.Message
                : $"internal error ({e.GetType().Name}): {e.Message}";
            stderr.WriteLine("error: " + message.ReplaceLineEndings(" "));
            if (verbose) stderr.WriteLine(e);
            return 1;
        }
    }

    /// <summary>
    /// True when <paramref name="writer"/> is the console and the console is a terminal: progress then redraws one
    /// status line; otherwise (a pipe, a file, a test's StringWriter) it prints plain lines.
    /// </summary>
    public static bool IsTerminal(TextWriter writer) => ReferenceEquals(writer, Console.Out) && !Console.IsOutputRedirected;

    /// <summary>
    /// <c>help VERB…</c> becomes <c>VERB… --help</c>; <c>--ranges @FILE</c> becomes <c>--ranges=@FILE</c>, so the
    /// parser does not take <c>@FILE</c> for a response file (every other <c>@FILE</c> argument is one: its lines are
    /// arguments).
    /// </summary>
    private static string[] Normalize(string[] args)
    {
        if (args.Length > 0 && args[0] == "help") return [.. args[1..], "--help"];
        var result = new List<string>(args.Length);
        for (int i = 0; i < args.Length; i++)
        {
            if (AtFileOptions.Contains(args[i]) && i + 1 < args.Length && args[i + 1].StartsWith('@'))
            {
                result.Add(args[i] + "=" + args[i + 1]);
                i++;
            }
            else result.Add(args[i]);
        }
        return [.. result];
    }

    /// <summary>
    /// A command's help lists its sub-commands by the first sentence of their descriptions (the summary); each verb's
    /// own help shows the whole description. (The tree is built per run, so shortening it here changes nothing else.)
    /// </summary>
    private static void ListVerbsBySummary(Command command)
    {
        foreach (var sub in command.Subcommands)
            if (sub.Description is { } d && d.IndexOf(". ", StringComparison.Ordinal) is int end and > 0)
                sub.Description = d[..(end + 1)];
    }

    /// <summary>The parse errors as one line, naming the verb, the unknown word or the option at fault.</summary>
    private static string ErrorLine(ParseResult parse)
    {
        var command = parse.CommandResult.Command;
        string path = CommandPath(parse.CommandResult);
        string see = $"see '{string.Join(' ', new[] { Name, path }.Where(s => s.Length > 0))} --help'";
        string prefix = path.Length > 0 ? path + ": " : "";
        if (parse.UnmatchedTokens.Count > 0)
        {
            string word = parse.UnmatchedTokens[0];
            if (word.StartsWith('-')) return $"{prefix}unknown option '{word}' ({see}).";
            if (command.Subcommands.Count > 0)
                return path.Length == 0
                    ? $"unknown command '{word}' (commands: {string.Join(", ", command.Subcommands.Select(c => c.Name))}; {see})."
                    : $"{prefix}unknown subcommand '{word}' (expected {string.Join("|", command.Subcommands.Select(c => c.Name))}; {see}).";
            return $"{prefix}unexpected argument '{word}' (options start with --; {see}).";
        }
        if (command.Action is null && command.Subcommands.Count > 0)
            return $"{prefix}give a subcommand: {string.Join("|", command.Subcommands.Select(c => c.Name))} ({see}).";
        // A bad value first (the user's typo), then what is missing; messages read as one sentence each.
        var messages = parse.Errors.Select(e => e.Message).Distinct()
            .OrderBy(m => m.StartsWith("option '", StringComparison.Ordinal) ? 0 : 1)
            .Select(m => m.StartsWith("Option '", StringComparison.Ordinal) ? "o" + m[1..] : m);
        return prefix + string.Join(" ", messages) + $" ({see})";
    }

    /// <summary>"experiment kd" for the kd sub-verb; "" for the root.</summary>
    private static string CommandPath(System.CommandLine.Parsing.CommandResult result)
    {
        var names = new List<string>();
        for (var r = result; r is not null && r.Command is not RootCommand; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            names.Insert(0, r.Command.Name);
        return string.Join(' ', names);
    }
}

/// <summary>A user error (bad flag, missing file): printed as one line, exit code 1.</summary>
public sealed class CliException(string message) : Exception(message);
