using Isolation.Cgroups;
using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>The cgroup side of a running sandbox: stats, live limit updates, freeze, whole-tree kill, cleanup.</summary>
public sealed partial class IsolatedProcess
{
    private readonly ICgroup _cgroup;
    private CgroupStats? _finalStats;
    private int _cgroupRemoved;

    /// <summary>
    /// Why the sandbox runs without a cgroup although <see cref="NamespaceBuilder.WithCgroup"/> asked for one
    /// (only with <see cref="CgroupBuilder.BestEffort"/>): the limits were not applied. Null when they were.
    /// <see cref="Limits"/> says what bounds the sandbox instead.
    /// </summary>
    public string? CgroupError => Limits.CgroupError;

    /// <summary>
    /// Which limits hold for this sandbox and by which mechanism (cgroup v2 or v1, an rlimit such as the RLIMIT_NPROC
    /// fallback, tmpfs sizes, the timeout), from what its start applied.
    /// </summary>
    public SandboxLimits Limits { get; }

    /// <summary>Whether the sandbox has a cgroup of its own (limits applied, stats available).</summary>
    public bool HasCgroup => _cgroup is not NoCgroup;

    /// <summary>The sandbox's cgroup directories (one on cgroup v2, one per hierarchy on v1), empty without one.</summary>
    public IReadOnlyList<string> CgroupDirectories => _cgroup.Directories;

    /// <summary>
    /// A snapshot of the cgroup's counters: memory, CPU, throttling, pids, OOM kills, IO. After the process
    /// has exited: the counters as they were at its exit. Null without a cgroup.
    /// </summary>
    public CgroupStats? GetCgroupStats()
    {
        if (!HasCgroup)
            return null;
        return Volatile.Read(ref _finalStats) ?? _cgroup.ReadStats();
    }

    /// <summary>Change limits of the running sandbox; limits not set in <paramref name="configure"/> keep their values.</summary>
    /// <exception cref="ArgumentException">A value is out of range (checked before anything is written).</exception>
    /// <exception cref="InvalidOperationException">No cgroup, the process has exited, or the kernel refused (the message says which file and errno).</exception>
    public void UpdateCgroupLimits(Action<CgroupBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var builder = new CgroupBuilder(new CgroupSettings());
        configure(builder);
        CgroupBuilder.Validate(builder.Settings);
        if (HasExited || Volatile.Read(ref _cgroupRemoved) != 0)
            throw new InvalidOperationException($"pid {Id} has exited; its cgroup is gone.");
        try
        {
            _cgroup.Apply(builder.Settings.Limits);
        }
        catch (SandboxSetupException e)
        {
            throw new InvalidOperationException(e.Message, e);
        }
    }

    /// <summary>Stop every process of the sandbox (v2 <c>cgroup.freeze</c>, v1 <c>freezer.state</c>); <see cref="Thaw"/> resumes them.</summary>
    public void Freeze() => SetFrozen(true);

    /// <summary>Resume a frozen sandbox.</summary>
    public void Thaw() => SetFrozen(false);

    private void SetFrozen(bool frozen)
    {
        try
        {
            _cgroup.SetFrozen(frozen);
        }
        catch (SandboxSetupException e)
        {
            throw new InvalidOperationException(e.Message, e);
        }
    }

    private void KillCgroup()
    {
        if (Volatile.Read(ref _cgroupRemoved) == 0)
            _cgroup.Kill();
    }

    /// <summary>Exit watcher thread, right after reaping: the counters at exit, for the reason and for later reads.</summary>
    private CgroupStats? SnapshotCgroupOnExit()
    {
        if (!HasCgroup)
            return null;
        CgroupStats stats = _cgroup.ReadStats();
        Volatile.Write(ref _finalStats, stats);
        return stats;
    }

    /// <summary>
    /// OOM kill and pids limit from the kernel's own counters (memory.events oom_kill, memory.oom_control
    /// oom_kill, pids.events max), never guessed from SIGKILL alone. A shell reports its child's SIGKILL as 137.
    /// </summary>
    internal static TerminationReason? CgroupReason(CgroupStats? stats, int exitCode, int signal)
    {
        if (stats is null)
            return null;
        if (stats.OomKills > 0 && (signal == SIGKILL || exitCode == 128 + SIGKILL))
            return TerminationReason.OutOfMemory;
        if (stats.PidsLimitHits > 0 && (signal != 0 || exitCode != 0))
            return TerminationReason.PidsLimit;
        return null;
    }

    /// <summary>The program has exited; when nothing else is left in the cgroup, remove it now (a crash leaves nothing behind).</summary>
    private void RemoveCgroupIfEmpty()
    {
        if (HasCgroup && CgroupFiles.ReadProcs(_cgroup.Directories[0]).Length == 0)
            RemoveCgroup();
    }

    /// <summary>Dispose: kill whatever is left in the cgroup, wait for it to empty, rmdir. Once.</summary>
    private void RemoveCgroup()
    {
        if (HasCgroup && Interlocked.Exchange(ref _cgroupRemoved, 1) == 0)
            _cgroup.Remove();
    }
}
