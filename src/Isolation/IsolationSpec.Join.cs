using Isolation.Joining;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>
/// Joining existing namespaces (<see cref="NamespaceBuilder.JoinNamespace(Namespaces, string)"/>): the descriptors
/// opened at Build() go with every start, and a failed join is explained here.
/// </summary>
public sealed unsafe partial class IsolationSpec
{
    private readonly OpenedJoins? _joins; // opened at Build(), held for the spec's lifetime (Joining/NamespaceJoin.cs)

    /// <summary>The namespaces each sandbox joins instead of sharing the caller's (before setup).</summary>
    public Namespaces JoinedNamespaces => _state.Joins.Where(j => !j.AfterSetup).Aggregate(Namespaces.None, (all, j) => all | j.Kind);

    /// <summary>Per start: each joined namespace's descriptor, for the helper's trampoline (child_join.c) or, after setup, the child.</summary>
    private void AddJoins(iso_spawn_msg* message, int* fds)
    {
        if (_joins is null)
            return;
        foreach ((bool afterSetup, int type, int fd) in _joins.Descriptors)
            AddFd(message, fds, afterSetup ? ISO_FD_JOIN_LATE : ISO_FD_JOIN, type, fd);
    }

    /// <summary>setns(2) refused a join: which one, and what the kernel wants for it.</summary>
    private SandboxSetupException JoinFailed(SetupStep step, Namespaces kind, int errno)
    {
        bool afterSetup = step == SetupStep.JoinUserNamespaceAfterSetup;
        (NamespaceJoin join, string source) = _joins?.Find(kind, afterSetup) ?? (new NamespaceJoin(kind, null, null, afterSetup), "?");
        string name = NamespaceJoin.KindName(kind);
        string? hint = errno switch
        {
            _ when errno == EPERM && kind == Namespaces.User =>
                "joining a user namespace needs CAP_SYS_ADMIN in it: it must be a child of the caller's user namespace created by the caller's uid (or a descendant of one in which the caller is privileged), or the caller must be root (user_namespaces(7))",
            _ when errno == EPERM =>
                $"joining a {name} namespace needs CAP_SYS_ADMIN in the caller's user namespace and in the one that owns it (setns(2)); unprivileged, join that user namespace too: JoinNamespace(Namespaces.User, /proc/PID/ns/user of the same process)",
            _ when errno == EINVAL && kind == Namespaces.User =>
                "a process can join only a user namespace that is a descendant of its own, and not the one it is already in (bubblewrap: 'it might not be a descendant of the current user namespace')",
            _ when errno == EINVAL && kind == Namespaces.Pid =>
                "a PID namespace can be joined only from itself or an ancestor of it (pid_namespaces(7)); this one is not below the caller's",
            _ when errno == EINVAL => "the kernel refused this namespace here (setns(2): EINVAL)",
            _ => null,
        };
        return new SandboxSetupException(step, $"{(afterSetup ? "after setup, join" : "join")} the {name} namespace of {source} ({join.Call})", errno, join.Path, hint);
    }

    /// <summary>The trampoline's clone into a joined PID namespace whose init has gone: the kernel's ENOMEM says nothing of that.</summary>
    private SandboxSetupException? JoinedCloneFailed(int errno)
    {
        if (errno != ENOMEM || _joins?.Find(Namespaces.Pid) is not { } pid)
            return null;
        return new SandboxSetupException(SetupStep.Clone, $"create the sandbox's process in the PID namespace of {pid.Source} ({pid.Join.Call})", errno, pid.Join.Path,
            "that PID namespace's init (its PID 1) has exited, and a PID namespace takes no new process once it has (pid_namespaces(7)); the process that held it is gone: join a live one");
    }
}
