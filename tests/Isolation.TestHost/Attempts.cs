using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Isolation.TestHost;

/// <summary>
/// The escape suite's attacker: run inside a sandbox, it tries each classic escape and prints, as JSON,
/// whether it got through. Every attempt is a real system call; "escaped" means the kernel let it do the
/// thing the sandbox must prevent.
/// <c>isolation-testhost attempts --marker HOST_FILE --host-pid PID</c>
/// </summary>
internal static unsafe partial class Attempts
{
    private static readonly bool X64 = RuntimeInformation.ProcessArchitecture == Architecture.X64;

    public static int Run(string[] args)
    {
        string marker = Arg(args, "--marker") ?? throw new ArgumentException("attempts needs --marker HOST_FILE");
        int hostPid = int.Parse(Arg(args, "--host-pid") ?? "0");
        string markerText = Arg(args, "--marker-text") ?? "";
        var results = new List<AttemptResult>();

        void Try(string name, string defence, Func<(bool Escaped, string Detail)> attempt)
        {
            try
            {
                (bool escaped, string detail) = attempt();
                results.Add(new AttemptResult { Attempt = name, Defence = defence, Escaped = escaped, Detail = detail });
            }
            catch (Exception e)
            {
                results.Add(new AttemptResult { Attempt = name, Defence = defence, Escaped = false, Detail = $"blocked: {e.GetType().Name}: {e.Message}" });
            }
        }

        // runc CVE-2019-5736 class: overwrite the binary behind /proc/self/exe or /proc/1/exe.
        Try("write the host binary through /proc/self/exe", "read-only bind, uid mapped to an unprivileged host uid", () => OpenWrite("/proc/self/exe"));
        Try("write the host binary through /proc/1/exe", "read-only bind, PID namespace (PID 1 is in the sandbox)", () => OpenWrite("/proc/1/exe"));

        // runc CVE-2024-21626 class: leaked descriptors and working directories outside the new root.
        Try("read a host file by its path", "pivot_root into a minimal root; the old root is detached", () => ReadMarker(marker, markerText));
        Try("read a host file through /proc/1/root", "PID 1 is in the sandbox; its root is the new root", () => ReadMarker("/proc/1/root" + marker, markerText));
        Try("read a host file through /proc/self/cwd", "working directory set inside the new root", () => ReadMarker("/proc/self/cwd/../../../../../../.." + marker, markerText));
        Try("walk '..' out of the new root", "pivot_root: '..' of the root is the root", () =>
        {
            for (int i = 0; i < 64; i++)
                Directory.SetCurrentDirectory("..");
            return ReadMarker("." + marker, markerText);
        });
        Try("use a descriptor leaked from the host", "only stdio is inherited (close_range CLOEXEC)", () => LeakedDescriptors(marker, markerText));
        Try("chroot to get outside the root", "no CAP_SYS_CHROOT; seccomp denies chroot", () =>
        {
            Directory.CreateDirectory("/tmp/jail");
            int rc = chroot("/tmp/jail");
            if (rc != 0)
                return Blocked("chroot");
            for (int i = 0; i < 64; i++)
                chdir("..");
            return ReadMarker("." + marker, markerText);
        });

        // Host processes.
        Try("see a host process", "PID namespace and a fresh /proc", () =>
            (File.Exists($"/proc/{hostPid}/status") && File.ReadAllText($"/proc/{hostPid}/status").Contains("Isolation.Tests", StringComparison.Ordinal), $"visible pids: {Directory.GetDirectories("/proc").Count(d => Path.GetFileName(d).All(char.IsAsciiDigit))}"));
        Try("signal a host process", "PID namespace", () => Result(kill(hostPid, 0), "kill(host pid, 0)"));
        Try("ptrace a host process", "PID namespace; seccomp denies ptrace", () => Result(Syscall(X64 ? 101 : 117, 16 /* PTRACE_ATTACH */, hostPid, 0, 0), "ptrace(PTRACE_ATTACH)"));

        // Regaining privileges.
        Try("create a nested user namespace (unshare -U)", "user.max_user_namespaces in a parent namespace; seccomp", () =>
        {
            using var p = Process.Start(new ProcessStartInfo("/usr/bin/unshare", "-U -r /bin/true") { UseShellExecute = false, RedirectStandardError = true })!;
            string error = p.StandardError.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode == 0, $"unshare -U exited {p.ExitCode}: {error.Trim()}");
        });
        Try("create a nested user namespace (clone)", "seccomp checks clone flags; userns limit", () => CloneNewUser());
        Try("gain capabilities from a setuid-root binary", "no_new_privs, nosuid mounts, SECBIT_NOROOT, empty bounding set", () => SetuidBinary());
        Try("gain capabilities from file capabilities", "no CAP_SETFCAP; no_new_privs; empty bounding set", () =>
        {
            File.Copy("/usr/bin/sleep", "/tmp/fcap-sleep", overwrite: true);
            // struct vfs_cap_data v2: magic|effective, permitted (all), inheritable
            byte[] cap = new byte[20];
            BitConverter.TryWriteBytes(cap.AsSpan(0), 0x02000001u);
            BitConverter.TryWriteBytes(cap.AsSpan(4), 0xFFFFFFFFu);
            BitConverter.TryWriteBytes(cap.AsSpan(12), 0xFFFFFFFFu);
            fixed (byte* p = cap)
                return Result(setxattr("/tmp/fcap-sleep", "security.capability", p, (nuint)cap.Length, 0), "setxattr(security.capability)");
        });

        // Kernel interfaces.
        Try("mount a file system", "no CAP_SYS_ADMIN; seccomp denies mount", () =>
        {
            Directory.CreateDirectory("/tmp/mnt");
            return Result(mount("tmpfs", "/tmp/mnt", "tmpfs", 0, null), "mount(tmpfs)");
        });
        Try("mknod a disk device", "no CAP_MKNOD; nodev mounts", () =>
        {
            long rc = Syscall(X64 ? 259 : 33, -100 /* AT_FDCWD */, (long)Str("/tmp/sda"), 0x6000 | 0x180 /* S_IFBLK|0600 */, (8 << 8) | 0);
            if (rc != 0)
                return Blocked("mknodat");
            int fd = open("/tmp/sda", 0 /* O_RDONLY */);
            return fd >= 0 ? (true, "opened the disk device") : Blocked("open /tmp/sda");
        });
        Try("load a kernel module", "no CAP_SYS_MODULE (the host's); seccomp", () =>
        {
            int fd = open("/dev/null", 0);
            return Result(Syscall(X64 ? 313 : 273, fd, (long)Str(""), 0, 0), "finit_module");
        });
        Try("use the kernel keyring (keyctl)", "seccomp denies keyctl", () => Result(Syscall(X64 ? 250 : 219, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 1, 0), "keyctl"));
        Try("use the kernel keyring (add_key)", "seccomp denies add_key", () => Result(Syscall(X64 ? 248 : 217, (long)Str("user"), (long)Str("k"), (long)Str("v"), 1, -3), "add_key"));
        Try("load a BPF program or map (bpf)", "seccomp denies bpf", () =>
        {
            byte* attr = stackalloc byte[128];
            new Span<byte>(attr, 128).Clear();
            *(uint*)attr = 2; // BPF_MAP_TYPE_ARRAY
            *(uint*)(attr + 4) = 4;
            *(uint*)(attr + 8) = 4;
            *(uint*)(attr + 12) = 1;
            return Result(Syscall(X64 ? 321 : 280, 0 /* BPF_MAP_CREATE */, (long)attr, 128, 0), "bpf(BPF_MAP_CREATE)");
        });
        Try("open a perf event (perf_event_open)", "seccomp denies perf_event_open", () =>
        {
            byte* attr = stackalloc byte[128];
            new Span<byte>(attr, 128).Clear();
            *(uint*)attr = 1; // PERF_TYPE_SOFTWARE
            *(uint*)(attr + 4) = 128;
            return Result(Syscall(X64 ? 298 : 241, (long)attr, 0, -1, -1, 0), "perf_event_open");
        });
        Try("kexec a new kernel", "seccomp; no CAP_SYS_BOOT", () => Result(Syscall(X64 ? 246 : 104, 0, 0, 0, 0), "kexec_load"));
        Try("open a host file by handle (open_by_handle_at)", "seccomp; no CAP_DAC_READ_SEARCH", () =>
        {
            byte* handle = stackalloc byte[16];
            *(uint*)handle = 8;
            *(int*)(handle + 4) = 1;
            return Result(Syscall(X64 ? 304 : 265, -100, (long)handle, 0, 0), "open_by_handle_at");
        });

        // /proc and /sys.
        Try("write /proc/sys", "/proc/sys bound read-only", () => Write("/proc/sys/kernel/hostname", "pwned"));
        Try("write /proc/sysrq-trigger", "bound read-only (a user namespace's proc may not show it at all)", () => Write("/proc/sysrq-trigger", "h"));
        Try("write /sys", "/sys is not mounted in the minimal root", () => Write("/sys/kernel/uevent_helper", "/tmp/x"));
        Try("read /proc/kcore", "masked with /dev/null (a user namespace's proc may not show it at all)", () =>
        {
            using FileStream f = File.OpenRead("/proc/kcore");
            byte[] buffer = new byte[4];
            int n = f.Read(buffer);
            return (n == 4 && buffer[1] == (byte)'E' && buffer[2] == (byte)'L', $"read {n} bytes");
        });

        // The caller's terminal.
        Try("inject keystrokes with TIOCSTI", "new session; seccomp denies TIOCSTI (low 32 bits compared)", () =>
        {
            byte c = (byte)'#';
            string detail = "";
            foreach (int fd in new[] { 0, 1, 2 })
            {
                foreach (long cmd in new[] { 0x5412L, 0x5412L | (1L << 32) })
                {
                    long rc = Syscall(X64 ? 16 : 29, fd, cmd, (long)&c, 0);
                    if (rc == 0)
                        return (true, $"ioctl({fd}, 0x{cmd:x}) succeeded");
                    detail += $"fd {fd} cmd 0x{cmd:x}: errno {Marshal.GetLastPInvokeError()}; ";
                }
            }
            return (false, "blocked: " + detail.TrimEnd(' ', ';'));
        });

        Console.Out.Write(JsonSerializer.Serialize(results, AttemptJson.Default.ListAttemptResult));
        Console.Out.Flush();
        return 0;
    }

    /// <summary><c>errno-of CALL ARGS</c>: makes one system call and exits with its errno (0: it worked).</summary>
    public static int ErrnoOf(string[] args)
    {
        long rc = args switch
        {
            ["mkdir", var path] => mkdir(path, 0x1ED),
            ["clone-user"] => CloneNewUserRc(),
            ["keyctl"] => Syscall(X64 ? 250 : 219, 0, -3, 1, 0),
            ["bind-tcp", var port] => Tcp(int.Parse(port), bind: true),
            ["connect-tcp", var port] => Tcp(int.Parse(port), bind: false),
            _ => throw new ArgumentException("errno-of mkdir PATH | unshare-user | keyctl | bind-tcp PORT | connect-tcp PORT"),
        };
        return rc >= 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    private static long Tcp(int port, bool bind)
    {
        int fd = socket(2 /* AF_INET */, 1 /* SOCK_STREAM */, 0);
        if (fd < 0)
            return fd;
        byte* sin = stackalloc byte[16];
        new Span<byte>(sin, 16).Clear();
        *(ushort*)sin = 2;
        sin[2] = (byte)(port >> 8);
        sin[3] = (byte)port;
        sin[4] = 127;
        sin[7] = 1;
        return bind ? Attempts.bind(fd, sin, 16) : connect(fd, sin, 16);
    }

    /// <summary>
    /// clone(CLONE_NEWUSER) whose child runs only libc's _exit, on a stack of its own, while we wait
    /// (CLONE_VM | CLONE_VFORK): a fork-style clone would return into managed code in a copy of a
    /// multi-threaded runtime, which crashes now and then. Returns the pid, or -1 with the errno set.
    /// </summary>
    private static long CloneNewUserRc()
    {
        const int CLONE_VM = 0x100, CLONE_VFORK = 0x4000, CLONE_NEWUSER = 0x10000000, SIGCHLD = 17;
        nint exit = NativeLibrary.GetExport(NativeLibrary.Load("libc.so.6"), "_exit");
        const int StackSize = 64 * 1024;
        byte* stack = (byte*)NativeMemory.AlignedAlloc(StackSize, 16);
        try
        {
            int pid = clone((delegate* unmanaged<nint, int>)exit, stack + StackSize, CLONE_NEWUSER | CLONE_VM | CLONE_VFORK | SIGCHLD, 0);
            if (pid > 0)
            {
                int status;
                waitpid(pid, &status, 0);
            }
            return pid;
        }
        finally
        {
            NativeMemory.AlignedFree(stack);
        }
    }

    private static (bool, string) CloneNewUser()
    {
        long pid = CloneNewUserRc();
        if (pid < 0)
            return Blocked("clone(CLONE_NEWUSER)");
        return (true, $"clone(CLONE_NEWUSER) created pid {pid}");
    }

    private static (bool, string) SetuidBinary()
    {
        // A setuid-root copy of sleep: executed by root it would get every capability of the bounding set.
        File.Copy("/usr/bin/sleep", "/tmp/suid-sleep", overwrite: true);
        if (chmod("/tmp/suid-sleep", 0xDED /* 06755 */) != 0)
            return Blocked("chmod u+s");
        using var process = Process.Start(new ProcessStartInfo("/tmp/suid-sleep", "5") { UseShellExecute = false })!;
        Thread.Sleep(300);
        string status = File.ReadAllText($"/proc/{process.Id}/status");
        process.Kill();
        string Field(string name) => status.Split('\n').First(l => l.StartsWith(name + ":", StringComparison.Ordinal)).Split(':')[1].Trim();
        bool gained = Field("CapEff") != "0000000000000000" || Field("CapPrm") != "0000000000000000";
        return (gained, $"CapEff {Field("CapEff")} CapPrm {Field("CapPrm")} NoNewPrivs {Field("NoNewPrivs")}");
    }

    private static (bool, string) LeakedDescriptors(string marker, string text)
    {
        var seen = new List<string>();
        foreach (string entry in Directory.GetFiles("/proc/self/fd"))
        {
            int fd = int.Parse(Path.GetFileName(entry));
            string target = new FileInfo(entry).LinkTarget ?? "";
            seen.Add($"{fd}:{target}");
            if (fd <= 2)
                continue;
            // A directory descriptor from the host leads anywhere with '..' (openat is not confined by the root).
            string relative = string.Concat(Enumerable.Repeat("../", 64)) + marker.TrimStart('/');
            int opened = openat(fd, relative, 0);
            if (opened >= 0)
            {
                close(opened);
                if (ReadMarker($"/proc/self/fd/{fd}/{relative}", text).Item1)
                    return (true, $"fd {fd} ({target}) reached {marker}");
            }
        }
        return (false, "blocked: fds " + string.Join(", ", seen));
    }

    private static (bool, string) OpenWrite(string path)
    {
        int fd = open(path, 1 /* O_WRONLY */);
        if (fd >= 0)
        {
            close(fd);
            return (true, $"opened {path} for writing");
        }
        return Blocked($"open {path} O_WRONLY");
    }

    private static (bool, string) ReadMarker(string path, string text)
    {
        try
        {
            string content = File.ReadAllText(path);
            return (content.Contains(text, StringComparison.Ordinal), $"read {path}: {content.Length} chars");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (false, $"blocked: {e.GetType().Name}");
        }
    }

    private static (bool, string) Write(string path, string text)
    {
        int fd = open(path, 1);
        if (fd < 0)
            return Blocked($"open {path}");
        byte[] bytes = System.Text.Encoding.ASCII.GetBytes(text);
        fixed (byte* p = bytes)
        {
            nint n = write(fd, p, (nuint)bytes.Length);
            int errno = Marshal.GetLastPInvokeError();
            close(fd);
            return n > 0 ? (true, $"wrote {path}") : (false, $"blocked: write {path}: errno {errno}");
        }
    }

    private static (bool, string) Result(long rc, string what) => rc >= 0 ? (true, $"{what} returned {rc}") : Blocked(what);

    private static (bool, string) Blocked(string what) => (false, $"blocked: {what}: errno {Marshal.GetLastPInvokeError()} ({Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())})");

    private static string? Arg(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static byte* Str(string s)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(s + "\0");
        byte* p = (byte*)NativeMemory.Alloc((nuint)bytes.Length);
        bytes.CopyTo(new Span<byte>(p, bytes.Length));
        return p;
    }

    private static long Syscall(long number, long a, long b, long c, long d, long e = 0) => syscall(number, a, b, c, d, e);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int mkdir(string path, int mode);
    [LibraryImport("libc", SetLastError = true)] private static partial int socket(int domain, int type, int protocol);
    [LibraryImport("libc", SetLastError = true)] private static partial int bind(int fd, byte* address, int length);
    [LibraryImport("libc", SetLastError = true)] private static partial int connect(int fd, byte* address, int length);
    [LibraryImport("libc", SetLastError = true)] private static partial long syscall(long number, long a, long b, long c, long d, long e);
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int open(string path, int flags);
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int openat(int dirfd, string path, int flags);
    [LibraryImport("libc", SetLastError = true)] private static partial int close(int fd);
    [LibraryImport("libc", SetLastError = true)] private static partial int clone(delegate* unmanaged<nint, int> fn, void* stack, int flags, nint arg);
    [LibraryImport("libc", SetLastError = true)] private static partial nint write(int fd, byte* buffer, nuint count);
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int chroot(string path);
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int chdir(string path);
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int chmod(string path, int mode);
    [LibraryImport("libc", SetLastError = true)] private static partial int kill(int pid, int signal);
    [LibraryImport("libc", SetLastError = true)] private static partial int waitpid(int pid, int* status, int options);
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int mount(string source, string target, string type, ulong flags, string? data);
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)] private static partial int setxattr(string path, string name, byte* value, nuint size, int flags);
}

/// <summary>One escape attempt: what was tried, what should stop it, and whether it got through.</summary>
public sealed class AttemptResult
{
    public string Attempt { get; set; } = "";
    public string Defence { get; set; } = "";
    public bool Escaped { get; set; }
    public string Detail { get; set; } = "";
}

[JsonSerializable(typeof(List<AttemptResult>))]
public sealed partial class AttemptJson : JsonSerializerContext;
