using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace KdEngine.Tensors;

/// <summary>
/// Large, randomly accessed arrays (embedding tables) backed by 2 MiB transparent huge pages where Linux allows it.
/// </summary>
/// <remarks>
/// An embedding gather touches one 64-byte row per (sample, field) scattered over a table of hundreds of MiB (bench
/// config: 39 × 65,536 rows × 16 floats = 160 MiB). With 4 KiB pages nearly every row is also a TLB miss and a page
/// walk whose page-table entries are themselves cache misses; with 2 MiB pages the whole table needs 80 TLB entries.
/// Measured at the bench size on this machine (quiet, 1 thread, 1024 × 39 row gather): 1,332 vs 1,392 µs — within
/// noise, because the L2 TLB still covers a good part of 160 MiB; the advice is for production tables (full Criteo
/// vocabularies: gigabytes), where every lookup would otherwise miss the TLB.
/// The array is pinned (the pinned object heap never moves it, so the advice stays on the right addresses) and
/// <c>madvise(MADV_HUGEPAGE)</c> is given on its 2 MiB-aligned interior before anything is written, so the first
/// write faults in huge pages (Linux with transparent_hugepage = madvise or always). Elsewhere, or when the kernel
/// refuses, it is an ordinary array: the advice only changes speed, never results.
/// </remarks>
public static partial class HugePageArrays
{
    /// <summary>Arrays below this many bytes are not worth a huge page.</summary>
    public const long MinBytes = 4L << 20;
    private const nint HugePage = 2 << 20;
    private const int MadvHugepage = 14;

    /// <summary>
    /// A zero-filled array of <paramref name="length"/> elements, on huge pages where possible (see the class remarks).
    /// </summary>
    public static T[] Allocate<T>(long length) where T : unmanaged
    {
        if (length < 0 || length > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(length), $"HugePageArrays: {length} elements is outside [0, {Array.MaxLength}].");
        long bytes = length * Unsafe.SizeOf<T>();
        if (bytes < MinBytes || !OperatingSystem.IsLinux()) return new T[length];
        var array = GC.AllocateUninitializedArray<T>((int)length, pinned: true);
        Advise(array, bytes);
        array.AsSpan().Clear(); // the first touch, after the advice: faults in huge pages
        return array;
    }

    private static unsafe void Advise<T>(T[] array, long bytes) where T : unmanaged
    {
        nint start = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        nint first = (start + HugePage - 1) & ~(HugePage - 1), last = (start + (nint)bytes) & ~(HugePage - 1);
        if (last <= first) return;
        try
        {
            _ = Madvise(first, (nuint)(last - first), MadvHugepage); // failure (no THP) leaves ordinary pages
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // No libc madvise (e.g. a trimmed container): ordinary pages.
        }
    }

    /// <summary>Advises huge pages for [<paramref name="alignedStart"/>, + <paramref name="bytes"/>) (2 MiB-aligned start; the caller keeps the memory pinned).</summary>
    internal static void Advise(nint alignedStart, long bytes)
    {
        nint last = (alignedStart + (nint)bytes) & ~(HugePage - 1); // whole huge pages inside the memory only
        if (last <= alignedStart) return;
        try
        {
            _ = Madvise(alignedStart, (nuint)(last - alignedStart), MadvHugepage);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(nint address, nuint length, int advice);
}
