using System.Diagnostics;
using Isolation.Cgroups;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>Cgroup limits enforced by the real kernel: v2 and v1 alike, whichever this host has.</summary>
public sealed class CgroupTests
{
    private static async Task<(string Output, ExitStatus Status)> RunAsync(IsolatedProcess p)
    {
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
        return (output, await p.WaitForExitAsync());
    }

    private static void AssertGone(IReadOnlyList<string> directories)
    {
        Assert.NotEmpty(directories);
        foreach (string dir in directories)
            Assert.False(Directory.Exists(dir), $"cgroup {dir} was left behind");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_child_is_in_its_cgroup_from_its_first_instruction(bool forceCloneFallback)
    {
        CgroupHost.Require("pids");
        IsolationSpec spec = new NamespaceBuilder()
            .WithCgroup(c => c.PidsMax(16))
            .WithStandardOutput(Stdio.Pipe)
            .Build();
        spec.ForceCloneFallback = forceCloneFallback;

        // cat's first read is /proc/self/cgroup: placement happened before the program ran.
        await using IsolatedProcess p = spec.Start("/bin/cat", "/proc/self/cgroup");
        (string output, ExitStatus status) = await RunAsync(p);

        Assert.True(status.Success, status.ToString());
        Dictionary<string, string> seen = CgroupHost.ParseProcCgroup(output);
        string name = Path.GetFileName(p.CgroupDirectories[0]);
        Assert.StartsWith("isolation-", name);
        if (CgroupHost.Layout.V2MountPoint is not null)
            Assert.EndsWith("/" + name, seen[""]);
        string pidsKey = seen.Keys.Single(k => k.Split(',').Contains("pids") || (k == "" && CgroupHost.Layout.V2Controllers().Contains("pids")));
        Assert.EndsWith("/" + name, seen[pidsKey]);
    }

    private static bool IsAlive(int pid) =>
        File.Exists($"/proc/{pid}/stat") && !File.ReadAllText($"/proc/{pid}/stat").Split(')')[^1].TrimStart().StartsWith('Z');

    [Theory]
    [InlineData("v2")]
    [InlineData("v1")]
    [InlineData("hybrid")]
    public async Task Each_driver_places_the_tree_kills_it_on_dispose_and_removes_its_cgroup(string kind)
    {
        CgroupHost.Require();
        CgroupLayout layout = CgroupHost.Layout;
        ICgroupDriver driver = kind switch
        {
            "v2" when layout.V2MountPoint is not null => new CgroupV2Driver(layout, null),
            "v1" when layout.V1.Count > 0 => new CgroupV1Driver(layout with { V2MountPoint = null }, null, useFreezer: true),
            "hybrid" when layout.Mode == CgroupMode.Hybrid => new HybridCgroupDriver(layout),
            _ => null!,
        };
        Assert.SkipWhen(driver is null, $"this host ({layout.Mode}) has no {kind} cgroups");
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(_ => { }).WithStandardOutput(Stdio.Pipe).Build();
        spec.CgroupDriverForTests = driver;

        IsolatedProcess p = spec.Start("/bin/sh", "-c", "sleep 100 & echo $!; exec sleep 100");
        int orphan = int.Parse((await new StreamReader(p.StandardOutput!).ReadLineAsync())!);
        IReadOnlyList<string> dirs = p.CgroupDirectories;
        foreach (string dir in dirs)
            Assert.Equal(new[] { p.Id, orphan }.Order(), File.ReadAllLines(Path.Join(dir, "cgroup.procs")).Select(int.Parse).Order());
        await p.DisposeAsync();

        AssertGone(dirs);
        Assert.False(IsAlive(orphan), "the background sleep survived dispose");
    }

    [Fact]
    public async Task Each_limit_reaches_the_kernel_file_that_enforces_it_and_the_cpuset_binds_the_child()
    {
        foreach (string controller in new[] { "memory", "pids", "cpu", "cpuset" })
            CgroupHost.Require(controller);
        IsolationSpec spec = new NamespaceBuilder()
            .WithCgroup(c => c.MemoryMax(64L << 20).PidsMax(30).CpuMax(0.5).CpuWeight(200).Cpuset("0"))
            .WithStandardOutput(Stdio.Pipe)
            .Build();

        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status; exec sleep 100");
        string output = (await new StreamReader(p.StandardOutput!).ReadLineAsync())!;
        string? Limit(params string[] files) => p.CgroupDirectories
            .SelectMany(d => files.Select(f => Path.Join(d, f))).Where(File.Exists).Select(f => File.ReadAllText(f).Trim()).FirstOrDefault();

        Assert.Equal("0", output.Split(':')[1].Trim());
        Assert.Equal((64L << 20).ToString(), Limit("memory.max", "memory.limit_in_bytes"));
        Assert.Equal("30", Limit("pids.max"));
        Assert.Contains(Limit("cpu.max", "cpu.cfs_quota_us"), new[] { "50000 100000", "50000" });
        Assert.Contains(Limit("cpu.weight", "cpu.shares"), new[] { "200", V1Cgroup.WeightToShares(200).ToString() });
        Assert.Equal("0", Limit("cpuset.cpus"));
    }

    [Fact]
    public async Task With_a_cgroup_namespace_the_sandbox_sees_its_own_cgroup_as_the_root()
    {
        CgroupHost.Require();
        Assert.SkipWhen(CgroupHost.Layout.V2MountPoint is null, "no cgroup2 hierarchy: /proc/self/cgroup has no 0:: line");
        IsolationSpec spec = new NamespaceBuilder()
            .WithNamespaces(Namespaces.User | Namespaces.Cgroup)
            .MapCurrentUserToRoot()
            .WithCgroup(c => c.PidsMax(16))
            .WithStandardOutput(Stdio.Pipe)
            .Build();

        await using IsolatedProcess p = spec.Start("/bin/cat", "/proc/self/cgroup");
        (string output, _) = await RunAsync(p);

        Assert.Equal("/", CgroupHost.ParseProcCgroup(output)[""]);
    }

    [Fact]
    public async Task A_fork_bomb_is_stopped_by_PidsMax_and_the_host_is_unharmed()
    {
        CgroupHost.Require("pids");
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.PidsMax(24)).Build();
        IReadOnlyList<string> dirs;
        await using (IsolatedProcess p = spec.Start("/bin/sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 100"))
        {
            dirs = p.CgroupDirectories;
            // Wait (generously) until the kernel has refused a fork at the limit.
            var clock = Stopwatch.StartNew();
            CgroupStats stats;
            do
            {
                await Task.Delay(20);
                stats = p.GetCgroupStats()!;
            }
            while (stats.PidsLimitHits is null or 0 && clock.Elapsed < TimeSpan.FromSeconds(20));

            Assert.True(stats.PidsLimitHits > 0, "the pids limit was never hit");
            Assert.InRange(stats.PidsCurrent!.Value, 1, 24);
        }

        // Dispose killed the whole tree and removed the cgroup; the host can still fork.
        AssertGone(dirs);
        using Process host = Process.Start("/bin/true")!;
        host.WaitForExit();
        Assert.Equal(0, host.ExitCode);
    }

    [Fact]
    public async Task A_program_that_fails_at_the_pids_limit_ends_with_reason_PidsLimit()
    {
        CgroupHost.Require("pids");
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.PidsMax(8)).Build();

        // dash exits with status 2 when a fork for a background job fails.
        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "i=0; while [ $i -lt 50 ]; do sleep 30 & i=$((i+1)); done; wait");
        ExitStatus status = await p.WaitForExitAsync();

        Assert.Equal(TerminationReason.PidsLimit, status.Reason);
        Assert.NotEqual(0, status.ExitCode);
        Assert.True(p.GetCgroupStats()!.PidsLimitHits > 0);
    }

    [Fact]
    public async Task A_memory_hog_is_OOM_killed_and_the_exit_status_says_OutOfMemory()
    {
        CgroupHost.Require("memory");
        Assert.SkipUnless(File.ReadAllLines("/proc/swaps").Length <= 1, "swap is on: the hog would swap instead of being OOM-killed");
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.MemoryMax(32L << 20)).Build();

        // tail keeps the current line in memory, and /dev/zero has no newline: it grows until the OOM killer runs.
        await using IsolatedProcess p = spec.Start("/usr/bin/tail", "-n", "1", "/dev/zero");
        ExitStatus status = await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(TerminationReason.OutOfMemory, status.Reason);
        Assert.Equal(9, status.Signal);
        CgroupStats stats = p.GetCgroupStats()!;
        Assert.True(stats.OomKills >= 1, $"oom kills: {stats.OomKills}");
        Assert.InRange(stats.MemoryPeakBytes!.Value, 16L << 20, 33L << 20);
    }

    [Fact]
    public async Task A_plain_kill_9_under_a_memory_limit_is_not_reported_as_OOM()
    {
        CgroupHost.Require("memory");
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.MemoryMax(64L << 20)).Build();

        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "kill -9 $$");
        ExitStatus status = await p.WaitForExitAsync();

        Assert.Equal(TerminationReason.Signaled, status.Reason);
        Assert.Equal(9, status.Signal);
        Assert.Equal(0, p.GetCgroupStats()!.OomKills);
    }

    [Fact]
    public async Task A_cpu_spinner_under_CpuMax_a_quarter_gets_about_a_quarter_of_a_cpu()
    {
        CgroupHost.Require("cpu");
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.CpuMax(0.25)).Build();

        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "while :; do :; done");
        CgroupStats before = p.GetCgroupStats()!;
        var clock = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(3));
        CgroupStats after = p.GetCgroupStats()!;
        double share = (after.CpuTotal!.Value - before.CpuTotal!.Value) / clock.Elapsed;

        // Generous: the quota caps it near 0.25; the lower bound only shows it ran on a busy machine.
        Assert.InRange(share, 0.03, 0.40);
        Assert.True(after.CpuThrottledPeriods > 0, "the spinner was never throttled");
    }

    [Fact]
    public async Task Disposing_kills_the_whole_tree_and_leaves_no_cgroup()
    {
        CgroupHost.Require();
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.PidsMax(16)).WithStandardOutput(Stdio.Pipe).Build();
        IsolatedProcess p = spec.Start("/bin/sh", "-c", "sleep 100 & echo $!; exec sleep 100");
        string orphan = (await new StreamReader(p.StandardOutput!).ReadLineAsync())!;
        IReadOnlyList<string> dirs = p.CgroupDirectories;

        await p.DisposeAsync();

        Assert.Equal(TerminationReason.Killed, (await p.WaitForExitAsync()).Reason);
        AssertGone(dirs);
        Assert.False(IsAlive(int.Parse(orphan)), "the background sleep survived");
    }

    [Fact]
    public async Task Cancelling_the_wait_then_disposing_leaves_no_cgroup()
    {
        CgroupHost.Require();
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.PidsMax(16)).Build();
        IsolatedProcess p = spec.Start("/bin/sleep", "100");
        IReadOnlyList<string> dirs = p.CgroupDirectories;

        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => p.WaitForExitAsync(cancel.Token));
        p.Dispose();

        AssertGone(dirs);
    }

    [Fact]
    public async Task A_crash_of_the_program_leaves_no_cgroup_even_before_dispose()
    {
        CgroupHost.Require();
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.PidsMax(16)).Build();
        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "kill -SEGV $$");
        ExitStatus status = await p.WaitForExitAsync();

        Assert.Equal(11, status.Signal);
        AssertGone(p.CgroupDirectories);
    }

    [Fact]
    public async Task A_timeout_kills_the_sandbox_and_says_TimedOut()
    {
        CgroupHost.Require();
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.PidsMax(16)).WithTimeout(TimeSpan.FromMilliseconds(300)).Build();
        await using IsolatedProcess p = spec.Start("/bin/sleep", "100");

        ExitStatus status = await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(TerminationReason.TimedOut, status.Reason);
    }

    [Fact]
    public async Task Limits_can_be_updated_on_a_running_sandbox()
    {
        CgroupHost.Require("pids");
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.PidsMax(16)).Build();
        await using IsolatedProcess p = spec.Start("/bin/sleep", "100");
        string pidsMax = p.CgroupDirectories.Select(d => Path.Join(d, "pids.max")).Single(File.Exists);
        Assert.Equal("16", File.ReadAllText(pidsMax).Trim());

        p.UpdateCgroupLimits(c => c.PidsMax(5));

        Assert.Equal("5", File.ReadAllText(pidsMax).Trim());
        Assert.Throws<ArgumentException>(() => p.UpdateCgroupLimits(c => c.PidsMax(0)));
    }

    [Fact]
    public async Task A_frozen_sandbox_uses_no_cpu_until_thawed()
    {
        CgroupHost.Require();
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.PidsMax(16)).Build();
        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "while :; do :; done");

        await Task.Delay(100); // let it run a little first
        p.Freeze(); // returns once the kernel reports the cgroup frozen
        TimeSpan frozenAt = p.GetCgroupStats()!.CpuTotal!.Value;
        await Task.Delay(300);
        TimeSpan stillAt = p.GetCgroupStats()!.CpuTotal!.Value;
        p.Thaw();
        await Task.Delay(300);
        TimeSpan thawedAt = p.GetCgroupStats()!.CpuTotal!.Value;

        Assert.Equal(frozenAt, stillAt);
        Assert.True(thawedAt > stillAt, "the sandbox did not run again after Thaw");
    }

    [Fact]
    public void A_parent_path_that_is_not_absolute_is_rejected_in_Build()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithCgroup(c => c.Parent("relative/path")).Build());
        Assert.Contains("absolute", e.Message);
    }

    [Fact]
    public async Task A_configured_parent_is_used_and_only_the_sandbox_cgroup_is_removed()
    {
        CgroupHost.Require();
        string parent = $"/isolation-tests-{Environment.ProcessId}-parent";
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.Parent(parent).PidsMax(8)).Build();
        IReadOnlyList<string> dirs;
        try
        {
            await using (IsolatedProcess p = spec.Start("/bin/true"))
            {
                dirs = p.CgroupDirectories;
                await p.WaitForExitAsync();
                Assert.All(dirs, d => Assert.EndsWith(parent, Path.GetDirectoryName(d)));
            }
            AssertGone(dirs);
            Assert.All(dirs, d => Assert.True(Directory.Exists(Path.GetDirectoryName(d))));
        }
        finally
        {
            foreach (string mount in CgroupHost.Layout.V1.Values.Select(h => h.MountPoint).Append(CgroupHost.Layout.V2MountPoint).OfType<string>().Distinct())
            {
                string dir = mount + parent;
                if (Directory.Exists(dir))
                    Directory.Delete(dir);
            }
        }
    }

    [Fact]
    public void An_unprivileged_user_without_delegation_gets_a_clear_error_naming_what_is_missing()
    {
        CgroupHost.Require();
        Host.RequireUnprivilegedRunner();

        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged("--pids-max", "16", "--", "/bin/true");

        Assert.False(outcome.Started);
        Assert.NotNull(outcome.Error);
        Assert.Equal("Cgroup", outcome.Error!.Step);
        Assert.Contains("Delegate=yes", outcome.Error.Hint);
        Assert.Contains("writable", outcome.Error.Hint);
        Assert.Contains("the limits asked for (pids.max 16)", outcome.Error.Hint); // required limits are named
        // The message names the cgroup it could not create; nothing of it is left. When that is the library's
        // default parent, a root sandbox of another test may hold it meanwhile: then nothing in it may be uid 65534's.
        string path = outcome.Error.Message.Split("create cgroup ")[1].Split(':')[0];
        string[] left = !Directory.Exists(path) ? []
            : Path.GetFileName(path) == "isolation" ? [.. Directory.GetDirectories(path).Append(path).Where(d => OwnerOf(d) == 65534)]
            : [path];
        Assert.True(left.Length == 0, $"{string.Join(", ", left)} was left behind");
    }

    private static unsafe uint OwnerOf(string path)
    {
        Tmds.Linux.stat st;
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
            return Tmds.Linux.LibC.stat(p, &st) == 0 ? st.st_uid : uint.MaxValue;
    }

    [Fact]
    public void An_unprivileged_user_with_a_delegated_subtree_gets_limits_without_root()
    {
        CgroupHost.Require("pids");
        Host.RequireUnprivilegedRunner();
        using var delegated = new DelegatedSubtree();

        SpawnOutcome outcome = delegated.SpawnUnprivileged("--pids-max", "16", "--cgroup-parent", delegated.CgroupPath, "--", "/bin/cat", "/proc/self/cgroup");

        Assert.True(outcome.Started, outcome.Error?.Message);
        Assert.Null(outcome.CgroupError);
        string name = Path.GetFileName(outcome.CgroupDirectories[0]);
        Assert.All(CgroupHost.ParseProcCgroup(outcome.Stdout).Where(l => l.Key == "" || l.Key.Contains("pids")),
            l => Assert.Equal($"{delegated.CgroupPath}/{name}", l.Value));
        Assert.All(outcome.CgroupDirectories, d => Assert.False(Directory.Exists(d), $"{d} was left behind"));
    }

    [Fact]
    public void An_unprivileged_user_with_best_effort_runs_without_limits_and_is_told_why()
    {
        CgroupHost.Require();
        Host.RequireUnprivilegedRunner();

        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged("--pids-max", "16", "--cgroup-best-effort", "--", "/bin/echo", "ran");

        Assert.True(outcome.Started, outcome.Error?.Message);
        Assert.Equal("ran\n", outcome.Stdout);
        Assert.Empty(outcome.CgroupDirectories);
        Assert.Contains("Delegate=yes", outcome.CgroupError);
    }

    [Fact]
    public void Limits_set_after_the_untrusted_preset_are_required_and_a_start_without_them_is_refused()
    {
        CgroupHost.Require();
        Host.RequireUnprivilegedRunner(); // uid 65534 has no cgroup delegation (the test above relies on it too)
        SpawnOutcome required = TestHostRunner.SpawnUnprivileged("--untrusted", "--memory-max", "67108864", "--pids-max", "32", "--", "/bin/true");
        SpawnOutcome preset = TestHostRunner.SpawnUnprivileged("--untrusted", "--", "/bin/true");
        SpawnOutcome relaxed = TestHostRunner.SpawnUnprivileged("--untrusted", "--pids-max", "32", "--cgroup-best-effort", "--", "/bin/true");

        Assert.False(required.Started);
        Assert.Equal("Cgroup", required.Error!.Step);
        Assert.True(preset.Started, preset.Error?.Message); // the preset's own limits are best effort
        Assert.NotNull(preset.CgroupError);
        Assert.True(relaxed.Started, relaxed.Error?.Message);
        Assert.NotNull(relaxed.CgroupError);
    }
}

/// <summary>Cgroup leak checks that count this process's cgroups, so they run alone.</summary>
[Collection(LeakChecks.Name)]
public sealed class CgroupLeakTests
{
    [Fact]
    public void A_failed_start_removes_the_cgroup_it_created()
    {
        CgroupHost.Require();
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.PidsMax(16)).Build();
        string[] before = CgroupHost.LeftOver();

        var e = Assert.Throws<SandboxSetupException>(() => spec.Start("/nonexistent/program"));

        Assert.Equal(SetupStep.Exec, e.Step);
        Assert.Equal(before.Order(), CgroupHost.LeftOver().Order());
    }
}
