using System.Diagnostics;
using NUnit.Framework;

namespace KdEngine.Distributed.Tests;

/// <summary>Starts this test assembly under <c>mpirun --allow-run-as-root --oversubscribe -np N</c> and collects its output.</summary>
public static class MpiJob
{
    public sealed record Outcome(int ExitCode, string Output, TimeSpan Elapsed, bool TimedOut);

    private static readonly Lazy<string?> Mpirun = new(() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists));

    /// <summary>Skips the calling test (Assert.Ignore) when mpirun is not installed.</summary>
    public static string RequireMpirun() => Mpirun.Value
        ?? Ignore("mpirun is not installed (Debian/Ubuntu: apt-get install openmpi-bin); the MPI tests need Open MPI's launcher and libmpi.so.40.");

    private static string Ignore(string message)
    {
        Assert.Ignore(message);
        return "";
    }

    /// <summary>The worker assembly's path (this assembly: its Main runs a scenario per rank).</summary>
    public static string WorkerDll => typeof(Worker).Assembly.Location;

    /// <summary>Runs <c>mpirun … -np ranks dotnet Worker.dll args</c>; kills the job after <paramref name="limit"/>.</summary>
    public static Outcome Run(int ranks, TimeSpan limit, params string[] args)
    {
        var mpirun = RequireMpirun();
        var psi = new ProcessStartInfo(mpirun)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "--allow-run-as-root", "--oversubscribe", "-np", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture), "dotnet", WorkerDll })
            psi.ArgumentList.Add(a);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Start(psi, limit);
    }

    /// <summary>Runs the worker as a plain process (no mpirun) with extra environment variables.</summary>
    public static Outcome RunAlone(TimeSpan limit, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(WorkerDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in environment) psi.Environment[k] = v;
        return Start(psi, limit);
    }

    private static Outcome Start(ProcessStartInfo psi, TimeSpan limit)
    {
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        var sw = Stopwatch.StartNew();
        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {psi.FileName}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        bool exited = process.WaitForExit(limit);
        if (!exited) process.Kill(entireProcessTree: true);
        process.WaitForExit();
        string output = stdout.Result + stderr.Result;
        TestContext.Out.WriteLine($"$ {psi.FileName} {string.Join(" ", psi.ArgumentList)}  ({sw.Elapsed.TotalSeconds:F1} s, exit {(exited ? process.ExitCode : -1)})");
        TestContext.Out.WriteLine(output);
        return new Outcome(exited ? process.ExitCode : -1, output, sw.Elapsed, !exited);
    }
}
