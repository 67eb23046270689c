using System.Globalization;
using KdEngine.Kernels.Cpu;

namespace KdEngine.Data;

/// <summary>
/// A split that needs no permutation of all rows (<see cref="SplitMode.Hash"/>): data row i (0-based, in file order)
/// goes to part k when u(i) = a seeded 64-bit hash of i mapped to [0, 1) falls in k's share of the cumulative ratios.
/// Each row's part depends only on its ordinal and the seed, so a part can be read by streaming the file and keeping its
/// rows; part sizes are binomial around the ratios (not the exact ⌊n·ratio⌋ of the other modes), and the parts differ
/// from <see cref="SplitMode.Random"/>'s with the same seed.
/// </summary>
public sealed class HashSplit
{
    private readonly double[] _cumulative;
    private readonly ulong _key;

    /// <summary>A split by <paramref name="ratios"/> (positive, finite) under <paramref name="seed"/>.</summary>
    public HashSplit(IReadOnlyList<double> ratios, int seed)
    {
        ArgumentNullException.ThrowIfNull(ratios);
        if (ratios.Count < 1 || ratios.Any(r => !(r > 0) || !double.IsFinite(r)))
            throw new ArgumentException($"Split: ratios must be positive and finite, got [{string.Join(", ", ratios)}].", nameof(ratios));
        double total = ratios.Sum(), cum = 0;
        _cumulative = new double[ratios.Count];
        for (int k = 0; k < ratios.Count; k++) { cum += ratios[k]; _cumulative[k] = cum / total; }
        _cumulative[^1] = 1;
        Ratios = ratios.ToArray();
        Seed = seed;
        _key = Mix((ulong)(uint)seed ^ 0x5851F42D4C957F2DUL);
    }

    /// <summary>The ratios.</summary>
    public IReadOnlyList<double> Ratios { get; }

    /// <summary>The seed.</summary>
    public int Seed { get; }

    /// <summary>The part (0-based) of data row <paramref name="ordinal"/>.</summary>
    public int PartOf(long ordinal)
    {
        // SplitMix64's finaliser over the ordinal keyed by the seed; the top 53 bits as a double in [0, 1).
        double u = (Mix((ulong)ordinal + _key) >> 11) * (1.0 / (1UL << 53));
        for (int k = 0; k < _cumulative.Length - 1; k++)
            if (u < _cumulative[k]) return k;
        return _cumulative.Length - 1;
    }

    /// <summary>Row indices of each part among <paramref name="count"/> rows (each ascending).</summary>
    public int[][] Indices(int count)
    {
        var parts = Enumerable.Range(0, _cumulative.Length).Select(_ => new List<int>()).ToArray();
        for (int i = 0; i < count; i++) parts[PartOf(i)].Add(i);
        return parts.Select(p => p.ToArray()).ToArray();
    }

    /// <summary>"hash 8:1:1 seed 5" (names the split in cache identities and messages).</summary>
    public override string ToString() =>
        $"hash {string.Join(":", Ratios.Select(r => r.ToString("R", CultureInfo.InvariantCulture)))} seed {Seed.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>SplitMix64's finaliser, the one the counter-based random kernels use.</summary>
    private static ulong Mix(ulong z) => RandomKernels.SplitMix64(z);
}

/// <summary>The rows of one part of a <see cref="HashSplit"/>: a unit keeps data row i when <see cref="Split"/> puts it in <see cref="Part"/>.</summary>
public sealed record HashPartFilter(HashSplit Split, int Part)
{
    /// <summary>Whether data row <paramref name="ordinal"/> belongs to the part.</summary>
    public bool Keeps(long ordinal) => Split.PartOf(ordinal) == Part;

    /// <inheritdoc/>
    public override string ToString() => $"{Split} part {Part.ToString(CultureInfo.InvariantCulture)}";
}
