using System.Numerics;

namespace KdEngine.Tensors;

/// <summary>
/// A per-element-type pool of arrays, bucketed by power-of-two capacity, so that a training step reuses the
/// memory of the previous step instead of allocating. Thread-safe. Arrays handed out may hold stale data
/// unless <c>clear</c> is requested.
/// </summary>
/// <remarks>
/// Ownership rules (see docs/architecture.md): whoever rents an array returns it exactly once; the pool
/// never hands the same array to two renters. Tensors made by ops inside a <see cref="Autograd.Tape{T}"/>
/// scope are returned when that scope is disposed; parameters own their storage until disposed.
/// </remarks>
public static class BufferPool<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private const int MaxPerBucket = 64;
    private const int MinBucketLog2 = 4;
    private static readonly Stack<T[]>[] Buckets = CreateBuckets();

    private static Stack<T[]>[] CreateBuckets()
    {
        var b = new Stack<T[]>[32];
        for (int i = 0; i < b.Length; i++) b[i] = new Stack<T[]>();
        return b;
    }

    private static int BucketOf(int length)
    {
        int log2 = length <= 1 << MinBucketLog2 ? MinBucketLog2 : 32 - BitOperations.LeadingZeroCount((uint)(length - 1));
        return log2;
    }

    /// <summary>Rents an array of at least <paramref name="length"/> elements.</summary>
    public static T[] Rent(int length, bool clear)
    {
        if (length == 0) return Array.Empty<T>();
        int bucket = BucketOf(length);
        T[]? array = null;
        var stack = Buckets[bucket];
        lock (stack)
        {
            if (stack.Count > 0) array = stack.Pop();
        }
        if (array is null)
            return new T[1 << bucket];
        if (clear) Array.Clear(array, 0, length);
        return array;
    }

    /// <summary>Gives a rented array back for reuse; an array the pool did not hand out (not a power-of-two length) is left to the GC.</summary>
    public static void Return(T[] array)
    {
        if (array.Length == 0) return;
        int bucket = BucketOf(array.Length);
        if (1 << bucket != array.Length) return; // not one of ours: let the GC have it
        var stack = Buckets[bucket];
        lock (stack)
        {
            if (stack.Count < MaxPerBucket) stack.Push(array);
        }
    }
}
