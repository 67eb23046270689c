namespace KdEngine.Tensors;

/// <summary>
/// An immutable, row-major tensor shape. Dimensions are non-negative; rank 0 is a scalar (one element).
/// </summary>
public readonly struct Shape : IEquatable<Shape>
{
    private readonly int[]? _dims;

    /// <summary>A shape with these dimensions (copied). Throws <see cref="ArgumentException"/> for a negative dimension or more than int.MaxValue elements.</summary>
    public Shape(params int[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        long count = 1;
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] < 0)
                throw new ArgumentException($"Shape {Format(dims)}: dimension {i} is negative.", nameof(dims));
            count *= dims[i];
            if (count > int.MaxValue)
                throw new ArgumentException($"Shape {Format(dims)} has more than {int.MaxValue} elements.", nameof(dims));
        }
        _dims = (int[])dims.Clone();
        ElementCount = (int)count;
    }

    /// <summary>The rank-0 shape of a single value.</summary>
    public static Shape Scalar => new(Array.Empty<int>());

    /// <summary>Number of dimensions (0 for a scalar).</summary>
    public int Rank => _dims?.Length ?? 0;

    /// <summary>Number of elements (1 for a scalar).</summary>
    public int ElementCount { get; }

    /// <summary>The size of dimension <paramref name="axis"/>; a negative axis counts from the end (-1 is the last).</summary>
    public int this[int axis] => _dims![axis < 0 ? axis + Rank : axis];

    /// <summary>The dimensions, outermost first.</summary>
    public ReadOnlySpan<int> Dims => _dims;

    /// <summary>Product of the dimensions before <paramref name="axis"/>.</summary>
    public int Outer(int axis) { int p = 1; for (int i = 0; i < axis; i++) p *= _dims![i]; return p; }

    /// <summary>Product of the dimensions after <paramref name="axis"/>.</summary>
    public int Inner(int axis) { int p = 1; for (int i = axis + 1; i < Rank; i++) p *= _dims![i]; return p; }

    /// <summary>Normalises a possibly negative axis and checks it is in range.</summary>
    public int Axis(int axis, string op)
    {
        int a = axis < 0 ? axis + Rank : axis;
        if (a < 0 || a >= Rank)
            throw new ArgumentOutOfRangeException(nameof(axis), $"{op}: axis {axis} is out of range for shape {this}.");
        return a;
    }

    /// <summary>A copy of this shape with dimension <paramref name="axis"/> set to <paramref name="size"/>.</summary>
    public Shape With(int axis, int size)
    {
        var d = (int[])_dims!.Clone();
        d[axis] = size;
        return new Shape(d);
    }

    /// <summary>A copy of this shape without dimension <paramref name="axis"/> (rank − 1).</summary>
    public Shape Without(int axis)
    {
        var d = new int[Rank - 1];
        for (int i = 0, j = 0; i < Rank; i++) if (i != axis) d[j++] = _dims![i];
        return new Shape(d);
    }

    /// <summary>The dimensions as a new array.</summary>
    public int[] ToArray() => _dims is null ? Array.Empty<int>() : (int[])_dims.Clone();

    /// <summary>True when both shapes have the same dimensions.</summary>
    public bool Equals(Shape other) => Dims.SequenceEqual(other.Dims);
    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);
    /// <inheritdoc/>
    public override int GetHashCode() { var h = new HashCode(); foreach (var d in Dims) h.Add(d); return h.ToHashCode(); }
    /// <summary>True when both shapes have the same dimensions.</summary>
    public static bool operator ==(Shape a, Shape b) => a.Equals(b);
    /// <summary>True when the shapes differ in rank or in any dimension.</summary>
    public static bool operator !=(Shape a, Shape b) => !a.Equals(b);
    /// <summary>The dimensions as <c>[2, 3]</c>.</summary>
    public override string ToString() => Format(Dims);

    private static string Format(ReadOnlySpan<int> dims) => "[" + string.Join(", ", dims.ToArray()) + "]";
}
