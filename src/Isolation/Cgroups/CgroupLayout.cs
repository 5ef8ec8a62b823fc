using System.Collections.Immutable;
using System.Text;
using static Isolation.Interop.Interop;

namespace Isolation.Cgroups;

/// <summary>The kind of cgroup setup a host has.</summary>
public enum CgroupMode
{
    /// <summary>No cgroup file system is mounted.</summary>
    None,

    /// <summary>cgroup v1 only: one hierarchy per controller (or group of controllers).</summary>
    V1,

    /// <summary>cgroup v2 (unified) only: one hierarchy, controllers enabled per subtree.</summary>
    V2,

    /// <summary>Both: v2 for what the unified hierarchy has (placement, kill, freeze, events), v1 for the controllers that live there.</summary>
    Hybrid,
}

/// <summary>A mounted cgroup v1 hierarchy: where it is mounted, its root, and the caller's cgroup in it.</summary>
internal sealed record V1Hierarchy(string MountPoint, string MountRoot, ImmutableArray<string> Controllers, string OwnPath);

/// <summary>
/// Where the cgroup hierarchies are and where the caller sits in them, from /proc/self/mountinfo
/// (proc(5): "mountinfo") and /proc/self/cgroup (cgroups(7): "hierarchy-ID:controller-list:cgroup-path").
/// Every path is a parameter so tests can point it at a temp dir laid out like cgroupfs.
/// </summary>
internal sealed record CgroupLayout(string? V2MountPoint, string V2MountRoot, string V2OwnPath, ImmutableDictionary<string, V1Hierarchy> V1)
{
    public const string DelegationHint =
        "this user may not create cgroups here. For rootless use on cgroup v2, run under a delegated subtree " +
        "(systemd: Delegate=yes on the unit, or `systemd-run --user --scope -p Delegate=yes ...`) and pass a writable cgroup " +
        "with no processes of its own to CgroupBuilder.Parent(...) (chown the directory and its cgroup.procs, cgroup.subtree_control " +
        "to the user); or run as root; or call CgroupBuilder.BestEffort() to run without limits";

    /// <summary>The v1 controllers this library knows (cgroups(7)).</summary>
    private static readonly string[] s_v1Controllers =
        ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "blkio", "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc"];

    private static readonly Lazy<CgroupLayout> s_host = new(() => Detect());

    /// <summary>This process's layout, detected once.</summary>
    public static CgroupLayout Host => s_host.Value;

    public CgroupMode Mode => (V2MountPoint, V1.Count) switch
    {
        (null, 0) => CgroupMode.None,
        (null, _) => CgroupMode.V1,
        (_, 0) => CgroupMode.V2,
        _ => CgroupMode.Hybrid,
    };

    /// <summary>The directory of cgroup <paramref name="cgroupPath"/> in the v2 hierarchy.</summary>
    public string V2Directory(string cgroupPath) => Under(V2MountPoint!, V2MountRoot, cgroupPath);

    /// <summary>The directory of cgroup <paramref name="cgroupPath"/> in a v1 hierarchy.</summary>
    public static string V1Directory(V1Hierarchy h, string cgroupPath) => Under(h.MountPoint, h.MountRoot, cgroupPath);

    /// <summary>Controllers enabled at the v2 root (cgroup.controllers).</summary>
    public HashSet<string> V2Controllers() =>
        V2MountPoint is null ? [] : CgroupFiles.ReadList(Path.Join(V2MountPoint, "cgroup.controllers"));

    public static CgroupLayout Detect(string mountInfoPath = "/proc/self/mountinfo", string procCgroupPath = "/proc/self/cgroup", bool checkMagic = true)
    {
        string? v2Mount = null, v2Root = "/";
        var v1 = ImmutableDictionary.CreateBuilder<string, V1Hierarchy>(StringComparer.Ordinal);
        var own = ParseProcCgroup(CgroupFiles.TryRead(procCgroupPath) ?? "");
        foreach (string line in (CgroupFiles.TryRead(mountInfoPath) ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue" (proc(5))
            string[] f = line.Split(' ');
            int dash = Array.IndexOf(f, "-");
            if (dash < 6 || f.Length < dash + 4)
                continue;
            string fsType = f[dash + 1], root = Unescape(f[3]), mountPoint = Unescape(f[4]);
            if (fsType == "cgroup2" && v2Mount is null)
            {
                if (checkMagic && !IsCgroup2(mountPoint))
                    continue;
                v2Mount = mountPoint;
                v2Root = root;
            }
            else if (fsType == "cgroup")
            {
                ImmutableArray<string> controllers = [.. f[dash + 3].Split(',').Where(o => s_v1Controllers.Contains(o))];
                if (controllers.IsEmpty || v1.ContainsKey(controllers[0]))
                    continue;
                string ownPath = own.FirstOrDefault(o => o.Controllers.Intersect(controllers).Any()).Path ?? root;
                var hierarchy = new V1Hierarchy(mountPoint, root, controllers, ownPath);
                foreach (string c in controllers)
                    v1[c] = hierarchy;
            }
        }
        string v2Own = own.FirstOrDefault(o => o.Id == "0").Path ?? v2Root;
        return new CgroupLayout(v2Mount, v2Root, v2Own, v1.ToImmutable());
    }

    /// <summary>Parses /proc/self/cgroup.</summary>
    internal static List<(string Id, string[] Controllers, string Path)> ParseProcCgroup(string text)
    {
        var result = new List<(string, string[], string)>();
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] f = line.Split(':', 3);
            if (f.Length == 3)
                result.Add((f[0], f[1].Split(',', StringSplitOptions.RemoveEmptyEntries), f[2]));
        }
        return result;
    }

    private static unsafe bool IsCgroup2(string path)
    {
        // statfs(2): f_type CGROUP2_SUPER_MAGIC marks a cgroup2 file system. struct statfs is 15 longs on 64-bit.
        long* buf = stackalloc long[16];
        return statfs(path, buf) == 0 && buf[0] == CGROUP2_SUPER_MAGIC;
    }

    /// <summary>A cgroup path inside a mount whose root is <paramref name="mountRoot"/> (not "/" inside a cgroup namespace).</summary>
    private static string Under(string mountPoint, string mountRoot, string cgroupPath)
    {
        string relative = cgroupPath;
        if (mountRoot != "/" && (cgroupPath == mountRoot || cgroupPath.StartsWith(mountRoot + "/", StringComparison.Ordinal)))
            relative = cgroupPath[mountRoot.Length..];
        return relative.Trim('/') is { Length: > 0 } r ? Path.Join(mountPoint, r) : mountPoint;
    }

    /// <summary>mountinfo escapes space, tab, newline and backslash as \ooo octal.</summary>
    private static string Unescape(string s)
    {
        if (!s.Contains('\\'))
            return s;
        var sb = new StringBuilder();
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && s.Length - i >= 4)
            {
                sb.Append((char)Convert.ToInt32(s.Substring(i + 1, 3), 8));
                i += 3;
            }
            else
                sb.Append(s[i]);
        }
        return sb.ToString();
    }
}
