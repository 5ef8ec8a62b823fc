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
