using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Isolation.Cgroups;
using Isolation.Diagnostics;
using Isolation.IdMaps;
using Isolation.Interop;
using Isolation.Joining;
using Isolation.Mounts;
using Isolation.Security;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>
/// A validated, frozen sandbox composition (from <see cref="NamespaceBuilder.Build"/>). Reusable and
/// thread-safe: each <see cref="Start"/> spawns a new sandbox. The child's setup is compiled once into
/// native memory (this file), handed to the spawn helper once, so a start only sends argv and descriptors
/// (IsolationSpec.Start.cs); a failed start is explained in IsolationSpec.Failures.cs.
/// </summary>
public sealed unsafe partial class IsolationSpec
{
    private const string DefaultSearchPath = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

    private readonly BuilderState _state;
    private readonly ILogger _logger;
    private readonly ILogger _processLogger; // the sandboxes' own category (WithLogger(ILoggerFactory)), else _logger
    private readonly NativeBlockHandle _handle;
    private readonly CompiledOp[] _compiledOps;
    private readonly IdmappedTrees? _idmappedTrees;
    private readonly IdMapWriter? _idMaps;
    private readonly CompiledSecurity? _security; // security: compiled once, shared by every spawn

    // In _handle's block, fixed for the spec's lifetime: the request every spawn starts from (the spawn
    // helper gets a packed copy of it once, IsolationSpec.Start.cs) and the mount ops it points to.
    private readonly iso_spawn_request* _template;
    private readonly iso_op* _ops;

    // The program's environment, its bytes with each NUL, and the spec's own RLIMIT_STACK (null: this process's),
    // for the execve(2) limits checked at Start (KernelLimits.cs).
    private readonly List<string> _environment;
    private readonly long _environmentBytes;
    private readonly ulong? _stackLimit;

    internal IsolationSpec(BuilderState state)
    {
        _state = state;
        _logger = state.Logger ?? NullLogger.Instance;
        DiagnosticsExposure.Warn(state, _logger);
        _processLogger = state.ProcessLogger ?? _logger;
        _compiledOps = CompileMounts(state);
        _idmappedTrees = IdmappedTrees.For(_compiledOps, state);
        _security = SecurityCompiler.Compile(state);

        List<string> environment = new EnvironmentBuilder(state.ClearEnvironment, state.EnvironmentChanges)
            .Resolve(Environment.GetEnvironmentVariables());
        _environment = environment;
        _environmentBytes = environment.Sum(e => System.Text.Encoding.UTF8.GetByteCount(e) + 1L);
        _stackLimit = KernelLimits.StackLimitOf(state.Rlimits);
        string searchPath = environment.Find(e => e.StartsWith("PATH=", StringComparison.Ordinal))?[5..] ?? DefaultSearchPath;
        string? timeOffsets = state.Namespaces.HasFlag(Namespaces.Time)
            ? $"monotonic {Offset(state.MonotonicOffset)}\nboottime {Offset(state.BoottimeOffset)}\n"
            : null;

        // Measure everything, allocate once, then fill in the same order.
        nuint size = NativeBlock.Align((nuint)sizeof(iso_spawn_request))
            + NativeBlock.MeasureArray<iso_op>(_compiledOps.Length)
            + NativeBlock.MeasureArray<nint>(environment.Count + 1)
            + NativeBlock.MeasureArray<uint>(state.Groups.Length)
            + NativeBlock.MeasureString(searchPath)
            + NativeBlock.MeasureString(state.WorkingDirectory)
            + NativeBlock.MeasureString(state.Hostname)
            + NativeBlock.MeasureString(state.DomainName)
            + NativeBlock.MeasureString(timeOffsets)
            + IdMapWriter.Measure(state.UidMaps, state.GidMaps);
        foreach (string entry in environment)
            size += NativeBlock.MeasureString(entry);
        foreach (CompiledOp op in _compiledOps)
            size += NativeBlock.MeasureString(op.Operation.Source) + NativeBlock.MeasureString(op.Operation.Target)
                + NativeBlock.MeasureString(op.Operation.FsType) + NativeBlock.MeasureString(op.Operation.Data)
                + (op.Operation.Contents is { } c ? NativeBlock.MeasureBytes(c.Length) : 0);

        NativeBlock block = NativeBlock.Allocate(size);
        _handle = new NativeBlockHandle(block);
        _template = (iso_spawn_request*)block.Take((nuint)sizeof(iso_spawn_request));
        _ops = block.TakeArray<iso_op>(_compiledOps.Length);
        for (int i = 0; i < _compiledOps.Length; i++)
        {
            MountOperation m = _compiledOps[i].Operation;
            _ops[i] = new iso_op
            {
                kind = (uint)m.Kind,
                // Idmapped trees are made by the host for each start and sent with it (Mounts/IdmappedTrees.cs).
                flags = (uint)(m.Kind == NativeOpKind.Idmap ? m.Flags | NativeOpFlags.Prepared : m.Flags),
                mount_flags = m.MountFlags,
                s1 = m.Contents is { } contents ? block.Bytes(contents) : block.String(m.Source),
                s2 = block.String(m.Target),
                s3 = block.String(m.FsType),
                s4 = block.String(m.Data),
                n1 = m.N1,
                n2 = m.N2,
            };
        }
        byte** envp = (byte**)block.TakeArray<nint>(environment.Count + 1);
        for (int i = 0; i < environment.Count; i++)
            envp[i] = block.String(environment[i]);
        envp[environment.Count] = null;
        uint* groups = block.TakeArray<uint>(state.Groups.Length);
        for (int i = 0; i < state.Groups.Length; i++)
            groups[i] = state.Groups[i];
        *_template = new iso_spawn_request
        {
            abi_version = AbiVersion,
            flags = ISO_SPAWN_WAIT_RELEASE
                | (state.Namespaces.HasFlag(Namespaces.Net) ? ISO_SPAWN_LOOPBACK_UP : 0)
                | (state.NewSession ? ISO_SPAWN_NEW_SESSION : 0)
                | (state.Namespaces.HasFlag(Namespaces.Pid) || state.NewSession ? 0 : ISO_SPAWN_OWN_GROUP)
                | (state.Uid is not null ? ISO_SPAWN_SET_IDS : 0)
                | (state.SetGroups ? ISO_SPAWN_SET_GROUPS : 0)
                | (state.WorkingDirectoryFallback ? ISO_SPAWN_CWD_FALLBACK : 0)
                | (ChangesCredentials(state, _security) ? ISO_SPAWN_FORK : 0),
            clone_flags = (ulong)(state.Namespaces & ~(Namespaces.Time | Namespaces.Cgroup)),
            unshare_flags = (state.Namespaces.HasFlag(Namespaces.Time) ? CLONE_NEWTIME : 0)
                | (state.Namespaces.HasFlag(Namespaces.Cgroup) ? (ulong)CLONE_NEWCGROUP : 0),
            envp = envp,
            search_path = block.String(searchPath),
            cwd = block.String(state.WorkingDirectory),
            uid = state.Uid ?? 0,
            gid = state.Gid ?? 0,
            ngroups = (uint)state.Groups.Length,
            groups = groups,
            hostname = block.String(state.Hostname),
            domainname = block.String(state.DomainName),
            timens_offsets = block.String(timeOffsets),
            timens_offsets_len = timeOffsets is null ? 0 : (ulong)Encoding.UTF8.GetByteCount(timeOffsets),
            ops = _ops,
            nops = (uint)_compiledOps.Length,
            security = _security is null ? null : _security.Native,
            init_fd = -1,
            helper_pidfd = -1,
            cgroup_fd = -1,
            child_sync_fd = -1,
            child_error_fd = -1,
        };
        if (state.Namespaces.HasFlag(Namespaces.User))
        {
            _idMaps = new IdMapWriter(state.UidMaps, state.GidMaps, state.Setgroups, ref block);
            _idMaps.ValidateHost();
        }
        _joins = OpenedJoins.Open(state.Joins); // last: nothing after it can throw and leave them open (IsolationSpec.Join.cs)
    }

    /// <summary>
    /// Whether the child switches identity or user namespace during setup. Such a child gets a private copy of
    /// the spawn helper's memory instead of sharing it (CLONE_VM): the kernel resets the dumpable flag of the
    /// memory a credential change happens on (commit_creds), which would change it for the helper and for
    /// every other child in setup.
    /// </summary>
    private static bool ChangesCredentials(BuilderState state, CompiledSecurity? security) =>
        state.Uid is not null || state.Gid is not null
        || (security is not null && (security.Native->flags & (ISO_SEC_EARLY_ROOT | ISO_SEC_DISABLE_USERNS | ISO_SEC_KEEP_CAPS)) != 0);

    /// <summary>The namespaces each sandbox gets.</summary>
    public Namespaces Namespaces => _state.Namespaces;

    /// <summary>The uid map written for each sandbox.</summary>
    public ImmutableArray<IdMap> UidMaps => _state.UidMaps;

    /// <summary>The gid map written for each sandbox.</summary>
    public ImmutableArray<IdMap> GidMaps => _state.GidMaps;

    /// <summary>
    /// The Landlock ABI the sandbox's ruleset was fitted to (best effort: the lower of the host's and the
    /// newest this library knows); 0 when no Landlock ruleset is applied.
    /// </summary>
    public int LandlockAbi => _security?.LandlockAbi ?? 0;

    private static string Offset(TimeSpan offset)
    {
        long seconds = (long)Math.Floor(offset.TotalSeconds);
        long nanos = (offset.Ticks - seconds * TimeSpan.TicksPerSecond) * 100;
        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{seconds} {nanos}");
    }

    /// <summary>
    /// Turns the user's mount plan into the shim's op list: the root propagation first; with a new root, the
    /// root made a mount point and opened (so later targets resolve inside it, never out of it); the user's
    /// operations, in order; pivot_root last. With <see cref="MountPlanBuilder.EmptyRoot"/> the child first
    /// pivots into a tmpfs base as bubblewrap does, so host sources are then named <c>/oldroot/...</c>.
    /// Throws <see cref="ArgumentException"/> for combinations only the whole spec can judge.
    /// </summary>
    internal static CompiledOp[] CompileMounts(BuilderState state)
    {
        var ops = new List<CompiledOp>();
        if (!state.Namespaces.HasFlag(Namespaces.Mount))
            return [];
        foreach (MountOperation op in state.Mounts)
        {
            // Without a new root, Dev("/dev") would cover the very device nodes it binds from.
            if (state.Root is null && op.Kind == NativeOpKind.Bind && op.Description.StartsWith("dev on ", StringComparison.Ordinal)
                && op.Target![..op.Target!.LastIndexOf('/')] == "/dev")
                throw new ArgumentException("Dev(\"/dev\") needs a new root: on the host's tree it would hide the device nodes it binds from. Use Root(dir) or EmptyRoot().Bind(\"/\", \"/\") before Dev(), or mount it elsewhere.");
            if (op.Kind == NativeOpKind.Idmap && !state.Namespaces.HasFlag(Namespaces.User))
                throw new ArgumentException($"'{op.Description}' requires Namespaces.User: an idmapped mount maps owners through the sandbox's user namespace. Add it and a uid/gid map.");
            if (op.Kind == NativeOpKind.Idmap && geteuid() != 0)
                throw new ArgumentException($"'{op.Description}' needs a privileged caller: the kernel allows an idmapped mount only with CAP_SYS_ADMIN over the source's file system (root on the host), which a rootless sandbox never has. Bind it without idmapping, or run as root.");
        }
        if (state.Propagation != MountPropagation.Unchanged)
        {
            (ulong flag, string name) = state.Propagation.ToMountFlag();
            ops.Add(new(new(NativeOpKind.Propagation, $"make / {name}", Target: "/", MountFlags: (ulong)MS_REC | flag), 0));
        }

        string? root = state.Root;
        string hostPrefix = "";
        if (root == MountPlanBuilder.TmpfsRoot)
        {
            // bubblewrap's layout: a tmpfs base on /tmp (in our namespace only) holds newroot/ and oldroot/.
            ops.Add(new(new(NativeOpKind.PivotBase, "pivot into a tmpfs base on /tmp", Target: "/tmp",
                FsType: state.DefaultTmpfsSize is { } baseSize ? $"mode=0755,size={baseSize}" : null), 0));
            root = "/newroot";
            hostPrefix = "/oldroot";
        }
        if (root is not null)
        {
            ops.Add(new(new(NativeOpKind.Bind, $"bind the new root {Shown(state.Root!)} onto itself", root, root, Flags: NativeOpFlags.Recursive), 0));
            ops.Add(new(new(NativeOpKind.OpenRoot, $"open the new root {Shown(state.Root!)}", hostPrefix + "/proc/self/fd", root, hostPrefix + "/proc/self/ns/user"), 0));
        }
        for (int i = 0; i < state.Mounts.Length; i++)
        {
            MountOperation op = state.Mounts[i];
            bool hostSource = op.Kind is NativeOpKind.Bind or NativeOpKind.Idmap or NativeOpKind.Mask && !op.SourceInsideRoot;
            if (root is not null)
            {
                op = op with
                {
                    Flags = op.Flags | (op.Target is not null ? NativeOpFlags.InRoot : 0) | (op.SourceInsideRoot ? NativeOpFlags.SourceInRoot : 0),
                    Source = hostSource && op.Source is not null ? hostPrefix + op.Source : op.Source,
                };
            }
            if (op.Kind == NativeOpKind.Overlay)
            {
                // s1: the layers, NUL-separated; s3/s4: upper and work (host paths).
                string prefix = root is null ? "" : hostPrefix;
                op = op with
                {
                    Contents = Encoding.UTF8.GetBytes(string.Join('\0', op.Layers.Select(l => prefix + l))),
                    N2 = op.Layers.Length,
                    FsType = op.UpperDir is null ? null : prefix + op.UpperDir,
                    Data = op.WorkDir is null ? null : prefix + op.WorkDir,
                };
            }
            if (state.DefaultTmpfsSize is { } size)
                op = WithDefaultSize(op, size);
            ops.Add(new(op, op.Call > 0 ? op.Call : i + 1) { HostSource = state.Mounts[i].Source });
        }
        if (root is not null)
            ops.Add(new(new(NativeOpKind.PivotRoot, $"pivot_root into {Shown(state.Root!)}", Target: root, Flags: state.ReadOnlyRoot ? NativeOpFlags.ReadOnly : 0), 0));
        return [.. ops];
    }

    /// <summary>A tmpfs mount (or an overlay's throw-away upper) without a size of its own gets <paramref name="size"/> bytes.</summary>
    private static MountOperation WithDefaultSize(MountOperation op, long size) => op switch
    {
        { Kind: NativeOpKind.Mount, FsType: "tmpfs" } when op.Data?.Contains("size=", StringComparison.Ordinal) != true =>
            op with { Data = op.Data is null ? $"size={size}" : $"{op.Data},size={size}" },
        { Kind: NativeOpKind.Overlay, N1: 0 } when op.Flags.HasFlag(NativeOpFlags.TmpfsUpper) => op with { N1 = size },
        _ => op,
    };

    private static string Shown(string root) => root == MountPlanBuilder.TmpfsRoot ? "(empty tmpfs)" : root;

    /// <summary>A compiled op and the 1-based number of the user's operation it came from (0: implicit).</summary>
    internal readonly record struct CompiledOp(MountOperation Operation, int UserIndex)
    {
        /// <summary>For an idmapped bind: the source as the parent sees it (before any /oldroot prefix).</summary>
        public string? HostSource { get; init; }
    }
}
