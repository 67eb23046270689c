using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace KdEngine.Data;

/// <summary>
/// Open-addressing map from a 64-bit value hash to a small unmanaged value (an id, a count): linear probing over a
/// power-of-two array of (key, value) slots, at most half full, so a lookup usually touches one cache line. The keys
/// are already well mixed (<see cref="StableHash.OfValue(ReadOnlySpan{byte})"/>), so the low bits index the table
/// directly. Key 0 marks an empty slot; the value of key 0 itself is kept aside. <see cref="Prefetch"/> lets a caller
/// start the memory loads of many lookups (a row's fields) before doing them.
/// </summary>
internal sealed class HashMap64<TValue> where TValue : unmanaged
{
    private struct Entry
    {
        public ulong Key;
        public TValue Value;
    }

    private Entry[] _entries;
    private int _offset; // first slot: past the start of a pinned array, at a 2 MiB boundary (huge pages; see Allocate)
    private int _mask;
    private bool _hasZero;
    private TValue _zeroValue;

    public HashMap64(int capacity = 16)
    {
        int size = 16;
        while (size < capacity * 2L && size < (1 << 30)) size <<= 1;
        (_entries, _offset) = Allocate(size);
        _mask = size - 1;
    }

    /// <summary>
    /// Tables of 2 MiB and more live on transparent huge pages: lookups land on random slots of tens of MiB (a row's
    /// fields), so with 4 KiB pages each one is also a TLB miss, and a software prefetch that misses the TLB may be
    /// dropped. The array is pinned, over-allocated by 2 MiB (untouched, so not resident), and the slots start at its first 2 MiB boundary, advised
    /// <c>MADV_HUGEPAGE</c> before the first write (see <see cref="Tensors.HugePageArrays"/>).
    /// </summary>
    private static unsafe (Entry[] Entries, int Offset) Allocate(int size)
    {
        long bytes = (long)size * Unsafe.SizeOf<Entry>();
        const int Huge = 2 << 20;
        if (bytes < Huge || !OperatingSystem.IsLinux()) return (new Entry[size], 0);
        int extra = Huge / Unsafe.SizeOf<Entry>();
        var array = GC.AllocateUninitializedArray<Entry>(size + extra, pinned: true);
        nint start = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        nint aligned = (start + Huge - 1) & ~(nint)(Huge - 1);
        int offset = (int)((aligned - start) / Unsafe.SizeOf<Entry>());
        if ((aligned - start) % Unsafe.SizeOf<Entry>() != 0) return (new Entry[size], 0);
        Tensors.HugePageArrays.Advise(aligned, bytes);
        // Only the slots are written: the 2 MiB of slack around them is never touched, so its pages never become
        // resident (clearing the whole array cost 2 MiB of memory per table: 78 MB for 39 vocabularies).
        array.AsSpan(offset, size).Clear();
        return (array, offset);
    }

    public int Count { get; private set; }

    /// <summary>Bytes held by the table (for memory reports).</summary>
    public long Bytes => (long)_entries.Length * Unsafe.SizeOf<Entry>();

    private Span<Entry> Slots => _entries.AsSpan(_offset, _mask + 1);

    /// <summary>Asks the CPU to start loading the slot of <paramref name="key"/> (a hint; no effect on results).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public unsafe void Prefetch(ulong key)
    {
        if (!Sse.IsSupported) return;
        ref Entry slot = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_entries), (nint)(_offset + (int)((uint)key & (uint)_mask)));
        Sse.Prefetch0(Unsafe.AsPointer(ref slot));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGetValue(ulong key, out TValue value)
    {
        if (key == 0)
        {
            value = _zeroValue;
            return _hasZero;
        }
        var entries = _entries;
        int mask = _mask, offset = _offset;
        int i = (int)key & mask;
        while (true)
        {
            ref Entry e = ref entries[offset + i];
            if (e.Key == key) { value = e.Value; return true; }
            if (e.Key == 0) { value = default; return false; }
            i = (i + 1) & mask;
        }
    }

    /// <summary>A reference to the value of <paramref name="key"/>, added as default when absent.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref TValue GetOrAdd(ulong key, out bool existed)
    {
        if (key == 0)
        {
            existed = _hasZero;
            if (!_hasZero) { _hasZero = true; Count++; }
            return ref _zeroValue;
        }
        var entries = _entries;
        int mask = _mask, offset = _offset;
        int i = (int)key & mask;
        while (true)
        {
            ref Entry e = ref entries[offset + i];
            if (e.Key == key) { existed = true; return ref e.Value; }
            if (e.Key == 0) break;
            i = (i + 1) & mask;
        }
        existed = false;
        if ((Count + 1) * 2 > mask + 1)
        {
            Grow();
            return ref GetOrAdd(key, out _);
        }
        entries[offset + i].Key = key;
        Count++;
        return ref entries[offset + i].Value;
    }

    private void Grow()
    {
        var old = Slots.ToArray();
        int size = (_mask + 1) * 2;
        (_entries, _offset) = Allocate(size);
        _mask = size - 1;
        var slots = Slots;
        foreach (var e in old)
        {
            if (e.Key == 0) continue;
            int i = (int)e.Key & _mask;
            while (slots[i].Key != 0) i = (i + 1) & _mask;
            slots[i] = e;
        }
    }

    /// <summary>Every (key, value) pair, in table order (not a stable order: sort before relying on it).</summary>
    public IEnumerable<(ulong Key, TValue Value)> Entries()
    {
        if (_hasZero) yield return (0, _zeroValue);
        for (int i = 0; i <= _mask; i++)
        {
            var e = _entries[_offset + i];
            if (e.Key != 0) yield return (e.Key, e.Value);
        }
    }

    /// <summary>Copies the entries into the spans (each at least <see cref="Count"/> long); returns the count.</summary>
    public int CopyTo(Span<ulong> keys, Span<TValue> values)
    {
        int n = 0;
        if (_hasZero) { keys[n] = 0; values[n] = _zeroValue; n++; }
        foreach (var e in Slots)
        {
            if (e.Key == 0) continue;
            keys[n] = e.Key;
            values[n] = e.Value;
            n++;
        }
        return n;
    }
}
