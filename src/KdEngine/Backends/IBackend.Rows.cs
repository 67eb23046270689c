using System.Numerics;
using KdEngine.Tensors;

namespace KdEngine.Backends;

public partial interface IBackend<T>
{
    /// <summary>
    /// Host → backend row upload: table[rows[k]·width + d] = values[k·width + d] for k &lt; rows.Length, d &lt; width.
    /// Lets an optimizer that updates a table on the host write back only the rows a batch touched (a device
    /// backend packs them into one transfer and scatters them with a kernel). Row ids must lie in the table.
    /// </summary>
    void UploadRows(TensorStorage<T> table, int width, ReadOnlySpan<int> rows, ReadOnlySpan<T> values);
}
