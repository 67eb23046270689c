using System.Runtime.InteropServices;

namespace KdEngine.Serving;

/// <summary>Element types a safetensors file may hold here; the names are the safetensors dtype strings.</summary>
public enum TensorDType
{
    /// <summary>IEEE 754 binary32 (model weights).</summary>
    F32,
    /// <summary>IEEE 754 binary64.</summary>
    F64,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Signed 64-bit integer (ids, counters).</summary>
    I64,
}

/// <summary>Helpers for <see cref="TensorDType"/>.</summary>
public static class TensorDTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(TensorDType dtype) => dtype switch
    {
        TensorDType.F32 or TensorDType.I32 => 4,
        TensorDType.F64 or TensorDType.I64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>The safetensors spelling ("F32", ...).</summary>
    public static string Name(TensorDType dtype) => dtype switch
    {
        TensorDType.F32 => "F32",
        TensorDType.F64 => "F64",
        TensorDType.I32 => "I32",
        TensorDType.I64 => "I64",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>Parses the exact, case-sensitive safetensors spelling; other dtypes (BF16, U8, ...) are not supported.</summary>
    public static bool TryParse(string text, out TensorDType dtype)
    {
        switch (text)
        {
            case "F32": dtype = TensorDType.F32; return true;
            case "F64": dtype = TensorDType.F64; return true;
            case "I32": dtype = TensorDType.I32; return true;
            case "I64": dtype = TensorDType.I64; return true;
            default: dtype = default; return false;
        }
    }
}

/// <summary>
/// A named, shaped, typed array: one tensor of a safetensors file. Row-major (C order), like PyTorch.
/// The factories wrap the caller's array without copying; do not change it while a write is in progress.
/// </summary>
public sealed class NamedArray
{
    private readonly Array _data;
    private readonly int[] _shape;

    private NamedArray(string name, TensorDType dtype, Array data, int[] shape)
    {
        if (string.IsNullOrEmpty(name)) throw new ArgumentException("A tensor name must be non-empty.", nameof(name));
        ArgumentNullException.ThrowIfNull(shape);
        long count = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException($"Tensor '{name}': shape {FormatShape(shape)} has a negative dimension.", nameof(shape));
            count *= d;
            if (count > Array.MaxLength) throw new ArgumentException($"Tensor '{name}': shape {FormatShape(shape)} has more elements than an array can hold.", nameof(shape));
        }
        if (count != data.Length)
            throw new ArgumentException($"Tensor '{name}': shape {FormatShape(shape)} holds {count} elements but the data has {data.Length}.", nameof(data));
        Name = name;
        DType = dtype;
        _data = data;
        _shape = (int[])shape.Clone();
    }

    /// <summary>A float32 array; <paramref name="shape"/>'s product must equal data.Length (the array is kept, not copied).</summary>
    public static NamedArray Float32(string name, float[] data, params int[] shape) => new(name, TensorDType.F32, data ?? throw new ArgumentNullException(nameof(data)), shape);
    /// <summary>A float64 array; <paramref name="shape"/>'s product must equal data.Length (the array is kept, not copied).</summary>
    public static NamedArray Float64(string name, double[] data, params int[] shape) => new(name, TensorDType.F64, data ?? throw new ArgumentNullException(nameof(data)), shape);
    /// <summary>An int32 array; <paramref name="shape"/>'s product must equal data.Length (the array is kept, not copied).</summary>
    public static NamedArray Int32(string name, int[] data, params int[] shape) => new(name, TensorDType.I32, data ?? throw new ArgumentNullException(nameof(data)), shape);
    /// <summary>An int64 array; <paramref name="shape"/>'s product must equal data.Length (the array is kept, not copied).</summary>
    public static NamedArray Int64(string name, long[] data, params int[] shape) => new(name, TensorDType.I64, data ?? throw new ArgumentNullException(nameof(data)), shape);

    /// <summary>An array of <paramref name="count"/> zeroed elements to be filled by the reader.</summary>
    internal static NamedArray Allocate(string name, TensorDType dtype, int[] shape, int count) => dtype switch
    {
        TensorDType.F32 => new NamedArray(name, dtype, new float[count], shape),
        TensorDType.F64 => new NamedArray(name, dtype, new double[count], shape),
        TensorDType.I32 => new NamedArray(name, dtype, new int[count], shape),
        TensorDType.I64 => new NamedArray(name, dtype, new long[count], shape),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>The tensor's name in the file.</summary>
    public string Name { get; }
    /// <summary>The element type.</summary>
    public TensorDType DType { get; }
    /// <summary>The dimensions, outermost first.</summary>
    public IReadOnlyList<int> Shape => _shape;
    /// <summary>Number of elements.</summary>
    public int ElementCount => _data.Length;
    /// <summary>Size of the data in bytes.</summary>
    public long ByteLength => (long)_data.Length * TensorDTypes.SizeOf(DType);

    /// <summary>The elements of an F32 array; <see cref="InvalidOperationException"/> for another dtype.</summary>
    public ReadOnlySpan<float> AsFloat32() => _data as float[] ?? throw WrongType(TensorDType.F32);
    /// <summary>The elements of an F64 array; <see cref="InvalidOperationException"/> for another dtype.</summary>
    public ReadOnlySpan<double> AsFloat64() => _data as double[] ?? throw WrongType(TensorDType.F64);
    /// <summary>The elements of an I32 array; <see cref="InvalidOperationException"/> for another dtype.</summary>
    public ReadOnlySpan<int> AsInt32() => _data as int[] ?? throw WrongType(TensorDType.I32);
    /// <summary>The elements of an I64 array; <see cref="InvalidOperationException"/> for another dtype.</summary>
    public ReadOnlySpan<long> AsInt64() => _data as long[] ?? throw WrongType(TensorDType.I64);

    /// <summary>The elements as bytes in this machine's byte order.</summary>
    internal Span<byte> NativeBytes() => DType switch
    {
        TensorDType.F32 => MemoryMarshal.AsBytes(((float[])_data).AsSpan()),
        TensorDType.F64 => MemoryMarshal.AsBytes(((double[])_data).AsSpan()),
        TensorDType.I32 => MemoryMarshal.AsBytes(((int[])_data).AsSpan()),
        TensorDType.I64 => MemoryMarshal.AsBytes(((long[])_data).AsSpan()),
        _ => throw new InvalidOperationException(),
    };

    internal bool ShapeEquals(ReadOnlySpan<int> shape) => shape.SequenceEqual(_shape);

    private InvalidOperationException WrongType(TensorDType asked) =>
        new($"Tensor '{Name}' is {TensorDTypes.Name(DType)}, not {TensorDTypes.Name(asked)}.");

    internal static string FormatShape(IReadOnlyList<int> shape) => "[" + string.Join(", ", shape) + "]";

    /// <summary>Name, dtype and shape, for messages.</summary>
    public override string ToString() => $"{Name} {TensorDTypes.Name(DType)} {FormatShape(_shape)}";
}
