using System.Diagnostics;
using System.Globalization;
using System.Text;
using KdEngine.Autograd;
using KdEngine.Backends;
using KdEngine.Gpu;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Training;

// GPU vs CPU benchmark: inference latency (WDL, xDeepFM; batch 1 … 65,536) and training examples/s (batch 1024,
// 4096) on the bench configuration (F = 39, D = 16, 65,536 buckets per field, DNN [400, 400, 400],
// CIN [200, 200, 200] split-half). A Stopwatch harness rather than BenchmarkDotNet: the GPU run has a ~10-minute
// budget, so every (model, device) ladder stops at the first batch whose single run exceeds --max-seconds.
//
//   KdEngine.GpuBench [--out DIR] [--devices cpu,cuda] [--batches 1,4,...] [--train-batches 1024,4096]
//                     [--max-seconds 4] [--buckets 65536] [--quick]

if (args.Length >= 3 && args[0] == "--run-tests")
    return MiniTestRunner.Run(args[1], args[2], Console.Out) == 0 ? 0 : 1;
var opts = Options.Parse(args);
Directory.CreateDirectory(opts.Out);
var rows = new List<Row>();
var inferenceSeconds = new Dictionary<(ModelKind, string), (int Batch, double Seconds)>(); // the last inference point per ladder
var log = new StringBuilder();
void Say(string line) { Console.WriteLine(line); log.AppendLine(line); }

Say($"# KdEngine GPU benchmark — {DateTime.UtcNow:u}");
Say($"machine: {Environment.ProcessorCount} logical CPUs, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}");
Say($"config: F={opts.Fields}, D={opts.Dim}, buckets/field={opts.Buckets}, DNN [{string.Join(",", opts.Dnn)}], CIN [{string.Join(",", opts.Cin)}] split-half");

foreach (var deviceName in opts.Devices)
{
    IBackend<float> backend;
    try { backend = ComputeDevice.Create(deviceName); }
    catch (DeviceUnavailableException e)
    {
        Say($"device {deviceName}: SKIPPED — {e.Message}");
        rows.Add(new Row("device", "-", deviceName, 0, double.NaN, double.NaN, "unavailable: " + e.Message));
        continue;
    }
    Say($"device {deviceName}: {backend.Name}{(backend is GpuBackend g ? $" ({g.Accelerator.Name}, GEMM: {(g.UsesCuBlas ? "cuBLAS" : "tiled kernel")})" : "")}");
    try
    {
        foreach (var kind in new[] { ModelKind.Wdl, ModelKind.XDeepFm })
        {
            Inference(kind, deviceName, backend);
            Training(kind, deviceName, backend);
        }
    }
    finally { (backend as IDisposable)?.Dispose(); }
}

File.WriteAllText(Path.Combine(opts.Out, "results.csv"), Csv(rows));
File.WriteAllText(Path.Combine(opts.Out, "results.md"), Markdown(rows, log.ToString()));
Console.WriteLine($"wrote {Path.Combine(opts.Out, "results.csv")} and results.md");
return 0;

ZooModel Build(ModelKind kind, InputField[] fields) => new(new ModelConfig
{
    Model = kind, EmbeddingDim = opts.Dim, Dnn = opts.Dnn, Cin = opts.Cin, CinSplitHalf = true, Seed = 1,
}, fields);

InputField[] Fields() => Enumerable.Range(0, opts.Fields).Select(i => new InputField($"C{i + 1}", opts.Buckets)).ToArray();

CtrBatch RandomBatch(int size, int seed)
{
    var rng = new Random(seed);
    var ids = new int[size * opts.Fields];
    for (int i = 0; i < ids.Length; i++) ids[i] = rng.Next(opts.Buckets);
    var labels = new float[size];
    for (int i = 0; i < size; i++) labels[i] = rng.Next(4) == 0 ? 1f : 0f;
    return new CtrBatch(size, opts.Fields, ids, labels);
}

void Inference(ModelKind kind, string device, IBackend<float> backend)
{
    using var scope = DefaultBackend<float>.Use(backend);
    var model = Build(kind, Fields());
    model.Training = false;
    foreach (int batch in opts.Batches)
    {
        if (TooSlow(inferenceSeconds.GetValueOrDefault((kind, device)), batch, 1.0, out double predicted))
        {
            Say($"  inference {Name(kind),-8} batch {batch,6}: skipped, predicted {predicted:F1} s per run (> 2 × --max-seconds)");
            rows.Add(new Row("inference", Name(kind), device, batch, double.NaN, double.NaN, $"skipped: predicted {predicted:F1} s"));
            break;
        }
        var data = RandomBatch(batch, batch);
        var logits = new float[batch];
        void Once()
        {
            using var tape = Tape<float>.NoGrad();
            var z = model.Forward(data).Logits;
            z.Backend.Download(z.Storage, logits); // latency includes reading the scores back to the host
        }
        var (median, reps, over) = Measure(Once);
        rows.Add(new Row("inference", Name(kind), device, batch, median * 1e3, batch / median, $"median of {reps}"));
        inferenceSeconds[(kind, device)] = (batch, median);
        Say($"  inference {Name(kind),-8} batch {batch,6}: {median * 1e3,10:F3} ms  {batch / median,12:F0} ex/s  ({reps} runs)");
        if (over) { Say($"  inference {Name(kind)}: stopping the ladder, one run took over {opts.MaxSeconds} s"); break; }
    }
}

void Training(ModelKind kind, string device, IBackend<float> backend)
{
    using var scope = DefaultBackend<float>.Use(backend);
    var model = Build(kind, Fields());
    var objective = new SupervisedObjective(model);
    var optimizer = new Adam(model.Parameters().Select(p => p.Tensor), learningRate: 1e-3f);
    using var tape = new Tape<float>();
    foreach (int batch in opts.TrainBatches)
    {
        // A training step costs about 3 forward passes; skip batches predicted far over the budget.
        if (TooSlow(inferenceSeconds.GetValueOrDefault((kind, device)), batch, 3.0, out double predicted))
        {
            Say($"  training  {Name(kind),-8} batch {batch,6}: skipped, predicted {predicted:F1} s per step (> 2 × --max-seconds)");
            rows.Add(new Row("training", Name(kind), device, batch, double.NaN, double.NaN, $"skipped: predicted {predicted:F1} s"));
            continue;
        }
        int step = 0;
        void Once()
        {
            tape.Reset();
            var loss = objective.Loss(RandomBatch(batch, 77 + step++), step, null);
            _ = loss.Item();
            tape.Backward(loss);
            optimizer.Step();
        }
        var (median, reps, over) = Measure(Once);
        rows.Add(new Row("training", Name(kind), device, batch, median * 1e3, batch / median, $"Adam step, median of {reps}"));
        Say($"  training  {Name(kind),-8} batch {batch,6}: {median * 1e3,10:F3} ms/step  {batch / median,12:F0} ex/s  ({reps} steps)");
        if (over) break;
    }
}

// Linear extrapolation from the last measured point (cost grows at most linearly with the batch beyond small batches).
bool TooSlow((int Batch, double Seconds) last, int batch, double factor, out double predicted)
{
    predicted = last.Batch == 0 ? 0 : last.Seconds * factor * batch / last.Batch;
    return predicted > 2 * opts.MaxSeconds;
}

// One warm-up (kernel compilation, pools), then repeats until ~1 s or 30 runs; the median in seconds.
(double Median, int Reps, bool Over) Measure(Action once)
{
    var sw = Stopwatch.StartNew();
    once();
    double first = sw.Elapsed.TotalSeconds;
    if (first > opts.MaxSeconds) return (first, 1, true);
    var times = new List<double>();
    var total = Stopwatch.StartNew();
    while (times.Count < 3 || (times.Count < 30 && total.Elapsed.TotalSeconds < (opts.Quick ? 0.2 : 1.0)))
    {
        sw.Restart();
        once();
        times.Add(sw.Elapsed.TotalSeconds);
        if (times[^1] > opts.MaxSeconds) break;
    }
    times.Sort();
    double median = times[times.Count / 2];
    return (median, times.Count, median > opts.MaxSeconds);
}

static string Name(ModelKind k) => k == ModelKind.Wdl ? "WDL" : "xDeepFM";

static string Csv(List<Row> rows)
{
    var sb = new StringBuilder("kind,model,device,batch,median_ms,examples_per_s,note\n");
    foreach (var r in rows)
        sb.AppendLine(string.Join(",", r.Kind, r.Model, r.Device, r.Batch.ToString(CultureInfo.InvariantCulture),
            r.MedianMs.ToString("G6", CultureInfo.InvariantCulture), r.ExamplesPerSecond.ToString("F0", CultureInfo.InvariantCulture),
            "\"" + r.Note.Replace("\"", "'") + "\""));
    return sb.ToString();
}

static string Markdown(List<Row> rows, string log)
{
    var sb = new StringBuilder("# GPU benchmark results\n\n```\n" + log + "```\n");
    foreach (var kind in new[] { "inference", "training" })
    {
        var devices = rows.Where(r => r.Kind == kind).Select(r => r.Device).Distinct().ToList();
        if (devices.Count == 0) continue;
        sb.AppendLine($"\n## {(kind == "inference" ? "Inference latency (ms per batch, median)" : "Training (ms per Adam step, examples/s)")}\n");
        sb.AppendLine("| model | batch | " + string.Join(" | ", devices) + " |");
        sb.AppendLine("|---|---:|" + string.Concat(devices.Select(_ => "---:|")));
        foreach (var g in rows.Where(r => r.Kind == kind).GroupBy(r => (r.Model, r.Batch)).OrderBy(g => g.Key.Model).ThenBy(g => g.Key.Batch))
            sb.AppendLine($"| {g.Key.Model} | {g.Key.Batch} | " + string.Join(" | ", devices.Select(d =>
                g.FirstOrDefault(r => r.Device == d) is { } r ? (double.IsNaN(r.MedianMs) ? r.Note : $"{r.MedianMs:F3} ms ({r.ExamplesPerSecond:F0} ex/s)") : "—")) + " |");
    }
    // Where GPU inference overtakes the CPU: the smallest batch from which every measured batch is faster on the GPU.
    sb.AppendLine("\n## GPU vs CPU inference crossover\n");
    foreach (var model in new[] { "WDL", "xDeepFM" })
        foreach (var gpu in rows.Where(r => r.Kind == "inference" && r.Device != "cpu").Select(r => r.Device).Distinct())
        {
            var pairs = rows.Where(r => r.Kind == "inference" && r.Model == model && r.Device == gpu)
                .Select(g => (g.Batch, Gpu: g.MedianMs, Cpu: rows.FirstOrDefault(c => c.Kind == "inference" && c.Model == model && c.Device == "cpu" && c.Batch == g.Batch)?.MedianMs))
                .Where(p => p.Cpu is { } c && !double.IsNaN(c) && !double.IsNaN(p.Gpu)).OrderBy(p => p.Batch).ToList();
            int? cross = null;
            for (int i = pairs.Count - 1; i >= 0 && pairs[i].Gpu < pairs[i].Cpu; i--) cross = pairs[i].Batch;
            sb.AppendLine(pairs.Count == 0 ? $"- {model} on {gpu}: no batch measured on both devices."
                : cross is null ? $"- {model} on {gpu}: the GPU is not faster at the largest batch measured on both ({pairs[^1].Batch})."
                : $"- {model} on {gpu}: GPU faster from batch {cross} upward (of the batches measured on both devices).");
        }
    return sb.ToString();
}

internal sealed record Row(string Kind, string Model, string Device, int Batch, double MedianMs, double ExamplesPerSecond, string Note);

internal sealed record Options(string Out, string[] Devices, int[] Batches, int[] TrainBatches, double MaxSeconds, int Buckets,
    int Fields, int Dim, int[] Dnn, int[] Cin, bool Quick)
{
    public static Options Parse(string[] args)
    {
        var o = new Options("gpu-results", ["cpu", "cuda"], [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536], [1024, 4096], 4.0, 65536,
            39, 16, [400, 400, 400], [200, 200, 200], false);
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
            static int[] Ints(string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray();
            o = args[i] switch
            {
                "--out" => o with { Out = Next() },
                "--devices" => o with { Devices = Next().Split(',', StringSplitOptions.RemoveEmptyEntries) },
                "--batches" => o with { Batches = Ints(Next()) },
                "--train-batches" => o with { TrainBatches = Ints(Next()) },
                "--max-seconds" => o with { MaxSeconds = double.Parse(Next(), CultureInfo.InvariantCulture) },
                "--buckets" => o with { Buckets = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--quick" => o with { Quick = true },
                _ => throw new ArgumentException($"unknown option '{args[i]}' (known: --out --devices --batches --train-batches --max-seconds --buckets --quick)"),
            };
        }
        return o;
    }
}
