using System.Numerics;
using KdEngine.Backends;

namespace KdEngine.Tensors;

/// <summary>
/// Factories for embedding tables: [rows, width] leaf tensors whose gradient is kept row-sparse
/// (<see cref="Tensor{T}.HasSparseGradient"/>), so a backward pass touches only the rows a batch used and
/// never allocates a table-sized dense gradient. Call <see cref="Tensor{T}.RequireGrad"/> to train one.
/// </summary>
public static class EmbeddingTable
{
    /// <summary>A table [rows, width] holding a copy of <paramref name="values"/> (row-major).</summary>
    public static Tensor<T> Create<T>(ReadOnlySpan<T> values, int rows, int width, string? name = null, IBackend<T>? backend = null)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var shape = new Shape(rows, width);
        if (values.Length != shape.ElementCount)
            throw new ArgumentException($"EmbeddingTable.Create: {values.Length} values do not fill a table {shape} ({shape.ElementCount} elements){(name is null ? "" : $" for '{name}'")}.");
        backend ??= DefaultBackend<T>.Current;
        var storage = backend.Allocate(shape.ElementCount, clear: false);
        backend.Upload(values, storage);
        return new Tensor<T>(shape, storage, ownsStorage: true, name) { HasSparseGradient = true };
    }

    /// <summary>A zero-initialised table [rows, width].</summary>
    public static Tensor<T> Zeros<T>(int rows, int width, string? name = null, IBackend<T>? backend = null)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var shape = new Shape(rows, width);
        backend ??= DefaultBackend<T>.Current;
        return new Tensor<T>(shape, backend.Allocate(shape.ElementCount, clear: true), ownsStorage: true, name) { HasSparseGradient = true };
    }
}
