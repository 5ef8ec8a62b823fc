using System.Collections.Immutable;

namespace Isolation.Security;

/// <summary>Landlock file-system access rights (landlock(7), <c>LANDLOCK_ACCESS_FS_*</c>), with the ABI that introduced each.</summary>
[Flags]
#pragma warning disable CA1711
public enum LandlockFsAccess : ulong
#pragma warning restore CA1711
{
    /// <summary>No right.</summary>
    None = 0,
    /// <summary>Execute a file (ABI 1).</summary>
    Execute = 1UL << 0,
    /// <summary>Open a file for writing (ABI 1).</summary>
    WriteFile = 1UL << 1,
    /// <summary>Open a file for reading (ABI 1).</summary>
    ReadFile = 1UL << 2,
    /// <summary>List a directory (ABI 1).</summary>
    ReadDir = 1UL << 3,
    /// <summary>Remove an empty directory (ABI 1).</summary>
    RemoveDir = 1UL << 4,
    /// <summary>Unlink a file (ABI 1).</summary>
    RemoveFile = 1UL << 5,
    /// <summary>Create a character device (ABI 1).</summary>
    MakeChar = 1UL << 6,
    /// <summary>Create a directory (ABI 1).</summary>
    MakeDir = 1UL << 7,
    /// <summary>Create a regular file (ABI 1).</summary>
    MakeReg = 1UL << 8,
    /// <summary>Create a Unix socket (ABI 1).</summary>
    MakeSock = 1UL << 9,
    /// <summary>Create a named pipe (ABI 1).</summary>
    MakeFifo = 1UL << 10,
    /// <summary>Create a block device (ABI 1).</summary>
    MakeBlock = 1UL << 11,
    /// <summary>Create a symbolic link (ABI 1).</summary>
    MakeSym = 1UL << 12,
    /// <summary>Link or rename a file from or to another directory (ABI 2).</summary>
    Refer = 1UL << 13,
    /// <summary>Truncate a file (ABI 3).</summary>
    Truncate = 1UL << 14,
    /// <summary>ioctl(2) on a device file (ABI 5).</summary>
    IoctlDev = 1UL << 15,
}

/// <summary>
/// Composes a Landlock ruleset (landlock(7)): once enforced, the program and its descendants can reach only
/// the paths and TCP ports listed here, whatever their uid or capabilities. Used through
/// <see cref="SecurityBuilder.WithLandlock"/>. Paths are paths inside the sandbox (after pivot_root), opened
/// by the child just before exec.
/// </summary>
public sealed class LandlockBuilder
{
    /// <summary>Read files and list directories beneath a path.</summary>
    public const LandlockFsAccess ReadAccess = LandlockFsAccess.ReadFile | LandlockFsAccess.ReadDir;

    /// <summary>Read and execute beneath a path.</summary>
    public const LandlockFsAccess ExecuteAccess = ReadAccess | LandlockFsAccess.Execute;

    /// <summary>Read, write, create and remove beneath a path; never create device files.</summary>
    public const LandlockFsAccess ReadWriteAccess = ReadAccess | LandlockFsAccess.WriteFile | LandlockFsAccess.RemoveDir
        | LandlockFsAccess.RemoveFile | LandlockFsAccess.MakeDir | LandlockFsAccess.MakeReg | LandlockFsAccess.MakeSock
        | LandlockFsAccess.MakeFifo | LandlockFsAccess.MakeSym | LandlockFsAccess.Refer | LandlockFsAccess.Truncate
        | LandlockFsAccess.IoctlDev;

    private readonly List<(string Path, LandlockFsAccess Access)> _paths = [];
    private readonly List<(ushort Port, bool Bind)> _ports = [];
    private bool _restrictTcp;
    private bool _scopeSignals;
    private bool _scopeAbstractUnix;
    private bool _scopesOnly;
    private int _requiredAbi;

    internal LandlockBuilder()
    {
    }

    /// <summary>Allow reading beneath each of <paramref name="paths"/> (the isolate CLI's <c>--landlock-ro</c>).</summary>
    public LandlockBuilder AllowRead(params string[] paths) => AllowPaths(paths, ReadAccess);

    /// <summary>Allow reading and executing beneath each of <paramref name="paths"/>.</summary>
    public LandlockBuilder AllowExecute(params string[] paths) => AllowPaths(paths, ExecuteAccess);

    /// <summary>Allow reading and writing beneath each of <paramref name="paths"/> (the isolate CLI's <c>--landlock-rw</c>).</summary>
    public LandlockBuilder AllowReadWrite(params string[] paths) => AllowPaths(paths, ReadWriteAccess);

    /// <summary>Allow exactly <paramref name="access"/> beneath <paramref name="path"/>.</summary>
    public LandlockBuilder Allow(string path, LandlockFsAccess access)
    {
        Mounts.MountPlanBuilder.Checked(path, nameof(path));
        if (access == LandlockFsAccess.None || ((ulong)access & ~AllFs) != 0)
            throw new ArgumentOutOfRangeException(nameof(access), access, "Give one or more LandlockFsAccess rights.");
        _paths.Add((path, access));
        return this;
    }

    /// <summary>Restrict TCP: only the ports given to <see cref="AllowBindTcp"/> and <see cref="AllowConnectTcp"/> may be used (ABI 4).</summary>
    public LandlockBuilder RestrictTcp()
    {
        _restrictTcp = true;
        return this;
    }

    /// <summary>Allow bind(2) to these TCP ports (and restrict TCP to the listed ports, ABI 4).</summary>
    public LandlockBuilder AllowBindTcp(params ushort[] ports) => AllowPorts(ports, bind: true);

    /// <summary>Allow connect(2) to these TCP ports (and restrict TCP to the listed ports, ABI 4).</summary>
    public LandlockBuilder AllowConnectTcp(params ushort[] ports) => AllowPorts(ports, bind: false);

    /// <summary>Forbid signals to processes outside the sandbox's Landlock domain (ABI 6, <c>LANDLOCK_SCOPE_SIGNAL</c>).</summary>
    public LandlockBuilder ScopeSignals()
    {
        _scopeSignals = true;
        return this;
    }

    /// <summary>Forbid connecting to abstract Unix sockets outside the domain (ABI 6, <c>LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET</c>).</summary>
    public LandlockBuilder ScopeAbstractUnixSockets()
    {
        _scopeAbstractUnix = true;
        return this;
    }

    /// <summary>
    /// Handle no file-system access unless another <c>WithLandlock</c> call allows paths: the ruleset only scopes (<see cref="ScopeSignals"/>,
    /// <see cref="ScopeAbstractUnixSockets"/>) and, when ports are given, TCP. On a kernel without scopes (ABI
    /// below 6) and without TCP rules nothing is applied, and <see cref="IsolationSpec.LandlockAbi"/> says 0.
    /// </summary>
    public LandlockBuilder ScopesOnly()
    {
        _scopesOnly = true;
        return this;
    }

    /// <summary>
    /// Require at least this Landlock ABI: <see cref="NamespaceBuilder.Build"/> throws
    /// <see cref="PlatformNotSupportedException"/> on a host with less. Without it Landlock is best-effort:
    /// rights the host does not know are left out and <see cref="IsolationSpec.LandlockAbi"/> says what was applied.
    /// </summary>
    public LandlockBuilder Require(int minimumAbi = 1)
    {
        if (minimumAbi is < 1 or > LandlockPolicy.NewestAbi)
            throw new ArgumentOutOfRangeException(nameof(minimumAbi), minimumAbi, $"Landlock ABIs are 1 to {LandlockPolicy.NewestAbi}.");
        _requiredAbi = minimumAbi;
        return this;
    }

    internal const ulong AllFs = (1UL << 16) - 1;

    internal LandlockPolicy Build() =>
        new([.. _paths], [.. _ports], _restrictTcp || _ports.Count > 0, _scopeSignals, _scopeAbstractUnix, _requiredAbi) { ScopesOnly = _scopesOnly };

    private LandlockBuilder AllowPaths(string[] paths, LandlockFsAccess access)
    {
        ArgumentNullException.ThrowIfNull(paths);
        foreach (string path in paths)
            Allow(path, access);
        return this;
    }

    private LandlockBuilder AllowPorts(ushort[] ports, bool bind)
    {
        ArgumentNullException.ThrowIfNull(ports);
        foreach (ushort port in ports)
            _ports.Add((port, bind));
        return this;
    }
}

/// <summary>A Landlock ruleset as composed; <see cref="Handled"/> fits it to the host's ABI.</summary>
internal sealed record LandlockPolicy(
    ImmutableArray<(string Path, LandlockFsAccess Access)> Paths,
    ImmutableArray<(ushort Port, bool Bind)> Ports,
    bool RestrictTcp,
    bool ScopeSignals,
    bool ScopeAbstractUnix,
    int RequiredAbi)
{
    public const int NewestAbi = 7;

    /// <summary>No file-system right is handled (<see cref="LandlockBuilder.ScopesOnly"/>).</summary>
    public bool ScopesOnly { get; init; }
    public const ulong NetBindTcp = 1UL << 0;
    public const ulong NetConnectTcp = 1UL << 1;
    public const ulong ScopeAbstractUnixSocket = 1UL << 0;
    public const ulong ScopeSignal = 1UL << 1;

    /// <summary>The file-system rights an ABI knows (landlock(7), "Landlock ABI versions").</summary>
    public static ulong FsRights(int abi) => abi switch
    {
        <= 0 => 0,
        1 => (1UL << 13) - 1,
        2 => (1UL << 14) - 1,
        3 or 4 => (1UL << 15) - 1,
        _ => (1UL << 16) - 1,
    };

    /// <summary>The handled sets for <paramref name="abi"/>: fs rights handled, TCP handled when asked, scopes.</summary>
    public (ulong Fs, ulong Net, ulong Scoped) Handled(int abi) => (
        ScopesOnly ? 0 : FsRights(abi),
        RestrictTcp && abi >= 4 ? NetBindTcp | NetConnectTcp : 0,
        abi >= 6 ? (ScopeSignals ? ScopeSignal : 0) | (ScopeAbstractUnix ? ScopeAbstractUnixSocket : 0) : 0);
}
