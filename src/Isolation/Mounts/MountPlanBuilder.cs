using System.Collections.Immutable;
using System.Text;
using static Tmds.Linux.LibC;

namespace Isolation.Mounts;

/// <summary>
/// Composes the mount plan: an ordered list of operations the sandbox carries out in its new mount
/// namespace before the program runs. Used through <see cref="NamespaceBuilder.WithMounts"/>. Targets are
/// absolute paths; after <see cref="Root"/>, they are paths inside the new root.
/// </summary>
public sealed class MountPlanBuilder
{
    private readonly List<MountOperation> _operations;
    private int _calls;

    /// <summary><see cref="RootPath"/> when the root is an empty tmpfs (<see cref="EmptyRoot"/>). Holds a NUL, so no user path equals it.</summary>
    internal const string TmpfsRoot = "\0tmpfs";

    /// <summary>What container engines hide by default (runc's and Docker's masked paths): an empty read-only directory or /dev/null over each.</summary>
    public static IReadOnlyList<string> DefaultMaskedPaths { get; } =
    [
        "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ];

    /// <summary>What container engines make read-only by default (runc's and Docker's read-only paths).</summary>
    public static IReadOnlyList<string> DefaultReadOnlyPaths { get; } =
        ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

    internal MountPlanBuilder(IEnumerable<MountOperation> operations, string? root, bool readOnlyRoot, MountPropagation propagation)
    {
        _operations = [.. operations];
        _calls = _operations.Count == 0 ? 0 : _operations.Max(o => o.Call);
        RootPath = root;
        ReadOnlyRoot = readOnlyRoot;
        Propagation = propagation;
    }

    internal IReadOnlyList<MountOperation> Operations => _operations;
    internal string? RootPath { get; private set; }
    internal bool ReadOnlyRoot { get; private set; }
    internal MountPropagation Propagation { get; private set; }

    /// <summary>Mount a new proc file system (like <c>unshare --mount-proc</c>, bubblewrap's <c>--proc</c>). Needs PID and mount namespaces.</summary>
    /// <param name="target">Where to mount it.</param>
    /// <param name="callerPidNamespace">Show the caller's PID namespace, without <see cref="Namespaces.Pid"/> (bubblewrap's
    /// <c>--proc</c> without <c>--unshare-pid</c>): the program then sees, and can name, the host's processes. The kernel
    /// allows it only without a new user namespace (CAP_SYS_ADMIN over the PID namespace's owner, that is root).</param>
    public MountPlanBuilder Proc(string target = "/proc", bool callerPidNamespace = false)
    {
        target = Checked(target, nameof(target));
        return Add(new MountOperation(NativeOpKind.Mount, $"proc on {target}", "proc", target, "proc", null,
            (ulong)(MS_NOSUID | MS_NODEV | MS_NOEXEC), NativeOpFlags.MakeTarget) { CallerPidNamespace = callerPidNamespace });
    }

    /// <summary>Mount sysfs, read-only (bubblewrap's <c>--bind /sys /sys</c> is the usual alternative). Needs a network namespace to show the sandbox's own devices.</summary>
    public MountPlanBuilder Sysfs(string target = "/sys")
    {
        target = Checked(target, nameof(target));
        return Add(new MountOperation(NativeOpKind.Mount, $"sysfs on {target}", "sysfs", target, "sysfs", null,
            (ulong)(MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY), NativeOpFlags.MakeTarget));
    }

    /// <summary>Mount a tmpfs (bubblewrap's <c>--tmpfs</c>, <c>--size</c>, <c>--perms</c>).</summary>
    /// <param name="target">Where to mount it.</param>
    /// <param name="sizeBytes">Size limit in bytes, or null for the kernel's default (half of RAM).</param>
    /// <param name="mode">Permissions of its root directory.</param>
    public MountPlanBuilder Tmpfs(string target, long? sizeBytes = null, UnixFileMode mode = Mode0755)
    {
        if (sizeBytes is <= 0)
            throw new ArgumentOutOfRangeException(nameof(sizeBytes), sizeBytes, "A tmpfs size must be positive; pass null for the kernel's default.");
        CheckMode(mode);
        target = Checked(target, nameof(target));
        return Add(TmpfsOp(target, sizeBytes, (int)mode, (ulong)(MS_NOSUID | MS_NODEV)));
    }

    /// <inheritdoc cref="Tmpfs(string, long?, UnixFileMode)"/>
    [Obsolete(IntModeObsolete)]
    public MountPlanBuilder Tmpfs(string target, long? sizeBytes, int mode) => Tmpfs(target, sizeBytes, IntMode(mode));

    /// <summary>Mount a POSIX message queue file system (bubblewrap's <c>--mqueue</c>). Needs an IPC namespace.</summary>
    public MountPlanBuilder Mqueue(string target = "/dev/mqueue")
    {
        target = Checked(target, nameof(target));
        return Add(new MountOperation(NativeOpKind.Mount, $"mqueue on {target}", "mqueue", target, "mqueue", null,
            (ulong)(MS_NOSUID | MS_NODEV | MS_NOEXEC), NativeOpFlags.MakeTarget));
    }

    /// <summary>
    /// Mount a new devpts instance (its own pseudo-terminals, invisible to the host's) and point
    /// <c>ptmx</c> in its parent directory at it, as bubblewrap's <c>--dev</c> does.
    /// </summary>
    public MountPlanBuilder Devpts(string target = "/dev/pts")
    {
        target = Checked(target, nameof(target));
        return Add(DevptsOps(target));
    }

    /// <summary>
    /// A minimal <c>/dev</c> (bubblewrap's <c>--dev</c>): a tmpfs holding null, zero, full, random, urandom and
    /// tty bound from the host; a new devpts on <c>pts</c> with <c>ptmx</c> pointing into it; a tmpfs on
    /// <c>shm</c>; and the <c>fd</c>, <c>stdin</c>, <c>stdout</c>, <c>stderr</c> and <c>core</c> symlinks.
    /// </summary>
    public MountPlanBuilder Dev(string target = "/dev")
    {
        target = Checked(target, nameof(target));
        string dir = target == "/" ? "" : target;
        var ops = new List<MountOperation> { TmpfsOp(target, null, 0x1ED, (ulong)(MS_NOSUID | MS_NODEV)) with { Description = $"dev on {target}: tmpfs" } };
        foreach (string node in (string[])["null", "zero", "full", "random", "urandom", "tty"])
        {
            ops.Add(new MountOperation(NativeOpKind.Bind, $"dev on {target}: bind /dev/{node}", $"/dev/{node}", $"{dir}/{node}",
                MountFlags: (ulong)MS_NOSUID, Flags: NativeOpFlags.MakeTarget));
        }
        ops.AddRange(DevptsOps($"{dir}/pts"));
        ops.Add(TmpfsOp($"{dir}/shm", null, 0x3FF /* 01777 */, (ulong)(MS_NOSUID | MS_NODEV)) with { Description = $"dev on {target}: tmpfs on {dir}/shm" });
        foreach ((string link, string to) in (ReadOnlySpan<(string, string)>)[("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore")])
        {
            ops.Add(new MountOperation(NativeOpKind.Symlink, $"dev on {target}: symlink {dir}/{link} -> {to}", to, $"{dir}/{link}", Flags: NativeOpFlags.MakeTarget));
        }
        return Add([.. ops]);
    }

    /// <summary>Bind a host path into the sandbox, recursively, without setuid or device files (bubblewrap's <c>--bind</c>).</summary>
    /// <param name="source">Host path.</param>
    /// <param name="target">Path in the sandbox.</param>
    /// <param name="readOnly">Make the bind and every mount under it read-only.</param>
    /// <param name="optional">Skip it when <paramref name="source"/> is missing (bubblewrap's <c>--bind-try</c>).</param>
    public MountPlanBuilder Bind(string source, string target, bool readOnly = false, bool optional = false) =>
        AddBind(source, target, readOnly, optional, devices: false);

    /// <summary>Bind a host path read-only, submounts included (bubblewrap's <c>--ro-bind</c>).</summary>
    public MountPlanBuilder BindReadOnly(string source, string target, bool optional = false) =>
        AddBind(source, target, readOnly: true, optional, devices: false);

    /// <summary>Bind a host path with device files usable (bubblewrap's <c>--dev-bind</c>).</summary>
    public MountPlanBuilder DevBind(string source, string target, bool optional = false) =>
        AddBind(source, target, readOnly: false, optional, devices: true);

    /// <summary>
    /// Bind a host path with its owners shifted through the sandbox's user namespace (an idmapped mount,
    /// mount_setattr(2) <c>MOUNT_ATTR_IDMAP</c>): with a map of 0 to host uid 100000, files the host's root
    /// owns appear owned by root inside. Needs <see cref="Namespaces.User"/>, a file system that supports
    /// idmapped mounts (ext4, xfs, btrfs, tmpfs) and CAP_SYS_ADMIN over it (root on the host).
    /// </summary>
    public MountPlanBuilder IdmappedBind(string source, string target, bool readOnly = false)
    {
        source = Checked(source, nameof(source));
        target = Checked(target, nameof(target));
        return Add(new MountOperation(NativeOpKind.Idmap, $"idmapped bind {source} on {target}", source, target,
            MountFlags: (ulong)(MS_NOSUID | MS_NODEV),
            Flags: NativeOpFlags.Recursive | NativeOpFlags.MakeTarget | (readOnly ? NativeOpFlags.ReadOnly : 0)));
    }

    /// <summary>
    /// Mount an overlay on <paramref name="target"/> (bubblewrap's <c>--overlay</c>): <paramref name="lowerDirs"/>
    /// (host paths, top layer first) under a persistent <paramref name="upperDir"/> that receives every write,
    /// with <paramref name="workDir"/> (an empty directory on the same file system) for overlayfs's own use.
    /// With <see cref="Root"/>, target "/" overlays the new root itself.
    /// </summary>
    public MountPlanBuilder Overlay(string target, IEnumerable<string> lowerDirs, string upperDir, string workDir)
    {
        target = Checked(target, nameof(target));
        ImmutableArray<string> layers = CheckedLayers(lowerDirs, 1);
        upperDir = Checked(upperDir, nameof(upperDir));
        workDir = Checked(workDir, nameof(workDir));
        if (upperDir == workDir || workDir.StartsWith(upperDir + "/", StringComparison.Ordinal) || upperDir.StartsWith(workDir + "/", StringComparison.Ordinal))
            throw new ArgumentException($"The overlay's work directory '{workDir}' and upper directory '{upperDir}' must be separate directories (siblings on the same file system).", nameof(workDir));
        return Add(new MountOperation(NativeOpKind.Overlay, $"overlay on {target} (upper {upperDir})", Target: target,
            Flags: NativeOpFlags.MakeTarget) { Layers = layers, UpperDir = upperDir, WorkDir = workDir });
    }

    /// <summary>
    /// Mount an overlay whose writes go to a tmpfs and vanish with the sandbox (bubblewrap's
    /// <c>--tmp-overlay</c>): the way <c>docker run --rm</c> treats an image's layers.
    /// </summary>
    /// <param name="target">Where to mount it ("/" with <see cref="Root"/> overlays the new root).</param>
    /// <param name="lowerDirs">Host directories, top layer first.</param>
    /// <param name="sizeBytes">Size limit of the tmpfs, or null for the kernel's default.</param>
    public MountPlanBuilder TmpOverlay(string target, IEnumerable<string> lowerDirs, long? sizeBytes = null)
    {
        if (sizeBytes is <= 0)
            throw new ArgumentOutOfRangeException(nameof(sizeBytes), sizeBytes, "A tmpfs size must be positive; pass null for the kernel's default.");
        target = Checked(target, nameof(target));
        ImmutableArray<string> layers = CheckedLayers(lowerDirs, 1);
        return Add(new MountOperation(NativeOpKind.Overlay, $"tmp-overlay on {target}", Target: target,
            Flags: NativeOpFlags.MakeTarget | NativeOpFlags.TmpfsUpper, N1: sizeBytes ?? 0) { Layers = layers });
    }

    /// <summary>
    /// Mount a read-only overlay of <paramref name="lowerDirs"/> (bubblewrap's <c>--ro-overlay</c>). One layer
    /// is a read-only bind (overlayfs needs two lower layers when there is no upper one).
    /// </summary>
    public MountPlanBuilder ReadOnlyOverlay(string target, IEnumerable<string> lowerDirs)
    {
        target = Checked(target, nameof(target));
        ImmutableArray<string> layers = CheckedLayers(lowerDirs, 1);
        if (layers.Length == 1)
        {
            return Add(new MountOperation(NativeOpKind.Bind, $"ro-overlay {layers[0]} on {target}", layers[0], target,
                MountFlags: (ulong)(MS_NOSUID | MS_NODEV), Flags: NativeOpFlags.Recursive | NativeOpFlags.MakeTarget | NativeOpFlags.ReadOnly));
        }
        return Add(new MountOperation(NativeOpKind.Overlay, $"ro-overlay on {target}", Target: target,
            MountFlags: (ulong)MS_RDONLY, Flags: NativeOpFlags.MakeTarget) { Layers = layers });
    }

    /// <summary>
    /// Hide paths: an empty read-only tmpfs over a directory, <c>/dev/null</c> over a file; missing paths are
    /// skipped. Paths are inside the sandbox (after <see cref="Root"/>, inside the new root). Put it after the
    /// mounts it hides parts of (<see cref="Proc"/>, <see cref="Sysfs"/>).
    /// </summary>
    public MountPlanBuilder MaskPaths(params IEnumerable<string> paths)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var ops = new List<MountOperation>();
        foreach (string path in paths)
        {
            string p = Checked(path, nameof(paths));
            ops.Add(new MountOperation(NativeOpKind.Mask, $"mask {p}", "/dev/null", p));
        }
        return ops.Count == 0 ? throw new ArgumentException("MaskPaths needs at least one path.", nameof(paths)) : Add([.. ops]);
    }

    /// <summary>Make paths inside the sandbox read-only, submounts included; missing paths are skipped. Put it after the mounts they belong to.</summary>
    public MountPlanBuilder ReadOnlyPaths(params IEnumerable<string> paths)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var ops = new List<MountOperation>();
        foreach (string path in paths)
        {
            string p = Checked(path, nameof(paths));
            ops.Add(new MountOperation(NativeOpKind.Bind, $"read-only {p}", p, p,
                Flags: NativeOpFlags.Recursive | NativeOpFlags.ReadOnly | NativeOpFlags.Optional) { SourceInsideRoot = true });
        }
        return ops.Count == 0 ? throw new ArgumentException("ReadOnlyPaths needs at least one path.", nameof(paths)) : Add([.. ops]);
    }

    /// <summary>Mask <see cref="DefaultMaskedPaths"/> and freeze <see cref="DefaultReadOnlyPaths"/>, as container engines do. Call it after <see cref="Proc"/> and <see cref="Sysfs"/>.</summary>
    public MountPlanBuilder ContainerDefaults() => MaskPaths(DefaultMaskedPaths).ReadOnlyPaths(DefaultReadOnlyPaths);

    /// <summary>Set the propagation of the mount at <paramref name="path"/> inside the sandbox (mount_namespaces(7)), and of the mounts under it when <paramref name="recursive"/>.</summary>
    public MountPlanBuilder SetPropagation(string path, MountPropagation propagation, bool recursive = true)
    {
        path = Checked(path, nameof(path));
        if (propagation is not (MountPropagation.Private or MountPropagation.Slave or MountPropagation.Shared))
            throw new ArgumentOutOfRangeException(nameof(propagation), propagation, "Choose Private, Slave or Shared for a mount's propagation.");
        (ulong flag, string name) = propagation.ToMountFlag();
        return Add(new MountOperation(NativeOpKind.Propagation, $"make {path} {name}", Target: path, MountFlags: (recursive ? (ulong)MS_REC : 0) | flag));
    }

    /// <summary>Create a directory and its parents (bubblewrap's <c>--dir</c>); parents get 0755, the directory <paramref name="mode"/> when it is created.</summary>
    public MountPlanBuilder Dir(string path, UnixFileMode mode = Mode0755)
    {
        CheckMode(mode);
        path = Checked(path);
        return Add(new MountOperation(NativeOpKind.Mkdir, $"dir {path}", Target: path, N1: (int)mode));
    }

    /// <inheritdoc cref="Dir(string, UnixFileMode)"/>
    [Obsolete(IntModeObsolete)]
    public MountPlanBuilder Dir(string path, int mode) => Dir(path, IntMode(mode));

    /// <summary>Create a symbolic link at <paramref name="path"/> pointing to <paramref name="target"/> (bubblewrap's <c>--symlink</c>). An existing link with the same target is fine.</summary>
    public MountPlanBuilder Symlink(string target, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(target);
        CheckNul(target, nameof(target));
        path = Checked(path);
        return Add(new MountOperation(NativeOpKind.Symlink, $"symlink {path} -> {target}", target, path, Flags: NativeOpFlags.MakeTarget));
    }

    /// <summary>Create a file holding <paramref name="contents"/> (bubblewrap's <c>--file</c>).</summary>
    public MountPlanBuilder File(string path, string contents, UnixFileMode mode = Mode0644) =>
        File(path, Encoding.UTF8.GetBytes(contents ?? throw new ArgumentNullException(nameof(contents))), mode);

    /// <inheritdoc cref="File(string, string, UnixFileMode)"/>
    [Obsolete(IntModeObsolete)]
    public MountPlanBuilder File(string path, string contents, int mode) => File(path, contents, IntMode(mode));

    /// <summary>Create a file holding <paramref name="contents"/> (bubblewrap's <c>--file</c>), with exactly <paramref name="mode"/>.</summary>
    public MountPlanBuilder File(string path, byte[] contents, UnixFileMode mode = Mode0644)
    {
        ArgumentNullException.ThrowIfNull(contents);
        CheckMode(mode);
        path = Checked(path);
        return Add(new MountOperation(NativeOpKind.WriteFile, $"file {path}", Target: path, N1: (int)mode, N2: contents.Length, Contents: contents));
    }

    /// <inheritdoc cref="File(string, byte[], UnixFileMode)"/>
    [Obsolete(IntModeObsolete)]
    public MountPlanBuilder File(string path, byte[] contents, int mode) => File(path, contents, IntMode(mode));

    /// <summary>
    /// Create a file with what can be read from <paramref name="fd"/> until end of file (bubblewrap's
    /// <c>--file FD</c>). The descriptor must stay open until <see cref="IsolationSpec.Start"/> returns and is
    /// read once: a spec holding this op suits one start.
    /// </summary>
    public MountPlanBuilder FileFromDescriptor(string path, int fd, UnixFileMode mode = Mode0644)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        CheckMode(mode);
        path = Checked(path);
        return Add(new MountOperation(NativeOpKind.CopyFd, $"file {path} from fd {fd}", Target: path, N1: (int)mode, N2: fd));
    }

    /// <inheritdoc cref="FileFromDescriptor(string, int, UnixFileMode)"/>
    [Obsolete(IntModeObsolete)]
    public MountPlanBuilder FileFromDescriptor(string path, int fd, int mode) => FileFromDescriptor(path, fd, IntMode(mode));

    /// <summary>Change the permissions of a path (bubblewrap's <c>--chmod</c>).</summary>
    public MountPlanBuilder Chmod(string path, UnixFileMode mode)
    {
        CheckMode(mode);
        path = Checked(path);
        return Add(new MountOperation(NativeOpKind.Chmod, $"chmod {Convert.ToString((int)mode, 8)} {path}", Target: path, N1: (int)mode));
    }

    /// <inheritdoc cref="Chmod(string, UnixFileMode)"/>
    [Obsolete(IntModeObsolete)]
    public MountPlanBuilder Chmod(string path, int mode) => Chmod(path, IntMode(mode));

    /// <summary>Make an existing mount read-only, submounts included (bubblewrap's <c>--remount-ro</c>).</summary>
    public MountPlanBuilder RemountReadOnly(string path)
    {
        path = Checked(path);
        return Add(new MountOperation(NativeOpKind.Remount, $"remount read-only {path}", Target: path, Flags: NativeOpFlags.ReadOnly | NativeOpFlags.Recursive));
    }

    /// <summary>
    /// Make <paramref name="newRoot"/> (a host directory) the sandbox's root with pivot_root(2) and detach
    /// the old root, so nothing of the host is reachable except what is bound in. Every target of this
    /// plan is then a path inside the new root, resolved without leaving it: a symlink in the image such as
    /// <c>proc -> /etc</c> points at the root's own <c>/etc</c>, never the host's (openat2(2) <c>RESOLVE_IN_ROOT</c>).
    /// </summary>
    /// <param name="newRoot">The host directory to use as root.</param>
    /// <param name="readOnly">Make the root mount read-only once everything is mounted (mounts on it keep their own flags).</param>
    public MountPlanBuilder Root(string newRoot, bool readOnly = false)
    {
        RootPath = Checked(newRoot, nameof(newRoot));
        ReadOnlyRoot = readOnly;
        return this;
    }

    /// <summary>
    /// Make an empty tmpfs the sandbox's root, as bubblewrap does: nothing of the host is visible except what
    /// the plan binds in (<c>Bind("/usr", "/usr")</c>, <c>Bind("/", "/")</c>...).
    /// </summary>
    public MountPlanBuilder EmptyRoot(bool readOnly = false)
    {
        RootPath = TmpfsRoot;
        ReadOnlyRoot = readOnly;
        return this;
    }

    /// <summary>Set the propagation of the sandbox's mounts (<c>unshare --propagation</c>).</summary>
    public MountPlanBuilder WithPropagation(MountPropagation propagation)
    {
        if (propagation is not (MountPropagation.Private or MountPropagation.Slave or MountPropagation.Shared or MountPropagation.Unchanged)) // not Enum.IsDefined: reflection, slow to start under NativeAOT
            throw new ArgumentOutOfRangeException(nameof(propagation));
        Propagation = propagation;
        return this;
    }

    private static MountOperation TmpfsOp(string target, long? sizeBytes, int mode, ulong flags)
    {
        string data = sizeBytes is null ? $"mode={Convert.ToString(mode, 8)}" : $"mode={Convert.ToString(mode, 8)},size={sizeBytes}";
        return new MountOperation(NativeOpKind.Mount, $"tmpfs on {target}", "tmpfs", target, "tmpfs", data, flags, NativeOpFlags.MakeTarget);
    }

    private static MountOperation[] DevptsOps(string target)
    {
        string parent = target[..target.LastIndexOf('/')];
        return
        [
            new MountOperation(NativeOpKind.Mount, $"devpts on {target}", "devpts", target, "devpts", "newinstance,ptmxmode=0666,mode=620",
                (ulong)(MS_NOSUID | MS_NOEXEC), NativeOpFlags.MakeTarget),
            new MountOperation(NativeOpKind.Symlink, $"symlink {parent}/ptmx -> pts/ptmx", "pts/ptmx", $"{parent}/ptmx", Flags: NativeOpFlags.MakeTarget),
        ];
    }

    private static ImmutableArray<string> CheckedLayers(IEnumerable<string> lowerDirs, int minimum)
    {
        ArgumentNullException.ThrowIfNull(lowerDirs);
        ImmutableArray<string> layers = [.. lowerDirs.Select(d => Checked(d, nameof(lowerDirs)))];
        if (layers.Length < minimum)
            throw new ArgumentException($"An overlay needs at least {minimum} lower director{(minimum == 1 ? "y" : "ies")}.", nameof(lowerDirs));
        if (layers.Length > MaxLayers)
            throw new ArgumentException($"An overlay takes at most {MaxLayers} lower directories; merge some layers first.", nameof(lowerDirs));
        return layers;
    }

    /// <summary>The shim's ISO_MAX_LOWER.</summary>
    internal const int MaxLayers = 64;

    private MountPlanBuilder AddBind(string source, string target, bool readOnly, bool optional, bool devices)
    {
        source = Checked(source, nameof(source));
        target = Checked(target, nameof(target));
        string verb = devices ? "dev-bind" : readOnly ? "ro-bind" : "bind";
        ulong flags = (ulong)MS_NOSUID | (devices ? 0UL : (ulong)MS_NODEV);
        NativeOpFlags opFlags = NativeOpFlags.Recursive | NativeOpFlags.MakeTarget
            | (readOnly ? NativeOpFlags.ReadOnly : 0) | (optional ? NativeOpFlags.Optional : 0);
        return Add(new MountOperation(NativeOpKind.Bind, $"{verb} {source} on {target}", source, target, MountFlags: flags, Flags: opFlags));
    }

    /// <summary>Adds the operations one builder call produced; errors then name that call ("mount #3").</summary>
    private MountPlanBuilder Add(params ReadOnlySpan<MountOperation> operations)
    {
        _calls++;
        foreach (MountOperation operation in operations)
            _operations.Add(operation with { Call = _calls });
        return this;
    }

    internal static string Checked(string path, string? paramName = "path")
    {
        ArgumentException.ThrowIfNullOrEmpty(path, paramName);
        CheckNul(path, paramName);
        if (path[0] != '/')
            throw new ArgumentException($"Mount path '{path}' is relative; mount plans take absolute paths such as '/{path}'.", paramName);
        return path.Length > 1 ? path.TrimEnd('/') is { Length: > 0 } trimmed ? trimmed : "/" : path;
    }

    private static void CheckNul(string value, string? paramName)
    {
        if (value.Contains('\0'))
            throw new ArgumentException($"Path '{value.Replace("\0", "\\0")}' contains a NUL character; paths cannot hold NUL.", paramName);
    }

    private static void CheckMode(UnixFileMode mode)
    {
        if ((int)mode is < 0 or > 0xFFF)
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "A mode is 0 to 07777 (octal): combine UnixFileMode flags, or write (UnixFileMode)0x1ED or Convert.ToInt32(\"755\", 8).");
    }

    /// <summary>0755 and 0644: the defaults, as <see cref="UnixFileMode"/> flags.</summary>
    internal const UnixFileMode Mode0755 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
        | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
    internal const UnixFileMode Mode0644 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;

    private const string IntModeObsolete = "Pass the mode as UnixFileMode: an int literal such as 755 is decimal (octal 1363). Write UnixFileMode flags, (UnixFileMode)0x1ED, or Convert.ToInt32(\"755\", 8) cast to UnixFileMode.";

    /// <summary>The obsolete int overloads: the same range check, then the number as a mode.</summary>
    private static UnixFileMode IntMode(int mode)
    {
        if (mode is < 0 or > 0xFFF)
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "A mode is 0 to 07777 (octal); an int literal such as 755 is decimal: pass UnixFileMode instead.");
        return (UnixFileMode)mode;
    }
}
