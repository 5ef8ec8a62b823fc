using System.Runtime.InteropServices;

namespace Isolation.Interop;

/// <summary>The C shim (src/Isolation.Native). Layouts mirror isolation_native.h; keep them in sync.</summary>
internal static unsafe partial class Interop
{
    internal const string NativeLibrary = "libIsolationNative";
    internal const int AbiVersion = 2;

    internal const uint ISO_SPAWN_SET_IDS = 0x1;
    internal const uint ISO_SPAWN_NEW_SESSION = 0x2;
    internal const uint ISO_SPAWN_LOOPBACK_UP = 0x4;
    internal const uint ISO_SPAWN_WAIT_RELEASE = 0x8;
    internal const uint ISO_SPAWN_NO_CLONE3 = 0x10;
    internal const uint ISO_SPAWN_KEEP_FDS = 0x20;
    internal const uint ISO_SPAWN_SET_GROUPS = 0x40;
    internal const uint ISO_SPAWN_CWD_FALLBACK = 0x80;

    internal const ulong CLONE_NEWTIME = 0x80;

    [StructLayout(LayoutKind.Sequential)]
    internal struct iso_op
    {
        public uint kind;
        public uint flags;
        public ulong mount_flags;
        public byte* s1;
        public byte* s2;
        public byte* s3;
        public byte* s4;
        public long n1;
        public long n2;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct iso_spawn_request
    {
        public uint abi_version;
        public uint flags;
        public ulong clone_flags;
        public ulong unshare_flags;
        public byte* path;
        public byte** argv;
        public byte** envp;
        public byte* search_path;
        public byte* cwd;
        public fixed int stdio_fds[3];
        public int cgroup_fd;
        public uint uid;
        public uint gid;
        public uint ngroups;
        public uint* groups;
        public byte* hostname;
        public byte* domainname;
        public byte* timens_offsets;
        public ulong timens_offsets_len;
        public iso_op* ops;
        public uint nops;
        public int pdeath_signal;
        public int init_fd;
        public int reserved0;
        public byte** init_argv;
        public void* stack;
        public ulong stack_size;
        public byte* scratch;
        public ulong scratch_size;
        public iso_security* security;
        public int child_sync_fd;
        public int child_error_fd;
    }

    // --- security (child_security.c) ---
    internal const uint ISO_SEC_CAPS = 0x1;
    internal const uint ISO_SEC_SECUREBITS = 0x2;
    internal const uint ISO_SEC_NO_NEW_PRIVS = 0x4;
    internal const uint ISO_SEC_LANDLOCK = 0x8;
    internal const uint ISO_SEC_DISABLE_USERNS = 0x10;
    internal const uint ISO_SEC_KEEP_CAPS = 0x20;
    internal const uint ISO_SEC_EARLY_ROOT = 0x40;

    [StructLayout(LayoutKind.Sequential)]
    internal struct iso_sock_fprog
    {
        public ushort len;
        public ushort pad0;
        public ushort pad1;
        public ushort pad2;
        public void* filter;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct iso_landlock_path
    {
        public ulong allowed_access;
        public byte* path;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct iso_landlock_port
    {
        public ulong allowed_access;
        public ulong port;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct iso_security
    {
        public uint flags;
        public uint securebits;
        public ulong cap_bounding;
        public ulong cap_permitted;
        public ulong cap_effective;
        public ulong cap_inheritable;
        public ulong cap_ambient;
        public iso_sock_fprog* filters;
        public uint nfilters;
        public uint seccomp_flags;
        public ulong landlock_handled_fs;
        public ulong landlock_handled_net;
        public ulong landlock_scoped;
        public iso_landlock_path* landlock_paths;
        public iso_landlock_port* landlock_ports;
        public uint nlandlock_paths;
        public uint nlandlock_ports;
        public uint landlock_abi;
        public uint landlock_restrict_flags;
        public int* pass_fds;
        public uint npass_fds;
        public uint reserved1;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct iso_spawn_result
    {
        public int pid;
        public int pidfd;
        public int sync_fd;
        public int error_fd;
        public int used_clone3;
        public int reserved;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct iso_child_error
    {
        public int step;
        public int op_index;
        public int err;
        public int detail;
    }

    /// <returns>The shim's ABI version; must equal <see cref="AbiVersion"/>.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_AbiVersion")]
    internal static partial int IsolationNative_AbiVersion();

    /// <returns>0 with <paramref name="result"/> filled (the child waits on the sync pipe when asked to); -errno when clone3/clone or pipe2 failed (nothing is left open).</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_Spawn")]
    internal static partial int IsolationNative_Spawn(iso_spawn_request* request, iso_spawn_result* result);

    /// <returns>0 when the child was released; -errno when the write failed (the child then sees EOF and exits). Closes <paramref name="syncFd"/> either way.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_Release")]
    internal static partial int IsolationNative_Release(int syncFd);

    /// <returns>0 when the child reached execve; 1 when it reported <paramref name="error"/>; -errno on a read error. Closes <paramref name="errorFd"/>.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_WaitExec")]
    internal static partial int IsolationNative_WaitExec(int errorFd, iso_child_error* error);

    /// <returns>0 when all of <paramref name="text"/> was written to /proc/PID/NAME; -errno otherwise.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_WriteProcFile")]
    internal static partial int IsolationNative_WriteProcFile(int pid, byte* name, byte* text, nuint length);

    /// <returns>0 when the signal was sent; -errno (ESRCH once the process has been reaped).</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_PidfdSendSignal")]
    internal static partial int IsolationNative_PidfdSendSignal(int pidfd, int signal);

    /// <returns>A detached, idmapped clone of <paramref name="source"/> (close-on-exec); -errno on failure (EPERM without CAP_SYS_ADMIN over its file system).</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_OpenIdmappedTree")]
    internal static partial int IsolationNative_OpenIdmappedTree(byte* source, int usernsFd, int recursive, ulong attrSet);

    /// <returns>1 once the process has exited (pidfd readable); 0 when <paramref name="timeoutMs"/> passed first; -errno otherwise.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_WaitPidfd")]
    internal static partial int IsolationNative_WaitPidfd(int pidfd, int timeoutMs);

    /// <returns>0 when reaped (outputs filled); 1 when <paramref name="noHang"/> and still running; -errno otherwise.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_ReapPidfd")]
    internal static partial int IsolationNative_ReapPidfd(int pidfd, int noHang, int* code, int* status, long* userMicros, long* systemMicros, long* maxRssKb);

    /// <returns>A sealed memfd holding a copy of the file at <paramref name="path"/>; -errno on failure.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_OpenInitMemfd")]
    internal static partial int IsolationNative_OpenInitMemfd(byte* path);

    /// <returns>The host's Landlock ABI version (1 or more); -EOPNOTSUPP when Landlock is built in but disabled at boot; -ENOSYS when the kernel lacks it.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_LandlockAbi")]
    internal static partial int IsolationNative_LandlockAbi();

    /// <returns>The file the shim was loaded from, or null when dladdr cannot tell.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_LibraryPath")]
    internal static partial byte* IsolationNative_LibraryPath();
}
