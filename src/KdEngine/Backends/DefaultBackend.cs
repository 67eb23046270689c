using System.Numerics;

namespace KdEngine.Backends;

/// <summary>
/// The backend that tensor factories use when none is passed (<see cref="Tensors.Tensor{T}.FromArray(ReadOnlySpan{T}, Tensors.Shape, IBackend{T}, string)"/>,
/// <see cref="Tensors.Tensor{T}.Zeros(Tensors.Shape, IBackend{T}, string)"/>, <see cref="Tensors.EmbeddingTable"/>,
/// <see cref="Ops.Op.Constant{T}"/>): the CPU backend unless a <see cref="Use"/> scope on this thread says otherwise.
/// Building a model and training it inside <c>using (DefaultBackend&lt;float&gt;.Use(device))</c> puts its
/// parameters, labels and every op output on that device without touching model code.
/// </summary>
/// <remarks>Thread-static like <see cref="Autograd.Tape{T}"/>: a scope applies to the thread that opened it.</remarks>
public static class DefaultBackend<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    [ThreadStatic] private static IBackend<T>? _current;

    /// <summary>The backend in effect on this thread.</summary>
    public static IBackend<T> Current => _current ?? CpuBackend<T>.Instance;

    /// <summary>Makes <paramref name="backend"/> the default on this thread until the returned scope is disposed (scopes nest).</summary>
    public static Scope Use(IBackend<T> backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        var previous = _current;
        _current = backend;
        return new Scope(previous);
    }

    /// <summary>Restores the previous default backend when disposed.</summary>
    public sealed class Scope : IDisposable
    {
        private readonly IBackend<T>? _previous;
        private bool _disposed;

        internal Scope(IBackend<T>? previous) => _previous = previous;

        /// <summary>Restores the backend that was the default before this scope (idempotent).</summary>
        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            _current = _previous;
        }
    }
}
