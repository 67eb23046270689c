using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using KdEngine.Cli;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Pipelines;
using NUnit.Framework;

namespace KdEngine.Server.Tests;

/// <summary>The service against the command line: the same scores as <c>kdengine predict</c>, and <c>kdengine serve</c> as a real process.</summary>
[TestFixture]
public sealed class CliServeTests
{
    private TempDir _dir = null!;
    private string _data = "";

    [OneTimeSetUp]
    public void WriteData()
    {
        // 1,500 Criteo rows: `predict` scores them in batches of 1,024 + 476, as the service chunks one request of them.
        _dir = new TempDir();
        _data = _dir.File("rows.csv");
        File.WriteAllLines(_data, File.ReadLines(DataPaths.FindCriteoSample()).Take(1501));
    }

    [OneTimeTearDown]
    public void Remove() => _dir.Dispose();

    private string Checkpoint(ModelConfig config, string file)
    {
        var source = new DataSource(_data) { Format = DataFormat.Criteo };
        var data = CtrPipeline.Prepare(source, new SplitOptions(), new PreprocessorOptions { MinCount = 2 });
        var path = _dir.File(file);
        CtrPipeline.Save(path, CtrPipeline.BuildModel(config, data.Fields), data.Preprocessor, source);
        return path;
    }

    private static (int Code, string Output) Cli(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliApp.Run(args, stdout, stderr);
        return (code, stdout + stderr.ToString());
    }

    /// <summary>The file's rows as JSON instances: numbers as JSON numbers (their text from the file), categories as strings, empty cells left out.</summary>
    private string InstancesBody()
    {
        var lines = File.ReadAllLines(_data);
        var header = lines[0].Split(',');
        var sb = new StringBuilder("{\"instances\": [");
        for (int i = 1; i < lines.Length; i++)
        {
            var cells = lines[i].Split(',');
            sb.Append(i > 1 ? ",{" : "{");
            bool first = true;
            for (int c = 1; c < header.Length; c++) // column 0 is the label
            {
                if (cells[c].Length == 0) continue;
                sb.Append(first ? "" : ",").Append('"').Append(header[c]).Append("\":");
                first = false;
                sb.Append(header[c][0] == 'I' ? cells[c] : "\"" + cells[c] + "\"");
            }
            sb.Append('}');
        }
        return sb.Append("]}").ToString();
    }

    [TestCase(ModelKind.Dnn)]
    [TestCase(ModelKind.XDeepFm)]
    public async Task Scores_equal_kdengine_predict_on_the_same_rows_bit_for_bit(ModelKind kind)
    {
        var model = Checkpoint(new ModelConfig { Model = kind, EmbeddingDim = 6, Dnn = [32, 16], Cin = [12, 8], CinSplitHalf = true, Seed = 5 }, $"{kind}.kde");
        var scoresFile = _dir.File($"{kind}.scores.csv");
        var (code, output) = Cli("predict", "--model", model, "--data", _data, "--out", scoresFile);
        Assert.That(code, Is.EqualTo(0), output);
        var predicted = File.ReadLines(scoresFile).Skip(1).Select(l => float.Parse(l, CultureInfo.InvariantCulture)).ToArray();
        Assert.That(predicted, Has.Length.EqualTo(1500));

        var options = TestService.Options(("m", model));
        options.MaxCandidates = 2000;
        await using var service = await TestService.StartAsync(options);
        Assert.That(options.MaxBatchRows, Is.EqualTo(1024), "the service chunks a request as predict batches a file: 1,024 rows");
        var (status, body, _) = await service.PostJsonAsync("/v1/models/m:predict", InstancesBody());
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        var served = body.GetProperty("scores").EnumerateArray().Select(x => x.GetSingle()).ToArray();
        Assert.That(served, Has.Length.EqualTo(1500));
        for (int i = 0; i < served.Length; i++)
            Assert.That(BitConverter.SingleToInt32Bits(served[i]), Is.EqualTo(BitConverter.SingleToInt32Bits(predicted[i])),
                $"row {i}: served {served[i]:R}, predict wrote {predicted[i]:R}");
        Assert.That(predicted.Distinct().Count(), Is.GreaterThan(100), "the rows must score differently for the comparison to mean something");
    }

    [Test]
    public void Quickstart_saves_its_three_models_and_the_service_takes_them()
    {
        var small = _dir.File("small.csv");
        File.WriteAllLines(small, File.ReadLines(_data).Take(401));
        var outDir = _dir.File("quickstart");
        var (code, output) = Cli("quickstart", "--data", small, "--epochs", "1", "--out", outDir);
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain("kdengine serve --model student=" + Path.Combine(outDir, "student.kde")));
        foreach (var (file, kind) in new[] { ("teacher.kde", ModelKind.XDeepFm), ("student-alone.kde", ModelKind.Dnn), ("student.kde", ModelKind.Dnn) })
        {
            var version = KdEngine.Server.Models.ModelLoader.Load("m", Path.Combine(outDir, file), 1);
            Assert.That(version.Kind, Is.EqualTo(kind), file);
        }
    }

    [Test]
    public void Serve_refuses_bad_options_with_one_line()
    {
        var (code, output) = Cli("serve", "--model", "nofile");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(output, Does.Contain("expects NAME=FILE, got 'nofile'"));
        (code, output) = Cli("serve", "--model", "m=" + _dir.File("missing.kde"));
        Assert.That(code, Is.EqualTo(1));
        Assert.That(output, Does.Contain("not found"));
        (code, output) = Cli("serve", "--model", "m=x", "--port", "70000");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(output, Does.Contain("--port"));
        (code, output) = Cli("serve", "--help");
        Assert.That(code, Is.EqualTo(0));
        Assert.That(output, Does.Match(@"--max-batch-rows <N>.*\[default: 1024\]"));
    }

    [Test]
    [Platform(Exclude = "Win", Reason = "sends SIGTERM with kill(1)")]
    public async Task Kdengine_serve_drains_on_sigterm_and_exits_0()
    {
        var model = Checkpoint(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 4, Dnn = [8], Seed = 1 }, "sigterm.kde");
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
        var start = new ProcessStartInfo(dotnet)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "KdEngine.Cli.dll"), "serve", "--model", "m=" + model, "--port", "0" })
            start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var output = new StringBuilder();
        var address = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (output) output.AppendLine(e.Data);
            if (Regex.Match(e.Data, @"kdengine serve: listening on (http://\S+/)") is { Success: true } m) address.TrySetResult(new Uri(m.Groups[1].Value));
        };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var baseAddress = await address.Task.WaitAsync(TimeSpan.FromSeconds(120));
            using var client = new HttpClient { BaseAddress = baseAddress };
            var deadline = DateTime.UtcNow.AddSeconds(120);
            while ((await client.GetAsync("/readyz")).StatusCode != HttpStatusCode.OK && DateTime.UtcNow < deadline) await Task.Delay(50);
            using var response = await client.PostAsync("/v1/models/m:predict", new StringContent("""{"context": {"I1": 2}, "candidates": [{"C1": "68fd1e64"}, {}]}"""));
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), await response.Content.ReadAsStringAsync());
            Assert.That(JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("scores").GetArrayLength(), Is.EqualTo(2));

            using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(CultureInfo.InvariantCulture)])) await kill.WaitForExitAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await process.WaitForExitAsync(timeout.Token);
            process.WaitForExit(); // flushes the redirected output
            lock (output)
            {
                Assert.That(process.ExitCode, Is.EqualTo(0), output.ToString());
                Assert.That(output.ToString(), Does.Contain("kdengine serve: stopped"));
            }
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }
}
