using System.Globalization;
using Isolation.Cgroups;
using Isolation.Mounts;

namespace Isolation;

/// <summary>What enforces one limit of a started sandbox.</summary>
public enum LimitMechanism
{
    /// <summary>Nothing: the sandbox can use as much as the host lets the caller.</summary>
    None = 0,

    /// <summary>A controller of the sandbox's cgroup in the cgroup v2 hierarchy (<c>pids.max</c>, <c>memory.max</c>, <c>cpu.max</c>, <c>io.max</c>).</summary>
    CgroupV2,

    /// <summary>A controller of the sandbox's cgroup in a cgroup v1 hierarchy (<c>pids.max</c>, <c>memory.limit_in_bytes</c>, <c>cpu.cfs_quota_us</c>, <c>blkio.throttle.*</c>).</summary>
    CgroupV1,

    /// <summary>An rlimit of the program (setrlimit(2)), inherited by everything it starts.</summary>
    Rlimit,

    /// <summary>A <c>size=</c> on every writable tmpfs the sandbox mounts.</summary>
    TmpfsSize,

    /// <summary>The sandbox is killed after <see cref="NamespaceBuilder.WithTimeout"/>.</summary>
    Timeout,

    /// <summary>Nothing to bound: the sandbox mounts no writable tmpfs.</summary>
    NotApplicable,
}

/// <summary>How one limit of a started sandbox is enforced, and at what value.</summary>
/// <param name="Mechanism">What enforces it, or <see cref="LimitMechanism.None"/>.</param>
/// <param name="Value">The bound, in the row's unit: tasks for pids, bytes for memory and tmpfs, CPU microseconds per period for cpu (seconds for RLIMIT_CPU), milliseconds for time; null when it is not one number (a weight, several devices).</param>
/// <param name="Setting">What was set, as the kernel names it (<c>pids.max 256</c>, <c>RLIMIT_NPROC 256</c>, <c>size= on 4 tmpfs</c>), or why nothing was.</param>
public readonly record struct LimitState(LimitMechanism Mechanism, long? Value, string Setting)
{
    /// <summary>Whether something bounds it (or there is nothing to bound).</summary>
    public bool Holds => Mechanism != LimitMechanism.None;

    /// <inheritdoc/>
    public override string ToString() => $"{Mechanism}: {Setting}";
}

/// <summary>
/// Which limits hold for a started sandbox and by which mechanism (<see cref="IsolatedProcess.Limits"/>,
/// <see cref="SandboxResult.Limits"/>), computed from what the start applied: the cgroup it created and the
/// hierarchy of each controller, the rlimits it set (the <c>RLIMIT_NPROC</c> fallback of
/// <see cref="CgroupBuilder.FallBackToRlimit"/> included), the tmpfs sizes of the compiled mount plan and the timeout.
/// One instance is shared by the starts of a spec that came out the same way.
/// </summary>
public sealed class SandboxLimits
{
    internal SandboxLimits(LimitState pids, LimitState memory, LimitState cpu, LimitState io, LimitState tmpfs, LimitState time, string? cgroupError, ulong nprocFallback)
    {
        NprocFallback = nprocFallback;
        Pids = pids;
        Memory = memory;
        Cpu = cpu;
        Io = io;
        Tmpfs = tmpfs;
        Time = time;
        CgroupError = cgroupError;
    }

    /// <summary>Processes and threads: <c>pids.max</c>, else <c>RLIMIT_NPROC</c> (counted per user namespace and uid, see <see cref="CgroupBuilder.FallBackToRlimit"/>).</summary>
    public LimitState Pids { get; }

    /// <summary>Memory: <c>memory.max</c> (v1 <c>memory.limit_in_bytes</c>), else an <c>RLIMIT_AS</c>/<c>RLIMIT_DATA</c> the spec set itself.</summary>
    public LimitState Memory { get; }

    /// <summary>CPU: <c>cpu.max</c>, <c>cpu.weight</c> or <c>cpuset</c>, else an <c>RLIMIT_CPU</c> the spec set itself.</summary>
    public LimitState Cpu { get; }

    /// <summary>Block IO: <c>io.max</c> or <c>io.weight</c> (v1 <c>blkio</c>).</summary>
    public LimitState Io { get; }

    /// <summary>Writable tmpfs mounts: bounded when every one has a <c>size=</c> (<see cref="LimitState.Value"/>: the largest).</summary>
    public LimitState Tmpfs { get; }

    /// <summary>Wall-clock time: <see cref="NamespaceBuilder.WithTimeout"/>.</summary>
    public LimitState Time { get; }

    /// <summary>Why the sandbox has no cgroup although one was asked for best effort (as <see cref="IsolatedProcess.CgroupError"/>); else null.</summary>
    public string? CgroupError { get; }

    /// <summary>The RLIMIT_NPROC set in place of pids.max by this start (0: none), so a spec can tell whether it can share this report.</summary>
    internal ulong NprocFallback { get; }

    /// <inheritdoc/>
    public override string ToString() => $"pids {Pids}; memory {Memory}; cpu {Cpu}; io {Io}; tmpfs {Tmpfs}; time {Time}";

    /// <summary>
    /// Host, at a start: the report for a sandbox that got <paramref name="cgroup"/> (or none: <see cref="NoCgroup"/>,
    /// <paramref name="cgroupError"/> saying why) and, without one, <paramref name="nprocFallback"/> as RLIMIT_NPROC (0: none;
    /// <paramref name="fallbackNote"/>: why none).
    /// </summary>
    internal static SandboxLimits Compute(BuilderState state, ReadOnlySpan<IsolationSpec.CompiledOp> ops, ICgroup cgroup,
        string? cgroupError, ulong nprocFallback, string? fallbackNote)
    {
        CgroupLimits limits = state.Cgroup?.Limits ?? CgroupLimits.Empty;
        string noCgroup = cgroupError is not null ? "no cgroup (best effort: " + cgroupError + ")" : "no cgroup limit";

        LimitState pids = limits.PidsMax is { } pidsMax && cgroup.CarrierOf("pids") is var pm and not LimitMechanism.None
            ? new(pm, pidsMax, $"pids.max {pidsMax}")
            : RlimitOf(state, RlimitResource.Nproc) is { } nproc
                ? new(LimitMechanism.Rlimit, Clamp(nproc.Soft), $"RLIMIT_NPROC {Show(nproc.Soft)} (WithRlimit)")
                : nprocFallback > 0
                    ? new(LimitMechanism.Rlimit, (long)nprocFallback, $"RLIMIT_NPROC {nprocFallback} (fallback: {noCgroup})")
                    : new(LimitMechanism.None, null, fallbackNote is null ? noCgroup : $"{noCgroup}; {fallbackNote}");

        LimitState memory = limits.MemoryMax is { } memoryMax && cgroup.CarrierOf("memory") is var mm and not LimitMechanism.None
            ? new(mm, memoryMax, mm == LimitMechanism.CgroupV1 ? $"memory.limit_in_bytes {memoryMax}" : $"memory.max {memoryMax}")
            : limits.MemoryHigh is { } high && cgroup.CarrierOf("memory") is var mh and not LimitMechanism.None
                ? new(mh, high, $"memory.high {high} (throttling, no hard limit)")
                : (RlimitOf(state, RlimitResource.AddressSpace) ?? RlimitOf(state, RlimitResource.Data)) is { } mem
                    ? new(LimitMechanism.Rlimit, Clamp(mem.Soft), $"RLIMIT_{(mem.Resource == RlimitResource.Data ? "DATA" : "AS")} {Show(mem.Soft)} (WithRlimit)")
                    : new(LimitMechanism.None, null, noCgroup);

        LimitMechanism cm = cgroup.CarrierOf("cpu");
        LimitState cpu = limits.CpuQuotaMicroseconds is { } quota && cm != LimitMechanism.None
            ? new(cm, quota, $"cpu.max {quota} {limits.CpuPeriodMicroseconds}")
            : limits.CpuWeight is { } weight && cm != LimitMechanism.None
                ? new(cm, null, $"cpu.weight {weight} (a share, no cap)")
                : limits.CpusetCpus is { } cpus && cgroup.CarrierOf("cpuset") is var cs and not LimitMechanism.None
                    ? new(cs, null, $"cpuset.cpus {cpus}")
                    : RlimitOf(state, RlimitResource.Cpu) is { } cpuTime
                        ? new(LimitMechanism.Rlimit, Clamp(cpuTime.Soft), $"RLIMIT_CPU {Show(cpuTime.Soft)} s (WithRlimit)")
                        : new(LimitMechanism.None, null, noCgroup);

        LimitMechanism im = cgroup.CarrierOf("io");
        LimitState io = (limits.IoMax.Length > 0 || limits.IoWeight is not null) && im != LimitMechanism.None
            ? new(im, null, limits.IoMax.Length > 0 ? $"io.max on {limits.IoMax.Length} device(s)" : $"io.weight {limits.IoWeight} (a share, no cap)")
            : new(LimitMechanism.None, null, noCgroup);

        LimitState time = state.Timeout is { } timeout
            ? new(LimitMechanism.Timeout, (long)timeout.TotalMilliseconds, "timeout " + timeout.ToString("c", CultureInfo.InvariantCulture))
            : new(LimitMechanism.None, null, "no WithTimeout");

        return new SandboxLimits(pids, memory, cpu, io, TmpfsOf(state, ops), time, cgroupError, nprocFallback);
    }

    /// <summary>Every writable tmpfs of the compiled plan (the empty root's base, tmpfs and dev mounts, overlay uppers) and its size=.</summary>
    private static LimitState TmpfsOf(BuilderState state, ReadOnlySpan<IsolationSpec.CompiledOp> ops)
    {
        int sized = 0;
        long largest = 0;
        foreach (IsolationSpec.CompiledOp compiled in ops)
        {
            MountOperation op = compiled.Operation;
            long? size;
            if (op.Kind == NativeOpKind.PivotBase && !state.ReadOnlyRoot)
                size = SizeOf(op.FsType);
            else if (op.Kind == NativeOpKind.Mount && op.FsType == "tmpfs" && (op.MountFlags & 1 /* MS_RDONLY */) == 0)
                size = SizeOf(op.Data);
            else if (op.Kind == NativeOpKind.Overlay && op.Flags.HasFlag(NativeOpFlags.TmpfsUpper))
                size = op.N1 > 0 ? op.N1 : null;
            else
                continue;
            if (size is not { } bytes)
                return new(LimitMechanism.None, null, $"{op.Description} has no size= (half of RAM)");
            sized++;
            largest = Math.Max(largest, bytes);
        }
        return sized == 0
            ? new(LimitMechanism.NotApplicable, null, "no writable tmpfs")
            : new(LimitMechanism.TmpfsSize, largest, $"size= on {sized} tmpfs, the largest {largest} bytes");
    }

    /// <summary>The bytes of a "size=N" mount option (as the plan writes it: a plain number), or null.</summary>
    private static long? SizeOf(string? data)
    {
        if (data is null)
            return null;
        foreach (string option in data.Split(','))
        {
            if (option.StartsWith("size=", StringComparison.Ordinal) && long.TryParse(option.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out long bytes))
                return bytes;
        }
        return null;
    }

    private static Rlimit? RlimitOf(BuilderState state, RlimitResource resource)
    {
        foreach (Rlimit r in state.Rlimits)
        {
            if (r.Resource == resource && r.Soft != Rlimit.Unlimited)
                return r;
        }
        return null;
    }

    private static long Clamp(ulong value) => value > long.MaxValue ? long.MaxValue : (long)value;

    private static string Show(ulong value) => value.ToString(CultureInfo.InvariantCulture);
}
