namespace Isolation.Cgroups;

/// <summary>
/// Creates one sandbox's cgroup on one kind of host. The seam between cgroup versions, as crun's cgroup
/// manager and youki's CgroupManager: <see cref="CgroupV2Driver"/>, <see cref="CgroupV1Driver"/>,
/// <see cref="HybridCgroupDriver"/>, and <see cref="NoCgroup"/> where there is none.
/// </summary>
internal interface ICgroupDriver
{
    /// <summary>The host kind this driver serves.</summary>
    CgroupMode Mode { get; }

    /// <summary>Creates a new cgroup named <paramref name="name"/> and writes its limits. Throws <see cref="SandboxSetupException"/> (step Cgroup), leaving nothing behind.</summary>
    ICgroup Create(CgroupSettings settings, string name);
}

/// <summary>One sandbox's cgroup (a directory per hierarchy).</summary>
internal interface ICgroup
{
    /// <summary>The cgroup's directories, main one first.</summary>
    IReadOnlyList<string> Directories { get; }

    /// <summary>A descriptor of the v2 directory for clone3's CLONE_INTO_CGROUP, or -1.</summary>
    int CloneIntoFd { get; }

    /// <summary>Parent, before sync 1: puts <paramref name="pid"/> in every hierarchy it is not already in (<paramref name="clonedInto"/>: clone3 placed it in the v2 cgroup).</summary>
    void Place(int pid, bool clonedInto);

    /// <summary>Writes the limits that are set (others keep their value).</summary>
    void Apply(CgroupLimits limits);

    /// <summary>Which hierarchy carries <paramref name="controller"/> (a v2 name) for this cgroup, or None.</summary>
    LimitMechanism CarrierOf(string controller);

    /// <summary>Reads the counters.</summary>
    CgroupStats ReadStats();

    /// <summary>Kills every process in the cgroup (v2 cgroup.kill; v1 freeze, SIGKILL each, thaw).</summary>
    void Kill();

    /// <summary>Freezes or thaws every process in the cgroup (v2 cgroup.freeze, v1 freezer.state).</summary>
    void SetFrozen(bool frozen);

    /// <summary>Kills what is left, waits for the cgroup to empty and removes its directories. Never throws.</summary>
    /// <returns>True when every directory is gone.</returns>
    bool Remove();
}

/// <summary>Picks the driver for a host and names new cgroups.</summary>
internal static class CgroupDriver
{
    private static long s_counter;

    /// <summary>The library's parent when the caller's own cgroup cannot be used.</summary>
    public const string DefaultParent = "/isolation";

    public static ICgroupDriver For(CgroupLayout layout) => layout.Mode switch
    {
        CgroupMode.V2 => new CgroupV2Driver(layout, null),
        CgroupMode.V1 => new CgroupV1Driver(layout, null, useFreezer: true),
        CgroupMode.Hybrid => new HybridCgroupDriver(layout),
        _ => new NoCgroupDriver(),
    };

    /// <summary>
    /// A name no other sandbox has, now or before (after cgroup.kill the kernel kills anything later cloned into
    /// the same cgroup): isolation-{pid}-{n}-{token}, the token being this process's random ownership token
    /// (<see cref="CgroupOwner"/>), which also lets a reclaimer find it after a crash.
    /// </summary>
    public static string NewName() =>
        $"isolation-{Environment.ProcessId}-{Interlocked.Increment(ref s_counter)}-{CgroupOwner.Current.Token}";

    /// <summary>
    /// Where to create: the requested parent; else the caller's own cgroup when it is writable (a delegated
    /// subtree) and not the root; then the library's directory under the root.
    /// </summary>
    public static List<string> ParentCandidates(string? requested, string ownPath, Func<string, string> directoryOf)
    {
        if (requested is not null)
            return [requested];
        List<string> candidates = [];
        if (ownPath != "/" && CgroupFiles.Writable(directoryOf(ownPath)))
            candidates.Add(ownPath);
        candidates.Add(DefaultParent);
        return candidates;
    }

    /// <summary>mkdir -p of <paramref name="directory"/> below <paramref name="mountDir"/>; returns the directory.</summary>
    public static string MakeParents(string mountDir, string directory)
    {
        string relative = Path.GetRelativePath(mountDir, directory);
        string current = mountDir;
        if (relative != ".")
        {
            foreach (string part in relative.Split('/'))
            {
                current = Path.Join(current, part);
                CgroupFiles.MakeDirectory(current);
            }
        }
        return current;
    }

    /// <summary>
    /// mkdir -p the parent, let <paramref name="prepareParent"/> set it up, then mkdir the sandbox's cgroup.
    /// Retries when another sandbox removed the library's empty parent in between (ENOENT).
    /// </summary>
    public static string MakeCgroup(string mountDir, string parentDirectory, string name, Action<string>? prepareParent = null)
    {
        for (int attempt = 0; ; attempt++)
        {
            string parent = MakeParents(mountDir, parentDirectory);
            prepareParent?.Invoke(parent);
            CgroupOwner.Current.Record(parent, name); // before the mkdir: a crash right after it leaves a cgroup its lock file points to
            try
            {
                string dir = Path.Join(parent, name);
                CgroupFiles.MakeDirectory(dir);
                return dir;
            }
            catch (SandboxSetupException e) when (e.Errno == 2 && attempt < 3)
            {
            }
        }
    }

    /// <summary>
    /// After removing a sandbox's cgroup under the library's default parent, remove that parent too when it
    /// is empty, so no directory of ours outlives its sandboxes. Another sandbox may be using it: EBUSY is fine.
    /// </summary>
    public static void RemoveDefaultParentIfEmpty(string cgroupDirectory)
    {
        string parent = Path.GetDirectoryName(cgroupDirectory)!;
        if (Path.GetFileName(parent) == DefaultParent[1..])
            Interop.Interop.rmdir_path(parent);
    }

    /// <summary>
    /// Tries each parent in turn; a permission or busy error moves to the next. When all fail, a busy caller's
    /// cgroup (it holds processes, so it cannot enable controllers: the no-internal-processes rule) is the
    /// more useful error to report than the root's EACCES, else the last error is.
    /// </summary>
    public static T TryParents<T>(List<string> candidates, Func<string, T> create)
    {
        SandboxSetupException? busy = null;
        for (int i = 0; ; i++)
        {
            try
            {
                return create(candidates[i]);
            }
            catch (SandboxSetupException e) when (i + 1 < candidates.Count && e.Errno is 1 or 13 or 16 or 30) // EPERM EACCES EBUSY EROFS
            {
                if (e.Errno == 16)
                    busy ??= e;
            }
            catch (SandboxSetupException) when (busy is not null)
            {
                throw busy;
            }
        }
    }

    /// <summary>Removes directories, children before parents; true when all are gone.</summary>
    public static bool RemoveAll(IEnumerable<string> directories)
    {
        bool ok = true;
        foreach (string dir in directories)
            ok &= CgroupFiles.RemoveDirectory(dir, TimeSpan.FromSeconds(5));
        return ok;
    }

    /// <summary>Waits (up to 5 s) until no process is left in <paramref name="dir"/>.</summary>
    public static bool WaitEmpty(string dir, Action? killAgain = null)
    {
        long deadline = Environment.TickCount64 + 5000;
        while (CgroupFiles.ReadProcs(dir).Length > 0)
        {
            if (Environment.TickCount64 > deadline)
                return false;
            killAgain?.Invoke();
            Thread.Sleep(5);
        }
        return true;
    }

    /// <summary>Takes each field from <paramref name="first"/>, falling back to <paramref name="second"/>.</summary>
    public static CgroupStats Merge(CgroupStats first, CgroupStats second) => new()
    {
        MemoryCurrentBytes = first.MemoryCurrentBytes ?? second.MemoryCurrentBytes,
        MemoryPeakBytes = first.MemoryPeakBytes ?? second.MemoryPeakBytes,
        OomKills = first.OomKills ?? second.OomKills,
        CpuUser = first.CpuUser ?? second.CpuUser,
        CpuSystem = first.CpuSystem ?? second.CpuSystem,
        CpuTotal = first.CpuTotal ?? second.CpuTotal,
        CpuPeriods = first.CpuPeriods ?? second.CpuPeriods,
        CpuThrottledPeriods = first.CpuThrottledPeriods ?? second.CpuThrottledPeriods,
        CpuThrottled = first.CpuThrottled ?? second.CpuThrottled,
        PidsCurrent = first.PidsCurrent ?? second.PidsCurrent,
        PidsLimitHits = first.PidsLimitHits ?? second.PidsLimitHits,
        IoReadBytes = first.IoReadBytes ?? second.IoReadBytes,
        IoWriteBytes = first.IoWriteBytes ?? second.IoWriteBytes,
    };
}

/// <summary>No cgroup: a sandbox started without <see cref="NamespaceBuilder.WithCgroup"/>, or best-effort on a host without usable cgroups.</summary>
internal sealed class NoCgroup : ICgroup
{
    public static NoCgroup Instance { get; } = new();

    public IReadOnlyList<string> Directories => [];
    public int CloneIntoFd => -1;
    public void Place(int pid, bool clonedInto) { }
    public LimitMechanism CarrierOf(string controller) => LimitMechanism.None;
    public void Apply(CgroupLimits limits) => throw new InvalidOperationException("This sandbox has no cgroup: it was started without WithCgroup, or best-effort on a host without usable cgroups (see IsolatedProcess.CgroupError).");
    public CgroupStats ReadStats() => new();
    public void Kill() { }
    public void SetFrozen(bool frozen) => throw new InvalidOperationException("This sandbox has no cgroup to freeze; start it WithCgroup(...).");
    public bool Remove() => true;
}

/// <summary>The driver of a host with no cgroup file system mounted.</summary>
internal sealed class NoCgroupDriver : ICgroupDriver
{
    public CgroupMode Mode => CgroupMode.None;

    public ICgroup Create(CgroupSettings settings, string name) =>
        throw new SandboxSetupException(SetupStep.Cgroup, "create a cgroup: no cgroup file system is mounted (no cgroup2 or cgroup entry in /proc/self/mountinfo)", 0, null,
            "mount cgroup2 on /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup), or call CgroupBuilder.BestEffort() to run without limits");
}
