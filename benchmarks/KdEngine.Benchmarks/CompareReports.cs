using System.Globalization;
using System.Text;
using System.Text.Json;

namespace KdEngine.Benchmarks;

/// <summary>
/// Side-by-side table of two BenchmarkDotNet runs of the same suites (e.g. the baseline commit and this tree):
/// <c>compare-reports BASELINE_RESULTS_DIR CURRENT_RESULTS_DIR [--title TEXT]</c> reads every <c>*-report*.json</c>
/// (BenchmarkDotNet's JSON exporter: <c>--exporters json</c>) in each directory and prints, per benchmark and parameter
/// set, both medians, the speed-up (baseline / current) and the current run's allocation per operation.
/// </summary>
public static class CompareReports
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private sealed record Result(string Key, double MedianNs, long? Allocated);

    public static int Run(string[] args)
    {
        if (args.Length < 2)
        {
            Console.Error.WriteLine("usage: compare-reports BASELINE_RESULTS_DIR CURRENT_RESULTS_DIR [--title TEXT]");
            return 2;
        }
        int ti = Array.IndexOf(args, "--title");
        string title = ti >= 0 && ti + 1 < args.Length ? args[ti + 1] : "baseline vs current";
        var baseline = Load(args[0]);
        var current = Load(args[1]);
        if (baseline.Count == 0 || current.Count == 0)
        {
            Console.Error.WriteLine($"no BenchmarkDotNet JSON reports in {(baseline.Count == 0 ? args[0] : args[1])} (run with --exporters json).");
            return 1;
        }
        var sb = new StringBuilder();
        sb.AppendLine($"**{title}** (BenchmarkDotNet medians; speed-up = baseline / current, above 1: current is faster)").AppendLine();
        sb.AppendLine("| benchmark | baseline | current | speed-up | current allocated |");
        sb.AppendLine("|---|---:|---:|---:|---:|");
        foreach (var c in current.Values.OrderBy(r => r.Key, StringComparer.Ordinal))
        {
            baseline.TryGetValue(c.Key, out var b);
            string ratio = b is null ? "–" : (b.MedianNs / c.MedianNs).ToString("F2", Inv) + "×";
            sb.AppendLine($"| {c.Key} | {(b is null ? "–" : Time(b.MedianNs))} | {Time(c.MedianNs)} | {ratio} | {(c.Allocated is { } a ? a + " B" : "–")} |");
        }
        Console.WriteLine(sb.ToString());
        return 0;
    }

    private static Dictionary<string, Result> Load(string dir)
    {
        var results = new Dictionary<string, Result>(StringComparer.Ordinal);
        if (!Directory.Exists(dir)) return results;
        foreach (var file in Directory.GetFiles(dir, "*-report*.json"))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            foreach (var b in doc.RootElement.GetProperty("Benchmarks").EnumerateArray())
            {
                if (!b.TryGetProperty("Statistics", out var s) || s.ValueKind != JsonValueKind.Object) continue;   // a failed cell
                string type = b.GetProperty("Type").GetString() ?? "", method = b.GetProperty("Method").GetString() ?? "";
                string parameters = b.TryGetProperty("Parameters", out var p) ? p.GetString() ?? "" : "";
                long? alloc = b.TryGetProperty("Memory", out var m) && m.ValueKind == JsonValueKind.Object
                    && m.TryGetProperty("BytesAllocatedPerOperation", out var a) && a.ValueKind == JsonValueKind.Number ? a.GetInt64() : null;
                string key = $"{type}.{method} {parameters.Replace("&", ", ", StringComparison.Ordinal)}";
                results[key] = new Result(key, s.GetProperty("Median").GetDouble(), alloc);
            }
        }
        return results;
    }

    private static string Time(double ns) => ns switch
    {
        < 1e6 => (ns / 1e3).ToString(ns < 1e4 ? "F1" : "F0", Inv) + " µs",
        < 1e9 => (ns / 1e6).ToString(ns < 1e7 ? "F2" : "F1", Inv) + " ms",
        _ => (ns / 1e9).ToString("F2", Inv) + " s",
    };
}
