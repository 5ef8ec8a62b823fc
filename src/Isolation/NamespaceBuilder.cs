using System.Collections.Immutable;
using Isolation.Cgroups;
using Isolation.IdMaps;
using Isolation.Mounts;
using Isolation.Security;
using Microsoft.Extensions.Logging;
using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>
/// Composes a sandbox: namespaces, identity, mounts, environment, stdio. Immutable: every <c>With*</c>
/// returns a new builder, so a half-built builder can be shared and specialised. <see cref="Build"/>
/// validates the whole composition and freezes it into a reusable <see cref="IsolationSpec"/>.
/// </summary>
/// <example>
/// <code>
/// IsolationSpec spec = new NamespaceBuilder()
///     .WithNamespaces(Namespaces.User | Namespaces.Pid | Namespaces.Mount)
///     .MapCurrentUserToRoot()
///     .WithMounts(m => m.Proc("/proc"))
///     .Build();
/// </code>
/// </example>
public sealed partial class NamespaceBuilder
{
    private readonly BuilderState _state;

    /// <summary>Starts an empty composition: no new namespaces, the caller's identity and environment.</summary>
    public NamespaceBuilder() : this(new BuilderState())
    {
    }

    private NamespaceBuilder(BuilderState state) => _state = state;

    internal BuilderState State => _state;

    /// <summary>Create these namespaces (replaces the set given before).</summary>
    public NamespaceBuilder WithNamespaces(Namespaces namespaces)
    {
        if ((namespaces & ~Namespaces.All) != 0)
            throw new ArgumentOutOfRangeException(nameof(namespaces), namespaces, "Unknown namespace flags; combine values of the Namespaces enum.");
        return With(_state with { Namespaces = namespaces });
    }

    /// <summary>Map the caller's uid and gid to root inside a new user namespace (<c>unshare --map-root-user</c>).</summary>
    public NamespaceBuilder MapCurrentUserToRoot() =>
        With(_state with { UidMaps = [new IdMap(0, geteuid(), 1)], GidMaps = [new IdMap(0, getegid(), 1)] });

    /// <summary>Map the caller's uid and gid to themselves inside a new user namespace (<c>unshare --map-current-user</c>).</summary>
    public NamespaceBuilder MapCurrentUser() =>
        With(_state with { UidMaps = [new IdMap(geteuid(), geteuid(), 1)], GidMaps = [new IdMap(getegid(), getegid(), 1)] });

    /// <summary>Add a uid range to the map (<c>unshare --map-users</c>). Several ranges for an unprivileged caller go through newuidmap and /etc/subuid.</summary>
    public NamespaceBuilder MapUsers(uint inside, uint outside, uint count) =>
        With(_state with { UidMaps = _state.UidMaps.Add(new IdMap(inside, outside, count)) });

    /// <summary>Add a gid range to the map (<c>unshare --map-groups</c>). Several ranges for an unprivileged caller go through newgidmap and /etc/subgid.</summary>
    public NamespaceBuilder MapGroups(uint inside, uint outside, uint count) =>
        With(_state with { GidMaps = _state.GidMaps.Add(new IdMap(inside, outside, count)) });

    /// <summary>Choose how <c>/proc/PID/setgroups</c> is set (<c>unshare --setgroups</c>).</summary>
    public NamespaceBuilder WithSetgroups(SetgroupsPolicy policy)
    {
        if (policy is not (SetgroupsPolicy.Auto or SetgroupsPolicy.Deny or SetgroupsPolicy.Allow)) // not Enum.IsDefined: reflection, slow to start under NativeAOT
            throw new ArgumentOutOfRangeException(nameof(policy));
        return With(_state with { Setgroups = policy });
    }

    /// <summary>Run the program as this uid and gid inside the sandbox (<c>unshare -S/-G</c>, bubblewrap's <c>--uid/--gid</c>), optionally with supplementary groups.</summary>
    public NamespaceBuilder RunAs(uint uid, uint gid, params uint[] groups) =>
        With(_state with { Uid = uid, Gid = gid, Groups = [.. groups ?? []], SetGroups = groups is { Length: > 0 } });

    /// <summary>Set the host name of a new UTS namespace.</summary>
    public NamespaceBuilder WithHostname(string hostname)
    {
        CheckUtsName(hostname, nameof(hostname));
        return With(_state with { Hostname = hostname });
    }

    /// <summary>Set the NIS domain name of a new UTS namespace.</summary>
    public NamespaceBuilder WithDomainName(string domainName)
    {
        CheckUtsName(domainName, nameof(domainName));
        return With(_state with { DomainName = domainName });
    }

    /// <summary>Offset CLOCK_MONOTONIC and CLOCK_BOOTTIME in a new time namespace (<c>unshare --monotonic/--boottime</c>).</summary>
    public NamespaceBuilder WithTimeOffsets(TimeSpan monotonic, TimeSpan boottime) =>
        With(_state with { MonotonicOffset = monotonic, BoottimeOffset = boottime });

    /// <summary>Compose the mount plan (appends to the plan built so far).</summary>
    public NamespaceBuilder WithMounts(Action<MountPlanBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var builder = new MountPlanBuilder(_state.Mounts, _state.Root, _state.ReadOnlyRoot, _state.Propagation);
        configure(builder);
        return With(_state with
        {
            Mounts = [.. builder.Operations],
            Root = builder.RootPath,
            ReadOnlyRoot = builder.ReadOnlyRoot,
            Propagation = builder.Propagation,
        });
    }

    /// <summary>
    /// Bound every tmpfs the mount plan creates without a size of its own — <c>Tmpfs</c>, the tmpfs of
    /// <c>Dev()</c> and its <c>/dev/shm</c>, a <c>TmpOverlay</c>'s upper layer, the <c>EmptyRoot()</c> base — to
    /// <paramref name="bytes"/> (the kernel's default is half of RAM for each). <see cref="ForUntrustedCode"/>
    /// sets 64 MiB; null goes back to the kernel's default.
    /// </summary>
    public NamespaceBuilder WithDefaultTmpfsSize(long? bytes)
    {
        if (bytes is <= 0)
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "A tmpfs size must be positive; pass null for the kernel's default.");
        return With(_state with { DefaultTmpfsSize = bytes });
    }

    /// <summary>Compose the environment (appends to the changes made so far).</summary>
    public NamespaceBuilder WithEnvironment(Action<EnvironmentBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var builder = new EnvironmentBuilder(_state.ClearEnvironment, _state.EnvironmentChanges);
        configure(builder);
        return With(_state with { ClearEnvironment = builder.IsCleared, EnvironmentChanges = [.. builder.Changes] });
    }

    /// <summary>Run the program in this directory (inside the sandbox when it has a new root).</summary>
    /// <param name="path">An absolute path, inside the new root when the sandbox has one.</param>
    /// <param name="fallBack">When <paramref name="path"/> does not exist in the sandbox, start in its $HOME, else in
    /// "/", instead of failing (bubblewrap's rule for the directory it was run from).</param>
    public NamespaceBuilder WithWorkingDirectory(string path, bool fallBack = false)
    {
        MountPlanBuilder.Checked(path, nameof(path));
        return With(_state with { WorkingDirectory = path, WorkingDirectoryFallback = fallBack });
    }

    /// <summary>Where standard input comes from (default: inherited).</summary>
    public NamespaceBuilder WithStandardInput(Stdio stdio) => With(_state with { Stdin = stdio ?? throw new ArgumentNullException(nameof(stdio)) });

    /// <summary>Where standard output goes (default: inherited).</summary>
    public NamespaceBuilder WithStandardOutput(Stdio stdio) => With(_state with { Stdout = stdio ?? throw new ArgumentNullException(nameof(stdio)) });

    /// <summary>Where standard error goes (default: inherited).</summary>
    public NamespaceBuilder WithStandardError(Stdio stdio) => With(_state with { Stderr = stdio ?? throw new ArgumentNullException(nameof(stdio)) });

    /// <summary>Kill the sandbox when it runs longer than this; its <see cref="ExitStatus"/> then says <see cref="TerminationReason.TimedOut"/>.</summary>
    public NamespaceBuilder WithTimeout(TimeSpan timeout)
    {
        if (timeout <= TimeSpan.Zero || timeout == Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "A timeout must be positive.");
        return With(_state with { Timeout = timeout });
    }

    /// <summary>Kill the sandbox with this signal when the calling process dies (bubblewrap's <c>--die-with-parent</c>, <c>unshare --kill-child</c>).</summary>
    public NamespaceBuilder WithDieWithParent(int signal = 9)
    {
        if (signal is < 1 or > 64)
            throw new ArgumentOutOfRangeException(nameof(signal), signal, "A signal number is 1 to 64.");
        return With(_state with { DeathSignal = signal });
    }

    /// <summary>Start the program in a new session, detached from the caller's terminal (bubblewrap's <c>--new-session</c>).</summary>
    public NamespaceBuilder WithNewSession(bool enabled = true) => With(_state with { NewSession = enabled });

    /// <summary>
    /// Run a minimal init as PID 1 that reaps orphans, forwards signals to the program and exits with its
    /// status (like <c>docker run --init</c>). Without it the program itself is PID 1 (like <c>unshare --fork</c>).
    /// </summary>
    public NamespaceBuilder WithInit(bool enabled = true) => With(_state with { Init = enabled });

    /// <summary>Pass the program this argv[0] instead of its path (bubblewrap's <c>--argv0</c>).</summary>
    public NamespaceBuilder WithArgv0(string argv0)
    {
        ArgumentNullException.ThrowIfNull(argv0);
        if (argv0.Contains('\0'))
            throw new ArgumentException("argv[0] contains a NUL character.", nameof(argv0));
        return With(_state with { Argv0 = argv0 });
    }

    // --- Resource limits (cgroups, rlimits): the logic lives in Cgroups/ and Rlimit.cs. ---

    /// <summary>
    /// Give the sandbox a new cgroup of its own with these limits (appends to the settings made so far). The
    /// program is in it from its first instruction; the cgroup is removed when the process is disposed. The
    /// limits are required — <see cref="IsolationSpec.Start"/> refuses to run without them — unless this call
    /// says <see cref="CgroupBuilder.BestEffort"/> (an earlier call's best effort does not carry over).
    /// </summary>
    /// <example><code>.WithCgroup(c => c.MemoryMax(256L &lt;&lt; 20).PidsMax(64).CpuMax(0.5))</code></example>
    public NamespaceBuilder WithCgroup(Action<CgroupBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        // Limits set explicitly are required unless this call says best effort: a WithCgroup after
        // ForUntrustedCode() (whose own limits are best effort) refuses to start without its limits.
        var builder = new CgroupBuilder((_state.Cgroup ?? new CgroupSettings()) with { BestEffort = false });
        configure(builder);
        return With(_state with { Cgroup = builder.Settings });
    }

    /// <summary>Set an rlimit of the program (<c>prlimit --nofile=64:64</c>); replaces an earlier one for the same resource. Use <see cref="Rlimit.Unlimited"/> for no limit.</summary>
    public NamespaceBuilder WithRlimit(RlimitResource resource, ulong soft, ulong hard) =>
        With(_state with { Rlimits = [.. _state.Rlimits.Where(r => r.Resource != resource), new Rlimit(resource, soft, hard)] });

    /// <summary>Set an rlimit's soft and hard values to <paramref name="limit"/>.</summary>
    public NamespaceBuilder WithRlimit(RlimitResource resource, ulong limit) => WithRlimit(resource, limit, limit);
    // --- security (src/Isolation/Security) ---

    /// <summary>
    /// Compose what the program is denied: capabilities, no_new_privs, seccomp, Landlock, nested user
    /// namespaces (appends to the settings made so far). Applied by the child as its last steps before execve.
    /// </summary>
    /// <example><c>.WithSecurity(s =&gt; s.DropAllCapabilities().NoNewPrivileges().WithDefaultSeccomp())</c></example>
    public NamespaceBuilder WithSecurity(Action<SecurityBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var builder = new SecurityBuilder(_state.Security);
        configure(builder);
        return With(_state with { Security = builder.Policy });
    }

    /// <summary>
    /// A sandbox for code you do not trust (build steps, plugins, submissions, tool calls): every namespace
    /// but time, a minimal read-only root, no capabilities, no_new_privs, the default seccomp profile, no
    /// nested user namespaces, a new session and death with the caller. Specialise it like any builder,
    /// for example <c>.WithMounts(m =&gt; m.Bind(work, "/work")).WithWorkingDirectory("/work")</c>. See
    /// <see cref="UntrustedCodePreset"/> for each choice and what it does not defend against.
    /// </summary>
    public static NamespaceBuilder ForUntrustedCode() => UntrustedCodePreset.Apply(new NamespaceBuilder());

    // --- end security ---

    /// <summary>Log each setup step at Debug level.</summary>
    public NamespaceBuilder WithLogger(ILogger logger) => With(_state with { Logger = logger ?? throw new ArgumentNullException(nameof(logger)), ProcessLogger = null });

    /// <summary>
    /// Log through <paramref name="loggerFactory"/> in the library's own categories: <c>Isolation.IsolationSpec</c> (setup
    /// steps at Debug, a failed setup at Warning) and <c>Isolation.IsolatedProcess</c> (signals and exits at Debug; a
    /// timeout, an OOM kill or the pids limit at Warning). Event ids are stable (Diagnostics/Log.cs).
    /// </summary>
    public NamespaceBuilder WithLogger(ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(loggerFactory);
        return With(_state with { Logger = loggerFactory.CreateLogger("Isolation.IsolationSpec"), ProcessLogger = loggerFactory.CreateLogger("Isolation.IsolatedProcess") });
    }

    /// <summary>Validates the composition and freezes it into a reusable, thread-safe spec. Throws <see cref="ArgumentException"/> before any system call.</summary>
    /// <exception cref="PlatformNotSupportedException">Not Linux, or a kernel older than a feature of the spec needs (the message names both).</exception>
    public IsolationSpec Build()
    {
        Platform.PlatformSupport.EnsureLinux();
        Validate(_state);
        Platform.KernelRequirements.Check(_state, Platform.KernelRequirements.Current);
        return new IsolationSpec(MappedIdentity.Resolve(_state)); // the identity the child switches to after its maps
    }

    private NamespaceBuilder With(BuilderState state) => new(state);

    private static void CheckUtsName(string name, string paramName)
    {
        ArgumentException.ThrowIfNullOrEmpty(name, paramName);
        if (name.Contains('\0'))
            throw new ArgumentException($"'{name.Replace("\0", "\\0")}' contains a NUL character.", paramName);
        if (System.Text.Encoding.UTF8.GetByteCount(name) > 64)
            throw new ArgumentException($"'{name}' is longer than 64 bytes, the kernel's limit for host and domain names.", paramName);
    }

    internal static void Validate(BuilderState s)
    {
        ValidateJoins(s); // joining existing namespaces: NamespaceBuilder.Join.cs
        bool user = s.Namespaces.HasFlag(Namespaces.User);
        bool mount = s.Namespaces.HasFlag(Namespaces.Mount);
        bool pid = s.Namespaces.HasFlag(Namespaces.Pid) || Joins(s, Namespaces.Pid);
        if (!user && (s.UidMaps.Length > 0 || s.GidMaps.Length > 0))
            throw new ArgumentException("A uid or gid map requires Namespaces.User; add it to WithNamespaces(...).");
        if (!user && s.Setgroups != SetgroupsPolicy.Auto)
            throw new ArgumentException("WithSetgroups requires Namespaces.User; add it to WithNamespaces(...).");
        IdMap.Validate(s.UidMaps, "uid");
        IdMap.Validate(s.GidMaps, "gid");
        if (s.Hostname is not null && !s.Namespaces.HasFlag(Namespaces.Uts))
            throw new ArgumentException("WithHostname requires Namespaces.Uts; without it the host's name would change. Add Namespaces.Uts.");
        if (s.DomainName is not null && !s.Namespaces.HasFlag(Namespaces.Uts))
            throw new ArgumentException("WithDomainName requires Namespaces.Uts; without it the host's domain name would change. Add Namespaces.Uts.");
        if ((s.MonotonicOffset != TimeSpan.Zero || s.BoottimeOffset != TimeSpan.Zero) && !s.Namespaces.HasFlag(Namespaces.Time))
            throw new ArgumentException("Time offsets require Namespaces.Time; add it to WithNamespaces(...).");
        if ((s.Mounts.Length > 0 || s.Root is not null) && !mount)
            throw new ArgumentException("A mount plan requires Namespaces.Mount; without it the mounts would land in the host's namespace. Add Namespaces.Mount.");
        if (s.Propagation != MountPropagation.Private && !mount)
            throw new ArgumentException("A mount propagation requires Namespaces.Mount; add it to WithNamespaces(...).");
        foreach (MountOperation op in s.Mounts)
        {
            if (op.Kind == NativeOpKind.Mount && op.FsType == "proc" && !op.CallerPidNamespace && !(pid && mount))
                throw new ArgumentException($"'{op.Description}' requires Namespaces.Pid and Namespaces.Mount: a proc mount shows the PID namespace of the sandbox. Add both to WithNamespaces(...), or pass callerPidNamespace: true to show the caller's processes on purpose.");
            if (op.Kind == NativeOpKind.Mount && op.FsType == "proc" && op.CallerPidNamespace && !pid && user)
                throw new ArgumentException($"'{op.Description}' of the caller's PID namespace cannot be mounted from a new user namespace: the kernel wants CAP_SYS_ADMIN over the namespace that owns the caller's PID namespace (EPERM). Add Namespaces.Pid, or drop Namespaces.User as root.");
            // The kernel mounts sysfs only for a caller with CAP_SYS_ADMIN over the network namespace's owner.
            if (op.Kind == NativeOpKind.Mount && op.FsType == "sysfs" && user && !s.Namespaces.HasFlag(Namespaces.Net))
                throw new ArgumentException($"'{op.Description}' in a new user namespace requires Namespaces.Net: the kernel mounts sysfs only for the owner of the network namespace, and the host's belongs to the host (EPERM). Add Namespaces.Net, or bind the host's /sys read-only instead.");
            if (op.Kind == NativeOpKind.Mount && op.FsType == "mqueue" && !s.Namespaces.HasFlag(Namespaces.Ipc))
                throw new ArgumentException($"'{op.Description}' requires Namespaces.Ipc: a mqueue mount shows the IPC namespace of the sandbox. Add it to WithNamespaces(...).");
        }
        IdmappedTrees.Validate(s); // a read-only idmapped bind the program could remount read-write
        if (s.SetGroups && s.Setgroups == SetgroupsPolicy.Deny)
            throw new ArgumentException("RunAs(...) with supplementary groups needs setgroups(2), which WithSetgroups(SetgroupsPolicy.Deny) forbids.");
        if (s.SetGroups && user && s.Setgroups == SetgroupsPolicy.Auto && geteuid() != 0 && s.GidMaps.Length == 1 && s.GidMaps[0].Outside == getegid())
            throw new ArgumentException("RunAs(...) with supplementary groups needs setgroups(2), which the kernel forbids when an unprivileged caller maps its own gid. Map groups through newgidmap (several MapGroups ranges) or drop the groups.");
        if (s.Cgroup is { } cgroup)
            CgroupBuilder.Validate(cgroup);
        foreach (Rlimit rlimit in s.Rlimits)
            rlimit.Validate();
        SecurityCompiler.Validate(s); // security: capabilities, seccomp, Landlock, nested user namespaces
        KernelLimits.Validate(s); // sizes the kernel refuses: paths, the timeout
    }
}

/// <summary>Everything a builder holds. A record so that each With* is one copy.</summary>
internal sealed record BuilderState
{
    public Namespaces Namespaces { get; init; }
    public ImmutableArray<IdMap> UidMaps { get; init; } = [];
    public ImmutableArray<IdMap> GidMaps { get; init; } = [];
    public SetgroupsPolicy Setgroups { get; init; }
    public uint? Uid { get; init; }
    public uint? Gid { get; init; }
    public ImmutableArray<uint> Groups { get; init; } = [];
    public bool SetGroups { get; init; }
    public string? Hostname { get; init; }
    public string? DomainName { get; init; }
    public TimeSpan MonotonicOffset { get; init; }
    public TimeSpan BoottimeOffset { get; init; }
    public ImmutableArray<MountOperation> Mounts { get; init; } = [];
    public long? DefaultTmpfsSize { get; init; }
    public string? Root { get; init; }
    public bool ReadOnlyRoot { get; init; }
    public MountPropagation Propagation { get; init; }
    public bool ClearEnvironment { get; init; }
    public ImmutableArray<KeyValuePair<string, string?>> EnvironmentChanges { get; init; } = [];
    public string? WorkingDirectory { get; init; }
    public bool WorkingDirectoryFallback { get; init; }
    public Stdio Stdin { get; init; } = Stdio.Inherit;
    public Stdio Stdout { get; init; } = Stdio.Inherit;
    public Stdio Stderr { get; init; } = Stdio.Inherit;
    public TimeSpan? Timeout { get; init; }
    public int DeathSignal { get; init; }
    public bool NewSession { get; init; }
    public bool Init { get; init; }
    public string? Argv0 { get; init; }
    public ILogger? Logger { get; init; }
    public ILogger? ProcessLogger { get; init; }
    public CgroupSettings? Cgroup { get; init; }
    public ImmutableArray<Rlimit> Rlimits { get; init; } = [];
    public SecurityPolicy Security { get; init; } = SecurityPolicy.None; // security: see Security/SecurityBuilder.cs
    public ImmutableArray<Joining.NamespaceJoin> Joins { get; init; } = []; // joined namespaces: NamespaceBuilder.Join.cs
}
