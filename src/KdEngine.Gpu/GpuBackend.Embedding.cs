using System.Buffers;
using ILGPU;
using ILGPU.Runtime;
using KdEngine.Autograd;
using KdEngine.Backends;
using KdEngine.Tensors;

namespace KdEngine.Gpu;

public sealed partial class GpuBackend
{
    // Ids come from the host (the batch); each call uploads the ids it reads into a device scratch buffer. Reusing
    // one scratch buffer is safe: the upload is ordered on the stream after the kernels that read the previous ids.

    /// <inheritdoc/>
    public void GatherRows(TensorStorage<float> table, int width, ReadOnlySpan<int> ids, int idStride, int count,
        TensorStorage<float> output, int outputOffset, int outputStride)
    {
        if (count == 0 || width == 0) return;
        var packed = PackIds(ids, idStride, count);
        var idView = UploadInts(ref _idsA, packed.AsSpan(0, count));
        int slot = RegisterCheck("EmbeddingGather/EmbeddingGatherFields (device GatherRows)", table, table.Length / width, packed, count);
        K.Gather(count * width, V(table), table.Length / width, width, idView, V(output), outputOffset, outputStride, _errors.View, slot);
    }

    /// <inheritdoc/>
    public void ScatterAddRows(TensorStorage<float> grad, int gradOffset, int gradStride, int width,
        ReadOnlySpan<int> ids, int idStride, int count, TensorStorage<float> gradTable)
    {
        if (count == 0 || width == 0) return;
        var packed = PackIds(ids, idStride, count);
        try
        {
            var idView = UploadInts(ref _idsA, packed.AsSpan(0, count));
            K.ScatterAddDense(width, V(grad), gradOffset, gradStride, width, idView, count, V(gradTable));
        }
        finally { ArrayPool<int>.Shared.Return(packed); }
    }

    /// <summary>
    /// Row-sparse gradients live on the host (<see cref="SparseRowGradient{T}"/> is the optimizer's input): the
    /// touched gradient rows are packed into one contiguous block on the device, downloaded in one transfer, and
    /// accumulated by the CPU backend's own kernel — so the sparse result is bit-identical to the CPU's.
    /// </summary>
    public void ScatterAddRowsSparse(TensorStorage<float> grad, int gradOffset, int gradStride, int width,
        ReadOnlySpan<int> ids, int idStride, int count, SparseRowGradient<float> gradTable)
    {
        if (count == 0) return;
        using var host = new CpuStorage<float>(Math.Max(count * width, 1), clear: false);
        if (width > 0)
        {
            var packed = EnsureFloatScratch(count * width);
            K.PackRows(count * width, V(grad), gradOffset, gradStride, width, packed);
            packed.CopyToCPU(host.Span[..(count * width)]);
            CheckDeviceErrors();
        }
        CpuBackend<float>.Instance.ScatterAddRowsSparse(host, 0, width, width, ids, idStride, count, gradTable);
    }

    /// <inheritdoc/>
    public void BagSum(TensorStorage<float> table, int width, ReadOnlySpan<int> ids, ReadOnlySpan<int> offsets, bool mean, TensorStorage<float> output)
    {
        int bags = offsets.Length - 1;
        if (bags <= 0 || width == 0) return;
        var packed = PackIds(ids, 1, ids.Length);
        var idView = UploadInts(ref _idsA, packed.AsSpan(0, ids.Length));
        var offView = UploadInts(ref _idsB, offsets);
        int slot = RegisterCheck("EmbeddingBag (device BagSum)", table, table.Length / width, packed, ids.Length);
        K.BagSum(bags * width, V(table), table.Length / width, width, idView, offView, mean ? 1 : 0, V(output), _errors.View, slot);
    }

    /// <inheritdoc/>
    public void BagSumBackward(TensorStorage<float> grad, int width, ReadOnlySpan<int> ids, ReadOnlySpan<int> offsets, bool mean, TensorStorage<float> gradTable)
    {
        int bags = offsets.Length - 1;
        if (bags <= 0 || width == 0 || ids.Length == 0) return;
        var idView = UploadInts(ref _idsA, ids);
        var offView = UploadInts(ref _idsB, offsets);
        K.BagSumBackwardDense(width, V(grad), width, idView, offView, bags, mean ? 1 : 0, V(gradTable));
    }

    /// <summary>Downloads the bag gradients [bags, width] once and lets the CPU kernel spread them over the touched rows.</summary>
    public void BagSumBackwardSparse(TensorStorage<float> grad, int width, ReadOnlySpan<int> ids, ReadOnlySpan<int> offsets, bool mean,
        SparseRowGradient<float> gradTable)
    {
        int bags = offsets.Length - 1;
        if (bags <= 0) return;
        using var host = new CpuStorage<float>(Math.Max(bags * width, 1), clear: false);
        if (width > 0) Download(grad, host.Span[..(bags * width)]);
        CpuBackend<float>.Instance.BagSumBackwardSparse(host, width, ids, offsets, mean, gradTable);
    }

    /// <inheritdoc/>
    public void UploadRows(TensorStorage<float> table, int width, ReadOnlySpan<int> rows, ReadOnlySpan<float> values)
    {
        if (rows.Length == 0 || width == 0) return;
        if (values.Length < rows.Length * width)
            throw new ArgumentException($"UploadRows: {values.Length} values for {rows.Length} rows of width {width}.");
        int tableRows = table.Length / width;
        for (int k = 0; k < rows.Length; k++)
            if ((uint)rows[k] >= (uint)tableRows)
                throw new ArgumentOutOfRangeException(nameof(rows), $"UploadRows: row {rows[k]} at position {k} is outside table {Describe(table)} of {tableRows} rows.");
        var rowView = UploadInts(ref _idsA, rows);
        var valueView = EnsureFloatScratch(rows.Length * width);
        valueView.CopyFromCPU(values[..(rows.Length * width)]);
        K.ScatterRows(rows.Length * width, V(table), width, rowView, valueView);
    }

    /// <summary>
    /// Reads back the bounds-check slots of every gather since the last check (one small transfer; this
    /// synchronises) and throws <see cref="DeviceIdOutOfRangeException"/> for the first launch that saw a bad id.
    /// Called by <see cref="Download"/>, i.e. whenever the host reads a result — the batch boundary.
    /// </summary>
    public void CheckDeviceErrors()
    {
        if (_pending.Count == 0) return;
        int n = _pending.Count;
        var slots = new int[n];
        ((ArrayView<int>)_errors.View).SubView(0, n).CopyToCPU(slots);
        K.FillInt(n, _errors.View, int.MaxValue);
        DeviceIdOutOfRangeException? error = null;
        for (int s = 0; s < n && error is null; s++)
        {
            if (slots[s] == int.MaxValue) continue;
            var p = _pending[s];
            int position = slots[s];
            error = new DeviceIdOutOfRangeException(p.Op, Describe(p.Table, p.Rows, p.Table.Length / Math.Max(p.Rows, 1)), p.Ids[position], position, p.Rows, Name);
        }
        foreach (var p in _pending) ArrayPool<int>.Shared.Return(p.Ids);
        _pending.Clear();
        if (error is not null) throw error;
    }

    private int RegisterCheck(string op, TensorStorage<float> table, int rows, int[] ids, int count)
    {
        if (_pending.Count == MaxPendingChecks) CheckDeviceErrors(); // keeps the slot table bounded (forces a sync)
        _pending.Add(new PendingCheck(op, table, rows, ids, count));
        return _pending.Count - 1;
    }

    private static string Describe(TensorStorage<float> table) => table.Label is { } l ? $"'{l}'" : "(unnamed)";

    private static string Describe(TensorStorage<float> table, int rows, int width) => $"{Describe(table)} [{rows}, {width}]";

    /// <summary>ids[n·stride] for n &lt; count, into a rented array (kept by a pending check until it is read back).</summary>
    private static int[] PackIds(ReadOnlySpan<int> ids, int stride, int count)
    {
        if (count > 0 && (long)(count - 1) * stride >= ids.Length)
            throw new ArgumentException($"GpuBackend: {count} ids at stride {stride} need {(long)(count - 1) * stride + 1} entries; the id span has {ids.Length}.");
        var packed = ArrayPool<int>.Shared.Rent(Math.Max(count, 1));
        for (int n = 0; n < count; n++) packed[n] = ids[n * stride];
        return packed;
    }

    private ArrayView<int> UploadInts(ref MemoryBuffer1D<int, Stride1D.Dense> scratch, ReadOnlySpan<int> values)
    {
        if (scratch.Length < values.Length)
        {
            scratch.Dispose();
            scratch = Accelerator.Allocate1D<int>(Math.Max(values.Length, 2 * scratch.Length));
        }
        ArrayView<int> view = scratch.View;
        view = view.SubView(0, Math.Max(values.Length, 1));
        if (values.Length > 0) view.SubView(0, values.Length).CopyFromCPU(values);
        return view;
    }

    private ArrayView<float> EnsureFloatScratch(int length)
    {
        if (_floatScratch.Length < length)
        {
            _floatScratch.Dispose();
            _floatScratch = Accelerator.Allocate1D<float>(Math.Max(length, 2 * _floatScratch.Length));
        }
        ArrayView<float> view = _floatScratch.View;
        return view.SubView(0, length);
    }
}
