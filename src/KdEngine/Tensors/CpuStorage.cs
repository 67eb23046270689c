using System.Numerics;
using KdEngine.Backends;

namespace KdEngine.Tensors;

/// <summary>Storage in managed CPU memory, rented from <see cref="BufferPool{T}"/> (or wrapping a caller array).</summary>
public sealed class CpuStorage<T> : TensorStorage<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private T[] _array;
    private readonly bool _pooled;

    /// <summary>Rents an array of at least <paramref name="length"/> elements from the pool, zeroed when <paramref name="clear"/>.</summary>
    public CpuStorage(int length, bool clear = true)
    {
        _array = BufferPool<T>.Rent(length, clear);
        Length = length;
        _pooled = true;
    }

    /// <summary>Wraps <paramref name="array"/> without copying; the array is never returned to the pool.</summary>
    public CpuStorage(T[] array)
    {
        _array = array;
        Length = array.Length;
        _pooled = false;
    }

    /// <inheritdoc/>
    public override int Length { get; }
    /// <inheritdoc/>
    public override IBackend<T> Backend => CpuBackend<T>.Instance;

    /// <summary>The first <see cref="Length"/> elements. Throws <see cref="ObjectDisposedException"/> after disposal.</summary>
    public Span<T> Span
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return _array.AsSpan(0, Length);
        }
    }

    /// <summary>The underlying array (pooled arrays are longer than <see cref="Length"/>: only the first Length elements are the storage's). Throws <see cref="ObjectDisposedException"/> after disposal.</summary>
    public T[] Array
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return _array;
        }
    }

    /// <inheritdoc/>
    protected override void Release()
    {
        if (_pooled) BufferPool<T>.Return(_array);
        _array = System.Array.Empty<T>();
    }
}
