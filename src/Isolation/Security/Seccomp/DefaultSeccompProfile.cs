namespace Isolation.Security.Seccomp;

/// <summary>
/// The default profile for untrusted code (<see cref="SeccompProfile.Default"/>), modelled on the profiles
/// container engines ship: an allow-list of the system calls ordinary programs make; everything else fails
/// with EPERM. What it leaves out, and why:
/// <list type="bullet">
/// <item>Kernel keyrings (<c>keyctl</c>, <c>add_key</c>, <c>request_key</c>): not namespaced.</item>
/// <item><c>bpf</c>, <c>perf_event_open</c>, <c>userfaultfd</c>, <c>io_uring_*</c>: large attack surface, a
/// long history of privilege escalations.</item>
/// <item><c>ptrace</c>, <c>process_vm_readv/writev</c>, <c>kcmp</c>, <c>pidfd_getfd</c>: reading and steering other processes.</item>
/// <item>Mounting and namespaces (<c>mount</c>, <c>umount2</c>, the new mount API, <c>pivot_root</c>,
/// <c>chroot</c>, <c>unshare</c>, <c>setns</c>; <c>clone</c> with any <c>CLONE_NEW*</c> flag): the sandbox's
/// shape is fixed by its creator. <c>clone3</c> fails with ENOSYS, because its flags sit in memory a filter
/// cannot read; C libraries then fall back to <c>clone</c>, whose flags are checked.</item>
/// <item>Modules, kexec, reboot, swap, accounting, clocks, quotas, <c>syslog</c>, <c>iopl/ioperm</c>,
/// <c>open_by_handle_at</c> (the "shocker" escape), NUMA policy, <c>personality</c> beyond the usual values.</item>
/// <item><c>ioctl(TIOCSTI)</c> and <c>ioctl(TIOCLINUX)</c>: pushing keystrokes into a terminal. The command is
/// compared on its low 32 bits only, as the kernel reads it, so setting high bits does not slip past
/// (bubblewrap's CVE-2017-5226 and flatpak's CVE-2019-10063).</item>
/// </list>
/// </summary>
internal static class DefaultSeccompProfile
{
    private const int EPERM = 1;
    private const int ENOSYS = 38;

    // linux/sched.h: CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
    internal const ulong CloneNamespaceFlags = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;
    internal const ulong TIOCSTI = 0x5412;
    internal const ulong TIOCLINUX = 0x541C;

    internal static readonly string[] Allowed =
    [
        "accept", "accept4", "access", "alarm", "arch_prctl", "bind", "brk", "cachestat", "capget", "capset",
        "chdir", "chmod", "chown", "clock_getres", "clock_gettime", "clock_nanosleep", "close", "close_range",
        "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1",
        "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait", "eventfd", "eventfd2", "execve", "execveat",
        "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate", "fchdir", "fchmod", "fchmodat",
        "fchmodat2", "fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork",
        "fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate", "futex", "futex_requeue",
        "futex_wait", "futex_waitv", "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64",
        "getegid", "geteuid", "getgid", "getgroups", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid",
        "getppid", "getpriority", "getrandom", "getresgid", "getresuid", "getrlimit", "get_robust_list",
        "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid",
        "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
        "io_destroy", "io_getevents", "io_pgetevents", "ioprio_get", "ioprio_set", "io_setup", "io_submit",
        "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lgetxattr",
        "link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr", "lseek", "lsetxattr", "lstat",
        "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat",
        "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mprotect", "mq_getsetattr", "mq_notify",
        "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv",
        "msgsnd", "msync", "munlock", "munlockall", "munmap", "nanosleep", "newfstatat", "open", "openat",
        "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
        "pkey_mprotect", "poll", "ppoll", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
        "process_mrelease", "pselect6", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
        "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg", "remap_file_pages", "removexattr", "rename",
        "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
        "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
        "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
        "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity",
        "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl",
        "semget", "semop", "semtimedop", "sendfile", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsuid",
        "setgid", "setgroups", "setitimer", "setpgid", "setpriority", "setregid", "setresgid", "setresuid",
        "setreuid", "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area", "set_tid_address",
        "setuid", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd",
        "signalfd4", "socket", "socketpair", "splice", "stat", "statfs", "statx", "symlink", "symlinkat", "sync",
        "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
        "timer_getoverrun", "timer_gettime", "timer_settime", "timerfd_create", "timerfd_gettime",
        "timerfd_settime", "times", "tkill", "truncate", "umask", "uname", "unlink", "unlinkat", "utime",
        "utimensat", "utimes", "vfork", "vmsplice", "wait4", "waitid", "write", "writev",
    ];

    public static SeccompProfile Instance { get; } = Create();

    private static SeccompProfile Create()
    {
        SeccompProfile p = new SeccompProfile(SeccompAction.Errno(EPERM)).WithIgnoreUnknown();
        // Terminal injection first: these rules must win over the plain ioctl allow below.
        p = p.Rule("ioctl", SeccompAction.Errno(EPERM), SeccompArgument.MaskedEqual(1, 0xFFFFFFFF, TIOCSTI))
             .Rule("ioctl", SeccompAction.Errno(EPERM), SeccompArgument.MaskedEqual(1, 0xFFFFFFFF, TIOCLINUX))
             .Rule("ioctl", SeccompAction.Allow);
        // clone(2) flags are the first argument on x86-64 and aarch64.
        p = p.Rule("clone", SeccompAction.Allow, SeccompArgument.MaskedEqual(0, CloneNamespaceFlags, 0));
        p = p.Rule("clone3", SeccompAction.Errno(ENOSYS));
        // personality(2): only the values programs use (PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE, query).
        foreach (ulong persona in new ulong[] { 0x0, 0x8, 0x20000, 0x20008, 0xffffffff })
            p = p.Rule("personality", SeccompAction.Allow, SeccompArgument.Equal(0, persona));
        foreach (string name in Allowed)
            p = p.Rule(name, SeccompAction.Allow);
        return p;
    }
}
