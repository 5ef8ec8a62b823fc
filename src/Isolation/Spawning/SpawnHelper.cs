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
    private static SpawnHelper[] s_pool = []; // copy-on-write; every helper in it has the same identity
    private static string? s_path;
    private static int s_nextSpecId;

    private readonly int _channel;
    private int _pidfd;
    private readonly Identity _identity;
    private volatile bool _gone;
    private int _inFlight; // starts handed to this helper and not yet answered

    private SpawnHelper(int channel, int pid, int pidfd, bool hasNullDevice, Identity identity)
    {
        _channel = channel;
        _pidfd = pidfd;
        ProcessId = pid;
        HasNullDevice = hasNullDevice;
        _identity = identity;
    }

    /// <summary>The helper's process id.</summary>
    public int ProcessId { get; }

    /// <summary>
    /// Whether the helper's stdio is /dev/null, which a sandbox may inherit. When /dev/null could not be opened
    /// (a nodev /dev) it is closed pipes of the helper's own, and each start sends stdio of its own (StdioSet).
    /// </summary>
    public bool HasNullDevice { get; }

    /// <summary>Whether the helper has gone (its channel or a status socket reached EOF).</summary>
    public bool IsGone => _gone;

    /// <summary>The channel to the helper (the host's end).</summary>
    public int Channel => _channel;

    /// <summary>
    /// Most helpers a process runs at once: one serves sequential starts; concurrent ones get more, up to one
    /// per core, so that the helper's serial part of a start (clone and the namespaces the kernel creates for
    /// it, the id maps) never makes concurrent starts queue (DESIGN.md §2: "several helpers are fine").
    /// </summary>
    private static readonly int s_maxHelpers = Math.Clamp(Environment.ProcessorCount, 1, 8);

    /// <summary>
    /// The helper the next start would use: the least busy one. A new one is started when there is none yet,
    /// when every helper is busy and there are fewer than one per core, or when the calling thread now runs
    /// with another uid, gid, capabilities or user, mount or PID namespace than the helpers were started with
    /// (a helper acts with the identity it was started with, so it must never act for a host that has since
    /// dropped privilege or moved): then the old ones serve only the sandboxes they already have.
    /// </summary>
    public static SpawnHelper Current => Pick(Identity.OfThisThread(), growWhenBusy: false);

    /// <summary>Takes the least busy helper for one start; <see cref="Return"/> gives it back.</summary>
    public static SpawnHelper Rent()
    {
        SpawnHelper helper = Pick(Identity.OfThisThread(), growWhenBusy: true);
        Interlocked.Increment(ref helper._inFlight);
        return helper;
    }

    /// <summary>The start handed to this helper has been answered.</summary>
    public void Return() => Interlocked.Decrement(ref _inFlight);

    private static SpawnHelper Pick(Identity identity, bool growWhenBusy)
    {
        SpawnHelper? best = Best(Volatile.Read(ref s_pool), identity, out int usable);
        if (best is not null && (best._inFlight == 0 || !growWhenBusy || usable >= s_maxHelpers))
            return best;
        lock (s_lock)
        {
            AdoptPrepared();
            SpawnHelper[] pool = s_pool;
            best = Best(pool, identity, out usable);
            if (best is not null && (best._inFlight == 0 || !growWhenBusy || usable >= s_maxHelpers))
                return best;
            SpawnHelper started = Start(Locate(), identity);
            Volatile.Write(ref s_pool, Grown(pool, identity, started));
            return started;
        }
    }

    private static nint s_prepared; // a helper start running on a thread of the shim's (Prepare), guarded by s_lock
    private static Identity s_preparedIdentity;

    /// <summary>
    /// Begins starting a helper for the calling thread's identity, unless there is one, on a thread of the shim's: the
    /// caller goes on at once instead of waiting for the helper's vfork and exec. The next start adopts it. A start
    /// that fails is left to that start, which tries again and reports it (<see cref="SetupStep.StartHelper"/>).
    /// </summary>
    public static void Prepare()
    {
        Identity identity = Identity.OfThisThread();
        lock (s_lock)
        {
            if (s_prepared != 0 || Best(s_pool, identity, out _) is not null)
                return;
            byte[] path = Encoding.UTF8.GetBytes(Locate() + "\0");
            fixed (byte* p = path)
                s_prepared = IsolationNative_BeginStartHelper(p);
            s_preparedIdentity = identity;
        }
    }

    /// <summary>Under <see cref="s_lock"/>: waits for a prepared start and puts its helper in the pool.</summary>
    private static void AdoptPrepared()
    {
        nint prepared = s_prepared;
        if (prepared == 0)
            return;
        s_prepared = 0;
        int channel, pid, pidfd, nullErrno;
        if (IsolationNative_EndStartHelper(prepared, &channel, &pid, &pidfd, &nullErrno) == 0)
            Volatile.Write(ref s_pool, Grown(s_pool, s_preparedIdentity, new SpawnHelper(channel, pid, pidfd, hasNullDevice: nullErrno == 0, s_preparedIdentity)));
    }

    /// <summary>
    /// The live helpers of this identity and the new one; the others serve only the sandboxes they already have.
    /// (A method of its own: a lambda capturing <paramref name="identity"/> in <see cref="Pick"/> would allocate
    /// its closure on every start.)
    /// </summary>
    private static SpawnHelper[] Grown(SpawnHelper[] pool, Identity identity, SpawnHelper started)
    {
        // A loop, not LINQ: a NativeAOT start (isolate) pays for every generic interface it dispatches through first.
        var grown = new List<SpawnHelper>(pool.Length + 1);
        foreach (SpawnHelper h in pool)
        {
            if (!h._gone && h._identity == identity)
                grown.Add(h);
        }
        grown.Add(started);
        return [.. grown];
    }

    private static SpawnHelper? Best(SpawnHelper[] pool, Identity identity, out int usable)
    {
        SpawnHelper? best = null;
        usable = 0;
        foreach (SpawnHelper h in pool)
        {
            if (h._gone || h._identity != identity)
                continue;
            usable++;
            if (best is null || h._inFlight < best._inFlight)
                best = h;
        }
        return best;
    }

    /// <summary>Tests: the helper executable in use.</summary>
    internal static string ExecutablePath => Locate();

    /// <summary>Starts a helper from <paramref name="path"/> (tests pass a copy without its execute bit).</summary>
    internal static SpawnHelper Start(string path) => Start(path, Identity.OfThisThread());

    private static SpawnHelper Start(string path, Identity identity)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(path + "\0");
        int channel, pid, pidfd, nullErrno, rc;
        fixed (byte* p = bytes)
            rc = IsolationNative_StartHelper(p, &channel, &pid, &pidfd, &nullErrno);
        if (rc < 0)
            throw new SandboxSetupException(SetupStep.StartHelper, $"start the spawn helper {path}", -rc, path,
                -rc == ENOENT ? "the helper ships beside libIsolationNative.so (runtimes/<rid>/native/); reinstall the package or rebuild"
                : "it was tried directly, through its ELF interpreter and from a memfd; check that the file is readable and that the kernel allows executing it (noexec mounts, vm.memfd_noexec)");
        return new SpawnHelper(channel, pid, pidfd, hasNullDevice: nullErrno == 0, identity);
    }

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
    public static bool MeansGone(int errno) => errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN;

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
    /// A spec the helper holds for this process: defined once per helper, forgotten when the spec is disposed or
    /// collected (a finalizer, so that an app that builds a spec per job does not grow the helper).
    /// </summary>
    internal sealed class Definition(SpawnHelper helper, uint specId) : CriticalFinalizerObject
    {
        private int _forgotten;

        public SpawnHelper Helper { get; } = helper;

        public uint SpecId { get; } = specId;

        /// <summary>Tells the helper to drop the spec (once); no start may use it afterwards.</summary>
        public void Forget()
        {
            if (Interlocked.Exchange(ref _forgotten, 1) != 0)
                return;
            GC.SuppressFinalize(this);
            if (!Helper._gone)
                IsolationNative_ForgetSpec(Helper._channel, SpecId);
        }

        ~Definition() => Forget();
    }
}

/// <summary>Finds the native files shipped beside the shim (runtimes/&lt;rid&gt;/native/ in the package).</summary>
internal static unsafe class NativeAssets
{
    public static string Locate(string name)
    {
        var looked = new List<string>(3);
        foreach (string candidate in Candidates(name))
        {
            if (File.Exists(candidate))
                return candidate;
            looked.Add(candidate);
        }
        throw new SandboxSetupException(name == SpawnHelper.Name ? SetupStep.StartHelper : SetupStep.LoadInit, $"find {name}", ENOENT, looked[0],
            $"{name} ships beside libIsolationNative.so (runtimes/{RuntimeDirectory()}/native/ in the package); looked in {string.Join(", ", looked.Distinct())}");
    }

    /// <summary>
    /// Where the file may be, made one at a time: beside the shim, in the application's directory, under its
    /// runtimes/&lt;rid&gt;/native/. A start mostly stops at the first, before AppContext.BaseDirectory resolves every
    /// component of its path and before the architecture is named.
    /// </summary>
    private static IEnumerable<string> Candidates(string name)
    {
        if (ShimDirectory() is { } dir)
            yield return Path.Combine(dir, name);
        yield return Path.Combine(AppContext.BaseDirectory, name);
        yield return Path.Combine(AppContext.BaseDirectory, "runtimes", RuntimeDirectory(), "native", name);
    }

    private static string? ShimDirectory()
    {
        byte* library = IsolationNative_LibraryPath();
        return library is not null && Marshal.PtrToStringUTF8((nint)library) is { } path ? Path.GetDirectoryName(path) : null;
    }

    /// <summary>linux-x64 or linux-arm64 (named here, not by Enum.ToString, which reads metadata: ~0.1 ms of a NativeAOT start).</summary>
    private static string RuntimeDirectory() => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => "linux-x64",
        Architecture.Arm64 => "linux-arm64",
        Architecture other => $"linux-{other.ToString().ToLowerInvariant()}",
    };
}
