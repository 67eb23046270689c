using System.Text.Json;
using System.Text.Json.Serialization;
using KdEngine.Nn;

namespace KdEngine.Models;

/// <summary>The model families of the zoo.</summary>
public enum ModelKind
{
    /// <summary>Logistic regression: the wide part alone.</summary>
    Lr,
    /// <summary>Factorization machine: wide + FM.</summary>
    Fm,
    /// <summary>An MLP over the concatenated embeddings.</summary>
    Dnn,
    /// <summary>Wide &amp; Deep: wide + DNN.</summary>
    Wdl,
    /// <summary>DeepFM: wide + FM + DNN over shared embeddings.</summary>
    DeepFm,
    /// <summary>Deep &amp; Cross Network: cross network and DNN side by side.</summary>
    Dcn,
    /// <summary>xDeepFM: wide + DNN + CIN.</summary>
    XDeepFm,
    /// <summary>Field-aware factorization machine: wide + the pairs of its own field-aware tables.</summary>
    Ffm,
    /// <summary>DCN-V2: full-rank, low-rank or mixture-of-experts cross layers with a DNN, parallel or stacked.</summary>
    DcnV2,
}

/// <summary>How DCN-V2 joins its cross network and its DNN: side by side, concatenated before the output layer
/// (<see cref="Parallel"/>), or the DNN on top of the cross network (<see cref="Stacked"/>).</summary>
public enum CrossStructure
{
    /// <summary>Cross network and DNN side by side, concatenated before the output layer.</summary>
    Parallel,
    /// <summary>The DNN on top of the cross network.</summary>
    Stacked,
}

/// <summary>How FFM's field-aware vectors start.</summary>
public enum FfmInit
{
    /// <summary>Normal with mean 0 and standard deviation <see cref="ModelConfig.EmbeddingInitStd"/>.</summary>
    Normal,
    /// <summary>Uniform in [0, r) with r = <see cref="ModelConfig.FfmInitRadius"/>, or 1/√D when that is 0 (LIBFFM's
    /// initialisation; ML.NET's is r = 0.5 at every D).</summary>
    Uniform,
}

/// <summary>A configuration value that is missing, misspelt or out of range; the message names the key.</summary>
public sealed class ConfigException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// A model's hyper-parameters. JSON keys are camelCase (<c>embeddingDim</c>, <c>dnn</c>, <c>cin</c>, …);
/// an unknown key is an error (a misspelt key must never silently run the default).
/// </summary>
public sealed record ModelConfig
{
    /// <summary>Which zoo model (which parts: wide, FM, DNN, CIN, cross network; see <see cref="ZooModel"/>).</summary>
    public ModelKind Model { get; init; } = ModelKind.XDeepFm;
    /// <summary>D: width of every field embedding (1…4096).</summary>
    public int EmbeddingDim { get; init; } = 10;
    /// <summary>Standard deviation of the normal initialisation of the embeddings (0 ≤ std &lt; 10; 0 starts them at zero).</summary>
    public float EmbeddingInitStd { get; init; } = 1e-2f;
    /// <summary>Widths of the DNN's hidden layers, input side first (each 1…65536).</summary>
    public int[] Dnn { get; init; } = [400, 400];
    /// <summary>Activation after each DNN hidden layer.</summary>
    public Activation DnnActivation { get; init; } = Activation.Relu;
    /// <summary>Dropout rate after each DNN hidden layer while training, in [0, 1).</summary>
    public float Dropout { get; init; }
    /// <summary>
    /// L2 on the batch's looked-up embeddings (DeepCTR's <c>l2_reg_embedding</c>): adds λ/2 · (1/B) · Σ_b Σ_f ‖x0[b, f]‖² to the
    /// training loss, so each occurrence of a row in the batch pulls it towards 0 by λ/B (a frequent id more than a rare
    /// one). Training only; 0 = off.
    /// </summary>
    public float EmbeddingOutputL2 { get; init; }
    /// <summary>xDeepFM: the CIN's feature-map counts H_k per layer (each 1…16384, even with <see cref="CinSplitHalf"/>).</summary>
    public int[] Cin { get; init; } = [100, 100];
    /// <summary>xDeepFM: activation of each CIN layer (identity in the paper's setting).</summary>
    public Activation CinActivation { get; init; } = Activation.Identity;
    /// <summary>xDeepFM: each hidden CIN layer but the last sends half its maps to the output and half to the next layer (needs <see cref="CinDirectConnections"/>).</summary>
    public bool CinSplitHalf { get; init; } = true;
    /// <summary>xDeepFM: every layer's maps (not only the last layer's) are pooled into the CIN output.</summary>
    public bool CinDirectConnections { get; init; } = true;
    /// <summary>DCN, DCN-V2: number of cross layers (1…64).</summary>
    public int CrossLayers { get; init; } = 3;
    /// <summary>DCN-V2: 0 for full-rank cross layers W [n, n]; r &gt; 0 for low-rank U·Vᵀ (U, V [n, r]).</summary>
    public int CrossRank { get; init; }
    /// <summary>DCN-V2: low-rank experts per cross layer, mixed by a softmax gate (1: no mixture).</summary>
    public int CrossExperts { get; init; } = 1;
    /// <summary>DCN-V2: cross network and DNN in parallel (concatenated) or stacked (DNN on the cross output).</summary>
    public CrossStructure CrossStructure { get; init; }
    /// <summary>FFM: divide the pairwise term by the field count F — LIBFFM's instance-wise normalisation (‖x‖₂ = 1 per
    /// row) for rows of one-hot fields, where ‖x‖² = F. Off by default.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool FfmNormalize { get; init; }
    /// <summary>FFM: how the field-aware vectors start — normal with <see cref="EmbeddingInitStd"/> (default), or
    /// uniform in [0, 1/√D) as LIBFFM does.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public FfmInit FfmInit { get; init; }
    /// <summary>FFM with <see cref="FfmInit.Uniform"/>: the radius r of the uniform [0, r) draw; 0 (default) means
    /// LIBFFM's 1/√D. ML.NET draws with its <c>Radius</c> option, 0.5 by default at every D, so D 8 from the same
    /// radius needs <c>ffmInitRadius: 0.5</c> (1/√8 ≈ 0.35 otherwise).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public float FfmInitRadius { get; init; }
    /// <summary>Seed of the weight initialisation and of the dropout masks.</summary>
    public int Seed { get; init; } = 1;

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        Converters = { new SingleNameEnumConverterFactory() },
        WriteIndented = false,
    };

    /// <summary>Parses and validates a JSON config; <paramref name="source"/> names the file in errors.</summary>
    public static ModelConfig FromJson(string json, string source = "config")
    {
        ModelConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<ModelConfig>(json, Json);
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{source}: {Describe(e)}", e);
        }
        if (config is null) throw new ConfigException($"{source}: the config is empty (null).");
        config.Validate(source);
        return config;
    }

    /// <summary>The config as compact camelCase JSON (what <see cref="FromJson"/> reads back).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    internal static string Describe(JsonException e)
    {
        string path = string.IsNullOrEmpty(e.Path) ? "" : $"at '{e.Path}' ";
        string line = e.LineNumber is { } l ? $"(line {l + 1}, byte {e.BytePositionInLine + 1}) " : "";
        return $"{path}{line}{e.Message}";
    }

    /// <summary>Checks every value; the error names the key and the accepted range.</summary>
    public void Validate(string source = "config")
    {
        if (!Enum.IsDefined(Model)) throw new ConfigException($"{source}: model = {(int)Model} is not a model kind.");
        if (!Enum.IsDefined(DnnActivation)) throw new ConfigException($"{source}: dnnActivation = {(int)DnnActivation} is not an activation.");
        if (!Enum.IsDefined(FfmInit)) throw new ConfigException($"{source}: ffmInit = {(int)FfmInit} is not an FFM initialisation.");
        if (!(FfmInitRadius >= 0 && FfmInitRadius <= 100)) throw new ConfigException($"{source}: ffmInitRadius = {FfmInitRadius}; expected 0 ≤ r ≤ 100 (0: 1/√D).");
        if (FfmInitRadius != 0 && FfmInit != FfmInit.Uniform)
            throw new ConfigException($"{source}: ffmInitRadius = {FfmInitRadius} needs ffmInit: \"uniform\" (the normal init uses embeddingInitStd).");
        if (!Enum.IsDefined(CinActivation)) throw new ConfigException($"{source}: cinActivation = {(int)CinActivation} is not an activation.");
        if (EmbeddingDim is < 1 or > 4096) throw new ConfigException($"{source}: embeddingDim = {EmbeddingDim}; expected 1…4096.");
        if (!(EmbeddingInitStd >= 0 && EmbeddingInitStd < 10)) throw new ConfigException($"{source}: embeddingInitStd = {EmbeddingInitStd}; expected 0 ≤ std < 10.");
        if (Dnn is null) throw new ConfigException($"{source}: dnn must be a list of layer widths.");
        for (int i = 0; i < Dnn.Length; i++)
            if (Dnn[i] is < 1 or > 1 << 16) throw new ConfigException($"{source}: dnn[{i}] = {Dnn[i]}; expected 1…65536.");
        if (!(Dropout >= 0 && Dropout < 1)) throw new ConfigException($"{source}: dropout = {Dropout}; expected 0 ≤ dropout < 1.");
        if (!(EmbeddingOutputL2 >= 0 && float.IsFinite(EmbeddingOutputL2))) throw new ConfigException($"{source}: embeddingOutputL2 = {EmbeddingOutputL2}; expected a finite number ≥ 0.");
        if (Cin is null) throw new ConfigException($"{source}: cin must be a list of layer sizes.");
        for (int i = 0; i < Cin.Length; i++)
        {
            if (Cin[i] is < 1 or > 1 << 14) throw new ConfigException($"{source}: cin[{i}] = {Cin[i]}; expected 1…16384.");
            if (CinSplitHalf && i < Cin.Length - 1 && Cin[i] % 2 != 0)
                throw new ConfigException($"{source}: cin[{i}] = {Cin[i]} must be even with cinSplitHalf (half of each hidden layer goes to the output).");
        }
        if (CinSplitHalf && !CinDirectConnections)
            throw new ConfigException($"{source}: cinSplitHalf needs cinDirectConnections.");
        if (CrossLayers is < 1 or > 64) throw new ConfigException($"{source}: crossLayers = {CrossLayers}; expected 1…64.");
        if (CrossRank is < 0 or > 1 << 16) throw new ConfigException($"{source}: crossRank = {CrossRank}; expected 0 (full rank) … 65536.");
        if (CrossExperts is < 1 or > 64) throw new ConfigException($"{source}: crossExperts = {CrossExperts}; expected 1…64.");
        if (CrossExperts > 1 && CrossRank == 0) throw new ConfigException($"{source}: crossExperts = {CrossExperts} mixes low-rank experts; set crossRank > 0.");
        if (!Enum.IsDefined(CrossStructure)) throw new ConfigException($"{source}: crossStructure = {(int)CrossStructure} is not parallel or stacked.");
        foreach (var part in ZooModel.RecipeOf(Model)) part.Validate?.Invoke(this, source);
    }
}

/// <summary>
/// Enum values as one name (camelCase when written, any case when read). Unlike
/// <see cref="JsonStringEnumConverter"/>, it rejects comma-separated combinations (<c>"xdeepfm,dcn"</c> would
/// read as the OR of two kinds — an undefined model) and numbers, so a typo can never select another value.
/// </summary>
internal sealed class SingleNameEnumConverterFactory : JsonConverterFactory
{
    public override bool CanConvert(Type typeToConvert) => typeToConvert.IsEnum;

    public override JsonConverter CreateConverter(Type typeToConvert, JsonSerializerOptions options) =>
        (JsonConverter)Activator.CreateInstance(typeof(SingleNameEnumConverter<>).MakeGenericType(typeToConvert))!;

    private sealed class SingleNameEnumConverter<T> : JsonConverter<T> where T : struct, Enum
    {
        private static readonly (string Name, T Value)[] Names =
            Enum.GetValues<T>().Select(v => (JsonNamingPolicy.CamelCase.ConvertName(v.ToString()), v)).ToArray();

        public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            string expected = string.Join("|", Names.Select(n => n.Name));
            if (reader.TokenType != JsonTokenType.String)
                throw new JsonException($"expected one of {expected} as a string, found {reader.TokenType}.");
            string text = reader.GetString()!;
            foreach (var (name, value) in Names)
                if (string.Equals(name, text, StringComparison.OrdinalIgnoreCase)) return value;
            throw new JsonException($"unknown value '{text}' (expected one of {expected}).");
        }

        public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options)
        {
            foreach (var (name, v) in Names)
                if (EqualityComparer<T>.Default.Equals(v, value)) { writer.WriteStringValue(name); return; }
            throw new JsonException($"{typeof(T).Name} value {value} is not defined.");
        }
    }
}
