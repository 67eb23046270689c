using System.Runtime.InteropServices;

namespace KdEngine.Distributed.Native;

/// <summary>
/// The MPI functions KdEngine calls, bound with [LibraryImport] to <see cref="Library"/>. Handles (communicator,
/// datatype, op) are passed as pointer-sized values whose meaning belongs to the implementation
/// (<see cref="MpiAbi"/>); requests are pointer-sized too. Every function returns an MPI error code (0 = success;
/// MPI's default error handler aborts the job before a non-zero code could come back). Blocking collectives are not
/// bound on purpose: every collective is started non-blocking and completed by polling <see cref="MPI_Test"/>
/// against a deadline (<see cref="MpiProcessGroup"/>), so a dead or hung rank cannot hang its peers forever.
/// </summary>
internal static unsafe partial class MpiNative
{
    /// <summary>The soname the imports name; <see cref="MpiLibrary"/> resolves it (RTLD_GLOBAL) to the file actually loaded.</summary>
    public const string Library = "libmpi.so.40";

    public const int ThreadFunneled = 1; // MPI_THREAD_FUNNELED: only the thread that initialised MPI calls it

    [LibraryImport(Library)] public static partial int MPI_Init_thread(int* argc, byte*** argv, int required, int* provided);
    [LibraryImport(Library)] public static partial int MPI_Initialized(int* flag);
    [LibraryImport(Library)] public static partial int MPI_Finalized(int* flag);
    [LibraryImport(Library)] public static partial int MPI_Finalize();
    [LibraryImport(Library)] public static partial int MPI_Abort(nint comm, int errorCode);
    [LibraryImport(Library)] public static partial int MPI_Comm_rank(nint comm, int* rank);
    [LibraryImport(Library)] public static partial int MPI_Comm_size(nint comm, int* size);
    [LibraryImport(Library)] public static partial int MPI_Get_library_version(byte* version, int* length);

    [LibraryImport(Library)]
    public static partial int MPI_Iallreduce(void* send, void* receive, int count, nint type, nint op, nint comm, nint* request);

    [LibraryImport(Library)]
    public static partial int MPI_Ibcast(void* buffer, int count, nint type, int root, nint comm, nint* request);

    [LibraryImport(Library)]
    public static partial int MPI_Iallgather(void* send, int sendCount, nint sendType, void* receive, int receiveCount, nint receiveType, nint comm, nint* request);

    [LibraryImport(Library)]
    public static partial int MPI_Iallgatherv(void* send, int sendCount, nint sendType, void* receive, int* receiveCounts, int* displacements,
        nint receiveType, nint comm, nint* request);

    [LibraryImport(Library)]
    public static partial int MPI_Ialltoall(void* send, int sendCount, nint sendType, void* receive, int receiveCount, nint receiveType, nint comm, nint* request);

    [LibraryImport(Library)]
    public static partial int MPI_Ialltoallv(void* send, int* sendCounts, int* sendDisplacements, nint sendType,
        void* receive, int* receiveCounts, int* receiveDisplacements, nint receiveType, nint comm, nint* request);

    [LibraryImport(Library)]
    public static partial int MPI_Igatherv(void* send, int sendCount, nint sendType, void* receive, int* receiveCounts, int* displacements,
        nint receiveType, int root, nint comm, nint* request);

    [LibraryImport(Library)] public static partial int MPI_Test(nint* request, int* flag, void* status);
    [LibraryImport(Library)] public static partial int MPI_Cancel(nint* request);
    [LibraryImport(Library)] public static partial int MPI_Request_free(nint* request);

    [LibraryImport(Library)]
    public static partial int MPI_Isend(void* buffer, int count, nint type, int destination, int tag, nint comm, nint* request);

    [LibraryImport(Library)]
    public static partial int MPI_Irecv(void* buffer, int count, nint type, int source, int tag, nint comm, nint* request);

    [LibraryImport(Library)] public static partial int MPI_Iprobe(int source, int tag, nint comm, int* flag, void* status);

    [LibraryImport(Library)]
    public static partial int MPI_Recv(void* buffer, int count, nint type, int source, int tag, nint comm, void* status);
}
