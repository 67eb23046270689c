using KdEngine.Data;

namespace KdEngine.Tests.Training;

/// <summary>
/// L2-regularised logistic regression on one-hot features solved exactly, in double: minimises
/// f(w) = (1/N)·Σ_i log(1 + exp(−s_i·z_i)) + λ/2·‖w‖², z_i = b + Σ_f w[offset_f + id_if] (s_i = ±1; the intercept b is
/// regularised like every weight, as FTRL regularises the bias). Newton's method with conjugate-gradient solves of
/// H·d = −∇f (H·v = (1/N)·Xᵀ·diag(p(1−p))·X·v + λ·v, never formed) and a backtracking line search, until
/// ‖∇f‖∞ &lt; 1e-10 — machine precision for these sizes.
/// </summary>
internal static class ExactLogisticRegression
{
    /// <summary>Weights [ΣV + 1] (the intercept last) and the objective at them.</summary>
    public static (double[] Weights, double Objective) Solve(EncodedDataset data, double lambda, int maxNewton = 60)
    {
        var (offsets, features) = Layout(data);
        int n = data.Count, f = data.FieldCount, dim = features + 1;
        var w = new double[dim];
        var z = new double[n];
        var grad = new double[dim];
        var curvature = new double[n];
        var labels = data.Labels;
        double objective = Objective(w);
        for (int it = 0; it < maxNewton; it++)
        {
            // Gradient and the diagonal p(1 − p) at w.
            Array.Clear(grad);
            for (int i = 0; i < n; i++)
            {
                double p = Sigmoid(z[i]);
                double r = (p - labels[i]) / n;
                curvature[i] = p * (1 - p) / n;
                var row = data.RowIds(i);
                for (int j = 0; j < f; j++) grad[offsets[j] + row[j]] += r;
                grad[features] += r;
            }
            double gmax = 0;
            for (int k = 0; k < dim; k++) { grad[k] += lambda * w[k]; gmax = Math.Max(gmax, Math.Abs(grad[k])); }
            if (gmax < 1e-10) break;
            var d = ConjugateGradient(v => HessianTimes(v), grad, dim);
            // Backtracking (Armijo) along the Newton direction d (solves H·d = −g).
            double slope = 0;
            for (int k = 0; k < dim; k++) slope += grad[k] * d[k];
            double step = 1;
            var trial = new double[dim];
            while (true)
            {
                for (int k = 0; k < dim; k++) trial[k] = w[k] + step * d[k];
                double value = Objective(trial);
                if (value <= objective + 1e-4 * step * slope || step < 1e-8)
                {
                    trial.CopyTo(w, 0);
                    objective = value;
                    break;
                }
                step /= 2;
            }
            ComputeZ(w, z);
        }
        return (w, objective);

        double[] HessianTimes(double[] v)
        {
            var result = new double[dim];
            for (int i = 0; i < n; i++)
            {
                var row = data.RowIds(i);
                double xv = v[features];
                for (int j = 0; j < f; j++) xv += v[offsets[j] + row[j]];
                double c = curvature[i] * xv;
                for (int j = 0; j < f; j++) result[offsets[j] + row[j]] += c;
                result[features] += c;
            }
            for (int k = 0; k < dim; k++) result[k] += lambda * v[k];
            return result;
        }

        double Objective(double[] weights)
        {
            double sum = 0;
            for (int i = 0; i < n; i++)
            {
                double zi = Logit(weights, i);
                double s = labels[i] == 1f ? zi : -zi; // log(1 + e^(−s))
                sum += s > 0 ? Math.Log(1 + Math.Exp(-s)) : -s + Math.Log(1 + Math.Exp(s));
            }
            double norm = 0;
            foreach (var x in weights) norm += x * x;
            return sum / n + lambda / 2 * norm;
        }

        void ComputeZ(double[] weights, double[] into)
        {
            for (int i = 0; i < n; i++) into[i] = Logit(weights, i);
        }

        double Logit(double[] weights, int i)
        {
            var row = data.RowIds(i);
            double zi = weights[features];
            for (int j = 0; j < f; j++) zi += weights[offsets[j] + row[j]];
            return zi;
        }
    }

    /// <summary>Logits of <paramref name="data"/> under weights from <see cref="Solve"/> (same feature layout).</summary>
    public static float[] Logits(EncodedDataset data, double[] weights)
    {
        var (offsets, features) = Layout(data);
        var logits = new float[data.Count];
        for (int i = 0; i < data.Count; i++)
        {
            var row = data.RowIds(i);
            double z = weights[features];
            for (int j = 0; j < row.Length; j++) z += weights[offsets[j] + row[j]];
            logits[i] = (float)z;
        }
        return logits;
    }

    private static (int[] Offsets, int Features) Layout(EncodedDataset data)
    {
        var fields = data.FeatureSpace.SingleFields;
        var offsets = new int[fields.Count];
        int total = 0;
        for (int j = 0; j < fields.Count; j++) { offsets[j] = total; total += fields[j].Cardinality; }
        return (offsets, total);
    }

    private static double Sigmoid(double z) => z >= 0 ? 1 / (1 + Math.Exp(-z)) : Math.Exp(z) / (1 + Math.Exp(z));

    /// <summary>Solves H·d = −g by conjugate gradients (H symmetric positive definite).</summary>
    private static double[] ConjugateGradient(Func<double[], double[]> times, double[] g, int dim)
    {
        var d = new double[dim];
        var r = new double[dim];
        for (int k = 0; k < dim; k++) r[k] = -g[k];
        var p = (double[])r.Clone();
        double rr = Dot(r, r), stop = 1e-24 * rr;
        for (int it = 0; it < 500 && rr > stop; it++)
        {
            var hp = times(p);
            double alpha = rr / Dot(p, hp);
            for (int k = 0; k < dim; k++) { d[k] += alpha * p[k]; r[k] -= alpha * hp[k]; }
            double next = Dot(r, r);
            double beta = next / rr;
            rr = next;
            for (int k = 0; k < dim; k++) p[k] = r[k] + beta * p[k];
        }
        return d;
    }

    private static double Dot(double[] a, double[] b)
    {
        double s = 0;
        for (int k = 0; k < a.Length; k++) s += a[k] * b[k];
        return s;
    }
}
