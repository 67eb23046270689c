using System.Numerics.Tensors;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Nn;

namespace KdEngine.Serving;

/// <summary>
/// Inference-only scoring of a <see cref="ZooModel"/>: no tape, no <c>Tensor</c>, no managed allocation per call in
/// steady state. At construction the model is compiled (a snapshot: later training of the model does not change the
/// predictor) into the shared input — one concatenated embedding table [ΣV, D] with per-field row offsets — and one
/// <see cref="InferenceStage"/> per model part, each compiled by the part itself with its own weight layout
/// (<see cref="Models.Parts.ModelPart.Compile"/>). <see cref="Predict"/> checks the ids, gathers x0 and runs the stages
/// in part order; each adds its term to the logits, so the sum is formed in <see cref="ZooModel.Forward"/>'s order. The
/// predictor knows nothing of which model it runs.
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
/// <para><b>The gather.</b> Per sample: check every id against its field's table, form the feature rows
/// (<see cref="PlanLayout.RowOffsets"/>[f] + id), prefetch the next sample's rows of every table (the embedding's and
/// the stages' <see cref="InferenceStage.FeatureTables"/>), copy the embedding rows into x0 [B, F·D], then run the
/// stages' gather phase (e.g. the wide sum) while the rows are in cache. Then the stages' batch phases.</para>
/// </remarks>
public sealed class Predictor
{
    private readonly int _columns, _f, _d;
    private readonly int[] _readColumns;   // [F] batch column of model field f
    private readonly int[] _cardinality;   // [F]
    private readonly int[] _rowOffset;     // [F] first row of field f in the concatenated tables
    private readonly string[] _fieldNames;
    private readonly float[]? _embedding;  // [ΣV, D]

    private readonly InferenceStage[] _gatherStages, _batchStages;
    private readonly FeatureTable[] _prefetch; // every table read by feature row: the embedding's, then the stages'

    /// <summary>Compiles an in-memory model (evaluation semantics: no dropout). <paramref name="preprocessor"/> (optional)
    /// enables the raw-row overloads; it must produce the id columns the model reads.</summary>
    public Predictor(ZooModel model, Preprocessor? preprocessor = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Fields.FirstOrDefault(x => x.IsMultiValued || x.ScaleByValue) is { } unsupported)
            throw new NotSupportedException(
                $"Predictor: field '{unsupported.Name}' is {(unsupported.IsMultiValued ? "multi-valued" : "scaled by a dense value")}; the compiled predictor takes single-valued id fields only — score such a model with ZooModel.Forward under Tape<float>.NoGrad().");
        var config = model.Config;
        Kind = config.Model;
        Preprocessor = preprocessor;
        var layout = new PlanLayout(model.Fields, config.EmbeddingDim);
        _f = layout.FieldCount;
        _d = config.EmbeddingDim;
        _readColumns = model.Columns.ToArray();
        _fieldNames = model.Fields.Select(x => x.Name).ToArray();
        _cardinality = model.Fields.Select(x => x.Cardinality).ToArray();
        _rowOffset = layout.RowOffsets.ToArray();
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

        // The model's own tables (shared embeddings may carry another module's names); gathered at random: huge pages.
        if (model.Embedding is { } embedding) _embedding = layout.Concatenate(embedding.Tables, _d, "embedding table");
        var stages = model.Parts.Select(part => part.Compile(layout)).ToArray();
        _gatherStages = stages.Where(s => s.Phases.HasFlag(StagePhases.Gather)).ToArray();
        _batchStages = stages.Where(s => s.Phases.HasFlag(StagePhases.Batch)).ToArray();
        var prefetch = new List<FeatureTable>();
        if (_embedding is not null) prefetch.Add(new FeatureTable(_embedding, _d));
        foreach (var stage in _gatherStages) prefetch.AddRange(stage.FeatureTables);
        _prefetch = prefetch.ToArray();
    }

    /// <summary>Loads a checkpoint written by <see cref="ModelCheckpoint.Save"/> (with its preprocessing, when saved).</summary>
    public static Predictor Load(string path)
    {
        var loaded = ModelCheckpoint.Load(path);
        return new Predictor(loaded.Model, loaded.Preprocessor);
    }

    /// <summary>The kind of model the predictor was compiled from.</summary>
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

    /// <summary>Floats of per-thread scratch a batch of <paramref name="batch"/> needs: x0 [B, F·D], then the largest
    /// batch-phase stage scratch (stages run one after another, so they share it).</summary>
    internal long ScratchFloats(int batch)
    {
        long stages = 0;
        foreach (var stage in _batchStages) stages = Math.Max(stages, stage.ScratchFloats(batch));
        return (_embedding is null ? 0 : (long)batch * _f * _d) + stages;
    }

    private void Run(ReadOnlySpan<int> ids, int batch, Span<float> logit, Workspace ws)
    {
        int fd = _embedding is null ? 0 : _f * _d;
        var x0 = ws.Floats.AsSpan(0, batch * fd);                     // x0 [B, F, D] = flat [B, F·D]
        var rows = ws.FeatureRows.AsSpan(0, batch * _f);              // [B, F] rows in the concatenated tables

        for (int b = 0; b < batch; b++)
        {
            if (b + 1 < batch) PrefetchRows(ids.Slice((b + 1) * _columns, _columns));
            var row = ids.Slice(b * _columns, _columns);
            var featureRows = rows.Slice(b * _f, _f);
            for (int f = 0; f < _f; f++)
            {
                int id = row[_readColumns[f]];
                if ((uint)id >= (uint)_cardinality[f])
                    throw new ArgumentOutOfRangeException(nameof(ids),
                        $"Predictor: row {b}, column {_readColumns[f]} (field '{_fieldNames[f]}'): id {id} is outside [0, {_cardinality[f]}).");
                featureRows[f] = _rowOffset[f] + id;
            }
            if (_embedding is not null)
            {
                var xb = x0.Slice(b * fd, fd);
                for (int f = 0; f < _f; f++) _embedding.AsSpan(featureRows[f] * _d, _d).CopyTo(xb.Slice(f * _d, _d));
            }
            float z = 0;
            foreach (var stage in _gatherStages) stage.GatherSample(featureRows, ref z);
            logit[b] = z;
        }

        var scratch = ws.Floats.AsSpan(batch * fd);
        foreach (var stage in _batchStages)
            stage.Run(new StageBatch(batch, x0, rows, logit, scratch.Slice(0, (int)stage.ScratchFloats(batch))));
    }

    /// <summary>
    /// Asks for the next sample's table rows while this sample's are copied: each (sample, field) row is a cache (and
    /// often TLB) miss in a table of hundreds of MiB, and issuing the next sample's F misses early overlaps their DRAM
    /// latency with the current copies (measured at the bench size: 1,392 → 1,097 µs for a 1024 × 39 gather, 35 → 28 ns per
    /// row). Rows wider than a cache line get one prefetch per line. Out-of-range ids are skipped here and reported by the
    /// gather itself.
    /// </summary>
    private unsafe void PrefetchRows(ReadOnlySpan<int> row)
    {
        if (!System.Runtime.Intrinsics.X86.Sse.IsSupported) return;
        foreach (var table in _prefetch)
            fixed (float* data = table.Table)
            {
                int width = table.RowFloats;
                for (int f = 0; f < _f; f++)
                {
                    int id = row[_readColumns[f]];
                    if ((uint)id >= (uint)_cardinality[f]) continue;
                    float* start = data + (long)(_rowOffset[f] + id) * width;
                    for (int line = 0; line < width; line += 16) System.Runtime.Intrinsics.X86.Sse.Prefetch0(start + line);
                }
            }
    }

    /// <summary>Per-thread scratch: one float arena, the id buffer of the raw-row paths and the reusable
    /// record/encoded row of the last preprocessor used on this thread. Grown on demand, never shrunk.</summary>
    private sealed class Workspace
    {
        [ThreadStatic] private static Workspace? t_current;

        public float[] Floats = [];
        public int[] FeatureRows = [];
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
            long rows = (long)batch * p._f;
            if (rows > Array.MaxLength)
                throw new ArgumentException($"Predictor: batch {batch} × {p._f} fields is more feature rows than one array holds; score it in smaller batches.");
            if (ws.FeatureRows.Length < rows) ws.FeatureRows = new int[rows];
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
