using System.Numerics;
using KdEngine.Backends;

namespace KdEngine.Tensors;

/// <summary>
/// A contiguous block of <typeparamref name="T"/> that lives on some backend (CPU memory now, an ILGPU
/// device later). Ops never touch the memory directly; they ask the storage's <see cref="Backend"/> to run
/// a primitive kernel over it. Only the CPU backend exposes spans.
/// </summary>
public abstract class TensorStorage<T> : IDisposable where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>Number of elements of the storage.</summary>
    public abstract int Length { get; }
    /// <summary>The backend whose kernels read and write this memory.</summary>
    public abstract IBackend<T> Backend { get; }
    /// <summary>True once <see cref="Dispose"/> has released the memory.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>The name of the tensor that owns this storage, when it has one (for errors raised by device-side checks).</summary>
    public string? Label { get; set; }

    /// <summary>Releases the memory (idempotent).</summary>
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Release();
    }

    /// <summary>Gives the memory back (to the pool on CPU, to the device allocator on a GPU).</summary>
    protected abstract void Release();
}
