using System.Globalization;
using Isolation;
using Isolation.IdMaps;
using Isolation.Mounts;
using Microsoft.Extensions.Logging;

namespace Isolate;

/// <summary>What to run and how: the builder, the program, and whether -f was asked for.</summary>
internal sealed record UnsharePlan(NamespaceBuilder Builder, string Program, string[] Arguments, bool Fork);

/// <summary>util-linux unshare(1)'s options (long names, as <see cref="UnshareArguments"/> records them) and their mapping onto <see cref="NamespaceBuilder"/>.</summary>
internal static class UnshareOptions
{
    public const string Mount = "--mount";
    public const string Uts = "--uts";
    public const string Ipc = "--ipc";
    public const string Net = "--net";
    public const string Pid = "--pid";
    public const string User = "--user";
    public const string Cgroup = "--cgroup";
    public const string Time = "--time";
    public const string Fork = "--fork";
    public const string KillChild = "--kill-child";
    public const string MountProc = "--mount-proc";
    public const string MapUser = "--map-user";
    public const string MapGroup = "--map-group";
    public const string MapRootUser = "--map-root-user";
    public const string MapCurrentUser = "--map-current-user";
    public const string MapUsers = "--map-users";
    public const string MapGroups = "--map-groups";
    public const string MapAuto = "--map-auto";
    public const string Propagation = "--propagation";
    public const string Setgroups = "--setgroups";
    public const string KeepCaps = "--keep-caps";
    public const string Root = "--root";
    public const string WorkingDirectory = "--wd";
    public const string SetUid = "--setuid";
    public const string SetGid = "--setgid";
    public const string Monotonic = "--monotonic";
    public const string Boottime = "--boottime";
    public const string Debug = "--debug";

    /// <summary>Maps the parsed options onto a builder, with unshare's implications (-r ⇒ -U, --mount-proc ⇒ -m, --kill-child ⇒ -f).</summary>
    public static UnsharePlan ToPlan(UnshareParse r, string[] program, ILogger? logger)
    {
        uint euid = Native.geteuid(), egid = Native.getegid();
        Namespaces ns = Namespaces.None;
        void If(string option, Namespaces flag)
        {
            if (r.Has(option))
                ns |= flag;
        }
        If(Mount, Namespaces.Mount);
        If(Uts, Namespaces.Uts);
        If(Ipc, Namespaces.Ipc);
        If(Net, Namespaces.Net);
        If(Pid, Namespaces.Pid);
        If(User, Namespaces.User);
        If(Cgroup, Namespaces.Cgroup);
        If(Time, Namespaces.Time);

        if (r.Has(KeepCaps))
            throw new UnshareUsageException($"{KeepCaps} is not supported: the library does not raise ambient capabilities for the program (with -r it is root of its user namespace and holds them all)");

        bool killChild = r.Has(KillChild);
        bool fork = r.Has(Fork) || killChild;
        string? procMount = r.Has(MountProc) ? r.GetValue(MountProc) ?? "/proc" : null;
        if (procMount is not null)
            ns |= Namespaces.Mount;

        // Single-id maps: -r, -c, --map-user, --map-group (each implies --user; the last one wins).
        uint? mapUser = null, mapGroup = null;
        if (r.Has(MapRootUser))
            (mapUser, mapGroup) = (0, 0);
        if (r.Has(MapCurrentUser))
            (mapUser, mapGroup) = (euid, egid);
        if (r.GetValue(MapUser) is { } u)
            mapUser = IdLookup.User(u);
        if (r.GetValue(MapGroup) is { } g)
            mapGroup = IdLookup.Group(g);
        string? usersSpec = r.Has(MapAuto) ? "auto" : r.GetValue(MapUsers);
        string? groupsSpec = r.Has(MapAuto) ? "auto" : r.GetValue(MapGroups);
        if (r.GetValue(MapUsers) is { } mu)
            usersSpec = mu;
        if (r.GetValue(MapGroups) is { } mg)
            groupsSpec = mg;
        if (mapUser is not null || mapGroup is not null || usersSpec is not null || groupsSpec is not null)
            ns |= Namespaces.User;

        string? root = r.GetValue(Root) is { } rootText ? Path.GetFullPath(rootText) : null;
        if (root == "/")
            root = null; // chroot("/") only changes the directory to "/" (below); pivot_root cannot pivot onto itself
        else if (root is not null)
            ns |= Namespaces.Mount; // the library changes root with pivot_root in a new mount namespace; unshare chroots
        bool chdirToRoot = r.GetValue(Root) is not null;

        if ((r.GetValue(Monotonic) is not null || r.GetValue(Boottime) is not null) && !ns.HasFlag(Namespaces.Time))
            throw new UnshareUsageException("options --monotonic and --boottime require unsharing of a time namespace (-t)");

        NamespaceBuilder b = new NamespaceBuilder().WithNamespaces(ns);
        if (logger is not null)
            b = b.WithLogger(logger);

        // Id maps. A single id is written directly; ranges go through newuidmap/newgidmap unless root.
        foreach (IdMap m in Ranges(usersSpec, mapUser, euid, "/etc/subuid", "uid"))
            b = b.MapUsers(m.Inside, m.Outside, m.Count);
        foreach (IdMap m in Ranges(groupsSpec, mapGroup, egid, "/etc/subgid", "gid"))
            b = b.MapGroups(m.Inside, m.Outside, m.Count);
        // unshare -U as root, without a uid (or gid) map: the program shows as the overflow id (65534) but would
        // keep host uid (gid) 0, reading and writing root's files. The library refuses that; here the program
        // really becomes 65534 (nobody), which is what it shows.
        if (ns.HasFlag(Namespaces.User) && euid == 0 && mapUser is null && usersSpec is null)
            b = b.MapUsers(Overflow, Overflow, 1);
        if (ns.HasFlag(Namespaces.User) && euid == 0 && mapGroup is null && groupsSpec is null)
            b = b.MapGroups(Overflow, Overflow, 1);

        string? setgroups = r.GetValue(Setgroups);
        if (mapGroup is not null && setgroups == "allow")
            throw new UnshareUsageException("options --setgroups=allow and --map-group are mutually exclusive");
        if (setgroups == "allow")
            b = b.WithSetgroups(SetgroupsPolicy.Allow);
        else if (setgroups == "deny" || mapGroup is not null)
            b = b.WithSetgroups(SetgroupsPolicy.Deny); // --map-group, -r and -c imply --setgroups=deny

        // Mounts: propagation first (ignored without a mount namespace, as unshare does), then root, then proc.
        MountPropagation propagation = r.GetValue(Propagation) switch
        {
            "slave" => MountPropagation.Slave,
            "shared" => MountPropagation.Shared,
            "unchanged" => MountPropagation.Unchanged,
            _ => MountPropagation.Private,
        };
        if (ns.HasFlag(Namespaces.Mount))
        {
            string? absoluteProc = procMount is null or "" ? null : root is null ? Path.GetFullPath(procMount) : InsideRoot(procMount);
            // The library creates a missing mount target, which without a new root would leave a directory on
            // the host; unshare fails instead, and so do we. An empty --mount-proc= is unshare's mount(2) of "":
            // ENOENT, "mount  failed".
            if (procMount == "" || absoluteProc is not null && !Path.Exists(root is null ? absoluteProc : root.TrimEnd('/') + absoluteProc))
                throw new UnshareUsageException($"mount {procMount} failed: No such file or directory");
            // A proc of the caller's PID namespace (no -p) from a new user namespace: the kernel wants CAP_SYS_ADMIN over
            // the user namespace that owns the caller's PID namespace, which a new one never has. unshare fails at its
            // mount with these words; the library would refuse at Build() in its own.
            if (absoluteProc is not null && ns.HasFlag(Namespaces.User) && !ns.HasFlag(Namespaces.Pid))
                throw new UnshareUsageException($"mount {procMount} failed: Operation not permitted");
            b = b.WithMounts(m =>
            {
                m.WithPropagation(propagation);
                if (root is not null)
                    m.Root(root);
                if (absoluteProc is not null)
                    m.Proc(absoluteProc, callerPidNamespace: !ns.HasFlag(Namespaces.Pid)); // without -p, unshare's proc shows its own PID namespace
            });
        }

        string? wd = r.GetValue(WorkingDirectory);
        if (wd is not null)
            b = b.WithWorkingDirectory(!chdirToRoot ? Path.GetFullPath(wd) : InsideRoot(wd));
        else if (chdirToRoot)
            b = b.WithWorkingDirectory("/"); // unshare: chdir("/") after chroot

        // -S/-G: unshare calls setgroups(0, NULL) and setgid for -G, setuid for -S. RunAs needs both ids; the
        // one not given is the id the program would have had anyway. RunAs cannot ask for an empty group list,
        // so -G sets the groups to just the new gid, which is what id(1) shows after unshare's setgroups(0).
        // Where setgroups is denied, Build() refuses that as unshare's setgroups call fails: both exit 1.
        uint? setUid = ParseId(r.GetValue(SetUid), "uid");
        uint? setGid = ParseId(r.GetValue(SetGid), "gid");
        if (setUid is not null || setGid is not null)
        {
            uint uid = setUid ?? IdInside(ns, mapUser, usersSpec, euid);
            uint gid = setGid ?? IdInside(ns, mapGroup, groupsSpec, egid);
            b = setGid is { } newGid ? b.RunAs(uid, gid, newGid) : b.RunAs(uid, gid);
        }

        if (ns.HasFlag(Namespaces.Time))
            b = b.WithTimeOffsets(TimeSpan.FromSeconds(ParseOffset(r.GetValue(Monotonic), "--monotonic")), TimeSpan.FromSeconds(ParseOffset(r.GetValue(Boottime), "--boottime")));

        if (killChild)
            b = b.WithDieWithParent(Signals.Parse(r.GetValue(KillChild) ?? "KILL"));

        // No program: $SHELL, else /bin/sh, as a login shell: argv[0] is "-" and its base name (util-linux's exec_shell).
        string file;
        string[] arguments;
        if (program.Length == 0)
        {
            file = Environment.GetEnvironmentVariable("SHELL") is { Length: > 0 } shell ? shell : "/bin/sh";
            arguments = [];
            b = b.WithArgv0("-" + Path.GetFileName(file));
        }
        else
        {
            file = program[0];
            arguments = program[1..];
            b = b.WithArgv0(file);
        }
        return new UnsharePlan(b, file, arguments, fork);

        string InsideRoot(string path) => path.StartsWith('/') ? path : "/" + path;
    }

    /// <summary>The id map lines for one kind: the single id (-r, -c, --map-user) and the range (--map-users or auto).</summary>
    /// <summary>The id a user namespace shows for an unmapped one (/proc/sys/kernel/overflowuid).</summary>
    private const uint Overflow = 65534;

    private static List<IdMap> Ranges(string? spec, uint? single, uint ownOutside, string subordinateFile, string kind)
    {
        var maps = new List<IdMap>();
        if (single is { } id)
            maps.Add(new IdMap(id, ownOutside, 1));
        if (spec is not null)
        {
            bool auto = spec == "auto";
            IdMap range = auto ? Auto(subordinateFile, kind) : ParseRange(spec, kind);
            maps.AddRange(single is { } inside ? AroundSingle(range, inside, ownOutside, auto) : [range]);
        }
        return maps;
    }

    /// <summary>
    /// unshare's map_ids(): the range loses one id when the single mapping overlaps it, and is cut into up to
    /// three pieces whose inside ids skip <paramref name="inner"/> and whose outside ids skip
    /// <paramref name="outer"/>, so that the two mappings never overlap.
    /// </summary>
    private static IEnumerable<IdMap> AroundSingle(IdMap map, uint inner, uint outer, bool auto)
    {
        uint count = map.Count;
        if (!auto && ((outer >= map.Outside && outer <= map.Outside + count) || (inner >= map.Inside && inner <= map.Inside + count)))
            count--;
        uint outerOffset = Math.Min(outer > map.Outside ? outer - map.Outside : 0, count);
        uint innerOffset = Math.Min(inner > map.Inside ? inner - map.Inside : 0, count);

        var lo = new IdMap(map.Inside, map.Outside, Math.Min(innerOffset, outerOffset));
        uint midInner = Skip(lo.Inside + lo.Count, inner), midOuter = Skip(lo.Outside + lo.Count, outer);
        uint midCount = outerOffset > innerOffset ? outerOffset - innerOffset : innerOffset - outerOffset;
        uint hiInner = Skip(midInner + midCount, inner), hiOuter = Skip(midOuter + midCount, outer);
        uint hiCount = count - lo.Count - midCount;

        foreach (IdMap piece in (IdMap[])[lo, new(midInner, midOuter, midCount), new(hiInner, hiOuter, hiCount)])
        {
            if (piece.Count > 0)
                yield return piece; // new[ug]idmap refuses empty ranges
        }

        static uint Skip(uint id, uint taken) => id == taken ? id + 1 : id;
    }

    /// <summary>util-linux 2.38: "outer,inner,count"; 2.39+: "inner:outer:count".</summary>
    private static IdMap ParseRange(string spec, string kind)
    {
        bool comma = spec.Contains(',', StringComparison.Ordinal);
        string[] parts = spec.Split(comma ? ',' : ':');
        if (parts.Length != 3 || !parts.All(p => uint.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out _)))
            throw new UnshareUsageException($"invalid {kind} range '{spec}': expected outer{kind},inner{kind},count or inner{kind}:outer{kind}:count or auto");
        uint a = uint.Parse(parts[0], CultureInfo.InvariantCulture), c = uint.Parse(parts[1], CultureInfo.InvariantCulture), count = uint.Parse(parts[2], CultureInfo.InvariantCulture);
        return comma ? new IdMap(c, a, count) : new IdMap(a, c, count);
    }

    /// <summary>The first block delegated to the effective user in /etc/subuid (or /etc/subgid), mapped at 0.</summary>
    private static IdMap Auto(string file, string kind)
    {
        uint euid = Native.geteuid();
        string? name = IdLookup.UserName(euid);
        if (File.Exists(file))
        {
            foreach (string raw in File.ReadLines(file))
            {
                string[] p = raw.Trim().Split(':');
                if (p.Length == 3 && (p[0] == name || p[0] == euid.ToString(CultureInfo.InvariantCulture))
                    && uint.TryParse(p[1], CultureInfo.InvariantCulture, out uint start) && uint.TryParse(p[2], CultureInfo.InvariantCulture, out uint count))
                    return new IdMap(0, start, count);
            }
        }
        throw new UnshareUsageException($"no line matching user \"{name ?? euid.ToString(CultureInfo.InvariantCulture)}\" in {file} (needed by --map-{(kind == "uid" ? "users" : "groups")}=auto / --map-auto)");
    }

    /// <summary>The id the program has inside when -S or -G names only the other one.</summary>
    private static uint IdInside(Namespaces ns, uint? single, string? rangeSpec, uint own)
    {
        if (!ns.HasFlag(Namespaces.User))
            return own;
        if (single is { } id)
            return id;
        if (rangeSpec is not null && rangeSpec != "auto")
        {
            IdMap m = ParseRange(rangeSpec, "id");
            if (own >= m.Outside && own - m.Outside < m.Count)
                return m.Inside + (own - m.Outside);
        }
        return 65534; // unmapped: the overflow id
    }

    private static uint? ParseId(string? text, string kind) =>
        text is null ? null
        : uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint id) ? id
        : throw new UnshareUsageException($"failed to parse {kind} '{text}'");

    private static long ParseOffset(string? text, string option) =>
        text is null ? 0
        : long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long seconds) ? seconds
        : throw new UnshareUsageException($"failed to parse {option} offset '{text}'");
}
