namespace KdEngine.Data;

/// <summary>
/// SplitMix64: a tiny, fully specified generator so that shuffles, splits and synthetic data are identical for a
/// seed on every platform and .NET version (System.Random's seeded algorithm is an implementation detail).
/// </summary>
internal struct DataRandom
{
    private ulong _state;

    public DataRandom(long seed) => _state = StableHash.Mix((ulong)seed ^ 0x5DEECE66DUL);

    public ulong NextULong()
    {
        _state += 0x9e3779b97f4a7c15UL;
        return StableHash.Mix(_state);
    }

    /// <summary>Uniform in [0, n) (Lemire's multiply-shift with rejection: no modulo bias).</summary>
    public int NextInt(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), $"NextInt: n must be > 0, got {n}.");
        ulong un = (ulong)n;
        while (true)
        {
            ulong x = NextULong() >> 32;
            ulong m = x * un;
            ulong low = m & 0xFFFFFFFFUL;
            if (low >= (0x1_0000_0000UL % un)) return (int)(m >> 32);
        }
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextULong() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Standard normal (Box–Muller; one value per call, the pair's second value discarded for simplicity).</summary>
    public double NextGaussian()
    {
        double u1 = 1.0 - NextDouble(); // (0, 1]
        double u2 = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    /// <summary>Fisher–Yates shuffle.</summary>
    public void Shuffle(Span<int> values)
    {
        for (int i = values.Length - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (values[i], values[j]) = (values[j], values[i]);
        }
    }
}
