using System.Runtime.InteropServices;

namespace KdEngine.Distributed.Native;

/// <summary>
/// The implementation-specific half of MPI: what the predefined handles are and how a status is laid out. The MPI
/// standard fixes names, not values, so each implementation's mpi.h differs: Open MPI's handles are the addresses of
/// exported globals (<c>MPI_COMM_WORLD</c> is <c>&amp;ompi_mpi_comm_world</c>), resolved here with
/// <see cref="NativeLibrary.GetExport"/>; MPICH's are integer constants (MPI.NET's msmpi.dll assumption, which is why
/// MPI.NET crashes inside MPI_Init on Open MPI). This is the one place that knows; an MPICH table (libmpi.so.12,
/// constants from its mpi.h, MPI_ANY_SOURCE = −2, status source at byte 8) would be a second factory here.
/// </summary>
internal sealed class MpiAbi
{
    public required string Implementation { get; init; }
    public required nint CommWorld { get; init; }
    public required nint Byte { get; init; }
    public required nint Int { get; init; }
    public required nint Float { get; init; }
    public required nint Double { get; init; }
    public required nint LongLong { get; init; }
    public required nint OpSum { get; init; }
    public required nint OpMin { get; init; }
    /// <summary>MPI_IN_PLACE: the send-buffer sentinel for in-place collectives.</summary>
    public required nint InPlace { get; init; }
    public required int AnySource { get; init; }
    /// <summary>Byte offset of MPI_SOURCE in MPI_Status.</summary>
    public required int StatusSourceOffset { get; init; }
    /// <summary>sizeof(MPI_Status) (callers reserve <see cref="StatusCapacity"/> bytes, which covers every implementation).</summary>
    public required int StatusBytes { get; init; }

    public const int StatusCapacity = 64;

    /// <summary>Open MPI (4.x, libmpi.so.40): handles are the addresses of its predefined objects.</summary>
    public static MpiAbi OpenMpi(nint library)
    {
        nint Export(string name) => NativeLibrary.TryGetExport(library, name, out var address) ? address
            : throw new MpiUnavailableException($"{MpiNative.Library} has no export '{name}': it is not Open MPI (KdEngine binds Open MPI's handle table).");
        return new MpiAbi
        {
            Implementation = "Open MPI",
            CommWorld = Export("ompi_mpi_comm_world"),
            Byte = Export("ompi_mpi_byte"),
            Int = Export("ompi_mpi_int"),
            Float = Export("ompi_mpi_float"),
            Double = Export("ompi_mpi_double"),
            LongLong = Export("ompi_mpi_long_long_int"),
            OpSum = Export("ompi_mpi_op_sum"),
            OpMin = Export("ompi_mpi_op_min"),
            InPlace = 1,          // #define MPI_IN_PLACE ((void *) 1)
            AnySource = -1,       // #define MPI_ANY_SOURCE -1
            StatusSourceOffset = 0, // struct ompi_status_public_t { int MPI_SOURCE; int MPI_TAG; int MPI_ERROR; int _cancelled; size_t _ucount; }
            StatusBytes = 24,
        };
    }
}

/// <summary>MPI cannot be used here: the library is missing or is not the implementation KdEngine binds.</summary>
public sealed class MpiUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
