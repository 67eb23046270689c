using System.Buffers.Binary;
using System.Text;

namespace KdEngine.Onnx;

/// <summary>
/// The protobuf wire format, just what ONNX needs: varint (wire type 0), 32-bit (5) and length-delimited (2) fields.
/// A nested message is built in its own writer and embedded with its length prefix. Written by hand so that the
/// exporter depends on nothing but KdEngine (no generated code, no Google.Protobuf).
/// </summary>
internal sealed class ProtoWriter
{
    private const int Varint = 0, Fixed32 = 5, LengthDelimited = 2;
    private readonly MemoryStream _buffer = new();

    public long Length => _buffer.Length;

    /// <summary>int32, int64 and enum fields: negative values take 10 bytes (two's complement), as protobuf specifies.</summary>
    public ProtoWriter Int64(int field, long value)
    {
        Tag(field, Varint);
        WriteVarint((ulong)value);
        return this;
    }

    public ProtoWriter Float(int field, float value)
    {
        Tag(field, Fixed32);
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteSingleLittleEndian(b, value);
        _buffer.Write(b);
        return this;
    }

    public ProtoWriter String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

    public ProtoWriter Bytes(int field, ReadOnlySpan<byte> value)
    {
        Tag(field, LengthDelimited);
        WriteVarint((ulong)value.Length);
        _buffer.Write(value);
        return this;
    }

    public ProtoWriter Message(int field, ProtoWriter message)
    {
        Tag(field, LengthDelimited);
        WriteVarint((ulong)message._buffer.Length);
        message._buffer.Position = 0;
        message._buffer.CopyTo(_buffer);
        return this;
    }

    public ProtoWriter Message(int field, Action<ProtoWriter> build)
    {
        var inner = new ProtoWriter();
        build(inner);
        return Message(field, inner);
    }

    public void CopyTo(Stream stream)
    {
        _buffer.Position = 0;
        _buffer.CopyTo(stream);
    }

    public byte[] ToArray() => _buffer.ToArray();

    private void Tag(int field, int wireType) => WriteVarint((ulong)((uint)field << 3 | (uint)wireType));

    private void WriteVarint(ulong value)
    {
        while (value >= 0x80)
        {
            _buffer.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        _buffer.WriteByte((byte)value);
    }
}
