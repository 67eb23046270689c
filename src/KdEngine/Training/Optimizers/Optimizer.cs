using KdEngine.Autograd;
using KdEngine.Tensors;

namespace KdEngine.Training;

/// <summary>How an optimizer updates an embedding table (a parameter with a row-sparse gradient).</summary>
public enum TableUpdateMode
{
    /// <summary>
    /// The rule runs on the rows the batch touched only (lazy Adam/Adagrad/momentum: an untouched row keeps its
    /// weights and state); decoupled weight decay (<see cref="Optimizer.EmbeddingWeightDecay"/>) still reaches every
    /// row every step, deferred and applied in closed form when the row is next read or updated. O(touched rows) per step.
    /// </summary>
    Lazy,
    /// <summary>
    /// Every row every step, with a zero gradient for untouched rows — exactly PyTorch's dense optimizers on an
    /// embedding (stale momentum keeps moving rows; coupled L2 <see cref="Optimizer.EmbeddingL2"/> reaches every row).
    /// O(table) per step: for tables small enough to afford it.
    /// </summary>
    Dense,
}

/// <summary>
/// Base of the optimizers over float32 parameters. <see cref="Step"/> updates every registered parameter from
/// its gradient and then clears the gradients. A parameter with <see cref="Tensor{T}.HasSparseGradient"/> is an
/// embedding table [rows, width]: in <see cref="TableUpdateMode.Lazy"/> mode (the default) only the rows in its
/// <see cref="Tensor{T}.SparseGrad"/> are read and written, so a step costs O(touched rows · width), never O(table).
/// </summary>
/// <remarks>
/// <para>Per step, in order:</para>
/// <list type="number">
/// <item>Touched rows of each table are put in ascending row order (a canonical order, independent of the order
/// in which the batch touched them; it is also the cache-friendly order for the table).</item>
/// <item>Clipping (<see cref="ClipNorm"/>): the global L2 norm ‖g‖ over every dense gradient and every touched
/// sparse row (parameters in registration order, rows ascending, summed in double) is measured; when it exceeds
/// c every gradient is scaled by exactly s = c/‖g‖ (PyTorch's clip_grad_norm_ adds 1e-6 to the norm; this does
/// not). Clipping applies to the loss gradient only, before L2 — as when clip_grad_norm_ precedes a PyTorch step.</item>
/// <item>Coupled L2: the effective gradient is ĝ = s·g + λ·w — the gradient of λ/2·‖w‖² added to the loss, which
/// flows through Adam's and Adagrad's adaptive scaling. λ is <see cref="DenseL2"/> for dense parameters and
/// <see cref="EmbeddingL2"/> for tables, where in Lazy mode it touches only the rows in this batch (as TF/DeepCTR
/// regularise the looked-up embeddings): rows not seen are not regularised. In Dense mode it reaches every row.</item>
/// <item>Decoupled weight decay (AdamW's): w ← (1 − lr·δ)·w before the rule's step, δ = <see cref="DenseWeightDecay"/>
/// or <see cref="EmbeddingWeightDecay"/>. For tables it reaches <b>every row every step</b> in both modes; in Lazy mode
/// a row's missed factors are applied when the row is next read (the embedding ops ask,
/// <see cref="Tensor{T}.DeferredRows"/>) or updated, as one factor Π(1 − lr_k·δ) = exp(Σ ln(1 − lr_k·δ)) — the table
/// keeps the running sum (its decay clock) and each row the clock value at its last update. This is exact: the
/// weights equal those of applying the decay to every row every step. For plain SGD, decoupled decay δ and coupled L2
/// λ = δ are the same update, so SGD with <see cref="EmbeddingWeightDecay"/> is SGD with L2 on every row, exactly.</item>
/// <item>The rule (<see cref="Sgd"/>, <see cref="Adam"/>, <see cref="Adagrad"/>, <see cref="Ftrl"/>) updates weights and
/// state with a fused SIMD pass per dense parameter or per touched row.</item>
/// <item>Gradients are cleared (dense zero-filled, sparse rows forgotten) and <see cref="StepCount"/> grows.</item>
/// </list>
/// <para>Coupled L2 under Adam is not deferred: on an untouched row it would feed λ·w through Adam's moments every
/// step — a non-linear recurrence with no closed form (it moves a long-unseen row by about lr·sign(w) per step). Lazy
/// mode therefore applies <see cref="EmbeddingL2"/> at the steps a row is touched only (it approximates the dense
/// update by skipping the L2 of the steps in between); <see cref="TableUpdateMode.Dense"/> gives the dense update
/// exactly, and decoupled <see cref="EmbeddingWeightDecay"/> gives all-rows regularisation lazily.</para>
/// <para>A parameter that received no gradient since the last step (dense Grad null, or no touched rows) is
/// skipped by the rule: neither its weights nor its state change (except the deferred decay), and its own step count
/// does not grow. A Dense-mode table steps every step.</para>
/// <para>Steady state allocates nothing: state buffers are made once at construction and the row-order buffers
/// grow only when a batch touches more rows than any before.</para>
/// <para>State for checkpoints: <see cref="ExportState"/> / <see cref="ImportState"/> carry the step counts, every state
/// buffer and the decay clocks (export first brings every deferred row up to date), so an optimizer rebuilt with the
/// same settings and parameters continues bit-identically. Hyperparameters (learning rate, L2, decay, clipping) are
/// configuration, not state; a schedule is a pure function of <see cref="StepCount"/>
/// (<see cref="LearningRateSchedule"/>), so setting <c>opt.LearningRate = schedule.LearningRate(opt.StepCount)</c>
/// before each step resumes exactly too.</para>
/// </remarks>
public abstract class Optimizer : IOptimizer
{
    /// <summary>Step counts are stored as two floats, hi·2²⁴ + lo, each an exact integer below 2²⁴.</summary>
    private const long StepRadix = 1L << 24;

    private readonly Tensor<float>[] _parameters;
    private readonly string[] _keys;
    private readonly string[] _slotNames;
    private readonly float[][][] _state; // [slot][parameter] → a buffer of the parameter's length
    private readonly long[] _parameterSteps;
    private readonly long[][] _rowOrder; // per parameter: (row << 32 | slot) keys of touched rows, sorted
    private readonly int[] _rowCount;
    private float _learningRate;
    private float _denseL2, _embeddingL2, _denseDecay, _embeddingDecay;
    private float? _clipNorm;
    private TableUpdateMode _tableMode;
    // Parameters on a device backend (not CPU memory) are updated on a host mirror: see DeviceMirror remarks.
    private readonly float[]?[] _hostWeights; // the mirror of a device parameter's values; null for CPU parameters
    private readonly float[]?[] _hostGrads;   // the downloaded dense gradient of a device parameter
    private int[] _uploadRows = [];
    private float[] _uploadValues = [];
    // Deferred rows (see the remarks): per table, the clock now and each row's clock value at its last update.
    private readonly double[] _tableClock;
    private readonly double[]?[] _rowClock;   // null: the table defers nothing
    private readonly bool[] _pending;         // some row's clock lags the table's
    private readonly float[]?[] _denseTableGrad; // Dense mode: the table's gradient scattered into [rows, width]

    /// <param name="parameters">Leaves with RequiresGrad; tables (HasSparseGradient) must be [rows, width].
    /// Names, when present, must be unique: they key the exported state.</param>
    /// <param name="learningRate">Initial learning rate (≥ 0).</param>
    /// <param name="slots">The rule's per-element state buffers: a name (e.g. <c>exp_avg</c>) and its initial value.</param>
    protected Optimizer(IEnumerable<Tensor<float>> parameters, float learningRate, IReadOnlyList<(string Name, float Initial)> slots)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        _parameters = parameters.ToArray();
        if (_parameters.Length == 0) throw new ArgumentException($"{GetType().Name}: no parameters to optimize.", nameof(parameters));
        LearningRate = learningRate;
        _keys = new string[_parameters.Length];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var seenTensors = new HashSet<Tensor<float>>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < _parameters.Length; i++)
        {
            var p = _parameters[i] ?? throw new ArgumentException($"{GetType().Name}: parameter {i} is null.", nameof(parameters));
            if (!p.RequiresGrad || !p.IsLeaf)
                throw new ArgumentException($"{GetType().Name}: parameter {i} {p.Describe()} is not a leaf that requires a gradient (call RequireGrad()).", nameof(parameters));
            if (p.HasSparseGradient && p.Rank != 2)
                throw new ArgumentException($"{GetType().Name}: embedding table {i} {p.Describe()} must be 2-D [rows, width].", nameof(parameters));
            if (!seenTensors.Add(p))
                throw new ArgumentException($"{GetType().Name}: parameter {i} {p.Describe()} is registered twice; it would be updated twice per step.", nameof(parameters));
            _keys[i] = p.Name ?? $"param{i}";
            if (!seen.Add(_keys[i]))
                throw new ArgumentException($"{GetType().Name}: two parameters share the name '{_keys[i]}'; state keys must be unique.", nameof(parameters));
        }
        _slotNames = new string[slots.Count];
        _state = new float[slots.Count][][];
        for (int s = 0; s < slots.Count; s++)
        {
            _slotNames[s] = slots[s].Name;
            _state[s] = new float[_parameters.Length][];
            for (int i = 0; i < _parameters.Length; i++)
            {
                var buffer = new float[_parameters[i].Length];
                if (slots[s].Initial != 0f) buffer.AsSpan().Fill(slots[s].Initial);
                _state[s][i] = buffer;
            }
        }
        _hostWeights = new float[]?[_parameters.Length];
        _hostGrads = new float[]?[_parameters.Length];
        for (int i = 0; i < _parameters.Length; i++)
        {
            if (_parameters[i].Storage is CpuStorage<float>) continue;
            _hostWeights[i] = _parameters[i].ToArray();
            if (!_parameters[i].HasSparseGradient) _hostGrads[i] = new float[_parameters[i].Length];
        }
        _parameterSteps = new long[_parameters.Length];
        _rowOrder = new long[_parameters.Length][];
        for (int i = 0; i < _rowOrder.Length; i++) _rowOrder[i] = Array.Empty<long>();
        _rowCount = new int[_parameters.Length];
        _tableClock = new double[_parameters.Length];
        _rowClock = new double[]?[_parameters.Length];
        _pending = new bool[_parameters.Length];
        _denseTableGrad = new float[]?[_parameters.Length];
    }

    /// <summary>The tensors this optimizer updates, in construction order.</summary>
    public IReadOnlyList<Tensor<float>> Parameters => _parameters;

    /// <summary>The learning rate of the next step; set it each step from a <see cref="LearningRateSchedule"/>.</summary>
    public virtual float LearningRate
    {
        get => _learningRate;
        set => _learningRate = NonNegative(value, nameof(LearningRate));
    }

    /// <inheritdoc/>
    public virtual bool SchedulesLearningRate => true;

    /// <inheritdoc/>
    public virtual string Description => GetType().Name;

    /// <summary>Coupled L2 coefficient λ for dense parameters (ĝ = g + λ·w); 0 = none.</summary>
    public float DenseL2
    {
        get => _denseL2;
        set => _denseL2 = NonNegative(value, nameof(DenseL2));
    }

    /// <summary>Coupled L2 coefficient λ for embedding tables: the touched rows only in Lazy mode, every row in Dense mode; 0 = none.</summary>
    public float EmbeddingL2
    {
        get => _embeddingL2;
        set => _embeddingL2 = NonNegative(value, nameof(EmbeddingL2));
    }

    /// <summary>Decoupled weight decay δ for dense parameters (w ← (1 − lr·δ)·w each step, AdamW's form); 0 = none.</summary>
    public float DenseWeightDecay
    {
        get => _denseDecay;
        set => _denseDecay = NonNegative(value, nameof(DenseWeightDecay));
    }

    /// <summary>
    /// Decoupled weight decay δ for embedding tables: every row every step, w ← (1 − lr·δ)·w — deferred in Lazy mode
    /// and applied in closed form when the row is read or updated (exact; see the class remarks); 0 = none.
    /// </summary>
    public float EmbeddingWeightDecay
    {
        get => _embeddingDecay;
        set
        {
            _embeddingDecay = NonNegative(value, nameof(EmbeddingWeightDecay));
            RefreshDeferral();
        }
    }

    /// <summary>How tables are updated (see <see cref="TableUpdateMode"/>); switching brings every deferred row up to date first.</summary>
    public TableUpdateMode TableUpdate
    {
        get => _tableMode;
        set
        {
            if (!Enum.IsDefined(value)) throw new ArgumentOutOfRangeException(nameof(TableUpdate), value, $"{GetType().Name}.TableUpdate: unknown mode.");
            if (value == _tableMode) return;
            ApplyDeferredRows();
            _tableMode = value;
            RefreshDeferral();
        }
    }

    /// <summary>Maximum global gradient norm (dense + touched sparse rows); null = no clipping.</summary>
    public float? ClipNorm
    {
        get => _clipNorm;
        set
        {
            if (value is { } c && !(c > 0f && float.IsFinite(c)))
                throw new ArgumentOutOfRangeException(nameof(ClipNorm), c, $"{GetType().Name}.ClipNorm must be a positive finite number or null; got {c}.");
            _clipNorm = value;
        }
    }

    /// <summary>Per-weight state buffers of the rule (Adam 2, Adagrad 1, SGD 0 or 1): the optimizer holds this many extra copies of each parameter.</summary>
    public int SlotCount => _slotNames.Length;

    /// <summary>The names of the state slots, in constructor order (checkpoint entries are <c>{parameter}.{slot}</c>).</summary>
    internal IReadOnlyList<string> SlotNames => _slotNames;

    /// <summary>The key of parameter <paramref name="index"/> in exported state (its name, or <c>param{i}</c>).</summary>
    internal string Key(int index) => _keys[index];

    /// <summary>The live state buffer of a slot for a parameter (for streamed checkpoints, which must not copy a table-sized buffer).</summary>
    internal float[] StateBuffer(int slot, int index) => _state[slot][index];

    /// <summary>Sets the step counts (streamed checkpoints restore state buffers in place and these alongside).</summary>
    internal void RestoreStepCounts(long step, ReadOnlySpan<long> parameterSteps)
    {
        if (parameterSteps.Length != _parameters.Length) throw new ArgumentException($"{GetType().Name}: {parameterSteps.Length} step counts for {_parameters.Length} parameters.");
        StepCount = step;
        parameterSteps.CopyTo(_parameterSteps);
    }

    internal static float[] EncodeStepCount(long step) => EncodeStep(step);

    internal long DecodeStepCount(float[] data, string name) => DecodeStep(data, name);

    /// <summary>Number of completed <see cref="Step"/> calls.</summary>
    public long StepCount { get; private set; }

    /// <summary>The global gradient norm measured by the last step (before clipping); NaN when clipping is off.</summary>
    public double LastGradientNorm { get; private set; } = double.NaN;

    /// <summary>Steps in which parameter <paramref name="index"/> received a gradient (Adam's bias-correction t).</summary>
    public long ParameterStepCount(int index) => _parameterSteps[index];

    /// <summary>Updates every parameter from its gradient (see the class remarks), then clears the gradients.</summary>
    /// <remarks>
    /// Parameters that live on a device backend (GPU) are updated on a host mirror made at construction: the
    /// step downloads each dense gradient once (a table's sparse gradient rows are already on the host), runs
    /// the same update kernels as for CPU parameters, and uploads each updated dense parameter and only the
    /// touched rows of each table (<see cref="Backends.IBackend{T}.UploadRows"/>) — host↔device copies once per
    /// step. After writing a device parameter any other way (loading a checkpoint, restoring best weights) call
    /// <see cref="ReloadDeviceParameters"/>.
    /// </remarks>
    public void Step()
    {
        BeginStep();
        float scale = 1f;
        if (_clipNorm is { } clip)
        {
            double norm = Math.Sqrt(SumOfSquaredGradients());
            LastGradientNorm = norm;
            if (!double.IsFinite(norm))
                throw new InvalidOperationException(
                    $"{GetType().Name}.Step {StepCount}: the global gradient norm is {norm}; a gradient holds NaN or infinity, nothing was updated.");
            if (norm > clip) scale = (float)(clip / norm);
        }
        FinishStep(scale);
    }

    /// <summary>First phase of a step (also driven by <see cref="OptimizerGroup"/>): sorts touched rows, downloads device gradients.</summary>
    internal void BeginStep()
    {
        for (int i = 0; i < _parameters.Length; i++) PrepareRows(i);
        for (int i = 0; i < _parameters.Length; i++)
            if (_hostGrads[i] is { } hg && _parameters[i].Grad is { } dg) dg.Backend.Download(dg.Storage, hg);
    }

    /// <summary>Second phase: every update with the clipping scale, uploads, cleared gradients, <see cref="StepCount"/> + 1.</summary>
    internal void FinishStep(float scale)
    {
        for (int i = 0; i < _parameters.Length; i++)
        {
            var p = _parameters[i];
            if (p.HasSparseGradient)
            {
                // A device table has no read hook to defer through; a rule whose deferred update equals its dense one
                // (FTRL's per-step shrinkage) runs dense there.
                if (SteppedDense(i)) StepDenseTable(i, scale);
                else StepTableRows(i, new SortedSparseRows(this, i), scale);
            }
            else if (p.Grad is { } g)
            {
                _parameterSteps[i]++;
                DecayKeep = Keep(_denseDecay, i);
                BeginParameter(i, _parameterSteps[i]);
                Update(i, 0, Weights(i), DenseGradient(i, g), scale, _denseL2);
            }
        }
        for (int i = 0; i < _parameters.Length; i++) WriteBack(i);

        ZeroGrad();
        StepCount++;
    }

    /// <summary>
    /// One step of the rule on chosen rows of one embedding table, for callers that own the rows (e.g. a process that
    /// holds a shard of a table): <paramref name="rows"/> ascending and distinct, <paramref name="gradients"/>
    /// [rows.Length, width] row-major (already averaged and clipped as the caller wants; scaled by
    /// <paramref name="gradientScale"/>). The table's own step count (Adam's bias correction) and decay clock advance by
    /// one step — the decay reaches all its rows, deferred — exactly as in <see cref="Step"/> for a step that touched
    /// these rows; other parameters and <see cref="StepCount"/> do not change. The table's
    /// <see cref="Tensor{T}.SparseGrad"/> is neither read nor cleared. Lazy mode, CPU tables only.
    /// </summary>
    public void StepRows(Tensor<float> table, ReadOnlySpan<int> rows, ReadOnlySpan<float> gradients, float gradientScale = 1f)
    {
        ArgumentNullException.ThrowIfNull(table);
        int i = Array.IndexOf(_parameters, table);
        if (i < 0) throw new ArgumentException($"{GetType().Name}.StepRows: {table.Describe()} is not a parameter of this optimizer.", nameof(table));
        if (!table.HasSparseGradient) throw new ArgumentException($"{GetType().Name}.StepRows: {table.Describe()} is not an embedding table.", nameof(table));
        if (_tableMode != TableUpdateMode.Lazy) throw new InvalidOperationException($"{GetType().Name}.StepRows: updates chosen rows, which needs TableUpdate = Lazy.");
        if (_hostWeights[i] is not null) throw new NotSupportedException($"{GetType().Name}.StepRows: {table.Describe()} lives on a device; StepRows updates CPU tables.");
        int width = table.Shape[1], n = table.Shape[0];
        if (gradients.Length != rows.Length * width)
            throw new ArgumentException($"{GetType().Name}.StepRows: {gradients.Length} gradient values for {rows.Length} rows of width {width}.", nameof(gradients));
        for (int k = 0; k < rows.Length; k++)
        {
            if ((uint)rows[k] >= (uint)n) throw new ArgumentOutOfRangeException(nameof(rows), $"{GetType().Name}.StepRows: row {rows[k]} is outside {table.Describe()}.");
            if (k > 0 && rows[k] <= rows[k - 1]) throw new ArgumentException($"{GetType().Name}.StepRows: rows must be ascending and distinct ({rows[k - 1]} then {rows[k]}).", nameof(rows));
        }
        unsafe
        {
            fixed (int* r = rows)
            fixed (float* g = gradients)
                StepTableRows(i, new GivenRows(r, g, rows.Length, width), gradientScale);
        }
    }

    /// <summary>The rows a table step visits: count, k-th row id, k-th gradient row.</summary>
    private interface IRowSource
    {
        int Count { get; }
        int Row(int k);
        ReadOnlySpan<float> Gradient(int k);
    }

    private readonly struct SortedSparseRows(Optimizer owner, int index) : IRowSource
    {
        public int Count => owner._rowCount[index];
        public int Row(int k) => (int)(owner._rowOrder[index][k] >> 32);
        public ReadOnlySpan<float> Gradient(int k) => owner._parameters[index].SparseGrad!.Row((int)(owner._rowOrder[index][k] & 0xFFFFFFFF));
    }

    private readonly unsafe struct GivenRows(int* rows, float* gradients, int count, int width) : IRowSource
    {
        public int Count => count;
        public int Row(int k) => rows[k];
        public ReadOnlySpan<float> Gradient(int k) => new(gradients + (long)k * width, width);
    }

    /// <summary>
    /// A Lazy-mode table step: the decay clock advances (every row owes this step's decay), and each given row is
    /// brought up to the clock before the step, then updated by the rule (which applies this step's decay factor to it).
    /// </summary>
    private void StepTableRows<TRows>(int i, TRows rows, float scale) where TRows : IRowSource
    {
        var table = Weights(i);
        int width = _parameters[i].Shape[1];
        double before = _tableClock[i];
        var rowClock = _rowClock[i];
        double after = rowClock is not null ? AdvanceClock(i, before) : before;
        _tableClock[i] = after; // the rule may read it (FTRL's step-scaled λ); rows below still catch up to `before` first
        DecayKeep = rowClock is not null ? Keep(_embeddingDecay, i) : 1f;
        int count = rows.Count;
        // A row-sharded table another rank touched counts the step here too, as one process would (Adam's bias correction).
        if (count > 0 || _parameters[i].SparseGrad is { TouchedElsewhere: true })
        {
            _parameterSteps[i]++;
            BeginParameter(i, _parameterSteps[i]);
            for (int k = 0; k < count; k++)
            {
                int row = rows.Row(k), offset = row * width;
                var w = table.Slice(offset, width);
                if (rowClock is not null)
                {
                    // Rows are normally current already (the forward read them); a row another process touched is not.
                    if (rowClock[row] != before) CatchUp(i, row, w, rowClock[row], before);
                    rowClock[row] = after;
                }
                Update(i, offset, w, rows.Gradient(k), scale, _embeddingL2);
            }
        }
        if (after != before && count < _parameters[i].Shape[0]) _pending[i] = true;
        DecayKeep = 1f;
    }

    /// <summary>A Dense-mode table step: the rule over the whole table with the touched rows' gradients and zeros elsewhere.</summary>
    private void StepDenseTable(int i, float scale)
    {
        var p = _parameters[i];
        int width = p.Shape[1];
        var grad = _denseTableGrad[i] ??= new float[p.Length];
        Array.Clear(grad);
        var order = _rowOrder[i];
        for (int k = 0; k < _rowCount[i]; k++)
        {
            int row = (int)(order[k] >> 32), slot = (int)(order[k] & 0xFFFFFFFF);
            p.SparseGrad!.Row(slot).CopyTo(grad.AsSpan(row * width, width));
        }
        _parameterSteps[i]++;
        DecayKeep = Keep(_embeddingDecay, i);
        BeginParameter(i, _parameterSteps[i]);
        Update(i, 0, Weights(i), grad, scale, _embeddingL2);
        DecayKeep = 1f;
    }

    /// <summary>
    /// The decay factor the rule applies to the weights it updates in the current <see cref="Update"/> call:
    /// w ← DecayKeep·w before the step (1 when there is no decoupled decay).
    /// </summary>
    protected float DecayKeep { get; private set; } = 1f;

    private float Keep(float decay, int index)
    {
        if (decay == 0f) return 1f;
        float keep = 1f - _learningRate * decay;
        if (!(keep > 0f))
            throw new InvalidOperationException(
                $"{GetType().Name}: learning rate {_learningRate} × weight decay {decay} = {_learningRate * decay} ≥ 1 for {_parameters[index].Describe()}; the decay factor 1 − lr·δ must stay positive.");
        return keep;
    }

    // ---------------------------------------------------------------- deferred rows

    /// <summary>
    /// Whether table <paramref name="index"/> owes its untouched rows an update every step, which is then deferred
    /// (see the class remarks). The base rule: Lazy mode with decoupled <see cref="EmbeddingWeightDecay"/>.
    /// Derived rules that override it call <see cref="RefreshDeferral"/> at the end of their constructor.
    /// </summary>
    protected virtual bool DefersRows(int index) =>
        _parameters[index].HasSparseGradient && _tableMode == TableUpdateMode.Lazy && _embeddingDecay > 0f;

    /// <summary>
    /// The table's clock after one more step. The base rule's clock is the running sum of ln(1 − lr·δ) (the same float
    /// factor the rule applies to touched rows), so a row idle from clock a to b owes the factor exp(b − a).
    /// </summary>
    protected virtual double AdvanceClock(int index, double clock) => clock + Math.Log(Keep(_embeddingDecay, index));

    /// <summary>Brings one idle row (its state unchanged since clock <paramref name="from"/>) up to clock <paramref name="to"/>.</summary>
    protected virtual void CatchUp(int index, int row, Span<float> weights, double from, double to) =>
        System.Numerics.Tensors.TensorPrimitives.Multiply(weights, (float)Math.Exp(to - from), weights);

    /// <summary>Whether table <paramref name="i"/> is stepped over every row: Dense mode, or a device table whose rule defers (see <see cref="DenseEqualsDeferred"/>).</summary>
    private bool SteppedDense(int i) => _tableMode == TableUpdateMode.Dense || (_hostWeights[i] is not null && DenseEqualsDeferred && DefersRows(i));

    /// <summary>
    /// Whether running the rule on every row (zero gradient where untouched) gives exactly the deferred update — true for
    /// FTRL (an idle coordinate's z and n stay; w is recomputed), false for decay under Adam (dense Adam moves idle rows).
    /// Device tables, which cannot defer, are then stepped dense.
    /// </summary>
    protected virtual bool DenseEqualsDeferred => false;

    /// <summary>The table's clock now (for rules whose catch-up depends on it).</summary>
    protected double TableClock(int index) => _tableClock[index];

    /// <summary>Starts or stops deferring rows for each table according to <see cref="DefersRows"/>.</summary>
    /// <summary>Whether some table's row updates are deferred (row clocks are part of the state).</summary>
    internal bool DefersAnyRows => _rowClock.Any(c => c is not null);

    /// <summary>Starts or stops deferring each table's row updates as the rule's settings now require (a table that stops syncs first).</summary>
    protected void RefreshDeferral()
    {
        for (int i = 0; i < _parameters.Length; i++)
        {
            bool want = DefersRows(i);
            if (want && _hostWeights[i] is not null && DenseEqualsDeferred) continue; // stepped dense instead (see FinishStep)
            if (want && _rowClock[i] is null)
            {
                if (_hostWeights[i] is not null)
                    throw new NotSupportedException(
                        $"{GetType().Name}: {_parameters[i].Describe()} lives on a device; deferred (lazy) row updates need a CPU table — use TableUpdate = Dense there.");
                var clocks = new double[_parameters[i].Shape[0]];
                clocks.AsSpan().Fill(_tableClock[i]);
                _rowClock[i] = clocks;
                _parameters[i].DeferredRows = new RowSync(this, i);
            }
            else if (!want && _rowClock[i] is not null)
            {
                SyncTable(i);
                _rowClock[i] = null;
                if (_parameters[i].DeferredRows is RowSync s && ReferenceEquals(s.Owner, this)) _parameters[i].DeferredRows = null;
            }
        }
    }

    /// <inheritdoc/>
    public void ApplyDeferredRows()
    {
        for (int i = 0; i < _parameters.Length; i++) SyncTable(i);
    }

    private void SyncRows(int i, ReadOnlySpan<int> ids, int stride, int count)
    {
        var clocks = _rowClock[i];
        if (clocks is null || !_pending[i]) return;
        double now = _tableClock[i];
        var table = _parameters[i].AsSpan();
        int width = _parameters[i].Shape[1];
        for (int k = 0, at = 0; k < count; k++, at += stride)
        {
            int row = ids[at];
            if ((uint)row >= (uint)clocks.Length || clocks[row] == now) continue; // the op reports bad ids itself
            CatchUp(i, row, table.Slice(row * width, width), clocks[row], now);
            clocks[row] = now;
        }
    }

    private void SyncTable(int i)
    {
        var clocks = _rowClock[i];
        if (clocks is null || !_pending[i]) return;
        double now = _tableClock[i];
        var table = _parameters[i].AsSpan();
        int width = _parameters[i].Shape[1];
        for (int row = 0; row < clocks.Length; row++)
        {
            if (clocks[row] == now) continue;
            CatchUp(i, row, table.Slice(row * width, width), clocks[row], now);
            clocks[row] = now;
        }
        _pending[i] = false;
    }

    /// <summary>Marks every row of every deferring table current (after its weights were written from outside).</summary>
    private void MarkRowsCurrent()
    {
        for (int i = 0; i < _parameters.Length; i++)
            if (_rowClock[i] is { } clocks)
            {
                clocks.AsSpan().Fill(_tableClock[i]);
                _pending[i] = false;
            }
    }

    /// <summary>The table hook through which readers bring rows up to date.</summary>
    private sealed class RowSync(Optimizer owner, int index) : IDeferredRowUpdates
    {
        public Optimizer Owner => owner;
        public void Apply(ReadOnlySpan<int> ids, int stride, int count) => owner.SyncRows(index, ids, stride, count);
        public void ApplyAll() => owner.SyncTable(index);
    }

    // ---------------------------------------------------------------- device mirrors

    /// <inheritdoc/>
    public void ReloadDeviceParameters()
    {
        for (int i = 0; i < _parameters.Length; i++)
            if (_hostWeights[i] is { } w) _parameters[i].Backend.Download(_parameters[i].Storage, w);
        MarkRowsCurrent();
    }

    private Span<float> Weights(int i) => _hostWeights[i] is { } w ? w : _parameters[i].AsSpan();

    private ReadOnlySpan<float> DenseGradient(int i, Tensor<float> g) => _hostGrads[i] is { } h ? h : g.AsSpan();

    /// <summary>Uploads what the step changed in a device parameter: all of a dense one or a Dense-mode table, the touched rows of a table.</summary>
    private void WriteBack(int i)
    {
        if (_hostWeights[i] is not { } w) return;
        var p = _parameters[i];
        if (!p.HasSparseGradient || SteppedDense(i))
        {
            if (p.HasSparseGradient || p.Grad is not null) p.Backend.Upload(w, p.Storage);
            return;
        }
        int count = _rowCount[i], width = p.Shape[1];
        if (count == 0) return;
        if (_uploadRows.Length < count) _uploadRows = new int[Math.Max(count, 2 * _uploadRows.Length)];
        if (_uploadValues.Length < count * width) _uploadValues = new float[Math.Max(count * width, 2 * _uploadValues.Length)];
        var order = _rowOrder[i];
        for (int k = 0; k < count; k++)
        {
            int row = (int)(order[k] >> 32);
            _uploadRows[k] = row;
            w.AsSpan(row * width, width).CopyTo(_uploadValues.AsSpan(k * width, width));
        }
        p.Backend.UploadRows(p.Storage, width, _uploadRows.AsSpan(0, count), _uploadValues.AsSpan(0, count * width));
    }

    /// <summary>Clears every parameter's gradient (dense buffers zero-filled and kept, sparse rows forgotten).</summary>
    public void ZeroGrad()
    {
        for (int i = 0; i < _parameters.Length; i++) _parameters[i].ZeroGrad();
    }

    /// <summary>
    /// Called once per step for each parameter that has a gradient, before its <see cref="Update"/> calls, with
    /// that parameter's step number t (1 on its first update).
    /// </summary>
    protected virtual void BeginParameter(int index, long step) { }

    /// <summary>
    /// Applies the rule to one contiguous block of parameter <paramref name="index"/>: the whole dense parameter
    /// (offset 0), or one table row (offset = row·width). State for the block is
    /// <c>State(slot, index).AsSpan(offset, weights.Length)</c>. Decoupled decay: multiply the weights by
    /// <see cref="DecayKeep"/> before the step.
    /// </summary>
    protected abstract void Update(int index, int offset, Span<float> weights, ReadOnlySpan<float> gradient, float gradientScale, float l2);

    /// <summary>The state buffer of <paramref name="slot"/> (constructor order) for parameter <paramref name="index"/>.</summary>
    protected float[] State(int slot, int index) => _state[slot][index];

    /// <inheritdoc/>
    /// <remarks>The base rules (SGD, Adam, Adagrad) step from whatever the weights are, so they keep their state.</remarks>
    public virtual void AnchorStateToWeights() { }

    /// <summary>The host values of parameter <paramref name="index"/> (its mirror when it lives on a device).</summary>
    protected float[] HostValues(int index) => _hostWeights[index] ?? _parameters[index].ToArray();

    /// <summary>Whether parameter <paramref name="index"/> lives on a device backend (updated on a host mirror).</summary>
    protected bool IsOnDevice(int index) => _hostWeights[index] is not null;

    /// <summary>Whether parameter <paramref name="index"/> is an embedding table.</summary>
    protected bool IsTable(int index) => _parameters[index].HasSparseGradient;

    // ---------------------------------------------------------------- state

    /// <summary>
    /// Copies of the optimizer state: <c>step</c> ([2]: hi, lo with step = hi·2²⁴ + lo), then for each parameter
    /// (keyed by its name, or <c>param{i}</c> when unnamed) <c>{key}.step</c> ([2], same encoding), one
    /// <c>{key}.{slot}</c> buffer per state slot with the parameter's shape, and for a table that defers rows
    /// <c>{key}.clock</c> ([3]) and <c>{key}.row_clock</c> ([rows, 3]): the table's clock and each row's, every double
    /// as three floats whose sum is exactly the double. Deferred rows are NOT applied: with the raw table values
    /// (<see cref="Tensor{T}.Storage"/>, not <see cref="Tensor{T}.ToArray"/>) this state resumes bit-identically, since
    /// applying a row's factors in two parts rounds differently from applying them at once.
    /// </summary>
    public IReadOnlyList<(string Name, float[] Data, int[] Shape)> ExportState()
    {
        var list = new List<(string, float[], int[])>(1 + _parameters.Length * (2 + _slotNames.Length))
        {
            ("step", EncodeStep(StepCount), [2]),
        };
        for (int i = 0; i < _parameters.Length; i++)
        {
            list.Add(($"{_keys[i]}.step", EncodeStep(_parameterSteps[i]), [2]));
            for (int s = 0; s < _slotNames.Length; s++)
                list.Add(($"{_keys[i]}.{_slotNames[s]}", (float[])_state[s][i].Clone(), _parameters[i].Shape.Dims.ToArray()));
            if (_rowClock[i] is { } rows)
            {
                list.Add(($"{_keys[i]}.clock", EncodeClock(_tableClock[i]), [3]));
                var encoded = new float[rows.Length * 3];
                for (int r = 0; r < rows.Length; r++) EncodeClock(rows[r]).CopyTo(encoded, 3 * r);
                list.Add(($"{_keys[i]}.row_clock", encoded, [rows.Length, 3]));
            }
        }
        return list;
    }

    /// <summary>
    /// Restores state exported by an optimizer of the same type and settings over parameters with the same names and
    /// shapes. Everything is validated before anything is written: a missing, unknown or misshapen entry throws an
    /// <see cref="ArgumentException"/> naming it and leaves this optimizer unchanged. Load the weights exported with it
    /// and the table values raw (see <see cref="ExportState"/>).
    /// </summary>
    public void ImportState(IReadOnlyList<(string Name, float[] Data, int[] Shape)> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var expected = ExportState(); // names, shapes and lengths this optimizer needs
        var byName = new Dictionary<string, (float[] Data, int[] Shape)>(StringComparer.Ordinal);
        foreach (var (name, data, shape) in state)
        {
            if (name is null || data is null || shape is null)
                throw new ArgumentException($"{GetType().Name}.ImportState: an entry has a null name, data or shape.", nameof(state));
            if (!byName.TryAdd(name, (data, shape)))
                throw new ArgumentException($"{GetType().Name}.ImportState: entry '{name}' appears twice.", nameof(state));
        }
        var known = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, data, shape) in expected)
        {
            known.Add(name);
            if (!byName.TryGetValue(name, out var got))
                throw new ArgumentException($"{GetType().Name}.ImportState: entry '{name}' is missing.", nameof(state));
            if (!got.Shape.AsSpan().SequenceEqual(shape) || got.Data.Length != data.Length)
                throw new ArgumentException(
                    $"{GetType().Name}.ImportState: entry '{name}' has shape [{string.Join(", ", got.Shape)}] and {got.Data.Length} values; expected [{string.Join(", ", shape)}] and {data.Length}.", nameof(state));
        }
        foreach (var name in byName.Keys)
            if (!known.Contains(name))
                throw new ArgumentException($"{GetType().Name}.ImportState: unknown entry '{name}' (different optimizer type, settings or parameters?).", nameof(state));

        long step = DecodeStep(byName["step"].Data, "step");
        var parameterSteps = new long[_parameters.Length];
        var clocks = new double[_parameters.Length];
        var rowClocks = new double[_parameters.Length][];
        for (int i = 0; i < _parameters.Length; i++)
        {
            parameterSteps[i] = DecodeStep(byName[$"{_keys[i]}.step"].Data, $"{_keys[i]}.step");
            if (_rowClock[i] is { } rows)
            {
                clocks[i] = DecodeClock(byName[$"{_keys[i]}.clock"].Data, 0, $"{_keys[i]}.clock");
                var encoded = byName[$"{_keys[i]}.row_clock"].Data;
                rowClocks[i] = new double[rows.Length];
                for (int r = 0; r < rows.Length; r++) rowClocks[i][r] = DecodeClock(encoded, 3 * r, $"{_keys[i]}.row_clock[{r}]");
            }
        }

        StepCount = step;
        parameterSteps.CopyTo(_parameterSteps, 0);
        for (int i = 0; i < _parameters.Length; i++)
        {
            for (int s = 0; s < _slotNames.Length; s++)
                byName[$"{_keys[i]}.{_slotNames[s]}"].Data.CopyTo(_state[s][i], 0);
            if (_rowClock[i] is { } rows)
            {
                _tableClock[i] = clocks[i];
                rowClocks[i].CopyTo(rows, 0);
                _pending[i] = Array.Exists(rows, c => c != clocks[i]);
            }
        }
    }

    private static float[] EncodeStep(long step) => [step / StepRadix, step % StepRadix];

    private long DecodeStep(float[] data, string name)
    {
        float hi = data[0], lo = data[1];
        if (!(hi >= 0 && lo >= 0 && lo < StepRadix && hi < StepRadix && hi == MathF.Floor(hi) && lo == MathF.Floor(lo)))
            throw new ArgumentException($"{GetType().Name}.ImportState: entry '{name}' = [{hi}, {lo}] is not a valid step count.");
        return (long)hi * StepRadix + (long)lo;
    }

    /// <summary>
    /// A double as three floats whose sum (in double, left to right) is exactly the double: hi = (float)x, then the
    /// remainders, each exact in double, rounded again (24 + 24 + 24 bits cover the 53 of a double).
    /// </summary>
    private static float[] EncodeClock(double x)
    {
        float hi = (float)x;
        double r1 = x - hi;
        float mid = (float)r1;
        return [hi, mid, (float)(r1 - mid)];
    }

    private double DecodeClock(float[] data, int at, string name)
    {
        if (!float.IsFinite(data[at]) || !float.IsFinite(data[at + 1]) || !float.IsFinite(data[at + 2]))
            throw new ArgumentException($"{GetType().Name}.ImportState: entry '{name}' is not a finite clock.");
        return (double)data[at] + data[at + 1] + data[at + 2];
    }

    /// <summary>Sorts the touched rows of table <paramref name="index"/> into its reusable key buffer.</summary>
    private void PrepareRows(int index)
    {
        var p = _parameters[index];
        _rowCount[index] = 0;
        if (!p.HasSparseGradient || p.SparseGrad is not { Count: > 0 } grad) return;
        if (grad.TableRows != p.Shape[0] || grad.Width != p.Shape[1])
            throw new InvalidOperationException(
                $"{GetType().Name}.Step: the sparse gradient of {p.Describe()} is [{grad.TableRows}, {grad.Width}], not the table's shape.");
        int count = grad.Count;
        if (_rowOrder[index].Length < count) _rowOrder[index] = new long[Math.Max(count, 2 * _rowOrder[index].Length)];
        var keys = _rowOrder[index].AsSpan(0, count);
        var rows = grad.Rows;
        for (int k = 0; k < count; k++) keys[k] = ((long)rows[k] << 32) | (uint)k;
        keys.Sort();
        _rowCount[index] = count;
    }

    /// <summary>Σ g² over every dense gradient and every touched sparse row (after <see cref="BeginStep"/>).</summary>
    internal double SumOfSquaredGradients()
    {
        double total = 0, sharded = 0;
        Sharding.RowSharding? sharding = null;
        for (int i = 0; i < _parameters.Length; i++)
        {
            var p = _parameters[i];
            if (p.HasSparseGradient)
            {
                var grad = p.SparseGrad;
                var order = _rowOrder[i];
                double sum = 0;
                for (int k = 0; k < _rowCount[i]; k++)
                    sum += UpdateKernels.SumOfSquares(grad!.Row((int)(order[k] & 0xFFFFFFFF)));
                if (p.RowShard?.Table is { } table) { sharded += sum; sharding = table.Sharding; }
                else total += sum;
            }
            else if (p.Grad is { } g) total += UpdateKernels.SumOfSquares(DenseGradient(i, g));
        }
        // A row-sharded table's rows are spread over the ranks (each rank holds its own), while dense gradients are
        // the same on every rank after their allreduce: the norm adds the shards' sums over the ranks.
        if (sharding is not null)
        {
            Span<double> shards = [sharded];
            sharding.Group.AllReduceSum(shards);
            total += shards[0];
        }
        return total;
    }

    /// <summary>Records the norm a group measured (see <see cref="OptimizerGroup"/>).</summary>
    internal void SetLastGradientNorm(double norm) => LastGradientNorm = norm;

    private float NonNegative(float value, string name)
    {
        if (!(value >= 0f && float.IsFinite(value)))
            throw new ArgumentOutOfRangeException(name, value, $"{GetType().Name}.{name} must be a finite number ≥ 0; got {value}.");
        return value;
    }
}
