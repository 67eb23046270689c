using System.Runtime.CompilerServices;

namespace KdEngine.Data;

/// <summary>
/// Open-addressing map from a 64-bit value hash to a small unmanaged value (an id, a count): linear probing over
/// power-of-two arrays, at most half full. The keys are already well mixed (<see cref="StableHash.OfValue(ReadOnlySpan{byte})"/>),
/// so the low bits index the table directly. Key 0 marks an empty slot; the value of key 0 itself is kept aside.
/// </summary>
internal sealed class HashMap64<TValue> where TValue : unmanaged
{
    private ulong[] _keys;
    private TValue[] _values;
    private int _mask;
    private bool _hasZero;
    private TValue _zeroValue;

    public HashMap64(int capacity = 16)
    {
        int size = 16;
        while (size < capacity * 2L && size < (1 << 30)) size <<= 1;
        _keys = new ulong[size];
        _values = new TValue[size];
        _mask = size - 1;
    }

    public int Count { get; private set; }

    /// <summary>Bytes held by the table's arrays (for memory reports).</summary>
    public long Bytes => (long)_keys.Length * (8 + Unsafe.SizeOf<TValue>());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGetValue(ulong key, out TValue value)
    {
        if (key == 0)
        {
            value = _zeroValue;
            return _hasZero;
        }
        var keys = _keys;
        int mask = _mask;
        int i = (int)key & mask;
        while (true)
        {
            ulong k = keys[i];
            if (k == key) { value = _values[i]; return true; }
            if (k == 0) { value = default; return false; }
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
        var keys = _keys;
        int mask = _mask;
        int i = (int)key & mask;
        while (true)
        {
            ulong k = keys[i];
            if (k == key) { existed = true; return ref _values[i]; }
            if (k == 0) break;
            i = (i + 1) & mask;
        }
        existed = false;
        if ((Count + 1) * 2 > keys.Length)
        {
            Grow();
            return ref GetOrAdd(key, out _);
        }
        keys[i] = key;
        Count++;
        return ref _values[i];
    }

    private void Grow()
    {
        var oldKeys = _keys;
        var oldValues = _values;
        int size = oldKeys.Length * 2;
        _keys = new ulong[size];
        _values = new TValue[size];
        _mask = size - 1;
        for (int j = 0; j < oldKeys.Length; j++)
        {
            ulong key = oldKeys[j];
            if (key == 0) continue;
            int i = (int)key & _mask;
            while (_keys[i] != 0) i = (i + 1) & _mask;
            _keys[i] = key;
            _values[i] = oldValues[j];
        }
    }

    /// <summary>Every (key, value) pair, in table order (not a stable order: sort before relying on it).</summary>
    public IEnumerable<(ulong Key, TValue Value)> Entries()
    {
        if (_hasZero) yield return (0, _zeroValue);
        for (int i = 0; i < _keys.Length; i++)
            if (_keys[i] != 0) yield return (_keys[i], _values[i]);
    }

    /// <summary>Copies the entries into the spans (each at least <see cref="Count"/> long); returns the count.</summary>
    public int CopyTo(Span<ulong> keys, Span<TValue> values)
    {
        int n = 0;
        if (_hasZero) { keys[n] = 0; values[n] = _zeroValue; n++; }
        for (int i = 0; i < _keys.Length; i++)
        {
            if (_keys[i] == 0) continue;
            keys[n] = _keys[i];
            values[n] = _values[i];
            n++;
        }
        return n;
    }
}
