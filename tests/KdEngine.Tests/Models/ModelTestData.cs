using KdEngine.Nn;

namespace KdEngine.Tests.Models;

/// <summary>Small seeded CTR batches for model and distillation tests.</summary>
internal static class ModelTestData
{
    public static InputField[] Fields(int count, int cardinality = 11) =>
        Enumerable.Range(0, count).Select(i => new InputField($"f{i}", cardinality + i)).ToArray();

    /// <summary>
    /// A batch whose label depends on an interaction of fields 0 and 1 (and a privileged field, the last one,
    /// that carries the label almost exactly) so that models have something to learn.
    /// </summary>
    public static CtrBatch Batch(InputField[] fields, int size, int seed)
    {
        var rng = new Random(seed);
        int f = fields.Length;
        var ids = new int[size * f];
        var labels = new float[size];
        var rows = new int[size];
        for (int b = 0; b < size; b++)
        {
            for (int j = 0; j < f; j++) ids[b * f + j] = rng.Next(fields[j].Cardinality);
            bool positive = ((ids[b * f] + ids[b * f + 1]) % 3 == 0) ^ (rng.NextDouble() < 0.1);
            labels[b] = positive ? 1f : 0f;
            ids[b * f + f - 1] = positive ? rng.Next(2) : 2 + rng.Next(fields[f - 1].Cardinality - 2);
            rows[b] = b;
        }
        return new CtrBatch(size, f, ids, labels, rows);
    }
}
