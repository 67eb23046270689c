using System.Diagnostics;
using System.Globalization;

namespace KdEngine.Data;

/// <summary>
/// Progress of a pass over input files: bytes read (MB/s), rows, and the ETA from the bytes left. On a terminal one line
/// is redrawn (every 0.2 s); otherwise a plain line is printed every 5 s (logs, CI). Silent without a writer.
/// </summary>
public sealed class ReadProgress
{
    private readonly TextWriter? _out;
    private readonly bool _interactive;
    private readonly string _label;
    private readonly long _totalBytes;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private TimeSpan _last;
    private bool _drewLine;

    /// <summary>Progress of a pass labelled <paramref name="label"/> over <paramref name="totalBytes"/> bytes (0 = unknown) to <paramref name="output"/> (null = silent): one redrawn line when <paramref name="interactive"/>, else a plain line every 5 s.</summary>
    public ReadProgress(TextWriter? output, bool interactive, string label, long totalBytes)
    {
        _out = output;
        _interactive = interactive;
        _label = label;
        _totalBytes = totalBytes;
    }

    /// <summary>Bytes read so far.</summary>
    public long Bytes { get; private set; }

    /// <summary>Rows read so far.</summary>
    public long Rows { get; private set; }

    /// <summary>Time since the pass started.</summary>
    public TimeSpan Elapsed => _clock.Elapsed;

    /// <summary>Adds what one chunk read.</summary>
    public void Add(long bytes, long rows)
    {
        Bytes += bytes;
        Rows += rows;
        if (_out is null) return;
        var now = _clock.Elapsed;
        if ((now - _last).TotalSeconds < (_interactive ? 0.2 : 5)) return;
        _last = now;
        string line = Line(now);
        if (_interactive) { _out.Write("\r" + line + "   "); _drewLine = true; }
        else _out.WriteLine(line);
    }

    /// <summary>Prints the summary line (rows, bytes, MB/s, time).</summary>
    public void Finish(string? extra = null)
    {
        if (_out is null) return;
        var t = _clock.Elapsed.TotalSeconds;
        string line = string.Create(CultureInfo.InvariantCulture,
            $"{_label}: {Rows:N0} rows, {Megabytes(Bytes)} in {t:F1} s ({Bytes / 1e6 / Math.Max(t, 1e-9):F0} MB/s){extra}");
        if (_interactive && _drewLine) _out.Write("\r");
        _out.WriteLine(line + (_interactive && _drewLine ? new string(' ', 20) : ""));
    }

    private string Line(TimeSpan now)
    {
        double t = Math.Max(now.TotalSeconds, 1e-9);
        double rate = Bytes / t;
        string eta = _totalBytes > 0 && rate > 0 ? TimeSpan.FromSeconds(Math.Max(0, (_totalBytes - Bytes) / rate)).ToString(@"hh\:mm\:ss", CultureInfo.InvariantCulture) : "?";
        string pct = _totalBytes > 0 ? string.Create(CultureInfo.InvariantCulture, $" ({100.0 * Bytes / _totalBytes:F0} %)") : "";
        return string.Create(CultureInfo.InvariantCulture, $"{_label}: {Megabytes(Bytes)}{pct}  {Rows:N0} rows  {rate / 1e6:F0} MB/s  ETA {eta}");
    }

    internal static string Megabytes(long bytes) => bytes >= 1e9
        ? string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e9:F2} GB")
        : string.Create(CultureInfo.InvariantCulture, $"{bytes / 1e6:F1} MB");
}
