using Isolation.Cgroups;
using Isolation.Diagnostics;
using Isolation.Spawning;
using Microsoft.Extensions.Logging;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>
/// A running sandbox, returned by <see cref="IsolationSpec.Start"/> once the program has been exec'd.
/// Wait for it with <see cref="WaitForExitAsync"/>; disposing it kills whatever is left of the sandbox.
/// </summary>
/// <remarks>
/// The sandbox is a child of the library's spawn helper, not of your process: its exit status reaches you
/// however your process treats SIGCHLD (PID 1 in a container, SIGCHLD ignored), and it dies when your process
/// dies (an owned sandbox, DESIGN.md §3a).
/// </remarks>
public sealed partial class IsolatedProcess : IAsyncDisposable, IDisposable
{
    private readonly ILogger _logger;
    // The exit is recorded in fields; a TaskCompletionSource is made only for a caller who waits before it,
    // so a start allocates nothing but this object.
    private ExitStatus _status;
    private Exception? _failure;
    private volatile bool _exitedFlag;
    private TaskCompletionSource<ExitStatus>? _waiters;
    private readonly Timer? _timeoutTimer;
    private readonly TimeSpan? _timeout;
    private readonly SandboxHandle _handle; // pidfd + status socket; the exit watcher holds a reference until the exit record
    private readonly SpawnHelper _helper;   // its parent
    private int _reapClaimed;
    private volatile bool _killRequested;
    private volatile bool _timedOut;
    private int _disposed;

    internal IsolatedProcess(int pid, SandboxHandle handle, SpawnHelper helper, (Stream? Input, Stream? Output, Stream? Error) streams, TimeSpan? timeout, ILogger logger, ICgroup cgroup, SandboxLimits limits)
    {
        Id = pid;
        _helper = helper;
        _cgroup = cgroup;
        Limits = limits;
        _handle = handle;
        _logger = logger;
        _timeout = timeout;
        StandardInput = streams.Input;
        StandardOutput = streams.Output;
        StandardError = streams.Error;
        ExitWatcher.Register(this, handle);
        if (timeout is { } t)
            _timeoutTimer = new Timer(static state => ((IsolatedProcess)state!).OnTimeout(), this, t, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The pidfd and status socket (the exit watcher releases its reference on it).</summary>
    internal SandboxHandle Handle => _handle;

    /// <summary>The program's process id, as seen from the caller's PID namespace.</summary>
    public int Id { get; }

    /// <summary>A pipe to the program's standard input when configured with <see cref="Stdio.Pipe"/>, else null.</summary>
    public Stream? StandardInput { get; }

    /// <summary>A pipe from the program's standard output when configured with <see cref="Stdio.Pipe"/>, else null.</summary>
    public Stream? StandardOutput { get; }

    /// <summary>A pipe from the program's standard error when configured with <see cref="Stdio.Pipe"/>, else null.</summary>
    public Stream? StandardError { get; }

    /// <summary>Whether the process has exited and been reaped.</summary>
    public bool HasExited => _exitedFlag;

    /// <summary>CPU time and peak memory once the process has exited; null before.</summary>
    public ResourceUsage? ResourceUsage { get; private set; }

    /// <summary>
    /// Waits for the process to exit. As with <see cref="System.Diagnostics.Process.WaitForExitAsync"/>, cancelling
    /// stops the wait, not the process: the task is cancelled and the sandbox runs on (kill it with
    /// <see cref="Kill"/> or by disposing).
    /// </summary>
    public Task<ExitStatus> WaitForExitAsync(CancellationToken cancellationToken = default)
    {
        if (_exitedFlag)
            return _failure is null ? Task.FromResult(_status) : Task.FromException<ExitStatus>(_failure);
        Task<ExitStatus> task = Waiters().Task;
        return cancellationToken.CanBeCanceled ? task.WaitAsync(cancellationToken) : task;
    }

    /// <summary>Waits for the process to exit, blocking the calling thread.</summary>
    public ExitStatus WaitForExit()
    {
        // A blocked caller waits on the status socket itself and reads the exit record, instead of waiting
        // for the watcher thread to read it and wake it: one thread hand-off fewer per spawn.
        if (!_exitedFlag && WaitForRecord(-1))
            TryReap();
        if (!_exitedFlag)
            return Waiters().Task.GetAwaiter().GetResult(); // the watcher claimed the record; it completes soon
        return _failure is null ? _status : throw _failure;
    }

    /// <summary>Waits up to <paramref name="timeout"/>; returns false if the process is still running.</summary>
    public bool WaitForExit(TimeSpan timeout)
    {
        if (_exitedFlag)
            return true;
        int ms = timeout == Timeout.InfiniteTimeSpan ? -1 : (int)Math.Clamp(timeout.TotalMilliseconds, 0, int.MaxValue);
        if (WaitForRecord(ms))
            TryReap();
        else
            return false;
        if (_exitedFlag)
            return true;
        try
        {
            return Waiters().Task.Wait(timeout);
        }
        catch (AggregateException e) when (e.InnerException is not null)
        {
            throw e.InnerException;
        }
    }

    /// <summary>Whether the exit record (or the helper's EOF) is there to read within <paramref name="ms"/>.</summary>
    private bool WaitForRecord(int ms)
    {
        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            return IsolationNative_WaitReadable(_handle.StatusFd, ms) == 1;
        }
        catch (ObjectDisposedException)
        {
            return true; // disposed: the record was read, or will be reported to waiters
        }
        finally
        {
            if (added)
                _handle.DangerousRelease();
        }
    }

    private TaskCompletionSource<ExitStatus> Waiters()
    {
        TaskCompletionSource<ExitStatus>? waiters = Volatile.Read(ref _waiters);
        if (waiters is null)
        {
            // Continuations run on the exit watcher thread that the exit woke (ExitWatcher: it has already handed
            // the wait for other exits to another thread), saving a hand-off to the thread pool.
            var created = new TaskCompletionSource<ExitStatus>();
            waiters = Interlocked.CompareExchange(ref _waiters, created, null) ?? created;
        }
        if (_exitedFlag)
            CompleteWaiters(waiters); // the exit came between the check and the creation
        return waiters;
    }

    private void CompleteWaiters(TaskCompletionSource<ExitStatus> waiters)
    {
        if (_failure is null)
            waiters.TrySetResult(_status);
        else
            waiters.TrySetException(_failure);
    }

    /// <summary>Exit watcher thread: records the outcome, then wakes whoever waits.</summary>
    private void SetExited(ExitStatus status, Exception? failure)
    {
        _status = status;
        _failure = failure;
        _exitedFlag = true; // volatile write: publishes the fields above
        // A full fence between the store above and the load below (Dekker with Waiters(), whose
        // CompareExchange is one): otherwise both sides can miss each other and a waiter sleeps for ever.
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _waiters) is { } waiters)
            CompleteWaiters(waiters);
    }

    /// <summary>Sends <paramref name="signal"/> to the program (pidfd_send_signal(2): never a recycled pid).</summary>
    /// <returns>False when the process has already exited.</returns>
    public bool Signal(int signal)
    {
        if (signal is < 1 or > 64)
            throw new ArgumentOutOfRangeException(nameof(signal), signal, "A signal number is 1 to 64.");
        if (HasExited)
            return false;
        bool added = false;
        int rc;
        try
        {
            _handle.DangerousAddRef(ref added); // the pidfd cannot be closed (and its number reused) while we use it
            Log.Signaling(_logger, Id, signal);
            rc = IsolationNative_PidfdSendSignal(_handle.Pidfd, signal);
        }
        catch (ObjectDisposedException)
        {
            return false; // disposed: nothing of the sandbox is left to signal
        }
        finally
        {
            if (added)
                _handle.DangerousRelease();
        }
        if (rc == -ESRCH)
            return false;
        if (rc < 0)
            throw new InvalidOperationException($"pidfd_send_signal({signal}) to pid {Id} failed: {Interop.Errnos.Describe(-rc)}");
        return true;
    }

    /// <summary>
    /// Kills the sandbox with SIGKILL. With a cgroup (<see cref="NamespaceBuilder.WithCgroup"/>) every process
    /// in it is killed (cgroup.kill); with a PID namespace too (the program is its PID 1); without either, the
    /// program's process group (what it started, unless that left the group with setsid/setpgid; not when its stdio
    /// is a terminal, where it stays in the caller's group). The exit status then says <see cref="TerminationReason.Killed"/>.
    /// </summary>
    public bool Kill()
    {
        _killRequested = true;
        KillCgroup(); // the whole tree, not only the program (IsolatedProcess.Cgroups.cs)
        bool grouped = KillProcessGroup(); // the program is in its group: it may be dying by the time Signal runs
        return Signal(SIGKILL) || grouped;
    }

    /// <summary>
    /// Without a PID namespace the sandbox leads a process group of its own (its session with
    /// <see cref="NamespaceBuilder.WithNewSession"/>), unless its stdio is a terminal.
    /// </summary>
    internal bool LeadsProcessGroup { get; init; }

    /// <summary>
    /// Without a PID namespace, SIGKILL to the sandbox's process group: what it started and left behind, even after
    /// the program itself exited (Linux 6.9+; before, only while the program has not been reaped). A process that
    /// left the group (setsid, setpgid) can be reached only through a PID namespace or a cgroup.
    /// </summary>
    /// <returns>Whether the group got the signal.</returns>
    private bool KillProcessGroup()
    {
        if (!LeadsProcessGroup)
            return false;
        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            return IsolationNative_SignalProcessGroup(_handle.Pidfd, Id, SIGKILL, HasExited ? 0 : 1) == 0;
        }
        catch (ObjectDisposedException)
        {
            return false; // released: nothing left to name the group with
        }
        finally
        {
            if (added)
                _handle.DangerousRelease();
        }
    }

    private void OnTimeout()
    {
        if (HasExited)
            return;
        _timedOut = true;
        Log.TimedOut(_logger, Id, _timeout!.Value);
        KillCgroup();
        KillProcessGroup();
        Signal(SIGKILL);
    }

    /// <summary>
    /// Exit watcher thread: the status socket became readable (once): read the record unless a waiter did. Lets go of
    /// the watcher's reference on the handle (<see cref="ExitWatcher.Register"/>) before the waits complete, so that a
    /// continuation that disposes the process (<c>await using</c>) closes its descriptors at once, not only after it
    /// has returned to the watcher.
    /// </summary>
    internal void OnWatcherEvent()
    {
        bool watcherHolds = true;
        try
        {
            TryReap(ref watcherHolds);
        }
        finally
        {
            if (watcherHolds)
                _handle.DangerousRelease();
        }
    }

    private void TryReap()
    {
        bool none = false;
        TryReap(ref none);
    }

    /// <summary>
    /// The exit record has arrived (the helper reaped the program): read it and complete, once, on whichever
    /// thread gets here first. EOF instead means the helper died, and the status with it. When
    /// <paramref name="watcherHolds"/>, the exit watcher's reference on the handle is released once the record is read.
    /// </summary>
    private unsafe void TryReap(ref bool watcherHolds)
    {
        if (Interlocked.Exchange(ref _reapClaimed, 1) != 0)
            return;
        iso_reply reply;
        int* fds = stackalloc int[2];
        int rc;
        bool added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            rc = IsolationNative_ReadReply(_handle.StatusFd, 0, &reply, fds);
        }
        finally
        {
            if (added)
                _handle.DangerousRelease();
        }
        if (watcherHolds)
        {
            watcherHolds = false;
            _handle.DangerousRelease();
        }
        if (rc == 0)
        {
            _helper.MarkGone();
            IsolationTelemetry.Exited(null);
            SetExited(default, new InvalidOperationException(
                $"The spawn helper exited before pid {Id} did, so its exit status is lost; the sandbox was killed with it (its parent-death signal). " +
                "This happens when something kills the helper (isolation-helper); a new one serves later starts."));
            return;
        }
        if (rc < 0 || reply.kind != ISO_REPLY_EXITED)
        {
            int errno = rc < 0 ? -rc : reply.error.err;
            IsolationTelemetry.Exited(null);
            SetExited(default, new InvalidOperationException($"waiting for pid {Id} failed: {Interop.Errnos.Describe(errno)}"));
            return;
        }
        _timeoutTimer?.Dispose();
        // At or below the helper's own peak the figure is the helper's memory inherited at exec, not the program's.
        ResourceUsage = new ResourceUsage(TimeSpan.FromMicroseconds(reply.user_us), TimeSpan.FromMicroseconds(reply.sys_us),
            reply.maxrss_kb > reply.rss_floor_kb ? reply.maxrss_kb * 1024 : null);
        const int CLD_EXITED = 1, CLD_DUMPED = 3;
        int code = reply.code, status = reply.status;
        // The cgroup's counters say whether the OOM killer or the pids limit ended it (IsolatedProcess.Cgroups.cs).
        CgroupStats? final = SnapshotCgroupOnExit();
        ExitStatus exit;
        if (code == CLD_EXITED)
            exit = new ExitStatus(CgroupReason(final, status, 0) ?? TerminationReason.Exited, status, 0, false);
        else
        {
            TerminationReason reason = _timedOut && status == SIGKILL ? TerminationReason.TimedOut
                : _killRequested && status == SIGKILL ? TerminationReason.Killed
                : CgroupReason(final, -1, status) ?? TerminationReason.Signaled;
            exit = new ExitStatus(reason, -1, status, code == CLD_DUMPED);
        }
        Log.Exited(_logger, Id, exit);
        if (exit.Reason is TerminationReason.OutOfMemory or TerminationReason.PidsLimit)
            Log.LimitHit(_logger, Id, exit.Reason, exit);
        IsolationTelemetry.Exited(exit.Reason);
        RemoveCgroupIfEmpty();
        SetExited(exit, null);
    }

    /// <summary>Kills what is left of the sandbox, waits for it, and releases its descriptors.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        if (!HasExited)
            Kill();
        else
            KillProcessGroup(); // the program is gone; what it left in its group is not
        if (!_exitedFlag)
            await ((Task)Waiters().Task).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        Release();
    }

    /// <summary>Kills what is left of the sandbox, waits for it, and releases its descriptors.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        if (!HasExited)
            Kill();
        else
            KillProcessGroup(); // the program is gone; what it left in its group is not
        if (!_exitedFlag)
        {
            try
            {
                Waiters().Task.Wait();
            }
            catch (AggregateException)
            {
                // A failed reap is reported to waiters; disposing releases everything regardless.
            }
        }
        Release();
    }

    private void Release()
    {
        _timeoutTimer?.Dispose();
        _handle.Dispose(); // closed now, or when the exit watcher lets go of it
        RemoveCgroup(); // kills what is left of the tree, then rmdir
        StandardInput?.Dispose();
        StandardOutput?.Dispose();
        StandardError?.Dispose();
    }
}
