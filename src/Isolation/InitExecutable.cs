using System.Runtime.InteropServices;
using System.Text;
using static Isolation.Interop.Interop;

namespace Isolation;

/// <summary>
/// isolation-init, the minimal PID 1 of <see cref="NamespaceBuilder.WithInit"/>: shipped beside the shim,
/// loaded once per process into a sealed memfd that the child exec's (DESIGN.md §3).
/// </summary>
internal static unsafe class InitExecutable
{
    public const string Name = "isolation-init";
    private static readonly Lock s_lock = new();
    private static int s_fd = -1;
    private static string? s_path;

    public static string? Path => s_path;

    public static int GetFd()
    {
        if (Volatile.Read(ref s_fd) >= 0)
            return s_fd;
        lock (s_lock)
        {
            if (s_fd >= 0)
                return s_fd;
            string path = Locate();
            s_path = path;
            byte[] bytes = Encoding.UTF8.GetBytes(path + "\0");
            int fd;
            fixed (byte* p = bytes)
                fd = IsolationNative_OpenInitMemfd(p);
            if (fd < 0)
                throw new SandboxSetupException(SetupStep.LoadInit, $"load {path}", -fd, path, "the init ships beside libIsolationNative.so; reinstall the package or rebuild");
            Volatile.Write(ref s_fd, fd);
            return fd;
        }
    }

    private static string Locate()
    {
        var candidates = new List<string>();
        byte* library = IsolationNative_LibraryPath();
        if (library is not null && Marshal.PtrToStringUTF8((nint)library) is { } libraryPath && System.IO.Path.GetDirectoryName(libraryPath) is { } dir)
            candidates.Add(System.IO.Path.Combine(dir, Name));
        candidates.Add(System.IO.Path.Combine(AppContext.BaseDirectory, Name));
        string arch = RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();
        candidates.Add(System.IO.Path.Combine(AppContext.BaseDirectory, "runtimes", $"linux-{arch}", "native", Name));
        foreach (string candidate in candidates)
        {
            if (File.Exists(candidate))
                return candidate;
        }
        throw new SandboxSetupException(SetupStep.LoadInit, $"find {Name}", 2 /* ENOENT */, candidates[0],
            $"looked in {string.Join(", ", candidates)}; the init ships beside libIsolationNative.so");
    }
}
