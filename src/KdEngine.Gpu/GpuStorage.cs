using ILGPU;
using ILGPU.Runtime;
using KdEngine.Backends;
using KdEngine.Tensors;

namespace KdEngine.Gpu;

/// <summary>
/// Float32 tensor storage in an ILGPU accelerator's memory: a pooled device buffer of at least
/// <see cref="Length"/> elements. Only <see cref="GpuBackend"/> touches the memory.
/// </summary>
public sealed class GpuStorage : TensorStorage<float>
{
    private readonly GpuBackend _backend;
    private MemoryBuffer1D<float, Stride1D.Dense>? _buffer;

    internal GpuStorage(GpuBackend backend, MemoryBuffer1D<float, Stride1D.Dense> buffer, int length)
    {
        _backend = backend;
        _buffer = buffer;
        Length = length;
    }

    /// <inheritdoc/>
    public override int Length { get; }
    /// <inheritdoc/>
    public override IBackend<float> Backend => _backend;

    /// <summary>The first <see cref="Length"/> elements of the device buffer.</summary>
    internal ArrayView<float> View
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            ArrayView<float> view = _buffer!.View;
            return view.SubView(0, Length);
        }
    }

    /// <inheritdoc/>
    protected override void Release()
    {
        _backend.Pool.Return(_buffer!);
        _buffer = null;
    }
}

/// <summary>
/// Device buffers pooled by power-of-two capacity (like the CPU <see cref="BufferPool{T}"/>): device allocation
/// is slow and synchronising, and a training step allocates the same sizes every time. All work runs on the
/// accelerator's one default stream, so a buffer returned here may be handed out again at once: later work on
/// it is ordered after the kernels that still read it.
/// </summary>
internal sealed class DevicePool<T> : IDisposable where T : unmanaged
{
    private const int MaxPerBucket = 64;
    private readonly Accelerator _accelerator;
    private readonly Stack<MemoryBuffer1D<T, Stride1D.Dense>>[] _buckets;
    private bool _disposed;

    public DevicePool(Accelerator accelerator)
    {
        _accelerator = accelerator;
        _buckets = new Stack<MemoryBuffer1D<T, Stride1D.Dense>>[32];
        for (int i = 0; i < _buckets.Length; i++) _buckets[i] = new();
    }

    private static int BucketOf(long length) => length <= 16 ? 4 : 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)(length - 1));

    public MemoryBuffer1D<T, Stride1D.Dense> Rent(int length)
    {
        int bucket = BucketOf(Math.Max(length, 1));
        var stack = _buckets[bucket];
        lock (stack)
            if (stack.Count > 0) return stack.Pop();
        return _accelerator.Allocate1D<T>(1L << bucket);
    }

    public void Return(MemoryBuffer1D<T, Stride1D.Dense> buffer)
    {
        var stack = _buckets[BucketOf(buffer.Length)];
        lock (stack)
        {
            if (!_disposed && stack.Count < MaxPerBucket) { stack.Push(buffer); return; }
        }
        buffer.Dispose();
    }

    public void Dispose()
    {
        _disposed = true;
        foreach (var stack in _buckets)
            lock (stack)
                while (stack.Count > 0) stack.Pop().Dispose();
    }
}
