using System.Text;
using Isolation.Cgroups;

namespace Isolation;

/// <summary>
/// The outcome of <see cref="IsolationSpec.RunAsync(string, IReadOnlyList{string}, string?, CancellationToken)"/>: how
/// the program ended and what it wrote. A non-zero exit, a signal, the timeout, an OOM kill or the pids limit are
/// all data here (<see cref="Status"/>); only a failed setup throws.
/// </summary>
public sealed class SandboxResult
{
    private readonly Encoding _encoding;
    private string? _stdout, _stderr;

    internal SandboxResult(ExitStatus status, ReadOnlyMemory<byte> stdout, ReadOnlyMemory<byte> stderr, bool truncated,
        ResourceUsage usage, CgroupStats? cgroup, SandboxLimits limits, TimeSpan runTime, Encoding encoding)
    {
        Status = status;
        StandardOutputBytes = stdout;
        StandardErrorBytes = stderr;
        OutputTruncated = truncated;
        ResourceUsage = usage;
        CgroupStats = cgroup;
        Limits = limits;
        RunTime = runTime;
        _encoding = encoding;
    }

    /// <summary>How the program ended: exit code or signal, and why (<see cref="ExitStatus.Reason"/>: timeout, OOM, pids limit...).</summary>
    public ExitStatus Status { get; }

    /// <summary>The program's standard output, decoded (empty when it went to <see cref="RunOptions.StandardOutputStream"/>).</summary>
    public string StandardOutput => _stdout ??= _encoding.GetString(StandardOutputBytes.Span);

    /// <summary>The program's standard error, decoded (empty when it went to <see cref="RunOptions.StandardErrorStream"/>).</summary>
    public string StandardError => _stderr ??= _encoding.GetString(StandardErrorBytes.Span);

    /// <summary>The program's standard output as bytes.</summary>
    public ReadOnlyMemory<byte> StandardOutputBytes { get; }

    /// <summary>The program's standard error as bytes.</summary>
    public ReadOnlyMemory<byte> StandardErrorBytes { get; }

    /// <summary>Whether either stream went past <see cref="RunOptions.MaxOutputBytes"/> and its rest was discarded.</summary>
    public bool OutputTruncated { get; }

    /// <summary>The program's own CPU time and peak resident set (and those of the children it waited for).</summary>
    public ResourceUsage ResourceUsage { get; }

    /// <summary>The sandbox cgroup's counters at the exit (memory.peak, CPU, pids, OOM kills); null without a cgroup.</summary>
    public CgroupStats? CgroupStats { get; }

    /// <summary>Why the run has no cgroup although one was asked for best effort (<see cref="IsolatedProcess.CgroupError"/>); else null.</summary>
    public string? CgroupError => Limits.CgroupError;

    /// <summary>Which limits held for the run and by which mechanism (<see cref="IsolatedProcess.Limits"/>).</summary>
    public SandboxLimits Limits { get; }

    /// <summary>Wall-clock time from the start to the exit.</summary>
    public TimeSpan RunTime { get; }

    /// <inheritdoc/>
    public override string ToString() => $"{Status}; {StandardOutputBytes.Length} bytes of output, {StandardErrorBytes.Length} of error{(OutputTruncated ? " (truncated)" : "")}";
}
