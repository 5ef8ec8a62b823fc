using Microsoft.Extensions.Logging;

namespace Isolation.Diagnostics;

/// <summary>Reclaim of the cgroups dead owners left (Cgroups/CgroupReclaimer.cs).</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 60, Level = LogLevel.Information, Message = "reclaimed {Count} cgroup directories of {Owners} dead owners ({Killed} processes still in them were killed): {Directories}")]
    public static partial void CgroupsReclaimed(ILogger logger, int count, int owners, int killed, string directories);

    [LoggerMessage(EventId = 61, Level = LogLevel.Warning, Message = "could not reclaim a leftover cgroup: {Reason}")]
    public static partial void CgroupReclaimFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 62, Level = LogLevel.Warning, Message = "this process's cgroups carry no ownership lock, so they cannot be reclaimed if it crashes: {Reason}")]
    public static partial void CgroupOwnerUnmarked(ILogger logger, string reason);
}
