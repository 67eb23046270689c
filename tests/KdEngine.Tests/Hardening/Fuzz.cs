using System.Text;
using CsCheck;

namespace KdEngine.Tests.Hardening;

/// <summary>One edit of a byte string; positions are fractions of the current length so one edit fits any input.</summary>
internal readonly record struct Mutation(int Kind, double At, int Length, byte Value, int Pick);

/// <summary>Counts of one fuzzed input class, for the assertions and for docs/reliability.md.</summary>
internal sealed class FuzzTally(string name)
{
    public string Name { get; } = name;
    public int Cases { get; private set; }
    public int Parsed { get; private set; }
    public int Rejected { get; private set; }
    public long MaxAllocatedBytes { get; private set; }
    public TimeSpan Slowest { get; private set; }

    public void Add(bool parsed, long allocated, TimeSpan elapsed)
    {
        Cases++;
        if (parsed) Parsed++; else Rejected++;
        MaxAllocatedBytes = Math.Max(MaxAllocatedBytes, allocated);
        if (elapsed > Slowest) Slowest = elapsed;
    }

    public override string ToString() =>
        $"{Name}: {Cases} cases, {Parsed} parsed, {Rejected} library exceptions, max {MaxAllocatedBytes / 1024} KiB allocated, slowest {Slowest.TotalMilliseconds:F1} ms";
}

/// <summary>
/// A deterministic fuzz driver on CsCheck generators. Case i is generated from <c>new PCG(stream, seed + i)</c>,
/// so every run (and CI) sees exactly the same inputs; a failure names the case's PCG so it can be replayed
/// alone. Each case runs on a worker thread with a timeout (a hang fails the test instead of stalling it) and
/// its allocations are measured (<see cref="GC.GetAllocatedBytesForCurrentThread"/>) against a bound.
/// </summary>
internal static class Fuzz
{
    /// <summary>Per-case wall-clock limit: generous for a slow shared CI machine; real cases take milliseconds.</summary>
    public static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Bytes that matter to the formats under test, inserted more often than random bytes.</summary>
    private static readonly byte[] Special = "\n\r\t ,:;\"'{}[]|-+.eE0123456789\\"u8.ToArray();

    private static readonly string[] Tokens =
    [
        "1e999", "-1e999", "99999999999999999999999999", "-9223372036854775809", "NaN", "Infinity", "-0", "0x1F",
        "18446744073709551616", "1e-400", "\"\"", "null", "true", "[]", "{}", "\"\\ud800\"", "\\u0000", "label",
    ];

    public static Gen<Mutation> MutationGen { get; } =
        Gen.Select(Gen.Int[0, 9], Gen.Double[0, 1], Gen.Int[1, 64], Gen.Byte, Gen.Int[0, 1 << 20],
            (k, at, len, b, pick) => new Mutation(k, at, len, b, pick));

    /// <summary>1 to 4 mutations of <paramref name="seed"/>.</summary>
    public static Gen<byte[]> Mutated(byte[] seed) =>
        MutationGen.Array[1, 4].Select(ms => Apply(seed, ms));

    public static byte[] Apply(byte[] input, IEnumerable<Mutation> mutations)
    {
        var b = new List<byte>(input);
        foreach (var m in mutations)
        {
            int at = (int)(m.At * b.Count);
            switch (m.Kind)
            {
                case 0: // flip one bit
                    if (b.Count > 0) { int i = Math.Min(at, b.Count - 1); b[i] ^= (byte)(1 << (m.Pick % 8)); }
                    break;
                case 1: // overwrite a byte
                    if (b.Count > 0) b[Math.Min(at, b.Count - 1)] = m.Value;
                    break;
                case 2: // insert a format-significant byte (delimiter, quote, colon, line break…)
                    b.Insert(at, Special[m.Pick % Special.Length]);
                    break;
                case 3: // delete a range
                    b.RemoveRange(Math.Min(at, b.Count), Math.Min(m.Length, b.Count - Math.Min(at, b.Count)));
                    break;
                case 4: // truncate
                    b.RemoveRange(at, b.Count - at);
                    break;
                case 5: // duplicate a range
                {
                    int n = Math.Min(m.Length, b.Count - at);
                    if (n > 0) b.InsertRange(at, b.GetRange(at, n));
                    break;
                }
                case 6: // a huge or odd number / literal
                    b.InsertRange(at, Encoding.UTF8.GetBytes(Tokens[m.Pick % Tokens.Length]));
                    break;
                case 7: // invalid UTF-8 (lone continuation, overlong, surrogate, 0xFF)
                    byte[][] bad = [[0x80], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xFF], [0xC3], [0xF4, 0x90, 0x80, 0x80]];
                    b.InsertRange(at, bad[m.Pick % bad.Length]);
                    break;
                case 8: // a long run (a long field or a long line), up to 64 KiB
                    b.InsertRange(at, Enumerable.Repeat(Special[m.Pick % Special.Length] is (byte)'\n' or (byte)'\r' ? (byte)'x' : m.Value, m.Length * 1024));
                    break;
                default: // insert a random byte
                    b.Insert(at, m.Value);
                    break;
            }
        }
        return b.ToArray();
    }

    /// <summary>Random text over <paramref name="alphabet"/>: 1–<paramref name="maxLines"/> lines of up to 80 characters.</summary>
    public static Gen<byte[]> RandomText(string alphabet, int maxLines = 8) =>
        Gen.Char[alphabet].Array[0, 80].Select(cs => new string(cs)).Array[1, maxLines]
            .Select(lines => Encoding.UTF8.GetBytes(string.Join('\n', lines)));

    /// <summary>
    /// Runs <paramref name="iterations"/> cases of <paramref name="gen"/>. <paramref name="attempt"/> returns normally
    /// when the input parsed; any exception must satisfy <paramref name="isLibraryError"/> (the library's own type,
    /// naming the input) or the case fails. Allocation beyond <paramref name="maxAllocatedBytes"/> fails too.
    /// </summary>
    public static FuzzTally Run<T>(string name, Gen<T> gen, int iterations, ulong seed, Action<T> attempt,
        Func<Exception, string?> isLibraryError, long maxAllocatedBytes = 64L << 20, Func<T, string>? describe = null)
    {
        var tally = new FuzzTally(name);
        for (int i = 0; i < iterations; i++)
        {
            var pcg = new PCG(7, seed + (ulong)i);
            string replay = pcg.ToString();
            T value = gen.Generate(pcg, null!, out _);
            var (ok, problem, allocated, elapsed) = RunOne(() => attempt(value), isLibraryError);
            if (problem is not null)
                NUnit.Framework.Assert.Fail($"{name}, case {i} (PCG {replay}): {problem}\ninput: {describe?.Invoke(value) ?? Show(value)}");
            if (allocated > maxAllocatedBytes)
                NUnit.Framework.Assert.Fail($"{name}, case {i} (PCG {replay}): allocated {allocated} bytes, over the bound {maxAllocatedBytes}\ninput: {describe?.Invoke(value) ?? Show(value)}");
            tally.Add(ok, allocated, elapsed);
        }
        NUnit.Framework.TestContext.Out.WriteLine(tally);
        return tally;
    }

    /// <summary>One case on its own thread: (parsed, failure text or null, bytes allocated, elapsed).</summary>
    public static (bool Parsed, string? Problem, long Allocated, TimeSpan Elapsed) RunOne(Action attempt, Func<Exception, string?> isLibraryError)
    {
        bool parsed = false;
        string? problem = null;
        long allocated = 0;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var thread = new Thread(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                attempt();
                parsed = true;
            }
            catch (Exception e)
            {
                problem = isLibraryError(e);
            }
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }, maxStackSize: 16 << 20) { IsBackground = true };
        thread.Start();
        if (!thread.Join(CaseTimeout))
            return (false, $"did not finish within {CaseTimeout.TotalSeconds} s (a hang)", 0, sw.Elapsed);
        return (parsed, problem, allocated, sw.Elapsed);
    }

    /// <summary>Null when <paramref name="e"/> is <typeparamref name="TLibrary"/> and passes <paramref name="check"/>; else why not.</summary>
    public static string? Expect<TLibrary>(Exception e, Func<TLibrary, string?> check) where TLibrary : Exception =>
        e is TLibrary lib ? check(lib) : $"raised {e.GetType().Name} instead of {typeof(TLibrary).Name}: {e}";

    private static string Show<T>(T value) => value switch
    {
        byte[] bytes => bytes.Length <= 600 ? Convert.ToBase64String(bytes) + " = " + Encoding.UTF8.GetString(bytes).Replace("\n", "⏎")
            : $"{bytes.Length} bytes starting " + Encoding.UTF8.GetString(bytes, 0, 300).Replace("\n", "⏎"),
        _ => value?.ToString() ?? "null",
    };
}
