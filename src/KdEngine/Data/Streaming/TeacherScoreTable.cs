using System.IO.MemoryMappedFiles;

namespace KdEngine.Data;

/// <summary>
/// K columns of external teacher logits over the rows of a data file, read in place from memory-mapped files: row r of
/// column k is the float32 at <c>offset + r·stride</c> of column k's file (a teacher-logit cache's <c>logits</c> tensor,
/// or a temporary file of [rows, K'] scores written by a streaming pass). The streamed training batches look each row's
/// scores up by its ordinal (<see cref="Batch.Rows"/>), so the shuffle buffer never carries them and no score is held
/// in the process's own memory: the mapped pages belong to the page cache, which the system can drop and read again.
/// </summary>
public sealed unsafe class TeacherScoreTable : IDisposable
{
    private readonly Column[] _columns;
    private bool _disposed;

    private TeacherScoreTable(Column[] columns, long rows, IReadOnlyList<string> names)
    {
        _columns = columns;
        Rows = rows;
        Names = names;
    }

    /// <summary>K: the teacher-logit columns.</summary>
    public int Count => _columns.Length;

    /// <summary>Rows every column holds.</summary>
    public long Rows { get; }

    /// <summary>Each column's name (the file or data column its scores came from), for messages.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>Where one column's scores lie: a file, the byte offset of row 0 and the bytes from one row to the next.</summary>
    /// <param name="Path">The file.</param>
    /// <param name="Offset">Byte offset of row 0's float32.</param>
    /// <param name="Stride">Bytes from row r to row r + 1 (4 for a plain float32 column).</param>
    /// <param name="Name">A name for messages.</param>
    /// <param name="DeleteOnClose">Whether the file is a temporary one, deleted when the table is disposed.</param>
    public sealed record ColumnFile(string Path, long Offset, int Stride, string Name, bool DeleteOnClose = false);

    /// <summary>
    /// Maps the columns (each must hold <paramref name="rows"/> rows). Temporary files are deleted on
    /// <see cref="Dispose"/> (and, for those not yet mapped, when mapping fails).
    /// </summary>
    public static TeacherScoreTable Map(IReadOnlyList<ColumnFile> files, long rows)
    {
        ArgumentNullException.ThrowIfNull(files);
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        var columns = new Column[files.Count];
        try
        {
            for (int k = 0; k < files.Count; k++) columns[k] = Column.Open(files[k], rows);
        }
        catch
        {
            foreach (var c in columns) c?.Dispose();
            foreach (var f in files)
                if (f.DeleteOnClose) try { File.Delete(f.Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
        return new TeacherScoreTable(columns, rows, files.Select(f => f.Name).ToArray());
    }

    /// <summary>Writes row <paramref name="row"/>'s K logits into <paramref name="destination"/> [K].</summary>
    public void Read(long row, Span<float> destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((ulong)row >= (ulong)Rows)
            throw new ArgumentOutOfRangeException(nameof(row), $"teacher scores: row {row} is outside the {Rows} rows the scores cover.");
        for (int k = 0; k < _columns.Length; k++) destination[k] = _columns[k].At(row);
    }

    /// <summary>Unmaps the files and deletes the temporary ones.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var c in _columns) c.Dispose();
    }

    private sealed class Column : IDisposable
    {
        private readonly MemoryMappedFile? _map;
        private readonly MemoryMappedViewAccessor? _view;
        private readonly byte* _base;
        private readonly int _stride;
        private readonly ColumnFile _file;

        private Column(ColumnFile file, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePtr)
        {
            _file = file;
            _map = map;
            _view = view;
            _base = basePtr;
            _stride = file.Stride;
        }

        public static Column Open(ColumnFile file, long rows)
        {
            if (file.Stride < 4) throw new ArgumentOutOfRangeException(nameof(file), $"{file.Name}: a stride of {file.Stride} bytes cannot hold a float32.");
            long length = new FileInfo(file.Path).Length;
            long needed = rows == 0 ? 0 : file.Offset + (rows - 1) * file.Stride + 4;
            if (file.Offset < 0 || needed > length)
                throw new DataFormatException($"the file holds {length} bytes, too few for {rows} teacher scores from byte {file.Offset}", System.IO.Path.GetFileName(file.Path));
            if (rows == 0) return new Column(file, null, null, null);
            var map = MemoryMappedFile.CreateFromFile(file.Path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            MemoryMappedViewAccessor? view = null;
            try
            {
                view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
                byte* ptr = null;
                view.SafeMemoryMappedViewHandle.AcquirePointer(ref ptr);
                return new Column(file, map, view, ptr + view.PointerOffset + file.Offset);
            }
            catch
            {
                view?.Dispose();
                map.Dispose();
                throw;
            }
        }

        public float At(long row) =>
            BitConverter.IsLittleEndian ? System.Runtime.CompilerServices.Unsafe.ReadUnaligned<float>(_base + row * _stride)
                : BitConverter.Int32BitsToSingle(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(System.Runtime.CompilerServices.Unsafe.ReadUnaligned<int>(_base + row * _stride)));

        public void Dispose()
        {
            if (_view is not null)
            {
                _view.SafeMemoryMappedViewHandle.ReleasePointer();
                _view.Dispose();
            }
            _map?.Dispose();
            if (_file.DeleteOnClose) try { File.Delete(_file.Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
