using KdEngine.Models;
using KdEngine.Nn;

namespace KdEngine.Benchmarks;

/// <summary>
/// The benchmark configurations of docs/models.md ("Reference configurations"), shared by this project and the peer project
/// (benchmarks/KdEngine.Peers links this file), so every suite builds exactly the same models and inputs.
/// <list type="bullet">
/// <item><b>bench</b>: F = 39, D = 16, 65,536 buckets per field, DNN [400, 400, 400], CIN [200, 200, 200] split-half
/// (identity CIN activation, direct connections).</item>
/// <item><b>paper</b>: F = 39, D = 10, DNN [400, 400, 400], CIN [200, 200, 200] without split-half, identity activation.</item>
/// </list>
/// </summary>
public static class BenchModels
{
    public const int Fields = 39;
    public const int Buckets = 65_536;

    public static ModelConfig ConfigFor(string name, ModelKind kind, int seed = 1) => name switch
    {
        "bench" => new ModelConfig
        {
            Model = kind, EmbeddingDim = 16, Dnn = [400, 400, 400], Cin = [200, 200, 200], CinSplitHalf = true, Seed = seed,
        },
        "paper" => new ModelConfig
        {
            Model = kind, EmbeddingDim = 10, Dnn = [400, 400, 400], Cin = [200, 200, 200], CinSplitHalf = false,
            CinActivation = Activation.Identity, Seed = seed,
        },
        _ => throw new ArgumentException($"unknown config '{name}' (bench, paper)"),
    };

    /// <summary>C1 … C39, 65,536 ids each.</summary>
    public static InputField[] InputFields() =>
        Enumerable.Range(0, Fields).Select(i => new InputField($"C{i + 1}", Buckets)).ToArray();

    /// <summary>A bench-config zoo model with seeded weights (the same weights in every process for the same seed).</summary>
    /// <param name="embeddingStd">The embeddings' init std (default: the config's 0.01). The peer project's agreement check
    /// also uses 0.5, where the CIN's share of the logit is large enough for a wrong CIN to show.</param>
    public static ZooModel Build(ModelKind kind, string config = "bench", int seed = 1, FieldEmbeddings? sharedEmbedding = null,
        float? embeddingStd = null)
    {
        var c = ConfigFor(config, kind, seed);
        if (embeddingStd is { } std) c = c with { EmbeddingInitStd = std };
        return new ZooModel(c, InputFields(), sharedEmbedding: sharedEmbedding);
    }

    /// <summary>Uniform random ids [batch, F] (seeded), every field's full range.</summary>
    public static int[] RandomIds(int batch, int seed = 42)
    {
        var rng = new Random(seed);
        var ids = new int[batch * Fields];
        for (int i = 0; i < ids.Length; i++) ids[i] = rng.Next(Buckets);
        return ids;
    }

    /// <summary>Random 0/1 labels with a CTR-like positive rate of about 25 %.</summary>
    public static float[] RandomLabels(int batch, int seed = 43)
    {
        var rng = new Random(seed);
        var y = new float[batch];
        for (int i = 0; i < y.Length; i++) y[i] = rng.NextDouble() < 0.25 ? 1f : 0f;
        return y;
    }
}
