using KdEngine.Tensors;

namespace KdEngine.Nn;

/// <summary>Seeded weight initialisers (deterministic for a given <see cref="Random"/> state).</summary>
public static class Init
{
    /// <summary>U(−b, b) with b = 1/√fanIn — PyTorch's default for Linear weights and biases.</summary>
    public static Tensor<float> Uniform(Random rng, float bound, params int[] dims)
    {
        var shape = new Shape(dims);
        var data = new float[shape.ElementCount];
        for (int i = 0; i < data.Length; i++) data[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
        return Tensor<float>.FromArray(data, shape);
    }

    /// <summary><paramref name="count"/> draws of N(0, std²) via Box–Muller (embeddings: std 1e-4 … 1e-2 in CTR practice).</summary>
    public static float[] NormalValues(Random rng, float std, int count)
    {
        var data = new float[count];
        for (int i = 0; i < data.Length; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            data[i] = (float)(std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return data;
    }
}
