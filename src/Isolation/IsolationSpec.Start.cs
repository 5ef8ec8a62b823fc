using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Isolation.Cgroups;
using Isolation.Diagnostics;
using Isolation.Mounts;
using Isolation.Spawning;
using Microsoft.Extensions.Logging;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>
/// Starting a sandbox through the spawn helper (DESIGN.md §3): the spec is handed to the helper once; each start
/// sends one message with the program, its arguments and its descriptors, and reads the helper's answers on a
/// status socket of its own.
/// </summary>
public sealed unsafe partial class IsolationSpec
{
    private readonly Lock _defineLock = new();
    private SpawnHelper.Definition[] _definitions = []; // the helpers that hold this spec, and its id in each (copy-on-write)

    /// <summary>Tests: force the clone(2) fallback instead of clone3.</summary>
    internal bool ForceCloneFallback { get; set; }

    /// <summary>
    /// Starts <paramref name="program"/> in a new sandbox. Returns once the program has been exec'd;
    /// throws <see cref="SandboxSetupException"/> (naming the step, path and errno) when setup failed, with
    /// nothing left behind. <paramref name="program"/> without a '/' is searched in the sandbox's PATH.
    /// The sandbox is owned by this process: it is killed when this process dies.
    /// </summary>
    public IsolatedProcess Start(string program, params ReadOnlySpan<string> arguments) => StartCore(program, arguments, null);

    /// <summary>
    /// Starts <paramref name="program"/> as <see cref="Start(string, ReadOnlySpan{string})"/> does, for a caller that can
    /// give up on the setup. Setup is synchronous and takes milliseconds, so the token is checked before it and
    /// when it has ended: a start cancelled meanwhile kills the new sandbox and throws
    /// <see cref="OperationCanceledException"/> once it is gone. Once this returns, the token has no effect on the
    /// sandbox (use <see cref="IsolatedProcess.Kill"/> or dispose it).
    /// </summary>
    public IsolatedProcess Start(string program, IReadOnlyList<string> arguments, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        cancellationToken.ThrowIfCancellationRequested();
        IsolatedProcess process = StartCore(program, AsSpan(arguments), null);
        if (cancellationToken.IsCancellationRequested)
        {
            process.Dispose(); // kills it and waits until it is gone
            cancellationToken.ThrowIfCancellationRequested();
        }
        return process;
    }

    /// <summary>Starts with the standard streams chosen per start instead of the spec's (RunAsync, ListenAsync).</summary>
    internal IsolatedProcess StartCore(string program, ReadOnlySpan<string> arguments, StdioChoice? stdioChoice)
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
        KernelLimits.CheckExecStrings(program, _state.Argv0 ?? program, arguments, _environment, _environmentBytes, _stackLimit);
        using InFlightStart inFlight = EnterStart(); // throws once disposed; Dispose releases only after it (IsolationSpec.Lifetime.cs)
        long timestamp = IsolationTelemetry.StartTimestamp();
        Activity? activity = IsolationTelemetry.StartActivity(program);
        PrepareNprocFallback(); // before a helper is rented (IsolationSpec.Cgroups.cs)
        for (int attempt = 0; ; attempt++)
        {
            SpawnHelper helper = SpawnHelper.Rent();
            try
            {
                IsolatedProcess process = StartWith(helper, program, arguments, stdioChoice);
                IsolationTelemetry.Started(timestamp, activity, process.Id);
                return process;
            }
            catch (SandboxSetupException e) when (attempt == 0 && e.Step == SetupStep.SpawnHelper && SpawnHelper.MeansGone(e.Errno))
            {
                // The helper died before it took the spawn (nothing was started): a new one takes it.
                helper.MarkGone();
            }
            catch (Exception e)
            {
                IsolationTelemetry.Failed(activity, e);
                throw;
            }
            finally
            {
                helper.Return();
            }
        }
    }

    /// <summary>Starts through <paramref name="helper"/> (tests: a helper started from another copy of the executable).</summary>
    internal IsolatedProcess StartWith(SpawnHelper helper, string program, ReadOnlySpan<string> arguments, StdioChoice? stdioChoice = null)
    {
        uint specId = DefinedIn(helper);
        int initFd = _state.Init ? InitExecutable.GetFd() : -1;

        // "program\0argv0\0arg1\0...", measured, then filled into one native buffer.
        string argv0 = _state.Argv0 ?? program;
        int length = Encoding.UTF8.GetByteCount(program) + Encoding.UTF8.GetByteCount(argv0) + 2;
        foreach (string argument in arguments)
            length = checked(length + Encoding.UTF8.GetByteCount(argument) + 1);
        byte* strings = (byte*)NativeMemory.Alloc((nuint)length);
        int filled = Put(strings, 0, program);
        filled = Put(strings, filled, argv0);
        foreach (string argument in arguments)
            filled = Put(strings, filled, argument);

        iso_spawn_msg message = default;
        int* fds = stackalloc int[ISO_MAX_SPAWN_FDS];
        var stdio = new StdioSet();
        ICgroup cgroup = NoCgroup.Instance;
        string? cgroupError = null;
        ulong nproc = 0;
        int[]? trees = null;
        int statusFd = -1, helperEnd = -1;
        try
        {
            // Step 1: the sandbox's new cgroup, limits written, before clone (IsolationSpec.Cgroups.cs).
            (cgroup, cgroupError) = CreateCgroup();
            nproc = NprocFallback(cgroup, cgroupError); // without the cgroup: RLIMIT_NPROC in place of pids.max, where it holds
            stdio.Open(stdioChoice ?? new StdioChoice(_state.Stdin, _state.Stdout, _state.Stderr), helper.HasNullDevice);
            int rc = IsolationNative_StatusSocket(&statusFd, &helperEnd);
            if (rc < 0)
                throw new SandboxSetupException(SetupStep.SpawnHelper, "create the status socket of a spawn", -rc);

            // The descriptors of this spawn, each with what it is for (isolation_native.h, enum iso_fd_role).
            AddFd(&message, fds, ISO_FD_STATUS, 0, helperEnd);
            for (int i = 0; i < 3; i++)
            {
                if (stdio.ChildFd(i) is int fd and >= 0)
                    AddFd(&message, fds, ISO_FD_STDIO, i, fd);
            }
            if (cgroup.CloneIntoFd >= 0)
                AddFd(&message, fds, ISO_FD_CGROUP, 0, cgroup.CloneIntoFd); // v2: CLONE_INTO_CGROUP
            if (initFd >= 0)
                AddFd(&message, fds, ISO_FD_INIT, 0, initFd);
            for (int i = 0; i < _compiledOps.Length; i++)
            {
                if (_compiledOps[i].Operation.Kind == NativeOpKind.CopyFd)
                    AddFd(&message, fds, ISO_FD_OP, i, UserFd((int)_compiledOps[i].Operation.N2, _compiledOps[i].Operation.Description, SetupStep.Mount));
            }
            if (_idmappedTrees is not null)
            {
                // Idmapped trees are made by the host for each start (Mounts/IdmappedTrees.cs).
                trees = _idmappedTrees.Open(_ops);
                for (int i = 0; i < trees.Length; i++)
                    AddFd(&message, fds, ISO_FD_OP, _idmappedTrees.OpIndexes[i], trees[i]);
            }
            if (_security is not null)
            {
                iso_security* sec = _security.Native;
                for (int i = 0; i < sec->npass_fds; i++)
                    AddFd(&message, fds, ISO_FD_PASS, sec->pass_fds[i], UserFd(sec->pass_fds[i], $"pass descriptor {sec->pass_fds[i]}", SetupStep.CloseFileDescriptors));
            }
            AddJoins(&message, fds); // the namespaces to join (IsolationSpec.Join.cs)

            // The host's own steps between clone and release: newuidmap, v1 cgroups, rlimits. Without them
            // the helper goes from clone to exec with no round trip.
            bool hostStep = (_idMaps?.NeedsHost ?? false) || _state.Rlimits.Length > 0 || nproc > 0
                || (cgroup is not NoCgroup && !(cgroup is V2Cgroup && cgroup.CloneIntoFd >= 0));
            message.kind = ISO_MSG_SPAWN;
            message.spec_id = specId;
            message.flags = (ForceCloneFallback ? ISO_SPAWN_NO_CLONE3 : 0) | (hostStep ? ISO_SPAWN_HOST_STEP : 0);
            message.death_signal = _state.DeathSignal != 0 ? _state.DeathSignal : SIGKILL;
            message.argc = (uint)arguments.Length + 1;
            message.strings_len = (uint)length;

            if (_logger.IsEnabled(LogLevel.Debug))
                Log.Cloning(_logger, program, _state.Namespaces);
            rc = IsolationNative_SendSpawn(helper.Channel, &message, fds, strings);
            if (rc < 0)
                throw HelperFailed(helper, rc, "send the spawn to the spawn helper");
            // The helper has its own copies now.
            CloseAndClear(ref helperEnd);
            stdio.CloseChildEnds();
            IdmappedTrees.Close(trees);
            trees = null;

            int* received = stackalloc int[2];
            while (true)
            {
                iso_reply reply;
                rc = IsolationNative_ReadReply(statusFd, 0, &reply, received);
                if (rc <= 0)
                    throw HelperFailed(helper, rc == 0 ? -EPIPE : rc, "wait for the spawn helper's answer");
                switch (reply.kind)
                {
                    case ISO_REPLY_CLONED:
                        // The child waits at sync 1, and only the helper can reap it, so its pid stays its own
                        // while we write to /proc/PID and cgroup.procs; then the helper releases it.
                        Log.Cloned(_logger, reply.pid, reply.used_clone3 != 0);
                        if (_idMaps is { NeedsHost: true })
                            _idMaps.Write(reply.pid, _logger);
                        PlaceInCgroup(cgroup, reply.pid, reply.used_clone3 != 0);
                        SetRlimits(reply.pid, nproc);
                        rc = IsolationNative_Continue(statusFd);
                        if (rc < 0)
                            throw HelperFailed(helper, rc, $"release pid {reply.pid}");
                        continue;
                    case ISO_REPLY_STARTED:
                        return Started(reply, received[0], received[1], ref statusFd, ref stdio, helper, hostStep, program, cgroup, LimitsOf(cgroup, cgroupError, nproc));
                    case ISO_REPLY_FAILED:
                        throw SpawnFailed(reply, program);
                    default:
                        throw new SandboxSetupException(SetupStep.SpawnHelper, "read the spawn helper's answer", EBADMSG);
                }
            }
        }
        catch (Exception e)
        {
            // Closing the status socket tells the helper to kill and reap a child still waiting for us; a
            // failed child was reaped before the helper answered. Either way the cgroup empties.
            CloseAndClear(ref statusFd);
            CloseAndClear(ref helperEnd);
            IdmappedTrees.Close(trees);
            cgroup.Remove(); // waits for the cgroup to empty, then removes it
            stdio.Dispose();
            if (e is SandboxSetupException setup)
                Log.SetupFailed(_logger, 0, e.Message, setup.Step, setup.Errno);
            throw;
        }
        finally
        {
            NativeMemory.Free(strings);
            GC.KeepAlive(_handle);
        }
    }

    /// <summary>
    /// The child was released (sync 1) and its pidfd and error pipe came with the reply: the child's own pipe
    /// says how setup ends (sync 2: EOF at execve, or a failure record), with no hand-off through the helper.
    /// </summary>
    private IsolatedProcess Started(in iso_reply reply, int pidfd, int errorFd, ref int statusFd, ref StdioSet stdio,
        SpawnHelper helper, bool hostStep, string program, ICgroup cgroup, SandboxLimits limits)
    {
        if (pidfd < 0 || errorFd < 0)
        {
            if (pidfd >= 0)
                close(pidfd);
            if (errorFd >= 0)
                close(errorFd);
            throw new SandboxSetupException(SetupStep.SpawnHelper, $"receive the pidfd of pid {reply.pid}", EMFILE, null,
                "this process is out of file descriptors (ulimit -n); the sandbox is killed when the start is abandoned");
        }
        var handle = new SandboxHandle(pidfd, statusFd); // from here on the handle owns both
        statusFd = -1;
        iso_child_error error;
        int rc = IsolationNative_WaitExec(errorFd, &error);
        if (rc != 0)
        {
            // The child failed and exits: wait for the helper to have reaped it (its exit record), so that a
            // failed start returns with nothing of it left, not even a zombie.
            iso_reply exited;
            int* ignored = stackalloc int[2];
            IsolationNative_ReadReply(handle.StatusFd, 0, &exited, ignored);
            handle.Dispose();
            throw rc == 1 ? ChildFailed(error, program) : new SandboxSetupException(SetupStep.Exec, $"wait for pid {reply.pid} to exec", -rc);
        }
        if (_logger.IsEnabled(LogLevel.Debug))
        {
            if (!hostStep)
            {
                // The helper went from clone to release on its own: log its steps as the host's would be.
                Log.Cloned(_logger, reply.pid, reply.used_clone3 != 0);
                _idMaps?.LogHelperWrites(reply.pid, _logger);
            }
            Log.Released(_logger, reply.pid);
        }
        Log.Execed(_logger, reply.pid, program);
        return new IsolatedProcess(reply.pid, handle, helper, stdio.TakeStreams(), _state.Timeout, _processLogger, cgroup, limits)
        {
            LeadsProcessGroup = !_state.Namespaces.HasFlag(Namespaces.Pid),
        };
    }

    /// <summary>This spec's id in <paramref name="helper"/>: packed and sent once per helper (DESIGN.md §2, "per spawn").</summary>
    private uint DefinedIn(SpawnHelper helper)
    {
        foreach (SpawnHelper.Definition d in Volatile.Read(ref _definitions))
        {
            if (d.Helper == helper)
                return d.SpecId;
        }
        lock (_defineLock)
        {
            foreach (SpawnHelper.Definition d in _definitions)
            {
                if (d.Helper == helper)
                    return d.SpecId;
            }
            uint id = SpawnHelper.NewSpecId();
            int rc = _idMaps is null
                ? IsolationNative_DefineSpec(helper.Channel, id, _template, null, null, null)
                : IsolationNative_DefineSpec(helper.Channel, id, _template, _idMaps.HelperSetgroups, _idMaps.HelperUidMap, _idMaps.HelperGidMap);
            if (rc < 0)
                throw HelperFailed(helper, rc, "hand the spec to the spawn helper");
            // Definitions in helpers that have gone are dropped as new ones come.
            Volatile.Write(ref _definitions, [.. _definitions.Where(d => !d.Helper.IsGone), new SpawnHelper.Definition(helper, id)]);
            return id;
        }
    }

    private static SandboxSetupException HelperFailed(SpawnHelper helper, int rc, string what)
    {
        if (SpawnHelper.MeansGone(-rc))
        {
            helper.MarkGone();
            return new SandboxSetupException(SetupStep.SpawnHelper, what, -rc, null,
                $"the spawn helper (isolation-helper, pid {helper.ProcessId}) exited; the next start uses a new one");
        }
        return new SandboxSetupException(SetupStep.SpawnHelper, what, -rc);
    }

    /// <summary>A descriptor of the caller's that a start sends (FileFromDescriptor, PassFileDescriptors): it must still be open.</summary>
    private static int UserFd(int fd, string what, SetupStep step)
    {
        if (fcntl(fd, F_GETFD) < 0)
            throw new SandboxSetupException(step, what, EBADF, null, $"descriptor {fd} was closed after Build(); keep it open while sandboxes start");
        return fd;
    }

    private static void AddFd(iso_spawn_msg* message, int* fds, int role, int arg, int fd)
    {
        if (message->nfds >= ISO_MAX_SPAWN_FDS)
            throw new SandboxSetupException(SetupStep.SpawnHelper, "send the spawn's descriptors", EMFILE, null,
                $"a start can send at most {ISO_MAX_SPAWN_FDS} descriptors (stdio, FileFromDescriptor, PassFileDescriptors, idmapped binds)");
        ((iso_fd_slot*)message->slots)[message->nfds] = new iso_fd_slot { role = role, arg = arg };
        fds[message->nfds] = fd;
        message->nfds++;
    }

    private static int Put(byte* buffer, int at, string s)
    {
        int n = Encoding.UTF8.GetBytes(s, new Span<byte>(buffer + at, int.MaxValue - at));
        buffer[at + n] = 0;
        return at + n + 1;
    }

    private static void CloseAndClear(ref int fd)
    {
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
}
