using System.Collections.Immutable;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Isolation.Cgroups;
using Isolation.Diagnostics;
using Isolation.IdMaps;
using Isolation.Interop;
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
/// native memory, so a start only lays out argv and clones.
/// </summary>
public sealed unsafe partial class IsolationSpec
{
    private const string DefaultSearchPath = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";
    private const int StackSize = 64 * 1024;
    private const int ScratchSize = 8192;

    private readonly BuilderState _state;
    private readonly ILogger _logger;
    private readonly NativeBlockHandle _handle;
    private readonly CompiledOp[] _compiledOps;
    private readonly IdmappedTrees? _idmappedTrees;
    private readonly IdMapWriter? _idMaps;
    private readonly CompiledSecurity? _security; // security: compiled once, shared by every spawn

    // Pointers into _handle's block, fixed for the spec's lifetime.
    private readonly iso_op* _ops;
    private readonly byte** _envp;
    private readonly byte* _searchPath;
    private readonly byte* _cwd;
    private readonly byte* _hostname;
    private readonly byte* _domainName;
    private readonly byte* _timeOffsets;
    private readonly nuint _timeOffsetsLength;
    private readonly uint* _groups;
    private readonly uint _flags;
    private readonly ulong _cloneFlags;
    private readonly ulong _unshareFlags;

    internal IsolationSpec(BuilderState state)
    {
        _state = state;
        _logger = state.Logger ?? NullLogger.Instance;
        _compiledOps = CompileMounts(state);
        _idmappedTrees = IdmappedTrees.For(_compiledOps, state);
        _security = SecurityCompiler.Compile(state);

        List<string> environment = new EnvironmentBuilder(state.ClearEnvironment, state.EnvironmentChanges)
            .Resolve(Environment.GetEnvironmentVariables());
        string searchPath = environment.Find(e => e.StartsWith("PATH=", StringComparison.Ordinal))?[5..] ?? DefaultSearchPath;
        string? timeOffsets = state.Namespaces.HasFlag(Namespaces.Time)
            ? $"monotonic {Offset(state.MonotonicOffset)}\nboottime {Offset(state.BoottimeOffset)}\n"
            : null;

        // Measure everything, allocate once, then fill in the same order.
        nuint size = NativeBlock.MeasureArray<iso_op>(_compiledOps.Length)
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
        _ops = block.TakeArray<iso_op>(_compiledOps.Length);
        for (int i = 0; i < _compiledOps.Length; i++)
        {
            MountOperation m = _compiledOps[i].Operation;
            _ops[i] = new iso_op
            {
                kind = (uint)m.Kind,
                flags = (uint)m.Flags,
                mount_flags = m.MountFlags,
                s1 = m.Contents is { } contents ? block.Bytes(contents) : block.String(m.Source),
                s2 = block.String(m.Target),
                s3 = block.String(m.FsType),
                s4 = block.String(m.Data),
                n1 = m.N1,
                n2 = m.N2,
            };
        }
        _envp = (byte**)block.TakeArray<nint>(environment.Count + 1);
        for (int i = 0; i < environment.Count; i++)
            _envp[i] = block.String(environment[i]);
        _envp[environment.Count] = null;
        _groups = block.TakeArray<uint>(state.Groups.Length);
        for (int i = 0; i < state.Groups.Length; i++)
            _groups[i] = state.Groups[i];
        _searchPath = block.String(searchPath);
        _cwd = block.String(state.WorkingDirectory);
        _hostname = block.String(state.Hostname);
        _domainName = block.String(state.DomainName);
        _timeOffsets = block.String(timeOffsets);
        _timeOffsetsLength = timeOffsets is null ? 0 : (nuint)Encoding.UTF8.GetByteCount(timeOffsets);
        if (state.Namespaces.HasFlag(Namespaces.User))
        {
            _idMaps = new IdMapWriter(state.UidMaps, state.GidMaps, state.Setgroups, ref block);
            _idMaps.ValidateHost();
        }

        _cloneFlags = (ulong)(state.Namespaces & ~(Namespaces.Time | Namespaces.Cgroup));
        _unshareFlags = (state.Namespaces.HasFlag(Namespaces.Time) ? CLONE_NEWTIME : 0)
            | (state.Namespaces.HasFlag(Namespaces.Cgroup) ? (ulong)CLONE_NEWCGROUP : 0);
        _flags = ISO_SPAWN_WAIT_RELEASE
            | (state.Namespaces.HasFlag(Namespaces.Net) ? ISO_SPAWN_LOOPBACK_UP : 0)
            | (state.NewSession ? ISO_SPAWN_NEW_SESSION : 0)
            | (state.Uid is not null ? ISO_SPAWN_SET_IDS : 0)
            | (state.SetGroups ? ISO_SPAWN_SET_GROUPS : 0)
            | (state.WorkingDirectoryFallback ? ISO_SPAWN_CWD_FALLBACK : 0);
    }

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

    /// <summary>Tests: force the clone(2) fallback instead of clone3.</summary>
    internal bool ForceCloneFallback { get; set; }

    /// <summary>
    /// Starts <paramref name="program"/> in a new sandbox. Returns once the program has been exec'd;
    /// throws <see cref="SandboxSetupException"/> (naming the step, path and errno) when setup failed, with
    /// nothing left behind. <paramref name="program"/> without a '/' is searched in the sandbox's PATH.
    /// </summary>
    public IsolatedProcess Start(string program, params ReadOnlySpan<string> arguments)
    {
        ArgumentException.ThrowIfNullOrEmpty(program);
        if (program.Contains('\0'))
            throw new ArgumentException("The program path contains a NUL character.", nameof(program));
        foreach (string argument in arguments)
        {
            if (argument is null)
                throw new ArgumentNullException(nameof(arguments), "An argument is null.");
            if (argument.Contains('\0'))
                throw new ArgumentException($"Argument '{argument.Replace("\0", "\\0")}' contains a NUL character; arguments cannot hold NUL.", nameof(arguments));
        }

        int initFd = _state.Init ? InitExecutable.GetFd() : -1;
        string argv0 = _state.Argv0 ?? program;

        // One native block per start: request, argv, init argv, strings, scratch buffer and child stack.
        int initArgc = initFd >= 0 ? 4 + arguments.Length : 0;
        nuint size = NativeBlock.Align((nuint)sizeof(iso_spawn_request))
            + NativeBlock.MeasureArray<nint>(arguments.Length + 2)
            + NativeBlock.MeasureArray<nint>(initArgc + 1)
            + 16
            + NativeBlock.MeasureString(program) + NativeBlock.MeasureString(argv0)
            + (initFd >= 0 ? NativeBlock.MeasureString(InitExecutable.Name) : 0)
            + ScratchSize + StackSize
            + (_idmappedTrees is null ? 0 : NativeBlock.MeasureArray<iso_op>(_compiledOps.Length));
        foreach (string argument in arguments)
            size += NativeBlock.MeasureString(argument);
        // Not zeroed: every piece below is written before use, and the 64 KiB stack and scratch need no zeroing.
        NativeBlock block = NativeBlock.Allocate(size, clear: false);

        var stdio = new StdioSet();
        iso_spawn_result result = default;
        bool spawned = false;
        ICgroup cgroup = NoCgroup.Instance;
        string? cgroupError = null;
        int[]? idmappedTreeFds = null;
        try
        {
            // Step 1: the sandbox's new cgroup, limits written, before clone (IsolationSpec.Cgroups.cs).
            (cgroup, cgroupError) = CreateCgroup();
            var request = (iso_spawn_request*)block.Take((nuint)sizeof(iso_spawn_request));
            byte** argv = (byte**)block.TakeArray<nint>(arguments.Length + 2);
            byte** initArgv = (byte**)block.TakeArray<nint>(initArgc + 1);
            byte* errorFdText = (byte*)block.Take(16);
            byte* path = block.String(program);
            argv[0] = block.String(argv0);
            for (int i = 0; i < arguments.Length; i++)
                argv[i + 1] = block.String(arguments[i]);
            argv[arguments.Length + 1] = null;
            if (initFd >= 0)
            {
                // isolation-init ERROR_FD FILE ARGV0 ARGS...
                initArgv[0] = block.String(InitExecutable.Name);
                initArgv[1] = errorFdText;
                initArgv[2] = path;
                for (int i = 0; i <= arguments.Length; i++)
                    initArgv[3 + i] = argv[i];
                initArgv[initArgc] = null;
            }
            byte* scratch = (byte*)block.Take(ScratchSize);
            void* stack = block.Take(StackSize);
            iso_op* ops = _ops;
            if (_idmappedTrees is not null)
            {
                // Idmapped trees are made by the parent before clone; the child gets a per-start copy of the ops.
                ops = block.TakeArray<iso_op>(_compiledOps.Length);
                idmappedTreeFds = _idmappedTrees.Prepare(_ops, _compiledOps.Length, ops);
            }

            *request = new iso_spawn_request
            {
                abi_version = AbiVersion,
                flags = _flags | (ForceCloneFallback ? ISO_SPAWN_NO_CLONE3 : 0),
                clone_flags = _cloneFlags,
                unshare_flags = _unshareFlags,
                path = path,
                argv = argv,
                envp = _envp,
                search_path = _searchPath,
                cwd = _cwd,
                cgroup_fd = cgroup.CloneIntoFd, // v2: CLONE_INTO_CGROUP
                uid = _state.Uid ?? 0,
                gid = _state.Gid ?? 0,
                ngroups = (uint)_state.Groups.Length,
                groups = _groups,
                hostname = _hostname,
                domainname = _domainName,
                timens_offsets = _timeOffsets,
                timens_offsets_len = _timeOffsetsLength,
                ops = ops,
                nops = (uint)_compiledOps.Length,
                pdeath_signal = _state.DeathSignal,
                init_fd = initFd,
                init_argv = initFd >= 0 ? initArgv : null,
                stack = stack,
                stack_size = StackSize,
                scratch = scratch,
                scratch_size = ScratchSize,
                security = _security is null ? null : _security.Native,
            };
            stdio.Open(_state, request);

            if (_logger.IsEnabled(LogLevel.Debug))
                Log.Cloning(_logger, program, _state.Namespaces);
            int rc = IsolationNative_Spawn(request, &result);
            if (rc < 0)
                throw CloneFailed(-rc);
            spawned = true;
            Log.Cloned(_logger, result.pid, result.used_clone3 != 0);
            stdio.CloseChildEnds();

            // Parent's part, while the child waits on the sync pipe.
            _idMaps?.Write(result.pid, _logger);
            // v1, and v2 when clone3 fell back: the parent places the child; then its rlimits.
            PlaceInCgroup(cgroup, result.pid, result.used_clone3 != 0);
            SetRlimits(result.pid);

            // sync 1: maps written, child released.
            int syncFd = result.sync_fd;
            result.sync_fd = -1;
            rc = IsolationNative_Release(syncFd);
            if (rc < 0)
                throw new SandboxSetupException(SetupStep.Release, $"release pid {result.pid}", -rc);
            Log.Released(_logger, result.pid);

            // sync 2: EOF on the error pipe means execve succeeded.
            iso_child_error error;
            int errorFd = result.error_fd;
            result.error_fd = -1;
            rc = IsolationNative_WaitExec(errorFd, &error);
            if (rc < 0)
                throw new SandboxSetupException(SetupStep.Exec, $"wait for pid {result.pid} to exec", -rc);
            if (rc == 1)
                throw ChildFailed(error, program);
            Log.Execed(_logger, result.pid, program);

            var process = new IsolatedProcess(result.pid, result.pidfd, stdio.TakeStreams(), _state.Timeout, _logger, cgroup, cgroupError);
            result.pidfd = -1;
            return process;
        }
        catch (Exception e)
        {
            if (spawned)
                Abort(ref result);
            cgroup.Remove(); // after Abort: the child is gone, so the cgroup is empty
            stdio.Dispose();
            if (e is SandboxSetupException && _logger.IsEnabled(LogLevel.Debug))
                Log.SetupFailed(_logger, result.pid, e.Message);
            throw;
        }
        finally
        {
            // The child no longer runs on this memory: it exec'd, or Abort reaped it.
            IdmappedTrees.Close(idmappedTreeFds);
            block.Free();
            GC.KeepAlive(_handle);
        }
    }

    /// <summary>A setup failure after clone: make sure the child is gone before its stack is freed.</summary>
    private static void Abort(ref iso_spawn_result result)
    {
        if (result.sync_fd >= 0)
            close(result.sync_fd); // the child reads EOF at sync 1 and exits
        if (result.pidfd >= 0)
            IsolationNative_PidfdSendSignal(result.pidfd, SIGKILL);
        if (result.error_fd >= 0)
        {
            iso_child_error ignored;
            IsolationNative_WaitExec(result.error_fd, &ignored);
        }
        if (result.pidfd >= 0)
        {
            int code, status;
            long user, system, rss;
            IsolationNative_ReapPidfd(result.pidfd, 0, &code, &status, &user, &system, &rss);
            close(result.pidfd);
        }
        result = default;
    }

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
            _ => null,
        };
        return new SandboxSetupException(SetupStep.Clone, $"clone3 with namespaces {_state.Namespaces}", errno, null, hint);
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
                return new SandboxSetupException(SetupStep.Mount, what, errno, op.Operation.Target, MountHint(op.Operation, errno), op.UserIndex);
            }
            case SetupStep.Exec:
                return new SandboxSetupException(step, $"exec {program}", errno, program, errno switch
                {
                    _ when errno == ENOENT => _state.Root is null
                        ? "no such program: give an absolute path or make sure it is in the sandbox's PATH"
                        : "no such program inside the new root: the path is looked up after pivot_root; bind it (and its libraries) into the root",
                    _ when errno == EACCES => "the program is not executable, or it is on a noexec mount",
                    _ when errno == ENOEXEC => "the file is not an executable the kernel can run (a script needs a #! line)",
                    _ => null,
                });
            case SetupStep.ExecInit:
                return new SandboxSetupException(step, "exec isolation-init", errno, InitExecutable.Path, "the init is executed from a sealed memfd; check that execveat works here");
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
        _ => step.ToString(),
    };

    private static string? MountHint(MountOperation op, int errno) => errno switch
    {
        _ when errno == ENOENT && op.Kind is NativeOpKind.Bind or NativeOpKind.Idmap => $"the source '{op.Source}' does not exist; use optional: true to skip a missing source",
        _ when errno == ENOENT && op.Kind == NativeOpKind.Overlay => "a layer, the upper or the work directory does not exist",
        _ when op.Kind == NativeOpKind.Idmap && (errno == EPERM || errno == EINVAL || errno == EOPNOTSUPP) => "the kernel lets only a process privileged over the file system's own user namespace create idmapped mounts of it, and the sandbox's setup runs inside the new user namespace: host file systems cannot be idmapped from there (it works for file systems mounted inside the sandbox); the file system must also support idmapping (ext4, xfs, btrfs, tmpfs on Linux 6.3+)",
        _ when errno == ENOENT => "the path or one of its parents does not exist",
        _ when errno == EPERM && op.FsType == "proc" => "mounting proc needs a PID namespace owned by the sandbox's user namespace and a host /proc that is not partly hidden (e.g. inside a container with masked /proc paths)",
        _ when errno == EPERM => "a user namespace may mount only some file systems (tmpfs, proc, sysfs, bind mounts) and cannot clear flags the host set (ro, nosuid, nodev)",
        _ when errno == EACCES => "permission denied on the path; an unprivileged sandbox can only bind what its user can read",
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
            ulong flags = (ulong)MS_REC | state.Propagation switch
            {
                MountPropagation.Slave => (ulong)MS_SLAVE,
                MountPropagation.Shared => (ulong)MS_SHARED,
                _ => (ulong)MS_PRIVATE,
            };
            ops.Add(new(new(NativeOpKind.Propagation, $"make / {state.Propagation.ToString().ToLowerInvariant()}", Target: "/", MountFlags: flags), 0));
        }

        string? root = state.Root;
        string hostPrefix = "";
        if (root == MountPlanBuilder.TmpfsRoot)
        {
            // bubblewrap's layout: a tmpfs base on /tmp (in our namespace only) holds newroot/ and oldroot/.
            ops.Add(new(new(NativeOpKind.PivotBase, "pivot into a tmpfs base on /tmp", Target: "/tmp"), 0));
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
            ops.Add(new(op, op.Call > 0 ? op.Call : i + 1) { HostSource = state.Mounts[i].Source });
        }
        if (root is not null)
            ops.Add(new(new(NativeOpKind.PivotRoot, $"pivot_root into {Shown(state.Root!)}", Target: root, Flags: state.ReadOnlyRoot ? NativeOpFlags.ReadOnly : 0), 0));
        return [.. ops];
    }

    private static string Shown(string root) => root == MountPlanBuilder.TmpfsRoot ? "(empty tmpfs)" : root;

    /// <summary>A compiled op and the 1-based number of the user's operation it came from (0: implicit).</summary>
    internal readonly record struct CompiledOp(MountOperation Operation, int UserIndex)
    {
        /// <summary>For an idmapped bind: the source as the parent sees it (before any /oldroot prefix).</summary>
        public string? HostSource { get; init; }
    }
}
