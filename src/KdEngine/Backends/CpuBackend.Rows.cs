using System.Numerics;
using KdEngine.Tensors;

namespace KdEngine.Backends;

public sealed partial class CpuBackend<T>
{
    /// <inheritdoc/>
    public void UploadRows(TensorStorage<T> table, int width, ReadOnlySpan<int> rows, ReadOnlySpan<T> values)
    {
        var t = S(table);
        if (values.Length < rows.Length * width)
            throw new ArgumentException($"UploadRows: {values.Length} values for {rows.Length} rows of width {width}.");
        for (int k = 0; k < rows.Length; k++)
        {
            if ((uint)rows[k] >= (uint)(t.Length / Math.Max(width, 1)))
                throw new ArgumentOutOfRangeException(nameof(rows), $"UploadRows: row {rows[k]} at position {k} is outside a table of {t.Length / Math.Max(width, 1)} rows.");
            values.Slice(k * width, width).CopyTo(t.Slice(rows[k] * width, width));
        }
    }
}
