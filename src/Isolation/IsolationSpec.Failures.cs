using Isolation.Mounts;
using Isolation.Security;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>
/// Explaining a failed start: the helper's or the child's <c>{step, op index, errno}</c> record turned into a
/// <see cref="SandboxSetupException"/> that names what the user wrote (the mount as they wrote it, the program,
/// the id), the errno and what to do about it. One place formats them all (STYLE.md §3).
/// </summary>
public sealed partial class IsolationSpec
{
    private SandboxSetupException CloneFailed(int errno)
    {
        bool user = _state.Namespaces.HasFlag(Namespaces.User);
        string? hint = errno switch
        {
            _ when errno == EPERM && user => "the kernel refused to create a user namespace: check sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0 and kernel.apparmor_restrict_unprivileged_userns=0, or that a seccomp filter (e.g. a container's) allows clone with CLONE_NEWUSER",
            _ when errno == EPERM => "creating namespaces other than a user namespace needs CAP_SYS_ADMIN; run as root or add Namespaces.User with MapCurrentUserToRoot()",
            _ when errno == ENOSPC => "a namespace limit is reached: see /proc/sys/user/max_*_namespaces",
            _ when errno == EUSERS => "user namespaces are nested too deep (the kernel allows 32 levels)",
            _ when errno == EINVAL => "the kernel refused this combination of namespaces",
            _ when errno == ENOMEM || errno == EAGAIN => "the system is out of memory or processes (check ulimit -u and pids limits)",
            _ when errno == EMFILE || errno == ENFILE => "the spawn helper ran out of file descriptors (it inherits this process's RLIMIT_NOFILE: raise ulimit -n; ENFILE: the system-wide fs.file-max)",
            _ => null,
        };
        return new SandboxSetupException(SetupStep.Clone, $"clone3 with namespaces {_state.Namespaces}", errno, null, hint);
    }

    /// <summary>A FAILED reply from the helper: a step of the helper's own, or of the child.</summary>
    private SandboxSetupException SpawnFailed(in iso_reply reply, string program)
    {
        var step = (SetupStep)reply.error.step;
        int errno = reply.error.err;
        return step switch
        {
            SetupStep.Clone when JoinedCloneFailed(errno) is { } joined => joined, // IsolationSpec.Join.cs
            SetupStep.Clone => CloneFailed(errno),
            SetupStep.JoinNamespace => JoinFailed(step, (Namespaces)reply.error.op_index, errno),
            SetupStep.Setgroups or SetupStep.UidMap or SetupStep.GidMap when _idMaps is not null => _idMaps.HelperFailed(step, errno, reply.pid),
            SetupStep.Release => new SandboxSetupException(step, $"release pid {reply.pid}", errno),
            SetupStep.Cgroup => new SandboxSetupException(step, $"put pid {reply.pid} in its cgroup (cgroup.procs, after the clone() fallback)", errno),
            SetupStep.SpawnHelper => new SandboxSetupException(step, "hand the spawn to the spawn helper", errno, null,
                "the helper did not know this spec or could not read the request; this is a bug in Isolation, please report it"),
            _ => ChildFailed(reply.error, program),
        };
    }

    private SandboxSetupException ChildFailed(in iso_child_error error, string program)
    {
        var step = (SetupStep)error.step;
        int errno = error.err;
        if (step is >= SetupStep.UserNamespaceLimit and <= SetupStep.Seccomp)
            return SecurityCompiler.Failed(step, error.op_index, errno, _security);
        if (step == SetupStep.CloseFileDescriptors && error.op_index >= 3) // security: a passed fd
            return new SandboxSetupException(step, $"pass descriptor {error.op_index}", errno, null, "the descriptor was closed after Build(); keep it open while sandboxes start");
        switch (step)
        {
            case SetupStep.Mount when error.op_index >= 0 && error.op_index < _compiledOps.Length:
            {
                CompiledOp op = _compiledOps[error.op_index];
                string sub = error.detail switch
                {
                    1 => " (creating the target)",
                    2 when op.Operation.Kind == NativeOpKind.Idmap => " (idmapping it)",
                    2 => " (making it read-only)",
                    3 => " (opening it)",
                    4 => " (writing it)",
                    5 => " (entering the new root)",
                    6 => " (pivot_root)",
                    7 => " (detaching the old root)",
                    _ => "",
                };
                string what = op.UserIndex > 0 ? $"mount #{op.UserIndex}: {op.Operation.Description}{sub}" : $"{op.Operation.Description}{sub}";
                return new SandboxSetupException(SetupStep.Mount, what, errno, op.Operation.Target, error.detail == 1 && errno == EACCES ? TargetHint : MountHint(op.Operation, errno), op.UserIndex)
                {
                    CreatingTarget = error.detail == 1,
                };
            }
            case SetupStep.Exec:
                return new SandboxSetupException(step, $"exec {program}", errno, program, errno switch
                {
                    _ when errno == ENOENT && ScriptInterpreter(program) is { } interpreter =>
                        $"the program is a script whose interpreter {interpreter} (its #! line) does not exist in the sandbox; install it, bind it in, or fix the #! line",
                    _ when errno == EACCES && HostFile(program) is { } found && Directory.Exists(found) => $"{found} is a directory, not a program",
                    _ when errno == ENOENT => _state.Root is null
                        ? "no such program: give an absolute path or make sure it is in the sandbox's PATH"
                        : "no such program inside the new root: the path is looked up after pivot_root; bind it (and its libraries) into the root",
                    _ when errno == EACCES => "the program is not executable, or it is on a noexec mount",
                    _ when errno == ENOEXEC => "the file is not an executable the kernel can run (a script needs a #! line)",
                    _ => null,
                });
            case SetupStep.ExecInit:
                return new SandboxSetupException(step, $"exec isolation-init {InitExecutable.How}", errno, InitExecutable.Path, errno switch
                {
                    _ when errno == EACCES && InitExecutable.How.StartsWith("from /", StringComparison.Ordinal) =>
                        $"the sandbox may not execute {InitExecutable.Path} (a Landlock rule or its user's permissions); allow executing it, or let the init run from a memfd (sysctl vm.memfd_noexec=0 or 1)",
                    _ when errno == EACCES => "the kernel refused to execute the init's copy; check sysctl vm.memfd_noexec and any Landlock or seccomp rules",
                    _ => "check that execveat works here (a seccomp filter may refuse it)",
                });
            case SetupStep.Stdio when errno == EBADF && _state.Rlimits.FirstOrDefault(r => r.Resource == RlimitResource.NoFile) is { Soft: < 3 } noFile:
                return new SandboxSetupException(step, StepDescription(step), errno, null,
                    $"RLIMIT_NOFILE {noFile.Soft} leaves no room for stdio (descriptors 0, 1 and 2): give the program a limit of at least 3, plus every descriptor it is passed");
            case SetupStep.JoinUserNamespaceAfterSetup:
                return JoinFailed(step, Namespaces.User, errno);
            case SetupStep.WorkingDirectory:
                return new SandboxSetupException(step, $"chdir {_state.WorkingDirectory}", errno, _state.WorkingDirectory,
                    errno == ENOENT ? "the working directory does not exist inside the sandbox" : null);
            case SetupStep.Hostname:
                return new SandboxSetupException(step, $"sethostname {_state.Hostname}", errno);
            case SetupStep.TimeOffsets:
                return new SandboxSetupException(step, "write /proc/self/timens_offsets", errno, "/proc/self/timens_offsets",
                    "offsets must be within about ±146 years and the kernel must have CONFIG_TIME_NS");
            case SetupStep.SetUid or SetupStep.SetGid:
                return new SandboxSetupException(step, $"switch to uid {_state.Uid} gid {_state.Gid}", errno, null,
                    errno == EINVAL ? "that uid or gid is not mapped in the sandbox's user namespace; add it to the uid/gid map" : null);
            case SetupStep.SetGroups:
                return new SandboxSetupException(step, "setgroups", errno, null,
                    errno == EPERM ? "setgroups is denied in this user namespace (/proc/PID/setgroups is 'deny')" : null);
            default:
                return new SandboxSetupException(step, StepDescription(step), errno);
        }
    }

    /// <summary>
    /// Where the program is on the host's file system when the sandbox sees the host's (no new root): the path, or
    /// the first match in the sandbox's PATH, as the child looks it up. Null when it cannot be told from here.
    /// </summary>
    private string? HostFile(string program)
    {
        if (_state.Root is not null)
            return null;
        if (program.Contains('/'))
            return File.Exists(program) || Directory.Exists(program) ? program : null;
        string searchPath = new EnvironmentBuilder(_state.ClearEnvironment, _state.EnvironmentChanges).Resolve(Environment.GetEnvironmentVariables())
            .Find(e => e.StartsWith("PATH=", StringComparison.Ordinal))?[5..] ?? DefaultSearchPath;
        return searchPath.Split(':').Select(dir => Path.Combine(dir.Length == 0 ? "." : dir, program)).FirstOrDefault(File.Exists);
    }

    /// <summary>The interpreter a script's #! line names, when the program is such a script (execve(2): ENOENT then means it is missing).</summary>
    private string? ScriptInterpreter(string program)
    {
        if (HostFile(program) is not { } file || !File.Exists(file))
            return null;
        try
        {
            using var reader = new StreamReader(file);
            char[] head = new char[256];
            string line = new string(head, 0, reader.ReadBlock(head)).Split('\n')[0];
            return line.StartsWith("#!", StringComparison.Ordinal) && line[2..].Trim().Split(' ', '\t')[0] is { Length: > 0 } interpreter ? interpreter : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static string StepDescription(SetupStep step) => step switch
    {
        SetupStep.WaitForParent => "wait for the parent's setup",
        SetupStep.UnshareCgroup => "unshare the cgroup namespace",
        SetupStep.UnshareTime => "unshare the time namespace",
        SetupStep.Loopback => "bring up the loopback interface",
        SetupStep.NewSession => "setsid",
        SetupStep.DeathSignal => "prctl(PR_SET_PDEATHSIG)",
        SetupStep.Stdio => "connect stdio",
        SetupStep.CloseFileDescriptors => "close inherited file descriptors",
        SetupStep.InitFork => "fork the program from isolation-init",
        SetupStep.DomainName => "setdomainname",
        SetupStep.HelperGone => "arm the parent-death signal (the spawn helper was already gone)",
        SetupStep.ArrangeFileDescriptors => "move the sandbox's descriptors into place",
        _ => step.ToString(),
    };

    private const string TargetHint = "the setup's identity may not create the missing mount point in its parent directory; "
        + "under a map that leaves out the directory's owner (a root-owned image, as root with MapUsers(0, 100000, ...)) the sandbox's root has no rights over it: "
        + "create the mount point in the image, or chown the image to the ids the map gives (chown -R 100000:100000 IMAGE)";

    private static string? MountHint(MountOperation op, int errno) => errno switch
    {
        _ when errno == ENOENT && op.Kind is NativeOpKind.Bind or NativeOpKind.Idmap => $"the source '{op.Source}' does not exist; use optional: true to skip a missing source",
        _ when errno == ENOENT && op.Kind == NativeOpKind.Overlay => op.UpperDir is null
            ? $"a lower layer ({string.Join(", ", op.Layers)}) does not exist"
            : $"a lower layer ({string.Join(", ", op.Layers)}), the upper '{op.UpperDir}' or the work directory '{op.WorkDir}' does not exist",
        _ when errno == EOVERFLOW => "the setup's uid or gid has no mapping in the sandbox's user namespace, so it cannot create files in a file system mounted there (a tmpfs, an overlay's upper layer): map 0 inside (MapUsers/MapGroups(0, ...)) so that setup runs as the namespace's root, or map the caller's own ids",
        _ when op.Kind == NativeOpKind.Idmap && (errno == EPERM || errno == EINVAL || errno == EOPNOTSUPP) => "the kernel lets only a process privileged over the file system's own user namespace create idmapped mounts of it, and the sandbox's setup runs inside the new user namespace: host file systems cannot be idmapped from there (it works for file systems mounted inside the sandbox); the file system must also support idmapping (ext4, xfs, btrfs, tmpfs on Linux 6.3+)",
        _ when errno == ENOENT => "the path or one of its parents does not exist",
        _ when errno == EPERM && op.FsType == "proc" => "mounting proc needs a PID namespace owned by the sandbox's user namespace and a host /proc that is not partly hidden (e.g. inside a container with masked /proc paths)",
        _ when errno == EPERM => "a user namespace may mount only some file systems (tmpfs, bind mounts, proc of its own PID namespace, sysfs of its own network namespace) and cannot clear flags the host set (ro, nosuid, nodev)",
        _ when errno == EACCES => "permission denied on the path; the setup can only reach what its identity can: an unprivileged caller's own, or, when the maps leave out the caller's ids, the host ids that uid and gid 0 inside map to",
        _ when errno == ENOTDIR => "a component of the path is not a directory",
        _ when errno == EINVAL && op.Kind == NativeOpKind.PivotRoot => "pivot_root needs the new root to be a mount point on a private mount",
        _ when op.Kind == NativeOpKind.Overlay && errno == EINVAL => "overlayfs refused the layers: the work directory must be empty and on the same file system as the upper one, layers must not overlap, and a read-only overlay needs two lower layers",
        _ when op.Kind == NativeOpKind.Overlay && errno == EBUSY => "the upper or work directory is already used by another overlay",
        _ when errno == EINVAL && op.Kind is NativeOpKind.Remount or NativeOpKind.Propagation or NativeOpKind.MountSetattr => "the path is not a mount point: bind or mount something there first",
        _ when errno == ENOSYS => "this kernel lacks openat2/mount_setattr/open_tree (Linux 5.12 or newer is needed for mount plans)",
        _ when errno == ELOOP => "too many symbolic links while resolving the path inside the new root",
        _ when errno == EROFS => "the path is on a read-only mount; create it before making its parent read-only, or bind a writable directory there",
        _ => null,
    };

}
