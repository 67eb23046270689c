using System.CommandLine;
using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Cli.Verbs;

/// <summary><c>demo</c>: a 2-layer MLP trained with plain SGD on a seeded synthetic task, with the bare engine (tensors, tape, ops).</summary>
internal static class DemoVerb
{
    private const int Rows = 512, Inputs = 16, Hidden = 32, Epochs = 200;
    private const float LearningRate = 0.5f;

    public static Command Create()
    {
        var command = new Command("demo",
            $"Train a 2-layer MLP ({Inputs} → {Hidden} → 1) with plain SGD (lr {LearningRate}) for {Epochs} epochs on {Rows} seeded synthetic rows, " +
            "with the bare engine (tensors, tape, ops); prints the loss every 25 epochs.");
        command.SetAction(parse => Run(parse.InvocationConfiguration.Output));
        return command;
    }

    private static int Run(TextWriter stdout)
    {
        var rng = new Random(7);
        var xs = new float[Rows * Inputs];
        var ys = new float[Rows];
        for (int i = 0; i < Rows; i++)
        {
            float s = 0;
            for (int j = 0; j < Inputs; j++) { xs[i * Inputs + j] = (float)(rng.NextDouble() * 2 - 1); s += xs[i * Inputs + j] * (j % 3 - 1); }
            ys[i] = s * s > 1f ? 1f : 0f; // a non-linear target the MLP must learn
        }
        var x = Tensor<float>.FromArray(xs, Rows, Inputs);
        var y = Tensor<float>.FromArray(ys, Rows, 1);
        var w1 = Init(Hidden, Inputs, rng); var b1 = Tensor<float>.Zeros(Hidden).RequireGrad();
        var w2 = Init(1, Hidden, rng); var b2 = Tensor<float>.Zeros(1).RequireGrad();
        Tensor<float>[] parameters = [w1, b1, w2, b2];
        using var tape = new Tape<float>();
        for (int epoch = 1; epoch <= Epochs; epoch++)
        {
            tape.Reset();
            foreach (var p in parameters) p.ZeroGrad();
            var loss = Op.BceWithLogits(Op.Linear(Op.Relu(Op.Linear(x, w1, b1)), w2, b2), y);
            float value = loss.Item();
            tape.Backward(loss);
            foreach (var p in parameters) p.Backend.Axpy(-LearningRate, p.Grad!.Storage, p.Storage, p.Length);
            if (epoch == 1 || epoch % 25 == 0) stdout.WriteLine($"epoch {epoch,3}  loss {value:F4}");
        }
        return 0;
    }

    /// <summary>A [rows, cols] weight (Linear's [out, in] layout), uniform in ±√(2 / cols).</summary>
    private static Tensor<float> Init(int rows, int cols, Random rng)
    {
        var a = new float[rows * cols];
        float scale = MathF.Sqrt(2f / cols);
        for (int i = 0; i < a.Length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return Tensor<float>.FromArray(a, rows, cols).RequireGrad();
    }
}
