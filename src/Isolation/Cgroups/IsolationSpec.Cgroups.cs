using Isolation.Cgroups;
using Isolation.Diagnostics;
using Microsoft.Extensions.Logging;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>The resource-limit steps of <see cref="Start"/>: cgroup before clone, placement and rlimits before sync 1.</summary>
public sealed unsafe partial class IsolationSpec
{
    private ICgroupDriver? _cgroupDriver;

    // What a start applied, shared by the starts that came out the same way (SandboxLimits.cs): computed at the
    // first such start, so a start allocates no report of its own (only one whose cgroup failed with a new message).
    private SandboxLimits? _limitsWithCgroup, _limitsWithoutCgroup, _limitsCgroupFailed;

    // The RLIMIT_NPROC fallback of a best-effort cgroup (CgroupBuilder.FallBackToRlimit): 0 none, with why; once per spec.
    private ulong _nprocFallback;
    private string? _nprocFallbackNote;
    private volatile bool _nprocFallbackKnown;

    /// <summary>The limits each sandbox's cgroup gets, or null when the spec has no <see cref="NamespaceBuilder.WithCgroup"/>.</summary>
    public CgroupLimits? CgroupLimits => _state.Cgroup?.Limits;

    /// <summary>Tests: use this driver instead of the host's (v2 alone or v1 alone on a hybrid host).</summary>
    internal ICgroupDriver? CgroupDriverForTests
    {
        set => _cgroupDriver = value;
    }

    /// <summary>Parent, before clone: a new cgroup for this sandbox, limits written. Best effort: none, and why.</summary>
    private (ICgroup Cgroup, string? Error) CreateCgroup()
    {
        if (_state.Cgroup is not { } settings)
            return (NoCgroup.Instance, null);
        _cgroupDriver ??= CgroupDriver.For(CgroupLayout.Host);
        IsolationCgroups.ReclaimOnFirstUse(_logger); // once per process: the leftovers of dead owners (DESIGN.md §3a)
        try
        {
            ICgroup cgroup = _cgroupDriver.Create(settings, CgroupDriver.NewName());
            if (_logger.IsEnabled(LogLevel.Debug))
                Log.CgroupCreated(_logger, string.Join(", ", cgroup.Directories));
            return (cgroup, null);
        }
        catch (SandboxSetupException e) when (settings.BestEffort)
        {
            Log.CgroupSkipped(_logger, e.Message);
            return (NoCgroup.Instance, e.Message);
        }
        catch (SandboxSetupException e) when (settings.Limits.Describe() is { Length: > 0 } limits)
        {
            // Required limits (safe defaults): the sandbox does not run without them, and the error says which they are.
            throw new SandboxSetupException(e.Step, e.What, e.Errno, e.Path,
                $"the sandbox does not start without the limits asked for ({limits}); {e.Hint ?? "say CgroupBuilder.BestEffort() to run without them"}", e.MountIndex);
        }
    }

    /// <summary>Parent, child waiting at sync 1: write its pid into each cgroup clone3 did not already put it in.</summary>
    private void PlaceInCgroup(ICgroup cgroup, int pid, bool usedClone3)
    {
        if (cgroup is NoCgroup)
            return;
        bool clonedInto = usedClone3 && cgroup.CloneIntoFd >= 0;
        cgroup.Place(pid, clonedInto);
        Log.CgroupPlaced(_logger, pid, clonedInto);
    }

    /// <summary>Parent, before clone: the RLIMIT_NPROC to set in place of a cgroup that could not be had (0: none).</summary>
    private ulong NprocFallback(ICgroup cgroup, string? cgroupError)
    {
        if (cgroup is not NoCgroup || cgroupError is null || _state.Cgroup is not { RlimitFallback: true })
            return 0;
        if (!_nprocFallbackKnown)
            DecideNprocFallback();
        return _nprocFallback;
    }

    /// <summary>
    /// Host, before a start rents a spawn helper: an unprivileged caller, which rarely has a cgroup, decides the
    /// fallback (and so probes RLIMIT_NPROC) now, while no helper is busy with this start; the probe's starts
    /// nested in this one would make the pool start a second helper.
    /// </summary>
    private void PrepareNprocFallback()
    {
        if (!_nprocFallbackKnown && _state.Cgroup is { RlimitFallback: true, BestEffort: true } && geteuid() != 0)
            DecideNprocFallback();
    }

    private void DecideNprocFallback()
    {
        (ulong limit, string? note, bool final) = DecideNprocFallback(_state);
        _nprocFallback = limit;
        _nprocFallbackNote = note;
        _nprocFallbackKnown = final; // an answer the probe could not give yet is asked for again at the next start
    }

    /// <summary>Whether RLIMIT_NPROC can stand for pids.max in this spec's sandboxes, and why not.</summary>
    private static (ulong Limit, string? WhyNot, bool Final) DecideNprocFallback(BuilderState s)
    {
        if (s.Cgroup?.Limits.PidsMax is not { } pids)
            return (0, null, true);
        if (s.Rlimits.Any(r => r.Resource == RlimitResource.Nproc))
            return (0, null, true); // the spec's own RLIMIT_NPROC is set, and reported as such
        if (!s.Namespaces.HasFlag(Namespaces.User))
            return (0, "no RLIMIT_NPROC fallback: without Namespaces.User it would count every process of your uid on the host", true);
        uint uid = s.Uid is { } u && u != IdMaps.MappedIdentity.Unchanged ? u : uint.MaxValue;
        uint hostUid = geteuid();
        foreach (IdMaps.IdMap map in s.UidMaps)
        {
            if (uid != uint.MaxValue && uid >= map.Inside && uid - map.Inside < map.Count)
                hostUid = map.Outside + (uid - map.Inside);
        }
        if (hostUid == 0)
            return (0, "no RLIMIT_NPROC fallback: the program runs as host uid 0, which the kernel exempts", true);
        (NprocScope scope, string detail) = NprocProbe.Result;
        return scope == NprocScope.Namespace ? ((ulong)pids, null, true) : (0, "no RLIMIT_NPROC fallback: " + detail, scope != NprocScope.Unknown);
    }

    /// <summary>Host, after a successful start: what it applied, shared with every start that came out the same way.</summary>
    private SandboxLimits LimitsOf(ICgroup cgroup, string? cgroupError, ulong nproc)
    {
        if (cgroup is not NoCgroup)
            return _limitsWithCgroup ??= SandboxLimits.Compute(_state, _compiledOps, cgroup, null, 0, null);
        if (cgroupError is null)
            return _limitsWithoutCgroup ??= SandboxLimits.Compute(_state, _compiledOps, cgroup, null, 0, null);
        SandboxLimits? failed = _limitsCgroupFailed;
        if (failed is null || failed.NprocFallback != nproc || !string.Equals(failed.CgroupError, cgroupError, StringComparison.Ordinal))
            _limitsCgroupFailed = failed = SandboxLimits.Compute(_state, _compiledOps, cgroup, cgroupError, nproc, _nprocFallbackNote);
        return failed;
    }

    /// <summary>Parent, child waiting at sync 1: prlimit(2) each rlimit, so the program starts with them.</summary>
    private void SetRlimits(int pid, ulong nprocFallback)
    {
        if (nprocFallback > 0)
        {
            // In place of pids.max. The child is still the caller's uid in its new user namespace; the kernel
            // counts each fork against the real uid the forking task has then, i.e. after the identity switch.
            var value = new rlimit { rlim_cur = nprocFallback, rlim_max = nprocFallback };
            if (prlimit(pid, (int)RlimitResource.Nproc, &value, null) != 0)
                throw new SandboxSetupException(SetupStep.Rlimit, $"set rlimit Nproc to {nprocFallback} in place of pids.max (no cgroup)",
                    System.Runtime.InteropServices.Marshal.GetLastPInvokeError(), null, "say CgroupBuilder.FallBackToRlimit(false) to run without it");
            Log.NprocFallback(_logger, pid, nprocFallback);
        }
        foreach (Rlimit limit in _state.Rlimits)
        {
            var value = new rlimit { rlim_cur = limit.Soft, rlim_max = limit.Hard };
            if (prlimit(pid, (int)limit.Resource, &value, null) == 0)
                continue;
            int errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            rlimit current;
            string? hint = null;
            if (errno == EPERM && prlimit(pid, (int)limit.Resource, null, &current) == 0 && limit.Hard > current.rlim_max)
                hint = $"the hard limit can only be raised above the current one ({Show(current.rlim_max)}) with CAP_SYS_RESOURCE (getrlimit(2)); lower the hard limit or run where it is higher";
            throw new SandboxSetupException(SetupStep.Rlimit, $"set rlimit {limit.Resource} to {Show(limit.Soft)}:{Show(limit.Hard)}", errno, null, hint);
        }
    }

    private static string Show(ulong value) => value == Rlimit.Unlimited ? "unlimited" : value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
