using System.Numerics;
using KdEngine.Backends;
using KdEngine.Tensors;

namespace KdEngine.Autograd;

/// <summary>
/// The reverse-mode tape and memory scope of one forward/backward pass. While a tape is current on a thread
/// (<c>using var tape = new Tape&lt;float&gt;();</c>), every op output is allocated from the pool and owned
/// by the tape, and — when recording and some input requires a gradient — a node is recorded.
/// <see cref="Backward"/> walks the nodes in reverse recording order (a valid reverse topological order,
/// since an op can only consume tensors that already exist). <see cref="Reset"/> or <see cref="Dispose"/>
/// return every owned tensor to the pool.
/// </summary>
/// <remarks>
/// A no-grad tape (<see cref="NoGrad"/>) records nothing: inference builds no graph but still returns its
/// temporaries to the pool. Tapes nest: the innermost one is current; disposing it restores the outer one.
/// A tape belongs to the thread that created it.
/// </remarks>
public sealed class Tape<T> : IDisposable where T : unmanaged, IFloatingPointIeee754<T>
{
    [ThreadStatic] private static Tape<T>? _current;

    private readonly Tape<T>? _previous;
    private readonly List<Node<T>> _nodes = new();
    private readonly List<Tensor<T>> _owned = new();
    private bool _disposed;
    private bool _backwardDone;

    /// <summary>A recording tape, current on this thread until disposed (the previous current tape is restored then).</summary>
    public Tape() : this(record: true) { }

    private Tape(bool record)
    {
        IsRecording = record;
        _previous = _current;
        _current = this;
    }

    /// <summary>A scope that records no graph (inference); its temporaries still return to the pool.</summary>
    public static Tape<T> NoGrad() => new(record: false);

    /// <summary>The innermost tape of this thread, or null.</summary>
    public static Tape<T>? Current => _current;

    /// <summary>False for a <see cref="NoGrad"/> tape: ops allocate from it but record no nodes.</summary>
    public bool IsRecording { get; }

    /// <summary>Number of recorded nodes (for tests and diagnostics).</summary>
    public int NodeCount => _nodes.Count;

    /// <summary>
    /// Allocates an op output. Inside a tape it is owned by the current tape; outside any tape it is owned
    /// by the caller.
    /// </summary>
    internal static Tensor<T> NewTensor(Shape shape, IBackend<T> backend, bool clear)
    {
        var t = new Tensor<T>(shape, backend.Allocate(shape.ElementCount, clear), ownsStorage: true);
        _current?._owned.Add(t);
        return t;
    }

    /// <summary>Registers a view (shares another tensor's storage) so the tape frees its gradient buffer.</summary>
    internal static Tensor<T> NewView(Shape shape, Tensor<T> source)
    {
        var t = new Tensor<T>(shape, source.Storage, ownsStorage: false);
        _current?._owned.Add(t);
        return t;
    }

    /// <summary>True when an op over these inputs must record a node.</summary>
    internal static bool ShouldRecord(Tensor<T> a) => _current is { IsRecording: true } && a.RequiresGrad;
    internal static bool ShouldRecord(Tensor<T> a, Tensor<T> b) => _current is { IsRecording: true } && (a.RequiresGrad || b.RequiresGrad);
    internal static bool ShouldRecord(Tensor<T> a, Tensor<T> b, Tensor<T>? c) =>
        _current is { IsRecording: true } && (a.RequiresGrad || b.RequiresGrad || (c?.RequiresGrad ?? false));
    internal static bool ShouldRecord(IReadOnlyList<Tensor<T>> inputs)
    {
        if (_current is not { IsRecording: true }) return false;
        foreach (var t in inputs) if (t.RequiresGrad) return true;
        return false;
    }

    /// <summary>Records <paramref name="node"/> as the creator of <paramref name="output"/> on the current tape.</summary>
    internal static void Record(Node<T> node, Tensor<T> output)
    {
        var tape = _current ?? throw new InvalidOperationException("Record called with no current tape.");
        node.Output = output;
        output.Creator = node;
        output.RequiresGrad = true;
        tape._nodes.Add(node);
    }

    /// <summary>
    /// The gradient buffer of <paramref name="tensor"/>, created zeroed on first use. Leaves (parameters)
    /// keep theirs across steps until <see cref="Tensor{T}.ZeroGrad"/>; intermediate ones die with the tape.
    /// </summary>
    public Tensor<T> GradOf(Tensor<T> tensor)
    {
        if (tensor.HasSparseGradient)
            throw new InvalidOperationException(
                $"Tensor {tensor.Describe()} keeps a row-sparse gradient; only EmbeddingGather may send it gradient.");
        if (tensor.Grad is null)
        {
            var g = new Tensor<T>(tensor.Shape, tensor.Backend.Allocate(tensor.Length, clear: true), ownsStorage: true,
                tensor.Name is null ? null : tensor.Name + ".grad");
            tensor.Grad = g;
        }
        return tensor.Grad;
    }

    /// <summary>
    /// Back-propagates from the scalar <paramref name="loss"/>: seeds d(loss)/d(loss) = 1 and runs the
    /// recorded nodes in reverse, skipping every node no gradient reached. Gradients accumulate (+=) into
    /// leaves, so call <see cref="Tensor{T}.ZeroGrad"/> (or an optimizer's step) between passes.
    /// </summary>
    public void Backward(Tensor<T> loss)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!IsRecording) throw new InvalidOperationException("Backward on a no-grad tape: nothing was recorded.");
        if (loss.Length != 1) throw new ArgumentException($"Backward needs a scalar loss; got shape {loss.Shape}.");
        if (!loss.RequiresGrad) throw new InvalidOperationException("Backward: the loss does not depend on any tensor that requires a gradient.");
        if (_backwardDone) throw new InvalidOperationException("Backward was already run on this tape; Reset it and run a new forward pass.");
        _backwardDone = true;
        var seed = GradOf(loss);
        seed.Backend.Fill(seed.Storage, T.One);
        for (int i = _nodes.Count - 1; i >= 0; i--)
        {
            var node = _nodes[i];
            var g = node.Output.Grad;
            if (g is null) continue; // no gradient reached this node: its whole branch is skipped
            node.Backward(g, this);
        }
    }

    /// <summary>Returns every tensor this tape owns to the pool and forgets the graph, ready for the next step.</summary>
    public void Reset()
    {
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
        _nodes.Clear();
        _backwardDone = false;
    }

    /// <summary>Returns every tensor the tape owns to the pool and restores the previously current tape of this thread.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        Reset();
        _disposed = true;
        if (_current == this) _current = _previous;
    }
}
