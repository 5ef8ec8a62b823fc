namespace Isolation.Platform;

/// <summary>
/// The kernel version each feature needs, checked by <see cref="NamespaceBuilder.Build"/> so that an old kernel
/// fails with one sentence naming the feature and the version, not with ENOSYS from the middle of a sandbox's
/// setup. Features the library degrades on by itself (clone3 → clone, close_range → a loop, Landlock's ABI,
/// cgroup.kill) are not listed.
/// </summary>
internal static class KernelRequirements
{
    /// <summary>Every sandbox: pidfds (pidfd_open 5.3) and waiting on them (waitid P_PIDFD, 5.4).</summary>
    public static readonly Version Sandboxes = new(5, 4);

    /// <summary>Time namespaces (CLONE_NEWTIME, /proc/PID/timens_offsets).</summary>
    public static readonly Version TimeNamespaces = new(5, 6);

    /// <summary>Mount plans: openat2 (5.6), open_tree/move_mount (5.2), mount_setattr (5.12).</summary>
    public static readonly Version MountPlans = new(5, 12);

    /// <summary>This kernel's version (uname's release, e.g. 6.1.0 for "6.1.0-18-amd64").</summary>
    public static Version Current { get; } = Environment.OSVersion.Version;

    /// <summary>Throws <see cref="PlatformNotSupportedException"/> when <paramref name="kernel"/> is older than a feature of <paramref name="state"/> needs.</summary>
    public static void Check(BuilderState state, Version kernel)
    {
        if (Unmet(state, kernel) is (string feature, Version minimum))
            throw new PlatformNotSupportedException($"{feature} needs Linux {minimum} or newer; this kernel is {kernel}.");
    }

    private static (string Feature, Version Minimum)? Unmet(BuilderState s, Version kernel)
    {
        if (kernel.Major == 0)
            return null; // the version could not be read: let the system calls decide
        if (kernel < Sandboxes)
            return ("Isolation (pidfds and waitid(P_PIDFD))", Sandboxes);
        if (s.Namespaces.HasFlag(Namespaces.Time) && kernel < TimeNamespaces)
            return ("A time namespace (Namespaces.Time, WithTimeOffsets)", TimeNamespaces);
        if ((s.Mounts.Length > 0 || s.Root is not null) && kernel < MountPlans)
            return ("A mount plan (WithMounts: openat2, open_tree, mount_setattr)", MountPlans);
        return null;
    }
}
