using Isolation.Cgroups;
using Isolation.Diagnostics;
using Microsoft.Extensions.Logging;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>
/// A running sandbox, returned by <see cref="IsolationSpec.Start"/> once the program has been exec'd.
/// Wait for it with <see cref="WaitForExitAsync"/>; disposing it kills whatever is left of the sandbox.
/// </summary>
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
    private int _pidfd;               // -1 once released: no more signals
    private readonly int _pidfdToClose;
    private int _pidfdOwners = 2;     // the exit watcher and Release; the last one closes the pidfd
    private int _reapClaimed;
    private volatile bool _killRequested;
    private volatile bool _timedOut;
    private int _disposed;

    internal IsolatedProcess(int pid, int pidfd, (Stream? Input, Stream? Output, Stream? Error) streams, TimeSpan? timeout, ILogger logger, ICgroup cgroup, string? cgroupError)
    {
        Id = pid;
        _cgroup = cgroup;
        CgroupError = cgroupError;
        _pidfd = pidfd;
        _pidfdToClose = pidfd;
        _logger = logger;
        _timeout = timeout;
        StandardInput = streams.Input;
        StandardOutput = streams.Output;
        StandardError = streams.Error;
        ExitWatcher.Register(this, pidfd);
        if (timeout is { } t)
            _timeoutTimer = new Timer(static state => ((IsolatedProcess)state!).OnTimeout(), this, t, Timeout.InfiniteTimeSpan);
    }

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

    /// <summary>Waits for the process to exit. Cancelling stops the wait, not the process.</summary>
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
        // A blocked caller waits on the pidfd itself and reaps, instead of waiting for the watcher thread
        // to reap and wake it: one thread hand-off fewer per spawn.
        if (!_exitedFlag && IsolationNative_WaitPidfd(_pidfdToClose, -1) == 1)
            TryReap();
        if (!_exitedFlag)
            return Waiters().Task.GetAwaiter().GetResult(); // the watcher claimed the reap; it completes soon
        return _failure is null ? _status : throw _failure;
    }

    /// <summary>Waits up to <paramref name="timeout"/>; returns false if the process is still running.</summary>
    public bool WaitForExit(TimeSpan timeout)
    {
        if (_exitedFlag)
            return true;
        int ms = timeout == Timeout.InfiniteTimeSpan ? -1 : (int)Math.Clamp(timeout.TotalMilliseconds, 0, int.MaxValue);
        if (IsolationNative_WaitPidfd(_pidfdToClose, ms) == 1)
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

    private TaskCompletionSource<ExitStatus> Waiters()
    {
        TaskCompletionSource<ExitStatus>? waiters = Volatile.Read(ref _waiters);
        if (waiters is null)
        {
            var created = new TaskCompletionSource<ExitStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
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
        int pidfd = Volatile.Read(ref _pidfd);
        if (pidfd < 0 || HasExited)
            return false;
        Log.Signaling(_logger, Id, signal);
        int rc = IsolationNative_PidfdSendSignal(pidfd, signal);
        if (rc == -ESRCH)
            return false;
        if (rc < 0)
            throw new InvalidOperationException($"pidfd_send_signal({signal}) to pid {Id} failed: {Interop.Errnos.Describe(-rc)}");
        return true;
    }

    /// <summary>
    /// Kills the sandbox with SIGKILL. With a cgroup (<see cref="NamespaceBuilder.WithCgroup"/>) every process
    /// in it is killed (cgroup.kill); with a PID namespace too (the program is its PID 1). The exit status then says <see cref="TerminationReason.Killed"/>.
    /// </summary>
    public bool Kill()
    {
        _killRequested = true;
        KillCgroup(); // the whole tree, not only the program (IsolatedProcess.Cgroups.cs)
        return Signal(SIGKILL);
    }

    private void OnTimeout()
    {
        if (HasExited)
            return;
        _timedOut = true;
        Log.TimedOut(_logger, Id, _timeout!.Value);
        KillCgroup();
        Signal(SIGKILL);
    }

    /// <summary>Exit watcher thread: the pidfd became readable (once). Reap unless a waiter did, then let go of the pidfd.</summary>
    internal void OnWatcherEvent()
    {
        TryReap();
        ReleasePidfdOwnership();
    }

    private void ReleasePidfdOwnership()
    {
        if (Interlocked.Decrement(ref _pidfdOwners) == 0)
            close(_pidfdToClose);
    }

    /// <summary>The process has exited: reap it and complete, once, on whichever thread gets here first.</summary>
    private unsafe void TryReap()
    {
        if (Interlocked.Exchange(ref _reapClaimed, 1) != 0)
            return;
        int code, status;
        long user, system, rss;
        int rc = IsolationNative_ReapPidfd(_pidfdToClose, 0, &code, &status, &user, &system, &rss);
        if (rc != 0)
        {
            SetExited(default, new InvalidOperationException($"waitid on pid {Id} failed: {Interop.Errnos.Describe(-rc)}"));
            return;
        }
        _timeoutTimer?.Dispose();
        ResourceUsage = new ResourceUsage(TimeSpan.FromMicroseconds(user), TimeSpan.FromMicroseconds(system), rss * 1024);
        const int CLD_EXITED = 1, CLD_DUMPED = 3;
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
        if (Interlocked.Exchange(ref _pidfd, -1) >= 0)
            ReleasePidfdOwnership(); // closed here or by the watcher, whichever lets go last
        RemoveCgroup(); // kills what is left of the tree, then rmdir
        StandardInput?.Dispose();
        StandardOutput?.Dispose();
        StandardError?.Dispose();
    }
}
