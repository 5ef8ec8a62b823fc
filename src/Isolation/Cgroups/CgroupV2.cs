using System.Runtime.InteropServices;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation.Cgroups;

/// <summary>
/// cgroup v2 (Documentation/admin-guide/cgroup-v2.rst): one directory per sandbox, a leaf (the
/// "no internal processes" rule), controllers enabled top-down in each ancestor's cgroup.subtree_control.
/// </summary>
/// <param name="layout">Where the hierarchy is.</param>
/// <param name="controllers">The controllers to use here (hybrid hosts: those the unified hierarchy has); null: all.</param>
internal sealed class CgroupV2Driver(CgroupLayout layout, IReadOnlySet<string>? controllers) : ICgroupDriver
{
    public CgroupMode Mode => CgroupMode.V2;

    public ICgroup Create(CgroupSettings settings, string name)
    {
        string mount = layout.V2MountPoint!;
        List<string> needed = [.. settings.Limits.Controllers().Where(c => controllers is null || controllers.Contains(c))];
        List<string> candidates = CgroupDriver.ParentCandidates(settings.Parent, layout.V2OwnPath, layout.V2Directory);
        return CgroupDriver.TryParents(candidates, parentPath =>
        {
            string dir = CgroupDriver.MakeCgroup(mount, layout.V2Directory(parentPath), name, parent => EnableControllers(mount, parent, needed));
            var cgroup = new V2Cgroup(dir, needed) { OwnsParent = settings.Parent is null && parentPath == CgroupDriver.DefaultParent };
            try
            {
                cgroup.Open();
                cgroup.Apply(settings.Limits);
                return cgroup;
            }
            catch
            {
                cgroup.Remove();
                throw;
            }
        });
    }

    /// <summary>
    /// "Enabling a controller in a cgroup indicates that the distribution of the target resource across its
    /// immediate children will be controlled" — so each ancestor from the root down to <paramref name="parent"/>
    /// gets "+controller" in cgroup.subtree_control (cgroup-v2.rst, "Enabling and Disabling").
    /// </summary>
    internal static void EnableControllers(string mount, string parent, IReadOnlyCollection<string> needed)
    {
        if (needed.Count == 0)
            return;
        // A parent that holds processes cannot enable controllers for children (EBUSY). Find out before
        // touching any ancestor, so a failed candidate changes nothing on the host.
        if (parent != mount && !needed.All(CgroupFiles.ReadList(Path.Join(parent, "cgroup.subtree_control")).Contains)
            && CgroupFiles.ReadProcs(parent).Length > 0)
            throw CgroupFiles.Failed($"enable {string.Join(", ", needed)} in {parent}", EBUSY, parent);
        List<string> chain = [mount];
        string relative = Path.GetRelativePath(mount, parent);
        if (relative != ".")
        {
            foreach (string part in relative.Split('/'))
                chain.Add(Path.Join(chain[^1], part));
        }
        foreach (string dir in chain)
        {
            string file = Path.Join(dir, "cgroup.subtree_control");
            HashSet<string> enabled = CgroupFiles.ReadList(file);
            foreach (string controller in needed.Where(c => !enabled.Contains(c)))
            {
                if (!CgroupFiles.ReadList(Path.Join(dir, "cgroup.controllers")).Contains(controller))
                    throw CgroupFiles.Failed($"enable the {controller} controller in {dir}", ENOENT, dir,
                        $"the {controller} controller is not available in {dir} (not in its cgroup.controllers): it was not delegated to this subtree; enable it in the parent's cgroup.subtree_control or use systemd's Delegate=yes");
                int errno = CgroupFiles.TryWrite(file, "+" + controller);
                if (errno != 0)
                    throw CgroupFiles.Failed($"enable the {controller} controller in {file}", errno, file);
            }
        }
    }
}

/// <summary>One sandbox's cgroup v2 directory.</summary>
internal sealed class V2Cgroup(string dir, IReadOnlyCollection<string> controllers) : ICgroup
{
    private int _fd = -1;

    public string Directory => dir;

    /// <summary>The parent is the library's default one: remove it when it is left empty.</summary>
    public bool OwnsParent { get; init; }

    public IReadOnlyList<string> Directories => [dir];

    public int CloneIntoFd => _fd;

    /// <summary>Opens the directory for clone3's CLONE_INTO_CGROUP (clone(2): "cgroup" is a directory file descriptor).</summary>
    public void Open()
    {
        _fd = open_path(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        if (_fd < 0)
            throw CgroupFiles.Failed($"open cgroup {dir}", Marshal.GetLastPInvokeError(), dir);
    }

    public LimitMechanism CarrierOf(string controller) =>
        controllers.Contains(controller) ? LimitMechanism.CgroupV2 : LimitMechanism.None;

    public void Place(int pid, bool clonedInto)
    {
        if (!clonedInto)
            CgroupFiles.Write(Path.Join(dir, "cgroup.procs"), CgroupFiles.Format(pid));
    }

    public void Apply(CgroupLimits l)
    {
        // cgroup-v2.rst, "Memory Interface Files", "PID Interface Files", "CPU Interface Files", "Cpuset", "IO".
        if (controllers.Contains("memory"))
        {
            if (l.MemoryMax is { } max)
                CgroupFiles.Write(Path.Join(dir, "memory.max"), CgroupFiles.Format(max));
            if (l.MemoryHigh is { } high)
                CgroupFiles.Write(Path.Join(dir, "memory.high"), CgroupFiles.Format(high));
            if (l.MemorySwapMax is { } swap)
                CgroupFiles.Write(Path.Join(dir, "memory.swap.max"), CgroupFiles.Format(swap));
        }
        if (controllers.Contains("pids") && l.PidsMax is { } pids)
            CgroupFiles.Write(Path.Join(dir, "pids.max"), CgroupFiles.Format(pids));
        if (controllers.Contains("cpu"))
        {
            // cpu.max: "$MAX $PERIOD", "max" for no limit.
            if (l.CpuQuotaMicroseconds is { } quota)
                CgroupFiles.Write(Path.Join(dir, "cpu.max"), $"{CgroupFiles.Format(quota)} {CgroupFiles.Format(l.CpuPeriodMicroseconds)}");
            if (l.CpuWeight is { } weight)
                CgroupFiles.Write(Path.Join(dir, "cpu.weight"), CgroupFiles.Format(weight));
        }
        if (controllers.Contains("cpuset"))
        {
            if (l.CpusetCpus is { } cpus)
                CgroupFiles.Write(Path.Join(dir, "cpuset.cpus"), cpus);
            if (l.CpusetMems is { } mems)
                CgroupFiles.Write(Path.Join(dir, "cpuset.mems"), mems);
        }
        if (controllers.Contains("io"))
        {
            // io.weight: "default $WEIGHT"; io.max: "$MAJ:$MIN rbps=... wbps=... riops=... wiops=...".
            if (l.IoWeight is { } weight)
                CgroupFiles.Write(Path.Join(dir, "io.weight"), $"default {CgroupFiles.Format(weight)}");
            foreach (IoDeviceLimit device in l.IoMax)
                CgroupFiles.Write(Path.Join(dir, "io.max"), device.ToIoMaxLine());
        }
    }

    public CgroupStats ReadStats()
    {
        // cpu.stat's usage_usec, user_usec and system_usec exist even without the cpu controller.
        Dictionary<string, long> cpu = CgroupFiles.ReadFlatKeyed(Path.Join(dir, "cpu.stat"));
        Dictionary<string, long> memoryEvents = CgroupFiles.ReadFlatKeyed(Path.Join(dir, "memory.events"));
        Dictionary<string, long> pidsEvents = CgroupFiles.ReadFlatKeyed(Path.Join(dir, "pids.events"));
        string? io = CgroupFiles.TryRead(Path.Join(dir, "io.stat"));
        return new CgroupStats
        {
            MemoryCurrentBytes = CgroupFiles.ReadValue(Path.Join(dir, "memory.current")),
            MemoryPeakBytes = CgroupFiles.ReadValue(Path.Join(dir, "memory.peak")),
            OomKills = memoryEvents.TryGetValue("oom_kill", out long oom) ? oom : null,
            CpuTotal = Micros(cpu, "usage_usec"),
            CpuUser = Micros(cpu, "user_usec"),
            CpuSystem = Micros(cpu, "system_usec"),
            CpuPeriods = cpu.TryGetValue("nr_periods", out long periods) ? periods : null,
            CpuThrottledPeriods = cpu.TryGetValue("nr_throttled", out long throttled) ? throttled : null,
            CpuThrottled = Micros(cpu, "throttled_usec"),
            PidsCurrent = CgroupFiles.ReadValue(Path.Join(dir, "pids.current")),
            PidsLimitHits = pidsEvents.TryGetValue("max", out long hits) ? hits : null,
            IoReadBytes = CgroupFiles.SumNestedKeyed(io, "rbytes"),
            IoWriteBytes = CgroupFiles.SumNestedKeyed(io, "wbytes"),
        };
    }

    private static TimeSpan? Micros(Dictionary<string, long> stat, string key) =>
        stat.TryGetValue(key, out long v) ? TimeSpan.FromMicroseconds(v) : null;

    /// <summary>"Writing "1" to the file causes the cgroup and all descendant cgroups to be killed" (cgroup-v2.rst, cgroup.kill, Linux 5.14+).</summary>
    public void Kill()
    {
        if (CgroupFiles.TryWrite(Path.Join(dir, "cgroup.kill"), "1") == 0)
            return;
        // Older kernels: SIGKILL each process until none is left.
        foreach (int pid in CgroupFiles.ReadProcs(dir))
            kill(pid, SIGKILL);
    }

    /// <summary>
    /// cgroup.freeze: "Freezing of the cgroup may take some time; when this action is completed, the "frozen"
    /// value in the cgroup.events control file will be updated" (cgroup-v2.rst). Waits for it, up to 2 s.
    /// </summary>
    public void SetFrozen(bool frozen)
    {
        CgroupFiles.Write(Path.Join(dir, "cgroup.freeze"), frozen ? "1" : "0");
        string events = Path.Join(dir, "cgroup.events");
        for (int i = 0; i < 400 && CgroupFiles.ParseFlatKeyed(CgroupFiles.TryRead(events)).GetValueOrDefault("frozen") != (frozen ? 1 : 0); i++)
            Thread.Sleep(5);
    }

    public bool Remove()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0)
            close(fd);
        if (!System.IO.Directory.Exists(dir))
            return true;
        Kill();
        CgroupDriver.WaitEmpty(dir, Kill);
        bool removed = CgroupFiles.RemoveDirectory(dir, TimeSpan.FromSeconds(5));
        if (removed && OwnsParent)
            CgroupDriver.RemoveDefaultParentIfEmpty(dir);
        return removed;
    }
}
