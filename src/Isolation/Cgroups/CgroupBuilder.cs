using System.Collections.Immutable;

namespace Isolation.Cgroups;

/// <summary>
/// Composes the sandbox's cgroup: its limits, where it is created, and whether a host without usable
/// cgroups is an error. Used through <see cref="NamespaceBuilder.WithCgroup"/>; values are checked in
/// <see cref="NamespaceBuilder.Build"/>. Every sandbox gets a new cgroup of its own, removed on dispose.
/// </summary>
/// <example><code>.WithCgroup(c => c.MemoryMax(256 * 1024 * 1024).PidsMax(64).CpuMax(0.5))</code></example>
public sealed class CgroupBuilder
{
    internal CgroupBuilder(CgroupSettings settings) => Settings = settings;

    internal CgroupSettings Settings { get; private set; }

    /// <summary>What this host has: cgroup v2, v1, both (hybrid) or none (from /proc/self/mountinfo and statfs(2)).</summary>
    public static CgroupMode HostMode => CgroupLayout.Host.Mode;

    private CgroupBuilder Set(Func<CgroupLimits, CgroupLimits> change)
    {
        Settings = Settings with { Limits = change(Settings.Limits) };
        return this;
    }

    /// <summary>Hard memory limit in bytes; above it the kernel's OOM killer ends a process of the sandbox (<c>memory.max</c>).</summary>
    public CgroupBuilder MemoryMax(long bytes) => Set(l => l with { MemoryMax = bytes });

    /// <summary>Memory throttling threshold in bytes: above it the sandbox is slowed and reclaimed hard (<c>memory.high</c>, cgroup v2 only).</summary>
    public CgroupBuilder MemoryHigh(long bytes) => Set(l => l with { MemoryHigh = bytes });

    /// <summary>Swap limit in bytes; 0 forbids swap (<c>memory.swap.max</c>). Needs <see cref="MemoryMax"/>.</summary>
    public CgroupBuilder MemorySwapMax(long bytes) => Set(l => l with { MemorySwapMax = bytes });

    /// <summary>Maximum number of processes and threads in the sandbox, the init of <see cref="NamespaceBuilder.WithInit"/> included; a fork beyond it fails with EAGAIN (<c>pids.max</c>).</summary>
    public CgroupBuilder PidsMax(long count) => Set(l => l with { PidsMax = count });

    /// <summary>Limit CPU time to <paramref name="cpus"/> CPUs' worth (0.5 = half of one CPU, 2 = two CPUs) per <paramref name="period"/> (default 100 ms) (<c>cpu.max</c>).</summary>
    public CgroupBuilder CpuMax(double cpus, TimeSpan? period = null)
    {
        long periodUs = period is { } p ? (long)p.TotalMicroseconds : 100_000;
        // A non-finite or non-positive fraction becomes quota 0, which Build() rejects with the range.
        // A fraction too large for a quota becomes long.MaxValue, which Build() rejects with the kernel's maximum.
        long quota = double.IsFinite(cpus) && cpus > 0 ? cpus * periodUs >= long.MaxValue ? long.MaxValue : (long)Math.Round(cpus * periodUs) : 0;
        return Set(l => l with { CpuQuotaMicroseconds = quota, CpuPeriodMicroseconds = periodUs });
    }

    /// <summary>Limit CPU time to <paramref name="quotaMicroseconds"/> per <paramref name="periodMicroseconds"/> (<c>cpu.max</c> "QUOTA PERIOD").</summary>
    public CgroupBuilder CpuMax(long quotaMicroseconds, long periodMicroseconds) =>
        Set(l => l with { CpuQuotaMicroseconds = quotaMicroseconds, CpuPeriodMicroseconds = periodMicroseconds });

    /// <summary>Relative CPU weight, 1 to 10000 (default 100) (<c>cpu.weight</c>; <c>cpu.shares</c> on v1).</summary>
    public CgroupBuilder CpuWeight(int weight) => Set(l => l with { CpuWeight = weight });

    /// <summary>Pin the sandbox to these CPUs (and memory nodes), in list format such as <c>"0-1,3"</c> (<c>cpuset.cpus</c>, <c>cpuset.mems</c>).</summary>
    public CgroupBuilder Cpuset(string cpus, string? mems = null)
    {
        ArgumentNullException.ThrowIfNull(cpus);
        return Set(l => l with { CpusetCpus = cpus, CpusetMems = mems });
    }

    /// <summary>Relative IO weight, 1 to 10000 (default 100) (<c>io.weight</c>).</summary>
    public CgroupBuilder IoWeight(int weight) => Set(l => l with { IoWeight = weight });

    /// <summary>Limit IO on one block device (<c>io.max</c>); call once per device.</summary>
    public CgroupBuilder IoMax(IoDeviceLimit limit) => Set(l => l with { IoMax = l.IoMax.Add(limit) });

    /// <summary>
    /// Create the sandbox's cgroup under this cgroup path (as in <c>/proc/self/cgroup</c>, relative to the
    /// hierarchy's root, e.g. <c>/user.slice/user-1000.slice/user@1000.service/app.slice/my.scope</c>).
    /// Default: the caller's own cgroup when it is writable (a delegated subtree), else <c>/isolation</c>.
    /// </summary>
    public CgroupBuilder Parent(string cgroupPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(cgroupPath);
        Settings = Settings with { Parent = cgroupPath };
        return this;
    }

    /// <summary>
    /// When the host has no usable cgroups (none mounted, or no delegation for this user), run the
    /// sandbox without one instead of failing; <see cref="IsolatedProcess.CgroupError"/> then says why.
    /// </summary>
    public CgroupBuilder BestEffort(bool enabled = true)
    {
        Settings = Settings with { BestEffort = enabled };
        return this;
    }

    /// <summary>
    /// Where a best-effort cgroup cannot be had, bound the sandbox's tasks with <c>RLIMIT_NPROC</c> set to
    /// <see cref="PidsMax"/> instead: soft and hard, set on the program before it runs (prlimit(2) at sync 1) and
    /// inherited by everything it starts. It counts processes and threads, as pids.max does. The kernel counts it
    /// per user namespace and uid (Linux 5.14+), so it applies only to a sandbox with <see cref="Namespaces.User"/>
    /// whose program is not host uid 0 (which is exempt), and only where a probe shows this kernel counts that way
    /// (once per process); otherwise <see cref="IsolatedProcess.Limits"/> says why nothing bounds the pids.
    /// <see cref="NamespaceBuilder.ForUntrustedCode"/> turns it on. Memory has no such fallback: RLIMIT_AS breaks
    /// runtimes that reserve address space (.NET, the JVM, Go, V8).
    /// </summary>
    public CgroupBuilder FallBackToRlimit(bool enabled = true)
    {
        Settings = Settings with { RlimitFallback = enabled };
        return this;
    }

    /// <summary>Checks the limits and the parent path; throws <see cref="ArgumentException"/> saying what to do.</summary>
    internal static void Validate(CgroupSettings settings)
    {
        settings.Limits.Validate();
        if (settings.Parent is { } parent)
        {
            if (!parent.StartsWith('/'))
                throw new ArgumentException($"Cgroup parent '{parent}' is not absolute; give a cgroup path as in /proc/self/cgroup, such as /isolation.");
            if (parent.Contains('\0') || parent.Split('/').Any(s => s is "." or ".."))
                throw new ArgumentException($"Cgroup parent '{parent}' contains NUL, '.' or '..'; give a plain cgroup path such as /isolation.");
        }
    }
}

/// <summary>What <see cref="CgroupBuilder"/> composed.</summary>
internal sealed record CgroupSettings
{
    public CgroupLimits Limits { get; init; } = CgroupLimits.Empty;
    public string? Parent { get; init; }
    public bool BestEffort { get; init; }
    public bool RlimitFallback { get; init; }
}
