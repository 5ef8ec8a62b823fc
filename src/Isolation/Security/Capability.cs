namespace Isolation.Security;

/// <summary>
/// Linux capabilities, numbered as in <c>linux/capability.h</c> and named exactly as in C
/// (capabilities(7)). Each is a slice of root's power; a sandbox keeps only the ones it needs.
/// </summary>
#pragma warning disable CA1707 // kernel names stay as in C (STYLE.md, Tmds.LibC's convention)
public enum Capability
{
    /// <summary>Change file owners (chown(2)).</summary>
    CAP_CHOWN = 0,
    /// <summary>Bypass file read, write and execute permission checks.</summary>
    CAP_DAC_OVERRIDE = 1,
    /// <summary>Bypass file read and directory search permission checks.</summary>
    CAP_DAC_READ_SEARCH = 2,
    /// <summary>Bypass checks that the file's owner is the caller.</summary>
    CAP_FOWNER = 3,
    /// <summary>Keep set-user-ID and set-group-ID bits on modification.</summary>
    CAP_FSETID = 4,
    /// <summary>Send signals to any process.</summary>
    CAP_KILL = 5,
    /// <summary>Change group ids.</summary>
    CAP_SETGID = 6,
    /// <summary>Change user ids.</summary>
    CAP_SETUID = 7,
    /// <summary>Change capability sets and securebits.</summary>
    CAP_SETPCAP = 8,
    /// <summary>Set the immutable and append-only file attributes.</summary>
    CAP_LINUX_IMMUTABLE = 9,
    /// <summary>Bind to ports below 1024.</summary>
    CAP_NET_BIND_SERVICE = 10,
    /// <summary>Broadcast and listen to multicast (unused by the kernel).</summary>
    CAP_NET_BROADCAST = 11,
    /// <summary>Network administration: interfaces, routes, firewall.</summary>
    CAP_NET_ADMIN = 12,
    /// <summary>Raw and packet sockets.</summary>
    CAP_NET_RAW = 13,
    /// <summary>Lock memory (mlock(2)).</summary>
    CAP_IPC_LOCK = 14,
    /// <summary>Bypass System V IPC permission checks.</summary>
    CAP_IPC_OWNER = 15,
    /// <summary>Load and unload kernel modules.</summary>
    CAP_SYS_MODULE = 16,
    /// <summary>Raw I/O: iopl(2), ioperm(2).</summary>
    CAP_SYS_RAWIO = 17,
    /// <summary>chroot(2).</summary>
    CAP_SYS_CHROOT = 18,
    /// <summary>ptrace(2) any process.</summary>
    CAP_SYS_PTRACE = 19,
    /// <summary>Configure process accounting.</summary>
    CAP_SYS_PACCT = 20,
    /// <summary>The catch-all administration capability: mount, namespaces, and much more.</summary>
    CAP_SYS_ADMIN = 21,
    /// <summary>reboot(2), kexec_load(2).</summary>
    CAP_SYS_BOOT = 22,
    /// <summary>Raise priorities and set other processes' scheduling.</summary>
    CAP_SYS_NICE = 23,
    /// <summary>Override resource limits and quotas.</summary>
    CAP_SYS_RESOURCE = 24,
    /// <summary>Set the system clock.</summary>
    CAP_SYS_TIME = 25,
    /// <summary>Configure terminals (vhangup(2)).</summary>
    CAP_SYS_TTY_CONFIG = 26,
    /// <summary>Create device files (mknod(2)).</summary>
    CAP_MKNOD = 27,
    /// <summary>Take file leases.</summary>
    CAP_LEASE = 28,
    /// <summary>Write the audit log.</summary>
    CAP_AUDIT_WRITE = 29,
    /// <summary>Configure auditing.</summary>
    CAP_AUDIT_CONTROL = 30,
    /// <summary>Set file capabilities.</summary>
    CAP_SETFCAP = 31,
    /// <summary>Override mandatory access control.</summary>
    CAP_MAC_OVERRIDE = 32,
    /// <summary>Configure mandatory access control.</summary>
    CAP_MAC_ADMIN = 33,
    /// <summary>Configure the kernel log (syslog(2)).</summary>
    CAP_SYSLOG = 34,
    /// <summary>Set wake alarms.</summary>
    CAP_WAKE_ALARM = 35,
    /// <summary>Block system suspend.</summary>
    CAP_BLOCK_SUSPEND = 36,
    /// <summary>Read the audit log.</summary>
    CAP_AUDIT_READ = 37,
    /// <summary>Privileged performance monitoring (perf_event_open(2)).</summary>
    CAP_PERFMON = 38,
    /// <summary>Privileged BPF operations (bpf(2)).</summary>
    CAP_BPF = 39,
    /// <summary>Checkpoint and restore (CRIU).</summary>
    CAP_CHECKPOINT_RESTORE = 40,
}
#pragma warning restore CA1707

/// <summary>Sets of <see cref="Capability"/> as the kernel's 64-bit masks, and parsing by name.</summary>
public static class Capabilities
{
    /// <summary>The highest capability this library knows (<c>CAP_LAST_CAP</c> of Linux 5.9 and later).</summary>
    public const Capability Last = Capability.CAP_CHECKPOINT_RESTORE;

    /// <summary>Every capability this library knows, as a mask.</summary>
    public const ulong All = (1UL << ((int)Last + 1)) - 1;

    /// <summary>
    /// Parses a capability name as bubblewrap, Docker and <c>capsh</c> write it: <c>CAP_NET_BIND_SERVICE</c>,
    /// <c>cap_net_bind_service</c> or <c>NET_BIND_SERVICE</c>. Throws <see cref="ArgumentException"/> for an
    /// unknown name, listing the valid ones.
    /// </summary>
    public static Capability Parse(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        string upper = name.Trim().ToUpperInvariant();
        if (!upper.StartsWith("CAP_", StringComparison.Ordinal))
            upper = "CAP_" + upper;
        if (Enum.TryParse(upper, ignoreCase: false, out Capability cap) && Enum.IsDefined(cap) && !char.IsAsciiDigit(upper[4]))
            return cap;
        throw new ArgumentException($"Unknown capability '{name}'. Use a name from capabilities(7) such as CAP_NET_BIND_SERVICE: {string.Join(", ", Enum.GetNames<Capability>())}.", nameof(name));
    }

    /// <summary>The mask of <paramref name="capabilities"/>.</summary>
    public static ulong ToMask(IEnumerable<Capability> capabilities)
    {
        ArgumentNullException.ThrowIfNull(capabilities);
        ulong mask = 0;
        foreach (Capability cap in capabilities)
        {
            if (!Enum.IsDefined(cap))
                throw new ArgumentOutOfRangeException(nameof(capabilities), cap, $"Not a capability; the kernel's are 0 to {(int)Last}.");
            mask |= 1UL << (int)cap;
        }
        return mask;
    }

    /// <summary>The capabilities in <paramref name="mask"/>, lowest first (for example to read <c>CapEff</c> from <c>/proc/PID/status</c>).</summary>
    public static IReadOnlyList<Capability> FromMask(ulong mask) =>
        Enumerable.Range(0, 64).Where(i => (mask & (1UL << i)) != 0 && i <= (int)Last).Select(i => (Capability)i).ToArray();
}

/// <summary>
/// The securebits flags (capabilities(7), "The securebits flags"), set with <c>prctl(PR_SET_SECUREBITS)</c>.
/// A <c>*_LOCKED</c> bit makes its partner permanent for the process and its descendants.
/// </summary>
[Flags]
#pragma warning disable CA1707, CA1711
public enum SecureBits
{
    /// <summary>No bit set.</summary>
    None = 0,
    /// <summary>uid 0 gets no capabilities from execve(2) or from being root.</summary>
    SECBIT_NOROOT = 1 << 0,
    /// <summary>Lock <see cref="SECBIT_NOROOT"/>.</summary>
    SECBIT_NOROOT_LOCKED = 1 << 1,
    /// <summary>Changing uids to or from 0 does not adjust the capability sets.</summary>
    SECBIT_NO_SETUID_FIXUP = 1 << 2,
    /// <summary>Lock <see cref="SECBIT_NO_SETUID_FIXUP"/>.</summary>
    SECBIT_NO_SETUID_FIXUP_LOCKED = 1 << 3,
    /// <summary>Keep permitted capabilities when all uids change from 0 (cleared by execve).</summary>
    SECBIT_KEEP_CAPS = 1 << 4,
    /// <summary>Lock <see cref="SECBIT_KEEP_CAPS"/>.</summary>
    SECBIT_KEEP_CAPS_LOCKED = 1 << 5,
    /// <summary>Forbid raising ambient capabilities.</summary>
    SECBIT_NO_CAP_AMBIENT_RAISE = 1 << 6,
    /// <summary>Lock <see cref="SECBIT_NO_CAP_AMBIENT_RAISE"/>.</summary>
    SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 7,
}
#pragma warning restore CA1707, CA1711
