using static Tmds.Linux.LibC;

namespace Isolation.Cgroups;

/// <summary>
/// cgroup v1 (Documentation/admin-guide/cgroup-v1/): a directory per hierarchy (one hierarchy may carry
/// several controllers, e.g. "cpu,cpuacct"), and the parent writes the child's pid into each one's
/// cgroup.procs before releasing it.
/// </summary>
/// <param name="layout">Where the hierarchies are.</param>
/// <param name="controllers">The v1 controllers to use (hybrid hosts: those not in the unified hierarchy); null: all of memory, pids, cpu, cpuacct, cpuset, blkio.</param>
/// <param name="useFreezer">Create a freezer cgroup too, for freeze and whole-tree kill (not needed when v2 does both).</param>
internal sealed class CgroupV1Driver(CgroupLayout layout, IReadOnlySet<string>? controllers, bool useFreezer) : ICgroupDriver
{
    public CgroupMode Mode => CgroupMode.V1;

    /// <summary>v2 controller names as v1 calls them.</summary>
    internal static string V1Name(string v2Controller) => v2Controller == "io" ? "blkio" : v2Controller;

    public ICgroup Create(CgroupSettings settings, string name)
    {
        // Hierarchies for the requested limits, for the counters (memory, cpuacct, pids, blkio) and the freezer.
        HashSet<string> wanted = [.. settings.Limits.Controllers().Select(V1Name), "memory", "cpuacct", "pids", "blkio"];
        if (useFreezer)
            wanted.Add("freezer");
        if (controllers is not null)
            wanted.IntersectWith(controllers);
        var missing = settings.Limits.Controllers().Select(V1Name).Where(c => (controllers is null || controllers.Contains(c)) && !layout.V1.ContainsKey(c)).ToList();
        if (missing.Count > 0)
            throw CgroupFiles.Failed($"create a cgroup with the {string.Join(", ", missing)} controller", ENOENT, null,
                $"no cgroup v1 hierarchy carries {string.Join(", ", missing)} on this host (see /proc/self/mountinfo); drop those limits or mount the controller");

        var cgroup = new V1Cgroup();
        try
        {
            foreach (V1Hierarchy h in wanted.Where(layout.V1.ContainsKey).Select(c => layout.V1[c]).Distinct())
            {
                List<string> candidates = CgroupDriver.ParentCandidates(settings.Parent, h.OwnPath, p => CgroupLayout.V1Directory(h, p));
                (string dir, bool ownsParent) = CgroupDriver.TryParents(candidates, parentPath =>
                    (CgroupDriver.MakeCgroup(h.MountPoint, CgroupLayout.V1Directory(h, parentPath), name),
                     settings.Parent is null && parentPath == CgroupDriver.DefaultParent));
                cgroup.Add(h.Controllers, dir, ownsParent);
                if (h.Controllers.Contains("cpuset"))
                    InheritCpuset(h.MountPoint, dir);
            }
            cgroup.Apply(settings.Limits);
            return cgroup;
        }
        catch
        {
            cgroup.Remove();
            throw;
        }
    }

    /// <summary>
    /// A new v1 cpuset has empty cpuset.cpus and cpuset.mems, and "a task cannot be attached to a cpuset
    /// with no CPUs or memory nodes" (cgroup-v1/cpusets.rst): copy them down from the nearest ancestor.
    /// </summary>
    private static void InheritCpuset(string mount, string dir)
    {
        List<string> chain = [];
        for (string d = dir; d.Length >= mount.Length; d = Path.GetDirectoryName(d)!)
        {
            chain.Insert(0, d);
            if (d == mount)
                break;
        }
        foreach (string file in new[] { "cpuset.cpus", "cpuset.mems" })
        {
            for (int i = 1; i < chain.Count; i++)
            {
                string path = Path.Join(chain[i], file);
                if (string.IsNullOrWhiteSpace(CgroupFiles.TryRead(path)))
                    CgroupFiles.Write(path, CgroupFiles.TryRead(Path.Join(chain[i - 1], file))!.Trim());
            }
        }
    }
}

/// <summary>One sandbox's cgroup v1 directories, by controller.</summary>
internal sealed class V1Cgroup : ICgroup
{
    private readonly Dictionary<string, string> _dirs = new(StringComparer.Ordinal);
    private readonly List<string> _ordered = [];
    private readonly HashSet<string> _ownsParent = [];

    public IReadOnlyList<string> Directories => _ordered;

    public int CloneIntoFd => -1;

    /// <summary>Adds a hierarchy's directory; <paramref name="ownsParent"/>: its parent is the library's default, removed when left empty.</summary>
    public void Add(IEnumerable<string> controllers, string dir, bool ownsParent = false)
    {
        foreach (string c in controllers)
            _dirs[c] = dir;
        _ordered.Add(dir);
        if (ownsParent)
            _ownsParent.Add(dir);
    }

    private string? Dir(string controller) => _dirs.GetValueOrDefault(controller);

    public LimitMechanism CarrierOf(string controller) =>
        _dirs.ContainsKey(CgroupV1Driver.V1Name(controller)) ? LimitMechanism.CgroupV1 : LimitMechanism.None;

    private string? File(string controller, string file) => Dir(controller) is { } d ? Path.Join(d, file) : null;

    public void Place(int pid, bool clonedInto)
    {
        foreach (string dir in _ordered)
            CgroupFiles.Write(Path.Join(dir, "cgroup.procs"), CgroupFiles.Format(pid));
    }

    public void Apply(CgroupLimits l)
    {
        if (Dir("memory") is { } memory)
        {
            if (l.MemoryHigh is not null)
                throw new SandboxSetupException(SetupStep.Cgroup, "set MemoryHigh", 0, memory,
                    "cgroup v1's memory controller has no memory.high; use MemoryMax, or a host with memory in cgroup v2");
            if (l.MemoryMax is { } max)
            {
                // memory.limit_in_bytes must stay <= memory.memsw.limit_in_bytes (cgroup-v1/memory.rst 2.5):
                // raise memsw first when growing, lower it last when shrinking.
                string memsw = Path.Join(memory, "memory.memsw.limit_in_bytes");
                long? total = l.MemorySwapMax is { } swap ? max + swap : null;
                if (total is { } t && CgroupFiles.TryWrite(memsw, CgroupFiles.Format(t)) == 0)
                    total = null;
                CgroupFiles.Write(Path.Join(memory, "memory.limit_in_bytes"), CgroupFiles.Format(max));
                if (total is { } t2)
                {
                    if (!System.IO.File.Exists(memsw))
                        throw CgroupFiles.Failed("set MemorySwapMax", ENOENT, memsw, "swap accounting is off (boot with swapaccount=1) so cgroup v1 cannot limit swap");
                    CgroupFiles.Write(memsw, CgroupFiles.Format(t2));
                }
            }
        }
        if (l.PidsMax is { } pids && File("pids", "pids.max") is { } pidsMax)
            CgroupFiles.Write(pidsMax, CgroupFiles.Format(pids));
        if (Dir("cpu") is { } cpu)
        {
            // cgroup-v1 CFS bandwidth (Documentation/scheduler/sched-bwc.rst): cfs_period_us then cfs_quota_us.
            if (l.CpuQuotaMicroseconds is { } quota)
            {
                CgroupFiles.Write(Path.Join(cpu, "cpu.cfs_period_us"), CgroupFiles.Format(l.CpuPeriodMicroseconds));
                CgroupFiles.Write(Path.Join(cpu, "cpu.cfs_quota_us"), CgroupFiles.Format(quota));
            }
            if (l.CpuWeight is { } weight)
                CgroupFiles.Write(Path.Join(cpu, "cpu.shares"), CgroupFiles.Format(WeightToShares(weight)));
        }
        if (Dir("cpuset") is { } cpuset)
        {
            if (l.CpusetCpus is { } cpus)
                CgroupFiles.Write(Path.Join(cpuset, "cpuset.cpus"), cpus);
            if (l.CpusetMems is { } mems)
                CgroupFiles.Write(Path.Join(cpuset, "cpuset.mems"), mems);
        }
        if (Dir("blkio") is { } blkio)
        {
            if (l.IoWeight is { } weight)
                CgroupFiles.Write(Path.Join(blkio, "blkio.weight"), CgroupFiles.Format(10 + (weight - 1) * 990L / 9999));
            // cgroup-v1/blkio-controller.rst: "MAJ:MIN VALUE" per throttle file.
            foreach (IoDeviceLimit d in l.IoMax)
            {
                void Throttle(string file, long? value)
                {
                    if (value is { } v)
                        CgroupFiles.Write(Path.Join(blkio, file), $"{d.Major}:{d.Minor} {CgroupFiles.Format(v)}");
                }
                Throttle("blkio.throttle.read_bps_device", d.ReadBytesPerSecond);
                Throttle("blkio.throttle.write_bps_device", d.WriteBytesPerSecond);
                Throttle("blkio.throttle.read_iops_device", d.ReadIopsPerSecond);
                Throttle("blkio.throttle.write_iops_device", d.WriteIopsPerSecond);
            }
        }
    }

    /// <summary>cpu.weight (1–10000, default 100) to cpu.shares (2–262144, default 1024): the inverse of runc's shares-to-weight conversion.</summary>
    internal static long WeightToShares(int weight) => 2 + (weight - 1) * 262142L / 9999;

    public CgroupStats ReadStats()
    {
        Dictionary<string, long> oom = File("memory", "memory.oom_control") is { } o ? CgroupFiles.ReadFlatKeyed(o) : [];
        Dictionary<string, long> cpu = File("cpu", "cpu.stat") is { } c ? CgroupFiles.ReadFlatKeyed(c) : [];
        Dictionary<string, long> pidsEvents = File("pids", "pids.events") is { } p ? CgroupFiles.ReadFlatKeyed(p) : [];
        string? blkio = File("blkio", "blkio.throttle.io_service_bytes_recursive") is { } b ? CgroupFiles.TryRead(b) : null;
        return new CgroupStats
        {
            MemoryCurrentBytes = Value("memory", "memory.usage_in_bytes"),
            MemoryPeakBytes = Value("memory", "memory.max_usage_in_bytes"),
            OomKills = oom.TryGetValue("oom_kill", out long kills) ? kills : null,
            CpuTotal = Nanos(Value("cpuacct", "cpuacct.usage")),
            CpuUser = Nanos(Value("cpuacct", "cpuacct.usage_user")),
            CpuSystem = Nanos(Value("cpuacct", "cpuacct.usage_sys")),
            CpuPeriods = cpu.TryGetValue("nr_periods", out long periods) ? periods : null,
            CpuThrottledPeriods = cpu.TryGetValue("nr_throttled", out long throttled) ? throttled : null,
            CpuThrottled = cpu.TryGetValue("throttled_time", out long ns) ? Nanos(ns) : null,
            PidsCurrent = Value("pids", "pids.current"),
            PidsLimitHits = pidsEvents.TryGetValue("max", out long hits) ? hits : null,
            IoReadBytes = CgroupFiles.SumBlkio(blkio, "Read"),
            IoWriteBytes = CgroupFiles.SumBlkio(blkio, "Write"),
        };
    }

    private long? Value(string controller, string file) => File(controller, file) is { } f ? CgroupFiles.ReadValue(f) : null;

    private static TimeSpan? Nanos(long? ns) => ns is { } v ? TimeSpan.FromTicks(v / 100) : null;

    /// <summary>Freeze so nothing forks while we kill, SIGKILL each task, thaw so the kills are delivered.</summary>
    public void Kill()
    {
        bool frozen = Dir("freezer") is not null && TrySetFrozen(true);
        foreach (string dir in _ordered)
        {
            foreach (int pid in CgroupFiles.ReadProcs(dir))
                kill(pid, SIGKILL);
        }
        if (frozen)
            TrySetFrozen(false);
    }

    public void SetFrozen(bool frozen)
    {
        string state = File("freezer", "freezer.state")
            ?? throw new InvalidOperationException("No v1 freezer hierarchy is mounted; freezing needs the freezer controller or cgroup v2.");
        if (!TrySetFrozen(frozen))
            CgroupFiles.Write(state, frozen ? "FROZEN" : "THAWED"); // again, to throw with the errno
    }

    private bool TrySetFrozen(bool frozen)
    {
        // cgroup-v1/freezer-subsystem.rst: FREEZING until every task is frozen; poll briefly.
        string state = File("freezer", "freezer.state")!;
        if (CgroupFiles.TryWrite(state, frozen ? "FROZEN" : "THAWED") != 0)
            return false;
        for (int i = 0; frozen && i < 200 && CgroupFiles.TryRead(state)?.Trim() == "FREEZING"; i++)
            Thread.Sleep(1);
        return true;
    }

    public bool Remove()
    {
        if (_ordered.Count == 0 || !_ordered.Any(System.IO.Directory.Exists))
            return true;
        Kill();
        foreach (string dir in _ordered)
            CgroupDriver.WaitEmpty(dir, Kill);
        bool removed = CgroupDriver.RemoveAll(_ordered);
        foreach (string dir in _ownsParent)
            CgroupDriver.RemoveDefaultParentIfEmpty(dir);
        return removed;
    }
}
