using System.Reflection;
using System.Runtime.InteropServices;

namespace KdEngine.Distributed.Native;

/// <summary>
/// Loads Open MPI's libmpi once, on first use only (a process that never trains distributed never touches it, so
/// everything works where Open MPI is not installed). The library is opened with RTLD_NOW | RTLD_GLOBAL, as mpi4py
/// does: Open MPI dlopen()s its components (mca_*.so), which resolve symbols of libmpi / libopen-pal from the global
/// scope; .NET's own loader opens libraries RTLD_LOCAL. The [LibraryImport]s of <see cref="MpiNative"/> are then
/// pointed at this handle by a DllImport resolver.
/// </summary>
internal static unsafe class MpiLibrary
{
    /// <summary>Environment variable naming another libmpi file (e.g. an Open MPI built under /opt).</summary>
    public const string PathVariable = "KDENGINE_MPI_LIBRARY";

    private const int RtldNow = 0x2, RtldGlobal = 0x100;
    private static readonly Lock Gate = new();
    private static nint _handle;
    private static MpiAbi? _abi;

    /// <summary>The handle table of the loaded library; loads it on the first call.</summary>
    public static MpiAbi Load()
    {
        lock (Gate)
        {
            if (_abi is not null) return _abi;
            string path = Environment.GetEnvironmentVariable(PathVariable) is { Length: > 0 } p ? p : MpiNative.Library;
            var libc = NativeLibrary.Load("libc.so.6");
            var dlopen = (delegate* unmanaged<byte*, int, nint>)NativeLibrary.GetExport(libc, "dlopen");
            var dlerror = (delegate* unmanaged<byte*>)NativeLibrary.GetExport(libc, "dlerror");
            var setenv = (delegate* unmanaged<byte*, byte*, int, int>)NativeLibrary.GetExport(libc, "setenv");

            // Open MPI would install its own SIGSEGV/SIGBUS/SIGFPE handlers (to print a stack trace), replacing the
            // ones .NET turns into NullReferenceException; an empty opal_signal list keeps .NET's. It must be in the
            // native environment (Environment.SetEnvironmentVariable only changes .NET's copy) before MPI_Init.
            SetNative(setenv, "OMPI_MCA_opal_signal", "");

            nint handle;
            var utf8 = System.Text.Encoding.UTF8.GetBytes(path + "\0");
            fixed (byte* name = utf8) handle = dlopen(name, RtldNow | RtldGlobal);
            if (handle == 0)
            {
                string why = Marshal.PtrToStringUTF8((nint)dlerror()) ?? "unknown dlopen error";
                throw new MpiUnavailableException(
                    $"this process was started by mpirun, but Open MPI's library '{path}' could not be loaded ({why}). " +
                    "Install Open MPI on every node (Debian/Ubuntu: apt-get install openmpi-bin), or set " + PathVariable + " to its libmpi.so.40.");
            }
            _handle = handle;
            NativeLibrary.SetDllImportResolver(typeof(MpiLibrary).Assembly, Resolve);
            _abi = MpiAbi.OpenMpi(handle);
            return _abi;
        }
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath) =>
        name == MpiNative.Library ? _handle : 0;

    private static void SetNative(delegate* unmanaged<byte*, byte*, int, int> setenv, string name, string value)
    {
        var n = System.Text.Encoding.UTF8.GetBytes(name + "\0");
        var v = System.Text.Encoding.UTF8.GetBytes(value + "\0");
        fixed (byte* pn = n)
        fixed (byte* pv = v)
            setenv(pn, pv, 0); // 0: a value the user set explicitly wins
    }
}
