using KdEngine.Tensors;

namespace KdEngine.Training;

/// <summary>
/// Several optimizers over disjoint parameters stepping as one — e.g. <see cref="Ftrl"/> on the wide part of a WDL /
/// DeepFM / xDeepFM and <see cref="Adam"/> on everything else. One <see cref="Step"/> runs every member's step with a
/// single global clipping scale (the norm over all members' gradients, as one optimizer would measure it).
/// </summary>
/// <remarks>
/// <para>Learning rate: <see cref="LearningRate"/> reads the first member whose rate may be scheduled; setting it
/// scales every such member by the same factor relative to its initial rate (so a schedule or a plateau reduction moves
/// them together); members that do not schedule their rate (FTRL) keep theirs.</para>
/// <para>State: <c>step</c>, then each member's entries prefixed <c>{k}.</c> (k = member index).</para>
/// </remarks>
public sealed class OptimizerGroup : IOptimizer
{
    private const long StepRadix = 1L << 24;
    private readonly Optimizer[] _members;
    private readonly float[] _initialRates;
    private readonly int _lead;
    private readonly Tensor<float>[] _parameters;
    private float? _clipNorm;

    /// <summary>A group of optimizers over disjoint parameters, stepped together (one global clipping norm); the first member that schedules its rate leads <see cref="LearningRate"/>.</summary>
    public OptimizerGroup(params Optimizer[] members)
    {
        ArgumentNullException.ThrowIfNull(members);
        if (members.Length == 0) throw new ArgumentException("OptimizerGroup: no members.", nameof(members));
        var seen = new HashSet<Tensor<float>>(ReferenceEqualityComparer.Instance);
        foreach (var m in members)
        {
            ArgumentNullException.ThrowIfNull(m, nameof(members));
            if (m.ClipNorm is not null)
                throw new ArgumentException($"OptimizerGroup: member {m.Description} clips on its own; set ClipNorm on the group so the norm covers every member.", nameof(members));
            foreach (var p in m.Parameters)
                if (!seen.Add(p)) throw new ArgumentException($"OptimizerGroup: parameter {p.Describe()} belongs to two members.", nameof(members));
        }
        _members = members.ToArray();
        _initialRates = _members.Select(m => m.LearningRate).ToArray();
        _lead = Array.FindIndex(_members, m => m.SchedulesLearningRate);
        _parameters = _members.SelectMany(m => m.Parameters).ToArray();
    }

    /// <summary>The members, in the order given.</summary>
    public IReadOnlyList<Optimizer> Members => _members;

    /// <inheritdoc/>
    public IReadOnlyList<Tensor<float>> Parameters => _parameters;

    /// <inheritdoc/>
    public bool SchedulesLearningRate => _lead >= 0;

    /// <inheritdoc/>
    public float LearningRate
    {
        get => _members[Math.Max(_lead, 0)].LearningRate;
        set
        {
            if (_lead < 0)
                throw new InvalidOperationException($"OptimizerGroup: no member ({Description}) takes a scheduled learning rate.");
            if (!(value >= 0f && float.IsFinite(value)))
                throw new ArgumentOutOfRangeException(nameof(LearningRate), value, $"OptimizerGroup.LearningRate must be a finite number ≥ 0; got {value}.");
            double factor = _initialRates[_lead] == 0f ? 0 : (double)value / _initialRates[_lead];
            for (int k = 0; k < _members.Length; k++)
                if (_members[k].SchedulesLearningRate) _members[k].LearningRate = k == _lead ? value : (float)(_initialRates[k] * factor);
        }
    }

    /// <inheritdoc/>
    public long StepCount { get; private set; }

    /// <inheritdoc/>
    public string Description => "Group(" + string.Join("+", _members.Select(m => m.Description)) + ")";

    /// <summary>Maximum global gradient norm over every member's gradients; null = no clipping.</summary>
    public float? ClipNorm
    {
        get => _clipNorm;
        set
        {
            if (value is { } c && !(c > 0f && float.IsFinite(c)))
                throw new ArgumentOutOfRangeException(nameof(ClipNorm), c, $"OptimizerGroup.ClipNorm must be a positive finite number or null; got {c}.");
            _clipNorm = value;
        }
    }

    /// <inheritdoc/>
    public void Step()
    {
        foreach (var m in _members) m.BeginStep();
        float scale = 1f;
        if (_clipNorm is { } clip)
        {
            double sum = 0;
            foreach (var m in _members) sum += m.SumOfSquaredGradients();
            double norm = Math.Sqrt(sum);
            foreach (var m in _members) m.SetLastGradientNorm(norm);
            if (!double.IsFinite(norm))
                throw new InvalidOperationException($"OptimizerGroup.Step {StepCount}: the global gradient norm is {norm}; a gradient holds NaN or infinity, nothing was updated.");
            if (norm > clip) scale = (float)(clip / norm);
        }
        foreach (var m in _members) m.FinishStep(scale);
        StepCount++;
    }

    /// <inheritdoc/>
    public void ZeroGrad()
    {
        foreach (var m in _members) m.ZeroGrad();
    }

    /// <inheritdoc/>
    public void ApplyDeferredRows()
    {
        foreach (var m in _members) m.ApplyDeferredRows();
    }

    /// <inheritdoc/>
    public void ReloadDeviceParameters()
    {
        foreach (var m in _members) m.ReloadDeviceParameters();
    }

    /// <inheritdoc/>
    public void AnchorStateToWeights()
    {
        foreach (var m in _members) m.AnchorStateToWeights();
    }

    /// <inheritdoc/>
    public IReadOnlyList<(string Name, float[] Data, int[] Shape)> ExportState()
    {
        var list = new List<(string, float[], int[])> { ("step", [StepCount / StepRadix, StepCount % StepRadix], [2]) };
        for (int k = 0; k < _members.Length; k++)
            foreach (var (name, data, shape) in _members[k].ExportState()) list.Add(($"{k}.{name}", data, shape));
        return list;
    }

    /// <inheritdoc/>
    public void ImportState(IReadOnlyList<(string Name, float[] Data, int[] Shape)> state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var parts = new List<(string, float[], int[])>[_members.Length];
        for (int k = 0; k < parts.Length; k++) parts[k] = [];
        float[]? step = null;
        foreach (var (name, data, shape) in state)
        {
            if (name is null || data is null || shape is null) throw new ArgumentException("OptimizerGroup.ImportState: an entry has a null name, data or shape.", nameof(state));
            if (name == "step") { step = data; continue; }
            int dot = name.IndexOf('.');
            if (dot <= 0 || !int.TryParse(name.AsSpan(0, dot), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int k) || k >= _members.Length)
                throw new ArgumentException($"OptimizerGroup.ImportState: unknown entry '{name}' (expected 'step' or '{{member}}.…' with member < {_members.Length}).", nameof(state));
            parts[k].Add((name[(dot + 1)..], data, shape));
        }
        if (step is not { Length: 2 } || !(step[0] >= 0 && step[1] >= 0 && step[1] < StepRadix && step[0] == MathF.Floor(step[0]) && step[1] == MathF.Floor(step[1])))
            throw new ArgumentException("OptimizerGroup.ImportState: entry 'step' is missing or not a valid step count.", nameof(state));
        // Validate every member before any writes: a member's own import validates fully, so check them on copies first.
        for (int k = 0; k < _members.Length; k++) Validate(k, parts[k]);
        for (int k = 0; k < _members.Length; k++) _members[k].ImportState(parts[k]);
        StepCount = (long)step[0] * StepRadix + (long)step[1];
    }

    private void Validate(int k, List<(string Name, float[] Data, int[] Shape)> entries)
    {
        var expected = _members[k].ExportState();
        var names = new HashSet<string>(entries.Select(e => e.Name), StringComparer.Ordinal);
        foreach (var (name, data, shape) in expected)
        {
            var got = entries.FirstOrDefault(e => e.Name == name);
            if (got.Name is null) throw new ArgumentException($"OptimizerGroup.ImportState: entry '{k}.{name}' is missing.");
            if (!got.Shape.AsSpan().SequenceEqual(shape) || got.Data.Length != data.Length)
                throw new ArgumentException($"OptimizerGroup.ImportState: entry '{k}.{name}' has shape [{string.Join(", ", got.Shape)}]; expected [{string.Join(", ", shape)}].");
            names.Remove(name);
        }
        if (names.Count > 0) throw new ArgumentException($"OptimizerGroup.ImportState: unknown entry '{k}.{names.First()}'.");
    }
}
