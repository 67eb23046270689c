using System.Numerics;
using KdEngine.Backends;
using KdEngine.Tensors;

namespace KdEngine.Autograd;

/// <summary>
/// The gradient of an embedding table [rows, width] kept as only the rows touched since the last
/// <see cref="Clear"/>: a sorted list of unique row ids and one gradient row per id (duplicates summed).
/// Optimizers update exactly these rows; no table-sized dense gradient ever exists.
/// </summary>
public sealed class SparseRowGradient<T> : IDisposable where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Dictionary<int, int> _slotOfRow = new();
    private readonly List<int> _rows = new();
    private T[] _values;

    /// <summary>An empty gradient of a table [<paramref name="tableRows"/>, <paramref name="width"/>] (a small buffer is rented; it grows with the touched rows).</summary>
    public SparseRowGradient(int tableRows, int width)
    {
        TableRows = tableRows;
        Width = width;
        _values = BufferPool<T>.Rent(Math.Max(width, 1) * 64, clear: true);
    }

    /// <summary>Rows of the table this gradient belongs to (touched row ids lie in [0, TableRows)).</summary>
    public int TableRows { get; }
    /// <summary>Elements per row (the table's embedding width).</summary>
    public int Width { get; }

    /// <summary>Number of distinct touched rows.</summary>
    public int Count => _rows.Count;

    /// <summary>The touched row ids in first-touch order (see <see cref="SortedRows"/> for a canonical order).</summary>
    public IReadOnlyList<int> Rows => _rows;

    /// <summary>The gradient of the i-th touched row (<see cref="Rows"/>[i]).</summary>
    public Span<T> Row(int i) => _values.AsSpan(i * Width, Width);

    /// <summary>Adds <paramref name="gradient"/> to the gradient of table row <paramref name="row"/>.</summary>
    public void Add(int row, ReadOnlySpan<T> gradient)
    {
        var dst = RowAccumulator(row);
        System.Numerics.Tensors.TensorPrimitives.Add<T>(dst, gradient, dst);
    }

    /// <summary>
    /// The accumulator of table row <paramref name="row"/>, zeroed on its first touch, for kernels that add
    /// into it directly (scaled or fused updates). The span is valid only until the next new row is touched,
    /// which may grow the value buffer.
    /// </summary>
    public Span<T> RowAccumulator(int row)
    {
        if ((uint)row >= (uint)TableRows)
            throw new ArgumentOutOfRangeException(nameof(row), $"Sparse gradient row {row} is outside the table's {TableRows} rows.");
        if (!_slotOfRow.TryGetValue(row, out int slot))
        {
            slot = _rows.Count;
            // Grow before registering the row: EnsureCapacity copies the rows registered so far.
            EnsureCapacity((slot + 1) * Width);
            _slotOfRow.Add(row, slot);
            _rows.Add(row);
            _values.AsSpan(slot * Width, Width).Clear();
        }
        return _values.AsSpan(slot * Width, Width);
    }

    /// <summary>Touched rows sorted ascending, with their slot index: a deterministic visiting order.</summary>
    public (int Row, int Slot)[] SortedRows()
    {
        var r = new (int, int)[_rows.Count];
        for (int i = 0; i < r.Length; i++) r[i] = (_rows[i], i);
        Array.Sort(r, (x, y) => x.Item1.CompareTo(y.Item1));
        return r;
    }

    /// <summary>Writes the gradient as a dense [TableRows, Width] array (for tests and gradient checks only).</summary>
    public T[] ToDense()
    {
        var dense = new T[TableRows * Width];
        for (int i = 0; i < _rows.Count; i++) Row(i).CopyTo(dense.AsSpan(_rows[i] * Width, Width));
        return dense;
    }

    /// <summary>Forgets every touched row, keeping the buffer for the next step (no allocation in steady state).</summary>
    public void Clear()
    {
        _slotOfRow.Clear();
        _rows.Clear();
    }

    private void EnsureCapacity(int length)
    {
        if (length <= _values.Length) return;
        var bigger = BufferPool<T>.Rent(Math.Max(length, _values.Length * 2), clear: false);
        _values.AsSpan(0, _rows.Count * Width).CopyTo(bigger);
        BufferPool<T>.Return(_values);
        _values = bigger;
    }

    /// <summary>Returns the row buffer to the pool; the gradient must not be used afterwards.</summary>
    public void Dispose()
    {
        BufferPool<T>.Return(_values);
        _values = Array.Empty<T>();
        Clear();
    }
}
