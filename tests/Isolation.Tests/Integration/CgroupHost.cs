using System.Diagnostics;
using System.Runtime.InteropServices;
using Isolation.Cgroups;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>Probes of this host's cgroups for the cgroup tests, and the directories this test process's sandboxes own.</summary>
public static class CgroupHost
{
    internal static CgroupLayout Layout => CgroupLayout.Host;

    /// <summary>Root and some cgroup hierarchy mounted; else skip saying what is missing.</summary>
    public static void Require()
    {
        Host.RequireRoot();
        Assert.SkipWhen(Layout.Mode == CgroupMode.None, "no cgroup file system is mounted on this host");
    }

    /// <summary>Root and a place for <paramref name="controller"/> (v2 controller name) in v2 or v1.</summary>
    public static void Require(string controller)
    {
        Require();
        bool onV2 = Layout.V2Controllers().Contains(controller);
        bool onV1 = Layout.V1.ContainsKey(controller == "io" ? "blkio" : controller);
        Assert.SkipUnless(onV2 || onV1, $"the {controller} controller is neither in the unified hierarchy nor mounted as cgroup v1 here");
    }

    /// <summary>Every cgroup directory, in every hierarchy, that a sandbox of this test process created and that still exists.</summary>
    public static string[] LeftOver() => LeftOver(Environment.ProcessId);

    /// <summary>Every cgroup directory, in every hierarchy, that a sandbox of process <paramref name="pid"/> created and that still exists.</summary>
    public static string[] LeftOver(int pid)
    {
        string prefix = $"isolation-{pid}-";
        var mounts = new List<(string Mount, string Own)>();
        if (Layout.V2MountPoint is { } v2)
            mounts.Add((v2, Layout.V2Directory(Layout.V2OwnPath)));
        foreach (V1Hierarchy h in Layout.V1.Values.Distinct())
            mounts.Add((h.MountPoint, CgroupLayout.V1Directory(h, h.OwnPath)));
        return mounts
            .SelectMany(m => new[] { m.Own, Path.Join(m.Mount, "isolation") })
            .Distinct()
            .Where(Directory.Exists)
            .SelectMany(d => Directory.GetDirectories(d, prefix + "*"))
            .ToArray();
    }

    /// <summary>The lines of /proc/PID/cgroup as the child printed them: hierarchy controllers → path.</summary>
    public static Dictionary<string, string> ParseProcCgroup(string text) =>
        CgroupLayout.ParseProcCgroup(text).ToDictionary(l => l.Id == "0" ? "" : string.Join(',', l.Controllers), l => l.Path);
}

/// <summary>
/// A cgroup subtree delegated to uid 65534 in every hierarchy, the way systemd's Delegate=yes or an admin's
/// chown hands one to a user (cgroup-v2.rst, "Delegation"): the directory and its cgroup.procs,
/// cgroup.subtree_control and cgroup.threads belong to the user, and the user's process starts in a leaf of it.
/// </summary>
public sealed class DelegatedSubtree : IDisposable
{
    public const int Uid = 65534;

    private readonly List<string> _mounts = [];

    public DelegatedSubtree()
    {
        CgroupPath = $"/isolation-tests-delegated-{Environment.ProcessId}-{Guid.NewGuid():N}"[..60];
        CgroupLayout layout = CgroupHost.Layout;
        if (layout.V2MountPoint is { } v2)
            _mounts.Add(v2);
        // Not cpuset: a new v1 cpuset has no CPUs until set, and a task cannot join it (cgroup-v1/cpusets.rst).
        _mounts.AddRange(layout.V1.Values.Distinct().Where(h => !h.Controllers.Contains("cpuset")).Select(h => h.MountPoint));
        foreach (string mount in _mounts)
        {
            string dir = mount + CgroupPath, leaf = Path.Join(dir, "leaf");
            Directory.CreateDirectory(leaf);
            foreach (string path in new[] { dir, leaf }.SelectMany(d => Directory.GetFileSystemEntries(d).Append(d)))
            {
                string name = Path.GetFileName(path);
                if (Directory.Exists(path) || name is "cgroup.procs" or "cgroup.subtree_control" or "cgroup.threads" or "tasks")
                    chown(path, Uid, Uid);
            }
        }
    }

    /// <summary>The delegated cgroup's path, as CgroupBuilder.Parent takes it.</summary>
    public string CgroupPath { get; }

    /// <summary>Runs the spawn driver as uid 65534 from inside the delegated leaf, in every hierarchy.</summary>
    public SpawnOutcome SpawnUnprivileged(params string[] args) =>
        TestHostRunner.RunSpawnDriver(StartInfoUnprivileged(TestHostRunner.ExecutableForAnyUser, ["spawn", .. args]));

    /// <summary>How to run <paramref name="file"/> as uid 65534 from inside the delegated leaf, in every hierarchy (stdout and stderr redirected).</summary>
    public ProcessStartInfo StartInfoUnprivileged(string file, IEnumerable<string> args)
    {
        string moves = string.Join(" ", _mounts.Select(m => $"'{m}{CgroupPath}/leaf/cgroup.procs'"));
        var info = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($"for f in {moves}; do echo $$ > \"$f\" || exit 99; done; exec setpriv --reuid={Uid} --regid={Uid} --clear-groups -- \"$@\"");
        info.ArgumentList.Add("sh");
        foreach (string a in (string[])[file, .. args])
            info.ArgumentList.Add(a);
        return info;
    }

    public void Dispose()
    {
        foreach (string mount in _mounts)
        {
            string dir = mount + CgroupPath;
            foreach (string child in Directory.Exists(dir) ? Directory.GetDirectories(dir) : [])
                DeleteWhenEmpty(child);
            if (Directory.Exists(dir))
                DeleteWhenEmpty(dir);
        }
    }

    /// <summary>
    /// Removes a cgroup directory, waiting up to 5 s while it is busy: the driver that ran in the leaf has exited,
    /// but its spawn helper, which started in the same cgroup, leaves it only when it has seen that exit.
    /// </summary>
    private static void DeleteWhenEmpty(string dir)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                Directory.Delete(dir);
                return;
            }
            catch (IOException) when (clock.Elapsed < TimeSpan.FromSeconds(5))
            {
                Thread.Sleep(20);
            }
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int chown(string path, int owner, int group);
}
