namespace Isolation;

/// <summary>Why a sandboxed process ended.</summary>
public enum TerminationReason
{
    /// <summary>The program exited on its own; <see cref="ExitStatus.ExitCode"/> holds its code.</summary>
    Exited,

    /// <summary>A signal ended it; <see cref="ExitStatus.Signal"/> says which.</summary>
    Signaled,

    /// <summary>Killed by <see cref="IsolatedProcess.Kill"/> or by disposing the process.</summary>
    Killed,

    /// <summary>Killed because the timeout set with <see cref="NamespaceBuilder.WithTimeout"/> expired.</summary>
    TimedOut,

    /// <summary>Killed by the kernel's OOM killer at the sandbox's memory limit.</summary>
    OutOfMemory,

    /// <summary>Ended after hitting the sandbox's pids limit (a fork failed with EAGAIN).</summary>
    PidsLimit,
}

/// <summary>
/// How a sandboxed process ended: an exit code or a signal, and why. The program's failure is data here;
/// a failure of the sandbox's own setup is a <see cref="SandboxSetupException"/> from Start instead.
/// </summary>
public readonly struct ExitStatus : IEquatable<ExitStatus>
{
    internal ExitStatus(TerminationReason reason, int exitCode, int signal, bool coreDumped)
    {
        Reason = reason;
        ExitCode = exitCode;
        Signal = signal;
        CoreDumped = coreDumped;
    }

    /// <summary>Why the process ended.</summary>
    public TerminationReason Reason { get; }

    /// <summary>The exit code when the program exited on its own, else -1.</summary>
    public int ExitCode { get; }

    /// <summary>The signal that ended the process, or 0 when it exited on its own.</summary>
    public int Signal { get; }

    /// <summary>The kernel wrote a core dump.</summary>
    public bool CoreDumped { get; }

    /// <summary>The program exited on its own with code 0.</summary>
    public bool Success => Signal == 0 && ExitCode == 0;

    /// <summary>The status as a shell reports it: the exit code, or 128 + the signal number.</summary>
    public int ShellExitCode => Signal != 0 ? 128 + Signal : ExitCode;

    /// <inheritdoc/>
    public bool Equals(ExitStatus other) =>
        Reason == other.Reason && ExitCode == other.ExitCode && Signal == other.Signal && CoreDumped == other.CoreDumped;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is ExitStatus other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Reason, ExitCode, Signal, CoreDumped);

    /// <summary>Compares two statuses.</summary>
    public static bool operator ==(ExitStatus left, ExitStatus right) => left.Equals(right);

    /// <summary>Compares two statuses.</summary>
    public static bool operator !=(ExitStatus left, ExitStatus right) => !left.Equals(right);

    /// <inheritdoc/>
    public override string ToString() => Reason switch
    {
        TerminationReason.Exited => $"exited with code {ExitCode}",
        TerminationReason.Signaled => $"killed by signal {Signal}{(CoreDumped ? " (core dumped)" : "")}",
        TerminationReason.Killed => $"killed on request (signal {Signal})",
        TerminationReason.TimedOut => $"killed after its timeout (signal {Signal})",
        TerminationReason.OutOfMemory => $"killed by the OOM killer at the memory limit (signal {Signal})",
        TerminationReason.PidsLimit => Signal != 0 ? $"hit the pids limit, killed by signal {Signal}" : $"hit the pids limit, exited with code {ExitCode}",
        _ => Reason.ToString(),
    };
}

/// <summary>
/// CPU time and peak memory of a finished program and the children it waited for (wait4(2)'s rusage): the
/// program's own figures, never the caller's. The cgroup's memory.peak, which also counts page cache and tmpfs,
/// is a different figure: <see cref="Cgroups.CgroupStats.MemoryPeakBytes"/> (<see cref="SandboxResult.CgroupStats"/>).
/// </summary>
public readonly record struct ResourceUsage
{
    private readonly long _maxResidentSetBytes; // -1: unknown (a long, not a long?, keeps IsolatedProcess at its size)

    /// <summary>The usage of a finished program.</summary>
    /// <param name="userTime">CPU time spent in user mode.</param>
    /// <param name="systemTime">CPU time spent in the kernel.</param>
    /// <param name="maxResidentSetBytes">The program's peak resident set, or null when unknown.</param>
    public ResourceUsage(TimeSpan userTime, TimeSpan systemTime, long? maxResidentSetBytes)
    {
        UserTime = userTime;
        SystemTime = systemTime;
        _maxResidentSetBytes = maxResidentSetBytes ?? -1;
    }

    /// <summary>CPU time spent in user mode.</summary>
    public TimeSpan UserTime { get; }

    /// <summary>CPU time spent in the kernel.</summary>
    public TimeSpan SystemTime { get; }

    /// <summary>
    /// Peak resident set of the program (the largest of it and the children it waited for), or null where the kernel
    /// cannot tell: the kernel folds the memory a process leaves at execve into its peak, and a sandbox leaves the
    /// spawn helper's (a megabyte or two), so a peak at or below that says nothing of the program.
    /// </summary>
    public long? MaxResidentSetBytes => _maxResidentSetBytes < 0 ? null : _maxResidentSetBytes;
}
