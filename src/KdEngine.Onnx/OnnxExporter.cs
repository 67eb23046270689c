using System.Runtime.InteropServices;
using KdEngine.Models;
using KdEngine.Serving;

namespace KdEngine.Onnx;

/// <summary>
/// Writes a <see cref="ZooModel"/> (any kind; a distilled student is a ZooModel too) as an ONNX model, opset 17,
/// IR version 8. Input <c>ids</c> [B, C] int64 (B dynamic, named "B"; C = the id columns, as the predictor takes them),
/// output <c>logit</c> [B, 1] float. The graph computes exactly <see cref="ZooModel.Forward"/> in evaluation mode:
/// <code>
///   sel   = Gather(ids, columns, axis 1)                 [B, F]      (only when the model reads a subset/permutation)
///   gid   = sel + offsets                                [B, F]      (field f's rows start at offsets[f])
///   x0    = Gather(embedding_table [ΣV, D], gid)         [B, F, D];  flat = Flatten(x0) [B, F·D]   (when a part reads them)
///   logit = Σ over the model's parts of the part's own nodes (<see cref="Models.Parts.ModelPart.EmitOnnx"/>), in part order
/// </code>
/// The exporter knows nothing of which model it writes: each part emits its term (wide, FM, DNN, CIN, cross …) through
/// <see cref="IOnnxGraph"/>, which this class implements over its own protobuf writer.
/// Ids must lie inside their field's table; the graph does not check them (ONNX Gather would read a negative id from
/// the end of the concatenated table): validate upstream, as <c>Predictor</c> does.
/// </summary>
public static class OnnxExporter
{
    /// <summary>The ONNX operator set the graph uses.</summary>
    public const int Opset = 17;
    /// <summary>The ONNX IR version written.</summary>
    public const int IrVersion = 8;
    /// <summary>Name of the graph input: int64 ids [B, C].</summary>
    public const string InputName = "ids";
    /// <summary>Name of the graph output: float logits [B, 1].</summary>
    public const string OutputName = "logit";

    /// <summary>Writes the model to <paramref name="path"/> (replacing it).</summary>
    /// <param name="model">Any zoo model (a distilled student is one).</param>
    /// <param name="path">The .onnx file to write.</param>
    /// <param name="inputColumns">Width C of the <c>ids</c> input; default the highest column the model reads + 1.</param>
    public static void Export(ZooModel model, string path, int? inputColumns = null)
    {
        using var stream = File.Create(path);
        Export(model, stream, inputColumns);
    }

    /// <summary>Writes the model to <paramref name="stream"/> (see the class summary for the graph); <paramref name="inputColumns"/> as in the path overload.</summary>
    public static void Export(ZooModel model, Stream stream, int? inputColumns = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(stream);
        Build(model, inputColumns).CopyTo(stream);
    }

    /// <summary>The model as ONNX bytes; <paramref name="inputColumns"/> as in <see cref="Export(ZooModel, string, int?)"/>.</summary>
    public static byte[] ToBytes(ZooModel model, int? inputColumns = null) => Build(model, inputColumns).ToArray();

    private static ProtoWriter Build(ZooModel model, int? inputColumns)
    {
        if (model.Fields.FirstOrDefault(x => x.IsMultiValued || x.ScaleByValue) is { } unsupported)
            throw new NotSupportedException(
                $"OnnxExporter: field '{unsupported.Name}' is {(unsupported.IsMultiValued ? "multi-valued" : "scaled by a dense value")}; the ONNX graph takes one int64 id per field only.");
        var config = model.Config;
        var layout = new PlanLayout(model.Fields, config.EmbeddingDim);
        int f = layout.FieldCount, d = config.EmbeddingDim;
        var columns = model.Columns.ToArray();
        int c = inputColumns ?? columns.Max() + 1;
        if (c <= columns.Max())
            throw new ArgumentException($"OnnxExporter: inputColumns = {c}, but the model reads column {columns.Max()}.");

        var g = new Graph();
        // ids [B, C] → gid [B, F]: the model's columns, shifted into the concatenated tables.
        string sel = InputName;
        if (c != f || columns.Where((col, i) => col != i).Any())
            sel = g.Node("Gather", [InputName, g.Int64s("columns", columns.Select(x => (long)x).ToArray(), [f])], ("axis", 1));
        string gid = g.Node("Add", [sel, g.Int64s("offsets", layout.RowOffsets.Select(x => (long)x).ToArray(), [f])]);
        string? x0 = null, flat = null;
        if (model.Embedding is { } embedding)
        {
            string table = OnnxEmit.Table(g, "embedding.table", layout, embedding.Tables, d);
            x0 = g.Node("Gather", [table, gid], ("axis", 0));                                                    // [B, F, D]
            flat = g.Node("Flatten", [x0], ("axis", 1));                                                         // [B, F·D]
        }
        var input = new OnnxPartInput(gid, x0, flat, layout);
        string? logit = null;
        foreach (var part in model.Parts)
        {
            string term = part.EmitOnnx(g, input);                                                               // [B, 1]
            logit = logit is null ? term : g.Node("Add", [logit, term]);
        }
        g.Node("Identity", [logit!], output: OutputName);

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
    private sealed class Graph : IOnnxGraph
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
