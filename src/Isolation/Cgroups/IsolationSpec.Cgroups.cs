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

    /// <summary>Parent, child waiting at sync 1: prlimit(2) each rlimit, so the program starts with them.</summary>
    private void SetRlimits(int pid)
    {
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
