using System.Runtime.CompilerServices;
using KdEngine.Kernels.Cpu;
using KdEngine.Tensors;

namespace KdEngine.Serving;

/// <summary>How a weight matrix or table is held for serving.</summary>
public enum WeightFormat
{
    /// <summary>IEEE binary32, as trained (the default; bit-identical to the training forward's arithmetic order).</summary>
    Float32,
    /// <summary>bfloat16 (half the bytes), widened exactly to float32 as it is read; products in float32.</summary>
    BFloat16,
    /// <summary>int8 per output channel (a quarter of the bytes) with the activations quantised to uint8 per row on the
    /// fly; products in exact int32 (<see cref="Int8Gemm"/>). Dense layer and CIN weights only.</summary>
    Int8,
}

/// <summary>
/// The precision a <see cref="Predictor"/> serves with: the dense weights (DNN layers, the CIN's layers) and the embedding
/// table. Everything else — biases, output vectors, wide weights, cross layers — stays float32 (a few KB). Chosen when
/// a checkpoint is written (<see cref="ModelCheckpoint.Save(string, Models.ZooModel, Data.Preprocessor?, IReadOnlyDictionary{string, string}?, ServingPrecision?, KdEngine.Metrics.LogitCalibration?)"/>
/// stores the quantised tensors) or when a predictor is built (<see cref="Predictor(Models.ZooModel, Data.Preprocessor?, ServingPrecision?, KdEngine.Metrics.LogitCalibration?)"/>
/// quantises the float weights it is given).
/// </summary>
/// <param name="DenseWeights">DNN and CIN weight matrices: <see cref="WeightFormat.Float32"/>, <see cref="WeightFormat.BFloat16"/>
/// or <see cref="WeightFormat.Int8"/>.</param>
/// <param name="Embeddings">The embedding table: <see cref="WeightFormat.Float32"/> or <see cref="WeightFormat.BFloat16"/>.</param>
public sealed record ServingPrecision(WeightFormat DenseWeights = WeightFormat.Float32, WeightFormat Embeddings = WeightFormat.Float32)
{
    /// <summary>Everything float32 (the default).</summary>
    public static ServingPrecision Float32 { get; } = new();

    /// <summary>Dense weights and embeddings in bfloat16.</summary>
    public static ServingPrecision BFloat16 { get; } = new(WeightFormat.BFloat16, WeightFormat.BFloat16);

    /// <summary>Dense weights in int8 per output channel, embeddings in bfloat16.</summary>
    public static ServingPrecision Int8 { get; } = new(WeightFormat.Int8, WeightFormat.BFloat16);

    /// <summary>True when nothing is quantised.</summary>
    public bool IsFloat32 => DenseWeights == WeightFormat.Float32 && Embeddings == WeightFormat.Float32;

    /// <summary>Checks the combination (embeddings cannot be int8).</summary>
    public void Validate()
    {
        if (!Enum.IsDefined(DenseWeights)) throw new ArgumentException($"ServingPrecision: unknown dense weight format {(int)DenseWeights}.");
        if (Embeddings is not (WeightFormat.Float32 or WeightFormat.BFloat16))
            throw new ArgumentException($"ServingPrecision: embeddings can be float32 or bfloat16, not {Embeddings}.");
    }

    /// <summary>The command-line / metadata spelling: <c>fp32</c>, <c>bf16</c>, <c>int8</c> for the dense weights, plus
    /// <c>+bf16-embeddings</c> (or <c>+fp32-embeddings</c>) when the embeddings differ from the preset.</summary>
    public override string ToString() => (DenseWeights, Embeddings) switch
    {
        (WeightFormat.Float32, WeightFormat.Float32) => "fp32",
        (WeightFormat.BFloat16, WeightFormat.BFloat16) => "bf16",
        (WeightFormat.Int8, WeightFormat.BFloat16) => "int8",
        _ => $"{Name(DenseWeights)}+{Name(Embeddings)}-embeddings",
    };

    /// <summary>Parses <see cref="ToString"/>'s spellings: <c>fp32</c>, <c>bf16</c>, <c>int8</c>, and
    /// <c>DENSE+EMB-embeddings</c> (e.g. <c>int8+fp32-embeddings</c>, <c>fp32+bf16-embeddings</c>).</summary>
    public static ServingPrecision Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split('+');
        var dense = Format(parts[0], text);
        var precision = parts.Length switch
        {
            1 => dense switch { WeightFormat.Float32 => Float32, WeightFormat.BFloat16 => BFloat16, _ => Int8 },
            2 when parts[1].EndsWith("-embeddings", StringComparison.Ordinal) =>
                new ServingPrecision(dense, Format(parts[1][..^"-embeddings".Length], text)),
            _ => throw new FormatException($"precision '{text}': expected fp32, bf16, int8 or DENSE+EMB-embeddings (e.g. int8+fp32-embeddings)."),
        };
        try { precision.Validate(); }
        catch (ArgumentException e) { throw new FormatException($"precision '{text}': {e.Message}"); }
        return precision;
    }

    private static WeightFormat Format(string name, string whole) => name switch
    {
        "fp32" => WeightFormat.Float32,
        "bf16" => WeightFormat.BFloat16,
        "int8" => WeightFormat.Int8,
        _ => throw new FormatException($"precision '{whole}': unknown format '{name}' (fp32, bf16, int8)."),
    };

    private static string Name(WeightFormat f) => f switch
    {
        WeightFormat.Float32 => "fp32",
        WeightFormat.BFloat16 => "bf16",
        _ => "int8",
    };
}

/// <summary>
/// Int8 weights read from a checkpoint, by the parameter tensor they were dequantised into, so that a predictor serves
/// the stored integers and scales exactly instead of quantising the dequantised floats again.
/// </summary>
public sealed class StoredInt8Weights
{
    private readonly ConditionalWeakTable<Tensor<float>, Int8Weights> _byTensor = new();

    /// <summary>Records <paramref name="weights"/> as the int8 form of <paramref name="parameter"/>.</summary>
    public void Add(Tensor<float> parameter, Int8Weights weights) => _byTensor.AddOrUpdate(parameter, weights);

    /// <summary>The stored int8 form of <paramref name="parameter"/>, if the checkpoint held one.</summary>
    public bool TryGet(Tensor<float> parameter, out Int8Weights weights) => _byTensor.TryGetValue(parameter, out weights!);
}
