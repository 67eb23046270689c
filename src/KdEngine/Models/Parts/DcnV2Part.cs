using System.Numerics.Tensors;
using KdEngine.Kernels.Cpu;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Serving;
using KdEngine.Tensors;
using Tensor = KdEngine.Tensors.Tensor<float>;

namespace KdEngine.Models.Parts;

/// <summary>
/// DCN-V2 (Wang et al., WWW 2021): the cross network of <see cref="CrossNetworkV2"/> (full rank, low rank or a mixture of
/// low-rank experts) with a DNN, either in parallel — z = Linear(concat(cross(x0), MLP(x0)), 1) — or stacked —
/// z = Linear(MLP(cross(x0)), 1) (<see cref="ModelConfig.CrossStructure"/>). Parameters <c>cross.{l}.*</c> (see
/// <see cref="CrossNetworkV2"/>), <c>dnn.{i}.weight</c>/<c>.bias</c>, <c>dcn_out.weight</c> [1, n + width] (parallel) or
/// [1, width] (stacked), <c>dcn_out.bias</c> [1]. Hidden layers <c>cross</c> [B, n] and <c>dnn.{i}</c>.
/// Inference: every cross layer as GEMMs over the batch (Wᵀ, V and Uᵀ stored as the GEMM's in-place B operand), the
/// compiled MLP, then the output dot products.
/// </summary>
public sealed class DcnV2Part : ModelPart
{
    private readonly CrossNetworkV2 _cross;
    private readonly Mlp _mlp;
    private readonly Linear _out;
    private readonly bool _stacked;

    /// <summary>Builds the part from the model's config, input fields and seeded random source (<paramref name="context"/>);
    /// a rank above the cross network's width F·D is a <see cref="ConfigException"/>.</summary>
    public DcnV2Part(PartContext context)
    {
        var c = context.Config;
        int n = context.Fields.Count * c.EmbeddingDim;
        if (c.CrossRank > n) throw new ConfigException($"crossRank = {c.CrossRank} exceeds the cross network's width F·D = {n}.");
        _stacked = c.CrossStructure == CrossStructure.Stacked;
        _cross = AddModule("cross", new CrossNetworkV2(n, c.CrossLayers, c.CrossRank, c.CrossExperts, context.Rng));
        _mlp = AddModule("dnn", new Mlp(n, c.Dnn, c.DnnActivation, c.Dropout, context.Rng));
        _out = AddModule("dcn_out", new Linear(_stacked ? _mlp.OutFeatures : n + _mlp.OutFeatures, 1, context.Rng));
    }

    /// <summary>How a model builds, counts (before building) and validates this part (it needs a DNN).</summary>
    public static PartRecipe Recipe { get; } = new(
        ReadsEmbedding: true,
        ParameterCount: (c, fields) =>
        {
            long n = (long)fields.Count * c.EmbeddingDim;
            return CrossNetworkV2.ParameterCount(n, c.CrossLayers, c.CrossRank, c.CrossExperts)
                + DnnPart.MlpParameterCount(c, n)
                + (c.CrossStructure == CrossStructure.Stacked ? 0 : n) + c.Dnn[^1] + 1; // dcn_out weight + bias
        },
        Build: context => new DcnV2Part(context),
        Validate: DnnPart.RequireDnn);

    /// <inheritdoc/>
    public override bool ReadsEmbedding => true;

    /// <inheritdoc/>
    public override bool ZeroOutputLayer() => Zero(_out);
    /// <inheritdoc/>
    public override bool IsInteractionLayer => true;

    /// <inheritdoc/>
    public override Tensor Forward(in PartInput input, IDictionary<string, Tensor> hidden)
    {
        var crossed = _cross.Forward(input.Flat!);                     // [B, n]
        hidden["cross"] = crossed;
        if (_stacked) return _out.Forward(_mlp.Forward(crossed, hidden)); // [B, width] → [B, 1]
        var deep = _mlp.Forward(input.Flat!, hidden);                  // [B, width]
        return _out.Forward(Op.Concat([crossed, deep], axis: 1));       // [B, n + width] → [B, 1]
    }

    /// <inheritdoc/>
    public override IEnumerable<Tensor> ServingMatrices => _mlp.Layers.Select(l => l.Weight);

    /// <inheritdoc/>
    public override InferenceStage Compile(PlanLayout layout) => new DcnV2Stage(_cross, new DenseStack(_mlp, layout), _out, _stacked);

    /// <inheritdoc/>
    public override string EmitOnnx(IOnnxGraph g, in OnnxPartInput input)
    {
        string flat = input.Flat!;
        int n = _cross.Width, r = _cross.Rank;
        string x = flat;
        for (int l = 0; l < _cross.Layers.Count; l++)
        {
            var layer = _cross.Layers[l];
            string bias = OnnxEmit.Vector(g, $"cross.{l}.bias", layer.Bias);
            string y;                                                                                          // [B, n]
            if (layer.Weight is not null)
                y = g.Node("Gemm", [x, OnnxEmit.Matrix(g, $"cross.{l}.weight", layer.Weight, n, n), bias], ("transB", 1));
            else
            {
                string Expert(int i) => g.Node("Gemm", [                                                       // U_i·(V_iᵀ·x): [B, r] → [B, n]
                    g.Node("MatMul", [x, OnnxEmit.Matrix(g, $"cross.{l}.v.{i}", layer.V[i], n, r)]),
                    OnnxEmit.Matrix(g, $"cross.{l}.u.{i}", layer.U[i], n, r)], ("transB", 1));
                if (layer.Gate is null) y = g.Node("Add", [Expert(0), bias]);
                else
                {
                    int k = layer.U.Count;
                    string gates = g.Node("Softmax", [g.Node("Gemm", [x, OnnxEmit.Matrix(g, $"cross.{l}.gate", layer.Gate, k, n)], ("transB", 1))], ("axis", 1)); // [B, K]
                    string? mix = null;
                    for (int i = 0; i < k; i++)
                    {
                        string gi = g.Node("Slice", [gates, g.Int64s($"cross.{l}.gate.{i}.start", [i], [1]), g.Int64s($"cross.{l}.gate.{i}.end", [i + 1], [1]),
                            g.Int64s("axis1", [1], [1])]);                                                     // [B, 1]
                        string weighted = g.Node("Mul", [Expert(i), gi]);
                        mix = mix is null ? weighted : g.Node("Add", [mix, weighted]);
                    }
                    y = g.Node("Add", [mix!, bias]);
                }
            }
            x = g.Node("Add", [g.Node("Mul", [flat, y]), x]);                                                  // x0 ∘ y + x_l
        }
        string outW = OnnxEmit.Matrix(g, "dcn_out.weight", _out.Weight, 1, _out.InFeatures);
        string outB = OnnxEmit.Vector(g, "dcn_out.bias", _out.Bias!);
        string joined = _stacked ? DnnPart.EmitMlp(g, _mlp, x) : g.Node("Concat", [x, DnnPart.EmitMlp(g, _mlp, flat)], ("axis", 1));
        return g.Node("Gemm", [joined, outW, outB], ("transB", 1));                                            // [B, 1]
    }

    /// <summary>
    /// Per cross layer, over all rows at once: Y [B, n] = X·Wᵀ + b (full rank: Wᵀ [n, n] in place), or T = X·V [B, r] then
    /// Y = T·Uᵀ + b (Uᵀ [r, n]), or for a mixture the gate softmax(X·Γᵀ) [B, K] and Y = Σ_i G_i·(X·V_i)·U_iᵀ + b; then
    /// X ← x0 ∘ Y + X. Then the MLP (on x0, or on X when stacked) and the output dot products.
    /// </summary>
    private sealed class DcnV2Stage : InferenceStage
    {
        private readonly int _n, _rank, _experts;
        private readonly Layer[] _layers;
        private readonly DenseStack _mlp;
        private readonly float[] _out;
        private readonly float _outBias;
        private readonly bool _stacked;

        public DcnV2Stage(CrossNetworkV2 cross, DenseStack mlp, Linear output, bool stacked)
        {
            _n = cross.Width;
            _rank = cross.Rank;
            _experts = cross.Experts;
            _mlp = mlp;
            _stacked = stacked;
            _out = output.Weight.ToArray();
            _outBias = output.Bias!.ToArray()[0];
            _layers = cross.Layers.Select(l => new Layer(
                l.Weight is null ? null : Transpose(l.Weight.ToArray(), _n, _n),             // Wᵀ [n(in), n(out)]
                l.V.Select(v => v.ToArray()).ToArray(),                                       // V [n, r]
                l.U.Select(u => Transpose(u.ToArray(), _n, _rank)).ToArray(),                 // Uᵀ [r, n]
                l.Gate is null ? null : Transpose(l.Gate.ToArray(), _experts, _n),            // Γᵀ [n, K]
                l.Bias.ToArray())).ToArray();
        }

        /// <summary>a [rows, cols] → aᵀ [cols, rows].</summary>
        private static float[] Transpose(float[] a, int rows, int cols)
        {
            var t = new float[a.Length];
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
            return t;
        }

        public override StagePhases Phases => StagePhases.Batch;

        /// <summary>The cross layers are float32 SGEMMs over the range's rows (their bits change across 16 rows), as is the MLP.</summary>
        public override RangeRule RangeRuleFor(int batch) => RangeRule.SgemmRows(batch).And(_mlp.RangeRuleFor(batch));

        /// <summary>Per sample: each cross layer's products (full rank n·n; per expert n·r twice, plus the gate n·K) and the MLP.</summary>
        public override long MacsPerRow => _mlp.MacsPerRow + _layers.Sum(CrossMacs) + _out.Length;

        /// <summary>The MLP's weights in its serving format and the cross layers' float32 matrices.</summary>
        public override long WeightBytes => _mlp.WeightBytes + 4L * _layers.Sum(CrossMacs);

        public override long HeldBytes => _mlp.HeldBytes + 4L * (_layers.Sum(CrossMacs) + _layers.Sum(l => (long)l.Bias.Length) + _out.Length + 1);

        private long CrossMacs(Layer l) =>
            (l.WeightT?.LongLength ?? 0) + l.V.Sum(v => v.LongLength) + l.UT.Sum(u => u.LongLength) + (l.GateT?.LongLength ?? 0);

        /// <summary>X [B, n], Y [B, n], for a mixture E [B, n] and gates [B, K], T [B, r], then the MLP's ping-pong.</summary>
        public override long ScratchFloats(int rows) =>
            (long)rows * (2L * _n + (_experts > 1 ? _n + _experts : 0) + _rank) + _mlp.ScratchFloats(rows);

        public override void Run(in StageBatch batch)
        {
            int rows = batch.Rows, n = _n, r = _rank, k = _experts;
            var s = batch.Scratch;
            int at = 0;
            Span<float> Take(Span<float> from, int count) { var t = from.Slice(at, count); at += count; return t; }
            var x = Take(s, rows * n);
            var y = Take(s, rows * n);
            var e = k > 1 ? Take(s, rows * n) : default;
            var gates = k > 1 ? Take(s, rows * k) : default;
            var t = Take(s, rows * r);
            var mlpScratch = s.Slice(at, (int)_mlp.ScratchFloats(rows));
            var x0 = batch.X0.Slice(0, rows * n);
            x0.CopyTo(x);
            foreach (var layer in _layers)
            {
                for (int b = 0; b < rows; b++) layer.Bias.CopyTo(y.Slice(b * n, n));
                if (layer.WeightT is not null)
                    Sgemm.Multiply(false, false, rows, n, n, 1f, x, layer.WeightT, 1f, y);         // Y = X·Wᵀ + b
                else if (k == 1)
                {
                    Sgemm.Multiply(false, false, rows, r, n, 1f, x, layer.V[0], 0f, t);            // T [B, r] = X·V
                    Sgemm.Multiply(false, false, rows, n, r, 1f, t, layer.UT[0], 1f, y);           // Y = T·Uᵀ + b
                }
                else
                {
                    Sgemm.Multiply(false, false, rows, k, n, 1f, x, layer.GateT!, 0f, gates);      // [B, K] gate logits
                    for (int b = 0; b < rows; b++) Softmax(gates.Slice(b * k, k));
                    for (int i = 0; i < k; i++)
                    {
                        Sgemm.Multiply(false, false, rows, r, n, 1f, x, layer.V[i], 0f, t);        // T = X·V_i
                        Sgemm.Multiply(false, false, rows, n, r, 1f, t, layer.UT[i], 0f, e);       // E = T·U_iᵀ
                        for (int b = 0; b < rows; b++)
                            TensorPrimitives.MultiplyAdd(e.Slice(b * n, n), gates[b * k + i], y.Slice(b * n, n), y.Slice(b * n, n)); // Y += G_i·E
                    }
                }
                TensorPrimitives.FusedMultiplyAdd(x0, y, x, x);                                    // X = x0 ∘ Y + X
            }
            var deep = _mlp.Run(_stacked ? x : x0, rows, mlpScratch);
            int width = _mlp.OutFeatures;
            for (int b = 0; b < rows; b++)
            {
                float z = _stacked
                    ? TensorPrimitives.Dot(deep.Slice(b * width, width), _out)
                    : TensorPrimitives.Dot(x.Slice(b * n, n), _out.AsSpan(0, n)) + TensorPrimitives.Dot(deep.Slice(b * width, width), _out.AsSpan(n, width));
                batch.Logits[b] += z + _outBias;
            }
        }

        /// <summary>Stable softmax in place: exp(z − max) / Σ.</summary>
        private static void Softmax(Span<float> z)
        {
            float max = TensorPrimitives.Max(z);
            TensorPrimitives.Subtract(z, max, z);
            TensorPrimitives.Exp(z, z);
            TensorPrimitives.Divide(z, TensorPrimitives.Sum(z), z);
        }

        private sealed record Layer(float[]? WeightT, float[][] V, float[][] UT, float[]? GateT, float[] Bias);
    }
}
