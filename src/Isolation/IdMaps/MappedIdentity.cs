using static Tmds.Linux.LibC;

namespace Isolation.IdMaps;

/// <summary>
/// The identity a sandbox with a new user namespace runs as. Until it switches, the child keeps the kernel
/// uid and gid of the caller even when the maps do not include them: <c>id -u</c> then shows the overflow
/// id (65534) while the kernel checks files against the caller's own ids — host root's, for a root caller
/// (user_namespaces(7): credentials are kernel ids; a map only translates them). So after the maps are
/// written the child always holds a mapped identity, as bubblewrap and runc make sure of: the caller's ids
/// when the maps include them, else uid/gid 0 inside when mapped, else the first mapped id.
/// </summary>
internal static class MappedIdentity
{
    /// <summary>"Leave this id as it is": setresuid(2)/setresgid(2) ignore -1.</summary>
    public const uint Unchanged = uint.MaxValue;

    /// <summary>
    /// Returns <paramref name="s"/> with the identity the child switches to filled in (<see cref="BuilderState.Uid"/>
    /// and <see cref="BuilderState.Gid"/>, <see cref="Unchanged"/> for an id that is already mapped). Throws an
    /// <see cref="ArgumentException"/> when no mapped identity exists and the caller's own would be host root's,
    /// or when <c>RunAs</c> names an id the maps leave out.
    /// </summary>
    public static BuilderState Resolve(BuilderState s)
    {
        if (!s.Namespaces.HasFlag(Namespaces.User))
            return s;
        bool root = geteuid() == 0;
        if (root && s.UidMaps.Length == 0)
            throw new ArgumentException("A new user namespace without a uid map leaves the program with host uid 0 (it shows as 65534, but reads and writes root's files as root). Map ids: MapUsers(0, 100000, 65536) and MapGroups(...), or MapCurrentUserToRoot() to be root inside on purpose.");
        s = SetUpAsRootWhenUnmapped(s);
        if (s.Uid is { } uid)
        {
            // RunAs: both ids must be mapped, or setresuid fails with EINVAL at start.
            CheckMapped(s.UidMaps, uid, "uid", "MapUsers");
            CheckMapped(s.GidMaps, s.Gid!.Value, "gid", "MapGroups");
            if (root && s.UidMaps.Length > 0 && !s.SetGroups && s.Setgroups != SetgroupsPolicy.Deny)
                return s with { SetGroups = true }; // and no supplementary group of host root's (setgroups with none)
            return s;
        }

        uint? newUid = Target(s.UidMaps, geteuid());
        if (root && s.GidMaps.Length == 0 && (newUid is not null || s.Uid is not null))
            throw new ArgumentException("A uid map that leaves out host root, without a gid map, leaves the program with host gid 0 (root's group files stay readable). Add MapGroups(...) as well.");
        uint? newGid = Target(s.GidMaps, getegid());
        if (newUid is null && newGid is null)
            return s; // the caller's ids are mapped (MapCurrentUserToRoot, MapCurrentUser, or unprivileged without a map)
        // Switching away from host root: drop root's supplementary groups too, where setgroups is allowed.
        bool clearGroups = root && s.Setgroups != SetgroupsPolicy.Deny;
        return s with { Uid = newUid ?? Unchanged, Gid = newGid ?? Unchanged, Groups = [], SetGroups = clearGroups };
    }

    /// <summary>
    /// When the maps leave out the caller's uid and gid but map 0, the mount plan runs as uid and gid 0 of
    /// the namespace (<see cref="Security.SecurityBuilder.SetUpAsNamespaceRoot"/>), as runc's init does: with
    /// the caller's unmapped ids it could create nothing in a file system mounted inside the namespace
    /// (a tmpfs, an overlay's throw-away upper: EOVERFLOW), and a root caller's setup would read host files
    /// with host root's owner rights. The program's own identity is chosen afterwards, as before.
    /// </summary>
    private static BuilderState SetUpAsRootWhenUnmapped(BuilderState s)
    {
        if (s.Security.EarlyRoot || Target(s.UidMaps, geteuid()) != 0 || Target(s.GidMaps, getegid()) != 0)
            return s;
        return s with { Security = s.Security with { EarlyRoot = true } };
    }

    /// <summary>The inside id to switch to, or null when <paramref name="own"/> is already mapped (or nothing is).</summary>
    private static uint? Target(IReadOnlyList<IdMap> maps, uint own)
    {
        if (maps.Count == 0 || maps.Any(m => own >= m.Outside && (ulong)own < (ulong)m.Outside + m.Count))
            return null;
        return maps.Any(m => m.Inside == 0) ? 0 : maps.Min(m => m.Inside);
    }

    private static void CheckMapped(IReadOnlyList<IdMap> maps, uint id, string kind, string call)
    {
        if (maps.Count > 0 && !maps.Any(m => id >= m.Inside && (ulong)id < (ulong)m.Inside + m.Count))
            throw new ArgumentException($"RunAs(...) names {kind} {id}, which the {kind} map ({string.Join(", ", maps)}) leaves out; the switch to it would fail. Add it with {call}(...) or run as a mapped id.");
    }
}
