using KdEngine.Nn;

namespace KdEngine.Serving;

/// <summary>
/// The ONNX graph a model part writes its nodes into (<see cref="Models.Parts.ModelPart.EmitOnnx"/>). The core only
/// names ONNX operators and constants; KdEngine.Onnx implements this and owns the protobuf. Values are referred to by
/// name; a node's output name is returned.
/// </summary>
public interface IOnnxGraph
{
    /// <summary>Adds a node of operator <paramref name="op"/> (opset 17) with integer attributes; returns its output name.</summary>
    string Node(string op, string[] inputs, params (string Name, long Value)[] attributes);

    /// <summary>Adds (once per name) a float constant of shape <paramref name="dims"/>; returns its name.</summary>
    string Floats(string name, float[] data, long[] dims);

    /// <summary>Adds (once per name) an int64 constant of shape <paramref name="dims"/>; returns its name.</summary>
    string Int64s(string name, long[] data, long[] dims);
}

/// <summary>
/// What the exporter gives every part: <see cref="FeatureRows"/> gid [B, F] int64 (field f's id shifted by
/// <see cref="PlanLayout.RowOffsets"/>[f] into tables concatenated over fields), the shared embeddings
/// <see cref="X0"/> [B, F, D] and <see cref="Flat"/> [B, F·D] (null when no part reads them), and the layout.
/// </summary>
public readonly record struct OnnxPartInput(string FeatureRows, string? X0, string? Flat, PlanLayout Layout);

/// <summary>Small ONNX helpers shared by the parts.</summary>
public static class OnnxEmit
{
    /// <summary>The hidden-layer activation as a node (identity: no node).</summary>
    public static string Activate(IOnnxGraph g, string x, Activation activation) => activation switch
    {
        Activation.Relu => g.Node("Relu", [x]),
        Activation.Tanh => g.Node("Tanh", [x]),
        Activation.Sigmoid => g.Node("Sigmoid", [x]),
        _ => x,
    };

    /// <summary>Per-field tables [V_f, width] concatenated into one float constant [ΣV, width] (or [ΣV] when
    /// <paramref name="vector"/>), read by the feature rows.</summary>
    public static string Table(IOnnxGraph g, string name, PlanLayout layout, IReadOnlyList<Tensors.Tensor<float>> tables, int width, bool vector = false)
    {
        var all = new float[layout.TotalRows * width];
        long at = 0;
        foreach (var t in tables)
        {
            t.Backend.Download(t.Storage, all.AsSpan(checked((int)at), t.Length));
            at += t.Length;
        }
        if (at != all.LongLength) throw new ArgumentException($"OnnxExporter: the {name} tables hold {at} values; expected {all.LongLength}.");
        return g.Floats(name, all, vector ? [layout.TotalRows] : [layout.TotalRows, width]);
    }

    /// <summary>A dense [rows, cols] weight as a float constant.</summary>
    public static string Matrix(IOnnxGraph g, string name, Tensors.Tensor<float> t, long rows, long cols) => g.Floats(name, t.ToArray(), [rows, cols]);

    /// <summary>A weight as a 1-D float constant.</summary>
    public static string Vector(IOnnxGraph g, string name, Tensors.Tensor<float> t) => g.Floats(name, t.ToArray(), [t.Length]);
}
