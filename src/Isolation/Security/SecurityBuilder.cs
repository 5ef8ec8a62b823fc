using System.Collections.Immutable;
using Isolation.Security.Seccomp;

namespace Isolation.Security;

/// <summary>
/// Composes what the sandbox takes away from the program: capabilities, no_new_privs, seccomp filters,
/// Landlock, nested user namespaces. Used through <see cref="NamespaceBuilder.WithSecurity"/>; every
/// setting is applied by the child as its last steps before execve, in the order capabilities,
/// no_new_privs, Landlock, seccomp (see src/Isolation.Native/child_security.c).
/// </summary>
public sealed class SecurityBuilder
{
    private SecurityPolicy _policy;

    internal SecurityBuilder(SecurityPolicy policy) => _policy = policy;

    internal SecurityPolicy Policy => _policy;

    /// <summary>
    /// Drop every capability from all five sets: bounding, permitted, effective, inheritable and ambient
    /// (bubblewrap's <c>--cap-drop ALL</c>). Even uid 0 in the sandbox then holds nothing, and no setuid or
    /// file-capability binary can hand anything back (capabilities(7): execve grants at most the bounding set).
    /// </summary>
    public SecurityBuilder DropAllCapabilities() => Set(_policy with { KeepCapabilities = 0 });

    /// <summary>Keep exactly <paramref name="capabilities"/> and drop all others.</summary>
    public SecurityBuilder KeepCapabilities(params Capability[] capabilities) =>
        Set(_policy with { KeepCapabilities = Capabilities.ToMask(capabilities) });

    /// <summary>Add capabilities back after <see cref="DropAllCapabilities"/> (bubblewrap's <c>--cap-add</c>). Without a drop first, all are kept anyway.</summary>
    public SecurityBuilder AddCapabilities(params Capability[] capabilities) =>
        Set(_policy with { KeepCapabilities = (_policy.KeepCapabilities ?? Capabilities.All) | Capabilities.ToMask(capabilities) });

    /// <summary>Add capabilities by name (<c>CAP_NET_BIND_SERVICE</c> or <c>net_bind_service</c>); <c>ALL</c> keeps every one (bubblewrap's <c>--cap-add ALL</c>).</summary>
    public SecurityBuilder AddCapabilities(params string[] names)
    {
        ArgumentNullException.ThrowIfNull(names);
        return names.Any(IsAll)
            ? Set(_policy with { KeepCapabilities = Capabilities.All })
            : AddCapabilities(ParseAll(names));
    }

    /// <summary>Drop these capabilities and keep the rest (bubblewrap's <c>--cap-drop</c>).</summary>
    public SecurityBuilder DropCapabilities(params Capability[] capabilities) =>
        Set(_policy with { KeepCapabilities = (_policy.KeepCapabilities ?? Capabilities.All) & ~Capabilities.ToMask(capabilities) });

    /// <summary>Drop capabilities by name; <c>ALL</c> drops every one.</summary>
    public SecurityBuilder DropCapabilities(params string[] names)
    {
        ArgumentNullException.ThrowIfNull(names);
        return names.Any(IsAll)
            ? DropAllCapabilities()
            : DropCapabilities(ParseAll(names));
    }

    private static bool IsAll(string? name) => string.Equals(name?.Trim(), "ALL", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Set the securebits (capabilities(7)). Locked bits stay for the program and its descendants: for
    /// example <c>SECBIT_NOROOT | SECBIT_NOROOT_LOCKED</c> means uid 0 gains nothing from execve.
    /// </summary>
    public SecurityBuilder WithSecureBits(SecureBits bits)
    {
        if (((int)bits & ~0xFF) != 0)
            throw new ArgumentOutOfRangeException(nameof(bits), bits, "Combine values of the SecureBits enum.");
        return Set(_policy with { SecureBits = bits });
    }

    /// <summary>
    /// Set no_new_privs (prctl(2) <c>PR_SET_NO_NEW_PRIVS</c>): execve can no longer grant privileges, so
    /// setuid bits and file capabilities are ignored for the program and everything it starts. Required for
    /// seccomp and Landlock unless the sandbox keeps <c>CAP_SYS_ADMIN</c>.
    /// </summary>
    public SecurityBuilder NoNewPrivileges(bool enabled = true) => Set(_policy with { NoNewPrivileges = enabled });

    /// <summary>Add a seccomp filter compiled from <paramref name="profile"/> for the host's architecture at Build.</summary>
    public SecurityBuilder WithSeccomp(SeccompProfile profile)
    {
        ArgumentNullException.ThrowIfNull(profile);
        return Set(_policy with { SeccompProfiles = _policy.SeccompProfiles.Add(profile) });
    }

    /// <summary>Add the default seccomp profile (<see cref="SeccompProfile.Default"/>).</summary>
    public SecurityBuilder WithDefaultSeccomp() => WithSeccomp(SeccompProfile.Default);

    /// <summary>Add a seccomp filter from an OCI runtime-spec / Docker profile (the isolate CLI's <c>--seccomp-profile FILE.json</c>).</summary>
    public SecurityBuilder WithSeccompProfileJson(string json) => WithSeccomp(SeccompProfile.FromOciJson(json));

    /// <summary>
    /// Add an already compiled filter (bubblewrap's <c>--seccomp FD</c> and <c>--add-seccomp-fd FD</c>: read
    /// the fd into bytes and pass them). Several filters stack; the kernel applies the strictest verdict.
    /// </summary>
    public SecurityBuilder WithSeccompProgram(SeccompProgram program)
    {
        ArgumentNullException.ThrowIfNull(program);
        return Set(_policy with { SeccompPrograms = _policy.SeccompPrograms.Add(program) });
    }

    /// <summary>Compose a Landlock ruleset (appends to the rules given before). Best-effort unless <see cref="LandlockBuilder.Require"/>.</summary>
    public SecurityBuilder WithLandlock(Action<LandlockBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var builder = new LandlockBuilder();
        configure(builder);
        LandlockPolicy added = builder.Build();
        LandlockPolicy merged = _policy.Landlock is not { } old ? added : new LandlockPolicy(
            old.Paths.AddRange(added.Paths), old.Ports.AddRange(added.Ports), old.RestrictTcp || added.RestrictTcp,
            old.ScopeSignals || added.ScopeSignals, old.ScopeAbstractUnix || added.ScopeAbstractUnix, Math.Max(old.RequiredAbi, added.RequiredAbi))
        {
            ScopesOnly = old.ScopesOnly && added.ScopesOnly, // a later call that allows paths handles the file system
        };
        return Set(_policy with { Landlock = merged });
    }

    /// <summary>
    /// Forbid the program to create user namespaces (bubblewrap's <c>--disable-userns</c>): the child caps
    /// <c>user.max_user_namespaces</c> in the sandbox's user namespace and runs the program in one nested
    /// namespace below it, where it holds no <c>CAP_SYS_RESOURCE</c> over that limit (user_namespaces(7)).
    /// A new user namespace would otherwise hand the program a full capability set over new mount and
    /// network namespaces: the first step of many kernel exploits. Requires <see cref="Namespaces.User"/>.
    /// </summary>
    public SecurityBuilder DisableNestedUserNamespaces(bool enabled = true) => Set(_policy with { DisableUserNamespaces = enabled });

    /// <summary>
    /// Let these descriptors of the calling process reach the program, at the same numbers (bubblewrap
    /// passes fds the same way). Every other descriptor from 3 up is closed at execve, so nothing the
    /// caller's runtime holds open (sockets, files, a directory outside the new root: runc
    /// CVE-2024-21626) leaks into the sandbox. Standard input, output and error are set with
    /// <c>WithStandardInput/Output/Error</c> instead.
    /// </summary>
    public SecurityBuilder PassFileDescriptors(params int[] fds)
    {
        ArgumentNullException.ThrowIfNull(fds);
        foreach (int fd in fds)
        {
            if (fd < 3)
                throw new ArgumentOutOfRangeException(nameof(fds), fd, "Descriptors 0 to 2 are stdio: use WithStandardInput/Output/Error. Pass descriptors from 3 up.");
        }
        return Set(_policy with { PassFds = [.. _policy.PassFds.Union(fds)] });
    }

    /// <summary>
    /// Become uid and gid 0 of the sandbox's user namespace, without supplementary groups, before the
    /// mount plan runs instead of after it, so that setup acts with the mapped ids and never with the
    /// caller's (which matters when the caller is root). Requires <see cref="Namespaces.User"/> and
    /// <c>RunAs(0, 0)</c>. The untrusted preset sets it.
    /// </summary>
    public SecurityBuilder SetUpAsNamespaceRoot(bool enabled = true) => Set(_policy with { EarlyRoot = enabled });

    private SecurityBuilder Set(SecurityPolicy policy)
    {
        _policy = policy;
        return this;
    }

    private static Capability[] ParseAll(string[] names)
    {
        ArgumentNullException.ThrowIfNull(names);
        return names.Select(n => Capabilities.Parse(n)).ToArray();
    }
}

/// <summary>Everything a <see cref="SecurityBuilder"/> holds; part of the builder's state.</summary>
internal sealed record SecurityPolicy
{
    public static SecurityPolicy None { get; } = new();

    /// <summary>Capabilities kept in every set; null: leave the capability sets alone.</summary>
    public ulong? KeepCapabilities { get; init; }
    public SecureBits? SecureBits { get; init; }
    public bool NoNewPrivileges { get; init; }
    public ImmutableArray<SeccompProfile> SeccompProfiles { get; init; } = [];
    public ImmutableArray<SeccompProgram> SeccompPrograms { get; init; } = [];
    public LandlockPolicy? Landlock { get; init; }
    public bool DisableUserNamespaces { get; init; }
    /// <summary>Become uid 0 of the user namespace before the mount plan (the untrusted preset).</summary>
    public bool EarlyRoot { get; init; }
    public ImmutableArray<int> PassFds { get; init; } = [];

    public bool IsEmpty => this == None || (KeepCapabilities is null && SecureBits is null && !NoNewPrivileges
        && SeccompProfiles.IsEmpty && SeccompPrograms.IsEmpty && Landlock is null && !DisableUserNamespaces && !EarlyRoot && PassFds.IsEmpty);
}
