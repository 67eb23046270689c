using System.Runtime.InteropServices;
using KdEngine.Serving;
using KdEngine.Tensors;
using KdEngine.Training;

namespace KdEngine.Sharding;

/// <summary>
/// One tensor of a file written collectively: its name and whole (global) shape, this rank's values, and — for a
/// row-sharded table or a per-row optimizer buffer of one — which rows of the whole those values are.
/// </summary>
/// <param name="Name">The tensor's name in the file.</param>
/// <param name="Shape">The whole tensor's shape.</param>
/// <param name="Local">Replicated: the whole tensor (rank 0's is written). Sharded: this rank's rows [local rows, width].</param>
/// <param name="Shard">Which rows of the whole <paramref name="Local"/> holds (null: replicated).</param>
internal sealed record SavedTensor(string Name, int[] Shape, ReadOnlyMemory<float> Local, RowShard? Shard);

/// <summary>
/// Files of row-sharded models: rank 0 writes one ordinary safetensors file (loadable by one process, by
/// <c>kdengine serve</c>, or by any number of ranks) while the other ranks stream their rows to it chunk by chunk, so
/// no rank ever holds a whole table; reading keeps only the rows g ≡ rank (mod N) of each table, for any N.
/// </summary>
internal static class ShardedFiles
{
    /// <summary>Rows of a table per gathered chunk: about 1 MiB, a multiple of the rank count.</summary>
    private static int ChunkRows(int width, int ranks)
    {
        int rows = Math.Max(1, (1 << 20) / Math.Max(1, width * sizeof(float)));
        return Math.Max(ranks, rows / ranks * ranks);
    }

    /// <summary>The whole tensor's shape: [global rows, width] for a shard, else the tensor's own.</summary>
    public static int[] GlobalShape(Tensor<float> t) => t.RowShard is { } s ? [s.GlobalRows, t.Shape[1]] : t.Shape.ToArray();

    /// <summary>This rank's values of a CPU tensor, without copying; a device tensor is copied to the host.</summary>
    public static ReadOnlyMemory<float> LocalValues(Tensor<float> t) =>
        t.Storage is CpuStorage<float> cpu ? cpu.Array.AsMemory(0, t.Length) : t.ToArray();

    /// <summary>
    /// Collective: every rank calls it with the same names and shapes (its own values); rank 0 writes
    /// <paramref name="path"/> (atomically, with checksums), gathering each sharded tensor's rows from their owners
    /// in chunks of about 1 MiB while it writes.
    /// </summary>
    public static void Write(string path, IProcessGroup group, IReadOnlyList<SavedTensor> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        var sorted = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
        foreach (var t in sorted)
            if (t.Shard is { } s && (s.Size != group.Size || s.Rank != group.Rank))
                throw new InvalidOperationException($"{path}: tensor '{t.Name}' is sharded over {s.Size} ranks (this is rank {s.Rank}) but the group has {group.Size} (rank {group.Rank}).");
        if (group.Rank == 0)
        {
            SafeTensorsFile.WriteStreamed(path, sorted.Select(t => new StreamedTensor(t.Name, t.Shape, sink =>
            {
                if (t.Shard is null) sink(MemoryMarshal.AsBytes(t.Local.Span));
                else Gather(t, group, sink);
            })), metadata);
        }
        else
        {
            // The same gathers, in the same (name) order, as rank 0's writer makes.
            foreach (var t in sorted)
                if (t.Shard is not null) Gather(t, group, null);
        }
    }

    /// <summary>
    /// Streams a sharded tensor's rows to rank 0 in row order: per chunk of global rows [g0, g0 + chunk) (g0 a
    /// multiple of N), rank p sends its local rows g0/N … (those g ≡ p in the chunk), rank 0 interleaves them.
    /// </summary>
    private static void Gather(SavedTensor t, IProcessGroup group, ByteSink? sink)
    {
        int n = group.Size, rank = group.Rank;
        int rows = t.Shape[0], width = t.Shape.Length > 1 ? t.Shape[1] : 1;
        int chunk = ChunkRows(width, n);
        var counts = new int[n];
        var received = group.Rank == 0 ? new float[(long)chunk * width] : [];
        var interleaved = group.Rank == 0 ? new float[(long)chunk * width] : [];
        for (int g0 = 0; g0 < rows; g0 += chunk)
        {
            int inChunk = Math.Min(chunk, rows - g0);
            for (int p = 0; p < n; p++) counts[p] = RowShard.RowsOf(inChunk, p, n) * width * sizeof(float);
            int firstLocal = g0 / n, mine = RowShard.RowsOf(inChunk, rank, n);
            var send = MemoryMarshal.AsBytes(t.Local.Span.Slice(firstLocal * width, mine * width));
            group.GatherToRoot(send, MemoryMarshal.AsBytes(received.AsSpan()), counts, $"gather of '{t.Name}' rows {g0}..{g0 + inChunk - 1} to rank 0");
            if (sink is null) continue;
            int offset = 0;
            for (int p = 0; p < n; p++)
            {
                int count = counts[p] / sizeof(float) / Math.Max(width, 1);
                for (int l = 0; l < count; l++)
                    received.AsSpan(offset + l * width, width).CopyTo(interleaved.AsSpan((l * n + p) * width, width));
                offset += count * width;
            }
            sink(MemoryMarshal.AsBytes(interleaved.AsSpan(0, inChunk * width)));
        }
    }

    /// <summary>
    /// Reads tensor <paramref name="name"/> (whole shape <paramref name="shape"/>) into <paramref name="destination"/>:
    /// all of it, or with <paramref name="shard"/> only the rows that shard owns — any rank count, whatever count wrote
    /// the file. Streams the tensor in chunks.
    /// </summary>
    public static void Read(SafeTensorsHeader header, string name, int[] shape, RowShard? shard, float[] destination)
    {
        int width = shape.Length > 1 ? shape[1] : 1;
        long expected = shard is null ? shape.Aggregate(1L, (a, d) => a * d) : (long)shard.LocalRows * width;
        if (destination.Length < expected) throw new ArgumentException($"{header.Path}: '{name}' needs {expected} values but the destination holds {destination.Length}.");
        SafeTensorsFile.ReadRows(header, name, shape, (first, values) =>
        {
            if (shard is null)
            {
                values.CopyTo(destination.AsSpan((int)(first * width)));
                return;
            }
            int rows = values.Length / Math.Max(width, 1);
            for (int i = 0; i < rows; i++)
            {
                long g = first + i;
                if (g % shard.Size != shard.Rank) continue;
                values.Slice(i * width, width).CopyTo(destination.AsSpan((int)(g / shard.Size) * width, width));
            }
        });
    }

    /// <summary><see cref="Read(SafeTensorsHeader, string, int[], RowShard?, float[])"/> into a tensor (its own shard, if any).</summary>
    public static void Read(SafeTensorsHeader header, string name, Tensor<float> destination)
    {
        var shape = GlobalShape(destination);
        if (destination.Storage is CpuStorage<float> cpu) Read(header, name, shape, destination.RowShard, cpu.Array);
        else
        {
            var host = new float[destination.Length];
            Read(header, name, shape, destination.RowShard, host);
            destination.Backend.Upload(host, destination.Storage);
        }
    }

    /// <summary>
    /// Checks the data digest of a file every rank is about to read: rank 0 hashes it and tells the others, so a
    /// corrupt file fails on every rank with the same message while only one rank pays the extra pass.
    /// </summary>
    public static void VerifyOnRoot(SafeTensorsHeader header, IProcessGroup group)
    {
        string? verdict = null;
        if (group.Rank == 0)
        {
            try { SafeTensorsFile.VerifyData(header); verdict = ""; }
            catch (CheckpointFormatException e) { verdict = e.Problem; }
        }
        verdict = group.BroadcastText(verdict);
        if (verdict.Length > 0) throw new CheckpointFormatException(header.Path, verdict);
    }
}
