using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Isolation.TestHost;

/// <summary>
/// The host side of tests/Isolation.Tests/Integration/DescriptorHygieneTests.cs: this process leaks descriptors
/// (not close-on-exec, one low and one above 65536) and installs a seccomp filter that makes close_range(2) fail,
/// as an old kernel (ENOSYS) or a container's policy (EPERM, EACCES) would, before its first start; then it starts
/// a sandbox whose shell lists its own descriptors, and looks at what the spawn helpers hold.
/// <c>isolation-testhost leaked-fds --close-range-errno N</c>
/// </summary>
internal static unsafe partial class Descriptors
{
    private const int RLIMIT_NOFILE = 7, LowFd = 40;
    private const int SECCOMP_SET_MODE_FILTER = 1, SECCOMP_FILTER_FLAG_TSYNC = 1, SYS_seccomp_x64 = 317, SYS_seccomp_arm64 = 277, SYS_close_range = 436;

    public static int LeakedFds(string[] args)
    {
        int errno = int.Parse(args[Array.IndexOf(args, "--close-range-errno") + 1]);
        var outcome = new LeakedFdsOutcome { CloseRangeErrno = errno };

        // Room for a descriptor above 65536 where this process may raise its hard limit (CAP_SYS_RESOURCE), else the highest it has.
        var limit = new RLimit { Current = 71000, Maximum = 71000 };
        if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
        {
            getrlimit(RLIMIT_NOFILE, &limit);
            limit.Current = limit.Maximum;
            setrlimit(RLIMIT_NOFILE, &limit);
        }
        outcome.HighFd = (int)Math.Min(70000, limit.Maximum - 1);
        int* pipe = stackalloc int[2];
        if (pipe2(pipe, 0) != 0 || dup2(pipe[0], LowFd) != LowFd || dup2(pipe[0], outcome.HighFd) != outcome.HighFd)
            throw new InvalidOperationException($"leak: errno {Marshal.GetLastPInvokeError()}");
        outcome.LeakedPipe = File.ResolveLinkTarget($"/proc/self/fd/{LowFd}", false)!.ToString();

        outcome.FilterInstalled = DenyCloseRange(errno);
        outcome.CloseRangeResult = syscall(SYS_close_range, LowFd + 1, LowFd + 1, 0, 0, 0) == 0 ? 0 : Marshal.GetLastPInvokeError();

        try
        {
            IsolationSpec spec = new NamespaceBuilder().WithNamespaces(Namespaces.User).MapCurrentUserToRoot() // no PID namespace: $$ is the shell in the host's /proc
                .WithStandardOutput(Stdio.Pipe).Build();
            using IsolatedProcess p = spec.Start("/bin/sh", "-c", "ls /proc/$$/fd");
            string listed = new StreamReader(p.StandardOutput!).ReadToEnd();
            p.WaitForExit();
            outcome.SandboxFds = [.. listed.Split((char[])['\n', ' '], StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).Order()];
        }
        catch (SandboxSetupException e)
        {
            outcome.Error = e.Message;
        }

        // What the spawn helpers (our children, comm "isolation-helpe") hold.
        foreach (string task in Directory.GetDirectories("/proc/self/task"))
        {
            foreach (string child in File.ReadAllText(Path.Combine(task, "children")).Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                if (File.ReadAllText($"/proc/{child}/comm").Trim() != "isolation-helpe")
                    continue;
                outcome.Helpers++;
                foreach (string fd in Directory.GetFiles($"/proc/{child}/fd"))
                    if (File.ResolveLinkTarget(fd, false)?.ToString() == outcome.LeakedPipe)
                        outcome.HelperLeakedFds.Add(int.Parse(Path.GetFileName(fd)));
            }
        }
        Console.Out.Write(JsonSerializer.Serialize(outcome, DescriptorJson.Default.LeakedFdsOutcome));
        return 0;
    }

    /// <summary>seccomp(2) filter on every thread: close_range returns <paramref name="errno"/>, everything else is allowed.</summary>
    private static bool DenyCloseRange(int errno)
    {
        ulong* filter = stackalloc ulong[4];
        filter[0] = Insn(0x20 /* BPF_LD|BPF_W|BPF_ABS */, 0, 0, 0); // seccomp_data.nr
        filter[1] = Insn(0x15 /* BPF_JMP|BPF_JEQ|BPF_K */, 0, 1, SYS_close_range);
        filter[2] = Insn(0x06 /* BPF_RET|BPF_K */, 0, 0, 0x00050000u /* SECCOMP_RET_ERRNO */ | (uint)errno);
        filter[3] = Insn(0x06, 0, 0, 0x7fff0000u /* SECCOMP_RET_ALLOW */);
        var program = new SockFprog { Length = 4, Filter = filter };
        long nr = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? SYS_seccomp_x64 : SYS_seccomp_arm64;
        return syscall(nr, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, (long)&program, 0, 0) == 0;
    }

    // struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }
    private static ulong Insn(ushort code, byte jt, byte jf, uint k) => code | (ulong)jt << 16 | (ulong)jf << 24 | (ulong)k << 32;

    [StructLayout(LayoutKind.Sequential)]
    private struct SockFprog
    {
        public ushort Length;
        public ulong* Filter;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong Current, Maximum;
    }

    [LibraryImport("libc", SetLastError = true)] private static partial int setrlimit(int resource, RLimit* limit);
    [LibraryImport("libc", SetLastError = true)] private static partial int getrlimit(int resource, RLimit* limit);
    [LibraryImport("libc", SetLastError = true)] private static partial int pipe2(int* fds, int flags);
    [LibraryImport("libc", SetLastError = true)] private static partial int dup2(int fd, int to);
    [LibraryImport("libc", SetLastError = true)] private static partial long syscall(long number, long a, long b, long c, long d, long e);
}

public sealed class LeakedFdsOutcome
{
    public int CloseRangeErrno { get; set; }
    public bool FilterInstalled { get; set; }
    /// <summary>errno of a close_range call after the filter (0: the filter did not bite).</summary>
    public int CloseRangeResult { get; set; }
    public string LeakedPipe { get; set; } = "";
    /// <summary>The high leaked descriptor: 70000 where the hard RLIMIT_NOFILE could be raised, else the highest allowed.</summary>
    public int HighFd { get; set; }
    public int[] SandboxFds { get; set; } = [];
    public string? Error { get; set; }
    public int Helpers { get; set; }
    public List<int> HelperLeakedFds { get; set; } = [];
}

[JsonSerializable(typeof(LeakedFdsOutcome))]
public sealed partial class DescriptorJson : JsonSerializerContext;
