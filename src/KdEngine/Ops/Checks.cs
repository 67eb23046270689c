using System.Numerics;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>
/// Argument checks shared by ops: each failure is an <see cref="ArgumentException"/> naming the op, the
/// tensor (name and shape) and, for bad values, the first offending index and its value.
/// </summary>
internal static class OpChecks
{
    /// <summary>Throws when <paramref name="t"/> holds a NaN or ±∞ (one backend scan; the value is fetched only on failure).</summary>
    public static void RequireFinite<T>(Tensor<T> t, string op, string role) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int i = t.Backend.FirstNonFinite(t.Storage, t.Length);
        if (i < 0) return;
        var e = new ArgumentException(
            $"{op}: {role} {t.Describe()} holds a non-finite value {ValueAt(t, i)} at index {IndexString(t.Shape, i)} (flat {i}).");
        e.Data[NonFiniteKey] = true; // the trainer reports this as divergence at the step it happened
        throw e;
    }

    /// <summary>Key in <see cref="Exception.Data"/> marking an <see cref="ArgumentException"/> about a NaN or ±∞ input.</summary>
    public const string NonFiniteKey = "KdEngine.NonFinite";

    public static void RequireSameShape<T>(Tensor<T> a, Tensor<T> b, string op, string roleA, string roleB)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (a.Backend != b.Backend)
            throw new ArgumentException($"{op}: {roleA} {a.Describe()} and {roleB} {b.Describe()} live on different backends ('{a.Backend.Name}' and '{b.Backend.Name}').");
        if (a.Shape != b.Shape)
            throw new ArgumentException($"{op}: {roleA} {a.Describe()} and {roleB} {b.Describe()} differ in shape.");
    }

    /// <summary>A temperature must be a positive finite number; returns 1/T.</summary>
    public static T InverseTemperature<T>(T temperature, string op) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (!T.IsFinite(temperature) || temperature <= T.Zero)
            throw new ArgumentException($"{op}: temperature must be positive and finite; got {temperature}.", nameof(temperature));
        return T.One / temperature;
    }

    /// <summary>The value at flat index <paramref name="i"/>, through the backend (error paths only).</summary>
    public static T ValueAt<T>(Tensor<T> t, int i) where T : unmanaged, IFloatingPointIeee754<T>
    {
        using var one = t.Backend.Allocate(1, clear: false);
        t.Backend.Copy(t.Storage, i, one, 0, 1);
        Span<T> v = stackalloc T[1];
        t.Backend.Download(one, v);
        return v[0];
    }

    /// <summary>Flat row-major index → "[i0, i1, …]".</summary>
    public static string IndexString(Shape shape, int flat)
    {
        var idx = new int[shape.Rank];
        for (int d = shape.Rank - 1; d >= 0; d--)
        {
            int n = shape[d];
            idx[d] = n == 0 ? 0 : flat % n;
            flat = n == 0 ? 0 : flat / n;
        }
        return "[" + string.Join(", ", idx) + "]";
    }
}
