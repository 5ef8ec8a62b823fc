using System.Collections.Immutable;

namespace Isolation.Cgroups;

/// <summary>
/// The limits of one sandbox's cgroup, as composed with <see cref="CgroupBuilder"/>. A null field is not set
/// (the kernel's default: unlimited). Values mirror the cgroup v2 interface files
/// (Documentation/admin-guide/cgroup-v2.rst); on cgroup v1 they are translated to the v1 equivalents.
/// </summary>
public sealed record CgroupLimits
{
    /// <summary>Hard memory limit in bytes (v2 <c>memory.max</c>, v1 <c>memory.limit_in_bytes</c>). Above it the OOM killer runs in the sandbox.</summary>
    public long? MemoryMax { get; init; }

    /// <summary>Memory throttling threshold in bytes (v2 <c>memory.high</c>; v1 has no equivalent).</summary>
    public long? MemoryHigh { get; init; }

    /// <summary>Swap limit in bytes (v2 <c>memory.swap.max</c>; v1 <c>memory.memsw.limit_in_bytes</c> = memory + swap).</summary>
    public long? MemorySwapMax { get; init; }

    /// <summary>Maximum number of tasks (processes and threads) (<c>pids.max</c>).</summary>
    public long? PidsMax { get; init; }

    /// <summary>CPU bandwidth quota per period in microseconds (v2 <c>cpu.max</c>, v1 <c>cpu.cfs_quota_us</c>).</summary>
    public long? CpuQuotaMicroseconds { get; init; }

    /// <summary>CPU bandwidth period in microseconds (default 100000) (v2 <c>cpu.max</c>, v1 <c>cpu.cfs_period_us</c>).</summary>
    public long CpuPeriodMicroseconds { get; init; } = 100_000;

    /// <summary>Relative CPU weight, 1 to 10000, default 100 (v2 <c>cpu.weight</c>, v1 <c>cpu.shares</c> converted).</summary>
    public int? CpuWeight { get; init; }

    /// <summary>CPUs the sandbox may run on, in the kernel's list format such as <c>0-2,4</c> (<c>cpuset.cpus</c>).</summary>
    public string? CpusetCpus { get; init; }

    /// <summary>Memory nodes the sandbox may allocate from, such as <c>0</c> (<c>cpuset.mems</c>).</summary>
    public string? CpusetMems { get; init; }

    /// <summary>Relative IO weight, 1 to 10000, default 100 (v2 <c>io.weight</c>, v1 <c>blkio.weight</c> 10–1000).</summary>
    public int? IoWeight { get; init; }

    /// <summary>Per-device IO limits (v2 <c>io.max</c>, v1 <c>blkio.throttle.*_device</c>).</summary>
    public ImmutableArray<IoDeviceLimit> IoMax { get; init; } = [];

    /// <summary>No limits.</summary>
    public static CgroupLimits Empty { get; } = new();

    /// <summary>The cgroup v2 controllers these limits need.</summary>
    internal IEnumerable<string> Controllers()
    {
        if (MemoryMax is not null || MemoryHigh is not null || MemorySwapMax is not null)
            yield return "memory";
        if (PidsMax is not null)
            yield return "pids";
        if (CpuQuotaMicroseconds is not null || CpuWeight is not null)
            yield return "cpu";
        if (CpusetCpus is not null || CpusetMems is not null)
            yield return "cpuset";
        if (IoWeight is not null || IoMax.Length > 0)
            yield return "io";
    }

    /// <summary>The limits that are set, as the v2 files name them (e.g. "memory.max 67108864, pids.max 32"), for messages.</summary>
    internal string Describe()
    {
        var set = new List<string>();
        if (MemoryMax is { } memoryMax) set.Add($"memory.max {memoryMax}");
        if (MemoryHigh is { } memoryHigh) set.Add($"memory.high {memoryHigh}");
        if (MemorySwapMax is { } swapMax) set.Add($"memory.swap.max {swapMax}");
        if (PidsMax is { } pidsMax) set.Add($"pids.max {pidsMax}");
        if (CpuQuotaMicroseconds is { } quota) set.Add($"cpu.max {quota} {CpuPeriodMicroseconds}");
        if (CpuWeight is { } cpuWeight) set.Add($"cpu.weight {cpuWeight}");
        if (CpusetCpus is { } cpus) set.Add($"cpuset.cpus {cpus}");
        if (CpusetMems is { } mems) set.Add($"cpuset.mems {mems}");
        if (IoWeight is { } ioWeight) set.Add($"io.weight {ioWeight}");
        if (IoMax.Length > 0) set.Add($"io.max for {IoMax.Length} device(s)");
        return string.Join(", ", set);
    }

    /// <summary>PID_MAX_LIMIT on 64-bit (linux/threads.h): pids.max takes 0 to this ("max" beyond), else EINVAL.</summary>
    internal const long PID_MAX_LIMIT = 4 * 1024 * 1024;

    /// <summary>max_cfs_runtime (kernel/sched/core.c): 2^44 - 1 µs; cpu.max and cpu.cfs_quota_us refuse more with EINVAL.</summary>
    internal const long MaxCpuQuotaMicroseconds = (1L << 44) - 1;

    /// <summary>Checks every value; throws <see cref="ArgumentException"/> saying what to do.</summary>
    internal void Validate()
    {
        if (MemoryMax is < 4096)
            throw new ArgumentException($"MemoryMax({MemoryMax}) is below one page; give at least 4096 bytes (the kernel rounds to pages).");
        if (MemoryHigh is < 4096)
            throw new ArgumentException($"MemoryHigh({MemoryHigh}) is below one page; give at least 4096 bytes.");
        if (MemorySwapMax is < 0)
            throw new ArgumentException($"MemorySwapMax({MemorySwapMax}) is negative; give 0 for no swap or a byte count.");
        if (MemorySwapMax is not null && MemoryMax is null)
            throw new ArgumentException("MemorySwapMax requires MemoryMax: cgroup v1 limits memory+swap together, so set MemoryMax too.");
        if (MemoryHigh is not null && MemoryMax is not null && MemoryHigh > MemoryMax)
            throw new ArgumentException($"MemoryHigh({MemoryHigh}) is above MemoryMax({MemoryMax}); the throttling threshold must not exceed the hard limit.");
        if (PidsMax is < 1)
            throw new ArgumentException($"PidsMax({PidsMax}) must be at least 1: the program itself is a task.");
        if (PidsMax is > PID_MAX_LIMIT)
            throw new ArgumentException($"PidsMax({PidsMax}) is above {PID_MAX_LIMIT}, the most pids a system can have (PID_MAX_LIMIT) and the largest value pids.max takes; leave PidsMax unset for no limit.");
        if (CpuPeriodMicroseconds is < 1000 or > 1_000_000)
            throw new ArgumentException($"A CPU period of {CpuPeriodMicroseconds} µs is outside 1000–1000000 µs, the kernel's range for cpu.max.");
        if (CpuQuotaMicroseconds is < 1000)
            throw new ArgumentException($"A CPU quota of {CpuQuotaMicroseconds} µs is below the kernel's minimum of 1000 µs; raise the fraction or lengthen the period.");
        if (CpuQuotaMicroseconds is > MaxCpuQuotaMicroseconds)
            throw new ArgumentException($"A CPU quota of {CpuQuotaMicroseconds} µs is above the kernel's maximum of {MaxCpuQuotaMicroseconds} µs (max_cfs_runtime, about 203 days per period); leave CpuMax unset for no limit.");
        if (CpuWeight is < 1 or > 10000)
            throw new ArgumentException($"CpuWeight({CpuWeight}) is outside 1–10000 (cpu.weight; 100 is the default).");
        if (IoWeight is < 1 or > 10000)
            throw new ArgumentException($"IoWeight({IoWeight}) is outside 1–10000 (io.weight; 100 is the default).");
        CheckList(CpusetCpus, "CpusetCpus");
        CheckList(CpusetMems, "CpusetMems");
        foreach (IoDeviceLimit limit in IoMax)
            limit.Validate();
    }

    private static void CheckList(string? list, string name)
    {
        if (list is null)
            return;
        // cpuset(7) list format: comma-separated numbers and ranges, such as 0-3,7.
        foreach (string part in list.Split(','))
        {
            string[] range = part.Split('-');
            if (range.Length is < 1 or > 2 || !range.All(r => r.Length > 0 && r.All(char.IsAsciiDigit))
                || (range.Length == 2 && int.Parse(range[0]) > int.Parse(range[1])))
                throw new ArgumentException($"{name}(\"{list}\") is not a list such as \"0-2,4\" (cpuset(7) list format).");
        }
    }
}

/// <summary>An IO limit on one block device, <c>MAJOR:MINOR</c> as in <c>/proc/partitions</c> (v2 <c>io.max</c>). A null rate is unlimited.</summary>
/// <param name="Major">The device's major number.</param>
/// <param name="Minor">The device's minor number.</param>
/// <param name="ReadBytesPerSecond">Read bandwidth limit.</param>
/// <param name="WriteBytesPerSecond">Write bandwidth limit.</param>
/// <param name="ReadIopsPerSecond">Read operations per second limit.</param>
/// <param name="WriteIopsPerSecond">Write operations per second limit.</param>
public readonly record struct IoDeviceLimit(int Major, int Minor, long? ReadBytesPerSecond = null, long? WriteBytesPerSecond = null, long? ReadIopsPerSecond = null, long? WriteIopsPerSecond = null)
{
    internal void Validate()
    {
        if (Major < 0 || Minor < 0)
            throw new ArgumentException($"IoMax device {Major}:{Minor} is not a device number; see /proc/partitions or lsblk for MAJ:MIN.");
        if (ReadBytesPerSecond is < 1 || WriteBytesPerSecond is < 1 || ReadIopsPerSecond is < 1 || WriteIopsPerSecond is < 1)
            throw new ArgumentException($"IoMax for device {Major}:{Minor} has a rate below 1; leave a rate null for unlimited.");
        if (ReadBytesPerSecond is null && WriteBytesPerSecond is null && ReadIopsPerSecond is null && WriteIopsPerSecond is null)
            throw new ArgumentException($"IoMax for device {Major}:{Minor} sets no rate; give at least one.");
    }

    /// <summary>The line written to v2 <c>io.max</c>: <c>8:16 rbps=2097152 wbps=max riops=max wiops=120</c>.</summary>
    internal string ToIoMaxLine() =>
        $"{Major}:{Minor} rbps={Rate(ReadBytesPerSecond)} wbps={Rate(WriteBytesPerSecond)} riops={Rate(ReadIopsPerSecond)} wiops={Rate(WriteIopsPerSecond)}";

    private static string Rate(long? value) => value?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "max";
}
