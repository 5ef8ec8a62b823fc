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

    internal MountPlanBuilder(IEnumerable<MountOperation> operations, string? root, bool readOnlyRoot, MountPropagation propagation)
    {
        _operations = [.. operations];
        RootPath = root;
        ReadOnlyRoot = readOnlyRoot;
        Propagation = propagation;
    }

    internal IReadOnlyList<MountOperation> Operations => _operations;
    internal string? RootPath { get; private set; }
    internal bool ReadOnlyRoot { get; private set; }
    internal MountPropagation Propagation { get; private set; }

    /// <summary>Mount a new proc file system (like <c>unshare --mount-proc</c>, bubblewrap's <c>--proc</c>). Needs PID and mount namespaces.</summary>
    public MountPlanBuilder Proc(string target = "/proc") =>
        Add(new(NativeOpKind.Mount, $"proc on {Checked(target)}", "proc", target, "proc", null,
            (ulong)(MS_NOSUID | MS_NODEV | MS_NOEXEC), NativeOpFlags.MakeTarget));

    /// <summary>Mount sysfs (bubblewrap's <c>--bind /sys /sys</c> is the usual alternative). Needs a network namespace to show the sandbox's own devices.</summary>
    public MountPlanBuilder Sysfs(string target = "/sys") =>
        Add(new(NativeOpKind.Mount, $"sysfs on {Checked(target)}", "sysfs", target, "sysfs", null,
            (ulong)(MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY), NativeOpFlags.MakeTarget));

    /// <summary>Mount a tmpfs (bubblewrap's <c>--tmpfs</c>, <c>--size</c>, <c>--perms</c>).</summary>
    /// <param name="target">Where to mount it.</param>
    /// <param name="sizeBytes">Size limit in bytes, or null for the kernel's default (half of RAM).</param>
    /// <param name="mode">Permissions of its root directory.</param>
    public MountPlanBuilder Tmpfs(string target, long? sizeBytes = null, int mode = 0x1ED /* 0755 */)
    {
        if (sizeBytes is <= 0)
            throw new ArgumentOutOfRangeException(nameof(sizeBytes), sizeBytes, "A tmpfs size must be positive; pass null for the kernel's default.");
        CheckMode(mode);
        string data = sizeBytes is null ? $"mode={Convert.ToString(mode, 8)}" : $"mode={Convert.ToString(mode, 8)},size={sizeBytes}";
        return Add(new(NativeOpKind.Mount, $"tmpfs on {Checked(target)}", "tmpfs", target, "tmpfs", data,
            (ulong)(MS_NOSUID | MS_NODEV), NativeOpFlags.MakeTarget));
    }

    /// <summary>Mount a POSIX message queue file system (bubblewrap's <c>--mqueue</c>). Needs an IPC namespace.</summary>
    public MountPlanBuilder Mqueue(string target = "/dev/mqueue") =>
        Add(new(NativeOpKind.Mount, $"mqueue on {Checked(target)}", "mqueue", target, "mqueue", null,
            (ulong)(MS_NOSUID | MS_NODEV | MS_NOEXEC), NativeOpFlags.MakeTarget));

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

    /// <summary>Create a directory and its parents (bubblewrap's <c>--dir</c>).</summary>
    public MountPlanBuilder Dir(string path, int mode = 0x1ED /* 0755 */)
    {
        CheckMode(mode);
        return Add(new(NativeOpKind.Mkdir, $"dir {Checked(path)}", Target: path, N1: mode));
    }

    /// <summary>Create a symbolic link at <paramref name="path"/> pointing to <paramref name="target"/> (bubblewrap's <c>--symlink</c>).</summary>
    public MountPlanBuilder Symlink(string target, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(target);
        CheckNul(target, nameof(target));
        return Add(new(NativeOpKind.Symlink, $"symlink {Checked(path)} -> {target}", target, path, Flags: NativeOpFlags.MakeTarget));
    }

    /// <summary>Create a file holding <paramref name="contents"/> (bubblewrap's <c>--file</c>).</summary>
    public MountPlanBuilder File(string path, string contents, int mode = 0x1A4 /* 0644 */) =>
        File(path, Encoding.UTF8.GetBytes(contents ?? throw new ArgumentNullException(nameof(contents))), mode);

    /// <summary>Create a file holding <paramref name="contents"/> (bubblewrap's <c>--file</c>).</summary>
    public MountPlanBuilder File(string path, byte[] contents, int mode = 0x1A4 /* 0644 */)
    {
        ArgumentNullException.ThrowIfNull(contents);
        CheckMode(mode);
        return Add(new(NativeOpKind.WriteFile, $"file {Checked(path)}", Target: path, N1: mode, N2: contents.Length, Contents: contents));
    }

    /// <summary>Change the permissions of a path (bubblewrap's <c>--chmod</c>).</summary>
    public MountPlanBuilder Chmod(string path, int mode)
    {
        CheckMode(mode);
        return Add(new(NativeOpKind.Chmod, $"chmod {Convert.ToString(mode, 8)} {Checked(path)}", Target: path, N1: mode));
    }

    /// <summary>Make an existing mount read-only (bubblewrap's <c>--remount-ro</c>).</summary>
    public MountPlanBuilder RemountReadOnly(string path) =>
        Add(new(NativeOpKind.Remount, $"remount read-only {Checked(path)}", Target: path, Flags: NativeOpFlags.ReadOnly));

    /// <summary>
    /// Make <paramref name="newRoot"/> (a host directory) the sandbox's root with pivot_root(2) and detach
    /// the old root, so nothing of the host is reachable except what is bound in. Every target of this
    /// plan is then a path inside the new root.
    /// </summary>
    public MountPlanBuilder Root(string newRoot, bool readOnly = false)
    {
        Checked(newRoot);
        RootPath = newRoot;
        ReadOnlyRoot = readOnly;
        return this;
    }

    /// <summary>Set the propagation of the sandbox's mounts (<c>unshare --propagation</c>).</summary>
    public MountPlanBuilder WithPropagation(MountPropagation propagation)
    {
        if (!Enum.IsDefined(propagation))
            throw new ArgumentOutOfRangeException(nameof(propagation));
        Propagation = propagation;
        return this;
    }

    private MountPlanBuilder AddBind(string source, string target, bool readOnly, bool optional, bool devices)
    {
        Checked(source);
        Checked(target);
        string verb = devices ? "dev-bind" : readOnly ? "ro-bind" : "bind";
        ulong flags = (ulong)MS_NOSUID | (devices ? 0UL : (ulong)MS_NODEV);
        NativeOpFlags opFlags = NativeOpFlags.Recursive | NativeOpFlags.MakeTarget
            | (readOnly ? NativeOpFlags.ReadOnly : 0) | (optional ? NativeOpFlags.Optional : 0);
        return Add(new(NativeOpKind.Bind, $"{verb} {source} on {target}", source, target, MountFlags: flags, Flags: opFlags));
    }

    private MountPlanBuilder Add(MountOperation operation)
    {
        _operations.Add(operation);
        return this;
    }

    internal static string Checked(string path, string? paramName = "path")
    {
        ArgumentException.ThrowIfNullOrEmpty(path, paramName);
        CheckNul(path, paramName);
        if (path[0] != '/')
            throw new ArgumentException($"Mount path '{path}' is relative; mount plans take absolute paths such as '/{path}'.", paramName);
        return path;
    }

    private static void CheckNul(string value, string? paramName)
    {
        if (value.Contains('\0'))
            throw new ArgumentException($"Path '{value.Replace("\0", "\\0")}' contains a NUL character; paths cannot hold NUL.", paramName);
    }

    private static void CheckMode(int mode)
    {
        if (mode is < 0 or > 0xFFF)
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "A mode is 0 to 07777 (octal); write it as 0x1ED or Convert.ToInt32(\"755\", 8).");
    }
}
