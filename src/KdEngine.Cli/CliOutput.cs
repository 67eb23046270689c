using System.Text;
using Spectre.Console;

namespace KdEngine.Cli;

/// <summary>
/// Where a verb prints. On a terminal (the console, not redirected) tables are aligned by Spectre.Console and training
/// shows a live status line under the validation lines; anywhere else (a pipe, a file, a test's StringWriter, CI logs)
/// everything is plain lines: markdown tables, one progress line every few seconds.
/// </summary>
internal sealed class CliOutput(TextWriter writer)
{
    public TextWriter Writer { get; } = writer;

    /// <summary>True when output goes to an interactive terminal (see <see cref="CliApp.IsTerminal"/>).</summary>
    public bool IsTerminal { get; } = CliApp.IsTerminal(writer);

    public void Line(string text = "") => Writer.WriteLine(text);

    /// <summary>
    /// A table with a header row. Plain output: a markdown table, one line per row, cells unpadded. Terminal: the same
    /// markdown, with columns aligned (still pasteable into a document).
    /// </summary>
    public void Table(IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        if (!IsTerminal)
        {
            Writer.WriteLine("| " + string.Join(" | ", header) + " |");
            Writer.WriteLine("|" + string.Concat(header.Select(_ => " --- |")));
            foreach (var row in rows) Writer.WriteLine("| " + string.Join(" | ", row) + " |");
            return;
        }
        var table = new Table { Border = TableBorder.Markdown };
        foreach (var h in header) table.AddColumn(new TableColumn(Markup.Escape(h)));
        foreach (var row in rows) table.AddRow(row.Select(Markup.Escape).ToArray());
        // Rendered without a width limit: a narrow terminal soft-wraps whole lines instead of Spectre splitting cells
        // over several rows, which would break the markdown.
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Writer) });
        console.Profile.Width = 100_000;
        console.Write(table);
    }

    /// <summary>
    /// Runs a training phase. <paramref name="run"/> gets the writer the trainer reports to and whether it may
    /// redraw one status line (the trainer's <c>interactive</c> flag). On a terminal the status line becomes a Spectre
    /// status spinner titled <paramref name="title"/> and the trainer's finished lines (validations) print above it;
    /// elsewhere the trainer writes plain lines to <see cref="Writer"/>.
    /// </summary>
    public T Progress<T>(string title, Func<TextWriter, bool, T> run)
    {
        if (!IsTerminal) return run(Writer, false);
        return AnsiConsole.Status().Start(Markup.Escape(title), context =>
        {
            using var status = new StatusLineWriter(context, title);
            return run(status, true);
        });
    }

    /// <summary>
    /// Reads the trainer's terminal protocol: <c>\r</c> starts the status line over; text without a line end is the
    /// current status; a line end makes the text a finished line, printed above the spinner.
    /// </summary>
    private sealed class StatusLineWriter(StatusContext context, string title) : TextWriter
    {
        private readonly StringBuilder _line = new();

        public override Encoding Encoding => Encoding.UTF8;

        public override void Write(char value)
        {
            switch (value)
            {
                case '\r': _line.Clear(); break;
                case '\n':
                    if (_line.Length > 0) AnsiConsole.WriteLine(_line.ToString());
                    _line.Clear();
                    break;
                default: _line.Append(value); break;
            }
        }

        public override void Write(string? value)
        {
            if (value is null) return;
            foreach (char c in value) Write(c);
            if (_line.Length > 0) ShowStatus();
        }

        public override void WriteLine(string? value)
        {
            // A finished line goes above the spinner as it is; it never passes through the status.
            if (value is not null) foreach (char c in value) Write(c);
            Write('\n');
        }

        /// <summary>The title and the current status line, cut to the terminal's width: a wrapped status would
        /// change the live region's height under the lines printed above it.</summary>
        private void ShowStatus()
        {
            string text = title + "  " + _line;
            int width = Math.Max(20, AnsiConsole.Profile.Width - 4);
            context.Status = Markup.Escape(text.Length <= width ? text : text[..(width - 1)] + "…");
        }
    }
}
