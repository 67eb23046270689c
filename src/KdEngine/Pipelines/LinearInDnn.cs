using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Tensors;

namespace KdEngine.Pipelines;

/// <summary>
/// Writes a fitted logistic regression into a DNN's own weights, so that the model's logit equals the LR's exactly — the
/// DNN's (and DCN's) form of training the wide part first (<see cref="WideFirst"/>), for a model that has no wide part to
/// copy into. In DCN and DCN-V2 (parallel) the MLP beside the cross network carries it, and the combination layer reads
/// only its two units.
/// </summary>
/// <remarks>
/// With s = b + Σ_f w_f[id_f] the LR's logit (a multi-valued field pools its ids' w as its embeddings are pooled, a
/// value-scaled field scales w as it scales its embedding), the construction is:
/// <list type="bullet">
/// <item>embedding.{field}.weight [V_f, D]: column 0 of row v ← w_f[v] (the other D − 1 columns keep their initial values);
/// in flatten(x0) [B, F·D] field f's column 0 is at f·D.</item>
/// <item>dnn.0 [H₁, F·D]: unit 0 sums those columns with weight 1 and bias b, so its pre-activation is s; unit 1 is its
/// negative (−1, −b). After ReLU: relu(s), relu(−s).</item>
/// <item>dnn.i, i ≥ 1 [H_i, H_{i−1}]: unit 0 = relu(h₀ − h₁) = relu(s), unit 1 = relu(h₁ − h₀) = relu(−s), biases 0.</item>
/// <item>dnn_out [1, H_last]: (1, −1, 0, …), bias 0, so the logit is relu(s) − relu(−s) = s.</item>
/// </list>
/// Every other unit keeps its random initial weights; their output weights are zero, so they start contributing as the
/// joint training moves them (the same start as a wide model's zeroed deep output layer). Nothing is frozen: the two
/// carrying units and column 0 train like any other weight. Needs ReLU and hidden layers at least 2 wide.
/// </remarks>
public static class LinearInDnn
{
    /// <summary>Why <paramref name="model"/> cannot carry an LR this way, or null when it can.</summary>
    public static string? WhyNot(ZooModel model)
    {
        var c = model.Config;
        if (c.Model is not (ModelKind.Dnn or ModelKind.Dcn or ModelKind.DcnV2))
            return $"a logistic regression is written into the DNN of a dnn, dcn or dcnv2 model, and the model is {model.TypeName}";
        if (c.DnnActivation != Activation.Relu)
            return $"the fitted logistic regression passes through ReLU units, and dnnActivation is {c.DnnActivation.ToString().ToLowerInvariant()}";
        if (c.Dnn.Any(w => w < 2))
            return $"two units of every DNN layer carry the fitted logistic regression, and dnn = [{string.Join(", ", c.Dnn)}] has a layer narrower than 2";
        if (c.Model == ModelKind.DcnV2 && c.CrossStructure == CrossStructure.Stacked)
            return "the DNN that carries the fitted logistic regression must read x0, and dcnv2's crossStructure is stacked (its DNN reads the cross network's output)";
        if (model.Dnn is { SharedLayers: > 0 })
            return "the DNN layers that would carry the fitted logistic regression are shared with another model";
        return null;
    }

    /// <summary>
    /// Writes the LR whose parameters are <paramref name="fitted"/> (<c>linear.{field}.weight</c> [V, 1], <c>linear.bias</c> [1],
    /// over the same fields) into <paramref name="model"/>, a DNN built on those fields.
    /// </summary>
    public static void Write(ZooModel model, IReadOnlyDictionary<string, Tensor<float>> fitted)
    {
        if (WhyNot(model) is { } why) throw new ConfigException($"training: wideFirst cannot start this model from a logistic regression: {why}.");
        var embedding = model.Embedding ?? throw new InvalidOperationException("LinearInDnn: the DNN has no embedding.");
        var named = model.Parameters().ToDictionary(p => p.Name, p => p.Tensor, StringComparer.Ordinal);
        // The MLP's layers by name (dnn.{i}.weight [out, in], dnn.{i}.bias [out]): DCN-V2 does not expose its MLP as the
        // model's shareable DNN, but names it the same way.
        var layers = new List<(Tensor<float> Weight, Tensor<float> Bias)>();
        while (named.TryGetValue($"dnn.{layers.Count}.weight", out var w) && named.TryGetValue($"dnn.{layers.Count}.bias", out var bb))
            layers.Add((w, bb));
        if (layers.Count == 0) throw new InvalidOperationException("LinearInDnn: the model has no DNN.");
        int d = embedding.Dim, fields = embedding.FieldCount;
        float bias = Read(fitted["linear.bias"])[0];

        WriteFirstColumn(embedding, fitted);

        for (int i = 0; i < layers.Count; i++)
        {
            var (layerWeight, layerBias) = layers[i];
            int ins = layerWeight.Shape[1];
            var weight = Read(layerWeight);                                         // [out, in], row-major
            var b = Read(layerBias);                                                // [out]
            Array.Clear(weight, 0, 2 * ins);                                        // rows 0 and 1
            if (i == 0)
            {
                if (ins != fields * d) throw new InvalidOperationException($"LinearInDnn: dnn.0 reads {ins} inputs, expected F·D = {fields * d}.");
                for (int f = 0; f < fields; f++) { weight[f * d] = 1f; weight[ins + f * d] = -1f; }
                b[0] = bias;
                b[1] = -bias;
            }
            else
            {
                weight[0] = 1f; weight[1] = -1f;                                    // unit 0: relu(h₀ − h₁)
                weight[ins] = -1f; weight[ins + 1] = 1f;                            // unit 1: relu(h₁ − h₀)
                b[0] = 0f;
                b[1] = 0f;
            }
            Write(layerWeight, weight);
            Write(layerBias, b);
        }

        // The output layer: the DNN's dnn_out [1, H_last]; DCN's combination layer dcn_out [1, F·D + H_last] reads the
        // cross network's F·D outputs first, then the MLP's units (their weights stay zero: the cross terms start silent).
        bool dcn = model.Config.Model is ModelKind.Dcn or ModelKind.DcnV2;
        string outName = dcn ? "dcn_out" : "dnn_out";
        int offset = dcn ? fields * d : 0;
        var outWeight = Read(named[outName + ".weight"]);
        Array.Clear(outWeight);
        outWeight[offset] = 1f;
        outWeight[offset + 1] = -1f;
        Write(named[outName + ".weight"], outWeight);
        if (named.TryGetValue(outName + ".bias", out var outBias)) Write(outBias, [0f]);
    }

    /// <summary>Column 0 of every row of <paramref name="embedding"/>'s tables [V_f, D] ← that id's weight in the fitted LR
    /// (<c>linear.{field}.weight</c> [V_f, 1]); the other columns are left as they are.</summary>
    public static void WriteFirstColumn(FieldEmbeddings embedding, IReadOnlyDictionary<string, Tensor<float>> fitted)
    {
        int d = embedding.Dim;
        for (int f = 0; f < embedding.FieldCount; f++)
        {
            var table = embedding.Tables[f];                                        // [V, D], row-major
            var w = Read(fitted[$"linear.{embedding.Fields[f].Name}.weight"]);      // [V, 1]
            var values = Read(table);
            if (values.Length != w.Length * d)
                throw new InvalidOperationException($"LinearInDnn: field '{embedding.Fields[f].Name}' has {values.Length / d} embedding rows but {w.Length} LR weights.");
            for (int v = 0; v < w.Length; v++) values[v * d] = w[v];
            Write(table, values);
        }
    }

    // ToArray, not a raw download: it first applies any lazily deferred weight decay to the rows (the tables' true values).
    private static float[] Read(Tensor<float> t) => t.ToArray();

    private static void Write(Tensor<float> t, float[] values) => t.Backend.Upload(values, t.Storage);
}
