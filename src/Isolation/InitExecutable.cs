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

    private static string Locate() => Spawning.NativeAssets.Locate(Name);
}
