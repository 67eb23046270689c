using KdEngine.Autograd;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Nn;

namespace KdEngine.Tests.Serving;

/// <summary>Small zoo models with random (not initial) weights and seeded id batches for serving tests.</summary>
internal static class ServingTestModels
{
    public static readonly ModelKind[] Kinds =
        [ModelKind.Lr, ModelKind.Fm, ModelKind.Dnn, ModelKind.Wdl, ModelKind.DeepFm, ModelKind.Dcn, ModelKind.XDeepFm, ModelKind.Ffm, ModelKind.DcnV2];

    /// <summary>DCN-V2's forms beyond <see cref="Config"/>'s (full rank, parallel): (rank, experts, stacked).</summary>
    public static readonly (int Rank, int Experts, bool Stacked)[] DcnV2Forms = [(0, 1, true), (4, 1, false), (3, 3, false), (2, 2, true)];

    public static ModelConfig DcnV2(int rank, int experts, bool stacked) => Config(ModelKind.DcnV2) with
    {
        CrossRank = rank, CrossExperts = experts, CrossStructure = stacked ? CrossStructure.Stacked : CrossStructure.Parallel,
    };

    public static InputField[] Fields(int count) =>
        Enumerable.Range(0, count).Select(i => new InputField($"f{i}", 7 + 3 * i)).ToArray();

    /// <summary>Odd D = 5 hits the SIMD tails; split-half CIN [6, 4]; DCN-V2 with three full-rank cross layers.</summary>
    public static ModelConfig Config(ModelKind kind) => new()
    {
        Model = kind, EmbeddingDim = 5, Dnn = [9, 6], Cin = [6, 4], CrossLayers = kind == ModelKind.DcnV2 ? 3 : 2, Seed = 11,
    };

    /// <summary>A model in evaluation mode whose every parameter is uniform in ±<paramref name="scale"/> (so every part
    /// contributes to the logit with O(1) magnitude).</summary>
    public static ZooModel Random(ModelConfig config, InputField[] fields, int seed, float scale = 0.5f, IReadOnlyList<int>? columns = null)
    {
        var model = new ZooModel(config, fields, columns) { Training = false };
        var rng = new Random(seed);
        foreach (var p in model.Parameters())
        {
            var s = p.Tensor.AsSpan();
            for (int i = 0; i < s.Length; i++) s[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        }
        return model;
    }

    public static int[] Ids(InputField[] fields, int batch, int seed, int columns = -1)
    {
        if (columns < 0) columns = fields.Length;
        var rng = new Random(seed);
        var ids = new int[batch * columns];
        for (int b = 0; b < batch; b++)
            for (int c = 0; c < columns; c++) ids[b * columns + c] = rng.Next(fields[Math.Min(c, fields.Length - 1)].Cardinality);
        return ids;
    }

    /// <summary>The training path's logits (no-grad tape) for ids [B, C].</summary>
    public static float[] Forward(ZooModel model, int[] ids, int batch)
    {
        using var tape = Tape<float>.NoGrad();
        return model.Forward(new CtrBatch(batch, ids.Length / batch, ids, ReadOnlyMemory<float>.Empty)).Logits.ToArray();
    }

    /// <summary>|a − b| ≤ tol·max(1, |b|) elementwise, with a message naming the first failure.</summary>
    public static string? Compare(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, float tol, bool relativeOnly = false)
    {
        if (actual.Length != expected.Length) return $"length {actual.Length} vs {expected.Length}";
        for (int i = 0; i < actual.Length; i++)
        {
            float scale = relativeOnly ? Math.Abs(expected[i]) : Math.Max(1f, Math.Abs(expected[i]));
            if (!(Math.Abs(actual[i] - expected[i]) <= tol * scale + (relativeOnly ? 1e-7f : 0f)))
                return $"element {i}: {actual[i]} vs {expected[i]} (diff {actual[i] - expected[i]})";
        }
        return null;
    }

    /// <summary>A schema with a numeric, a vocabulary and a hashed categorical field, fitted on a few rows.</summary>
    public static Preprocessor FittedPreprocessor(out Schema schema)
    {
        schema = new Schema([
            FieldSpec.Label(),
            FieldSpec.Numeric("I1"),
            FieldSpec.Categorical("C1"),
            FieldSpec.Categorical("C2") with { HashBuckets = 5 },
            FieldSpec.Categorical("C3"),
        ]);
        var train = new List<RawRecord>();
        var rng = new Random(5);
        for (int i = 0; i < 60; i++) train.Add(Record(schema, rng.Next(30).ToString(), "a" + rng.Next(6), "h" + rng.Next(20), "z" + rng.Next(4)));
        return Preprocessor.Fit(schema, train, new PreprocessorOptions { MinCount = 2 });
    }

    public static RawRecord Record(Schema schema, string? i1, string? c1, string? c2, string? c3)
    {
        var r = new RawRecord(schema);
        r.Values[schema.IndexOf("I1")] = i1;
        r.Values[schema.IndexOf("C1")] = c1;
        r.Values[schema.IndexOf("C2")] = c2;
        r.Values[schema.IndexOf("C3")] = c3;
        return r;
    }

    public static InputField[] FieldsOf(Preprocessor pre) =>
        pre.FeatureSpace.SingleFields.Select(f => new InputField(f.Name, f.Cardinality)).ToArray();
}
