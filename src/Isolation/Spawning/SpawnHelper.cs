using System.Runtime.ConstrainedExecution;
using System.Runtime.InteropServices;
using System.Text;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation.Spawning;

/// <summary>
/// The spawn helper (src/Isolation.Native/helper.c, DESIGN.md §2): a small single-threaded process of ours,
/// started once per host and again when it has died or when the host's identity has changed. Every sandbox is
/// its child, never the host's: the host's memory, credentials and descriptor table are never shared with a
/// sandbox's setup, and no other code in the host (a runtime that is PID 1 or ignores SIGCHLD reaps every
/// child it has) can take a sandbox's exit status.
/// </summary>
/// <remarks>
/// The host holds one end of a SOCK_SEQPACKET channel; the helper exits when it reads EOF there, which is how
/// it learns that the host died, and its sandboxes go with it (DESIGN.md §3a). Each spawn carries a status
/// socket of its own on which the helper answers, so concurrent starts never wait for each other.
/// </remarks>
internal sealed unsafe class SpawnHelper
{
    public const string Name = "isolation-helper";

    private static readonly Lock s_lock = new();
    private static SpawnHelper? s_current;
    private static string? s_path;
    private static int s_nextSpecId;

    private readonly int _channel;
    private int _pidfd;
    private readonly Identity _identity;
    private volatile bool _gone;

    private SpawnHelper(int channel, int pid, int pidfd)
    {
        _channel = channel;
        _pidfd = pidfd;
        ProcessId = pid;
        _identity = Identity.OfThisThread();
    }

    /// <summary>The helper's process id.</summary>
    public int ProcessId { get; }

    /// <summary>The channel to the helper (the host's end).</summary>
    public int Channel => _channel;

    /// <summary>
    /// The helper to spawn with: the running one, or a new one when there is none yet, it has died, or the
    /// calling thread now runs with another uid, gid, capabilities or user, mount or PID namespace than the
    /// helper was started with (a helper acts with the identity it was started with, so it must never act for
    /// a host that has since dropped privilege or moved).
    /// </summary>
    public static SpawnHelper Current
    {
        get
        {
            Identity identity = Identity.OfThisThread();
            SpawnHelper? helper = Volatile.Read(ref s_current);
            if (helper is not null && !helper._gone && helper._identity == identity)
                return helper;
            lock (s_lock)
            {
                helper = s_current;
                if (helper is not null && !helper._gone && helper._identity == identity)
                    return helper;
                helper = Start(Locate());
                Volatile.Write(ref s_current, helper);
                return helper;
            }
        }
    }

    /// <summary>Tests: the helper executable in use.</summary>
    internal static string ExecutablePath => Locate();

    /// <summary>Starts a helper from <paramref name="path"/> (tests pass a copy without its execute bit).</summary>
    internal static SpawnHelper Start(string path)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(path + "\0");
        int channel, pid, pidfd, rc;
        fixed (byte* p = bytes)
            rc = IsolationNative_StartHelper(p, &channel, &pid, &pidfd);
        if (rc < 0)
            throw new SandboxSetupException(SetupStep.StartHelper, $"start the spawn helper {path}", -rc, path,
                -rc == ENOENT ? "the helper ships beside libIsolationNative.so (runtimes/<rid>/native/); reinstall the package or rebuild"
                : "it was tried directly, through its ELF interpreter and from a memfd; check that the file is readable and that the kernel allows executing it (noexec mounts, vm.memfd_noexec)");
        return new SpawnHelper(channel, pid, pidfd);
    }

    /// <summary>Tests: makes later spawns use <paramref name="helper"/>.</summary>
    internal static void UseForTests(SpawnHelper helper) => Volatile.Write(ref s_current, helper);

    /// <summary>Tests: closes the channel; the helper kills its sandboxes and exits, as when the host dies.</summary>
    internal void Close()
    {
        close(_channel);
        MarkGone();
    }

    /// <summary>
    /// Marks the helper gone after its channel or a status socket reached EOF (it exited, or is exiting), and
    /// reaps it; the next <see cref="Current"/> starts a new one.
    /// </summary>
    public void MarkGone()
    {
        _gone = true;
        int pidfd = Interlocked.Exchange(ref _pidfd, -1);
        if (pidfd >= 0)
            IsolationNative_ReapHelper(pidfd);
    }

    /// <summary>A new spec id, unique in this process.</summary>
    public static uint NewSpecId() => (uint)Interlocked.Increment(ref s_nextSpecId);

    /// <summary>Whether an -errno from the channel means the helper is gone.</summary>
    public static bool IsGone(int errno) => errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN;

    /// <summary>What a helper acts with (IsolationNative_Identity).</summary>
    private readonly record struct Identity(ulong Euid, ulong Egid, ulong Capabilities, ulong UserNs, ulong MountNs, ulong PidNs)
    {
        public static Identity OfThisThread()
        {
            ulong* v = stackalloc ulong[6];
            if (IsolationNative_Identity(v) != 0)
                return new Identity(geteuid(), getegid(), 0, 0, 0, 0);
            return new Identity(v[0], v[1], v[2], v[3], v[4], v[5]);
        }
    }

    /// <summary>An environment variable naming the helper executable to use instead of the one beside the shim.</summary>
    public const string PathVariable = "ISOLATION_HELPER_PATH";

    private static string Locate()
    {
        string? path = Volatile.Read(ref s_path);
        if (path is not null)
            return path;
        path = Environment.GetEnvironmentVariable(PathVariable) is { Length: > 0 } overridden ? overridden : NativeAssets.Locate(Name);
        Volatile.Write(ref s_path, path);
        return path;
    }

    /// <summary>
    /// A spec the helper holds for this process: defined once per helper, forgotten when the spec is collected
    /// (a finalizer, so that an app that builds a spec per job does not grow the helper).
    /// </summary>
    internal sealed class Definition(SpawnHelper helper, uint specId) : CriticalFinalizerObject
    {
        public SpawnHelper Helper { get; } = helper;

        public uint SpecId { get; } = specId;

        ~Definition()
        {
            if (!Helper._gone)
                IsolationNative_ForgetSpec(Helper._channel, SpecId);
        }
    }
}

/// <summary>Finds the native files shipped beside the shim (runtimes/&lt;rid&gt;/native/ in the package).</summary>
internal static unsafe class NativeAssets
{
    public static string Locate(string name)
    {
        var candidates = new List<string>();
        byte* library = IsolationNative_LibraryPath();
        if (library is not null && Marshal.PtrToStringUTF8((nint)library) is { } libraryPath && Path.GetDirectoryName(libraryPath) is { } dir)
            candidates.Add(Path.Combine(dir, name));
        candidates.Add(Path.Combine(AppContext.BaseDirectory, name));
        string arch = RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();
        candidates.Add(Path.Combine(AppContext.BaseDirectory, "runtimes", $"linux-{arch}", "native", name));
        foreach (string candidate in candidates)
        {
            if (File.Exists(candidate))
                return candidate;
        }
        throw new SandboxSetupException(name == SpawnHelper.Name ? SetupStep.StartHelper : SetupStep.LoadInit, $"find {name}", ENOENT, candidates[0],
            $"{name} ships beside libIsolationNative.so (runtimes/linux-{arch}/native/ in the package); looked in {string.Join(", ", candidates.Distinct())}");
    }
}
