using System.Text;
using System.Text.Json;
using Isolation.Cgroups;
using Isolation.IdMaps;
using Isolation.Security;
using static Tmds.Linux.LibC;

namespace Isolation.Diagnostics;

/// <summary>One answer of <see cref="HostCapabilities.Probe"/>: what was checked, the answer, what was seen, and the fix for a "no".</summary>
/// <param name="Name">What was checked, e.g. <c>user-namespaces</c>.</param>
/// <param name="Available">The answer for this caller on this host.</param>
/// <param name="Detail">What was read (a sysctl's value, a version, a list of controllers).</param>
/// <param name="Fix">For a "no": the exact change that turns it into a "yes"; else null.</param>
public sealed record HostCapability(string Name, bool Available, string Detail, string? Fix);

/// <summary>
/// What this host and this caller can do with the library, and for each "no" the exact fix. Run it (or
/// <c>isolate probe</c>) first when a start fails with EPERM, EINVAL or ENOSPC: the answers name the sysctl,
/// the AppArmor rule or the cgroup delegation that a <see cref="SandboxSetupException"/> hints at.
/// </summary>
/// <remarks>Reads /proc, /sys and /etc and makes two harmless syscalls (landlock_create_ruleset for the version,
/// uname); it starts no sandbox.</remarks>
public sealed class HostCapabilities
{
    private HostCapabilities(string kernel, bool root, IReadOnlyList<HostCapability> items)
    {
        KernelVersion = kernel;
        IsRoot = root;
        Items = items;
    }

    /// <summary>The kernel release (uname -r).</summary>
    public string KernelVersion { get; }

    /// <summary>Whether the answers are for root (euid 0).</summary>
    public bool IsRoot { get; }

    /// <summary>Every answer, in a fixed order.</summary>
    public IReadOnlyList<HostCapability> Items { get; }

    /// <summary>The answer named <paramref name="name"/>.</summary>
    public HostCapability this[string name] => Items.FirstOrDefault(i => i.Name == name)
        ?? throw new KeyNotFoundException($"no probe named '{name}'; the names are {string.Join(", ", Items.Select(i => i.Name))}");

    /// <summary>Probes this host for this caller.</summary>
    public static HostCapabilities Probe() => Probe("/");

    /// <summary>Probes with every /proc, /sys and /etc path under <paramref name="root"/> (tests).</summary>
    internal static HostCapabilities Probe(string root)
    {
        string P(string path) => Path.Join(root, path);
        bool isRoot = geteuid() == 0;
        string kernel = Read(P("/proc/sys/kernel/osrelease"))?.Trim() ?? "unknown";
        Version version = ParseKernel(kernel);
        var items = new List<HostCapability>
        {
            new("kernel", true, kernel, null),
        };

        // user_namespaces(7): max_user_namespaces; Debian/Ubuntu's unprivileged_userns_clone; Ubuntu 23.10+'s AppArmor rule.
        long? maxUserNs = ReadLong(P("/proc/sys/user/max_user_namespaces"));
        long? userNsClone = ReadLong(P("/proc/sys/kernel/unprivileged_userns_clone"));
        long? apparmor = ReadLong(P("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"));
        bool userNs = File.Exists(P("/proc/self/ns/user")) && maxUserNs is null or > 0;
        items.Add(new("user-namespaces", userNs, $"max_user_namespaces={maxUserNs?.ToString() ?? "?"}",
            userNs ? null : "sysctl -w user.max_user_namespaces=15000 (and CONFIG_USER_NS=y in the kernel)"));
        bool unprivileged = userNs && userNsClone is null or 1 && apparmor is null or 0;
        items.Add(new("unprivileged-user-namespaces", isRoot ? userNs : unprivileged,
            $"unprivileged_userns_clone={userNsClone?.ToString() ?? "absent"}, apparmor_restrict_unprivileged_userns={apparmor?.ToString() ?? "absent"}",
            unprivileged ? null
                : userNsClone == 0 ? "sysctl -w kernel.unprivileged_userns_clone=1"
                : apparmor == 1 ? "give the program an AppArmor profile with 'userns,' (/etc/apparmor.d/<name>: profile <name> /path/to/app flags=(unconfined) { userns, }), or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
                : "sysctl -w user.max_user_namespaces=15000"));

        // Cgroups (DESIGN.md §4): version, and whether this caller may create cgroups under its own.
        CgroupLayout layout = CgroupLayout.Host;
        string controllers = layout.Mode switch
        {
            CgroupMode.V2 => string.Join(' ', layout.V2Controllers().Order()),
            CgroupMode.None => "",
            _ => string.Join(' ', layout.V1.Keys.Order()) + (layout.V2MountPoint is null ? "" : $"; unified: {string.Join(' ', layout.V2Controllers().Order())}"),
        };
        items.Add(new("cgroups", layout.Mode != CgroupMode.None, $"{layout.Mode}: {controllers}",
            layout.Mode == CgroupMode.None ? "mount cgroup2 on /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)" : null));
        bool delegated = isRoot || CanCreateCgroups(layout);
        items.Add(new("cgroup-delegation", layout.Mode != CgroupMode.None && delegated,
            isRoot ? "root" : $"own cgroup {(layout.V2MountPoint is not null ? layout.V2OwnPath : "(v1)")} {(delegated ? "writable" : "not writable")}",
            delegated ? null : "run under a delegated subtree: systemd-run --user --scope -p Delegate=yes <app>, then CgroupBuilder.Parent(<that cgroup>); or CgroupBuilder.BestEffort()"));

        int landlock = SecurityCompiler.HostLandlockAbi();
        items.Add(new("landlock", landlock > 0, $"ABI {landlock}",
            landlock > 0 ? null : "boot with lsm=landlock,... (CONFIG_SECURITY_LANDLOCK=y, Linux 5.13+); check /sys/kernel/security/lsm"));

        string? status = Read(P("/proc/self/status"));
        bool seccomp = status?.Contains("\nSeccomp:", StringComparison.Ordinal) == true;
        items.Add(new("seccomp", seccomp, seccomp ? "Seccomp field in /proc/self/status" : "no Seccomp field",
            seccomp ? null : "a kernel with CONFIG_SECCOMP_FILTER=y"));

        bool idmapped = version >= new Version(5, 12) && isRoot;
        items.Add(new("idmapped-mounts", idmapped, $"kernel {version}, {(isRoot ? "root" : "not root")}",
            idmapped ? null : version < new Version(5, 12) ? "Linux 5.12 or later (mount_setattr with MOUNT_ATTR_IDMAP)"
                : "run as root: an idmapped mount needs CAP_SYS_ADMIN over the source's file system"));

        bool overlay = version >= new Version(5, 11) && (Read(P("/proc/filesystems"))?.Contains("\toverlay", StringComparison.Ordinal) ?? false);
        items.Add(new("overlay-in-user-namespace", overlay, $"kernel {version}, overlay {(overlay ? "registered" : "not registered or kernel too old")}",
            overlay ? null : version < new Version(5, 11) ? "Linux 5.11 or later (overlayfs mountable in a user namespace)" : "modprobe overlay"));

        bool timeNs = File.Exists(P("/proc/self/ns/time"));
        items.Add(new("time-namespaces", timeNs, timeNs ? "/proc/self/ns/time" : "no /proc/self/ns/time",
            timeNs ? null : "Linux 5.6 or later with CONFIG_TIME_NS=y"));

        string? newuidmap = SubordinateIds.FindTool("newuidmap");
        string? newgidmap = SubordinateIds.FindTool("newgidmap");
        string user = UserName();
        bool subuid = HasRange(P("/etc/subuid"), user, geteuid());
        bool subgid = HasRange(P("/etc/subgid"), user, getegid());
        bool tools = newuidmap is not null && newgidmap is not null && (isRoot || (subuid && subgid));
        items.Add(new("newuidmap", tools,
            $"newuidmap {newuidmap ?? "missing"}, newgidmap {newgidmap ?? "missing"}, /etc/subuid {(subuid ? "has" : "lacks")} {user}, /etc/subgid {(subgid ? "has" : "lacks")} {user}",
            tools ? null : newuidmap is null || newgidmap is null ? "apt-get install uidmap (or dnf install shadow-utils)"
                : $"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}"));

        long? memfdNoexec = ReadLong(P("/proc/sys/vm/memfd_noexec"));
        items.Add(new("memfd-exec", memfdNoexec is null or < 2, $"vm.memfd_noexec={memfdNoexec?.ToString() ?? "absent"}",
            memfdNoexec is null or < 2 ? null : "none needed: the library then runs its helpers from their files; to allow memfd exec, sysctl -w vm.memfd_noexec=0 (it cannot be lowered inside a namespace that set it)"));
        return new HostCapabilities(kernel, isRoot, items);
    }

    /// <summary>The answers as text, one line each: "yes"/"no", name, detail, and the fix after "fix:".</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        foreach (HostCapability item in Items)
        {
            text.Append(item.Available ? "yes " : "no  ").Append(item.Name.PadRight(30)).Append(item.Detail).Append('\n');
            if (item.Fix is not null)
                text.Append("    fix: ").Append(item.Fix).Append('\n');
        }
        return text.ToString();
    }

    /// <summary>The answers as JSON: {"kernel":..., "root":..., "items":[{"name","available","detail","fix"}]}.</summary>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("kernel", KernelVersion);
            json.WriteBoolean("root", IsRoot);
            json.WriteStartArray("items");
            foreach (HostCapability item in Items)
            {
                json.WriteStartObject();
                json.WriteString("name", item.Name);
                json.WriteBoolean("available", item.Available);
                json.WriteString("detail", item.Detail);
                json.WriteString("fix", item.Fix);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static bool CanCreateCgroups(CgroupLayout layout)
    {
        if (layout.V2MountPoint is not null && layout.Mode == CgroupMode.V2)
            return Interop.Interop.access_path(layout.V2Directory(layout.V2OwnPath), W_OK) == 0;
        return layout.V1.Count > 0 && layout.V1.Values.All(h => Interop.Interop.access_path(CgroupLayout.V1Directory(h, h.OwnPath), W_OK) == 0);
    }

    private static bool HasRange(string file, string user, uint id)
    {
        try
        {
            return SubordinateIds.ReadRanges(file, user, id).Count > 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static string UserName()
    {
        uint uid = geteuid();
        foreach (string line in File.Exists("/etc/passwd") ? File.ReadLines("/etc/passwd") : [])
        {
            string[] f = line.Split(':');
            if (f.Length > 2 && f[2] == uid.ToString(System.Globalization.CultureInfo.InvariantCulture))
                return f[0];
        }
        return uid.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    internal static Version ParseKernel(string release)
    {
        string[] parts = release.Split('.', '-', '+');
        int major = parts.Length > 0 && int.TryParse(parts[0], out int a) ? a : 0;
        int minor = parts.Length > 1 && int.TryParse(parts[1], out int b) ? b : 0;
        return new Version(major, minor);
    }

    private static string? Read(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static long? ReadLong(string path) => long.TryParse(Read(path)?.Trim(), out long v) ? v : null;
}
