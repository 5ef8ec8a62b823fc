namespace Isolation.Mounts;

/// <summary>Propagation of the sandbox's mounts (mount_namespaces(7)), like <c>unshare --propagation</c>.</summary>
public enum MountPropagation
{
    /// <summary>Recursively private (the default): nothing propagates in or out.</summary>
    Private,

    /// <summary>Recursively slave: host mounts appear inside; nothing goes back.</summary>
    Slave,

    /// <summary>Recursively shared with the host.</summary>
    Shared,

    /// <summary>Leave the propagation as the new mount namespace inherited it.</summary>
    Unchanged,
}

internal static class MountPropagationExtensions
{
    /// <summary>
    /// The mount flag of a propagation other than <see cref="MountPropagation.Unchanged"/>, and its name as mount(8)
    /// spells it. Named here rather than by Enum.ToString, which reads metadata: ~0.3 ms of a NativeAOT start.
    /// </summary>
    public static (ulong Flag, string Name) ToMountFlag(this MountPropagation propagation) => propagation switch
    {
        MountPropagation.Slave => ((ulong)Tmds.Linux.LibC.MS_SLAVE, "slave"),
        MountPropagation.Shared => ((ulong)Tmds.Linux.LibC.MS_SHARED, "shared"),
        _ => ((ulong)Tmds.Linux.LibC.MS_PRIVATE, "private"),
    };
}
