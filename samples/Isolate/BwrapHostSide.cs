using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Isolation;

namespace Isolate;

/// <summary>
/// What <c>isolate bwrap</c> does in its own process, on the host side of the sandbox, as bwrap does it:
/// the <c>--info-fd</c> / <c>--json-status-fd</c> records, the <c>--lock-file</c> lock and
/// <c>--die-with-parent</c> for isolate itself.
/// </summary>
internal static partial class BwrapHostSide
{
    /// <summary>bwrap's namespace names, in its order; each is reported when the sandbox has its own.</summary>
    private static readonly (Namespaces Kind, string Name)[] ReportedNamespaces =
    [
        (Namespaces.Cgroup, "cgroup"), (Namespaces.Ipc, "ipc"), (Namespaces.Mount, "mnt"),
        (Namespaces.Net, "net"), (Namespaces.Pid, "pid"), (Namespaces.Uts, "uts"),
    ];

    /// <summary>
    /// The record bwrap writes once the sandbox runs: the child's pid and the inode number of each namespace it
    /// was given (<c>"mnt-namespace": 4026532182</c>), multi-line for <c>--info-fd</c>, one line for
    /// <c>--json-status-fd</c>.
    /// </summary>
    public static string StartedRecord(int pid, Namespaces unshared, bool oneLine)
    {
        var fields = new List<string> { $"\"child-pid\": {pid.ToString(CultureInfo.InvariantCulture)}" };
        foreach ((Namespaces kind, string name) in ReportedNamespaces)
        {
            // /proc/PID/ns/mnt reads "mnt:[4026532182]"; a child that has already gone has none to report.
            if (unshared.HasFlag(kind) && new FileInfo($"/proc/{pid}/ns/{name}").LinkTarget is { } link
                && link.IndexOf('[') is int open and >= 0 && link.EndsWith(']'))
                fields.Add($"\"{name}-namespace\": {link[(open + 1)..^1]}");
        }
        return oneLine
            ? "{ " + string.Join(", ", fields) + " }\n"
            : "{\n    " + string.Join(",\n    ", fields) + "\n}\n";
    }

    /// <summary>
    /// Writes <paramref name="text"/> with write(2) at the descriptor's own offset (so records to a regular file
    /// follow each other, and O_APPEND is honoured); closes the descriptor when <paramref name="close"/>.
    /// </summary>
    public static void WriteFd(int fd, string text, bool close)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        int done = 0;
        while (done < bytes.Length)
        {
            nint n = Write(fd, bytes.AsSpan(done), (nuint)(bytes.Length - done));
            if (n < 0 && Marshal.GetLastPInvokeError() == 4 /* EINTR */)
                continue;
            if (n <= 0)
                break; // bwrap ignores a reader that has gone
            done += (int)n;
        }
        if (close)
            _ = Close(fd);
    }

    /// <summary>
    /// bwrap's <c>--lock-file</c>: an fcntl(2) read lock (<c>F_SETLK</c>, <c>F_RDLCK</c>, the whole file) held
    /// until isolate exits, which its users test for with <c>F_GETLK</c> or <c>lockf</c>. Taken on the host
    /// file that DEST shows. Opened with open(2) itself: a FileStream would add a BSD flock of its own.
    /// </summary>
    public static void LockFile(string hostPath, string dest)
    {
        int fd = Open(hostPath, 0x80000 /* O_RDONLY | O_CLOEXEC */);
        if (fd < 0)
            throw new IOException($"--lock-file {dest}: cannot open {hostPath}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        var lk = new FcntlLock { Type = 0 /* F_RDLCK */, Whence = 0 /* SEEK_SET */ };
        if (Fcntl(fd, 6 /* F_SETLK */, ref lk) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            _ = Close(fd);
            throw new IOException($"--lock-file {dest}: unable to lock {hostPath}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
        // The descriptor stays open (never closed: closing any descriptor of the file would drop a POSIX lock).
    }

    /// <summary>
    /// bwrap's <c>--die-with-parent</c> for isolate itself: SIGKILL when the process that started isolate dies
    /// (prctl(2) <c>PR_SET_PDEATHSIG</c>); isolate's death then ends its spawn helper and the sandbox. Returns
    /// false when the parent is already gone (it died before the signal was armed).
    /// </summary>
    public static bool DieWithParent()
    {
        int parent = GetParentPid();
        if (Prctl(1 /* PR_SET_PDEATHSIG */, 9 /* SIGKILL */, 0, 0, 0) != 0)
            throw new IOException($"--die-with-parent: prctl(PR_SET_PDEATHSIG): {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        return GetParentPid() == parent;
    }

    /// <summary>
    /// bwrap 0.11's <c>--bind-fd FD</c> / <c>--ro-bind-fd FD</c>: the path of the directory or file FD refers to. bwrap
    /// too binds it by its path (the kernel does not bind a descriptor from another mount namespace) and then checks
    /// that the mount shows the descriptor's inode; we check that the path shows it before the sandbox starts, so a
    /// descriptor whose file was deleted, moved or lives in another mount namespace is refused rather than
    /// something else bound.
    /// </summary>
    public static string PathOfDescriptor(int fd, string option)
    {
        string link = $"/proc/self/fd/{fd.ToString(CultureInfo.InvariantCulture)}";
        if (!Identity(link, out var byDescriptor))
            throw new BwrapUsageException($"Can't stat fd {fd}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        string? path = new FileInfo(link).LinkTarget;
        if (path is null || !path.StartsWith('/') || !Identity(path, out var byPath) || byPath != byDescriptor)
            throw new BwrapUsageException($"{option} {fd}: the file it refers to ({path}) cannot be reached by its path any more (deleted, moved, or in another mount namespace)");
        return path;
    }

    /// <summary>The device and inode that <paramref name="path"/> leads to (statx(2), following links).</summary>
    private static bool Identity(string path, out (uint Major, uint Minor, ulong Inode) identity)
    {
        Span<byte> buffer = stackalloc byte[256]; // struct statx
        identity = default;
        if (Statx(-100 /* AT_FDCWD */, path, 0, 0x100 /* STATX_INO */, buffer) != 0)
            return false;
        identity = (BitConverter.ToUInt32(buffer[136..]), BitConverter.ToUInt32(buffer[140..]), BitConverter.ToUInt64(buffer[32..]));
        return true;
    }

    /// <summary>struct flock (x86-64 and arm64 layout).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct FcntlLock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int Pid;
    }

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint Write(int fd, ReadOnlySpan<byte> buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int command, ref FcntlLock lk);

    [LibraryImport("libc", EntryPoint = "prctl", SetLastError = true)]
    private static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, Span<byte> buffer);

    [LibraryImport("libc", EntryPoint = "getppid")]
    private static partial int GetParentPid();
}
