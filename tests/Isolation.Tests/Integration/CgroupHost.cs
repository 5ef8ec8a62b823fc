using Isolation.Cgroups;
using Isolation.Tests.Infrastructure;

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
    public static string[] LeftOver()
    {
        string prefix = $"isolation-{Environment.ProcessId}-";
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
