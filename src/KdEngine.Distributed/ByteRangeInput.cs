using System.Runtime.InteropServices;
using KdEngine.Data;
using KdEngine.Pipelines;
using KdEngine.Training;

namespace KdEngine.Distributed;

/// <summary>
/// Byte-range input splits: each rank of a data-parallel run parses only its byte range of the data file, the
/// preprocessing is fitted from counts every rank makes over its own range (merged on rank 0), and the encoded rows are
/// then exchanged once so every rank ends with exactly the shard <see cref="CtrPipeline.PrepareShard"/> gives — the
/// same rows, the same preprocessing, the same order — having parsed 1/N of the file instead of all of it.
/// </summary>
/// <remarks>
/// <para>The rule: with L bytes and N ranks, range r starts at the first line beginning at or after ⌊r·L/N⌋ (range 0
/// at byte 0) and ends where range r + 1 starts; the line straddling a cut belongs to the range it starts in (the
/// previous one). A header line, when the format has one, is read by every rank from the file's start and belongs to
/// no range's rows. Lines end in LF, CRLF or CR, as the readers' own line reader takes them.</para>
/// <para>Per rank (all passes over its own range only): count line ends (so errors name the file's own line numbers),
/// count rows (so every row gets its global position and the train/validation/test split is the one-process split),
/// count the vocabularies over its train rows, encode its rows; then one all-to-all moves each encoded row to the
/// rank that owns its position (p mod N) in its part. Memory: the split's row indices (4 bytes per row of the file, as
/// <see cref="CtrPipeline.PrepareShard"/> needs too), the rank's own encoded rows twice during the exchange, and on
/// rank 0 every rank's vocabulary counts (what one process fitting alone holds).</para>
/// </remarks>
public static class ByteRangeInput
{
    /// <summary>The N + 1 cut points of <paramref name="path"/> into <paramref name="ranges"/> line-aligned ranges (first 0, last the file's length).</summary>
    public static long[] Boundaries(string path, int ranges)
    {
        if (ranges < 1) throw new ArgumentOutOfRangeException(nameof(ranges), ranges, "at least one range.");
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 12);
        long length = file.Length;
        var cuts = new long[ranges + 1];
        cuts[ranges] = length;
        for (int r = 1; r < ranges; r++)
            cuts[r] = Math.Max(cuts[r - 1], LineStartAtOrAfter(file, (long)(r * (double)length / ranges), length));
        return cuts;
    }

    /// <summary>The first byte at or after <paramref name="at"/> that begins a line (the file's length when none does).</summary>
    public static long LineStartAtOrAfter(FileStream file, long at, long length)
    {
        if (at <= 0) return 0;
        if (at >= length) return length;
        Span<byte> pair = stackalloc byte[2];
        file.Position = at - 1;
        int got = file.Read(pair);
        // A line begins at `at` when the byte before ends one: LF, or a CR not followed by LF.
        if (pair[0] == '\n' || (pair[0] == '\r' && (got < 2 || pair[1] != '\n'))) return at;
        var buffer = new byte[1 << 16];
        long position = at;
        file.Position = at;
        while (true)
        {
            int n = file.Read(buffer);
            if (n == 0) return length;
            int i = buffer.AsSpan(0, n).IndexOfAny((byte)'\n', (byte)'\r');
            if (i < 0) { position += n; continue; }
            long end = position + i;
            if (buffer[i] == '\n') return end + 1;
            // CR: a CRLF ends after its LF (which may open the next buffer).
            byte next;
            if (i + 1 < n) next = buffer[i + 1];
            else
            {
                file.Position = end + 1;
                next = file.ReadByte() is int b and >= 0 ? (byte)b : (byte)0;
            }
            return next == '\n' ? end + 2 : end + 1;
        }
    }

    /// <summary>Line ends in bytes [<paramref name="start"/>, <paramref name="end"/>): LF, CRLF (once) and lone CR — the lines that begin in the range, but a last line without one.</summary>
    public static long CountLineEnds(string path, long start, long end)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        file.Position = start;
        var buffer = new byte[1 << 16];
        long left = end - start, count = 0;
        bool carriage = false; // the previous byte was a CR (its LF, if any, is this byte)
        while (left > 0)
        {
            int n = file.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            if (n == 0) break;
            var span = buffer.AsSpan(0, n);
            if (carriage && span[0] != '\n') count++; // that CR was alone
            carriage = false;
            count += span.Count((byte)'\n');
            for (int i = span.IndexOf((byte)'\r'); i >= 0; i = NextCr(span, i + 1))
            {
                if (i + 1 < n) { if (span[i + 1] != '\n') count++; }
                else carriage = true;
            }
            left -= n;
        }
        if (carriage) count++; // a CR at the very end of the range
        return count;

        static int NextCr(ReadOnlySpan<byte> s, int from) => from >= s.Length ? -1 : s[from..].IndexOf((byte)'\r') is int j and >= 0 ? from + j : -1;
    }

    /// <summary>
    /// This rank's shard of <paramref name="source"/>, equal to <see cref="CtrPipeline.PrepareShard"/>'s (see the class
    /// remarks), read by byte ranges. <paramref name="fitted"/>: a preprocessor to encode with (a teacher's) instead of
    /// fitting one.
    /// </summary>
    public static PreparedData PrepareShard(DataSource source, IProcessGroup group, SplitOptions? split = null,
        PreprocessorOptions? preprocessing = null, Preprocessor? fitted = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(group);
        split ??= new SplitOptions();
        if (fitted is not null) source = source with { Format = source.ResolvedFormat, Schema = fitted.Schema };
        var reader = source.Open();
        int n = group.Size, rank = group.Rank;
        var cuts = Boundaries(source.Path, n);
        long start = cuts[rank], end = cuts[rank + 1];

        // Global line numbers and row positions: what every earlier range holds.
        var lineEnds = Gather(group, CountLineEnds(source.Path, start, end));
        long linesBefore = lineEnds.Take(rank).Sum();
        var rowCounts = Gather(group, Count(reader.ReadRange(start, end, linesBefore)));
        long total = rowCounts.Sum(), firstRow = rowCounts.Take(rank).Sum();
        if (total == 0) throw new DataFormatException("the file has no data rows", source.FileName);
        if (total > int.MaxValue) throw new DataFormatException($"{total} rows are more than one dataset holds ({int.MaxValue}).", source.FileName);
        int count = (int)total, local = (int)rowCounts[rank];
        var parts = DataSplit.Indices(count, split.Ratios, split.Mode, split.Seed);
        if (parts.Length != 3) throw new ArgumentException($"split: expected three parts (train, validation, test), got {parts.Length}.");
        for (int k = 0; k < 3; k++)
            if (parts[k].Length < n)
                throw new ArgumentException($"{source.FileName}: the {PartName(k)} part of a {string.Join(":", split.Ratios)} split of {count} rows has {parts[k].Length} rows, fewer than the {n} ranks; use more rows.");
        // Part and position of each of this range's rows.
        var partOf = new byte[local];
        var positionOf = new int[local];
        for (int k = 0; k < 3; k++)
            for (int j = 0; j < parts[k].Length; j++)
            {
                long i = parts[k][j] - firstRow;
                if (i >= 0 && i < local) { partOf[i] = (byte)k; positionOf[i] = j; }
            }

        Preprocessor preprocessor = fitted ?? FitInParallel(source, reader, group, start, end, linesBefore, partOf, preprocessing);
        var encoded = preprocessor.EncodeAll(reader.ReadRange(start, end, linesBefore));
        if (encoded.Count != local) throw new InvalidOperationException($"{source.FileName}: bytes {start}..{end} gave {local} rows, then {encoded.Count} (was the file changed while being read?).");
        var all = Redistribute(encoded, group, firstRow, partOf, positionOf, out var fileRows);

        // The shard as PrepareShard builds it: this rank's positions of each part, and all its rows in file order.
        var mine = parts.Select(p => Shard.Of(p, rank, n)).ToArray();
        var localOf = new Dictionary<int, int>(fileRows.Length);
        for (int i = 0; i < fileRows.Length; i++) localOf[fileRows[i]] = i;
        EncodedDataset Part(int k) => all.Select(mine[k].Select(row => localOf[row]).ToArray());
        var fields = CtrPipeline.InputFields(preprocessor.FeatureSpace);
        return new PreparedData(source with { Format = source.ResolvedFormat, Schema = reader.Schema }, preprocessor,
            Part(0), Part(1), Part(2), fields, mine, all);
    }

    private static string PartName(int k) => k switch { 0 => "train", 1 => "validation", _ => "test" };

    private static long Count(IEnumerable<RawRecord> rows)
    {
        long n = 0;
        foreach (var _ in rows) n++;
        return n;
    }

    /// <summary>Every rank's <paramref name="value"/>, in rank order (exact below 2⁵³).</summary>
    private static long[] Gather(IProcessGroup group, long value)
    {
        var all = new double[group.Size];
        all[group.Rank] = value;
        group.AllReduceSum(all);
        return all.Select(v => (long)v).ToArray();
    }

    /// <summary>Each rank counts the vocabularies of its train rows; rank 0 merges the counts, fits, and broadcasts the preprocessing.</summary>
    private static Preprocessor FitInParallel(DataSource source, RecordReader reader, IProcessGroup group, long start, long end, long linesBefore,
        byte[] partOf, PreprocessorOptions? options)
    {
        IEnumerable<RawRecord> Train()
        {
            int i = 0;
            foreach (var record in reader.ReadRange(start, end, linesBefore))
                if (partOf[i++] == 0) yield return record;
        }
        var counts = new PreprocessorCounts(reader.Schema, options);
        if (counts.CountsAnything) foreach (var record in Train()) counts.Add(record);
        byte[] bytes;
        using (var buffer = new MemoryStream())
        {
            counts.WriteTo(buffer);
            bytes = buffer.ToArray();
        }
        var sizes = Gather(group, bytes.Length);
        if (sizes.Sum() > int.MaxValue)
            throw new InvalidOperationException($"{source.FileName}: the ranks' vocabulary counts take {sizes.Sum()} bytes, more than one gather carries (2 GiB).");
        var received = new byte[group.Rank == 0 ? sizes.Sum() : 0];
        group.GatherToRoot(bytes, received, sizes.Select(s => (int)s).ToArray(), "gather (vocabulary counts)");
        string? json = null;
        if (group.Rank == 0)
        {
            PreprocessorCounts? merged = null;
            int at = 0;
            for (int r = 0; r < group.Size; r++)
            {
                PreprocessorCounts part;
                try { part = PreprocessorCounts.ReadFrom(new MemoryStream(received, at, (int)sizes[r], writable: false), reader.Schema, options); }
                catch (InvalidDataException e) { throw new DataFormatException($"vocabulary counts of rank {r} are corrupt: {e.Message}", source.FileName); }
                at += (int)sizes[r];
                if (merged is null) merged = part;
                else merged.Merge(part);
            }
            json = Preprocessor.Fit(merged!).ToJson();
        }
        return Preprocessor.FromJson(group.BroadcastText(json), "the preprocessing fitted from every rank's counts");
    }

    /// <summary>
    /// Sends each encoded row of this range to the rank owning its position in its part (position mod N) and returns
    /// the rows this rank owns, in file order, with their file row numbers.
    /// </summary>
    private static EncodedDataset Redistribute(EncodedDataset encoded, IProcessGroup group, long firstRow, byte[] partOf, int[] positionOf, out int[] fileRows)
    {
        int n = group.Size, f = encoded.FieldCount, multi = encoded.Multi.Count;
        bool dense = encoded.DenseValues is not null, users = encoded.UserIds is not null;
        // One row: [file row][label][ids × F][dense × F]?[user id]?[per multi field: count, ids…] — 4-byte words.
        int RowWords(int i)
        {
            int words = 2 + f + (dense ? f : 0) + (users ? 1 : 0) + multi;
            foreach (var column in encoded.Multi) words += column.Offsets[i + 1] - column.Offsets[i];
            return words;
        }
        var sendWords = new long[n];
        for (int i = 0; i < encoded.Count; i++) sendWords[positionOf[i] % n] += RowWords(i);
        var sendCounts = new int[n];
        for (int p = 0; p < n; p++) sendCounts[p] = checked((int)(sendWords[p] * 4));
        var receiveCounts = new int[n];
        group.AllToAll(sendCounts, receiveCounts);
        var offsets = new int[n];
        for (int p = 1; p < n; p++) offsets[p] = offsets[p - 1] + sendCounts[p - 1];
        var sendBytes = new byte[checked(sendCounts.Sum())];
        var send = MemoryMarshal.Cast<byte, int>(sendBytes.AsSpan());
        var at = offsets.Select(o => o / 4).ToArray();
        for (int i = 0; i < encoded.Count; i++)
        {
            ref int w = ref at[positionOf[i] % n];
            send[w++] = checked((int)(firstRow + i));
            send[w++] = BitConverter.SingleToInt32Bits(encoded.Labels[i]);
            encoded.RowIds(i).CopyTo(send.Slice(w, f));
            w += f;
            if (dense) { MemoryMarshal.Cast<float, int>(encoded.DenseValues.AsSpan(i * f, f)).CopyTo(send.Slice(w, f)); w += f; }
            if (users) send[w++] = encoded.UserIds![i];
            foreach (var column in encoded.Multi)
            {
                var ids = column.Row(i);
                send[w++] = ids.Length;
                ids.CopyTo(send.Slice(w, ids.Length));
                w += ids.Length;
            }
        }
        var receiveBytes = new byte[checked(receiveCounts.Sum())];
        group.WaitExchange(group.StartAllToAllV(sendBytes, sendCounts, receiveBytes, receiveCounts, "alltoallv (encoded rows)"));
        var words = MemoryMarshal.Cast<byte, int>(receiveBytes.AsSpan());

        // Parse the received rows, then put them in file order.
        var rows = new List<(int FileRow, int Offset)>();
        for (int o = 0; o < words.Length;)
        {
            rows.Add((words[o], o));
            o += 2 + f + (dense ? f : 0) + (users ? 1 : 0);
            for (int k = 0; k < multi; k++) o += 1 + words[o];
        }
        rows.Sort((a, b) => a.FileRow.CompareTo(b.FileRow));
        int count = rows.Count;
        fileRows = rows.Select(r => r.FileRow).ToArray();
        var labels = new float[count];
        var allIds = new int[(long)count * f];
        var denseValues = dense ? new float[(long)count * f] : null;
        var userIds = users ? new int[count] : null;
        var multiOffsets = Enumerable.Range(0, multi).Select(_ => new int[count + 1]).ToArray();
        var multiIds = Enumerable.Range(0, multi).Select(_ => new List<int>()).ToArray();
        for (int i = 0; i < count; i++)
        {
            int o = rows[i].Offset + 1;
            labels[i] = BitConverter.Int32BitsToSingle(words[o++]);
            words.Slice(o, f).CopyTo(allIds.AsSpan(i * f, f));
            o += f;
            if (dense) { MemoryMarshal.Cast<int, float>(words.Slice(o, f)).CopyTo(denseValues.AsSpan(i * f, f)); o += f; }
            if (users) userIds![i] = words[o++];
            for (int k = 0; k < multi; k++)
            {
                int length = words[o++];
                for (int j = 0; j < length; j++) multiIds[k].Add(words[o + j]);
                o += length;
                multiOffsets[k][i + 1] = multiIds[k].Count;
            }
        }
        var columns = Enumerable.Range(0, multi).Select(k => new MultiValuedColumn(multiOffsets[k], multiIds[k].ToArray())).ToArray();
        return new EncodedDataset(encoded.FeatureSpace, count, allIds, labels, denseValues, columns, userIds);
    }
}
