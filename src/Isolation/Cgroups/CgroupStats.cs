namespace Isolation.Cgroups;

/// <summary>
/// A snapshot of a sandbox's cgroup counters, read from the kernel (<see cref="IsolatedProcess.GetCgroupStats"/>).
/// A counter the host cannot report (controller not available) is null.
/// </summary>
public sealed record CgroupStats
{
    /// <summary>Memory in use now, in bytes (v2 <c>memory.current</c>, v1 <c>memory.usage_in_bytes</c>).</summary>
    public long? MemoryCurrentBytes { get; init; }

    /// <summary>The most memory ever in use, in bytes (v2 <c>memory.peak</c>, v1 <c>memory.max_usage_in_bytes</c>).</summary>
    public long? MemoryPeakBytes { get; init; }

    /// <summary>Processes killed by the OOM killer in this cgroup (v2 <c>memory.events</c> <c>oom_kill</c>, v1 <c>memory.oom_control</c> <c>oom_kill</c>).</summary>
    public long? OomKills { get; init; }

    /// <summary>CPU time in user mode, all tasks (<c>cpu.stat</c> <c>user_usec</c>, v1 <c>cpuacct.usage_user</c>).</summary>
    public TimeSpan? CpuUser { get; init; }

    /// <summary>CPU time in the kernel, all tasks (<c>cpu.stat</c> <c>system_usec</c>, v1 <c>cpuacct.usage_sys</c>).</summary>
    public TimeSpan? CpuSystem { get; init; }

    /// <summary>Total CPU time, all tasks (<c>cpu.stat</c> <c>usage_usec</c>, v1 <c>cpuacct.usage</c>).</summary>
    public TimeSpan? CpuTotal { get; init; }

    /// <summary>Enforcement periods elapsed under a CPU quota (<c>cpu.stat</c> <c>nr_periods</c>).</summary>
    public long? CpuPeriods { get; init; }

    /// <summary>Periods in which the quota ran out (<c>cpu.stat</c> <c>nr_throttled</c>).</summary>
    public long? CpuThrottledPeriods { get; init; }

    /// <summary>Time spent throttled (<c>cpu.stat</c> <c>throttled_usec</c>, v1 <c>throttled_time</c>).</summary>
    public TimeSpan? CpuThrottled { get; init; }

    /// <summary>Tasks in the cgroup now (<c>pids.current</c>).</summary>
    public long? PidsCurrent { get; init; }

    /// <summary>Times a fork failed at the pids limit (<c>pids.events</c> <c>max</c>).</summary>
    public long? PidsLimitHits { get; init; }

    /// <summary>Bytes read from block devices (v2 <c>io.stat</c> <c>rbytes</c>, v1 <c>blkio.throttle.io_service_bytes</c> Read).</summary>
    public long? IoReadBytes { get; init; }

    /// <summary>Bytes written to block devices (v2 <c>io.stat</c> <c>wbytes</c>, v1 <c>blkio.throttle.io_service_bytes</c> Write).</summary>
    public long? IoWriteBytes { get; init; }
}
