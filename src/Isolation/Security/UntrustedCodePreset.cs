using Isolation.IdMaps;
using Isolation.Mounts;
using static Tmds.Linux.LibC;

namespace Isolation.Security;

/// <summary>
/// The preset behind <see cref="NamespaceBuilder.ForUntrustedCode"/>. Each choice, and why:
/// <list type="bullet">
/// <item><b>Namespaces</b> user, PID, mount, IPC, UTS, network and cgroup: the program sees its own processes
/// only (it cannot signal or ptrace the host's), no network but a loopback, its own IPC objects and host name.</item>
/// <item><b>Identity</b>: uid and gid 0 inside a user namespace, mapped to the caller when unprivileged and, when the
/// caller is root, to a block of 65536 host ids of its own (IdMaps/IdBlocks.cs; not <c>nobody</c>, whom host
/// daemons know), so that whatever escapes the file-system view lands without
/// the host's root. Root inside holds capabilities only over the sandbox's own namespaces, and not even those
/// (below).</item>
/// <item><b>File system</b>: pivot_root into an empty tmpfs, made read-only after setup; <c>/usr</c> and the
/// <c>/bin</c>, <c>/lib</c>... links, a few files of <c>/etc</c> (loader cache, passwd, group, hosts,
/// alternatives, certificates) bound read-only, nosuid and nodev; a fresh <c>/proc</c> with
/// <c>/proc/sys</c>, <c>/proc/sysrq-trigger</c>, <c>/proc/irq</c>, <c>/proc/bus</c> and <c>/proc/fs</c>
/// read-only and <c>/proc/kcore</c>, <c>/proc/keys</c>, <c>/proc/timer_list</c>... masked (as container
/// engines do); a <c>/dev</c> with null, zero, full, random, urandom and tty only; writable tmpfs on
/// <c>/tmp</c> and <c>/dev/shm</c>. The host's root is detached: no <c>..</c>, <c>/proc/1/root</c> or
/// <c>chroot</c> trick leads back to it, and no host descriptor is inherited (only stdio).</item>
/// <item><b>Setup as the namespace's root</b>: the child becomes uid 0 of its user namespace (the mapped,
/// unprivileged host uid) before the mount plan, so a symlink planted in a shared directory by earlier
/// sandboxed code cannot turn a setup write into a write as the caller (CVE-2021-30465 class).</item>
/// <item><b>Capabilities</b>: all five sets empty, securebits <c>NOROOT</c>, <c>NO_SETUID_FIXUP</c>,
/// <c>KEEP_CAPS</c> off and <c>NO_CAP_AMBIENT_RAISE</c>, all locked: root gains nothing from execve.</item>
/// <item><b>no_new_privs</b>: setuid binaries and file capabilities grant nothing.</item>
/// <item><b>seccomp</b>: <see cref="Seccomp.SeccompProfile.Default"/> (no keyrings, bpf, perf, mount, new
/// namespaces, ptrace, module loading, TIOCSTI...).</item>
/// <item><b>Nested user namespaces disabled</b>: the usual first step of kernel exploits is to regain a full
/// capability set in a fresh user namespace.</item>
/// <item><b>New session</b>: the program is not in the caller's terminal session, so it cannot push
/// keystrokes into it with TIOCSTI (CVE-2017-5226) even without seccomp.</item>
/// <item><b>Death with the parent</b>: SIGKILL when the caller dies, so no sandbox outlives its owner.</item>
/// <item><b>Environment</b>: cleared except PATH, HOME=/tmp, TMPDIR=/tmp and LANG: the caller's variables
/// often hold secrets.</item>
/// <item><b>Resource limits</b>: a cgroup with pids and memory limits (best effort, see
/// <see cref="ApplyResourceLimits"/>), so a fork storm or a memory hog stays inside the sandbox.</item>
/// </list>
/// Not defended: bugs in the kernel itself (the sandbox shares the host's kernel; seccomp and the
/// disabled user namespaces shrink the surface, they do not remove it), side channels (timing, caches,
/// Spectre-class attacks), and resource exhaustion where the host gives the caller no cgroup delegation.
/// </summary>
public static class UntrustedCodePreset
{
    /// <summary>The sandbox's host name.</summary>
    public const string Hostname = "sandbox";

    /// <summary>The preset's namespaces: every one but time.</summary>
    public const Namespaces AllNamespaces = Namespaces.User | Namespaces.Pid | Namespaces.Mount | Namespaces.Ipc
        | Namespaces.Uts | Namespaces.Net | Namespaces.Cgroup;

    /// <summary>The size of every tmpfs the preset mounts, or the caller's plan mounts without a size (Docker's /dev/shm default).</summary>
    public const long DefaultTmpfsSize = 64L * 1024 * 1024;

    /// <summary>The PATH inside.</summary>
    public const string SearchPath = "/usr/local/bin:/usr/bin:/bin";

    /// <summary>
    /// A task limit that stops fork storms: pids.max, or RLIMIT_NPROC where no cgroup can be had. Both count
    /// threads as well as processes; 256 leaves room for runtimes that start many (a .NET program starts about
    /// 15–25 threads, a JVM on a 64-CPU host about 100). Change it with
    /// <c>.WithCgroup(c =&gt; c.PidsMax(1024).BestEffort())</c> after the preset.
    /// </summary>
    public const int DefaultPidsMax = 256;

    /// <summary>A memory limit: for the cgroup hook.</summary>
    public const long DefaultMemoryMax = 512L * 1024 * 1024;

    private static readonly string[] EtcFiles =
        ["/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
         "/etc/hosts", "/etc/localtime", "/etc/alternatives", "/etc/ssl", "/etc/ca-certificates"];

    /// <summary>Applies the preset to <paramref name="builder"/> (replacing its namespaces, identity and security; appending to its mounts).</summary>
    public static NamespaceBuilder Apply(NamespaceBuilder builder) =>
        ApplyResourceLimits(ApplyProcessRestrictions(builder).WithWorkingDirectory("/").WithMounts(Mounts));

    /// <summary>
    /// The preset without its file system and limits, for a caller that builds the sandbox's root itself
    /// (<c>isolate bwrap --untrusted</c>): every namespace but time, an identity that is never host root (a
    /// block of host ids of its own for a root caller, the caller's uid for an unprivileged one, 0 inside),
    /// host name, new session, death with the caller, a cleared environment and every process restriction.
    /// Add the mounts, then <see cref="MaskHostRuntimePaths"/> after each bind of host directories.
    /// </summary>
    public static NamespaceBuilder ApplyProcessRestrictions(NamespaceBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        NamespaceBuilder b = builder.WithNamespaces(AllNamespaces);
        if (geteuid() == 0)
        {
            // A block of host ids of its own (podman's --userns=auto): not nobody, whom host daemons know,
            // and not an id another sandbox runs as.
            uint block = IdBlocks.Allocate();
            b = b.MapUsers(0, block, IdBlocks.Size).MapGroups(0, block, IdBlocks.Size);
        }
        else
        {
            b = b.MapCurrentUserToRoot();
        }
        return b.RunAs(0, 0) // setresuid inside: the program's credentials are the mapped ones, never the host's
            .WithHostname(Hostname)
            .WithNewSession()
            .WithDieWithParent()
            .WithDefaultTmpfsSize(DefaultTmpfsSize)
            .WithEnvironment(e => e.Clear().Set("PATH", SearchPath).Set("HOME", "/tmp").Set("TMPDIR", "/tmp").Set("LANG", "C.UTF-8"))
            .WithSecurity(s => s
                .DropAllCapabilities()
                .WithSecureBits(SecureBits.SECBIT_NOROOT | SecureBits.SECBIT_NOROOT_LOCKED
                    | SecureBits.SECBIT_NO_SETUID_FIXUP | SecureBits.SECBIT_NO_SETUID_FIXUP_LOCKED
                    | SecureBits.SECBIT_KEEP_CAPS_LOCKED
                    | SecureBits.SECBIT_NO_CAP_AMBIENT_RAISE | SecureBits.SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED)
                .NoNewPrivileges()
                .WithDefaultSeccomp()
                .DisableNestedUserNamespaces()
                // Landlock ABI 6 where the kernel has it: no abstract unix socket and no signal outside the sandbox.
                .WithLandlock(l => l.ScopesOnly().ScopeAbstractUnixSockets().ScopeSignals())
                .SetUpAsNamespaceRoot());
    }

    /// <summary>
    /// The caller's runtime directories and the well-known daemon sockets: a read-only bind does not stop
    /// <c>connect()</c> on a unix socket, and a network namespace hides only abstract ones. The .NET
    /// diagnostics socket of every .NET process lives in <c>$TMPDIR</c> (default /tmp).
    /// </summary>
    public static IReadOnlyList<string> HostRuntimePaths
    {
        get
        {
            var paths = new List<string> { "/run", "/var/run", "/tmp", "/var/tmp", "/dev/shm", "/var/lib/docker", "/var/lib/containerd" };
            foreach (string name in (string[])["XDG_RUNTIME_DIR", "TMPDIR"])
            {
                if (Environment.GetEnvironmentVariable(name) is { Length: > 1 } dir && dir.StartsWith('/'))
                    paths.Add(dir.TrimEnd('/'));
            }
            return [.. paths.Distinct()];
        }
    }

    /// <summary>
    /// Masks (an empty read-only tmpfs) every <see cref="HostRuntimePaths"/> entry that a bind of host
    /// <paramref name="source"/> on <paramref name="target"/> brings into the sandbox below the bind: call it right
    /// after the bind, so that a later mount (a fresh <c>Tmpfs("/tmp")</c>) still goes on top. A path bound on
    /// its own, exactly, is the caller's explicit choice and is left alone.
    /// </summary>
    public static MountPlanBuilder MaskHostRuntimePaths(MountPlanBuilder m, string source, string target)
    {
        ArgumentNullException.ThrowIfNull(m);
        string s = source.TrimEnd('/'), t = target.TrimEnd('/');
        var masks = new List<string>();
        foreach (string path in HostRuntimePaths)
        {
            if (path.StartsWith(s + "/", StringComparison.Ordinal))
                masks.Add(t + path[s.Length..]);
        }
        return masks.Count == 0 ? m : m.MaskPaths(masks);
    }

    /// <summary>
    /// The preset's resource limits: a cgroup of its own with pids.max <see cref="DefaultPidsMax"/> (a fork
    /// storm stops there) and memory.max <see cref="DefaultMemoryMax"/> (a memory hog is OOM-killed inside
    /// the sandbox, and the exit status says <see cref="TerminationReason.OutOfMemory"/>). Best effort: where
    /// the caller has no cgroup delegation the sandbox runs without the cgroup and
    /// <see cref="IsolatedProcess.CgroupError"/> says why; its tasks are then bounded by RLIMIT_NPROC
    /// <see cref="DefaultPidsMax"/> instead (<see cref="Cgroups.CgroupBuilder.FallBackToRlimit"/>, where the kernel counts it
    /// per user namespace), and its memory by nothing but the tmpfs sizes (RLIMIT_AS would break .NET, the JVM, Go
    /// and V8). <see cref="IsolatedProcess.Limits"/> says what holds. Your own <c>WithCgroup(...)</c> limits are
    /// required unless that call says <c>BestEffort()</c>.
    /// </summary>
    public static NamespaceBuilder ApplyResourceLimits(NamespaceBuilder builder) =>
        builder.WithCgroup(c => c.PidsMax(DefaultPidsMax).MemoryMax(DefaultMemoryMax).BestEffort().FallBackToRlimit());

    private static void Mounts(MountPlanBuilder m)
    {
        // An empty tmpfs root, read-only once built: nothing of the host is reachable but what is bound in.
        m.EmptyRoot(readOnly: true);
        foreach (string top in new[] { "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32" })
        {
            var info = new FileInfo(top);
            if (info.LinkTarget is { } link)
                m.Symlink(link, top);
            else if (Directory.Exists(top))
                m.BindReadOnly(top, top);
        }
        m.BindReadOnly("/usr", "/usr");
        foreach (string path in EtcFiles)
            m.BindReadOnly(path, path, optional: true);
        m.Tmpfs("/tmp", mode: (UnixFileMode)0x3FF /* 01777 */)
            .Dev("/dev")
            .Proc("/proc")
            .ContainerDefaults(); // container engines' masked and read-only /proc and /sys paths
    }
}
