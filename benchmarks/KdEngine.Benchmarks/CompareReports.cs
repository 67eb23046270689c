using System.Globalization;
using System.Text.Json;

namespace KdEngine.Benchmarks;

/// <summary>
/// Joins two BenchmarkDotNet JSON reports of the same suite (a "before" and an "after" build) by benchmark and
/// parameters, and prints one markdown row per case: mean and median of each, the after/before ratio of the medians and
/// the allocated bytes. <c>dotnet run -c Release --project benchmarks/KdEngine.Benchmarks -- compare-reports BEFORE.json AFTER.json</c>
/// (benchmarks/predictor-before-after.sh runs the Predictor suite for two commits and calls this).
/// </summary>
public static class CompareReports
{
    public static void Run(string[] args)
    {
        if (args.Length != 2) throw new ArgumentException("compare-reports BEFORE.json AFTER.json");
        var before = Read(args[0]);
        var after = Read(args[1]);
        Console.WriteLine("| benchmark | parameters | before mean | after mean | before median | after median | after / before (median) | allocated before / after |");
        Console.WriteLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |");
        foreach (var (key, b) in before)
        {
            if (!after.TryGetValue(key, out var a)) { Console.WriteLine($"| {key.Method} | {key.Parameters} | {Time(b.Mean)} | (missing) | | | | |"); continue; }
            Console.WriteLine($"| {key.Method} | {key.Parameters} | {Time(b.Mean)} | {Time(a.Mean)} | {Time(b.Median)} | {Time(a.Median)} | " +
                $"{(a.Median / b.Median).ToString("F3", CultureInfo.InvariantCulture)} | {b.Allocated} B / {a.Allocated} B |");
        }
        foreach (var key in after.Keys.Where(k => !before.ContainsKey(k)))
            Console.WriteLine($"| {key.Method} | {key.Parameters} | (missing) | {Time(after[key].Mean)} | | | | |");
    }

    private static string Time(double ns) => ns switch
    {
        >= 1e6 => (ns / 1e6).ToString("F3", CultureInfo.InvariantCulture) + " ms",
        >= 1e3 => (ns / 1e3).ToString("F2", CultureInfo.InvariantCulture) + " µs",
        _ => ns.ToString("F1", CultureInfo.InvariantCulture) + " ns",
    };

    private readonly record struct Key(string Method, string Parameters);
    private readonly record struct Stats(double Mean, double Median, long Allocated);

    private static Dictionary<Key, Stats> Read(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var result = new Dictionary<Key, Stats>();
        foreach (var b in doc.RootElement.GetProperty("Benchmarks").EnumerateArray())
        {
            string method = $"{b.GetProperty("Type").GetString()}.{b.GetProperty("Method").GetString()}";
            string parameters = b.TryGetProperty("Parameters", out var p) ? p.GetString() ?? "" : "";
            if (!b.TryGetProperty("Statistics", out var s) || s.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{path}: {method} [{parameters}] has no statistics (did it fail?).");
            long allocated = b.TryGetProperty("Memory", out var m) && m.ValueKind == JsonValueKind.Object
                && m.TryGetProperty("BytesAllocatedPerOperation", out var bytes) && bytes.ValueKind == JsonValueKind.Number ? bytes.GetInt64() : -1;
            result[new Key(method, parameters)] = new Stats(s.GetProperty("Mean").GetDouble(), s.GetProperty("Median").GetDouble(), allocated);
        }
        return result;
    }
}
