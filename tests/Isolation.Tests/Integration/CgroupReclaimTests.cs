using System.Collections.Immutable;
using System.Text.Json;
using Isolation.Cgroups;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>
/// Hosts that own sandboxes with cgroups are SIGKILLed (while their sandboxes run, and in the middle of starts);
/// then one more process of the library reclaims what they left: no cgroup of theirs remains in any hierarchy
/// and the stray processes still in them are killed, while a live owner's sandbox and cgroups are untouched
/// (DESIGN.md §3a). The hosts are tests/Isolation.TestHost (CgroupLeftovers.cs) under a subreaper, so whatever
/// a killed host leaves running is found, and killed if the test fails.
/// </summary>
[Collection(LeakChecks.Name)]
public sealed class CgroupReclaimTests
{
    private static readonly TimeSpan HostTimeout = TimeSpan.FromSeconds(60);
    private static readonly string[] Subreaper = [TestHostRunner.Executable, "subreaper"];

    private static void Require()
    {
        CgroupHost.Require("pids");
        Assert.SkipUnless(IsolationCgroups.OwnerDirectory is not null, "no private directory for ownership lock files (/run/isolation/owners) on this host");
    }

    [Fact]
    public void The_cgroups_of_five_killed_hosts_are_reclaimed_by_the_next_process_and_a_live_owners_are_untouched()
    {
        Require();
        var launchers = new List<FaultHost>();
        var deadHosts = new List<int>();
        try
        {
            // Arrange: a live owner and five hosts, all running before any is killed (each process of the library
            // reclaims at its first start, so a host started after a kill would reclaim before the process under test).
            CgroupHoldOutcome live = Hold(launchers);
            List<CgroupHoldOutcome> holds = [Hold(launchers), Hold(launchers), Hold(launchers)];
            var storms = new List<StormReady>();
            for (int i = 0; i < 2; i++)
            {
                FaultHost storm = FaultHost.Start(Subreaper, "storm", "--marker", $"isolation-reclaim-{Guid.NewGuid():N}", "--threads", "4", "--cgroup");
                launchers.Add(storm);
                storms.Add(JsonSerializer.Deserialize(storm.ReadLine(HostTimeout), HostFaultJson.Default.StormReady)!);
            }
            Thread.Sleep(new Random().Next(200, 800));
            // Three hosts killed while their sandboxes run, two in the middle of starts.
            foreach (int pid in holds.Select(h => h.HostPid).Concat(storms.Select(s => s.HostPid)))
            {
                KillHost(pid);
                deadHosts.Add(pid);
            }
            List<int> strays = [.. holds.Select(h => h.StrayPid)];
            foreach (string dir in holds.SelectMany(h => h.Sandboxes).SelectMany(s => s.Directories))
                Assert.True(Directory.Exists(dir), $"{dir} of a killed host is gone before any reclaim: the test would prove nothing");
            Dictionary<int, string[]> before = deadHosts.ToDictionary(pid => pid, CgroupHost.LeftOver);
            Assert.True(before.Values.Sum(d => d.Length) > 0, "the killed hosts left no cgroup, so there is nothing to reclaim");
            Assert.True(strays.All(IsRunning), "a stray process of a killed host's sandbox is not running: the kill step would prove nothing");

            // Act: one more process of the library; its first start with a cgroup reclaims.
            CgroupReclaimOutcome next = FaultHost.Run(CgroupLeftoverJson.Default.CgroupReclaimOutcome, HostTimeout, [], "cgroup-reclaim", "--first-use");

            // Assert
            Assert.True(next.Error is null, next.Error);
            var left = deadHosts.ToDictionary(pid => pid, CgroupHost.LeftOver).Where(kv => kv.Value.Length > 0).ToList();
            Assert.True(left.Count == 0, $"after the next process's first start, {left.Sum(kv => kv.Value.Length)} cgroup directories of killed hosts remain "
                + $"(of {before.Values.Sum(d => d.Length)}):\n  {string.Join("\n  ", left.SelectMany(kv => kv.Value))}\nits explicit reclaim after that: failures {string.Join("; ", next.Failures)}");
            Assert.True(SpinWait.SpinUntil(() => !strays.Any(IsRunning), TimeSpan.FromSeconds(5)), $"stray processes in reclaimed cgroups still run: {string.Join(", ", strays.Where(IsRunning))}");
            foreach (HeldCgroupSandbox sandbox in live.Sandboxes)
            {
                Assert.True(IsRunning(sandbox.Pid), $"the live owner's sandbox {sandbox.Pid} was killed");
                Assert.All(sandbox.Directories, d => Assert.True(Directory.Exists(d), $"the live owner's cgroup {d} was removed"));
                Assert.Contains(sandbox.Pid, File.ReadAllLines(Path.Join(sandbox.Directories[0], "cgroup.procs")).Select(int.Parse));
            }
            Assert.True(IsRunning(live.StrayPid), "the live owner's background process was killed");
        }
        finally
        {
            foreach (FaultHost launcher in launchers)
                launcher.Dispose(); // kills each launcher's tree: the live host and everything killed hosts left
            foreach (int pid in deadHosts)
                RemoveByHand(CgroupHost.LeftOver(pid));
        }
    }

    [Fact]
    public void ReclaimLeftovers_kills_what_is_left_in_a_killed_hosts_cgroups_and_returns_what_it_removed()
    {
        Require();
        var launchers = new List<FaultHost>();
        int hostPid = 0;
        try
        {
            // Arrange
            CgroupHoldOutcome held = Hold(launchers);
            hostPid = held.HostPid;
            KillHost(held.HostPid);
            string[] directories = [.. held.Sandboxes.SelectMany(s => s.Directories)];
            Assert.True(IsRunning(held.StrayPid), "the stray process died with the host: nothing would be left to kill");

            // Act
            CgroupReclaimOutcome outcome = FaultHost.Run(CgroupLeftoverJson.Default.CgroupReclaimOutcome, HostTimeout, [], "cgroup-reclaim", "--explicit");

            // Assert
            Assert.True(outcome.Error is null, outcome.Error);
            Assert.Subset(outcome.Removed.ToHashSet(), directories.ToHashSet());
            Assert.All(directories, d => Assert.False(Directory.Exists(d), $"{d} is still there"));
            Assert.True(outcome.KilledProcesses >= 1, $"the reclaim killed {outcome.KilledProcesses} processes; the stray {held.StrayPid} was in its cgroup");
            Assert.True(outcome.DeadOwners >= 1);
            Assert.True(SpinWait.SpinUntil(() => !IsRunning(held.StrayPid), TimeSpan.FromSeconds(5)), "the stray process still runs");
        }
        finally
        {
            foreach (FaultHost launcher in launchers)
                launcher.Dispose();
            if (hostPid != 0)
                RemoveByHand(CgroupHost.LeftOver(hostPid));
        }
    }

    [Theory]
    [InlineData("v1")]
    [InlineData("v2")]
    public void A_dead_owners_cgroups_are_killed_and_removed_on_each_kind_of_hierarchy(string kind)
    {
        Require();
        CgroupLayout layout = CgroupHost.Layout;
        CgroupLayout view = kind == "v1" ? layout with { V2MountPoint = null } : layout with { V1 = ImmutableDictionary<string, V1Hierarchy>.Empty };
        Assert.SkipWhen(view.Mode == CgroupMode.None, $"this host ({layout.Mode}) has no {kind} hierarchy");
        string store = Directory.CreateTempSubdirectory("isolation-owners-").FullName;
        string token = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));
        string name = $"isolation-{Environment.ProcessId}-999999-{token}";
        // A dead owner's cgroups as its driver made them, one directory per hierarchy under the library's parent
        // (not cpuset: a new v1 cpuset has no CPUs, and no task can join it), and its lock file, held by nobody.
        List<string> mounts = kind == "v1"
            ? [.. view.V1.Values.Distinct().Where(h => !h.Controllers.Contains("cpuset")).Select(h => h.MountPoint)]
            : [view.V2MountPoint!];
        string[] dirs = [.. mounts.Select(m => Path.Join(m, "isolation", name))];
        using var sleeper = System.Diagnostics.Process.Start("/bin/sleep", "1000");
        try
        {
            foreach (string dir in dirs)
            {
                Directory.CreateDirectory(dir);
                File.WriteAllText(Path.Join(dir, "cgroup.procs"), sleeper.Id.ToString());
            }
            File.WriteAllLines(Path.Join(store, token + ".lock"), [CgroupOwner.Header, .. dirs.Select(d => CgroupOwner.ParentLine + Path.GetDirectoryName(d))]);

            // Act
            CgroupReclaimResult result = CgroupReclaimer.Reclaim(store, view, ownToken: null);

            // Assert
            Assert.Empty(result.Failures);
            Assert.Equal(dirs.Order(), result.RemovedDirectories.Order());
            Assert.All(dirs, d => Assert.False(Directory.Exists(d), $"{d} is still there"));
            Assert.Equal(1, result.KilledProcesses);
            Assert.True(sleeper.WaitForExit(5000), "the process in the dead owner's cgroup still runs");
            Assert.False(File.Exists(Path.Join(store, token + ".lock")), "the dead owner's lock file is still there");
        }
        finally
        {
            if (!sleeper.HasExited)
                sleeper.Kill();
            sleeper.WaitForExit();
            RemoveByHand(dirs.Where(Directory.Exists).ToArray());
            Directory.Delete(store, recursive: true);
        }
    }

    /// <summary>Starts a cgroup-hold host under a subreaper and reads what it holds.</summary>
    private static CgroupHoldOutcome Hold(List<FaultHost> launchers)
    {
        FaultHost launcher = FaultHost.Start(Subreaper, "cgroup-hold");
        launchers.Add(launcher);
        CgroupHoldOutcome held = JsonSerializer.Deserialize(launcher.ReadLine(HostTimeout), CgroupLeftoverJson.Default.CgroupHoldOutcome)!;
        Assert.True(held.Errors.Count == 0, string.Join("; ", held.Errors));
        Assert.Equal(2, held.Sandboxes.Count);
        return held;
    }

    /// <summary>SIGKILL to the host alone, not its tree: the fault under test. Returns once it is gone.</summary>
    private static void KillHost(int pid)
    {
        ProcessEntry host = ProcessTable.Read(pid) ?? throw new Xunit.Sdk.XunitException($"the host (pid {pid}) was gone before the kill");
        ProcessTable.Kill(host);
        Assert.True(SpinWait.SpinUntil(() => !ProcessTable.IsAlive(host), TimeSpan.FromSeconds(10)), $"the host (pid {pid}) survived SIGKILL");
    }

    private static bool IsRunning(int pid) => ProcessTable.Read(pid) is { } p && ProcessTable.IsAlive(p);

    /// <summary>Cleanup when the reclaim failed: kill what is in each directory and remove it.</summary>
    private static void RemoveByHand(string[] directories)
    {
        foreach (string dir in directories)
        {
            foreach (int pid in File.Exists(Path.Join(dir, "cgroup.procs")) ? File.ReadAllLines(Path.Join(dir, "cgroup.procs")).Select(int.Parse) : [])
            {
                if (ProcessTable.Read(pid) is { } p)
                    ProcessTable.Kill(p);
            }
            SpinWait.SpinUntil(() => !Directory.Exists(dir) || TryRemove(dir), TimeSpan.FromSeconds(5));
        }
    }

    private static bool TryRemove(string dir)
    {
        try
        {
            Directory.Delete(dir);
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }
}
