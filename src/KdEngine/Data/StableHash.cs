using System.Text;

namespace KdEngine.Data;

/// <summary>
/// A hash that is the same on every run, machine and .NET version (unlike <see cref="string.GetHashCode()"/>):
/// 64-bit FNV-1a over the UTF-8 bytes, then the SplitMix64 finaliser so that the low bits used by the modulo are
/// well mixed.
/// </summary>
public static class StableHash
{
    private const ulong FnvOffset = 14695981039346656037UL;
    private const ulong FnvPrime = 1099511628211UL;

    /// <summary>64-bit FNV-1a of the UTF-8 encoding of <paramref name="text"/> (reference: "a" → 0xaf63dc4c8601ec8c).</summary>
    public static ulong Fnv1a64(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Fnv1a64(text.AsSpan());
    }

    /// <summary><see cref="Fnv1a64(string)"/> of characters (allocates nothing up to 85 characters).</summary>
    public static ulong Fnv1a64(ReadOnlySpan<char> text)
    {
        Span<byte> stack = stackalloc byte[256];
        int max = Encoding.UTF8.GetMaxByteCount(text.Length);
        Span<byte> bytes = max <= stack.Length ? stack : new byte[Encoding.UTF8.GetByteCount(text)];
        int n = Encoding.UTF8.GetBytes(text, bytes);
        return Fnv1a64(bytes[..n]);
    }

    /// <summary>64-bit FNV-1a of <paramref name="bytes"/>.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static ulong Fnv1a64(ReadOnlySpan<byte> bytes)
    {
        ulong h = FnvOffset;
        foreach (byte b in bytes)
        {
            h ^= b;
            h *= FnvPrime;
        }
        return h;
    }

    /// <summary>
    /// The 64-bit hash by which preprocessing knows a value: SplitMix64(FNV-1a-64(its UTF-8 bytes)). Vocabularies are
    /// keyed by it (no string per value is kept) and hashed fields take it modulo their bucket count.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static ulong OfValue(ReadOnlySpan<byte> utf8) => Mix(Fnv1a64(utf8));

    /// <summary><see cref="OfValue(ReadOnlySpan{byte})"/> of the UTF-8 encoding of <paramref name="text"/>.</summary>
    public static ulong OfValue(ReadOnlySpan<char> text) => Mix(Fnv1a64(text));

    /// <summary><see cref="OfValue(ReadOnlySpan{byte})"/> of the UTF-8 encoding of <paramref name="text"/>.</summary>
    public static ulong OfValue(string text) => Mix(Fnv1a64((text ?? throw new ArgumentNullException(nameof(text))).AsSpan()));

    /// <summary>SplitMix64 finaliser (bijective 64-bit mixing).</summary>
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
        return z ^ (z >> 31);
    }

    /// <summary>Bucket in [0, <paramref name="buckets"/>) of <paramref name="text"/>.</summary>
    public static int Bucket(string text, int buckets)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Bucket(text.AsSpan(), buckets);
    }

    /// <summary>Bucket in [0, <paramref name="buckets"/>) of <paramref name="text"/>'s characters.</summary>
    public static int Bucket(ReadOnlySpan<char> text, int buckets)
    {
        if (buckets < 1) throw new ArgumentOutOfRangeException(nameof(buckets), $"StableHash.Bucket: buckets must be ≥ 1, got {buckets}.");
        return (int)(Mix(Fnv1a64(text)) % (ulong)buckets);
    }
}

/// <summary>Numeric bucketization used for numeric fields (the raw value becomes a categorical token).</summary>
public static class NumericBuckets
{
    /// <summary>⌊ln(v)²⌋ for v &gt; 2 (Criteo Kaggle winners' transform).</summary>
    public static long LogSquared(double v)
    {
        if (!(v > 2)) throw new ArgumentOutOfRangeException(nameof(v), $"LogSquared bucket is defined for v > 2, got {v}.");
        double l = Math.Log(v);
        return (long)Math.Floor(l * l);
    }

    /// <summary>⌊log2 v⌋ for v &gt; 2.</summary>
    public static long Log2(double v)
    {
        if (!(v > 2)) throw new ArgumentOutOfRangeException(nameof(v), $"Log2 bucket is defined for v > 2, got {v}.");
        return (long)Math.Floor(Math.Log2(v));
    }

    /// <summary>
    /// The vocabulary token of a numeric value: <c>b{bucket}</c> for v &gt; 2, <c>v{⌊v⌋}</c> for v ≤ 2, so that every
    /// small value (0, 1, 2, −1, −2, …) is its own bucket and never collides with a log bucket.
    /// </summary>
    public static string Token(double v, Bucketing bucketing)
    {
        Span<char> buffer = stackalloc char[MaxTokenLength];
        return new string(FormatToken(v, bucketing, buffer));
    }

    /// <summary>The longest token: a sign, 19 digits of a long and the prefix.</summary>
    internal const int MaxTokenLength = 21;

    // Token hashes of small bucket numbers and of integer values below 2^16, computed once: a value's token hash is then
    // two table reads instead of a logarithm, a format and a hash. [b0..b4095] per prefix; v-tokens from −1024.
    private const int SmallBucketCount = 4096, SmallValueLow = -1024, IntegerTableSize = 1 << 16;
    private static readonly ulong[] BucketHashes = TokenHashes('b', 0, SmallBucketCount);
    private static readonly ulong[] SmallValueHashes = TokenHashes('v', SmallValueLow, 3 - SmallValueLow); // v−1024 … v2
    private static readonly ushort[][] IntegerBuckets = [IntegerBucketTable(Bucketing.LogSquared), IntegerBucketTable(Bucketing.Log2)];

    private static ulong[] TokenHashes(char prefix, long from, int count)
    {
        var hashes = new ulong[count];
        Span<byte> token = stackalloc byte[MaxTokenLength];
        for (int i = 0; i < count; i++) hashes[i] = StableHash.OfValue(FormatTokenUtf8(prefix, from + i, token));
        return hashes;
    }

    private static ushort[] IntegerBucketTable(Bucketing bucketing)
    {
        var table = new ushort[IntegerTableSize];
        for (int v = 3; v < IntegerTableSize; v++) table[v] = (ushort)(bucketing == Bucketing.LogSquared ? LogSquared(v) : Log2(v));
        return table;
    }

    private static ReadOnlySpan<byte> FormatTokenUtf8(char prefix, long n, Span<byte> buffer)
    {
        buffer[0] = (byte)prefix;
        n.TryFormat(buffer[1..], out int written, default, System.Globalization.CultureInfo.InvariantCulture);
        return buffer[..(1 + written)];
    }

    /// <summary>
    /// <see cref="StableHash.OfValue(ReadOnlySpan{byte})"/> of the UTF-8 token of <paramref name="v"/> (what a
    /// vocabulary is keyed by), without making the token for integers below 2¹⁶ and small buckets.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static ulong TokenHash(double v, Bucketing bucketing)
    {
        if (v > 2)
        {
            if (v < IntegerTableSize && v == Math.Floor(v)) return BucketHashes[IntegerBuckets[(int)bucketing][(int)v]];
        }
        else if (v >= SmallValueLow) return SmallValueHashes[(long)Math.Floor(v) - SmallValueLow];
        return TokenHashSlow(v, bucketing);
    }

    private static ulong TokenHashSlow(double v, Bucketing bucketing)
    {
        if (!double.IsFinite(v)) throw new ArgumentOutOfRangeException(nameof(v), $"numeric value must be finite, got {v}.");
        long n = v > 2 ? (bucketing == Bucketing.LogSquared ? LogSquared(v) : Log2(v)) : (long)Math.Floor(v);
        if (v > 2 && n >= 0 && n < SmallBucketCount) return BucketHashes[n];
        Span<byte> token = stackalloc byte[MaxTokenLength];
        return StableHash.OfValue(FormatTokenUtf8(v > 2 ? 'b' : 'v', n, token));
    }

    /// <summary><see cref="Token"/> written into <paramref name="buffer"/> (≥ <see cref="MaxTokenLength"/> chars) without allocating (serving uses it).</summary>
    internal static ReadOnlySpan<char> FormatToken(double v, Bucketing bucketing, Span<char> buffer)
    {
        if (!double.IsFinite(v)) throw new ArgumentOutOfRangeException(nameof(v), $"numeric value must be finite, got {v}.");
        long n = v > 2 ? (bucketing == Bucketing.LogSquared ? LogSquared(v) : Log2(v)) : (long)Math.Floor(v);
        buffer[0] = v > 2 ? 'b' : 'v';
        n.TryFormat(buffer[1..], out int written, default, System.Globalization.CultureInfo.InvariantCulture);
        return buffer[..(1 + written)];
    }
}
