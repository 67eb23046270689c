using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Backends;

namespace KdEngine.Tensors;

/// <summary>
/// A row-major, contiguous n-dimensional array of <typeparamref name="T"/> (float32 for real work, double
/// for gradient checks) with optional autograd state. A tensor is a shape plus a storage; the storage
/// lives on a backend (<see cref="CpuBackend{T}"/> today) and ops reach its memory only through that backend.
/// </summary>
/// <remarks>
/// Ownership: a tensor made by an op while a <see cref="Tape{T}"/> is current belongs to that tape and is
/// returned to the pool when the tape is disposed; reading it afterwards throws. A tensor made with a
/// factory method (<see cref="Zeros(int[])"/>, <see cref="FromArray(T[], int[])"/>) belongs to its creator, who
/// disposes it (or lets the GC collect it). A view (<see cref="Ops.Op.Reshape{T}"/>) never owns its storage.
/// </remarks>
public sealed class Tensor<T> : IDisposable where T : unmanaged, IFloatingPointIeee754<T>
{
    private Tensor<T>? _grad;

    internal Tensor(Shape shape, TensorStorage<T> storage, bool ownsStorage, string? name = null)
    {
        if (storage.Length < shape.ElementCount)
            throw new ArgumentException($"Storage of {storage.Length} elements is too small for shape {shape}.");
        Shape = shape;
        Storage = storage;
        OwnsStorage = ownsStorage;
        Name = name;
    }

    /// <summary>The dimensions (row-major).</summary>
    public Shape Shape { get; }
    /// <summary>The memory holding the values (possibly larger than <see cref="Length"/>; possibly shared with a view).</summary>
    public TensorStorage<T> Storage { get; }
    /// <summary>The backend the storage lives on; every kernel on this tensor runs there.</summary>
    public IBackend<T> Backend => Storage.Backend;
    /// <summary>False for a view (e.g. a reshape), whose disposal leaves the storage to its owner.</summary>
    public bool OwnsStorage { get; }
    /// <summary>Number of elements (the shape's element count).</summary>
    public int Length => Shape.ElementCount;
    /// <summary>Number of dimensions.</summary>
    public int Rank => Shape.Rank;

    /// <summary>A name used in error messages and checkpoints (e.g. <c>dnn.0.weight</c>).</summary>
    public string? Name
    {
        get => _name;
        set
        {
            _name = value;
            // A device backend sees storages, not tensors: the label lets its deferred checks name the tensor.
            if (OwnsStorage && value is not null) Storage.Label ??= value;
        }
    }

    private string? _name;

    /// <summary>True when gradients must flow to this tensor (parameters, and op outputs that depend on them).</summary>
    public bool RequiresGrad { get; internal set; }

    /// <summary>The node that produced this tensor on a tape; null for leaves.</summary>
    internal Node<T>? Creator { get; set; }

    /// <summary>True for tensors no recorded op produced (parameters, inputs); gradients accumulate on leaves.</summary>
    public bool IsLeaf => Creator is null;

    /// <summary>
    /// For an embedding table: its gradient is kept as touched rows only (<see cref="SparseGrad"/>), never a
    /// dense table-sized tensor.
    /// </summary>
    public bool HasSparseGradient { get; init; }

    /// <summary>The dense gradient accumulated by <see cref="Tape{T}.Backward"/>; null until a gradient arrives.</summary>
    public Tensor<T>? Grad
    {
        get => _grad;
        internal set => _grad = value;
    }

    /// <summary>The row-sparse gradient of an embedding table (only rows touched since the last reset).</summary>
    public SparseRowGradient<T>? SparseGrad { get; internal set; }

    /// <summary>Makes this leaf tensor a parameter that receives gradients.</summary>
    public Tensor<T> RequireGrad()
    {
        if (!IsLeaf) throw new InvalidOperationException($"Tensor {Describe()} is an op output; only leaves can be made parameters.");
        RequiresGrad = true;
        return this;
    }

    /// <summary>
    /// The dense gradient, created zero-filled when no gradient has arrived yet (for code that writes gradients
    /// outside a tape, e.g. a data-parallel reduction where another process's batch reached this parameter).
    /// </summary>
    public Tensor<T> GradOrZeros()
    {
        if (HasSparseGradient) throw new InvalidOperationException($"Tensor {Describe()} keeps a row-sparse gradient; use SparseGradOrEmpty.");
        return _grad ??= new Tensor<T>(Shape, Backend.Allocate(Length, clear: true), ownsStorage: true, Name is null ? null : Name + ".grad");
    }

    /// <summary>The row-sparse gradient of an embedding table, created empty when no row has been touched yet.</summary>
    public SparseRowGradient<T> SparseGradOrEmpty()
    {
        if (!HasSparseGradient || Rank != 2) throw new InvalidOperationException($"Tensor {Describe()} is not an embedding table with a row-sparse gradient.");
        return SparseGrad ??= new SparseRowGradient<T>(Shape[0], Shape[1]);
    }

    /// <summary>Forgets the accumulated gradient (dense and sparse), keeping the buffers for reuse.</summary>
    public void ZeroGrad()
    {
        if (_grad is not null) _grad.Backend.Fill(_grad.Storage, T.Zero);
        SparseGrad?.Clear();
    }

    /// <summary>A zero-filled tensor of the given dimensions on the current default backend, owned by the caller.</summary>
    public static Tensor<T> Zeros(params int[] dims) => Zeros(new Shape(dims));

    /// <summary>A zero-filled tensor of <paramref name="shape"/> on <paramref name="backend"/> (default: <see cref="DefaultBackend{T}.Current"/>), owned by the caller.</summary>
    public static Tensor<T> Zeros(Shape shape, IBackend<T>? backend = null, string? name = null)
    {
        backend ??= DefaultBackend<T>.Current;
        return new Tensor<T>(shape, backend.Allocate(shape.ElementCount, clear: true), ownsStorage: true, name);
    }

    /// <summary>Copies <paramref name="data"/> into a new tensor of the given dimensions (their product must equal data.Length) on the current default backend.</summary>
    public static Tensor<T> FromArray(T[] data, params int[] dims) => FromArray(data, new Shape(dims));

    /// <summary>Copies <paramref name="data"/> into a new tensor of the given shape on <paramref name="backend"/>.</summary>
    public static Tensor<T> FromArray(ReadOnlySpan<T> data, Shape shape, IBackend<T>? backend = null, string? name = null)
    {
        if (data.Length != shape.ElementCount)
            throw new ArgumentException($"FromArray: {data.Length} values do not fill shape {shape} ({shape.ElementCount} elements).");
        backend ??= DefaultBackend<T>.Current;
        var storage = backend.Allocate(shape.ElementCount, clear: false);
        backend.Upload(data, storage);
        return new Tensor<T>(shape, storage, ownsStorage: true, name);
    }

    /// <summary>A rank-0 tensor holding <paramref name="value"/>.</summary>
    public static Tensor<T> Scalar(T value, IBackend<T>? backend = null) => FromArray([value], Shape.Scalar, backend);

    /// <summary>Copies the values to a new host array.</summary>
    public T[] ToArray()
    {
        var result = new T[Length];
        Backend.Download(Storage, result);
        return result;
    }

    /// <summary>The single value of a one-element tensor.</summary>
    public T Item()
    {
        if (Length != 1) throw new InvalidOperationException($"Item(): tensor {Describe()} has {Length} elements, not 1.");
        Span<T> one = stackalloc T[1];
        Backend.Download(Storage, one);
        return one[0];
    }

    /// <summary>The values as a span; only for tensors whose storage is in CPU memory.</summary>
    public Span<T> AsSpan()
    {
        if (Storage is not CpuStorage<T> cpu)
            throw new InvalidOperationException($"Tensor {Describe()} lives on backend '{Backend.Name}'; copy it with ToArray().");
        return cpu.Span[..Length];
    }

    /// <summary>A new leaf tensor with a copy of the values, owned by the caller and detached from any tape.</summary>
    public Tensor<T> Clone(string? name = null)
    {
        var storage = Backend.Allocate(Length, clear: false);
        Backend.Copy(Storage, 0, storage, 0, Length);
        return new Tensor<T>(Shape, storage, ownsStorage: true, name ?? Name);
    }

    /// <summary>Overwrites the values of this tensor with those of <paramref name="source"/> (same shape).</summary>
    public void CopyFrom(Tensor<T> source)
    {
        if (source.Shape != Shape) throw new ArgumentException($"CopyFrom: shape {source.Shape} does not match {Describe()}.");
        Backend.Copy(source.Storage, 0, Storage, 0, Length);
    }

    /// <summary>The name and shape for messages: <c>'dnn.0.weight' [64, 390]</c>, or the shape alone for an unnamed tensor.</summary>
    public string Describe() => Name is null ? $"{Shape}" : $"'{Name}' {Shape}";

    /// <summary>The element type and <see cref="Describe"/>.</summary>
    public override string ToString() => $"Tensor<{typeof(T).Name}>{Describe()}";

    /// <summary>Releases the storage (when this tensor owns it) and the gradient buffers; reading the tensor afterwards throws.</summary>
    public void Dispose()
    {
        if (OwnsStorage) Storage.Dispose();
        _grad?.Dispose();
        _grad = null;
        SparseGrad?.Dispose();
        SparseGrad = null;
    }
}
