using System.Text;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>
/// isolation-init, the minimal PID 1 of <see cref="NamespaceBuilder.WithInit"/>: shipped beside the shim (or named by
/// <see cref="PathVariable"/>), opened once per process as a descriptor the child exec's (DESIGN.md §3). Where
/// <c>vm.memfd_noexec</c> refuses an executable memfd, an unnamed copy in a temp directory or the file itself is used
/// (IsolationNative_OpenExecutable).
/// </summary>
internal static unsafe class InitExecutable
{
    public const string Name = "isolation-init";

    /// <summary>An environment variable naming the init executable to use instead of the one beside the shim.</summary>
    public const string PathVariable = "ISOLATION_INIT_PATH";

    private const string MemfdNoexecPath = "/proc/sys/vm/memfd_noexec";
    private static readonly Lock s_lock = new();
    private static int s_fd = -1;
    private static string? s_path;
    private static int s_how;

    public static string? Path => s_path;

    /// <summary>What the child exec's: "a sealed memfd", "an unnamed copy in a temp directory" or the file itself.</summary>
    public static string How => s_how switch
    {
        ISO_EXEC_MEMFD => "from a sealed memfd",
        ISO_EXEC_TMPFILE => "from an unnamed copy in a temp directory",
        ISO_EXEC_IN_PLACE => $"from {s_path} itself",
        _ => "from a descriptor",
    };

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
            int fd, how;
            fixed (byte* p = bytes)
                fd = IsolationNative_OpenExecutable(p, 1, &how);
            if (fd < 0)
                throw LoadFailed(path, -fd);
            s_how = how;
            Volatile.Write(ref s_fd, fd);
            return fd;
        }
    }

    /// <summary>The value of <c>vm.memfd_noexec</c> in this process's PID namespace; 0 where the kernel lacks it (before 6.3).</summary>
    public static int MemfdNoexec =>
        File.Exists(MemfdNoexecPath) && int.TryParse(File.ReadAllText(MemfdNoexecPath).Trim(), out int v) ? v : 0;

    private static SandboxSetupException LoadFailed(string path, int errno)
    {
        if (errno == ENOENT)
            return new SandboxSetupException(SetupStep.LoadInit, $"open {path}", errno, path,
                $"the init ships beside libIsolationNative.so; reinstall the package, rebuild, or set {PathVariable} to a copy of it");
        int noexec = MemfdNoexec;
        string hint = noexec > 0
            ? $"sysctl vm.memfd_noexec={noexec} here refuses executable memfds, no temp directory ($TMPDIR, /dev/shm, /tmp) allows exec, "
              + $"and {path} is not executable by everyone (mode 0755 on a mount without noexec): chmod 0755 it, set {PathVariable} to an executable copy, "
              + "or lower vm.memfd_noexec (it is per PID namespace: a child namespace cannot lower it)"
            : $"no executable memfd could be made, no temp directory ($TMPDIR, /dev/shm, /tmp) allows exec, and {path} is not executable by everyone: "
              + $"chmod 0755 it or set {PathVariable} to an executable copy";
        return new SandboxSetupException(SetupStep.LoadInit, $"make {path} executable", errno, path, hint);
    }

    private static string Locate() =>
        Environment.GetEnvironmentVariable(PathVariable) is { Length: > 0 } overridden ? overridden : Spawning.NativeAssets.Locate(Name);
}
