using Isolation.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Isolation.Cgroups;

/// <summary>
/// The cgroups this library leaves behind when a process that owns sandboxes dies without disposing them
/// (SIGKILL, a crash, the OOM killer), and their reclaim.
/// <para>
/// Each process that creates cgroups holds a lock file, <c>{<see cref="OwnerDirectory"/>}/{token}.lock</c>, with
/// flock(2) for as long as it lives, and names each cgroup <c>isolation-{pid}-{n}-{token}</c>; the lock file
/// lists the directories those cgroups are in. When the owner dies the kernel drops its lock, so a later process
/// knows for sure — without trusting a pid — that the cgroups are leftovers. The first <c>Start</c> with
/// <see cref="NamespaceBuilder.WithCgroup"/> in a process reclaims them once; call <see cref="ReclaimLeftovers"/>
/// to do it at another time (at service start, or from a cleanup job).
/// </para>
/// </summary>
public static class IsolationCgroups
{
    private static int s_reclaimedOnFirstUse;

    /// <summary>
    /// Where this user's ownership lock files are (created, 0700, when missing): <c>/run/isolation/owners</c> for root, else
    /// <c>$XDG_RUNTIME_DIR/isolation/owners</c>, else <c>/tmp/isolation-UID/owners</c> (each a directory of the
    /// user's own that nobody else can write). Null when none is usable: cgroups are then created without an
    /// owner file and never reclaimed.
    /// </summary>
    public static string? OwnerDirectory => CgroupOwner.DefaultStore();

    /// <summary>
    /// Kills whatever is left in the cgroups of dead owners of this user (processes of this library whose lock
    /// file nobody holds any more) and removes them, in every hierarchy (v2, v1, hybrid), then their lock files.
    /// Never touches a live owner's cgroups, a detached sandbox's, or any cgroup not named by an owner's lock
    /// file. Safe to run from several processes at once.
    /// </summary>
    /// <param name="logger">Where to log what was removed (Information) and what could not be (Warning).</param>
    /// <returns>What was removed, what could not be, and how many owners were found dead and alive.</returns>
    public static CgroupReclaimResult ReclaimLeftovers(ILogger? logger = null)
    {
        // A process that never created a cgroup has no lock file of its own to skip, and does not need one to reclaim.
        CgroupReclaimResult result = CgroupReclaimer.Reclaim(CgroupOwner.DefaultStore(), CgroupLayout.Host, CgroupOwner.CurrentToken);
        logger ??= NullLogger.Instance;
        if (result.RemovedDirectories.Count > 0)
            Log.CgroupsReclaimed(logger, result.RemovedDirectories.Count, result.DeadOwners, result.KilledProcesses, string.Join(", ", result.RemovedDirectories));
        foreach (string failure in result.Failures)
            Log.CgroupReclaimFailed(logger, failure);
        return result;
    }

    /// <summary>Host, before the first cgroup of this process: take the ownership lock, then reclaim what dead owners left (once). Never throws.</summary>
    internal static void ReclaimOnFirstUse(ILogger logger)
    {
        if (Volatile.Read(ref s_reclaimedOnFirstUse) != 0 || Interlocked.Exchange(ref s_reclaimedOnFirstUse, 1) != 0)
            return;
        if (CgroupOwner.Current.Error is { } error)
            Log.CgroupOwnerUnmarked(logger, error);
        try
        {
            ReclaimLeftovers(logger);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or SandboxSetupException)
        {
            Log.CgroupReclaimFailed(logger, e.Message);
        }
    }
}

/// <summary>What <see cref="IsolationCgroups.ReclaimLeftovers"/> found and did.</summary>
public sealed record CgroupReclaimResult
{
    /// <summary>The cgroup directories removed (one per hierarchy for each leftover sandbox).</summary>
    public IReadOnlyList<string> RemovedDirectories { get; init; } = [];

    /// <summary>Leftovers that could not be removed, each with why; their lock files stay, so a later reclaim tries again.</summary>
    public IReadOnlyList<string> Failures { get; init; } = [];

    /// <summary>Processes that were still running in the leftovers and were killed.</summary>
    public int KilledProcesses { get; init; }

    /// <summary>Owners found dead (their lock file was free).</summary>
    public int DeadOwners { get; init; }

    /// <summary>Owners found alive (their lock is held), whose cgroups were left alone.</summary>
    public int LiveOwners { get; init; }
}
