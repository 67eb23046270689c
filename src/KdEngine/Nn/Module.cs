using KdEngine.Tensors;

namespace KdEngine.Nn;

/// <summary>A named float32 parameter of a module tree (e.g. <c>dnn.0.weight</c>).</summary>
public readonly record struct NamedParameter(string Name, Tensor<float> Tensor);

/// <summary>
/// A building block of a model: owns parameters and child modules, registered by name so that the whole tree
/// can be enumerated (optimizers, checkpoints) with PyTorch-style dotted names. A child module may be shared
/// by several parents (shared embeddings in Rocket Launching, PFD, double-DNN); enumeration yields each
/// parameter once, under the first name it is reached by.
/// </summary>
public abstract class Module
{
    private readonly List<(string Name, Tensor<float> Tensor)> _parameters = new();
    private readonly List<(string Name, Module Module)> _children = new();
    private bool _training = true;

    /// <summary>Training mode enables dropout; evaluation mode (false) makes the forward deterministic.</summary>
    public bool Training
    {
        get => _training;
        set
        {
            _training = value;
            foreach (var (_, child) in _children) child.Training = value;
        }
    }

    /// <summary>
    /// The global training step, which seeds stochastic layers: a dropout mask is a function of (the layer's seed,
    /// this step, the call within the step), never of how many forwards ran before, so a run resumed from a
    /// checkpoint draws the same masks as an uninterrupted one. The trainer sets it before every step; setting it
    /// propagates to the children (like <see cref="Training"/>).
    /// </summary>
    public long RandomStep
    {
        get => _randomStep;
        set
        {
            if (_randomStep != value) OnRandomStepChanged();
            _randomStep = value;
            foreach (var (_, child) in _children) child.RandomStep = value;
        }
    }

    private long _randomStep;

    /// <summary>Called when <see cref="RandomStep"/> changes (a stochastic layer restarts its per-step call count).</summary>
    protected virtual void OnRandomStepChanged() { }

    /// <summary>Registers <paramref name="tensor"/> as a trainable parameter called <paramref name="name"/> (it now requires a gradient) and returns it.</summary>
    protected Tensor<float> AddParameter(string name, Tensor<float> tensor)
    {
        foreach (var (n, _) in _parameters)
            if (n == name) throw new InvalidOperationException($"{GetType().Name}: parameter '{name}' registered twice.");
        tensor.RequireGrad();
        _parameters.Add((name, tensor));
        return tensor;
    }

    /// <summary>
    /// Registers a child under <paramref name="name"/> (its parameters become <c>{name}.{their names}</c>). The empty
    /// name mounts the child at this module's own level: its names are not prefixed (a model part registers the
    /// model's checkpoint names — <c>dnn.0.weight</c>, <c>dnn_out.weight</c> — itself).
    /// </summary>
    protected TModule AddModule<TModule>(string name, TModule module) where TModule : Module
    {
        foreach (var (n, _) in _children)
            if (n == name && name.Length > 0) throw new InvalidOperationException($"{GetType().Name}: module '{name}' registered twice.");
        _children.Add((name, module));
        return module;
    }

    /// <summary>Every parameter of this module tree, each once, with its dotted name.</summary>
    public IReadOnlyList<NamedParameter> Parameters()
    {
        var result = new List<NamedParameter>();
        var seen = new HashSet<Tensor<float>>(ReferenceEqualityComparer.Instance);
        Collect("", result, seen);
        return result;
    }

    private void Collect(string prefix, List<NamedParameter> result, HashSet<Tensor<float>> seen)
    {
        foreach (var (name, t) in _parameters)
            if (seen.Add(t))
            {
                t.Name ??= prefix + name;
                result.Add(new NamedParameter(prefix + name, t));
            }
        foreach (var (name, child) in _children)
            child.Collect(name.Length == 0 ? prefix : prefix + name + ".", result, seen);
    }

    /// <summary>Number of scalar weights in this module tree.</summary>
    public long ParameterCount() => Parameters().Sum(p => (long)p.Tensor.Length);

    /// <summary>Forgets the accumulated gradients of every parameter of the tree (buffers are kept).</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters()) p.Tensor.ZeroGrad();
    }
}
