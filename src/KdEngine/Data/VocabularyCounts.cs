using System.Buffers.Binary;
using System.Text;

namespace KdEngine.Data;

/// <summary>
/// Token counts of a schema's vocabulary fields over some rows (<see cref="Preprocessor.CountVocabularies"/>). Counts
/// of disjoint parts of the data add up (<see cref="Merge"/>) to the counts of the whole, and the fit reads nothing
/// else, so a preprocessor can be fitted by processes that each count their own part. <see cref="ToBytes"/> /
/// <see cref="FromBytes"/> carry them between processes.
/// </summary>
public sealed class VocabularyCounts
{
    private const uint Magic = 0x4B44_5643; // "KDVC"

    internal VocabularyCounts(string[] fields, Dictionary<string, long>[] counts)
    {
        Fields = fields;
        Counts = counts;
    }

    /// <summary>The vocabulary fields, in the schema's order.</summary>
    public IReadOnlyList<string> Fields { get; }

    internal Dictionary<string, long>[] Counts { get; }

    /// <summary>Distinct tokens counted, over all fields.</summary>
    public long Tokens => Counts.Sum(c => (long)c.Count);

    /// <summary>How often <paramref name="token"/> was seen in field <paramref name="field"/>.</summary>
    public long CountOf(string field, string token)
    {
        int i = Array.IndexOf((string[])Fields, field);
        return i >= 0 && Counts[i].TryGetValue(token, out long c) ? c : 0;
    }

    /// <summary>Adds <paramref name="other"/>'s counts (same fields) to these.</summary>
    public void Merge(VocabularyCounts other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (!Fields.SequenceEqual(other.Fields))
            throw new ArgumentException($"VocabularyCounts.Merge: fields [{string.Join(", ", other.Fields)}] differ from [{string.Join(", ", Fields)}].");
        for (int i = 0; i < Counts.Length; i++)
            foreach (var (token, count) in other.Counts[i])
                Counts[i][token] = Counts[i].TryGetValue(token, out long c) ? c + count : count;
    }

    /// <summary>
    /// A compact binary form: magic, field count; per field its name, entry count and (token, count) pairs, strings as
    /// UTF-8 with a length prefix, integers little-endian.
    /// </summary>
    public byte[] ToBytes()
    {
        using var stream = new MemoryStream();
        using (var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(Magic);
            w.Write(Fields.Count);
            for (int i = 0; i < Counts.Length; i++)
            {
                w.Write(Fields[i]);
                w.Write(Counts[i].Count);
                // Ordinal order: the same counts give the same bytes.
                foreach (var (token, count) in Counts[i].OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    w.Write(token);
                    w.Write(count);
                }
            }
        }
        return stream.ToArray();
    }

    /// <summary>Reads <see cref="ToBytes"/>'s form; anything else is a <see cref="DataFormatException"/> naming <paramref name="source"/>.</summary>
    public static VocabularyCounts FromBytes(byte[] bytes, string source)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        try
        {
            using var r = new BinaryReader(new MemoryStream(bytes), Encoding.UTF8);
            if (bytes.Length < 8 || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != Magic) throw new FormatException("not vocabulary counts");
            r.ReadUInt32();
            int fields = r.ReadInt32();
            if (fields < 0 || fields > bytes.Length) throw new FormatException($"{fields} fields");
            var names = new string[fields];
            var counts = new Dictionary<string, long>[fields];
            for (int i = 0; i < fields; i++)
            {
                names[i] = r.ReadString();
                int entries = r.ReadInt32();
                if (entries < 0 || entries > bytes.Length) throw new FormatException($"field '{names[i]}': {entries} entries");
                counts[i] = new Dictionary<string, long>(entries, StringComparer.Ordinal);
                for (int k = 0; k < entries; k++)
                {
                    string token = r.ReadString();
                    long count = r.ReadInt64();
                    if (count < 1 || !counts[i].TryAdd(token, count)) throw new FormatException($"field '{names[i]}': bad or repeated token '{token}'");
                }
            }
            if (r.BaseStream.Position != bytes.Length) throw new FormatException("trailing bytes");
            return new VocabularyCounts(names, counts);
        }
        catch (Exception e) when (e is FormatException or EndOfStreamException or IOException)
        {
            throw new DataFormatException($"vocabulary counts are corrupt: {e.Message}", source);
        }
    }
}
