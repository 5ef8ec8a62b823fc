using Microsoft.Extensions.Logging;

namespace Isolation.Diagnostics;

/// <summary>
/// Every setup step, logged at Debug through source-generated <see cref="LoggerMessageAttribute"/> methods; the
/// outcomes a user acts on (setup failed, timeout, OOM kill, pids limit, no cgroup) at Warning. Event ids are stable.
/// Categories: <c>Isolation.IsolationSpec</c> (starts) and <c>Isolation.IsolatedProcess</c> (signals, exits), with
/// <see cref="NamespaceBuilder.WithLogger(ILoggerFactory)"/>.
/// </summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "clone3 {Program}: namespaces {Namespaces}")]
    public static partial void Cloning(ILogger logger, string program, Namespaces namespaces);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "cloned pid {Pid} (clone3: {UsedClone3})")]
    public static partial void Cloned(ILogger logger, int pid, bool usedClone3);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "pid {Pid}: wrote {File} = {Text}")]
    public static partial void WroteProcFile(ILogger logger, int pid, string file, string text);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "pid {Pid}: ran {Tool} for a multi-range map")]
    public static partial void RanMapTool(ILogger logger, int pid, string tool);

    [LoggerMessage(EventId = 5, Level = LogLevel.Debug, Message = "pid {Pid}: released (sync 1)")]
    public static partial void Released(ILogger logger, int pid);

    [LoggerMessage(EventId = 6, Level = LogLevel.Debug, Message = "pid {Pid}: exec'd {Program}")]
    public static partial void Execed(ILogger logger, int pid, string program);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning, Message = "pid {Pid}: setup failed: {Message} (step {Step}, errno {Errno})")]
    public static partial void SetupFailed(ILogger logger, int pid, string message, SetupStep step, int errno);

    [LoggerMessage(EventId = 8, Level = LogLevel.Debug, Message = "pid {Pid}: {Status}")]
    public static partial void Exited(ILogger logger, int pid, ExitStatus status);

    [LoggerMessage(EventId = 9, Level = LogLevel.Debug, Message = "pid {Pid}: sending signal {Signal}")]
    public static partial void Signaling(ILogger logger, int pid, int signal);

    [LoggerMessage(EventId = 10, Level = LogLevel.Warning, Message = "pid {Pid}: timeout of {Timeout} expired, killing")]
    public static partial void TimedOut(ILogger logger, int pid, TimeSpan timeout);

    [LoggerMessage(EventId = 11, Level = LogLevel.Debug, Message = "created cgroup {Directories}")]
    public static partial void CgroupCreated(ILogger logger, string directories);

    [LoggerMessage(EventId = 12, Level = LogLevel.Warning, Message = "running without a cgroup (best effort): {Reason}")]
    public static partial void CgroupSkipped(ILogger logger, string reason);

    [LoggerMessage(EventId = 14, Level = LogLevel.Warning, Message = "pid {Pid}: {Reason}: {Status}")]
    public static partial void LimitHit(ILogger logger, int pid, TerminationReason reason, ExitStatus status);

    [LoggerMessage(EventId = 15, Level = LogLevel.Debug, Message = "pid {Pid}: RLIMIT_NPROC {Limit} in place of pids.max (no cgroup)")]
    public static partial void NprocFallback(ILogger logger, int pid, ulong limit);

    [LoggerMessage(EventId = 13, Level = LogLevel.Debug, Message = "pid {Pid}: placed in its cgroup (clone3 placed it: {ClonedInto})")]
    public static partial void CgroupPlaced(ILogger logger, int pid, bool clonedInto);

    [LoggerMessage(EventId = 40, Level = LogLevel.Warning, Message = "the sandbox runs as your kernel uid {Uid} and sees your TMPDIR {TmpDir}: it can connect to the .NET diagnostics socket of your process ({TmpDir}/dotnet-diagnostic-{Pid}-*) and have your process load a library or dump its memory. Map it to another uid, keep {TmpDir} out of its view, or start your process with DOTNET_EnableDiagnostics=0")]
    public static partial void DiagnosticsSocketExposed(ILogger logger, uint uid, string tmpDir, int pid);
}
