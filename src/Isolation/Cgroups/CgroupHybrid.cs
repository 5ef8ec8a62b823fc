namespace Isolation.Cgroups;

/// <summary>
/// A hybrid host (systemd's "hybrid" layout): a cgroup2 hierarchy (often at /sys/fs/cgroup/unified) beside
/// v1 hierarchies. The v2 cgroup does placement (CLONE_INTO_CGROUP), cgroup.kill, cgroup.freeze, cpu.stat
/// and any controller the unified hierarchy has; v1 does the controllers that live in v1.
/// </summary>
internal sealed class HybridCgroupDriver : ICgroupDriver
{
    private readonly CgroupV2Driver _v2;
    private readonly CgroupV1Driver _v1;
    private readonly CgroupLayout _layout;
    private readonly HashSet<string> _onV2;

    public HybridCgroupDriver(CgroupLayout layout)
    {
        HashSet<string> onV2 = layout.V2Controllers();
        _layout = layout;
        _onV2 = onV2;
        HashSet<string> onV1 = [.. layout.V1.Keys.Where(c => !onV2.Contains(c == "blkio" ? "io" : c == "cpuacct" ? "cpu" : c))];
        _v2 = new CgroupV2Driver(layout, onV2);
        _v1 = new CgroupV1Driver(layout, onV1, useFreezer: false);
    }

    public CgroupMode Mode => CgroupMode.Hybrid;

    public ICgroup Create(CgroupSettings settings, string name)
    {
        var missing = settings.Limits.Controllers().Where(c => !_onV2.Contains(c) && !_layout.V1.ContainsKey(CgroupV1Driver.V1Name(c))).ToList();
        if (missing.Count > 0)
            throw CgroupFiles.Failed($"create a cgroup with the {string.Join(", ", missing)} controller", 2 /* ENOENT */, null,
                $"neither the unified hierarchy nor a v1 hierarchy carries {string.Join(", ", missing)} on this host; drop those limits");
        var v2 = (V2Cgroup)_v2.Create(settings, name);
        try
        {
            return new HybridCgroup(v2, _v1.Create(settings, name));
        }
        catch
        {
            v2.Remove();
            throw;
        }
    }
}

/// <summary>A v2 cgroup and the v1 cgroups of the same sandbox.</summary>
internal sealed class HybridCgroup(V2Cgroup v2, ICgroup v1) : ICgroup
{
    public IReadOnlyList<string> Directories => [.. v2.Directories, .. v1.Directories];

    public int CloneIntoFd => v2.CloneIntoFd;

    public void Place(int pid, bool clonedInto)
    {
        v2.Place(pid, clonedInto);
        v1.Place(pid, clonedInto);
    }

    public LimitMechanism CarrierOf(string controller) =>
        v2.CarrierOf(controller) is var m and not LimitMechanism.None ? m : v1.CarrierOf(controller);

    public void Apply(CgroupLimits limits)
    {
        v2.Apply(limits);
        v1.Apply(limits);
    }

    public CgroupStats ReadStats() => CgroupDriver.Merge(v2.ReadStats(), v1.ReadStats());

    public void Kill() => v2.Kill();

    public void SetFrozen(bool frozen) => v2.SetFrozen(frozen);

    public bool Remove()
    {
        // Killing through v2 empties the v1 cgroups too: they hold the same processes.
        bool v2Gone = v2.Remove();
        return v1.Remove() && v2Gone;
    }
}
