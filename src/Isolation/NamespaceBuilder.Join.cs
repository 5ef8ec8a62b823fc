using System.Numerics;
using System.Runtime.InteropServices;
using Isolation.IdMaps;
using Isolation.Joining;

namespace Isolation;

/// <summary>Joining existing namespaces (setns(2)): the builder calls and the rules <see cref="Build"/> checks.</summary>
public sealed partial class NamespaceBuilder
{
    /// <summary>
    /// Join an existing namespace of <paramref name="kind"/> instead of sharing the caller's (<c>nsenter</c>, bubblewrap's
    /// <c>--userns</c>/<c>--pidns</c>, OCI's namespace <c>path</c>). <paramref name="path"/> is a namespace file:
    /// <c>/proc/PID/ns/net</c> of a process, or a bind mount of one (<c>/run/netns/NAME</c>). A later call for the same
    /// kind replaces this one.
    /// </summary>
    /// <remarks>
    /// <para><see cref="Build"/> opens the path and checks that it is a namespace of that kind; the spec holds it open
    /// for its lifetime (until <see cref="IsolationSpec.Dispose"/>, or until it is collected), so every start joins the namespace that was there at <c>Build()</c>, even after the process that
    /// held it has exited (a PID namespace whose init has exited takes no new process: <c>Start</c> then fails saying so).</para>
    /// <para>The joins happen before the sandbox's process is created, the user namespace first when the caller could not
    /// join the others without it (as <c>nsenter</c> does); the namespaces <see cref="WithNamespaces"/> creates are then
    /// created inside them: owned by the joined user namespace, a new PID namespace nested in the joined one, a new mount
    /// namespace a copy of the joined one. A joined user namespace has its id maps already, so none are written, and
    /// the program keeps the caller's uid and gid as that namespace maps them (<see cref="RunAs"/> switches to another).
    /// In a joined PID namespace the program is not PID 1, and disposing the sandbox kills only its own processes.</para>
    /// <para>Unprivileged, joining a namespace other than a user namespace needs <c>CAP_SYS_ADMIN</c> over it: join the
    /// user namespace that owns it too.</para>
    /// </remarks>
    /// <example><code>.JoinNamespace(Namespaces.User, $"/proc/{holder}/ns/user").JoinNamespace(Namespaces.Net, $"/proc/{holder}/ns/net")</code></example>
    public NamespaceBuilder JoinNamespace(Namespaces kind, string path)
    {
        CheckKind(kind);
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (path.Contains('\0'))
            throw new ArgumentException($"'{path.Replace("\0", "\\0")}' contains a NUL character.", nameof(path));
        return WithJoin(new NamespaceJoin(kind, path, null, AfterSetup: false));
    }

    /// <summary>
    /// Join the namespace <paramref name="handle"/> refers to (an open <c>/proc/PID/ns/*</c> file or a bind mount of one);
    /// see <see cref="JoinNamespace(Namespaces, string)"/>. <see cref="Build"/> takes its own duplicate of the descriptor,
    /// so the handle may be disposed once the last <c>Build()</c> of this builder has returned (a later one throws
    /// <see cref="ObjectDisposedException"/>).
    /// </summary>
    public NamespaceBuilder JoinNamespace(Namespaces kind, SafeHandle handle)
    {
        CheckKind(kind);
        ArgumentNullException.ThrowIfNull(handle);
        return WithJoin(new NamespaceJoin(kind, null, handle, AfterSetup: false));
    }

    /// <summary>
    /// After setup (mounts, host names, <c>lo</c>) and before the identity switch and the security steps, move into the
    /// user namespace at <paramref name="path"/> (bubblewrap's <c>--userns2</c>): usually one nested in the sandbox's own,
    /// where the program has no privilege over the mounts and namespaces set up for it. Opened at <see cref="Build"/> as
    /// <see cref="JoinNamespace(Namespaces, string)"/> is.
    /// </summary>
    public NamespaceBuilder JoinUserNamespaceAfterSetup(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (path.Contains('\0'))
            throw new ArgumentException($"'{path.Replace("\0", "\\0")}' contains a NUL character.", nameof(path));
        return WithJoin(new NamespaceJoin(Namespaces.User, path, null, AfterSetup: true));
    }

    /// <inheritdoc cref="JoinUserNamespaceAfterSetup(string)"/>
    public NamespaceBuilder JoinUserNamespaceAfterSetup(SafeHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        return WithJoin(new NamespaceJoin(Namespaces.User, null, handle, AfterSetup: true));
    }

    private NamespaceBuilder WithJoin(NamespaceJoin join) =>
        With(_state with { Joins = [.. _state.Joins.Where(j => j.Kind != join.Kind || j.AfterSetup != join.AfterSetup), join] });

    private static void CheckKind(Namespaces kind)
    {
        if (kind == Namespaces.None || (kind & ~Namespaces.All) != 0 || BitOperations.PopCount((uint)kind) != 1)
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Join one namespace at a time: one value of the Namespaces enum, such as Namespaces.Net.");
    }

    /// <summary>The kernel's rules for joining, checked at <see cref="Build"/> before anything is opened.</summary>
    internal static void ValidateJoins(BuilderState s)
    {
        foreach (NamespaceJoin join in s.Joins.Where(j => !j.AfterSetup))
        {
            Namespaces kind = join.Kind;
            string name = NamespaceJoin.KindName(kind);
            // Created inside the joined one: a nested PID namespace (bubblewrap's --pidns with --unshare-pid), a copy of
            // the joined mount table. For the other kinds a new namespace would not keep anything of the joined one.
            if (s.Namespaces.HasFlag(kind) && kind is not (Namespaces.Pid or Namespaces.Mount))
                throw new ArgumentException($"Namespaces.{kind} is both created (WithNamespaces) and joined ({join.Call}); choose one: a new {name} namespace would replace the joined one.");
        }
        if (Joins(s, Namespaces.User))
        {
            if (s.UidMaps.Length > 0 || s.GidMaps.Length > 0)
                throw new ArgumentException("A joined user namespace has its uid and gid maps already (the kernel lets them be written once, user_namespaces(7)): drop MapUsers/MapGroups/MapCurrentUser/MapCurrentUserToRoot, or create a user namespace instead of joining one. RunAs(...) picks an id the joined namespace maps.");
            if (s.Setgroups != SetgroupsPolicy.Auto)
                throw new ArgumentException("WithSetgroups sets /proc/PID/setgroups of a new user namespace; a joined one has its own. Drop WithSetgroups, or create a user namespace instead of joining one.");
        }
        if (Joins(s, Namespaces.Mount) && !s.Namespaces.HasFlag(Namespaces.Mount) && (s.Mounts.Length > 0 || s.Root is not null || s.Propagation != default))
            throw new ArgumentException("A mount plan with JoinNamespace(Namespaces.Mount, ...) would change the joined mount namespace for every process in it. Add Namespaces.Mount to WithNamespaces(...) to run the plan in a copy of the joined namespace.");
        if (Joins(s, Namespaces.Uts) && !s.Namespaces.HasFlag(Namespaces.Uts) && (s.Hostname is not null || s.DomainName is not null))
            throw new ArgumentException("WithHostname/WithDomainName with JoinNamespace(Namespaces.Uts, ...) would rename the joined UTS namespace for every process in it; drop them, or create a UTS namespace instead of joining one.");
        if (Joins(s, Namespaces.Time) && (s.MonotonicOffset != TimeSpan.Zero || s.BoottimeOffset != TimeSpan.Zero))
            throw new ArgumentException("A time namespace's clock offsets are fixed once a process has entered it (time_namespaces(7)): a joined one keeps its own. Drop WithTimeOffsets, or create Namespaces.Time instead of joining one.");
    }

    /// <summary>Whether the sandbox joins a namespace of <paramref name="kind"/> before setup.</summary>
    internal static bool Joins(BuilderState s, Namespaces kind) => s.Joins.Any(j => j.Kind == kind && !j.AfterSetup);
}
