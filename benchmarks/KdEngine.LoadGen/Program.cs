using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using KdEngine.Data;
using KdEngine.LoadGen;
using KdEngine.Serving;

// A bounded load generator for `kdengine serve` on 127.0.0.1 (see docs/serving.md, "Load test"; benchmarks/serve-load.sh
// runs the whole matrix). Two modes:
//   measure  throughput and latency per (candidates, concurrency) cell over HTTP, and the same Predictor in-process
//   swap     hot swaps under load: alternate two checkpoints (plus a corrupt file), check every response's scores
//            against the checkpoint its version names, count failures
var inv = CultureInfo.InvariantCulture;
if (args.Length == 0 || args[0] is not ("measure" or "swap"))
{
    Console.Error.WriteLine("usage: KdEngine.LoadGen measure --url URL --model NAME --checkpoint FILE [--label TEXT] [--data CSV] [--concurrency 1,8,32,128]\n" +
        "                         [--candidates 100,1000] [--seconds 10] [--max-requests 5000] [--warmup 2] [--out FILE.md]\n" +
        "       KdEngine.LoadGen swap --url URL --model NAME --serving FILE --a FILE --b FILE --corrupt FILE [--swaps 10] [--concurrency 8]\n" +
        "                         [--candidates 100] [--interval-ms 500] [--data CSV] [--out FILE.md]");
    return 2;
}
var opts = new Dictionary<string, string>(StringComparer.Ordinal);
for (int i = 1; i < args.Length; i += 2)
{
    if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length) { Console.Error.WriteLine($"bad argument '{args[i]}'"); return 2; }
    opts[args[i][2..]] = args[i + 1];
}
string Opt(string key, string? fallback = null) => opts.TryGetValue(key, out var v) ? v : fallback ?? throw new ArgumentException($"--{key} is required");
int[] Ints(string key, string fallback) => Opt(key, fallback).Split(',').Select(s => int.Parse(s, inv)).ToArray();
var url = new Uri(Opt("url"));
if (!IPAddress.IsLoopback(Dns.GetHostAddresses(url.Host)[0])) { Console.Error.WriteLine("the load generator only targets loopback addresses"); return 2; }
string model = Opt("model");
string data = Opt("data", DataPaths.FindCriteoSample());
var predictUri = new Uri(url, $"/v1/models/{model}:predict");
string? outFile = opts.GetValueOrDefault("out");
void Report(string line)
{
    Console.WriteLine(line);
    if (outFile is not null) File.AppendAllText(outFile, line + "\n");
}
// The service's probability: σ(z) in double, rounded once to float, element by element (KdEngine.Server's Probabilities).
static float Probability(float z) => (float)(1.0 / (1.0 + Math.Exp(-(double)z)));

if (args[0] == "measure")
{
    var predictor = Predictor.Load(Opt("checkpoint"));
    string label = Opt("label", model);
    double seconds = double.Parse(Opt("seconds", "10"), inv), warmup = double.Parse(Opt("warmup", "2"), inv);
    int maxRequests = int.Parse(Opt("max-requests", "5000"), inv);
    bool inProcess = Opt("in-process", "true") == "true";
    Report($"| model | candidates | concurrency | HTTP req/s | HTTP candidates/s | p50 ms | p99 ms | p99.9 ms | errors | in-process candidates/s (threads) | in-process p50 ms | in-process ÷ HTTP |");
    Report("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    foreach (int candidates in Ints("candidates", "100,1000"))
    {
        var workload = Workload.Build(data, candidates, count: 16, seed: candidates);
        foreach (int concurrency in Ints("concurrency", "1,8,32,128"))
        {
            using var client = Runner.Client(concurrency);
            var http = await Runner.Http(client, predictUri, workload, concurrency, seconds, maxRequests, warmup);
            string local = "", localP50 = "", ratio = "";
            if (inProcess)
            {
                int threads = Math.Min(concurrency, Environment.ProcessorCount);
                var cell = Runner.InProcess(predictor, workload, threads, seconds, maxRequests, warmup);
                local = string.Create(inv, $"{cell.RowsPerSecond:N0} ({threads})");
                localP50 = cell.Percentile(50).ToString("F2", inv);
                ratio = (cell.RowsPerSecond / http.RowsPerSecond).ToString("F2", inv) + "×";
            }
            Report(string.Create(inv, $"| {label} | {candidates} | {concurrency} | {http.RequestsPerSecond:F1} | {http.RowsPerSecond:N0} | {http.Percentile(50):F2} | {http.Percentile(99):F2} | {http.Percentile(99.9):F2} | {http.Errors} | {local} | {localP50} | {ratio} |"));
        }
    }
    return 0;
}

// ---------------------------------------------------------------- swap drill
{
    string serving = Opt("serving"), fileA = Opt("a"), fileB = Opt("b"), corrupt = Opt("corrupt");
    int swaps = int.Parse(Opt("swaps", "10"), inv), concurrency = int.Parse(Opt("concurrency", "8"), inv);
    int candidates = int.Parse(Opt("candidates", "100"), inv), interval = int.Parse(Opt("interval-ms", "500"), inv);
    var workload = Workload.Build(data, candidates, count: 16, seed: 7);
    var expected = new Dictionary<string, float[][]>(StringComparer.Ordinal);
    var names = new Dictionary<string, string>(StringComparer.Ordinal);
    foreach (var (file, name) in new[] { (fileA, "A"), (fileB, "B") })
    {
        var loaded = ModelCheckpoint.Load(file);
        var sha = loaded.Metadata[SafeTensorsFile.DataSha256Key][..16];
        var predictor = new Predictor(loaded.Model, loaded.Preprocessor);
        expected[sha] = workload.Requests.Select(r =>
        {
            var p = new float[r.Records.Length];
            predictor.PredictRaw(r.Records, p);
            return p.Select(Probability).ToArray();
        }).ToArray();
        names[sha] = name;
    }
    if (expected.Count != 2) { Console.Error.WriteLine("--a and --b are the same checkpoint"); return 2; }
    var index = workload.Requests.Select((r, i) => (r, i)).ToDictionary(x => x.r, x => x.i);

    int ok = 0, failed = 0, mismatched = 0, exact = 0;
    double worst = 0;
    var versions = new ConcurrentDictionary<string, int>();
    var problems = new ConcurrentQueue<string>();
    void Check(Workload.Request request, HttpStatusCode status, byte[] body)
    {
        if (status != HttpStatusCode.OK) { Interlocked.Increment(ref failed); problems.Enqueue($"{(int)status}: {Encoding.UTF8.GetString(body)}"); return; }
        using var doc = JsonDocument.Parse(body);
        var root = doc.RootElement;
        string checkpoint = root.GetProperty("checkpoint").GetString()!;
        versions.AddOrUpdate($"v{root.GetProperty("version").GetInt64()} = {names.GetValueOrDefault(checkpoint, checkpoint)}", 1, (_, n) => n + 1);
        if (!expected.TryGetValue(checkpoint, out var byRequest)) { Interlocked.Increment(ref mismatched); problems.Enqueue($"unknown checkpoint {checkpoint}"); return; }
        var want = byRequest[index[request]];
        var got = root.GetProperty("scores").EnumerateArray().Select(x => x.GetSingle()).ToArray();
        bool same = got.Length == want.Length, bits = same;
        double diff = 0;
        for (int i = 0; same && i < got.Length; i++)
        {
            diff = Math.Max(diff, Math.Abs(got[i] - want[i]));
            bits &= BitConverter.SingleToInt32Bits(got[i]) == BitConverter.SingleToInt32Bits(want[i]);
        }
        lock (problems) worst = Math.Max(worst, diff);
        // A row's score may differ in the last bits when it shares a Predictor call with other rows (xDeepFM's CIN
        // tiles); two different checkpoints differ by orders of magnitude more than 1e-5.
        if (!same || diff > 1e-5) { Interlocked.Increment(ref mismatched); problems.Enqueue($"checkpoint {checkpoint}: max |Δ| {diff}"); return; }
        Interlocked.Increment(ref ok);
        if (bits) Interlocked.Increment(ref exact);
    }

    using var client = Runner.Client(concurrency);
    using var stop = new CancellationTokenSource();
    int refused = 0, accepted = 0;
    var swapper = Task.Run(async () =>
    {
        int attempt = 0;
        while (accepted < swaps)
        {
            await Task.Delay(interval);
            attempt++;
            bool offerCorrupt = attempt == 4 || attempt == 9;
            string source = offerCorrupt ? corrupt : accepted % 2 == 0 ? fileB : fileA;
            File.Copy(source, serving + ".incoming", overwrite: true);
            File.Move(serving + ".incoming", serving, overwrite: true);
            using var response = await client.PostAsync(new Uri(url, $"/v1/models/{model}:reload"), new StringContent(""));
            string text = await response.Content.ReadAsStringAsync();
            if (offerCorrupt)
            {
                if ((int)response.StatusCode == 422) { refused++; Console.WriteLine($"corrupt file refused: {text}"); }
                else problems.Enqueue($"the corrupt file was not refused: {(int)response.StatusCode} {text}");
            }
            else if (response.StatusCode == HttpStatusCode.OK) { accepted++; Console.WriteLine($"swap {accepted}: {text}"); }
            else { problems.Enqueue($"reload of {Path.GetFileName(source)} failed: {(int)response.StatusCode} {text}"); break; }
        }
        await Task.Delay(interval);
        stop.Cancel();
    });
    var load = Runner.Http(client, predictUri, workload, concurrency, seconds: 3600, maxRequests: int.MaxValue, warmupSeconds: 0, check: Check);
    // The load phase runs until the swapper is done; then its clients finish their last request.
    await swapper;
    var result = await StopAfter(load, stop.Token);
    Report(string.Create(inv, $"swap drill: {swaps} accepted swaps (A/B alternating), corrupt file offered twice and refused {refused}×; {concurrency} clients × {candidates} candidates; " +
        $"{ok + failed + mismatched} requests: {failed} failed, {mismatched} scored by another version than reported, {ok} matched their version ({exact} bit for bit, max |Δ| {worst:G3}); versions seen: {string.Join(", ", versions.OrderBy(v => v.Key).Select(v => $"{v.Key} ×{v.Value}"))}"));
    foreach (var p in problems.Take(10)) Console.Error.WriteLine(p);
    return failed == 0 && mismatched == 0 && refused == 2 && problems.IsEmpty ? 0 : 1;

    static async Task<CellResult> StopAfter(Task<CellResult> load, CancellationToken stop)
    {
        try { await Task.Delay(Timeout.Infinite, stop); } catch (OperationCanceledException) { }
        Runner.StopAll = true;
        return await load;
    }
}
