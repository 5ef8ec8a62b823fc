/*
 * floor.c: the C floor of the spawn benchmarks. It does what src/Isolation.Native does for one start,
 * and nothing more, with raw system calls: two O_CLOEXEC pipes, every signal blocked, clone3 with
 * CLONE_VM | CLONE_PIDFD on a caller-owned stack, the child resetting signal dispositions and waiting on
 * the sync pipe, the parent writing uid_map/gid_map and releasing it (sync 1), the child making / private,
 * mounting proc, bringing lo up, marking fds close-on-exec and exec'ing, the parent reading EOF on the
 * error pipe (sync 2) and reaping through the pidfd. No managed code, no exit-watcher thread, no
 * allocation: the time it takes is the kernel's, the floor the library can approach.
 *
 * Built as libBenchFloor.so (P/Invoked by the benchmarks, so it runs inside the same .NET process and
 * pays the same page-table and signal-handler costs) and as the stand-alone `floor` (FLOOR_MAIN), for
 * strace/perf and for timing the command-line tools.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <net/if.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <pthread.h>
#include <unistd.h>

/* The shim's raw system calls (no errno, no libc), as its child side uses them. */
#include "raw_syscall.h"

#define EXPORT __attribute__((visibility("default")))

/* BenchFloor_Spawn flags */
#define FLOOR_MAP_ROOT   0x1 /* write uid_map/gid_map "0 <euid> 1" before releasing the child */
#define FLOOR_MOUNT_PROC 0x2 /* mount proc on /proc in the child (needs CLONE_NEWNS | CLONE_NEWPID) */
#define FLOOR_LOOPBACK   0x4 /* bring lo up in the child (needs CLONE_NEWNET) */

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct floor_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

struct floor_child {
    const char *path;
    char *const *argv;
    char *const *envp;
    uint64_t clone_flags;
    int flags;
    int sync_fd;
    int error_fd;
};

/* long floor_clone3(args, size, fn, arg): as src/Isolation.Native/clone3.S. */
long floor_clone3(struct floor_clone_args *args, size_t size, int (*fn)(void *), void *arg);
#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".type floor_clone3, @function\n"
    "floor_clone3:\n"
    "    mov %rcx, %r8\n"
    "    mov $435, %eax\n"
    "    syscall\n"
    "    test %rax, %rax\n"
    "    jz 1f\n"
    "    ret\n"
    "1:  xor %ebp, %ebp\n"
    "    and $-16, %rsp\n"
    "    mov %r8, %rdi\n"
    "    call *%rdx\n"
    "    mov %rax, %rdi\n"
    "    mov $60, %eax\n"
    "    syscall\n"
    "    hlt\n");

#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".type floor_clone3, %function\n"
    "floor_clone3:\n"
    "    mov x8, #435\n"
    "    svc #0\n"
    "    cbz x0, 1f\n"
    "    ret\n"
    "1:  mov x29, #0\n"
    "    mov x30, #0\n"
    "    mov x0, x3\n"
    "    blr x2\n"
    "    mov x8, #93\n"
    "    svc #0\n"
    "    brk #0\n");

#else
#error "floor: x86_64 and aarch64 only"
#endif


struct floor_sigaction { void *handler; unsigned long flags; void *restorer; uint64_t mask; };

__attribute__((noreturn)) static void child_fail(const struct floor_child *c, long err)
{
    int32_t e = (int32_t)-err;
    iso_sys3(SYS_write, c->error_fd, &e, sizeof e);
    for (;;)
        iso_sys1(SYS_exit, 127);
}

/* child: CLONE_VM, on the caller's stack, every signal blocked; only raw system calls. */
static int child_main(void *arg)
{
    const struct floor_child *c = arg;
    long rc;
    struct floor_sigaction dfl = { SIG_DFL, 0, 0, 0 };
    for (int sig = 1; sig < 65; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            iso_sys4(SYS_rt_sigaction, sig, &dfl, 0, 8);

    /* sync 1 */
    char byte;
    do
        rc = iso_sys3(SYS_read, c->sync_fd, &byte, 1);
    while (rc == -EINTR);
    if (rc != 1)
        child_fail(c, rc < 0 ? rc : -ECANCELED);
    iso_sys1(SYS_close, c->sync_fd);

    if (c->clone_flags & CLONE_NEWNS) {
        if ((rc = iso_sys5(SYS_mount, 0, "/", 0, MS_REC | MS_PRIVATE, 0)) < 0)
            child_fail(c, rc);
        if ((c->flags & FLOOR_MOUNT_PROC)
            && (rc = iso_sys5(SYS_mount, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, 0)) < 0)
            child_fail(c, rc);
    }
    if (c->flags & FLOOR_LOOPBACK) {
        long fd = iso_sys3(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            child_fail(c, fd);
        struct ifreq ifr;
        for (size_t i = 0; i < sizeof ifr; i++)
            ((char *)&ifr)[i] = 0;
        ifr.ifr_name[0] = 'l';
        ifr.ifr_name[1] = 'o';
        ifr.ifr_flags = IFF_UP | IFF_RUNNING;
        if ((rc = iso_sys3(SYS_ioctl, fd, SIOCSIFFLAGS, &ifr)) < 0)
            child_fail(c, rc);
        iso_sys1(SYS_close, fd);
    }
    iso_sys3(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
    uint64_t empty = 0;
    iso_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &empty, 0, 8);
    rc = iso_sys3(SYS_execve, c->path, c->argv, c->envp);
    child_fail(c, rc);
}

static int write_file(int pid, const char *name, const char *text)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int err = n == (ssize_t)len ? 0 : (n < 0 ? -errno : -EIO);
    close(fd);
    return err;
}

/* Waits for the child behind pidfd and closes it. Returns the exit code (0..255), 128+signal, or -errno. */
EXPORT int BenchFloor_Wait(int pidfd)
{
    siginfo_t info;
    memset(&info, 0, sizeof info);
    long rc;
    do
        rc = syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED, NULL);
    while (rc < 0 && errno == EINTR);
    int err = errno;
    close(pidfd);
    if (rc < 0)
        return -err;
    return info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
}

/* Start to exec: returns the child's pidfd once it has exec'd (EOF on the error pipe), or -errno (the
 * child reaped). The stack is the child's until then: callers on several threads pass a stack each.
 * envp NULL: the caller's environment. */
EXPORT int BenchFloor_Start(const char *path, char *const *argv, char *const *envp, uint64_t clone_flags, int flags,
                            void *stack, size_t stack_size)
{
    int sync_pipe[2], error_pipe[2];
    if (pipe2(sync_pipe, O_CLOEXEC) != 0)
        return -errno;
    if (pipe2(error_pipe, O_CLOEXEC) != 0) {
        int err = errno;
        close(sync_pipe[0]);
        close(sync_pipe[1]);
        return -err;
    }
    struct floor_child c = { path, argv, envp ? envp : environ, clone_flags, flags, sync_pipe[0], error_pipe[1] };

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pidfd = -1;
    struct floor_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_VM | CLONE_PIDFD | clone_flags;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = SIGCHLD;
    args.stack = (uint64_t)(uintptr_t)stack;
    args.stack_size = stack_size;
    long pid = floor_clone3(&args, sizeof args, child_main, &c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(sync_pipe[0]);
    close(error_pipe[1]);
    if (pid < 0) {
        close(sync_pipe[1]);
        close(error_pipe[0]);
        return (int)pid;
    }

    int result = 0;
    if (flags & FLOOR_MAP_ROOT) {
        char map[32];
        snprintf(map, sizeof map, "0 %u 1\n", geteuid());
        result = write_file((int)pid, "uid_map", map);
        if (result == 0) {
            snprintf(map, sizeof map, "0 %u 1\n", getegid());
            if (getegid() != 0 || geteuid() != 0)
                result = write_file((int)pid, "setgroups", "deny");
            if (result == 0)
                result = write_file((int)pid, "gid_map", map);
        }
    }
    /* sync 1: release (a failed map: close, the child reads EOF and exits) */
    if (result == 0) {
        char byte = 1;
        if (write(sync_pipe[1], &byte, 1) != 1)
            result = -errno;
    }
    close(sync_pipe[1]);

    /* sync 2: EOF on the error pipe means execve succeeded */
    int32_t child_err = 0;
    ssize_t n;
    do
        n = read(error_pipe[0], &child_err, sizeof child_err);
    while (n < 0 && errno == EINTR);
    close(error_pipe[0]);
    if (result == 0 && n == sizeof child_err)
        result = -child_err;

    if (result != 0) {
        BenchFloor_Wait(pidfd);
        return result;
    }
    return pidfd;
}

/* One spawn, start to exit: BenchFloor_Start then BenchFloor_Wait. */
EXPORT int BenchFloor_Spawn(const char *path, char *const *argv, char *const *envp, uint64_t clone_flags, int flags,
                            void *stack, size_t stack_size)
{
    int pidfd = BenchFloor_Start(path, argv, envp, clone_flags, flags, stack, stack_size);
    return pidfd < 0 ? pidfd : BenchFloor_Wait(pidfd);
}

#ifdef FLOOR_MAIN
#include <stdlib.h>
#include <time.h>

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static char s_stack[64 * 1024] __attribute__((aligned(16)));

/* floor [-n N] [-f CLONE_FLAGS_HEX] [-u] [-p] [-l] PROGRAM [ARGS...]: N spawns, prints the median. */
int main(int argc, char **argv)
{
    int n = 1000, flags = 0, opt, serve = 0;
    uint64_t clone_flags = 0;
    while ((opt = getopt(argc, argv, "+n:f:upls")) != -1) {
        switch (opt) {
        case 's': serve = 1; break;
        case 'n': n = atoi(optarg); break;
        case 'f': clone_flags = strtoull(optarg, NULL, 16); break;
        case 'u': flags |= FLOOR_MAP_ROOT; break;
        case 'p': flags |= FLOOR_MOUNT_PROC; break;
        case 'l': flags |= FLOOR_LOOPBACK; break;
        default:
            fprintf(stderr, "usage: floor [-n N | -s] [-f CLONE_FLAGS_HEX] [-u] [-p] [-l] PROGRAM [ARGS...]\n");
            return 2;
        }
    }
    if (optind >= argc || n < 1) {
        fprintf(stderr, "usage: floor [-n N | -s] [-f CLONE_FLAGS_HEX] [-u] [-p] [-l] PROGRAM [ARGS...]\n");
        return 2;
    }
    if (serve) {
        /* -s: the floor as its own small process, for interleaved comparisons: one spawn per byte read on stdin,
         * its start-to-exit time (int64 ns, measured here) written to stdout; -1 on failure. */
        char byte;
        while (read(0, &byte, 1) == 1) {
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            int rc = BenchFloor_Spawn(argv[optind], &argv[optind], NULL, clone_flags, flags, s_stack, sizeof s_stack);
            clock_gettime(CLOCK_MONOTONIC, &b);
            int64_t elapsed = rc != 0 ? -1 : (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec);
            if (write(1, &elapsed, sizeof elapsed) != (ssize_t)sizeof elapsed)
                return 1;
        }
        return 0;
    }
    long *ns = calloc((size_t)n, sizeof *ns);
    for (int i = 0; i < n; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int rc = BenchFloor_Spawn(argv[optind], &argv[optind], NULL, clone_flags, flags, s_stack, sizeof s_stack);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (rc != 0) {
            fprintf(stderr, "floor: spawn %d: %s (%d)\n", i, rc < 0 ? strerror(-rc) : "non-zero exit", rc);
            return 1;
        }
        ns[i] = (b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec);
    }
    qsort(ns, (size_t)n, sizeof *ns, cmp_long);
    printf("%d spawns: median %.1f us, p10 %.1f us, p90 %.1f us\n", n, ns[n / 2] / 1e3, ns[n / 10] / 1e3, ns[n * 9 / 10] / 1e3);
    free(ns);
    return 0;
}
#endif
