using System.Numerics;
using KdEngine.Backends;

namespace KdEngine.Tensors;

/// <summary>Storage in managed CPU memory, rented from <see cref="BufferPool{T}"/> (or wrapping a caller array).</summary>
public sealed class CpuStorage<T> : TensorStorage<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private T[] _array;
    private readonly bool _pooled;

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

    public override int Length { get; }
    public override IBackend<T> Backend => CpuBackend<T>.Instance;

    public Span<T> Span
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return _array.AsSpan(0, Length);
        }
    }

    public T[] Array
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return _array;
        }
    }

    protected override void Release()
    {
        if (_pooled) BufferPool<T>.Return(_array);
        _array = System.Array.Empty<T>();
    }
}
