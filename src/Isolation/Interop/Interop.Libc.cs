using System.Runtime.InteropServices;

namespace Isolation.Interop;

/// <summary>libc calls Tmds.LibC lacks or that take strings (cgroup files, rlimits).</summary>
internal static unsafe partial class Interop
{
    internal const long CGROUP2_SUPER_MAGIC = 0x63677270;

#pragma warning disable CS8981 // struct rlimit keeps its C name (getrlimit(2))
    [StructLayout(LayoutKind.Sequential)]
    internal struct rlimit
    {
        public ulong rlim_cur;
        public ulong rlim_max;
    }
#pragma warning restore CS8981

    /// <returns>0 when the limit was set; -1 with errno (EPERM: raising the hard limit needs CAP_SYS_RESOURCE; ESRCH: no such process).</returns>
    [LibraryImport("libc", EntryPoint = "prlimit", SetLastError = true)]
    internal static partial int prlimit(int pid, int resource, rlimit* newLimit, rlimit* oldLimit);

    /// <returns>0 with <paramref name="buf"/> filled (f_type is the first long, statfs(2)); -1 with errno.</returns>
    [LibraryImport("libc", EntryPoint = "statfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int statfs(string path, long* buf);

    /// <returns>A descriptor; -1 with errno.</returns>
    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int open_path(string path, int flags, int mode);

    /// <returns>0; -1 with errno (EEXIST when it exists).</returns>
    [LibraryImport("libc", EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int mkdir_path(string path, int mode);

    /// <returns>0; -1 with errno (EBUSY while a cgroup still has tasks or children).</returns>
    [LibraryImport("libc", EntryPoint = "rmdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rmdir_path(string path);

    /// <returns>0; -1 with errno.</returns>
    [LibraryImport("libc", EntryPoint = "rename", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rename_path(string from, string to);

    /// <returns>0; -1 with errno (ENOENT when it is gone).</returns>
    [LibraryImport("libc", EntryPoint = "unlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int unlink_path(string path);

    internal const int LOCK_EX = 2, LOCK_NB = 4;

    /// <returns>0 once the lock is held; -1 with errno (EWOULDBLOCK with LOCK_NB: another open file description holds it).</returns>
    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    internal static partial int flock(int fd, int operation);

    /// <returns>0 when access is allowed; -1 with errno.</returns>
    [LibraryImport("libc", EntryPoint = "access", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int access_path(string path, int mode);
}
