using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using KdEngine.Tensors;
using NUnit.Framework;

namespace KdEngine.Tests.Tensors;

public class HugePageArraysTests
{
    [TestCase(0)]
    [TestCase(7)]
    [TestCase(3 << 20)] // 12 MiB of floats: the huge-page path
    public void Allocate_returns_a_zero_filled_array_of_the_length(int length)
    {
        var a = HugePageArrays.Allocate<float>(length);
        Assert.That(a, Has.Length.EqualTo(length));
        Assert.That(a.All(v => v == 0f), Is.True);
    }

    [Test]
    public void Allocate_rejects_lengths_no_array_can_have()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => HugePageArrays.Allocate<float>(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => HugePageArrays.Allocate<float>((long)int.MaxValue + 1));
    }

    [Test]
    public unsafe void A_large_array_is_backed_by_huge_pages_where_linux_offers_them()
    {
        const string setting = "/sys/kernel/mm/transparent_hugepage/enabled";
        if (!OperatingSystem.IsLinux() || !File.Exists(setting) || File.ReadAllText(setting).Contains("[never]"))
            Assert.Ignore("transparent huge pages are not available here; the arrays are ordinary (only speed differs).");
        var a = HugePageArrays.Allocate<float>(16 << 20); // 64 MiB
        a[12345] = 1f;
        // madvise splits the mapping: the advised, 2 MiB-aligned interior is its own smaps entry; look 4 MiB in.
        ulong address = (ulong)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(a)) + (4u << 20);
        long hugeKb = AnonHugePagesKbOfMappingContaining(address);
        Assert.That(hugeKb, Is.GreaterThanOrEqualTo(2048), $"the mapping holding the array has {hugeKb} kB on huge pages");
        GC.KeepAlive(a);
    }

    /// <summary>AnonHugePages of the /proc/self/smaps entry whose address range holds <paramref name="address"/>.</summary>
    private static long AnonHugePagesKbOfMappingContaining(ulong address)
    {
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-');
            int space = line.IndexOf(' ');
            if (dash > 0 && space > dash && ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, null, out ulong lo)
                && ulong.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, null, out ulong hi))
            {
                inside = address >= lo && address < hi;
                continue;
            }
            if (inside && line.StartsWith("AnonHugePages:", StringComparison.Ordinal))
                return long.Parse(line["AnonHugePages:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        }
        return -1;
    }
}
