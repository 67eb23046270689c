using System.Numerics.Tensors;
using KdEngine.Data;
using KdEngine.Kernels.Cpu;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Tensors;

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
/// for the same batches. Within a call, up to <see cref="CpuParallel.ThreadCount"/> threads work (see
/// <see cref="RangesFor"/>): a batch large enough is split into static ranges of samples, each range gathered and run
/// through every stage by one thread with its own scratch; a smaller batch runs as one range whose products split
/// their columns (or row tiles) among the threads. Ranges are chosen so that every sample gets exactly the bits one
/// thread gives (the stages' <see cref="InferenceStage.RangeRuleFor"/>), so scores are the same on any thread count.</para>
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
    private readonly float[]? _embedding;  // [ΣV, D] float32, or …
    private readonly ushort[]? _embeddingBf16; // … [ΣV, D] bfloat16 (ServingPrecision.Embeddings)

    private readonly InferenceStage[] _gatherStages, _batchStages;
    private readonly FeatureTable[] _prefetch; // every table read by feature row: the embedding's, then the stages'

    /// <summary>Compiles an in-memory model (evaluation semantics: no dropout). <paramref name="preprocessor"/> (optional)
    /// enables the raw-row overloads; it must produce the id columns the model reads. <paramref name="precision"/>
    /// (default float32) quantises the dense weights and/or the embedding table (<see cref="ServingPrecision"/>).
    /// <paramref name="calibration"/> (optional, as fitted on validation and stored in the checkpoint) maps every logit z
    /// to a·z + b before it is returned.</summary>
    public Predictor(ZooModel model, Preprocessor? preprocessor = null, ServingPrecision? precision = null, KdEngine.Metrics.LogitCalibration? calibration = null)
        : this(model, preprocessor, precision, storedInt8: null, calibration)
    {
    }

    /// <summary>As the public constructor, serving <paramref name="storedInt8"/> (a checkpoint's own int8 weights) where
    /// the precision asks for int8.</summary>
    internal Predictor(ZooModel model, Preprocessor? preprocessor, ServingPrecision? precision, StoredInt8Weights? storedInt8,
        KdEngine.Metrics.LogitCalibration? calibration = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.ParameterTensors().FirstOrDefault(t => t.RowShard is not null) is { } sharded)
            throw new NotSupportedException(
                $"Predictor: table {sharded.Describe()} holds only this rank's rows (row-sharded over {sharded.RowShard!.Size} ranks); save the model (rows are gathered into one file) and compile the loaded checkpoint.");
        if (model.Fields.FirstOrDefault(x => x.IsMultiValued || x.ScaleByValue) is { } unsupported)
            throw new NotSupportedException(
                $"Predictor: field '{unsupported.Name}' is {(unsupported.IsMultiValued ? "multi-valued" : "scaled by a dense value")}; the compiled predictor takes single-valued id fields only — score such a model with ZooModel.Forward under Tape<float>.NoGrad().");
        var config = model.Config;
        Kind = config.Model;
        model.ApplyDeferredRows(); // lazily decayed rows an optimizer still owes the tables (its weights are copied below)
        Preprocessor = preprocessor;
        Calibration = calibration ?? KdEngine.Metrics.LogitCalibration.Identity;
        Precision = precision ?? ServingPrecision.Float32;
        var layout = new PlanLayout(model.Fields, config.EmbeddingDim, Precision, storedInt8);
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
        if (model.Embedding is { } embedding)
        {
            _embedding = layout.Concatenate(embedding.Tables, _d, "embedding table");
            if (Precision.Embeddings == WeightFormat.BFloat16)
            {
                // [ΣV, D] bf16: half the bytes of the largest array; rows are widened exactly as they are gathered.
                _embeddingBf16 = HugePageArrays.Allocate<ushort>(_embedding.LongLength);
                Bf16.FromFloat(_embedding, _embeddingBf16);
                _embedding = null;
            }
        }
        var stages = model.Parts.Select(part => part.Compile(layout)).ToArray();
        _gatherStages = stages.Where(s => s.Phases.HasFlag(StagePhases.Gather)).ToArray();
        _batchStages = stages.Where(s => s.Phases.HasFlag(StagePhases.Batch)).ToArray();
        var prefetch = new List<FeatureTable>();
        if (_embedding is not null) prefetch.Add(new FeatureTable(_embedding, _d));
        foreach (var stage in _gatherStages) prefetch.AddRange(stage.FeatureTables);
        _prefetch = prefetch.ToArray();
        long tableBytesForPrefetch = prefetch.Sum(t => 4L * t.Table.LongLength) + 2L * (_embeddingBf16?.LongLength ?? 0);
        _prefetchRows = tableBytesForPrefetch > PrefetchMinTableBytes;
        foreach (var stage in stages)
        {
            _macsPerRow += stage.MacsPerRow;
            _weightBytes += stage.WeightBytes;
        }
        long tableBytes = _embedding is not null ? 4L * _embedding.LongLength : _embeddingBf16 is not null ? 2L * _embeddingBf16.LongLength : 0;
        WeightBytes = tableBytes + stages.Sum(st => st.HeldBytes + st.FeatureTables.Sum(t => 4L * t.Table.LongLength));
    }

    private readonly long _macsPerRow, _weightBytes;
    private readonly bool _prefetchRows;

    /// <summary>Tables smaller than this (all together) stay in cache between samples, so the gather does not prefetch
    /// their rows (at the Criteo student's 460 KB the prefetch loop was pure overhead).</summary>
    private const long PrefetchMinTableBytes = 8L << 20;

    /// <summary>The precision this predictor serves with.</summary>
    public ServingPrecision Precision { get; }

    /// <summary>Bytes of weights the predictor holds: the embedding table (float32 or bf16), every stage's dense weights in
    /// their serving format, biases, output vectors and per-field tables.</summary>
    public long WeightBytes { get; }

    /// <summary>Loads a checkpoint written by <see cref="ModelCheckpoint.Save(string, ZooModel, Preprocessor?, IReadOnlyDictionary{string, string}?, ServingPrecision?, KdEngine.Metrics.LogitCalibration?)"/>
    /// (with its preprocessing and calibration, when saved), serving it in the precision the checkpoint was written in (its int8 weights
    /// exactly as stored), or in <paramref name="precision"/> when given.</summary>
    public static Predictor Load(string path, ServingPrecision? precision = null)
    {
        return FromLoaded(ModelCheckpoint.Load(path), precision);
    }

    /// <summary>Compiles a loaded checkpoint as <see cref="Load"/> does: its preprocessing and calibration, in the precision
    /// it was written in (its int8 weights exactly as stored), or in <paramref name="precision"/> when given.</summary>
    public static Predictor FromLoaded(LoadedModel loaded, ServingPrecision? precision = null)
    {
        ArgumentNullException.ThrowIfNull(loaded);
        return new Predictor(loaded.Model, loaded.Preprocessor, precision ?? loaded.Precision, loaded.StoredInt8, loaded.Calibration);
    }

    /// <summary>The kind of model the predictor was compiled from.</summary>
    public ModelKind Kind { get; }

    /// <summary>The post-hoc calibration applied to every logit (<see cref="KdEngine.Metrics.LogitCalibration.Identity"/> when none).</summary>
    public KdEngine.Metrics.LogitCalibration Calibration { get; }

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
        Finish(destination, probabilities);
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
        Finish(destination, probabilities);
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
        Finish(destination, probabilities);
    }

    // ---------------------------------------------------------------- plan execution

    /// <summary>
    /// Arithmetic per weight byte below which a range of samples is not worth a thread of its own (benchmark hook): its
    /// products would mostly wait on weights, which a column split of one range halves instead. 8 multiply-adds per byte:
    /// the bench WDL (2.3 MB of float32 layers, 0.57 M multiply-adds per sample) splits from 32 samples per range,
    /// the bench xDeepFM (CIN and DNN: 16 MB, 31 M) from 5.
    /// </summary>
    internal static double MinMacsPerWeightByte { get; set; } = 8;

    /// <summary>
    /// The static ranges a batch of <paramref name="batch"/> samples splits into (count ≤ threads): as many as the threads
    /// and the arithmetic allow, each a multiple of every stage's <see cref="RangeRule.Alignment"/> long and at least its
    /// <see cref="RangeRule.MinRows"/>, so a sample's bits never depend on the split. One range when one thread is
    /// allowed or the batch is too small to split. Boundaries depend only on the batch, the threads and the model.
    /// </summary>
    internal int RangesFor(int batch, int threads)
    {
        if (threads <= 1 || batch < 2 || _batchStages.Length == 0) return 1;
        var rule = RangeRule.Any;
        foreach (var stage in _batchStages) rule = rule.And(stage.RangeRuleFor(batch));
        long useful = _macsPerRow == 0 ? 1 : (long)Math.Ceiling(MinMacsPerWeightByte * _weightBytes / _macsPerRow);
        int minRows = (int)Math.Clamp(Math.Max(useful, rule.MinRows), 1, int.MaxValue);
        for (int ranges = Math.Min(threads, batch / minRows); ranges > 1; ranges--)
        {
            bool ok = true;
            for (int i = 0; i < ranges && ok; i++)
            {
                var (start, end) = CpuParallel.Range(batch, ranges, i, rule.Alignment);
                ok = end - start >= minRows;
            }
            if (ok) return ranges;
        }
        return 1;
    }

    /// <summary>The calibration's affine map on the logits, then σ when probabilities are asked for.</summary>
    private void Finish(Span<float> destination, bool probabilities)
    {
        Calibration.Apply(destination); // z′ = a·z + b per logit (nothing for the identity)
        if (probabilities) TensorPrimitives.Sigmoid(destination, destination);
    }

    /// <summary>Floats of x0 [B, F·D] at the front of the per-thread scratch.</summary>
    private long X0Floats(int batch) => _embedding is null && _embeddingBf16 is null ? 0 : (long)batch * _f * _d;

    /// <summary>Floats of stage scratch one range of a batch of <paramref name="batch"/> split into
    /// <paramref name="ranges"/> needs: the largest batch-phase stage scratch for the longest range (stages run one after
    /// another within a range, so they share it).</summary>
    private long RangeScratchFloats(int batch, int ranges)
    {
        int rows = batch;
        if (ranges > 1)
        {
            var rule = RangeRule.Any;
            foreach (var stage in _batchStages) rule = rule.And(stage.RangeRuleFor(batch));
            rows = 0;
            for (int i = 0; i < ranges; i++)
            {
                var (start, end) = CpuParallel.Range(batch, ranges, i, rule.Alignment);
                rows = Math.Max(rows, end - start);
            }
        }
        long perRange = 0;
        foreach (var stage in _batchStages) perRange = Math.Max(perRange, stage.ScratchFloats(rows));
        return perRange;
    }

    /// <summary>Floats of per-thread scratch a batch of <paramref name="batch"/> split into <paramref name="ranges"/>
    /// needs: x0 [B, F·D], then one stage scratch per range.</summary>
    internal long ScratchFloats(int batch, int ranges = 1) => X0Floats(batch) + ranges * RangeScratchFloats(batch, ranges);

    private void Run(ReadOnlySpan<int> ids, int batch, Span<float> logit, Workspace ws)
    {
        int ranges = ws.Ranges;
        if (ranges == 1)
        {
            RunRange(ids, batch, logit, ws, 0, batch, ws.Floats.AsSpan((int)X0Floats(batch), (int)ws.PerRangeFloats));
            return;
        }
        // Several ranges: each gathers and runs every stage on its samples with its own scratch. A bad id stops its range
        // and is recorded; the first one in the batch is reported after all ranges finish (the same error one thread gives).
        unsafe
        {
            fixed (int* pIds = ids)
            fixed (float* pLogit = logit)
            {
                var job = ws.Job;
                job.Set(this, pIds, ids.Length, pLogit, batch, ranges);
                try
                {
                    // Pinned: range i runs on the same thread every call, so the per-thread scratch its kernels grew
                    // (SGEMM packing, int8 activation buffers) is warm after one call and nothing is allocated later.
                    CpuParallel.ForPinned(ranges, job);
                }
                finally
                {
                    job.Clear();
                }
            }
        }
        for (int i = 0; i < ranges; i++)
            if (ws.BadRow[i] >= 0) throw BadId(ws.BadRow[i], ws.BadField[i], ids);
    }

    /// <summary>Samples [start, end): check ids, form feature rows, gather x0 and the gather-phase terms, then every batch
    /// stage on the range with <paramref name="stageScratch"/>. Returns false (recording the bad id in the workspace) on
    /// an id outside its table at slot <paramref name="rangeIndex"/> when it is ≥ 0; else throws.</summary>
    private bool RunRange(ReadOnlySpan<int> ids, int batch, Span<float> logit, Workspace ws, int start, int end, Span<float> stageScratch,
        int rangeIndex = -1)
    {
        int fd = _embedding is null && _embeddingBf16 is null ? 0 : _f * _d;
        var x0 = ws.Floats.AsSpan(0, batch * fd);                     // x0 [B, F, D] = flat [B, F·D]
        var rows = ws.FeatureRows.AsSpan(0, batch * _f);              // [B, F] rows in the concatenated tables

        // Per sample: check the ids and form the feature rows, copy (or widen) the embedding rows into x0, then the gather
        // stages while the rows are in cache; the next sample's rows are prefetched first. Raw pointers: this loop copies
        // F rows of D floats per sample (39 000 rows at batch 1,000), so per-row overhead is most of its cost.
        unsafe
        {
            fixed (int* pIds = ids, pRead = _readColumns, pCard = _cardinality, pOffset = _rowOffset, pRows = rows)
            fixed (float* pX0 = x0, pTable = _embedding)
            fixed (ushort* pTableBf16 = _embeddingBf16)
                for (int b = start; b < end; b++)
                {
                    if (_prefetchRows && b + 1 < end) PrefetchRows(ids.Slice((b + 1) * _columns, _columns));
                    int* row = pIds + (nint)b * _columns;
                    int* featureRows = pRows + (nint)b * _f;
                    for (int f = 0; f < _f; f++)
                    {
                        int id = row[pRead[f]];
                        if ((uint)id >= (uint)pCard[f])
                        {
                            if (rangeIndex < 0) throw BadId(b, f, ids);
                            ws.BadRow[rangeIndex] = b;
                            ws.BadField[rangeIndex] = f;
                            return false;
                        }
                        featureRows[f] = pOffset[f] + id;
                    }
                    float* xb = pX0 + (nint)b * fd;
                    if (pTable != null)
                        for (int f = 0; f < _f; f++) InferenceKernels.CopyRow(pTable + (long)featureRows[f] * _d, xb + f * _d, _d);
                    else if (pTableBf16 != null)
                        for (int f = 0; f < _f; f++) InferenceKernels.WidenRow(pTableBf16 + (long)featureRows[f] * _d, xb + f * _d, _d);
                    if (_gatherStages.Length == 0)
                    {
                        logit[b] = 0;
                        continue;
                    }
                    float z = 0;
                    var sampleRows = new ReadOnlySpan<int>(featureRows, _f);
                    foreach (var stage in _gatherStages) stage.GatherSample(sampleRows, ref z);
                    logit[b] = z;
                }
        }

        int n = end - start;
        var rangeRows = rows.Slice(start * _f, n * _f);
        var rangeX0 = x0.Slice(start * fd, n * fd);
        var rangeLogit = logit.Slice(start, n);
        foreach (var stage in _batchStages)
            stage.Run(new StageBatch(n, rangeX0, rangeRows, rangeLogit, stageScratch.Slice(0, (int)stage.ScratchFloats(n))));
        return true;
    }

    private ArgumentOutOfRangeException BadId(int b, int f, ReadOnlySpan<int> ids) =>
        new(nameof(ids), $"Predictor: row {b}, column {_readColumns[f]} (field '{_fieldNames[f]}'): id {ids[b * _columns + _readColumns[f]]} is outside [0, {_cardinality[f]}).");

    /// <summary>The parallel loop over ranges of one call (one per calling thread, reused; pointers valid during the loop).</summary>
    private sealed unsafe class RangeJob(Workspace ws) : IParallelWork
    {
        private Predictor? _predictor;
        private int* _ids;
        private int _idCount, _batch, _ranges, _alignment;
        private float* _logit;

        public void Set(Predictor predictor, int* ids, int idCount, float* logit, int batch, int ranges)
        {
            _predictor = predictor;
            _ids = ids;
            _idCount = idCount;
            _logit = logit;
            _batch = batch;
            _ranges = ranges;
            var rule = RangeRule.Any;
            foreach (var stage in predictor._batchStages) rule = rule.And(stage.RangeRuleFor(batch));
            _alignment = rule.Alignment;
            for (int i = 0; i < ranges; i++) ws.BadRow[i] = -1;
        }

        public void Clear()
        {
            _predictor = null;
            _ids = null;
            _logit = null;
        }

        public void Execute(int index)
        {
            var p = _predictor!;
            var (start, end) = CpuParallel.Range(_batch, _ranges, index, _alignment);
            if (end <= start) return;
            long perRange = ws.PerRangeFloats;
            var scratch = ws.Floats.AsSpan((int)(p.X0Floats(_batch) + index * perRange), (int)perRange);
            p.RunRange(new ReadOnlySpan<int>(_ids, _idCount), _batch, new Span<float>(_logit, _batch), ws, start, end, scratch, index);
        }
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
        if (_embeddingBf16 is not null)
            fixed (ushort* data = _embeddingBf16)
                for (int f = 0; f < _f; f++)
                {
                    int id = row[_readColumns[f]];
                    if ((uint)id >= (uint)_cardinality[f]) continue;
                    ushort* first = data + (long)(_rowOffset[f] + id) * _d;
                    for (int line = 0; line < _d; line += 32) System.Runtime.Intrinsics.X86.Sse.Prefetch0(first + line);
                }
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

        /// <summary>This call's split (<see cref="RangesFor"/>) and per-range stage scratch in floats.</summary>
        public int Ranges;
        public long PerRangeFloats;
        public readonly int[] BadRow = new int[64], BadField = new int[64];
        public RangeJob Job => _job ??= new RangeJob(this);
        private RangeJob? _job;

        public static Workspace For(Predictor p, int batch)
        {
            var ws = t_current ??= new Workspace();
            ws.Ranges = p.RangesFor(batch, Math.Min(CpuParallel.ThreadCount, 64));
            ws.PerRangeFloats = p.RangeScratchFloats(batch, ws.Ranges);
            long need = p.X0Floats(batch) + ws.Ranges * ws.PerRangeFloats;
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
