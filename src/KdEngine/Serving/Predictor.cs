using System.Numerics.Tensors;
using KdEngine.Data;
using KdEngine.Kernels.Cpu;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Tensors;

namespace KdEngine.Serving;

/// <summary>
/// Inference-only scoring of a <see cref="ZooModel"/>: no tape, no <c>Tensor</c>, no managed allocation per call in
/// steady state. At construction the model is compiled into a flat plan over raw float arrays (a snapshot: later
/// training of the model does not change the predictor): one concatenated embedding table [ΣV, D] with per-field row
/// offsets, the wide weights [ΣV], DNN weights transposed to [in, out] (the GEMM's B operand, read in place), CIN
/// weights transposed to [H_{k−1}·F, H_k], cross weights. <see cref="Predict"/> then runs the same math as
/// <see cref="ZooModel.Forward"/> (wide + FM + DNN + CIN + cross, logits summed in the same order) with SIMD kernels
/// (TensorPrimitives) and <see cref="Sgemm"/> for every dense product.
/// </summary>
/// <remarks>
/// <para><b>Threading.</b> One predictor may be called from many threads at once: its weights are read-only and all
/// scratch lives in a per-thread workspace (<see cref="ThreadStaticAttribute"/>, grown on demand, never shrunk), so a
/// call's result depends only on its input — concurrent callers get exactly the scores single-threaded scoring gives
/// for the same batches. Intra-op parallelism is the SGEMM's own (its thread setting); the rest runs on the caller.</para>
/// <para><b>Allocation.</b> After one warm-up call at a batch size (or any larger one) on a thread, <see cref="Predict"/>
/// allocates nothing on that thread. The raw-row overloads allocate nothing either for single-valued fields (the
/// preprocessor's encoder is allocation-free for them); multi-valued fields split their text (allocates) although the
/// zoo models do not read them.</para>
/// <para><b>Fused CIN.</b> See <see cref="RunCinTile"/>: per tile of samples, one GEMM per layer, the [B, H·F, D] outer
/// product is never materialised (only a [Bt·D, H·F] tile, Bt·D ≈ <see cref="CinTileRows"/>).</para>
/// </remarks>
public sealed class Predictor
{
    /// <summary>Rows (sample × embedding position) per CIN tile: enough rows that the GEMM's per-call packing of the
    /// constant weight operand ([H·F, K], 3 MB at the bench config) is amortised (≈ 5 %), few enough that the Z tile
    /// (256 × 3,900 floats = 4 MB at the bench config) stays near the caches.</summary>
    internal const int CinTileRows = 256;

    private readonly int _columns, _f, _d;
    private readonly int[] _readColumns;   // [F] batch column of model field f
    private readonly int[] _cardinality;   // [F]
    private readonly int[] _rowOffset;     // [F] first row of field f in the concatenated tables
    private readonly string[] _fieldNames;

    private readonly float[]? _wide;       // [ΣV] wide weights w_f[id]
    private readonly float _wideBias;
    private readonly float[]? _embedding;  // [ΣV, D]
    private readonly bool _fm;

    private readonly DenseLayer[] _dnn;
    private readonly Activation _dnnActivation;
    private readonly float[]? _dnnOut;     // [width] dnn_out weight (no bias)

    private readonly CinLayerPlan[] _cin;
    private readonly Activation _cinActivation;
    private readonly float[]? _cinOut;     // [Σ output maps]
    private readonly int _cinOutputWidth, _cinMaxChannels, _cinMaxMaps, _cinTile;

    private readonly float[][]? _crossW, _crossB; // [L][n]
    private readonly float[]? _dcnOut;     // [n + width]
    private readonly float _dcnBias;

    private readonly int _maxWidth;        // widest DNN layer (0 without DNN)

    /// <summary>Compiles an in-memory model (evaluation semantics: no dropout). <paramref name="preprocessor"/> (optional)
    /// enables the raw-row overloads; it must produce the id columns the model reads.</summary>
    public Predictor(ZooModel model, Preprocessor? preprocessor = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Parameters().FirstOrDefault(p => p.Tensor.RowShard is not null) is { Tensor: not null } sharded)
            throw new NotSupportedException(
                $"Predictor: table '{sharded.Name}' holds only this rank's rows (row-sharded over {sharded.Tensor.RowShard!.Size} ranks); save the model (rows are gathered into one file) and compile the loaded checkpoint.");
        if (model.Fields.FirstOrDefault(x => x.IsMultiValued || x.ScaleByValue) is { } unsupported)
            throw new NotSupportedException(
                $"Predictor: field '{unsupported.Name}' is {(unsupported.IsMultiValued ? "multi-valued" : "scaled by a dense value")}; the compiled predictor takes single-valued id fields only — score such a model with ZooModel.Forward under Tape<float>.NoGrad().");
        var config = model.Config;
        Kind = config.Model;
        Preprocessor = preprocessor;
        _f = model.Fields.Count;
        _d = config.EmbeddingDim;
        _readColumns = model.Columns.ToArray();
        _fieldNames = model.Fields.Select(x => x.Name).ToArray();
        _cardinality = model.Fields.Select(x => x.Cardinality).ToArray();
        _rowOffset = new int[_f];
        long rows = 0;
        for (int f = 0; f < _f; f++)
        {
            _rowOffset[f] = checked((int)rows);
            rows += _cardinality[f];
        }
        if (rows * Math.Max(_d, 1) > Array.MaxLength)
            throw new ArgumentException($"Predictor: the concatenated embedding table ({rows} rows × {_d}) exceeds the largest .NET array.");
        _columns = _readColumns.Length == 0 ? 0 : _readColumns.Max() + 1;
        if (preprocessor is not null)
        {
            var space = preprocessor.FeatureSpace;
            if (_columns > space.FieldCount)
                throw new ArgumentException($"Predictor: the model reads column {_columns - 1} but the preprocessor produces {space.FieldCount} columns.");
            for (int f = 0; f < _f; f++)
            {
                var field = space.SingleFields[_readColumns[f]];
                if (field.Cardinality != _cardinality[f])
                    throw new ArgumentException($"Predictor: model field '{_fieldNames[f]}' (cardinality {_cardinality[f]}) reads column {_readColumns[f]}, " +
                        $"which the preprocessor encodes as '{field.Name}' with cardinality {field.Cardinality}.");
            }
            _columns = space.FieldCount;
        }

        var p = model.Parameters().ToDictionary(x => x.Name, x => x.Tensor, StringComparer.Ordinal);
        float[] Get(string name, int length)
        {
            if (!p.TryGetValue(name, out var t)) throw new ArgumentException($"Predictor: the {Kind} model has no parameter '{name}'.");
            if (t.Length != length) throw new ArgumentException($"Predictor: parameter '{name}' {t.Shape} has {t.Length} values; expected {length}.");
            return t.ToArray();
        }

        var kind = Kind;
        if (kind is ModelKind.Lr or ModelKind.Fm or ModelKind.Wdl or ModelKind.DeepFm or ModelKind.XDeepFm)
        {
            _wide = HugePageArrays.Allocate<float>(rows);
            for (int f = 0; f < _f; f++)
                Get($"linear.{_fieldNames[f]}.weight", _cardinality[f]).CopyTo(_wide, _rowOffset[f]);
            _wideBias = Get("linear.bias", 1)[0];
        }
        if (kind != ModelKind.Lr)
        {
            // The model's own tables (shared embeddings may carry another module's names).
            var tables = model.Embedding!.Tables;
            _embedding = HugePageArrays.Allocate<float>(rows * _d); // [ΣV, D], gathered at random: huge pages
            for (int f = 0; f < _f; f++)
            {
                if (tables[f].Length != _cardinality[f] * _d)
                    throw new ArgumentException($"Predictor: embedding table of field '{_fieldNames[f]}' {tables[f].Shape} is not [{_cardinality[f]}, {_d}].");
                tables[f].AsSpan().CopyTo(_embedding.AsSpan(_rowOffset[f] * _d));
            }
        }
        _fm = kind is ModelKind.Fm or ModelKind.DeepFm;
        _dnn = [];
        _dnnActivation = config.DnnActivation;
        if (kind is ModelKind.Dnn or ModelKind.Wdl or ModelKind.DeepFm or ModelKind.Dcn or ModelKind.XDeepFm)
        {
            _dnn = new DenseLayer[config.Dnn.Length];
            int prev = _f * _d;
            for (int i = 0; i < _dnn.Length; i++)
            {
                int width = config.Dnn[i];
                var w = Get($"dnn.{i}.weight", width * prev);                      // [out, in]
                var wt = new float[w.Length];                                      // [in, out]
                for (int o = 0; o < width; o++)
                    for (int k = 0; k < prev; k++) wt[k * width + o] = w[o * prev + k];
                _dnn[i] = new DenseLayer(prev, width, wt, Get($"dnn.{i}.bias", width));
                _maxWidth = Math.Max(_maxWidth, width);
                prev = width;
            }
            if (kind != ModelKind.Dcn) _dnnOut = Get("dnn_out.weight", prev);
        }
        _cin = [];
        _cinActivation = config.CinActivation;
        if (kind == ModelKind.XDeepFm)
        {
            var sizes = config.Cin;
            _cin = new CinLayerPlan[sizes.Length];
            int prevMaps = _f;
            for (int k = 0; k < sizes.Length; k++)
            {
                int h = sizes[k], channels = prevMaps * _f;
                bool last = k == sizes.Length - 1;
                var w = Get($"cin.{k}.weight", h * channels);                      // [H_k, H_{k−1}·F]
                // Wᵀ [H_{k−1}·F, stride], stride = H_k rounded up to 16 with zero columns: the SGEMM then reads the
                // weights in place (a row-major B of whole 512-bit vectors) instead of packing 6.2 MB per tile and layer
                // at the bench config (measured on the CIN's GEMMs at batch 1024: 379 → 345 ms on 1 thread, 286 → 207 ms
                // on 2). The padded maps come out as 0·x + 0 = 0 and are never read.
                int stride = (h + 15) / 16 * 16;
                var wt = new float[channels * stride];
                for (int o = 0; o < h; o++)
                    for (int c = 0; c < channels; c++) wt[c * stride + o] = w[o * channels + c];
                var bias = new float[stride];
                Get($"cin.{k}.bias", h).CopyTo(bias, 0);
                int next = config.CinSplitHalf && !last ? h / 2 : h;
                int outFirst = config.CinSplitHalf && !last ? next : 0;
                bool toOutput = config.CinDirectConnections || last;
                _cin[k] = new CinLayerPlan(prevMaps, h, stride, wt, bias, next, toOutput ? outFirst : h, _cinOutputWidth);
                if (toOutput) _cinOutputWidth += h - outFirst;
                _cinMaxChannels = Math.Max(_cinMaxChannels, channels);
                _cinMaxMaps = Math.Max(_cinMaxMaps, stride);
                prevMaps = next;
            }
            _cinOut = Get("cin_out.weight", _cinOutputWidth);
            _cinTile = Math.Max(1, CinTileRows / _d);
        }
        if (kind == ModelKind.Dcn)
        {
            int n = _f * _d;
            _crossW = new float[config.CrossLayers][];
            _crossB = new float[config.CrossLayers][];
            for (int l = 0; l < config.CrossLayers; l++)
            {
                _crossW[l] = Get($"cross.{l}.weight", n);
                _crossB[l] = Get($"cross.{l}.bias", n);
            }
            _dcnOut = Get("dcn_out.weight", n + _dnn[^1].Out);
            _dcnBias = Get("dcn_out.bias", 1)[0];
        }
    }

    /// <summary>Loads a checkpoint written by <see cref="ModelCheckpoint.Save"/> (with its preprocessing, when saved).</summary>
    public static Predictor Load(string path)
    {
        var loaded = ModelCheckpoint.Load(path);
        return new Predictor(loaded.Model, loaded.Preprocessor);
    }

    public ModelKind Kind { get; }

    /// <summary>The saved preprocessing (null when the predictor was built without one: only <see cref="Predict"/> works).</summary>
    public Preprocessor? Preprocessor { get; }

    /// <summary>Width C of an id row given to <see cref="Predict"/>: the preprocessor's single-valued field count, or
    /// (without one) the highest column the model reads + 1. A student that skips privileged fields still takes full rows.</summary>
    public int InputColumns => _columns;

    /// <summary>
    /// Scores a batch of encoded rows: <paramref name="ids"/> [B, C] row-major (C = <see cref="InputColumns"/>, local
    /// per-field ids as the preprocessor produces them), <paramref name="destination"/> [B] receives logits, or
    /// probabilities σ(z) when <paramref name="probabilities"/>. An id outside its field's table is an
    /// <see cref="ArgumentOutOfRangeException"/> naming row, column, field and cardinality.
    /// </summary>
    public void Predict(ReadOnlySpan<int> ids, Span<float> destination, bool probabilities = false)
    {
        int batch = destination.Length;
        if (batch == 0 || (long)batch * _columns != ids.Length)
            throw new ArgumentException($"Predictor.Predict: {ids.Length} ids do not form [B = {batch}, C = {_columns}] (B is the destination length, which must be positive).");
        Run(ids, batch, destination, Workspace.For(this, batch));
        if (probabilities) TensorPrimitives.Sigmoid(destination, destination);
    }

    /// <summary>
    /// Scores raw records through the saved preprocessing (same schema as the preprocessor's; labels are ignored).
    /// An unseen category (or one rarer than min-count at fit time) gets its field's OOV id, a missing value (null) the
    /// missing id; hashed fields hash every value. <paramref name="destination"/> [records.Count].
    /// </summary>
    public void PredictRaw(IReadOnlyList<RawRecord> records, Span<float> destination, bool probabilities = false)
    {
        ArgumentNullException.ThrowIfNull(records);
        var pre = Preprocessor ?? throw new InvalidOperationException("Predictor.PredictRaw: this predictor has no preprocessing (load a checkpoint saved with one, or pass it to the constructor).");
        int batch = records.Count;
        if (batch == 0 || destination.Length != batch)
            throw new ArgumentException($"Predictor.PredictRaw: {batch} records but a destination of {destination.Length} (both must be equal and positive).");
        var ws = Workspace.For(this, batch);
        var encoded = ws.EncodedRowFor(pre);
        var ids = ws.Ids.AsSpan(0, batch * _columns);
        for (int b = 0; b < batch; b++)
        {
            pre.Encode(records[b], encoded);
            encoded.Ids.AsSpan(0, _columns).CopyTo(ids.Slice(b * _columns, _columns));
        }
        Run(ids, batch, destination, ws);
        if (probabilities) TensorPrimitives.Sigmoid(destination, destination);
    }

    /// <summary>
    /// Maps a header (column names of text rows) onto the preprocessor's schema, once, for
    /// <see cref="PredictRaw(RawColumns, IReadOnlyList{string?[]}, Span{float}, bool)"/>. Header columns the schema does
    /// not know (the label, extra columns) are ignored; schema fields absent from the header are always missing.
    /// </summary>
    public RawColumns MapColumns(IReadOnlyList<string> header)
    {
        ArgumentNullException.ThrowIfNull(header);
        var pre = Preprocessor ?? throw new InvalidOperationException("Predictor.MapColumns: this predictor has no preprocessing.");
        var schema = pre.Schema;
        var map = new int[schema.Count];
        Array.Fill(map, -1);
        for (int c = 0; c < header.Count; c++)
        {
            int f = schema.IndexOf(header[c]);
            if (f < 0) continue;
            if (map[f] >= 0) throw new ArgumentException($"Predictor.MapColumns: column '{header[c]}' appears twice in the header (positions {map[f]} and {c}).");
            map[f] = c;
        }
        return new RawColumns(schema, map, header.Count);
    }

    /// <summary>
    /// Scores text rows laid out as the header given to <see cref="MapColumns"/>: each row has at least that many
    /// values; null or empty text is a missing value; numeric text is parsed with the invariant culture (a
    /// non-numeric value in a numeric field is a <see cref="DataFormatException"/>). Unseen categories → OOV id.
    /// </summary>
    public void PredictRaw(RawColumns columns, IReadOnlyList<string?[]> rows, Span<float> destination, bool probabilities = false)
    {
        ArgumentNullException.ThrowIfNull(columns);
        ArgumentNullException.ThrowIfNull(rows);
        var pre = Preprocessor ?? throw new InvalidOperationException("Predictor.PredictRaw: this predictor has no preprocessing.");
        if (!ReferenceEquals(columns.Schema, pre.Schema)) throw new ArgumentException("Predictor.PredictRaw: the column map was made by another predictor's MapColumns.");
        int batch = rows.Count;
        if (batch == 0 || destination.Length != batch)
            throw new ArgumentException($"Predictor.PredictRaw: {batch} rows but a destination of {destination.Length} (both must be equal and positive).");
        var ws = Workspace.For(this, batch);
        var encoded = ws.EncodedRowFor(pre);
        var record = ws.RecordFor(pre.Schema);
        var ids = ws.Ids.AsSpan(0, batch * _columns);
        for (int b = 0; b < batch; b++)
        {
            var row = rows[b] ?? throw new ArgumentException($"Predictor.PredictRaw: row {b} is null.");
            if (row.Length < columns.HeaderLength)
                throw new ArgumentException($"Predictor.PredictRaw: row {b} has {row.Length} values; the header has {columns.HeaderLength}.");
            for (int f = 0; f < columns.Map.Length; f++)
            {
                int c = columns.Map[f];
                string? v = c < 0 ? null : row[c];
                record.Values[f] = string.IsNullOrEmpty(v) ? null : v;
                record.Numbers[f] = double.NaN;
            }
            pre.Encode(record, encoded);
            encoded.Ids.AsSpan(0, _columns).CopyTo(ids.Slice(b * _columns, _columns));
        }
        Run(ids, batch, destination, ws);
        if (probabilities) TensorPrimitives.Sigmoid(destination, destination);
    }

    // ---------------------------------------------------------------- plan execution

    /// <summary>Floats of per-thread scratch a batch of <paramref name="batch"/> needs (see <see cref="Run"/> for the layout).</summary>
    internal long ScratchFloats(int batch)
    {
        long fd = (long)_f * _d, n = 0;
        n += batch * fd + 2L * _d;                                   // x0 [B, F·D], FM sums [2, D]
        if (_dnn.Length > 0) n += 2L * batch * _maxWidth;            // DNN ping-pong [B, width] × 2
        if (_cin.Length > 0)
        {
            long rows = (long)Math.Min(_cinTile, batch) * _d;        // Bt·D
            n += rows * _f + rows * _cinMaxChannels + 2 * rows * _cinMaxMaps + (long)Math.Min(_cinTile, batch) * _cinOutputWidth;
        }
        if (_crossW is not null) n += 2 * fd;                        // cross x_l [n], temporary [n]
        return n;
    }

    private void Run(ReadOnlySpan<int> ids, int batch, Span<float> logit, Workspace ws)
    {
        int fd = _f * _d;
        var floats = ws.Floats;
        int at = 0;
        Span<float> Take(int count) { var s = floats.AsSpan(at, count); at += count; return s; }
        var x0 = Take(batch * fd);                                   // x0 [B, F, D] = flat [B, F·D]

        // Embedding gather + wide part: logit[b] = b + Σ_f w_f[id_f] (summed in field order, bias last).
        for (int b = 0; b < batch; b++)
        {
            if (b + 1 < batch) PrefetchRows(ids.Slice((b + 1) * _columns, _columns));
            float wide = 0;
            var row = ids.Slice(b * _columns, _columns);
            var xb = x0.Slice(b * fd, fd);
            for (int f = 0; f < _f; f++)
            {
                int id = row[_readColumns[f]];
                if ((uint)id >= (uint)_cardinality[f])
                    throw new ArgumentOutOfRangeException(nameof(ids),
                        $"Predictor: row {b}, column {_readColumns[f]} (field '{_fieldNames[f]}'): id {id} is outside [0, {_cardinality[f]}).");
                int r = _rowOffset[f] + id;
                if (_wide is not null) wide += _wide[r];
                if (_embedding is not null) _embedding.AsSpan(r * _d, _d).CopyTo(xb.Slice(f * _d, _d));
            }
            logit[b] = _wide is not null ? wide + _wideBias : 0f;
        }

        if (_fm)
        {
            // FM: ½·Σ_d[(Σ_f x0_fd)² − Σ_f x0_fd²] per sample, with [D]-wide running sums.
            var sum = Take(_d);
            var sq = Take(_d);
            for (int b = 0; b < batch; b++)
            {
                sum.Clear();
                sq.Clear();
                for (int f = 0; f < _f; f++)
                {
                    var e = x0.Slice(b * fd + f * _d, _d);
                    TensorPrimitives.Add(sum, e, sum);
                    TensorPrimitives.FusedMultiplyAdd(e, e, sq, sq);
                }
                TensorPrimitives.Multiply(sum, sum, sum);
                TensorPrimitives.Subtract(sum, sq, sum);
                logit[b] += 0.5f * TensorPrimitives.Sum(sum);
            }
        }
        else at += 2 * _d;

        Span<float> deep = default;                                  // last DNN activation [B, width]
        if (_dnn.Length > 0)
        {
            var ping = Take(batch * _maxWidth);
            var pong = Take(batch * _maxWidth);
            ReadOnlySpan<float> input = x0;
            for (int i = 0; i < _dnn.Length; i++)
            {
                var layer = _dnn[i];
                var y = (i % 2 == 0 ? ping : pong).Slice(0, batch * layer.Out); // y [B, out]
                for (int b = 0; b < batch; b++) layer.Bias.CopyTo(y.Slice(b * layer.Out, layer.Out));
                // y [B, out] = x [B, in] · Wᵀ [in, out] + bias (pre-filled, beta = 1)
                Sgemm.Multiply(false, false, batch, layer.Out, layer.In, 1f, input, layer.WeightT, 1f, y);
                Activate(y, _dnnActivation);
                input = y;
                deep = y;
            }
            if (_dnnOut is not null)
            {
                int w = _dnnOut.Length;
                for (int b = 0; b < batch; b++) logit[b] += TensorPrimitives.Dot(deep.Slice(b * w, w), _dnnOut);
            }
        }

        if (_cin.Length > 0)
        {
            int bt = Math.Min(_cinTile, batch), rows = bt * _d;
            var x0t = Take(rows * _f);
            var z = Take(rows * _cinMaxChannels);
            var y0 = Take(rows * _cinMaxMaps);
            var y1 = Take(rows * _cinMaxMaps);
            var pooled = Take(bt * _cinOutputWidth);
            for (int b0 = 0; b0 < batch; b0 += bt)
                RunCinTile(x0, b0, Math.Min(bt, batch - b0), x0t, z, y0, y1, pooled, logit);
        }

        if (_crossW is not null)
        {
            // DCN: x_{l+1} = ((x0 ∘ (x_l·w_l)) + b_l) + x_l per sample; logit = [x_L, deep]·w_out + b_out.
            var x = Take(fd);
            var t = Take(fd);
            int width = _dnn[^1].Out;
            for (int b = 0; b < batch; b++)
            {
                var xb0 = x0.Slice(b * fd, fd);
                xb0.CopyTo(x);
                for (int l = 0; l < _crossW.Length; l++)
                {
                    float s = TensorPrimitives.Dot(x, _crossW[l]);
                    TensorPrimitives.Multiply(xb0, s, t);
                    TensorPrimitives.Add(t, _crossB![l], t);
                    TensorPrimitives.Add(t, x, x);
                }
                logit[b] = TensorPrimitives.Dot(x, _dcnOut.AsSpan(0, fd))
                    + TensorPrimitives.Dot(deep.Slice(b * width, width), _dcnOut.AsSpan(fd, width)) + _dcnBias;
            }
        }
    }

    /// <summary>
    /// Asks for the next sample's table rows while this sample's are copied: each (sample, field) row is a cache (and
    /// often TLB) miss in a table of hundreds of MiB, and issuing the next sample's F misses early overlaps their DRAM
    /// latency with the current copies (measured at the bench size: 1,392 → 1,097 µs for a 1024 × 39 gather, 35 → 28 ns per
    /// row). Out-of-range ids are
    /// skipped here and reported by the gather itself.
    /// </summary>
    private unsafe void PrefetchRows(ReadOnlySpan<int> row)
    {
        if (!System.Runtime.Intrinsics.X86.Sse.IsSupported) return;
        fixed (float* embedding = _embedding, wide = _wide)
            for (int f = 0; f < _f; f++)
            {
                int id = row[_readColumns[f]];
                if ((uint)id >= (uint)_cardinality[f]) continue;
                long r = _rowOffset[f] + id;
                if (embedding != null) System.Runtime.Intrinsics.X86.Sse.Prefetch0(embedding + r * _d);
                if (wide != null) System.Runtime.Intrinsics.X86.Sse.Prefetch0(wide + r);
            }
    }

    /// <summary>
    /// The fused CIN over samples [b0, b0 + n): every layer, pooling and the cin_out dot product, adding z_cin to
    /// <paramref name="logit"/>. Layout is "d-major": a row r = t·D + d holds one (sample, embedding position) pair, so
    /// X^0 tile = x0t [n·D, F] and X^k tile = Y [n·D, H_k].
    /// <code>
    ///   Z [n·D, H_{k−1}·F]:  Z[r, i·F + j] = X^{k−1}[r, i] · X^0[r, j]            (the outer product, this tile only)
    ///   Y [n·D, H_k]      = Z · Wᵀ [H_{k−1}·F, H_k] + bias     (ONE GEMM per layer and tile; then the activation)
    ///   pooled[t, o + c]  = Σ_d Y[t·D + d, first + c]         (maps sent to the output; split-half: the second half)
    /// </code>
    /// Per example, layer k costs H_{k−1}·F·D multiplies (Z) + 2·H_k·H_{k−1}·F·D FLOPs (GEMM) + ~2·H_k·D (bias,
    /// activation) + H_out·D (pooling). Alternatives considered, all exact: (a) T = W [H_k·H_{k−1}, F]·X^0 then contract
    /// with X^{k−1} over i: the same 2·H_k·H_{k−1}·F·D GEMM plus 2·H_k·H_{k−1}·D; (b) U = W [H_k·F, H_{k−1}]·X^{k−1} then
    /// contract with X^0 over j: the same GEMM plus 2·H_k·F·D and an [H_k·F, n·D] intermediate (31× Z's reads at the
    /// bench config). The outer-product tile adds only H_{k−1}·F·D (≤ 1/(2·H_k) of the GEMM) and gives the GEMM its
    /// longest inner dimension (H_{k−1}·F = 3,900 at the bench config), so it is the cheapest. Bench config (F = 39,
    /// D = 16, [200, 200, 200] split-half): GEMMs 9.7 + 25.0 + 25.0 = 59.7 MFLOP per example.
    /// With the weights as the GEMM's B operand the batch-1 product has m = D ≤ 16 rows, which the SGEMM runs
    /// without packing.
    /// </summary>
    private void RunCinTile(ReadOnlySpan<float> x0, int b0, int n, Span<float> x0t, Span<float> zBuf, Span<float> yA, Span<float> yB,
        Span<float> pooled, Span<float> logit)
    {
        int f = _f, d = _d, fd = f * d, rows = n * d, outW = _cinOutputWidth;
        // x0t [n·D, F]: x0t[t·D + dd, j] = x0[b0 + t, j, dd]
        for (int t = 0; t < n; t++)
        {
            var xs = x0.Slice((b0 + t) * fd, fd);
            for (int j = 0; j < f; j++)
                for (int dd = 0; dd < d; dd++) x0t[(t * d + dd) * f + j] = xs[j * d + dd];
        }
        pooled = pooled.Slice(0, n * outW);
        pooled.Clear();
        ReadOnlySpan<float> prev = x0t.Slice(0, rows * f);
        int prevStride = f;
        for (int k = 0; k < _cin.Length; k++)
        {
            var layer = _cin[k];
            int channels = layer.InMaps * f, maps = layer.Maps, stride = layer.Stride;
            var z = zBuf.Slice(0, rows * channels);
            for (int r = 0; r < rows; r++)
            {
                var xr = x0t.Slice(r * f, f);
                var hr = prev.Slice(r * prevStride, layer.InMaps);
                var zr = z.Slice(r * channels, channels);
                for (int i = 0; i < hr.Length; i++) TensorPrimitives.Multiply(xr, hr[i], zr.Slice(i * f, f));
            }
            var y = (k % 2 == 0 ? yA : yB).Slice(0, rows * stride);   // Y [n·D, stride]: maps H_k, then zero padding
            for (int r = 0; r < rows; r++) layer.Bias.CopyTo(y.Slice(r * stride, stride));
            Sgemm.Multiply(false, false, rows, stride, channels, 1f, z, layer.WeightT, 1f, y); // Y = Z · Wᵀ + bias
            Activate(y, _cinActivation);
            int width = maps - layer.OutFirst;
            if (width > 0)
                for (int t = 0; t < n; t++)
                {
                    var dst = pooled.Slice(t * outW + layer.OutOffset, width);
                    for (int dd = 0; dd < d; dd++) TensorPrimitives.Add(dst, y.Slice((t * d + dd) * stride + layer.OutFirst, width), dst);
                }
            prev = y;
            prevStride = stride;
        }
        for (int t = 0; t < n; t++) logit[b0 + t] += TensorPrimitives.Dot(pooled.Slice(t * outW, outW), _cinOut);
    }

    private static void Activate(Span<float> x, Activation activation)
    {
        switch (activation)
        {
            case Activation.Relu: TensorPrimitives.Max(x, 0f, x); break;
            case Activation.Tanh: TensorPrimitives.Tanh(x, x); break;
            case Activation.Sigmoid: TensorPrimitives.Sigmoid(x, x); break;
        }
    }

    /// <summary>Per-thread scratch: one float arena, the id buffer of the raw-row paths and the reusable
    /// record/encoded row of the last preprocessor used on this thread. Grown on demand, never shrunk.</summary>
    private sealed class Workspace
    {
        [ThreadStatic] private static Workspace? t_current;

        public float[] Floats = [];
        public int[] Ids = [];
        private EncodedRow? _encoded;
        private RawRecord? _record;

        public static Workspace For(Predictor p, int batch)
        {
            var ws = t_current ??= new Workspace();
            long need = p.ScratchFloats(batch);
            if (need > Array.MaxLength)
                throw new ArgumentException($"Predictor: batch {batch} needs {need} floats of scratch, more than one array holds; score it in smaller batches.");
            if (ws.Floats.Length < need) ws.Floats = new float[need];
            long ids = (long)batch * p._columns;
            if (ws.Ids.Length < ids) ws.Ids = new int[ids];
            return ws;
        }

        public EncodedRow EncodedRowFor(Preprocessor pre)
        {
            if (_encoded is null || !ReferenceEquals(_encoded.Space, pre.FeatureSpace)) _encoded = new EncodedRow(pre.FeatureSpace);
            return _encoded;
        }

        public RawRecord RecordFor(Schema schema)
        {
            if (_record is null || !ReferenceEquals(_record.Schema, schema)) _record = new RawRecord(schema);
            return _record;
        }
    }

    private sealed record DenseLayer(int In, int Out, float[] WeightT, float[] Bias);

    /// <summary>One CIN layer: WeightT [InMaps·F, Stride] and Bias [Stride] zero-padded past Maps (see the constructor).</summary>
    private sealed record CinLayerPlan(int InMaps, int Maps, int Stride, float[] WeightT, float[] Bias, int NextMaps, int OutFirst, int OutOffset);
}

/// <summary>A header mapped onto a preprocessor's schema by <see cref="Predictor.MapColumns"/>: for each schema field,
/// its position in a text row, or −1 (always missing).</summary>
public sealed class RawColumns
{
    internal RawColumns(Schema schema, int[] map, int headerLength)
    {
        Schema = schema;
        Map = map;
        HeaderLength = headerLength;
    }

    internal Schema Schema { get; }
    internal int[] Map { get; }

    /// <summary>Values a row must have at least.</summary>
    public int HeaderLength { get; }

    /// <summary>Position of schema field <paramref name="field"/> in a row, or −1 when the header lacks it.</summary>
    public int PositionOf(string field) => Schema.IndexOf(field) is int f and >= 0 ? Map[f] : -1;
}
