using System.Reflection;
using System.Runtime.InteropServices;
using Isolation.Platform;

namespace Isolation.Interop;

internal static partial class Interop
{
    // Runs before the first call into any import of this class (an explicit static constructor makes the type
    // initialize on first use of a static method), so every load of libIsolationNative that could fail goes through
    // Resolve. Where the library lies beside the executable (a published or NativeAOT application), the runtime's
    // own probing finds it and the resolver is not needed: registering it reads the assembly's metadata
    // (typeof(...).Assembly), which costs a NativeAOT application (isolate) ~0.5 ms of its start.
    static Interop()
    {
        if (OperatingSystem.IsLinux() && NativeLibraryBesideExecutable())
            return;
        System.Runtime.InteropServices.NativeLibrary.SetDllImportResolver(typeof(Interop).Assembly, Resolve);
    }

    /// <summary>
    /// Whether libIsolationNative.so is in the executable's directory: one readlink and one access, where
    /// AppContext.BaseDirectory would resolve every component of the path.
    /// </summary>
    private static unsafe bool NativeLibraryBesideExecutable()
    {
        const int Size = 4096;
        byte* path = stackalloc byte[Size];
        ReadOnlySpan<byte> name = "/libIsolationNative.so\0"u8;
        nint length;
        fixed (byte* self = "/proc/self/exe\0"u8)
            length = (nint)Tmds.Linux.LibC.readlink(self, path, Size);
        if (length <= 0 || length >= Size)
            return false;
        int slash = new ReadOnlySpan<byte>(path, (int)length).LastIndexOf((byte)'/');
        if (slash < 0 || slash + name.Length > Size)
            return false;
        name.CopyTo(new Span<byte>(path + slash, Size - slash));
        return Tmds.Linux.LibC.access(path, Tmds.Linux.LibC.F_OK) == 0;
    }

    /// <summary>
    /// Loads libIsolationNative the way the runtime would; when it cannot, fails with one sentence
    /// (<see cref="PlatformSupport.NativeLibraryMissing"/>) instead of a DllNotFoundException listing every probed path.
    /// </summary>
    /// <returns>The library's handle; 0 for other libraries (the runtime's own probing then runs).</returns>
    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != NativeLibrary)
            return 0;
        PlatformSupport.EnsureLinux();
        if (System.Runtime.InteropServices.NativeLibrary.TryLoad(name, assembly, searchPath, out nint handle))
            return handle;
        throw PlatformSupport.NativeLibraryMissing(RuntimeInformation.RuntimeIdentifier, RuntimeInformation.ProcessArchitecture, LoadError());
    }

    /// <summary>The loader's error for a copy of the library that exists but does not load (a too old glibc, another architecture).</summary>
    private static string? LoadError()
    {
        string dir = AppContext.BaseDirectory;
        foreach (string candidate in new[] { Path.Combine(dir, "libIsolationNative.so"), Path.Combine(dir, "runtimes", RuntimeInformation.RuntimeIdentifier, "native", "libIsolationNative.so") })
        {
            if (!File.Exists(candidate))
                continue;
            try
            {
                System.Runtime.InteropServices.NativeLibrary.Free(System.Runtime.InteropServices.NativeLibrary.Load(candidate));
            }
            catch (DllNotFoundException e)
            {
                return e.Message;
            }
            catch (BadImageFormatException e)
            {
                return e.Message;
            }
        }
        return null;
    }
}
