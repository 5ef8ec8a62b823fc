namespace Isolation.Mounts;

/// <summary>Kinds of mount-plan operation; values are the shim's <c>enum iso_op_kind</c>.</summary>
internal enum NativeOpKind : uint
{
    Mount = 1,
    Bind = 2,
    Mkdir = 3,
    Symlink = 4,
    WriteFile = 5,
    Chmod = 6,
    Remount = 7,
    PivotRoot = 8,
    Mask = 9,
    Propagation = 10,
    Touch = 11,
    CopyFd = 12,
    MountSetattr = 13,
    Idmap = 14,
    Overlay = 15,
    OpenRoot = 16,
    PivotBase = 17,
}

/// <summary><c>iso_op.flags</c>.</summary>
[Flags]
internal enum NativeOpFlags : uint
{
    None = 0,
    Recursive = 0x1,
    ReadOnly = 0x2,
    Optional = 0x4,
    MakeTarget = 0x8,
    InRoot = 0x10,
    SourceInRoot = 0x20,
    TmpfsUpper = 0x40,
    Prepared = 0x80,
}

/// <summary>
/// One operation of a mount plan as the user wrote it, already validated. <see cref="Description"/> is how
/// errors name it ("bind /data on /mnt/data").
/// </summary>
internal sealed record MountOperation(
    NativeOpKind Kind,
    string Description,
    string? Source = null,
    string? Target = null,
    string? FsType = null,
    string? Data = null,
    ulong MountFlags = 0,
    NativeOpFlags Flags = NativeOpFlags.None,
    long N1 = 0,
    long N2 = 0,
    byte[]? Contents = null)
{
    /// <summary>Whether <see cref="Source"/> is a path in the sandbox's new root rather than on the host.</summary>
    public bool SourceInsideRoot { get; init; }

    /// <summary>The 1-based number of the builder call that produced this operation (one call may add several, like <c>Dev</c>).</summary>
    public int Call { get; init; }

    /// <summary>A proc mount that shows the caller's PID namespace on purpose (no <see cref="Namespaces.Pid"/> needed).</summary>
    public bool CallerPidNamespace { get; init; }

    /// <summary>An overlay's lower layers, top first (host paths).</summary>
    public System.Collections.Immutable.ImmutableArray<string> Layers { get; init; } = [];

    /// <summary>An overlay's upper directory (host path), or null.</summary>
    public string? UpperDir { get; init; }

    /// <summary>An overlay's work directory (host path), or null.</summary>
    public string? WorkDir { get; init; }
}
