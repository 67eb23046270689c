using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Autograd;

/// <summary>The outcome of a <see cref="GradCheck"/>: the worst disagreements found, and where.</summary>
public sealed record GradCheckResult(
    bool Passed,
    double MaxAnalyticVsNumericError,
    double MaxFloatVsDoubleError,
    string Report);

/// <summary>
/// Finite-difference gradient checking in double precision, run on the very same op code as float32
/// (ops are generic over the element type). The function under test is given twice — as
/// <c>F&lt;double&gt;</c> and <c>F&lt;float&gt;</c> of one generic method — so no reference copy of any op exists.
/// A non-scalar output is reduced to a scalar with fixed random weights, so every output element
/// contributes a distinct gradient.
/// </summary>
public static class GradCheck
{
    /// <summary>
    /// Checks the analytic gradient of <paramref name="fDouble"/> against central finite differences (double), and
    /// that the float32 run of the same code gives the same loss and gradients within <paramref name="floatTolerance"/>.
    /// </summary>
    /// <param name="fDouble">The function in double (drives the finite differences).</param>
    /// <param name="fFloat">The same function in float32 (its values and gradients must agree with double's).</param>
    /// <param name="inputs">Input values in double; every input is checked unless listed in <paramref name="constant"/>.</param>
    /// <param name="shapes">The shape of each input.</param>
    /// <param name="constant">Indices of inputs that receive no gradient (data, labels).</param>
    /// <param name="eps">Step of the central differences (f(x + eps) − f(x − eps)) / 2·eps, in double.</param>
    /// <param name="rtol">Relative tolerance: an element passes when |analytic − numeric| ≤ atol + rtol·max(|analytic|, |numeric|).</param>
    /// <param name="atol">Absolute tolerance of the same bound (for gradients near zero).</param>
    /// <param name="floatTolerance">Largest allowed relative difference between the float32 run and the double run
    /// (the loss, and each gradient element relative to the largest gradient of its input).</param>
    /// <param name="seed">Seed of the fixed random weights that reduce a non-scalar output to a scalar.</param>
    /// <returns>Whether both checks passed, the worst errors, and a report naming every element that failed.</returns>
    public static GradCheckResult Run(
        Func<Tensor<double>[], Tensor<double>> fDouble,
        Func<Tensor<float>[], Tensor<float>> fFloat,
        double[][] inputs,
        Shape[] shapes,
        int[]? constant = null,
        double eps = 1e-6,
        double rtol = 1e-4,
        double atol = 1e-6,
        double floatTolerance = 1e-4,
        int seed = 12345)
    {
        if (inputs.Length != shapes.Length) throw new ArgumentException("GradCheck: one shape per input is needed.");
        constant ??= Array.Empty<int>();
        var report = new System.Text.StringBuilder();

        // Output weights so that loss = Σ w_i · out_i (unless the output is already a scalar).
        double[]? weights = null;
        {
            using var probe = Tape<double>.NoGrad();
            var outProbe = fDouble(Leaves(inputs, shapes, constant, requireGrad: false));
            if (outProbe.Length != 1)
            {
                var rng = new Random(seed);
                weights = new double[outProbe.Length];
                for (int i = 0; i < weights.Length; i++) weights[i] = rng.NextDouble() * 2 - 1;
            }
        }

        // Analytic gradients in double.
        var (lossD, gradsD) = Analytic(fDouble, inputs, shapes, constant, weights);

        // Central differences in double.
        double maxErr = 0;
        for (int t = 0; t < inputs.Length; t++)
        {
            if (Array.IndexOf(constant, t) >= 0) continue;
            var x = inputs[t];
            for (int i = 0; i < x.Length; i++)
            {
                double orig = x[i];
                x[i] = orig + eps; double up = Evaluate(fDouble, inputs, shapes, constant, weights);
                x[i] = orig - eps; double down = Evaluate(fDouble, inputs, shapes, constant, weights);
                x[i] = orig;
                double numeric = (up - down) / (2 * eps);
                double analytic = gradsD[t][i];
                double err = Math.Abs(numeric - analytic);
                double bound = atol + rtol * Math.Max(Math.Abs(numeric), Math.Abs(analytic));
                double scaled = err / bound;
                if (scaled > maxErr) maxErr = scaled;
                if (err > bound)
                    report.AppendLine($"input {t} {shapes[t]} element {i}: analytic {analytic:G9}, numeric {numeric:G9}");
            }
        }

        // The float32 run of the same code must agree with the double run.
        var inputsF = inputs.Select(a => a.Select(v => (float)v).ToArray()).ToArray();
        var (lossF, gradsF) = Analytic(fFloat, inputsF, shapes, constant, weights?.Select(v => (float)v).ToArray());
        double floatErr = RelErr(lossF, lossD);
        if (floatErr > floatTolerance) report.AppendLine($"float32 loss {lossF:G9} vs double {lossD:G9}");
        for (int t = 0; t < inputs.Length; t++)
        {
            if (Array.IndexOf(constant, t) >= 0) continue;
            double scale = gradsD[t].Length == 0 ? 0 : gradsD[t].Max(Math.Abs);
            for (int i = 0; i < gradsD[t].Length; i++)
            {
                double e = Math.Abs(gradsF[t][i] - gradsD[t][i]) / Math.Max(scale, 1e-3);
                if (e > floatErr) floatErr = e;
                if (e > floatTolerance)
                    report.AppendLine($"float32 gradient of input {t} element {i}: {gradsF[t][i]:G9} vs double {gradsD[t][i]:G9}");
            }
        }

        bool passed = maxErr <= 1.0 && floatErr <= floatTolerance;
        return new GradCheckResult(passed, maxErr, floatErr, report.Length == 0 ? "ok" : report.ToString());
    }

    private static double RelErr(double a, double b) => Math.Abs(a - b) / Math.Max(Math.Max(Math.Abs(a), Math.Abs(b)), 1e-3);

    private static Tensor<T>[] Leaves<T>(T[][] inputs, Shape[] shapes, int[] constant, bool requireGrad)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        var leaves = new Tensor<T>[inputs.Length];
        for (int t = 0; t < inputs.Length; t++)
        {
            leaves[t] = Tensor<T>.FromArray(inputs[t], shapes[t], name: $"input{t}");
            if (requireGrad && Array.IndexOf(constant, t) < 0) leaves[t].RequireGrad();
        }
        return leaves;
    }

    private static Tensor<T> Reduce<T>(Tensor<T> output, T[]? weights) where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        if (weights is null) return output;
        var w = Tensor<T>.FromArray(weights, output.Shape);
        return Op.Sum(Op.Mul(output, w));
    }

    private static double Evaluate(Func<Tensor<double>[], Tensor<double>> f, double[][] inputs, Shape[] shapes, int[] constant, double[]? weights)
    {
        using var tape = Tape<double>.NoGrad();
        return Reduce(f(Leaves(inputs, shapes, constant, requireGrad: false)), weights).Item();
    }

    private static (double Loss, double[][] Grads) Analytic<T>(Func<Tensor<T>[], Tensor<T>> f, T[][] inputs, Shape[] shapes, int[] constant, T[]? weights)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        var leaves = Leaves(inputs, shapes, constant, requireGrad: true);
        using var tape = new Tape<T>();
        var loss = Reduce(f(leaves), weights);
        double lossValue = double.CreateChecked(loss.Item());
        var grads = new double[inputs.Length][];
        if (loss.RequiresGrad) tape.Backward(loss);
        for (int t = 0; t < leaves.Length; t++)
        {
            var leaf = leaves[t];
            T[] g = leaf.SparseGrad is not null ? leaf.SparseGrad.ToDense()
                : leaf.Grad is not null ? leaf.Grad.ToArray() : new T[leaf.Length];
            grads[t] = g.Select(v => double.CreateChecked(v)).ToArray();
            leaf.Dispose();
        }
        return (lossValue, grads);
    }
}
