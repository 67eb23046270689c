using ILGPU;

namespace KdEngine.Gpu.Kernels;

/// <summary>
/// Embedding kernels. Ids arrive in a device int buffer; the gathers check every id against the table on the
/// device: an id outside [0, rows) writes zeros instead of reading past the table and records the smallest bad
/// position in <c>errors[slot]</c> (an atomic minimum, so the report is deterministic), which the backend reads
/// back at the next host synchronisation and raises as <see cref="DeviceIdOutOfRangeException"/>.
/// </summary>
internal static class EmbeddingKernels
{
    /// <summary>Thread per (n, d): output[outOff + n·outStride + d] = table[ids[n]·width + d].</summary>
    public static void Gather(Index1D t, ArrayView<float> table, int rows, int width, ArrayView<int> ids,
        ArrayView<float> output, int outputOffset, int outputStride, ArrayView<int> errors, int slot)
    {
        int n = t / width, d = t % width;
        int id = ids[n];
        int o = outputOffset + n * outputStride + d;
        if ((uint)id >= (uint)rows)
        {
            Atomic.Min(ref errors[slot], n);
            output[o] = 0f;
        }
        else output[o] = table[id * width + d];
    }

    /// <summary>Thread per (n, d): dst[n·width + d] = src[offset + n·stride + d] (packs strided rows for one download).</summary>
    public static void PackRows(Index1D t, ArrayView<float> src, int offset, int stride, int width, ArrayView<float> dst)
    {
        int n = t / width, d = t % width;
        dst[t] = src[offset + n * stride + d];
    }

    /// <summary>
    /// Dense scatter-add, thread per column d, rows visited in order (deterministic, no float atomics; parallel
    /// only over width — the dense path serves small non-table parameters, tables take the sparse path).
    /// </summary>
    public static void ScatterAddDense(Index1D d, ArrayView<float> grad, int gradOffset, int gradStride, int width,
        ArrayView<int> ids, int count, ArrayView<float> gradTable)
    {
        for (int n = 0; n < count; n++) gradTable[ids[n] * width + d] += grad[gradOffset + n * gradStride + d];
    }

    /// <summary>Thread per (bag b, d): output[b, d] = s_b·Σ_k table[ids[k], d], with the same device id check as <see cref="Gather"/>.</summary>
    public static void BagSum(Index1D t, ArrayView<float> table, int rows, int width, ArrayView<int> ids, ArrayView<int> offsets,
        int mean, ArrayView<float> output, ArrayView<int> errors, int slot)
    {
        int b = t / width, d = t % width;
        int start = offsets[b], end = offsets[b + 1];
        float acc = 0f;
        float s = mean != 0 && end > start ? 1f / (end - start) : 1f;
        for (int k = start; k < end; k++)
        {
            int id = ids[k];
            if ((uint)id >= (uint)rows) Atomic.Min(ref errors[slot], k);
            else acc += s * table[id * width + d];
        }
        output[t] = acc;
    }

    /// <summary>Dense BagSum backward, thread per column d, bags and their ids in order (deterministic).</summary>
    public static void BagSumBackwardDense(Index1D d, ArrayView<float> grad, int width, ArrayView<int> ids, ArrayView<int> offsets,
        int bags, int mean, ArrayView<float> gradTable)
    {
        for (int b = 0; b < bags; b++)
        {
            int start = offsets[b], end = offsets[b + 1];
            if (end == start) continue;
            float s = mean != 0 ? 1f / (end - start) : 1f;
            for (int k = start; k < end; k++) gradTable[ids[k] * width + d] += s * grad[b * width + d];
        }
    }

    /// <summary>Thread per (k, d): table[rows[k]·width + d] = values[k·width + d] (rows are unique).</summary>
    public static void ScatterRows(Index1D t, ArrayView<float> table, int width, ArrayView<int> rows, ArrayView<float> values)
    {
        int k = t / width, d = t % width;
        table[rows[k] * width + d] = values[t];
    }
}
