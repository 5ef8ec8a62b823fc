using System.Runtime.InteropServices;

namespace Isolation.Interop;

/// <summary>The C shim (src/Isolation.Native). Layouts mirror isolation_native.h; keep them in sync.</summary>
internal static unsafe partial class Interop
{
    internal const string NativeLibrary = "libIsolationNative";
    internal const int AbiVersion = 5;

    internal const uint ISO_SPAWN_SET_IDS = 0x1;
    internal const uint ISO_SPAWN_NEW_SESSION = 0x2;
    internal const uint ISO_SPAWN_LOOPBACK_UP = 0x4;
    internal const uint ISO_SPAWN_WAIT_RELEASE = 0x8;
    internal const uint ISO_SPAWN_NO_CLONE3 = 0x10;
    internal const uint ISO_SPAWN_HOST_STEP = 0x20;
    internal const uint ISO_SPAWN_SET_GROUPS = 0x40;
    internal const uint ISO_SPAWN_CWD_FALLBACK = 0x80;
    internal const uint ISO_SPAWN_FORK = 0x100;
    internal const uint ISO_SPAWN_OWN_GROUP = 0x200;

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
        public int helper_pidfd;
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

    // --- the spawn helper (helper.c, parent.c) ---
    internal const uint ISO_MSG_SPAWN = 3;
    internal const int ISO_FD_STATUS = 1;
    internal const int ISO_FD_STDIO = 2;
    internal const int ISO_FD_CGROUP = 3;
    internal const int ISO_FD_INIT = 4;
    internal const int ISO_FD_OP = 5;
    internal const int ISO_FD_PASS = 6;
    internal const int ISO_FD_JOIN = 8;
    internal const int ISO_FD_JOIN_LATE = 9;
    internal const int ISO_MAX_SPAWN_FDS = 64;
    internal const uint ISO_REPLY_CLONED = 1;
    internal const uint ISO_REPLY_STARTED = 2;
    internal const uint ISO_REPLY_FAILED = 3;
    internal const uint ISO_REPLY_EXITED = 4;

    [StructLayout(LayoutKind.Sequential)]
    internal struct iso_fd_slot
    {
        public int role;
        public int arg;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct iso_spawn_msg
    {
        public uint kind;
        public uint spec_id;
        public uint flags;
        public int death_signal;
        public uint nfds;
        public uint argc;
        public uint strings_len;
        public uint reserved;
        public fixed long slots[ISO_MAX_SPAWN_FDS]; // iso_fd_slot[64]: see Slots
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct iso_reply
    {
        public uint kind;
        public int pid;
        public int used_clone3;
        public int code;
        public int status;
        public int rss_floor_kb;
        public iso_child_error error;
        public long user_us;
        public long sys_us;
        public long maxrss_kb;
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

    /// <returns>0 with the host's end of the helper's channel (close-on-exec, at 3 or above), the helper's pid and pidfd, and in <paramref name="nullErrno"/> 0 when the helper's stdio is /dev/null or the errno that opening /dev/null failed with (its stdio is then closed pipes, never to be given to a sandbox); -errno when it could not be started in any of the three ways (directly, through its ELF interpreter, from a memfd): the first failure.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_StartHelper")]
    internal static partial int IsolationNative_StartHelper(byte* path, int* channel, int* pid, int* pidfd, int* nullErrno);

    /// <returns>A handle of a helper start running on a thread of the shim's (<see cref="IsolationNative_EndStartHelper"/> takes it); 0 (errno set) when no thread could be made.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_BeginStartHelper", SetLastError = true)]
    internal static partial nint IsolationNative_BeginStartHelper(byte* path);

    /// <returns>Waits for the start behind <paramref name="handle"/> and frees it: what <see cref="IsolationNative_StartHelper"/> returned.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_EndStartHelper")]
    internal static partial int IsolationNative_EndStartHelper(nint handle, int* channel, int* pid, int* pidfd, int* nullErrno);

    /// <returns>0 with the calling thread's euid, egid, permitted capabilities and user, mount and PID namespace inodes in <paramref name="identity"/>[0..5]; -errno otherwise.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_Identity")]
    internal static partial int IsolationNative_Identity(ulong* identity);

    /// <returns>0 once the helper behind <paramref name="pidfd"/> has been reaped (or someone else reaped it); -errno otherwise. Closes <paramref name="pidfd"/>.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_ReapHelper")]
    internal static partial int IsolationNative_ReapHelper(int pidfd);

    /// <returns>0 when the spec part of <paramref name="template"/> was packed and sent as <paramref name="specId"/>; -errno (EPIPE, ECONNRESET: the helper is gone).</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_DefineSpec")]
    internal static partial int IsolationNative_DefineSpec(int channel, uint specId, iso_spawn_request* template, byte* setgroups, byte* uidMap, byte* gidMap);

    /// <returns>0 when sent; -errno otherwise (nothing to do then: the helper is gone).</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_ForgetSpec")]
    internal static partial int IsolationNative_ForgetSpec(int channel, uint specId);

    /// <returns>0 when the spawn message and its descriptors were sent; -errno (EPIPE, ECONNRESET: the helper is gone; the descriptors stay ours).</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_SendSpawn")]
    internal static partial int IsolationNative_SendSpawn(int channel, iso_spawn_msg* message, int* fds, byte* strings);

    /// <returns>0 with a new status socket pair (close-on-exec, both at 3 or above); -errno otherwise.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_StatusSocket")]
    internal static partial int IsolationNative_StatusSocket(int* hostEnd, int* helperEnd);

    /// <returns>1 with a reply (and <paramref name="fds"/>[0..1] the descriptors it carried, or -1 each); 0 at EOF (the helper is gone, or gave the spawn up); -EAGAIN when <paramref name="nonBlocking"/> and none is there yet; -errno otherwise.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_ReadReply")]
    internal static partial int IsolationNative_ReadReply(int statusFd, int nonBlocking, iso_reply* reply, int* fds);

    /// <returns>0 when the child reached execve (EOF on its error pipe); 1 when it reported <paramref name="error"/>; -errno on a read error (-EPROTO: a short record). Closes <paramref name="errorFd"/>.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_WaitExec")]
    internal static partial int IsolationNative_WaitExec(int errorFd, iso_child_error* error);

    /// <returns>0 when the helper was told to release the child; -errno otherwise.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_Continue")]
    internal static partial int IsolationNative_Continue(int statusFd);

    /// <returns>0 when all of <paramref name="text"/> was written to /proc/PID/NAME; -errno otherwise.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_WriteProcFile")]
    internal static partial int IsolationNative_WriteProcFile(int pid, byte* name, byte* text, nuint length);

    /// <returns>0 when the signal was sent; -errno (ESRCH once the process has been reaped).</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_PidfdSendSignal")]
    internal static partial int IsolationNative_PidfdSendSignal(int pidfd, int signal);

    /// <returns>
    /// 0 when the signal was sent to the process group the sandbox leads; -ESRCH when none of it is left; -EINVAL on a
    /// kernel before 6.9 once the leader was reaped (<paramref name="leaderUnreaped"/> 0: the group cannot be named safely).
    /// </returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_SignalProcessGroup")]
    internal static partial int IsolationNative_SignalProcessGroup(int pidfd, int pid, int signal, int leaderUnreaped);

    /// <returns>A detached, idmapped clone of <paramref name="source"/> (close-on-exec); -errno on failure (EPERM without CAP_SYS_ADMIN over its file system).</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_OpenIdmappedTree")]
    internal static partial int IsolationNative_OpenIdmappedTree(byte* source, int usernsFd, int recursive, ulong attrSet);

    /// <returns>1 once <paramref name="fd"/> is readable (a status socket: a reply or EOF); 0 when <paramref name="timeoutMs"/> passed first; -errno otherwise.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_WaitReadable")]
    internal static partial int IsolationNative_WaitReadable(int fd, int timeoutMs);

    /// <summary>How <see cref="IsolationNative_OpenExecutable"/> made the file executable (ISO_EXEC_*).</summary>
    internal const int ISO_EXEC_MEMFD = 1, ISO_EXEC_TMPFILE = 2, ISO_EXEC_IN_PLACE = 3;

    /// <returns>
    /// A descriptor execveat(AT_EMPTY_PATH) runs: a sealed memfd copy of the file at <paramref name="path"/>, else an
    /// unnamed copy in a temp directory that allows exec, else (with <paramref name="inPlace"/>) an O_PATH descriptor of
    /// the file itself; <paramref name="how"/> says which. The memfd's -errno when every way failed.
    /// </returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_OpenExecutable")]
    internal static partial int IsolationNative_OpenExecutable(byte* path, int inPlace, int* how);

    /// <returns>The host's Landlock ABI version (1 or more); -EOPNOTSUPP when Landlock is built in but disabled at boot; -ENOSYS when the kernel lacks it.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_LandlockAbi")]
    internal static partial int IsolationNative_LandlockAbi();

    /// <returns>The file the shim is in: the library it was loaded from, or the executable that links it in; null when neither can be told.</returns>
    [LibraryImport(NativeLibrary, EntryPoint = "IsolationNative_LibraryPath")]
    internal static partial byte* IsolationNative_LibraryPath();
}
