namespace KdEngine.Gpu;

/// <summary>
/// An embedding id outside its table, caught by the device-side check in a gather kernel (the kernel wrote
/// zeros instead of reading past the table) and raised at the next host synchronisation — the batch boundary.
/// Names the op, the table, the id and its position in the id list of that launch.
/// </summary>
public sealed class DeviceIdOutOfRangeException(string op, string table, int id, int position, int rows, string device)
    : ArgumentOutOfRangeException("ids",
        $"{op}: id {id} at position {position} is out of range for table {table} (valid ids are 0..{rows - 1}); " +
        $"detected by the device-side bounds check on '{device}' and reported at the batch boundary (the gathered rows were zero-filled).")
{
    /// <summary>The op whose gather read the id (e.g. <c>EmbeddingGather</c>).</summary>
    public string Op { get; } = op;
    /// <summary>The table's name (its tensor's name).</summary>
    public string Table { get; } = table;
    /// <summary>The offending id.</summary>
    public int Id { get; } = id;
    /// <summary>Its position in the launch's id list.</summary>
    public int Position { get; } = position;
}
