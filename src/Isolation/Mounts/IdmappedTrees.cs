using System.Text;
using Isolation.IdMaps;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation.Mounts;

/// <summary>
/// Parent side of <see cref="MountPlanBuilder.IdmappedBind"/>. mount_setattr(2) with MOUNT_ATTR_IDMAP needs
/// CAP_SYS_ADMIN over the source's file system, which the child never has inside its new user namespace. So
/// the host makes each idmapped tree before the spawn, through a user namespace with the sandbox's own uid and
/// gid maps (made once per spec and kept open), sends it with the spawn, and the child attaches it
/// (ISO_OPF_PREPARED). The same approach as crun's and podman's.
/// </summary>
internal sealed unsafe class IdmappedTrees
{
    private readonly int[] _opIndexes;
    private readonly string[] _sources;
    private readonly IReadOnlyList<IdMap> _uidMaps;
    private readonly IReadOnlyList<IdMap> _gidMaps;
    private readonly Lock _lock = new();
    private int _usernsFd = -1;

    private IdmappedTrees(int[] opIndexes, string[] sources, IReadOnlyList<IdMap> uidMaps, IReadOnlyList<IdMap> gidMaps)
    {
        _opIndexes = opIndexes;
        _sources = sources;
        _uidMaps = uidMaps;
        _gidMaps = gidMaps;
    }

    /// <summary>The compiled ops that are idmapped binds, or null when there are none.</summary>
    public static IdmappedTrees? For(IReadOnlyList<IsolationSpec.CompiledOp> ops, BuilderState state)
    {
        var indexes = new List<int>();
        var sources = new List<string>();
        for (int i = 0; i < ops.Count; i++)
        {
            if (ops[i].Operation.Kind == NativeOpKind.Idmap)
            {
                indexes.Add(i);
                sources.Add(ops[i].HostSource ?? ops[i].Operation.Source!);
            }
        }
        return indexes.Count == 0 ? null : new IdmappedTrees([.. indexes], [.. sources], state.UidMaps, state.GidMaps);
    }

    /// <summary>
    /// Refuses a read-only idmapped bind that the program could remount read-write: a mount made inside the
    /// sandbox's mount namespace carries no MNT_LOCK_READONLY, so a program with CAP_SYS_ADMIN over that
    /// namespace (uid 0 inside, capabilities not dropped, no nested user namespace) may run
    /// <c>mount -o remount,bind,rw</c>, and its writes then land as the files' host owners — host root's files
    /// as host root. Called from <c>Build()</c>.
    /// </summary>
    public static void Validate(BuilderState s)
    {
        MountOperation? readOnly = s.Mounts.FirstOrDefault(op => op.Kind == NativeOpKind.Idmap && op.Flags.HasFlag(NativeOpFlags.ReadOnly));
        if (readOnly is null || s.Security.DisableUserNamespaces)
            return; // a nested user namespace holds no capability over the sandbox's mount namespace
        bool rootInside = s.Uid is null or 0;
        bool keepsSysAdmin = s.Security.KeepCapabilities is { } keep ? (keep & (1UL << (int)Security.Capability.CAP_SYS_ADMIN)) != 0 : rootInside;
        if (keepsSysAdmin)
            throw new ArgumentException($"'{readOnly.Description}' is read-only, but the program keeps CAP_SYS_ADMIN over its mount namespace and could remount it read-write; writes through an idmapped mount land as the files' host owners (host root's as host root). Drop the capability (WithSecurity(s => s.DropCapabilities(\"CAP_SYS_ADMIN\")) or DropAllCapabilities()), run the program as a non-zero uid (RunAs), or DisableNestedUserNamespaces().");
    }

    public int Count => _opIndexes.Length;

    /// <summary>The indexes of the compiled ops that are idmapped binds, in the order <see cref="Open"/> returns their trees.</summary>
    public ReadOnlySpan<int> OpIndexes => _opIndexes;

    /// <summary>
    /// Opens one idmapped tree per idmapped bind, for one start: the helper hands each to the child as the
    /// op's n2 (ISO_OPF_PREPARED). The returned descriptors are the caller's to close once they are sent.
    /// </summary>
    public int[] Open(iso_op* ops)
    {
        int userns = UserNamespaceFd();
        int[] fds = new int[_opIndexes.Length];
        Array.Fill(fds, -1);
        try
        {
            for (int i = 0; i < _opIndexes.Length; i++)
            {
                iso_op* op = ops + _opIndexes[i];
                const ulong MOUNT_ATTR_RDONLY = 0x1, MOUNT_ATTR_NOSUID = 0x2, MOUNT_ATTR_NODEV = 0x4;
                ulong attrs = ((op->flags & (uint)NativeOpFlags.ReadOnly) != 0 ? MOUNT_ATTR_RDONLY : 0)
                    | ((op->mount_flags & (ulong)MS_NOSUID) != 0 ? MOUNT_ATTR_NOSUID : 0)
                    | ((op->mount_flags & (ulong)MS_NODEV) != 0 ? MOUNT_ATTR_NODEV : 0);
                byte[] source = Encoding.UTF8.GetBytes(_sources[i] + "\0");
                int fd;
                fixed (byte* p = source)
                    fd = IsolationNative_OpenIdmappedTree(p, userns, (op->flags & (uint)NativeOpFlags.Recursive) != 0 ? 1 : 0, attrs);
                if (fd < 0)
                    throw new SandboxSetupException(SetupStep.Mount, $"idmapped bind of {_sources[i]}: open_tree and mount_setattr(MOUNT_ATTR_IDMAP)", -fd, _sources[i],
                        -fd == EPERM ? "idmapped mounts need CAP_SYS_ADMIN over the source's file system (root on the host)"
                        : -fd == EINVAL ? "the source's file system does not support idmapped mounts (ext4, xfs, btrfs, tmpfs and overlayfs do)" : null);
                fds[i] = fd;
            }
            return fds;
        }
        catch
        {
            Close(fds);
            throw;
        }
    }

    public static void Close(int[]? fds)
    {
        if (fds is null)
            return;
        foreach (int fd in fds)
        {
            if (fd >= 0)
                close(fd);
        }
    }

    /// <summary>A user namespace with the sandbox's maps: a helper sandbox's, kept open after the helper is gone.</summary>
    private int UserNamespaceFd()
    {
        lock (_lock)
        {
            if (_usernsFd >= 0)
                return _usernsFd;
            NamespaceBuilder helper = new NamespaceBuilder().WithNamespaces(Namespaces.User)
                .WithStandardInput(Stdio.Pipe).WithStandardOutput(Stdio.Null).WithStandardError(Stdio.Null);
            foreach (IdMap m in _uidMaps)
                helper = helper.MapUsers(m.Inside, m.Outside, m.Count);
            foreach (IdMap m in _gidMaps)
                helper = helper.MapGroups(m.Inside, m.Outside, m.Count);
            using IsolatedProcess process = helper.Build().Start("/bin/cat"); // waits on its stdin until we let go
            byte[] path = Encoding.UTF8.GetBytes($"/proc/{process.Id}/ns/user\0");
            int fd;
            fixed (byte* p = path)
                fd = open(p, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                throw new SandboxSetupException(SetupStep.Mount, "open the user namespace for idmapped mounts", errno, $"/proc/{process.Id}/ns/user");
            _usernsFd = fd;
            return fd;
        }
    }
}
