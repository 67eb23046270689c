using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Cli;

/// <summary>
/// The <c>kdengine</c> command line: parses the verb and dispatches. Any error becomes exit code 1 and a one-line
/// <c>error: …</c> message on stderr (the stack trace only with <c>--verbose</c>).
/// </summary>
public static class CliApp
{
    private sealed record Verb(string Name, string Summary, Func<string[], TextWriter, int> Run);

    private static readonly Verb[] Verbs =
    [
        new("train", "train a zoo model (lr|fm|dnn|wdl|deepfm|dcn|xdeepfm|ffm|dcnv2) on a data file", Commands.Train),
        new("eval", "evaluate a saved model on a whole data file (AUC, logloss)", Commands.Eval),
        new("predict", "write one click probability per row of a data file", Commands.Predict),
        new("synth", "write seeded synthetic CTR data (Criteo-like TSV or libSVM)", Commands.Synth),
        new("cache-logits", "compute a teacher's logits over a data file once and store them beside it", Commands.CacheLogits),
        new("distill", "distil a teacher into a student (logits|hint|rocket|double-dnn|pfd|ensemble)", Commands.Distill),
        new("quickstart", "the main job: xDeepFM teacher, DNN student alone and distilled, on the Criteo sample", Quickstart.Run),
        new("experiment", "experiments for the docs (experiment zoo --seeds 5)", Experiment.Run),
        new("demo", "train a 2-layer MLP on synthetic data with the bare engine", (_, o) => Demo(o)),
    ];

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        bool verbose = args.Contains("--verbose");
        try
        {
            if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
            {
                stdout.WriteLine(Usage);
                return args.Length == 0 ? 1 : 0;
            }
            var verb = Verbs.FirstOrDefault(v => v.Name == args[0])
                ?? throw new CliException($"unknown command '{args[0]}' (commands: {string.Join(", ", Verbs.Select(v => v.Name))}; see 'kdengine --help').");
            var (rest, device) = TakeDevice(args[1..]);
            if (device is null or "cpu") return verb.Run(rest, stdout);
            // Models, labels and trainers made inside this scope live on the device; host↔device copies happen at
            // batch boundaries only (docs/gpu.md).
            var backend = KdEngine.Gpu.ComputeDevice.Create(device);
            using (KdEngine.Backends.DefaultBackend<float>.Use(backend))
            {
                stdout.WriteLine($"device: {backend.Name}");
                return verb.Run(rest, stdout);
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

    /// <summary>Removes the global <c>--device NAME</c> option (cpu|cuda|opencl|ilgpu-cpu) from the arguments.</summary>
    private static (string[] Remaining, string? Device) TakeDevice(string[] args)
    {
        int i = Array.IndexOf(args, "--device");
        if (i < 0) return (args, null);
        if (i + 1 >= args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal))
            throw new CliException($"option '--device' needs a value ({string.Join("|", KdEngine.Gpu.ComputeDevice.Names)}).");
        string device = args[i + 1].ToLowerInvariant();
        if (!KdEngine.Gpu.ComputeDevice.Names.Contains(device))
            throw new CliException($"option '--device': unknown device '{args[i + 1]}' (expected {string.Join("|", KdEngine.Gpu.ComputeDevice.Names)}).");
        return ([.. args[..i], .. args[(i + 2)..]], device);
    }

    private static string Usage =>
        "usage: kdengine <command> [options]   (kdengine <command> --help for its options)" + Environment.NewLine +
        string.Join(Environment.NewLine, Verbs.Select(v => $"  {v.Name,-13}{v.Summary}")) + Environment.NewLine +
        "common options: --device cpu|cuda|opencl|ilgpu-cpu (where models train and run; default cpu), --verbose (stack traces on error), --help";

    /// <summary>Trains a 2-layer MLP with plain SGD on a seeded synthetic binary task; prints loss per epoch.</summary>
    private static int Demo(TextWriter stdout)
    {
        const int n = 512, inF = 16, hidden = 32;
        var rng = new Random(7);
        var xs = new float[n * inF];
        var ys = new float[n];
        for (int i = 0; i < n; i++)
        {
            float s = 0;
            for (int j = 0; j < inF; j++) { xs[i * inF + j] = (float)(rng.NextDouble() * 2 - 1); s += xs[i * inF + j] * (j % 3 - 1); }
            ys[i] = s * s > 1f ? 1f : 0f; // a non-linear target the MLP must learn
        }
        var x = Tensor<float>.FromArray(xs, n, inF);
        var y = Tensor<float>.FromArray(ys, n, 1);
        var w1 = Init(hidden, inF, rng); var b1 = Tensor<float>.Zeros(hidden).RequireGrad();
        var w2 = Init(1, hidden, rng); var b2 = Tensor<float>.Zeros(1).RequireGrad();
        Tensor<float>[] parameters = [w1, b1, w2, b2];
        using var tape = new Tape<float>();
        for (int epoch = 1; epoch <= 200; epoch++)
        {
            tape.Reset();
            foreach (var p in parameters) p.ZeroGrad();
            var loss = Op.BceWithLogits(Op.Linear(Op.Relu(Op.Linear(x, w1, b1)), w2, b2), y);
            float value = loss.Item();
            tape.Backward(loss);
            foreach (var p in parameters) p.Backend.Axpy(-0.5f, p.Grad!.Storage, p.Storage, p.Length);
            if (epoch == 1 || epoch % 25 == 0) stdout.WriteLine($"epoch {epoch,3}  loss {value:F4}");
        }
        return 0;
    }

    private static Tensor<float> Init(int rows, int cols, Random rng)
    {
        var a = new float[rows * cols];
        float scale = MathF.Sqrt(2f / cols);
        for (int i = 0; i < a.Length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return Tensor<float>.FromArray(a, rows, cols).RequireGrad();
    }
}

/// <summary>A user error (bad flag, missing file): printed as one line, exit code 1.</summary>
public sealed class CliException(string message) : Exception(message);
