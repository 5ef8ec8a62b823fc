using System.Collections.Immutable;
using Isolation.Interop;
using Isolation.Security.Seccomp;
using static Isolation.Interop.Interop;

namespace Isolation.Security;

/// <summary>
/// Validates a <see cref="SecurityPolicy"/> against the rest of the composition and compiles it once into a
/// native <c>struct iso_security</c> (isolation_native.h) that every spawn of the spec points at.
/// </summary>
internal static unsafe class SecurityCompiler
{
    private const int CAP_SYS_ADMIN = (int)Capability.CAP_SYS_ADMIN;

    /// <summary>Throws <see cref="ArgumentException"/> for combinations the kernel would refuse; called from Build() before any system call.</summary>
    public static void Validate(BuilderState s)
    {
        SecurityPolicy p = s.Security;
        if (p.IsEmpty)
            return;
        if (p.DisableUserNamespaces && !s.Namespaces.HasFlag(Namespaces.User))
            throw new ArgumentException("DisableNestedUserNamespaces() requires Namespaces.User: the limit is set in the sandbox's own user namespace (without one it would change the host's). Add Namespaces.User to WithNamespaces(...).");
        bool filters = !p.SeccompProfiles.IsEmpty || !p.SeccompPrograms.IsEmpty;
        bool keepsSysAdmin = p.KeepCapabilities is not { } keep || (keep & (1UL << CAP_SYS_ADMIN)) != 0;
        if ((filters || p.Landlock is not null) && !p.NoNewPrivileges && !keepsSysAdmin)
            throw new ArgumentException($"{(filters ? "A seccomp filter" : "A Landlock ruleset")} requires NoNewPrivileges() when CAP_SYS_ADMIN is dropped (seccomp(2), landlock_restrict_self(2)). Add s.NoNewPrivileges() to WithSecurity(...).");
        if (p.EarlyRoot && (!s.Namespaces.HasFlag(Namespaces.User) || s.Uid != 0 || s.Gid != 0))
            throw new ArgumentException("Setup as the namespace's root requires Namespaces.User and RunAs(0, 0).");
        if (p.SecureBits is not null && p.KeepCapabilities is null)
            throw new ArgumentException("WithSecureBits(...) requires a capability choice: call DropAllCapabilities(), KeepCapabilities(...) or DropCapabilities(...) as well.");
        foreach (int fd in p.PassFds)
        {
            if (Tmds.Linux.LibC.fcntl(fd, Tmds.Linux.LibC.F_GETFD) < 0)
                throw new ArgumentException($"PassFileDescriptors: descriptor {fd} is not open in this process; open it before Build().");
        }
        foreach (SeccompProfile profile in p.SeccompProfiles)
            profile.Compile(); // throws ArgumentException for unknown names or an oversized program
    }

    /// <summary>Compiles the policy into its own native block; null when the policy changes nothing.</summary>
    public static CompiledSecurity? Compile(BuilderState s)
    {
        SecurityPolicy p = s.Security;
        if (p.IsEmpty)
            return null;

        ImmutableArray<SeccompProgram> programs = [.. p.SeccompProfiles.Select(profile => profile.Compile()), .. p.SeccompPrograms];
        (int abi, LandlockPolicy? landlock) = FitLandlock(p.Landlock);
        var paths = new List<(string Path, ulong Access)>();
        var ports = new List<(ulong Port, ulong Access)>();
        (ulong Fs, ulong Net, ulong Scoped) handled = default;
        if (landlock is not null && landlock.Handled(abi) == default)
            (abi, landlock) = (0, null); // scopes only, on a kernel without them: nothing to restrict
        if (landlock is not null)
        {
            handled = landlock.Handled(abi);
            foreach ((string path, LandlockFsAccess access) in landlock.Paths)
            {
                ulong allowed = (ulong)access & handled.Fs;
                if (allowed != 0)
                    paths.Add((path, allowed));
            }
            if (handled.Net != 0)
            {
                foreach ((ushort port, bool bind) in landlock.Ports)
                    ports.Add((port, bind ? LandlockPolicy.NetBindTcp : LandlockPolicy.NetConnectTcp));
            }
        }

        nuint size = NativeBlock.MeasureArray<iso_security>(1)
            + NativeBlock.MeasureArray<iso_sock_fprog>(programs.Length)
            + NativeBlock.MeasureArray<iso_landlock_path>(paths.Count)
            + NativeBlock.MeasureArray<iso_landlock_port>(ports.Count)
            + NativeBlock.MeasureArray<int>(p.PassFds.Length);
        foreach (SeccompProgram program in programs)
            size += NativeBlock.MeasureBytes(program.Instructions.Length * 8);
        foreach ((string path, _) in paths)
            size += NativeBlock.MeasureString(path);

        NativeBlock block = NativeBlock.Allocate(size);
        var handle = new NativeBlockHandle(block);
        iso_security* sec = block.TakeArray<iso_security>(1);
        *sec = default;

        if (p.KeepCapabilities is { } keep)
        {
            // capabilities(7): the bounding set caps what execve can ever grant; permitted, effective and
            // inheritable hold the kept ones; ambient carries them over execve for a non-root uid.
            bool ambientForbidden = p.SecureBits is { } bits && bits.HasFlag(SecureBits.SECBIT_NO_CAP_AMBIENT_RAISE);
            sec->flags |= ISO_SEC_CAPS;
            sec->cap_bounding = keep;
            sec->cap_permitted = keep;
            sec->cap_effective = keep;
            sec->cap_inheritable = keep;
            sec->cap_ambient = ambientForbidden ? 0 : keep;
            if (s.Uid is { } uid && uid != 0)
                sec->flags |= ISO_SEC_KEEP_CAPS;
        }
        if (p.SecureBits is { } secureBits)
        {
            sec->flags |= ISO_SEC_SECUREBITS;
            sec->securebits = (uint)secureBits;
        }
        if (p.NoNewPrivileges)
            sec->flags |= ISO_SEC_NO_NEW_PRIVS;
        if (p.DisableUserNamespaces)
            sec->flags |= ISO_SEC_DISABLE_USERNS;
        if (p.EarlyRoot)
            sec->flags |= ISO_SEC_EARLY_ROOT;

        sec->npass_fds = (uint)p.PassFds.Length;
        sec->pass_fds = block.TakeArray<int>(p.PassFds.Length);
        for (int i = 0; i < p.PassFds.Length; i++)
            sec->pass_fds[i] = p.PassFds[i];

        sec->nfilters = (uint)programs.Length;
        sec->filters = block.TakeArray<iso_sock_fprog>(programs.Length);
        for (int i = 0; i < programs.Length; i++)
        {
            byte[] bytes = programs[i].ToBytes();
            sec->filters[i] = new iso_sock_fprog { len = (ushort)programs[i].Instructions.Length, filter = block.Bytes(bytes) };
            sec->seccomp_flags |= programs[i].FilterFlags;
        }

        if (landlock is not null)
        {
            sec->flags |= ISO_SEC_LANDLOCK;
            sec->landlock_abi = (uint)abi;
            sec->landlock_handled_fs = handled.Fs;
            sec->landlock_handled_net = handled.Net;
            sec->landlock_scoped = handled.Scoped;
            sec->nlandlock_paths = (uint)paths.Count;
            sec->landlock_paths = block.TakeArray<iso_landlock_path>(paths.Count);
            for (int i = 0; i < paths.Count; i++)
                sec->landlock_paths[i] = new iso_landlock_path { allowed_access = paths[i].Access, path = block.String(paths[i].Path) };
            sec->nlandlock_ports = (uint)ports.Count;
            sec->landlock_ports = block.TakeArray<iso_landlock_port>(ports.Count);
            for (int i = 0; i < ports.Count; i++)
                sec->landlock_ports[i] = new iso_landlock_port { allowed_access = ports[i].Access, port = ports[i].Port };
        }

        return new CompiledSecurity(handle, sec, landlock is null ? 0 : abi, [.. paths.Select(x => x.Path)], ports.Count, programs.Length);
    }

    /// <summary>The host's Landlock ABI, or 0 when the kernel has none (or it is disabled at boot).</summary>
    public static int HostLandlockAbi()
    {
        int abi = IsolationNative_LandlockAbi();
        return abi > 0 ? abi : 0;
    }

    private static (int Abi, LandlockPolicy? Policy) FitLandlock(LandlockPolicy? policy) =>
        policy is null ? (0, null) : FitLandlock(policy, HostLandlockAbi());

    /// <summary>Best effort down to <paramref name="host"/>'s ABI, or the error when the policy requires more.</summary>
    internal static (int Abi, LandlockPolicy? Policy) FitLandlock(LandlockPolicy policy, int host)
    {
        if (policy.RequiredAbi > 0 && host < policy.RequiredAbi)
        {
            throw new PlatformNotSupportedException(host == 0
                ? "Landlock is required but this kernel does not offer it (CONFIG_SECURITY_LANDLOCK, and 'landlock' in the lsm= boot parameter). Drop Require() to run without it."
                : $"Landlock ABI {policy.RequiredAbi} is required but this kernel offers ABI {host}. Lower Require(...) or drop it for best effort.");
        }
        if (host == 0)
            return (0, null); // best effort: nothing to apply; IsolationSpec.LandlockAbi reports 0
        return (Math.Min(host, LandlockPolicy.NewestAbi), policy);
    }

    /// <summary>The exception for a failed security step, with what to do about it.</summary>
    public static SandboxSetupException Failed(SetupStep step, int index, int errno, CompiledSecurity? security)
    {
        const int EPERM = 1, EACCES = 13, ENOENT = 2, EINVAL = 22, ENOSPC = 28, EROFS = 30;
        string? landlockPath = step == SetupStep.Landlock && security is not null && index >= 0 && index < security.LandlockPaths.Length
            ? security.LandlockPaths[index] : null;
        (string what, string? hint) = step switch
        {
            SetupStep.UserNamespaceLimit => ("write /proc/sys/user/max_user_namespaces", errno == EROFS || errno == EACCES || errno == EPERM
                ? "the sandbox's user namespace must own its limit: DisableNestedUserNamespaces needs Namespaces.User and a writable /proc/sys at that point" : null),
            SetupStep.NestedUserNamespace => ("create the nested user namespace" + (index switch
            {
                0 => " (unshare)", 1 => " (PR_SET_DUMPABLE)", 2 => " (write setgroups)", 3 => " (write uid_map)", 4 => " (write gid_map)", _ => "",
            }), errno == ENOSPC
                ? "user.max_user_namespaces is exhausted on the host or in an enclosing namespace" : null),
            SetupStep.SecurityIdentity => ("switch to uid 0 of the sandbox's user namespace before setup", errno == EINVAL ? "uid and gid 0 must be mapped in the sandbox's user namespace" : null),
            SetupStep.CapabilityBoundingSet => ($"drop {(index >= 0 ? ((Capability)index).ToString() : "a capability")} from the bounding set",
                errno == EPERM ? "dropping from the bounding set needs CAP_SETPCAP; run in a user namespace or as root" : null),
            SetupStep.SecureBits => ("prctl(PR_SET_SECUREBITS)", errno == EPERM ? "setting securebits needs CAP_SETPCAP, and a locked bit cannot change" : null),
            SetupStep.Capabilities => ("capset", null),
            SetupStep.AmbientCapabilities => ($"raise {(index >= 0 ? ((Capability)index).ToString() : "a capability")} in the ambient set",
                errno == EPERM ? "an ambient capability must be permitted and inheritable, and SECBIT_NO_CAP_AMBIENT_RAISE must be clear" : null),
            SetupStep.NoNewPrivileges => ("prctl(PR_SET_NO_NEW_PRIVS)", null),
            SetupStep.Landlock => (landlockPath is not null ? $"Landlock rule for {landlockPath}" : "enforce the Landlock ruleset", errno switch
            {
                _ when errno == ENOENT => "the path does not exist inside the sandbox; Landlock paths are looked up after pivot_root",
                _ when errno == EPERM => "landlock_restrict_self needs no_new_privs or CAP_SYS_ADMIN: add NoNewPrivileges()",
                _ when errno == EINVAL => "a right does not apply to this kind of file",
                _ => null,
            }),
            SetupStep.Seccomp => ($"load seccomp filter #{index + 1}", errno switch
            {
                _ when errno == EACCES || errno == EPERM => "loading a filter needs no_new_privs or CAP_SYS_ADMIN: add NoNewPrivileges()",
                _ when errno == EINVAL => "the kernel rejected the BPF program (malformed, or an unsupported return action)",
                _ => null,
            }),
            _ => (step.ToString(), null),
        };
        return new SandboxSetupException(step, what, errno, landlockPath, hint);
    }
}

/// <summary>A policy compiled into native memory, owned by one <see cref="IsolationSpec"/>.</summary>
internal sealed unsafe class CompiledSecurity(NativeBlockHandle handle, iso_security* native, int landlockAbi, ImmutableArray<string> landlockPaths, int landlockPorts, int filters)
{
    private readonly NativeBlockHandle _handle = handle;

    public iso_security* Native
    {
        get
        {
            GC.KeepAlive(_handle);
            return native;
        }
    }

    /// <summary>The Landlock ABI the ruleset was reduced to; 0 when no ruleset is applied.</summary>
    public int LandlockAbi { get; } = landlockAbi;

    public ImmutableArray<string> LandlockPaths { get; } = landlockPaths;

    public int LandlockPorts { get; } = landlockPorts;

    public int SeccompFilters { get; } = filters;
}
