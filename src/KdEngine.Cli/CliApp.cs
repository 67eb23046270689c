using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Cli;

/// <summary>The `kdengine` command line: parses the verb and dispatches; errors become exit code 1 and a one-line message.</summary>
public static class CliApp
{
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
            return args[0] switch
            {
                "demo" => Demo(stdout),
                _ => throw new CliException($"unknown command '{args[0]}'.\n{Usage}"),
            };
        }
        catch (Exception e) when (e is CliException or ArgumentException or InvalidOperationException or IOException)
        {
            stderr.WriteLine($"error: {e.Message}");
            if (verbose) stderr.WriteLine(e);
            return 1;
        }
    }

    private const string Usage = """
        usage: kdengine <command> [options]
          demo      train a 2-layer MLP on synthetic data with the engine and print the loss falling
        options: --verbose (stack traces on error), --help
        """;

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
