using System.Runtime.InteropServices;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Tensors;

namespace KdEngine.Onnx;

/// <summary>
/// Writes a <see cref="ZooModel"/> (any kind; a distilled student is a ZooModel too) as an ONNX model, opset 17,
/// IR version 8. Input <c>ids</c> [B, C] int64 (B dynamic, named "B"; C = the id columns, as the predictor takes them),
/// output <c>logit</c> [B, 1] float. The graph computes exactly <see cref="ZooModel.Forward"/> in evaluation mode:
/// <code>
///   sel   = Gather(ids, columns, axis 1)                 [B, F]      (only when the model reads a subset/permutation)
///   gid   = sel + offsets                                [B, F]      (field f's rows start at offsets[f])
///   wide  = ReduceSum(Gather(wide_table [ΣV], gid), 1) + b           [B, 1]
///   x0    = Gather(embedding_table [ΣV, D], gid)         [B, F, D];  flat = Flatten(x0) [B, F·D]
///   fm    = ½·ReduceSum((Σ_f x0)² − Σ_f x0², 1)           [B, 1]
///   dnn   = Gemm/activation stack on flat, MatMul(dnn_out)           [B, 1]
///   cin   = per layer: Mul(Unsqueeze(h, 2) [B,H,1,D], Unsqueeze(x0, 1) [B,1,F,D]) → Reshape [B, H·F, D],
///           MatMul(W [K, H·F], ·) → [B, K, D], + bias [K, 1], activation, Slice (split-half), ReduceSum over D
///   dcn   = cross layers x ← x0 ∘ (x·w) + b + x, then Gemm(concat(x, deep), dcn_out)
///   logit = wide + fm + dnn + cin   (or dcn)
/// </code>
/// Ids must lie inside their field's table; the graph does not check them (ONNX Gather would read a negative id from
/// the end of the concatenated table): validate upstream, as <c>Predictor</c> does.
/// </summary>
public static class OnnxExporter
{
    public const int Opset = 17;
    public const int IrVersion = 8;
    public const string InputName = "ids";
    public const string OutputName = "logit";

    /// <summary>Writes the model to <paramref name="path"/> (replacing it).</summary>
    /// <param name="inputColumns">Width C of the <c>ids</c> input; default the highest column the model reads + 1.</param>
    public static void Export(ZooModel model, string path, int? inputColumns = null)
    {
        using var stream = File.Create(path);
        Export(model, stream, inputColumns);
    }

    public static void Export(ZooModel model, Stream stream, int? inputColumns = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(stream);
        Build(model, inputColumns).CopyTo(stream);
    }

    public static byte[] ToBytes(ZooModel model, int? inputColumns = null) => Build(model, inputColumns).ToArray();

    private static ProtoWriter Build(ZooModel model, int? inputColumns)
    {
        if (model.Parameters().FirstOrDefault(p => p.Tensor.RowShard is not null) is { Tensor: not null } sharded)
            throw new NotSupportedException($"ONNX export: table '{sharded.Name}' holds only this rank's rows (row-sharded); export the saved checkpoint instead.");
        if (model.Fields.FirstOrDefault(x => x.IsMultiValued || x.ScaleByValue) is { } unsupported)
            throw new NotSupportedException(
                $"OnnxExporter: field '{unsupported.Name}' is {(unsupported.IsMultiValued ? "multi-valued" : "scaled by a dense value")}; the ONNX graph takes one int64 id per field only.");
        var config = model.Config;
        var kind = config.Model;
        int f = model.Fields.Count, d = config.EmbeddingDim;
        var columns = model.Columns.ToArray();
        int c = inputColumns ?? columns.Max() + 1;
        if (c <= columns.Max())
            throw new ArgumentException($"OnnxExporter: inputColumns = {c}, but the model reads column {columns.Max()}.");
        var p = model.Parameters().ToDictionary(x => x.Name, x => x.Tensor, StringComparer.Ordinal);
        Tensor<float> Param(string name) => p.TryGetValue(name, out var t) ? t
            : throw new ArgumentException($"OnnxExporter: the {kind} model has no parameter '{name}'.");

        var g = new Graph();
        // ids [B, C] → gid [B, F]: the model's columns, shifted into the concatenated tables.
        string sel = InputName;
        if (c != f || columns.Where((col, i) => col != i).Any())
            sel = g.Node("Gather", [InputName, g.Int64s("columns", columns.Select(x => (long)x).ToArray(), [f])], ("axis", 1));
        var offsets = new long[f];
        long rows = 0;
        for (int i = 0; i < f; i++) { offsets[i] = rows; rows += model.Fields[i].Cardinality; }
        string gid = g.Node("Add", [sel, g.Int64s("offsets", offsets, [f])]);

        var terms = new List<string>();
        bool wide = kind is ModelKind.Lr or ModelKind.Fm or ModelKind.Wdl or ModelKind.DeepFm or ModelKind.XDeepFm;
        if (wide)
        {
            var table = Concat(model.Fields.Select(x => Param($"linear.{x.Name}.weight")), rows);
            string w = g.Node("Gather", [g.Floats("linear.table", table, [rows]), gid], ("axis", 0));              // [B, F]
            string sum = g.Node("ReduceSum", [w, g.Int64s("axis1", [1], [1])], ("keepdims", 1));                    // [B, 1]
            terms.Add(g.Node("Add", [sum, g.Floats("linear.bias", Param("linear.bias").ToArray(), [1])]));
        }
        string? x0 = null, flat = null;
        if (kind != ModelKind.Lr)
        {
            var table = Concat(model.Embedding!.Tables, rows * d);
            x0 = g.Node("Gather", [g.Floats("embedding.table", table, [rows, d]), gid], ("axis", 0));             // [B, F, D]
            flat = g.Node("Flatten", [x0], ("axis", 1));                                                           // [B, F·D]
        }
        if (kind is ModelKind.Fm or ModelKind.DeepFm)
        {
            string axis1 = g.Int64s("axis1", [1], [1]);
            string s = g.Node("ReduceSum", [x0!, axis1], ("keepdims", 0));                                       // [B, D]
            string q = g.Node("ReduceSum", [g.Node("Mul", [x0!, x0!]), axis1], ("keepdims", 0));                // [B, D]
            string diff = g.Node("Sub", [g.Node("Mul", [s, s]), q]);                                              // [B, D]
            string half = g.Floats("half", [0.5f], []);
            terms.Add(g.Node("Mul", [g.Node("ReduceSum", [diff, axis1], ("keepdims", 1)), half]));               // [B, 1]
        }
        string? deep = null;
        if (kind is ModelKind.Dnn or ModelKind.Wdl or ModelKind.DeepFm or ModelKind.Dcn or ModelKind.XDeepFm)
        {
            deep = flat!;
            int prev = f * d;
            for (int i = 0; i < config.Dnn.Length; i++)
            {
                int width = config.Dnn[i];
                string w = g.Floats($"dnn.{i}.weight", Param($"dnn.{i}.weight").ToArray(), [width, prev]);       // [out, in]
                string b = g.Floats($"dnn.{i}.bias", Param($"dnn.{i}.bias").ToArray(), [width]);
                deep = Activate(g, g.Node("Gemm", [deep, w, b], ("transB", 1)), config.DnnActivation);         // [B, out]
                prev = width;
            }
            if (kind != ModelKind.Dcn)
                terms.Add(g.Node("MatMul", [deep, g.Floats("dnn_out.weight", Param("dnn_out.weight").ToArray(), [prev, 1])])); // [B, 1]
        }
        if (kind == ModelKind.XDeepFm)
        {
            string axis1 = g.Int64s("axis1", [1], [1]);
            string axis2 = g.Int64s("axis2", [2], [1]);
            string x0Row = g.Node("Unsqueeze", [x0!, axis1]);                                                     // [B, 1, F, D]
            string h = x0!;
            int hMaps = f;
            var pooled = new List<string>();
            for (int k = 0; k < config.Cin.Length; k++)
            {
                int maps = config.Cin[k];
                bool last = k == config.Cin.Length - 1;
                string z = g.Node("Mul", [g.Node("Unsqueeze", [h, axis2]), x0Row]);                               // [B, H, F, D]
                z = g.Node("Reshape", [z, g.Int64s($"cin.{k}.shape", [0, hMaps * f, d], [3])]);                   // [B, H·F, D]
                string w = g.Floats($"cin.{k}.weight", Param($"cin.{k}.weight").ToArray(), [maps, hMaps * f]);
                string y = g.Node("MatMul", [w, z]);                                                              // [K, H·F]·[B, H·F, D] → [B, K, D]
                y = g.Node("Add", [y, g.Floats($"cin.{k}.bias", Param($"cin.{k}.bias").ToArray(), [maps, 1])]);
                y = Activate(g, y, config.CinActivation);
                string toOutput = y;
                if (config.CinSplitHalf && !last)
                {
                    int half = maps / 2;
                    h = g.Node("Slice", [y, g.Int64s($"cin.{k}.first", [0], [1]), g.Int64s($"cin.{k}.half", [half], [1]), axis1]);      // [B, H/2, D]
                    toOutput = g.Node("Slice", [y, g.Int64s($"cin.{k}.half", [half], [1]), g.Int64s($"cin.{k}.end", [maps], [1]), axis1]); // [B, K − H/2, D]
                    hMaps = half;
                }
                else
                {
                    h = y;
                    hMaps = maps;
                }
                if (config.CinDirectConnections || last)
                    pooled.Add(g.Node("ReduceSum", [toOutput, axis2], ("keepdims", 0)));                          // [B, maps]
            }
            string all = pooled.Count == 1 ? pooled[0] : g.Node("Concat", pooled.ToArray(), ("axis", 1));
            var wOut = Param("cin_out.weight");
            terms.Add(g.Node("MatMul", [all, g.Floats("cin_out.weight", wOut.ToArray(), [wOut.Length, 1])]));  // [B, 1]
        }
        if (kind == ModelKind.Dcn)
        {
            int n = f * d;
            string x = flat!;
            for (int l = 0; l < config.CrossLayers; l++)
            {
                string s = g.Node("MatMul", [x, g.Floats($"cross.{l}.weight", Param($"cross.{l}.weight").ToArray(), [n, 1])]); // [B, 1]
                string t = g.Node("Add", [g.Node("Mul", [flat!, s]), g.Floats($"cross.{l}.bias", Param($"cross.{l}.bias").ToArray(), [n])]);
                x = g.Node("Add", [t, x]);                                                                        // [B, n]
            }
            string cat = g.Node("Concat", [x, deep!], ("axis", 1));                                               // [B, n + width]
            var w = Param("dcn_out.weight");
            terms.Add(g.Node("Gemm", [cat, g.Floats("dcn_out.weight", w.ToArray(), [1, w.Length]),
                g.Floats("dcn_out.bias", Param("dcn_out.bias").ToArray(), [1])], ("transB", 1)));
        }
        string logit = terms[0];
        for (int i = 1; i < terms.Count; i++) logit = g.Node("Add", [logit, terms[i]]);
        g.Node("Identity", [logit], output: OutputName);

        var graph = new ProtoWriter();
        foreach (var node in g.Nodes) graph.Message(OnnxFields.GraphNode, node);
        graph.String(OnnxFields.GraphName, $"kdengine_{model.TypeName}");
        foreach (var init in g.Initializers) graph.Message(OnnxFields.GraphInitializer, init);
        graph.Message(OnnxFields.GraphInput, ValueInfo(InputName, OnnxFields.Int64, "B", c));
        graph.Message(OnnxFields.GraphOutput, ValueInfo(OutputName, OnnxFields.Float, "B", 1));

        var modelProto = new ProtoWriter()
            .Int64(OnnxFields.ModelIrVersion, IrVersion)
            .String(OnnxFields.ModelProducerName, "KdEngine")
            .String(OnnxFields.ModelProducerVersion, typeof(ZooModel).Assembly.GetName().Version?.ToString() ?? "0")
            .Int64(OnnxFields.ModelVersion, 1)
            .String(OnnxFields.ModelDocString, $"KdEngine {model.TypeName}: ids [B, {c}] int64 → logit [B, 1]; config {config.ToJson()}")
            .Message(OnnxFields.ModelGraph, graph)
            .Message(OnnxFields.ModelOpsetImport, o => o.String(OnnxFields.OpsetDomain, "").Int64(OnnxFields.OpsetVersion, Opset));
        return modelProto;
    }

    private static string Activate(Graph g, string x, Activation activation) => activation switch
    {
        Activation.Relu => g.Node("Relu", [x]),
        Activation.Tanh => g.Node("Tanh", [x]),
        Activation.Sigmoid => g.Node("Sigmoid", [x]),
        _ => x,
    };

    private static float[] Concat(IEnumerable<Tensor<float>> tables, long total)
    {
        var all = new float[total];
        long at = 0;
        foreach (var t in tables)
        {
            t.AsSpan().CopyTo(all.AsSpan(checked((int)at)));
            at += t.Length;
        }
        if (at != total) throw new ArgumentException($"OnnxExporter: tables hold {at} values; expected {total}.");
        return all;
    }

    /// <summary>ValueInfoProto of a rank-2 tensor [dimParam, cols].</summary>
    private static ProtoWriter ValueInfo(string name, int elemType, string dimParam, long cols) =>
        new ProtoWriter()
            .String(OnnxFields.ValueInfoName, name)
            .Message(OnnxFields.ValueInfoType, type => type.Message(OnnxFields.TypeTensor, tensor => tensor
                .Int64(OnnxFields.TensorTypeElemType, elemType)
                .Message(OnnxFields.TensorTypeShape, shape => shape
                    .Message(OnnxFields.ShapeDim, dim => dim.String(OnnxFields.DimParam, dimParam))
                    .Message(OnnxFields.ShapeDim, dim => dim.Int64(OnnxFields.DimValue, cols)))));

    /// <summary>Nodes and initializers in creation (topological) order; constant names are deduplicated.</summary>
    private sealed class Graph
    {
        private readonly HashSet<string> _constants = new(StringComparer.Ordinal);
        private int _next;
        public List<ProtoWriter> Nodes { get; } = new();
        public List<ProtoWriter> Initializers { get; } = new();

        public string Node(string op, string[] inputs, params (string Name, long Value)[] attributes) => Node(op, inputs, null, attributes);

        public string Node(string op, string[] inputs, string? output, params (string Name, long Value)[] attributes)
        {
            string name = output ?? $"{op.ToLowerInvariant()}_{_next}";
            var node = new ProtoWriter();
            foreach (var input in inputs) node.String(OnnxFields.NodeInput, input);
            node.String(OnnxFields.NodeOutput, name).String(OnnxFields.NodeName, $"n{_next}").String(OnnxFields.NodeOpType, op);
            foreach (var (attr, value) in attributes)
                node.Message(OnnxFields.NodeAttribute, a => a
                    .String(OnnxFields.AttributeName, attr)
                    .Int64(OnnxFields.AttributeInt, value)
                    .Int64(OnnxFields.AttributeType, OnnxFields.AttributeTypeInt));
            _next++;
            Nodes.Add(node);
            return name;
        }

        public string Floats(string name, float[] data, long[] dims) =>
            Constant(name, OnnxFields.Float, MemoryMarshal.AsBytes(data.AsSpan()), dims, data.Length);

        public string Int64s(string name, long[] data, long[] dims) =>
            Constant(name, OnnxFields.Int64, MemoryMarshal.AsBytes(data.AsSpan()), dims, data.Length);

        private string Constant(string name, int type, ReadOnlySpan<byte> raw, long[] dims, long count)
        {
            if (!_constants.Add(name)) return name;                        // shared constants (axes) are written once
            if (dims.Aggregate(1L, (a, x) => a * x) != count)
                throw new ArgumentException($"OnnxExporter: constant '{name}' has {count} values for dims [{string.Join(", ", dims)}].");
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("OnnxExporter: raw_data is little-endian; this machine is not.");
            var t = new ProtoWriter();
            foreach (long dim in dims) t.Int64(OnnxFields.TensorDims, dim);
            t.Int64(OnnxFields.TensorDataType, type).String(OnnxFields.TensorName, name).Bytes(OnnxFields.TensorRawData, raw);
            Initializers.Add(t);
            return name;
        }
    }
}

/// <summary>Field numbers and enum values of onnx.proto (onnx/onnx, IR version 8) used by the exporter.</summary>
internal static class OnnxFields
{
    // ModelProto
    public const int ModelIrVersion = 1, ModelProducerName = 2, ModelProducerVersion = 3, ModelVersion = 5, ModelDocString = 6,
        ModelGraph = 7, ModelOpsetImport = 8;
    // OperatorSetIdProto
    public const int OpsetDomain = 1, OpsetVersion = 2;
    // GraphProto
    public const int GraphNode = 1, GraphName = 2, GraphInitializer = 5, GraphInput = 11, GraphOutput = 12;
    // NodeProto
    public const int NodeInput = 1, NodeOutput = 2, NodeName = 3, NodeOpType = 4, NodeAttribute = 5;
    // AttributeProto (type INT = 2)
    public const int AttributeName = 1, AttributeInt = 3, AttributeType = 20, AttributeTypeInt = 2;
    // TensorProto
    public const int TensorDims = 1, TensorDataType = 2, TensorName = 8, TensorRawData = 9;
    // TensorProto.DataType
    public const int Float = 1, Int64 = 7;
    // ValueInfoProto, TypeProto, TypeProto.Tensor, TensorShapeProto, TensorShapeProto.Dimension
    public const int ValueInfoName = 1, ValueInfoType = 2, TypeTensor = 1, TensorTypeElemType = 1, TensorTypeShape = 2,
        ShapeDim = 1, DimValue = 1, DimParam = 2;
}
