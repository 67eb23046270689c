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
        for (int i = 0; i < data.Length; i++) data[i] = NextNormal(rng, std);
        return data;
    }

    /// <summary>
    /// The rows <paramref name="firstRow"/>, <paramref name="firstRow"/> + <paramref name="rowStep"/>, … of
    /// <c>NormalValues(rng, std, rows · width)</c> viewed as [rows, width], written to <paramref name="destination"/>
    /// without holding the whole table: the same draws, in the same order (so <paramref name="rng"/> ends in the same
    /// state), of which only the kept rows are stored. A process that owns every N-th row of a row-sharded embedding
    /// table initialises its shard exactly as one process initialises the whole table.
    /// </summary>
    public static void NormalRows(Random rng, float std, long rows, int width, int firstRow, int rowStep, Span<float> destination)
    {
        int at = 0;
        for (long row = 0; row < rows; row++)
        {
            bool keep = row >= firstRow && (row - firstRow) % rowStep == 0;
            for (int d = 0; d < width; d++)
            {
                float value = NextNormal(rng, std);
                if (keep) destination[at++] = value;
            }
        }
        if (at != destination.Length)
            throw new ArgumentException($"Init.NormalRows: kept {at} values but the destination holds {destination.Length}.", nameof(destination));
    }

    private static float NextNormal(Random rng, float std)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return (float)(std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
    }
}
