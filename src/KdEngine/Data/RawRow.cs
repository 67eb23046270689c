using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

namespace KdEngine.Data;

/// <summary>
/// One row as parsed, before preprocessing, without a string per cell: each schema field's value is a span of UTF-8
/// bytes (into the line the parser read, or into the row's own scratch for unescaped or joined values), numeric fields
/// carry their parsed number. Readers fill it; <see cref="Preprocessor.Encode(RawRow, EncodedRow)"/> and
/// <see cref="PreprocessorCounts.Add(RawRow)"/> read it. One instance is reused row after row; what it points into is
/// valid until the next row. Code that builds rows by hand (a service mapping JSON values) uses
/// <see cref="SetValue(int, ReadOnlySpan{byte})"/>, <see cref="SetValue(int, string)"/> and <see cref="SetNumber"/>.
/// </summary>
public sealed class RawRow
{
    private readonly int[] _start;   // ≥ 0: offset into _source; < 0: ~offset into _scratch
    private readonly int[] _length;  // −1: missing
    private byte[] _source = [];
    private byte[] _scratch = new byte[256];
    private int _scratchLength;

    /// <summary>An empty row (every field missing) of <paramref name="schema"/>.</summary>
    public RawRow(Schema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        Schema = schema;
        _start = new int[schema.Count];
        _length = new int[schema.Count];
        Numbers = new double[schema.Count];
        Clear();
    }

    /// <summary>The row's fields.</summary>
    public Schema Schema { get; }

    /// <summary>0 or 1 (a −1 label was already mapped to 0).</summary>
    public float Label { get; set; }

    /// <summary>Parsed value per numeric field (NaN = missing, or not parsed yet: the encoder parses the text).</summary>
    public double[] Numbers { get; }

    /// <summary>libSVM/libFM/libFFM only: the <c>val</c> of each categorical field's <c>idx:val</c> (NaN = none); else null.</summary>
    public float[]? Scales { get; set; }

    /// <summary>File name and 1-based line the row came from (for error messages); null/0 when built in code or unknown.</summary>
    public string? File { get; set; }

    /// <summary>1-based line of the row in <see cref="File"/> (0 = unknown).</summary>
    public long Line { get; set; }

    /// <summary>Marks every field missing (labels, numbers and scales reset) and forgets the scratch.</summary>
    public void Clear()
    {
        Array.Fill(_length, -1);
        Numbers.AsSpan().Fill(double.NaN);
        if (Scales is not null) Scales.AsSpan().Fill(float.NaN);
        _scratchLength = 0;
        Label = 0;
    }

    /// <summary>Whether field <paramref name="field"/> has a value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Has(int field) => _length[field] >= 0;

    /// <summary>The UTF-8 bytes of field <paramref name="field"/> (empty when missing; check <see cref="Has"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ReadOnlySpan<byte> Value(int field)
    {
        int n = _length[field];
        if (n < 0) return default;
        int s = _start[field];
        return s >= 0 ? _source.AsSpan(s, n) : _scratch.AsSpan(~s, n);
    }

    /// <summary>The value as a string (allocates; for messages and the <see cref="RawRecord"/> bridge).</summary>
    public string? ValueString(int field) => Has(field) ? Encoding.UTF8.GetString(Value(field)) : null;

    /// <summary>Parsers: the buffer the <see cref="SetSpan"/> offsets point into (the current line's buffer).</summary>
    internal void SetSource(byte[] source) => _source = source;

    /// <summary>Parsers: field <paramref name="field"/> is bytes [start, start + length) of the source buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void SetSpan(int field, int start, int length)
    {
        _start[field] = start;
        _length[field] = length;
    }

    /// <summary>Sets field <paramref name="field"/> to a copy of <paramref name="utf8"/> (kept in the row's scratch).</summary>
    public void SetValue(int field, ReadOnlySpan<byte> utf8)
    {
        int at = Reserve(utf8.Length);
        utf8.CopyTo(_scratch.AsSpan(at));
        _start[field] = ~at;
        _length[field] = utf8.Length;
    }

    /// <summary>Sets field <paramref name="field"/> to <paramref name="text"/> (UTF-8 encoded; null = missing).</summary>
    public void SetValue(int field, string? text)
    {
        if (text is null) { SetMissing(field); return; }
        int at = Reserve(Encoding.UTF8.GetMaxByteCount(text.Length));
        int n = Encoding.UTF8.GetBytes(text, _scratch.AsSpan(at));
        _scratchLength = at + n;
        _start[field] = ~at;
        _length[field] = n;
    }

    /// <summary>Sets a numeric field's value (and its text, shortest round-trip form, so it also reads as a category).</summary>
    public void SetNumber(int field, double value)
    {
        Span<byte> text = stackalloc byte[32];
        value.TryFormat(text, out int n, "R", CultureInfo.InvariantCulture);
        SetValue(field, text[..n]);
        Numbers[field] = value;
    }

    /// <summary>Marks field <paramref name="field"/> missing.</summary>
    public void SetMissing(int field)
    {
        _length[field] = -1;
        Numbers[field] = double.NaN;
    }

    /// <summary>
    /// Appends <paramref name="separator"/> and <paramref name="utf8"/> to the value of field <paramref name="field"/> (starts the
    /// value, without a separator, when the field is missing): how a multi-valued field's list is built value by value.
    /// </summary>
    public void AppendToValue(int field, ReadOnlySpan<byte> separator, ReadOnlySpan<byte> utf8)
    {
        if (_length[field] < 0 || _start[field] >= 0 || ~_start[field] + _length[field] != _scratchLength)
        {
            if (_length[field] >= 0)
            {
                // Move the current value to the end of the scratch first.
                var current = Value(field).ToArray();
                SetValue(field, current);
            }
            else
            {
                SetValue(field, utf8);
                return;
            }
        }
        int at = Reserve(separator.Length + utf8.Length);
        separator.CopyTo(_scratch.AsSpan(at));
        utf8.CopyTo(_scratch.AsSpan(at + separator.Length));
        _length[field] += separator.Length + utf8.Length;
    }

    /// <summary>Room for <paramref name="bytes"/> more bytes at the end of the scratch; returns where they start.</summary>
    internal int Reserve(int bytes)
    {
        int at = _scratchLength;
        if (at + bytes > _scratch.Length) Array.Resize(ref _scratch, Math.Max(_scratch.Length * 2, at + bytes));
        _scratchLength = at + bytes;
        return at;
    }

    /// <summary>Writable scratch bytes [at, at + length) (after <see cref="Reserve"/>).</summary>
    internal Span<byte> Scratch(int at, int length) => _scratch.AsSpan(at, length);

    /// <summary>Field <paramref name="field"/> is scratch bytes [at, at + length).</summary>
    internal void SetScratchSpan(int field, int at, int length)
    {
        _start[field] = ~at;
        _length[field] = length;
    }

    /// <summary>Gives back scratch bytes reserved but not used (the last reservation was <paramref name="used"/> bytes long).</summary>
    internal void TrimScratch(int at, int used) => _scratchLength = at + used;

    /// <summary>Copies this row into a <see cref="RawRecord"/> (strings per value; the old object model's bridge).</summary>
    public RawRecord ToRecord()
    {
        var r = new RawRecord(Schema) { File = File, Line = Line, Label = Label };
        for (int f = 0; f < Schema.Count; f++)
        {
            if (f == Schema.LabelIndex) continue;
            r.Values[f] = ValueString(f);
            r.Numbers[f] = Numbers[f];
        }
        if (Scales is not null) r.Scales = (float[])Scales.Clone();
        return r;
    }

    /// <summary>Fills this row from a <see cref="RawRecord"/> (values UTF-8 encoded).</summary>
    public void From(RawRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        Clear();
        Label = record.Label;
        File = record.File;
        Line = record.Line;
        int n = Math.Min(Schema.Count, record.Schema.Count);
        for (int f = 0; f < n; f++)
        {
            if (record.Values[f] is { } v) SetValue(f, v);
            Numbers[f] = record.Numbers[f];
        }
        if (record.Scales is { } s)
        {
            Scales ??= new float[Schema.Count];
            Scales.AsSpan().Fill(float.NaN);
            s.AsSpan(0, Math.Min(s.Length, Scales.Length)).CopyTo(Scales);
        }
        else Scales = null;
    }
}
