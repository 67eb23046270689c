using KdEngine.Autograd;
using KdEngine.Tensors;

namespace KdEngine.Training;

/// <summary>
/// Base of the optimizers over float32 parameters. <see cref="Step"/> updates every registered parameter from
/// its gradient and then clears the gradients. A parameter with <see cref="Tensor{T}.HasSparseGradient"/> is an
/// embedding table [rows, width]: only the rows in its <see cref="Tensor{T}.SparseGrad"/> are read and
/// written, so a step costs O(touched rows · width), never O(table).
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
/// <item>L2: the effective gradient is ĝ = s·g + λ·w — classic L2 regularisation (the gradient of λ/2·‖w‖²
/// added to the loss), which flows through Adam's and Adagrad's adaptive scaling; it is NOT decoupled AdamW
/// decay. λ is <see cref="DenseL2"/> for dense parameters and <see cref="EmbeddingL2"/> for tables, where it
/// touches only the rows in this batch (as TF/DeepCTR regularise the looked-up embeddings): rows not seen
/// are not decayed.</item>
/// <item>The rule (<see cref="Sgd"/>, <see cref="Adam"/>, <see cref="Adagrad"/>) updates weights and state
/// with a fused SIMD pass per dense parameter or per touched row.</item>
/// <item>Gradients are cleared (dense zero-filled, sparse rows forgotten) and <see cref="StepCount"/> grows.</item>
/// </list>
/// <para>A parameter that received no gradient since the last step (dense Grad null, or no touched rows) is
/// skipped entirely: neither its weights nor its state change, and its own step count does not grow.</para>
/// <para>Steady state allocates nothing: state buffers are made once at construction and the row-order buffers
/// grow only when a batch touches more rows than any before.</para>
/// <para>State for checkpoints: <see cref="ExportState"/> / <see cref="ImportState"/> carry the step counts and
/// every state buffer, so an optimizer rebuilt with the same settings and parameters continues bit-identically.
/// Hyperparameters (learning rate, L2, clipping) are configuration, not state; a schedule is a pure function of
/// <see cref="StepCount"/> (<see cref="LearningRateSchedule"/>), so setting
/// <c>opt.LearningRate = schedule.LearningRate(opt.StepCount)</c> before each step resumes exactly too.</para>
/// </remarks>
public abstract class Optimizer
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
    private float _denseL2, _embeddingL2;
    private float? _clipNorm;
    // Parameters on a device backend (not CPU memory) are updated on a host mirror: see DeviceMirror remarks.
    private readonly float[]?[] _hostWeights; // the mirror of a device parameter's values; null for CPU parameters
    private readonly float[]?[] _hostGrads;   // the downloaded dense gradient of a device parameter
    private int[] _uploadRows = [];
    private float[] _uploadValues = [];

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
    }

    /// <summary>The tensors this optimizer updates, in construction order.</summary>
    public IReadOnlyList<Tensor<float>> Parameters => _parameters;

    /// <summary>The learning rate of the next step; set it each step from a <see cref="LearningRateSchedule"/>.</summary>
    public float LearningRate
    {
        get => _learningRate;
        set => _learningRate = NonNegative(value, nameof(LearningRate));
    }

    /// <summary>L2 coefficient λ for dense parameters (ĝ = g + λ·w); 0 = none.</summary>
    public float DenseL2
    {
        get => _denseL2;
        set => _denseL2 = NonNegative(value, nameof(DenseL2));
    }

    /// <summary>L2 coefficient λ for embedding tables, applied to the touched rows only; 0 = none.</summary>
    public float EmbeddingL2
    {
        get => _embeddingL2;
        set => _embeddingL2 = NonNegative(value, nameof(EmbeddingL2));
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
        for (int i = 0; i < _parameters.Length; i++) PrepareRows(i);
        for (int i = 0; i < _parameters.Length; i++)
            if (_hostGrads[i] is { } hg && _parameters[i].Grad is { } dg) dg.Backend.Download(dg.Storage, hg);

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

        for (int i = 0; i < _parameters.Length; i++)
        {
            var p = _parameters[i];
            if (p.HasSparseGradient)
            {
                int count = _rowCount[i];
                if (count == 0) continue;
                _parameterSteps[i]++;
                BeginParameter(i, _parameterSteps[i]);
                var table = Weights(i);
                var grad = p.SparseGrad!;
                int width = p.Shape[1];
                var order = _rowOrder[i];
                for (int k = 0; k < count; k++)
                {
                    int row = (int)(order[k] >> 32), slot = (int)(order[k] & 0xFFFFFFFF);
                    int offset = row * width;
                    Update(i, offset, table.Slice(offset, width), grad.Row(slot), scale, _embeddingL2);
                }
            }
            else if (p.Grad is { } g)
            {
                _parameterSteps[i]++;
                BeginParameter(i, _parameterSteps[i]);
                Update(i, 0, Weights(i), DenseGradient(i, g), scale, _denseL2);
            }
        }
        for (int i = 0; i < _parameters.Length; i++) WriteBack(i);

        ZeroGrad();
        StepCount++;
    }

    /// <summary>
    /// Re-reads the host mirrors of device parameters (see <see cref="Step"/>): call after writing device
    /// parameters outside the optimizer. CPU parameters have no mirror; for them this does nothing.
    /// </summary>
    public void ReloadDeviceParameters()
    {
        for (int i = 0; i < _parameters.Length; i++)
            if (_hostWeights[i] is { } w) _parameters[i].Backend.Download(_parameters[i].Storage, w);
    }

    private Span<float> Weights(int i) => _hostWeights[i] is { } w ? w : _parameters[i].AsSpan();

    private ReadOnlySpan<float> DenseGradient(int i, Tensor<float> g) => _hostGrads[i] is { } h ? h : g.AsSpan();

    /// <summary>Uploads what the step changed in a device parameter: all of a dense one, the touched rows of a table.</summary>
    private void WriteBack(int i)
    {
        if (_hostWeights[i] is not { } w) return;
        var p = _parameters[i];
        if (!p.HasSparseGradient)
        {
            if (p.Grad is not null) p.Backend.Upload(w, p.Storage);
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
    /// <c>State(slot, index).AsSpan(offset, weights.Length)</c>.
    /// </summary>
    protected abstract void Update(int index, int offset, Span<float> weights, ReadOnlySpan<float> gradient, float gradientScale, float l2);

    /// <summary>The state buffer of <paramref name="slot"/> (constructor order) for parameter <paramref name="index"/>.</summary>
    protected float[] State(int slot, int index) => _state[slot][index];

    /// <summary>
    /// Copies of the optimizer state: <c>step</c> ([2]: hi, lo with step = hi·2²⁴ + lo), then for each parameter
    /// (keyed by its name, or <c>param{i}</c> when unnamed) <c>{key}.step</c> ([2], same encoding) and one
    /// <c>{key}.{slot}</c> buffer per state slot with the parameter's shape.
    /// </summary>
    public IReadOnlyList<(string Name, float[] Data, int[] Shape)> ExportState()
    {
        var list = new List<(string, float[], int[])>(1 + _parameters.Length * (1 + _slotNames.Length))
        {
            ("step", EncodeStep(StepCount), [2]),
        };
        for (int i = 0; i < _parameters.Length; i++)
        {
            list.Add(($"{_keys[i]}.step", EncodeStep(_parameterSteps[i]), [2]));
            for (int s = 0; s < _slotNames.Length; s++)
                list.Add(($"{_keys[i]}.{_slotNames[s]}", (float[])_state[s][i].Clone(), _parameters[i].Shape.Dims.ToArray()));
        }
        return list;
    }

    /// <summary>
    /// Restores state exported by an optimizer of the same type over parameters with the same names and shapes.
    /// Everything is validated before anything is written: a missing, unknown or misshapen entry throws an
    /// <see cref="ArgumentException"/> naming it and leaves this optimizer unchanged.
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
                throw new ArgumentException($"{GetType().Name}.ImportState: unknown entry '{name}' (different optimizer type or parameters?).", nameof(state));

        long step = DecodeStep(byName["step"].Data, "step");
        var parameterSteps = new long[_parameters.Length];
        for (int i = 0; i < _parameters.Length; i++)
            parameterSteps[i] = DecodeStep(byName[$"{_keys[i]}.step"].Data, $"{_keys[i]}.step");

        StepCount = step;
        parameterSteps.CopyTo(_parameterSteps, 0);
        for (int i = 0; i < _parameters.Length; i++)
            for (int s = 0; s < _slotNames.Length; s++)
                byName[$"{_keys[i]}.{_slotNames[s]}"].Data.CopyTo(_state[s][i], 0);
    }

    private static float[] EncodeStep(long step) => [step / StepRadix, step % StepRadix];

    private long DecodeStep(float[] data, string name)
    {
        float hi = data[0], lo = data[1];
        if (!(hi >= 0 && lo >= 0 && lo < StepRadix && hi < StepRadix && hi == MathF.Floor(hi) && lo == MathF.Floor(lo)))
            throw new ArgumentException($"{GetType().Name}.ImportState: entry '{name}' = [{hi}, {lo}] is not a valid step count.");
        return (long)hi * StepRadix + (long)lo;
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

    private double SumOfSquaredGradients()
    {
        double total = 0;
        for (int i = 0; i < _parameters.Length; i++)
        {
            var p = _parameters[i];
            if (p.HasSparseGradient)
            {
                var grad = p.SparseGrad;
                var order = _rowOrder[i];
                for (int k = 0; k < _rowCount[i]; k++)
                    total += UpdateKernels.SumOfSquares(grad!.Row((int)(order[k] & 0xFFFFFFFF)));
            }
            else if (p.Grad is { } g) total += UpdateKernels.SumOfSquares(DenseGradient(i, g));
        }
        return total;
    }

    private float NonNegative(float value, string name)
    {
        if (!(value >= 0f && float.IsFinite(value)))
            throw new ArgumentOutOfRangeException(name, value, $"{GetType().Name}.{name} must be a finite number ≥ 0; got {value}.");
        return value;
    }
}
