/*
 * parent.c: the parent side of a spawn, called from managed code (Interop/Interop.Native.cs).
 *
 * IsolationNative_Spawn clones the child (DESIGN.md §3, step 2) and returns at once; the managed caller
 * then writes id maps and cgroup placement, releases the child (sync 1) and waits for execve
 * (IsolationNative_WaitExec). These functions may use libc freely: they run in the parent.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "isolation_native.h"
#include "raw_syscall.h"
#include "child.h"

#define EXPORT __attribute__((visibility("default")))

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

struct iso_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;
};

EXPORT int IsolationNative_AbiVersion(void)
{
    return ISO_ABI_VERSION;
}

static int spawn_here(struct iso_spawn_request *req, struct iso_spawn_result *res);

/*
 * PR_SET_PDEATHSIG fires when the child's parent *thread* exits, not the process (prctl(2)). The runtime
 * retires idle thread-pool threads, so a sandbox started from one with a death signal would be killed
 * at random. Such spawns are therefore made by one thread of ours that lives as long as the process.
 */
static pthread_mutex_t spawner_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t spawner_cond = PTHREAD_COND_INITIALIZER;
static int spawner_started;
static struct iso_spawn_request *spawner_req;
static struct iso_spawn_result *spawner_res;
static int spawner_rc;
static int spawner_done;

static void *spawner_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&spawner_lock);
    for (;;) {
        while (spawner_req == NULL)
            pthread_cond_wait(&spawner_cond, &spawner_lock);
        spawner_rc = spawn_here(spawner_req, spawner_res);
        spawner_req = NULL;
        spawner_done = 1;
        pthread_cond_broadcast(&spawner_cond);
    }
    return NULL;
}

static int spawn_on_spawner_thread(struct iso_spawn_request *req, struct iso_spawn_result *res)
{
    static pthread_mutex_t call_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&call_lock); /* one request at a time */
    pthread_mutex_lock(&spawner_lock);
    if (!spawner_started) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int err = pthread_create(&thread, &attr, spawner_main, NULL);
        pthread_attr_destroy(&attr);
        if (err != 0) {
            pthread_mutex_unlock(&spawner_lock);
            pthread_mutex_unlock(&call_lock);
            return -err;
        }
        spawner_started = 1;
    }
    spawner_res = res;
    spawner_done = 0;
    spawner_req = req;
    pthread_cond_broadcast(&spawner_cond);
    while (!spawner_done)
        pthread_cond_wait(&spawner_cond, &spawner_lock);
    int rc = spawner_rc;
    pthread_mutex_unlock(&spawner_lock);
    pthread_mutex_unlock(&call_lock);
    return rc;
}

EXPORT int IsolationNative_Spawn(struct iso_spawn_request *req, struct iso_spawn_result *res)
{
    if (req->pdeath_signal != 0)
        return spawn_on_spawner_thread(req, res);
    return spawn_here(req, res);
}

static int spawn_here(struct iso_spawn_request *req, struct iso_spawn_result *res)
{
    int sync_pipe[2], error_pipe[2];
    if (req->abi_version != ISO_ABI_VERSION)
        return -EPROTO;
    if (pipe2(sync_pipe, O_CLOEXEC) != 0)
        return -errno;
    if (pipe2(error_pipe, O_CLOEXEC) != 0) {
        int err = errno;
        close(sync_pipe[0]);
        close(sync_pipe[1]);
        return -err;
    }
    req->child_sync_fd = sync_pipe[0];
    req->child_error_fd = error_pipe[1];
    if (req->init_fd >= 0)
        snprintf(req->init_argv[1], 16, "%d", error_pipe[1]);

    /* Block every signal across the clone: the child shares our memory and, until it has reset them,
     * the runtime's handlers. It unblocks just before execve. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);

    int pidfd = -1;
    long pid = -ENOSYS;
    int used_clone3 = 0;
    if (!(req->flags & ISO_SPAWN_NO_CLONE3)) {
        struct iso_clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = CLONE_VM | CLONE_PIDFD | req->clone_flags;
        if (req->cgroup_fd >= 0) {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = (uint64_t)req->cgroup_fd;
        }
        args.pidfd = (uint64_t)(uintptr_t)&pidfd;
        args.exit_signal = SIGCHLD;
        args.stack = (uint64_t)(uintptr_t)req->stack;
        args.stack_size = req->stack_size;
        pid = iso_clone3(&args, sizeof args, iso_child_main, req);
        used_clone3 = pid > 0;
    }
    if (pid == -ENOSYS) {
        /* clone(2) fallback: no CLONE_INTO_CGROUP; the caller places the child before releasing it. */
        char *top = (char *)req->stack + req->stack_size;
        top = (char *)((uintptr_t)top & ~(uintptr_t)15);
        pid = clone(iso_child_main, top, (int)(CLONE_VM | CLONE_PIDFD | req->clone_flags | SIGCHLD), req, &pidfd);
        if (pid < 0)
            pid = -errno;
    }

    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(sync_pipe[0]);
    close(error_pipe[1]);
    if (pid < 0) {
        close(sync_pipe[1]);
        close(error_pipe[0]);
        return (int)pid;
    }
    res->pid = (int32_t)pid;
    res->pidfd = pidfd;
    res->sync_fd = sync_pipe[1];
    res->error_fd = error_pipe[0];
    res->used_clone3 = used_clone3;
    return 0;
}

/* sync 1: the child may go on. Closes the write end either way. */
EXPORT int IsolationNative_Release(int sync_fd)
{
    char byte = 1;
    ssize_t n;
    do
        n = write(sync_fd, &byte, 1);
    while (n < 0 && errno == EINTR);
    int err = n == 1 ? 0 : -errno;
    close(sync_fd);
    return err;
}

/* Returns 0 when the child reached execve (EOF), 1 when it reported a failure into *error, -errno on a
 * read error. Reads until EOF, so on return the child no longer runs on our memory. Closes error_fd. */
EXPORT int IsolationNative_WaitExec(int error_fd, struct iso_child_error *error)
{
    size_t got = 0;
    int result = 0;
    char *buf = (char *)error;
    for (;;) {
        ssize_t n = got < sizeof *error ? read(error_fd, buf + got, sizeof *error - got) : read(error_fd, &(char){0}, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            result = -errno;
            break;
        }
        if (n == 0)
            break;
        if (got < sizeof *error)
            got += (size_t)n;
    }
    close(error_fd);
    if (result == 0 && got == sizeof *error)
        result = 1;
    return result;
}

EXPORT int IsolationNative_WriteProcFile(int pid, const char *name, const char *text, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, len);
    int err = n == (ssize_t)len ? 0 : (n < 0 ? -errno : -EIO);
    close(fd);
    return err;
}

/* Returns 1 once the process behind pidfd has exited (the pidfd is readable), 0 on timeout, -errno on failure.
 * timeout_ms < 0 waits for ever. Retries on EINTR. */
EXPORT int IsolationNative_WaitPidfd(int pidfd, int timeout_ms)
{
    struct pollfd pfd = { .fd = pidfd, .events = POLLIN, .revents = 0 };
    int rc;
    do
        rc = poll(&pfd, 1, timeout_ms);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : rc > 0 ? 1 : 0;
}

/*
 * Parent, before clone: a detached clone of `source` (recursive when asked) whose owners are mapped through
 * the user namespace behind userns_fd (mount_setattr(2), MOUNT_ATTR_IDMAP), with attr_set's other flags.
 * The kernel wants CAP_SYS_ADMIN over the source's file system, which the child inside its new user
 * namespace never has. Returns the tree's fd (close-on-exec) or -errno.
 */
EXPORT int IsolationNative_OpenIdmappedTree(const char *source, int userns_fd, int recursive, uint64_t attr_set)
{
    struct {
        uint64_t attr_set, attr_clr, propagation, userns_fd;
    } attr = { attr_set | 0x00100000 /* MOUNT_ATTR_IDMAP */, 0, 0, (uint64_t)userns_fd };
    long tree = syscall(SYS_open_tree, AT_FDCWD, source, 1 /* OPEN_TREE_CLONE */ | O_CLOEXEC | (recursive ? 0x8000 /* AT_RECURSIVE */ : 0));
    if (tree < 0)
        return -errno;
    if (syscall(SYS_mount_setattr, (int)tree, "", AT_EMPTY_PATH | (recursive ? 0x8000 : 0), &attr, sizeof attr) != 0) {
        int err = errno;
        close((int)tree);
        return -err;
    }
    return (int)tree;
}

EXPORT int IsolationNative_PidfdSendSignal(int pidfd, int sig)
{
    long rc = syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
    return rc == 0 ? 0 : -errno;
}

/* Reaps the child behind pidfd. Returns 0 and fills the outputs, 1 when nohang and still running,
 * -errno on failure. code is siginfo's si_code (CLD_EXITED, CLD_KILLED, CLD_DUMPED). */
EXPORT int IsolationNative_ReapPidfd(int pidfd, int nohang, int32_t *code, int32_t *status, int64_t *user_us, int64_t *sys_us, int64_t *maxrss_kb)
{
    siginfo_t info;
    struct rusage ru;
    memset(&info, 0, sizeof info);
    memset(&ru, 0, sizeof ru);
    long rc;
    do
        rc = syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED | (nohang ? WNOHANG : 0), &ru);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return -errno;
    if (info.si_pid == 0)
        return 1;
    *code = info.si_code;
    *status = info.si_status;
    *user_us = (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec;
    *sys_us = (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
    *maxrss_kb = ru.ru_maxrss;
    return 0;
}

/* Copies the init executable into a sealed memfd, so exec needs no execute bit on the installed file
 * and nothing inside a sandbox can reach the host's copy through /proc/1/exe (runc CVE-2019-5736). */
EXPORT int IsolationNative_OpenInitMemfd(const char *path)
{
    int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return -errno;
    int mfd = memfd_create("isolation-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mfd < 0) {
        int err = errno;
        close(src);
        return -err;
    }
    struct stat st;
    if (fstat(src, &st) != 0)
        goto fail;
    for (off_t off = 0; off < st.st_size;) {
        ssize_t n = sendfile(mfd, src, &off, (size_t)(st.st_size - off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
    }
    if (fchmod(mfd, 0555) != 0)
        goto fail;
    if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0)
        goto fail;
    close(src);
    return mfd;
fail:;
    int err = errno ? errno : EIO;
    close(src);
    close(mfd);
    return -err;
}

EXPORT const char *IsolationNative_LibraryPath(void)
{
    Dl_info info;
    if (dladdr((void *)&IsolationNative_LibraryPath, &info) == 0 || info.dli_fname == NULL)
        return NULL;
    return info.dli_fname;
}
