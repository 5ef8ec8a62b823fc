using Isolation.Cgroups;

namespace Isolation.Tests.Unit;

/// <summary>Cgroup file logic against a temp directory laid out like cgroupfs (no kernel).</summary>
public sealed class CgroupFileTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("isolation-cgroupfs-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>A cgroup directory with these interface files, as the kernel would create them.</summary>
    private string Cgroup(string relative, params (string File, string Content)[] files)
    {
        string dir = Path.Join(_root, relative);
        Directory.CreateDirectory(dir);
        foreach ((string file, string content) in files)
            File.WriteAllText(Path.Join(dir, file), content);
        return dir;
    }

    private static string Read(string dir, string file) => File.ReadAllText(Path.Join(dir, file));

    [Fact]
    public void V2_limits_are_written_in_the_kernels_formats()
    {
        string dir = Cgroup("sandbox", ("memory.max", ""), ("memory.high", ""), ("memory.swap.max", ""), ("pids.max", ""),
            ("cpu.max", ""), ("cpu.weight", ""), ("cpuset.cpus", ""), ("cpuset.mems", ""), ("io.weight", ""), ("io.max", ""));
        var cgroup = new V2Cgroup(dir, ["memory", "pids", "cpu", "cpuset", "io"]);

        cgroup.Apply(new CgroupLimits
        {
            MemoryMax = 64 << 20, MemoryHigh = 48 << 20, MemorySwapMax = 0, PidsMax = 64,
            CpuQuotaMicroseconds = 50_000, CpuWeight = 200, CpusetCpus = "0-1", CpusetMems = "0",
            IoWeight = 300, IoMax = [new IoDeviceLimit(8, 16, ReadBytesPerSecond: 2097152, WriteIopsPerSecond: 120)],
        });

        Assert.Equal("67108864", Read(dir, "memory.max"));
        Assert.Equal("50331648", Read(dir, "memory.high"));
        Assert.Equal("0", Read(dir, "memory.swap.max"));
        Assert.Equal("64", Read(dir, "pids.max"));
        Assert.Equal("50000 100000", Read(dir, "cpu.max"));
        Assert.Equal("200", Read(dir, "cpu.weight"));
        Assert.Equal("0-1", Read(dir, "cpuset.cpus"));
        Assert.Equal("default 300", Read(dir, "io.weight"));
        Assert.Equal("8:16 rbps=2097152 wbps=max riops=max wiops=120", Read(dir, "io.max"));
    }

    [Fact]
    public void V2_writes_only_the_controllers_it_is_given_on_a_hybrid_host()
    {
        string dir = Cgroup("sandbox", ("pids.max", "max"));
        var cgroup = new V2Cgroup(dir, []);

        cgroup.Apply(new CgroupLimits { PidsMax = 10, MemoryMax = 1 << 20 });

        Assert.Equal("max", Read(dir, "pids.max"));
        Assert.False(File.Exists(Path.Join(dir, "memory.max")));
    }

    [Fact]
    public void V2_enables_controllers_in_every_ancestor_from_the_root_down()
    {
        Cgroup("", ("cgroup.controllers", "cpu memory pids\n"), ("cgroup.subtree_control", "memory\n"));
        string parent = Cgroup("isolation", ("cgroup.controllers", "memory\n"), ("cgroup.subtree_control", ""));

        // The root's pids goes first; then the parent (whose cgroup.controllers the kernel would have updated).
        File.WriteAllText(Path.Join(parent, "cgroup.controllers"), "memory pids\n");
        CgroupV2Driver.EnableControllers(_root, parent, ["memory", "pids"]);

        Assert.Equal("+pids", Read(_root, "cgroup.subtree_control"));
        Assert.Equal("+pids", Read(parent, "cgroup.subtree_control")); // the last write: "+memory" came first
    }

    [Fact]
    public void V2_refuses_a_parent_with_processes_before_touching_any_ancestor()
    {
        Cgroup("", ("cgroup.controllers", "memory\n"), ("cgroup.subtree_control", ""));
        string own = Cgroup("session.scope", ("cgroup.controllers", "memory\n"), ("cgroup.subtree_control", ""), ("cgroup.procs", "4242\n"));

        var e = Assert.Throws<SandboxSetupException>(() => CgroupV2Driver.EnableControllers(_root, own, ["memory"]));

        Assert.Equal("EBUSY", e.ErrnoName);
        Assert.Equal("", Read(_root, "cgroup.subtree_control"));
    }

    [Fact]
    public void V2_names_a_controller_that_was_not_delegated()
    {
        Cgroup("", ("cgroup.controllers", "memory\n"), ("cgroup.subtree_control", ""));

        var e = Assert.Throws<SandboxSetupException>(() => CgroupV2Driver.EnableControllers(_root, _root, ["pids"]));

        Assert.Equal(SetupStep.Cgroup, e.Step);
        Assert.Contains("pids", e.Hint);
        Assert.Contains("Delegate=yes", e.Hint);
    }

    [Fact]
    public void V2_stats_are_read_from_memory_cpu_pids_and_io_files()
    {
        string dir = Cgroup("sandbox",
            ("memory.current", "1048576\n"), ("memory.peak", "2097152\n"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n"),
            ("cpu.stat", "usage_usec 250000\nuser_usec 200000\nsystem_usec 50000\nnr_periods 10\nnr_throttled 4\nthrottled_usec 70000\n"),
            ("pids.current", "5\n"), ("pids.events", "max 2\n"),
            ("io.stat", "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n8:0 rbytes=100 wbytes=200 rios=1 wios=1\n"));

        CgroupStats s = new V2Cgroup(dir, []).ReadStats();

        Assert.Equal(1048576, s.MemoryCurrentBytes);
        Assert.Equal(2097152, s.MemoryPeakBytes);
        Assert.Equal(1, s.OomKills);
        Assert.Equal(TimeSpan.FromMilliseconds(250), s.CpuTotal);
        Assert.Equal(TimeSpan.FromMilliseconds(200), s.CpuUser);
        Assert.Equal(TimeSpan.FromMilliseconds(50), s.CpuSystem);
        Assert.Equal(4, s.CpuThrottledPeriods);
        Assert.Equal(TimeSpan.FromMilliseconds(70), s.CpuThrottled);
        Assert.Equal(5, s.PidsCurrent);
        Assert.Equal(2, s.PidsLimitHits);
        Assert.Equal(1459300, s.IoReadBytes);
        Assert.Equal(314773704, s.IoWriteBytes);
    }

    [Fact]
    public void V2_stats_of_a_controller_that_is_not_enabled_are_null()
    {
        string dir = Cgroup("sandbox", ("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\n"));

        CgroupStats s = new V2Cgroup(dir, []).ReadStats();

        Assert.Null(s.MemoryCurrentBytes);
        Assert.Null(s.PidsCurrent);
        Assert.Null(s.CpuThrottledPeriods);
        Assert.Equal(TimeSpan.FromMicroseconds(10), s.CpuTotal);
    }

    [Fact]
    public void V1_limits_are_written_to_each_controllers_directory()
    {
        string memory = Cgroup("memory/sb", ("memory.limit_in_bytes", ""), ("memory.memsw.limit_in_bytes", ""));
        string cpu = Cgroup("cpu/sb", ("cpu.cfs_period_us", ""), ("cpu.cfs_quota_us", ""), ("cpu.shares", ""));
        string pids = Cgroup("pids/sb", ("pids.max", ""));
        string blkio = Cgroup("blkio/sb", ("blkio.throttle.read_bps_device", ""), ("blkio.throttle.write_iops_device", ""));
        var cgroup = new V1Cgroup();
        cgroup.Add(["memory"], memory);
        cgroup.Add(["cpu", "cpuacct"], cpu);
        cgroup.Add(["pids"], pids);
        cgroup.Add(["blkio"], blkio);

        cgroup.Apply(new CgroupLimits
        {
            MemoryMax = 32 << 20, MemorySwapMax = 16 << 20, PidsMax = 10, CpuQuotaMicroseconds = 25_000, CpuWeight = 10000,
            IoMax = [new IoDeviceLimit(8, 0, ReadBytesPerSecond: 1000, WriteIopsPerSecond: 5)],
        });

        Assert.Equal("33554432", Read(memory, "memory.limit_in_bytes"));
        Assert.Equal("50331648", Read(memory, "memory.memsw.limit_in_bytes")); // memory + swap
        Assert.Equal("10", Read(pids, "pids.max"));
        Assert.Equal("100000", Read(cpu, "cpu.cfs_period_us"));
        Assert.Equal("25000", Read(cpu, "cpu.cfs_quota_us"));
        Assert.Equal("262144", Read(cpu, "cpu.shares"));
        Assert.Equal("8:0 1000", Read(blkio, "blkio.throttle.read_bps_device"));
        Assert.Equal("8:0 5", Read(blkio, "blkio.throttle.write_iops_device"));
    }

    [Fact]
    public void V1_refuses_MemoryHigh_with_a_hint_instead_of_ignoring_it()
    {
        var cgroup = new V1Cgroup();
        cgroup.Add(["memory"], Cgroup("memory/sb", ("memory.limit_in_bytes", "")));

        var e = Assert.Throws<SandboxSetupException>(() => cgroup.Apply(new CgroupLimits { MemoryHigh = 1 << 20 }));

        Assert.Contains("memory.high", e.Hint);
    }

    [Fact]
    public void V1_stats_are_read_from_memory_cpuacct_cpu_pids_and_blkio_files()
    {
        var cgroup = new V1Cgroup();
        cgroup.Add(["memory"], Cgroup("memory/sb", ("memory.usage_in_bytes", "4096\n"), ("memory.max_usage_in_bytes", "8192\n"),
            ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")));
        cgroup.Add(["cpuacct"], Cgroup("cpuacct/sb", ("cpuacct.usage", "3000000000\n"), ("cpuacct.usage_user", "2000000000\n"), ("cpuacct.usage_sys", "1000000000\n")));
        cgroup.Add(["cpu"], Cgroup("cpu/sb", ("cpu.stat", "nr_periods 30\nnr_throttled 20\nthrottled_time 1500000000\n")));
        cgroup.Add(["pids"], Cgroup("pids/sb", ("pids.current", "3\n"), ("pids.events", "max 7\n")));
        cgroup.Add(["blkio"], Cgroup("blkio/sb", ("blkio.throttle.io_service_bytes_recursive", "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\nTotal 12288\n")));

        CgroupStats s = cgroup.ReadStats();

        Assert.Equal(4096, s.MemoryCurrentBytes);
        Assert.Equal(8192, s.MemoryPeakBytes);
        Assert.Equal(2, s.OomKills);
        Assert.Equal(TimeSpan.FromSeconds(3), s.CpuTotal);
        Assert.Equal(TimeSpan.FromSeconds(2), s.CpuUser);
        Assert.Equal(TimeSpan.FromSeconds(1), s.CpuSystem);
        Assert.Equal(20, s.CpuThrottledPeriods);
        Assert.Equal(TimeSpan.FromSeconds(1.5), s.CpuThrottled);
        Assert.Equal(3, s.PidsCurrent);
        Assert.Equal(7, s.PidsLimitHits);
        Assert.Equal(4096, s.IoReadBytes);
        Assert.Equal(8192, s.IoWriteBytes);
    }

    [Fact]
    public void Hybrid_stats_take_each_counter_from_the_hierarchy_that_has_it()
    {
        var v2 = new CgroupStats { CpuTotal = TimeSpan.FromSeconds(1) };
        var v1 = new CgroupStats { CpuTotal = TimeSpan.FromSeconds(9), MemoryCurrentBytes = 5 };

        CgroupStats merged = CgroupDriver.Merge(v2, v1);

        Assert.Equal(TimeSpan.FromSeconds(1), merged.CpuTotal);
        Assert.Equal(5, merged.MemoryCurrentBytes);
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(10000, 262144)]
    public void Cpu_weight_converts_to_v1_shares_at_both_ends(int weight, long shares) =>
        Assert.Equal(shares, V1Cgroup.WeightToShares(weight));

    [Fact]
    public void A_hybrid_host_is_detected_from_mountinfo_and_proc_self_cgroup()
    {
        string mountinfo = Path.Join(_root, "mountinfo"), procCgroup = Path.Join(_root, "cgroup");
        File.WriteAllText(mountinfo, """
            30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
            31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
            34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
            38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
            39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
            40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
            """);
        File.WriteAllText(procCgroup, "9:name=systemd:/\n8:pids:/\n4:memory:/app/one\n2:cpu,cpuacct:/\n0::/user.slice\n");

        CgroupLayout layout = CgroupLayout.Detect(mountinfo, procCgroup, checkMagic: false);

        Assert.Equal(CgroupMode.Hybrid, layout.Mode);
        Assert.Equal("/sys/fs/cgroup/unified", layout.V2MountPoint);
        Assert.Equal("/user.slice", layout.V2OwnPath);
        Assert.Equal("/app/one", layout.V1["memory"].OwnPath);
        Assert.Same(layout.V1["cpu"], layout.V1["cpuacct"]);
        Assert.Equal("/sys/fs/cgroup/memory/app/one", CgroupLayout.V1Directory(layout.V1["memory"], "/app/one"));
        Assert.False(layout.V1.ContainsKey("name=systemd"));
    }

    [Fact]
    public void A_unified_host_and_a_cgroup_namespace_root_are_detected()
    {
        string mountinfo = Path.Join(_root, "mountinfo"), procCgroup = Path.Join(_root, "cgroup");
        File.WriteAllText(mountinfo, "25 20 0:22 /outer /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
        File.WriteAllText(procCgroup, "0::/outer/inner\n");

        CgroupLayout layout = CgroupLayout.Detect(mountinfo, procCgroup, checkMagic: false);

        Assert.Equal(CgroupMode.V2, layout.Mode);
        Assert.Equal("/sys/fs/cgroup/inner", layout.V2Directory(layout.V2OwnPath));
    }

    [Fact]
    public void A_host_without_cgroup_mounts_is_None_and_its_driver_explains()
    {
        string mountinfo = Path.Join(_root, "mountinfo");
        File.WriteAllText(mountinfo, "22 1 0:20 / /sys rw - sysfs sysfs rw\n");

        CgroupLayout layout = CgroupLayout.Detect(mountinfo, Path.Join(_root, "missing"), checkMagic: false);
        var e = Assert.Throws<SandboxSetupException>(() => CgroupDriver.For(layout).Create(new CgroupSettings(), "x"));

        Assert.Equal(CgroupMode.None, layout.Mode);
        Assert.Contains("BestEffort", e.Hint);
    }

    [Fact]
    public void When_every_parent_fails_a_busy_own_cgroup_is_reported_rather_than_the_roots_EACCES()
    {
        var e = Assert.Throws<SandboxSetupException>(() => CgroupDriver.TryParents<string>(["/own", "/isolation"], parent =>
            throw CgroupFiles.Failed($"enable memory in {parent}", parent == "/own" ? 16 : 13, parent)));

        Assert.Equal("EBUSY", e.ErrnoName);
        Assert.Contains("no-internal-processes", e.Hint);
    }

    [Fact]
    public void A_parent_that_fails_with_EACCES_falls_back_to_the_next_one()
    {
        string created = CgroupDriver.TryParents(["/own", "/isolation"], parent =>
            parent == "/own" ? throw CgroupFiles.Failed("mkdir", 13, parent) : parent);

        Assert.Equal("/isolation", created);
    }

    [Fact]
    public void New_cgroup_names_are_never_reused()
    {
        string[] names = [.. Enumerable.Range(0, 100).Select(_ => CgroupDriver.NewName())];
        Assert.Equal(names.Length, names.Distinct().Count());
        Assert.All(names, n => Assert.StartsWith($"isolation-{Environment.ProcessId}-", n));
    }

    [Theory]
    [InlineData(9, -1, 1L, 0L, TerminationReason.OutOfMemory)]
    [InlineData(0, 137, 1L, 0L, TerminationReason.OutOfMemory)]
    [InlineData(9, -1, 0L, 0L, null)]
    [InlineData(0, 2, 0L, 3L, TerminationReason.PidsLimit)]
    [InlineData(0, 0, 0L, 3L, null)]
    public void The_termination_reason_comes_from_the_kernels_counters_not_from_SIGKILL_alone(int signal, int exitCode, long oomKills, long pidsHits, TerminationReason? expected) =>
        Assert.Equal(expected, IsolatedProcess.CgroupReason(new CgroupStats { OomKills = oomKills, PidsLimitHits = pidsHits }, exitCode, signal));
}
