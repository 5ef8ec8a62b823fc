/*
 * parent.c: the host's side, called from managed code (Interop/Interop.Native.cs).
 *
 * Starts the spawn helper (helper.c) and talks to it: specs are packed and sent once (DefineSpec), each
 * spawn is one message with its descriptors (SendSpawn), and every answer about that spawn comes back on
 * its own status socket (ReadReply). Nothing here clones: the host's memory, credentials and descriptor
 * table are never shared with a sandbox. These functions may use libc freely: they run in the host.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
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
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "isolation_native.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT int IsolationNative_AbiVersion(void)
{
    return ISO_ABI_VERSION;
}

/* Host: internal descriptors stay at 3 or above, even when the host has closed its own stdio: a pipe or
 * socket of ours on 0..2 would receive the host's console output, or be closed by code that "restores" stdio. */
static int above_stdio(int fd)
{
    if (fd < 0 || fd > 2)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int err = errno;
    close(fd);
    errno = err;
    return moved;
}

/* ---- Starting the spawn helper (DESIGN.md §2) ---- */

/* The ELF interpreter (PT_INTERP) of an executable, for running it through the loader when its file has
 * lost its execute bit (NuGet does not keep file modes reliably). Returns 0 and fills interp, or -errno. */
static int elf_interpreter(const char *path, char *interp, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    Elf64_Ehdr eh;
    int rc = -ENOEXEC;
    if (pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh && memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_ident[EI_CLASS] == ELFCLASS64) {
        for (int i = 0; i < eh.e_phnum; i++) {
            Elf64_Phdr ph;
            if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * eh.e_phentsize)) != (ssize_t)sizeof ph)
                break;
            if (ph.p_type != PT_INTERP || ph.p_filesz == 0 || ph.p_filesz >= size)
                continue;
            if (pread(fd, interp, ph.p_filesz, (off_t)ph.p_offset) == (ssize_t)ph.p_filesz) {
                interp[ph.p_filesz] = '\0';
                rc = 0;
            }
            break;
        }
    }
    close(fd);
    return rc;
}

/* posix_spawn with a clean slate: default signal dispositions and an empty mask, stdio[0..2] on 0..2 and the
 * helper's end of the channel on fd 3 (dup2 clears close-on-exec; every source is at 3 or above, and the stdio
 * ones are used before 3 is replaced); the helper closes the rest. */
static int spawn_clean(const char *file, char *const argv[], const int stdio[3], int helper_end, pid_t *pid)
{
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    for (int fd = 0; fd < 3; fd++)
        posix_spawn_file_actions_adddup2(&actions, stdio[fd], fd);
    posix_spawn_file_actions_adddup2(&actions, helper_end, ISO_HELPER_CHANNEL_FD);
    extern char **environ;
    int rc = posix_spawn(pid, file, &actions, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return -rc;
}

/*
 * The helper's stdio (DESIGN.md §2, clean slate): /dev/null on 0..2. Where /dev/null cannot be opened (EACCES on
 * a nodev mount, as inside a sandbox that binds the host's /dev without devices, bwrap's --bind / /; ENOENT
 * without /dev), a pipe's read end whose write end is closed on 0 (reads see EOF) and a pipe's write end whose
 * read end is closed on 1 and 2 (writes fail with EPIPE; the helper ignores SIGPIPE). These are the helper's
 * alone: the host then sends every sandbox stdio of its own (StdioSet), so no two sandboxes share a pipe.
 * *null_errno: 0 with /dev/null, else why it could not be opened. Returns 0 or -errno; close with close_stdio.
 */
static int helper_stdio(int stdio[3], int *null_errno)
{
    int null_fd = above_stdio(open("/dev/null", O_RDWR | O_CLOEXEC));
    if (null_fd >= 0) {
        *null_errno = 0;
        stdio[0] = stdio[1] = stdio[2] = null_fd;
        return 0;
    }
    *null_errno = errno;
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0)
        return -errno;
    if (pipe2(out, O_CLOEXEC) != 0) {
        int err = errno;
        close(in[0]);
        close(in[1]);
        return -err;
    }
    close(in[1]);
    close(out[0]);
    in[0] = above_stdio(in[0]);
    out[1] = above_stdio(out[1]);
    if (in[0] < 0 || out[1] < 0) {
        int err = errno;
        if (in[0] >= 0)
            close(in[0]);
        if (out[1] >= 0)
            close(out[1]);
        return -err;
    }
    stdio[0] = in[0];
    stdio[1] = stdio[2] = out[1];
    return 0;
}

static void close_stdio(const int stdio[3])
{
    close(stdio[0]);
    if (stdio[1] != stdio[0])
        close(stdio[1]);
}

/*
 * Host: starts the spawn helper at path and returns the host's end of its channel (close-on-exec, at 3 or
 * above), its pid and a pidfd of it (to reap it once it is gone). The executable runs directly; if its file cannot be executed (the execute bit got lost,
 * or a noexec mount), through its ELF interpreter, which only needs to read it; if that fails too, from a
 * copy (IsolationNative_OpenExecutable: a memfd, or an unnamed file where vm.memfd_noexec refuses executable
 * memfds). Its stdio is /dev/null, or pipes where that cannot be opened (helper_stdio: *null_errno says why).
 * Returns 0 or the first -errno.
 */
EXPORT int IsolationNative_StartHelper(const char *path, int *channel, int *pid, int *pidfd, int *null_errno)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    sv[0] = above_stdio(sv[0]);
    /* Above fd 3, so that dup2 onto 3 really duplicates (and so clears close-on-exec). */
    int helper_end = fcntl(sv[1], F_DUPFD_CLOEXEC, ISO_HELPER_CHANNEL_FD + 1);
    close(sv[1]);
    if (sv[0] < 0 || helper_end < 0) {
        int err = errno;
        if (sv[0] >= 0)
            close(sv[0]);
        if (helper_end >= 0)
            close(helper_end);
        return -err;
    }
    int stdio[3] = { -1, -1, -1 };
    int rc = helper_stdio(stdio, null_errno);
    if (rc < 0) {
        close(sv[0]);
        close(helper_end);
        return rc;
    }
    pid_t child = -1;
    /* The helper keeps no capability this thread lacks: exec as root would hand it the full set again. */
    char caps[32];
    struct { uint32_t version; int pid; } header = { 0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0 };
    struct { uint32_t effective, permitted, inheritable; } data[2];
    memset(data, 0, sizeof data);
    syscall(SYS_capget, &header, data);
    snprintf(caps, sizeof caps, "%llx", (unsigned long long)data[1].permitted << 32 | data[0].permitted);
    char *direct[] = { "isolation-helper", caps, NULL };
    rc = spawn_clean(path, direct, stdio, helper_end, &child);
    if (rc == -EACCES || rc == -EPERM || rc == -ENOEXEC) {
        char interp[256];
        char *loader[] = { interp, (char *)path, caps, NULL };
        int first = rc;
        if (elf_interpreter(path, interp, sizeof interp) == 0)
            rc = spawn_clean(interp, loader, stdio, helper_end, &child);
        if (rc < 0) {
            int how;
            int mfd = IsolationNative_OpenExecutable(path, 0, &how);
            if (mfd >= 0) {
                char fd_path[64];
                snprintf(fd_path, sizeof fd_path, "/proc/self/fd/%d", mfd);
                rc = spawn_clean(fd_path, direct, stdio, helper_end, &child);
                close(mfd);
            }
        }
        if (rc < 0)
            rc = first;
    }
    close(helper_end);
    close_stdio(stdio);
    if (rc < 0) {
        close(sv[0]);
        return rc;
    }
    *channel = sv[0];
    *pid = child;
    /* Ours to reap once it has gone (IsolationNative_ReapHelper): a dead helper must not stay a zombie. */
    *pidfd = above_stdio((int)syscall(SYS_pidfd_open, child, 0));
    return 0;
}

/* Host: starting the helper on a thread of its own (IsolationSpec.PrepareSpawnHelper), so that the caller does not
 * wait for the helper's vfork and exec (posix_spawn returns only once the child has exec'd) and goes on with its
 * own work meanwhile. The thread has the caller's credentials (a new thread inherits them), which StartHelper
 * reads for the helper; it blocks every signal, so none meant for the runtime lands on it. */
struct iso_helper_start {
    pthread_t thread;
    int rc, channel, pid, pidfd, null_errno;
    char path[];
};

static void *start_helper_thread(void *arg)
{
    struct iso_helper_start *s = arg;
    s->rc = IsolationNative_StartHelper(s->path, &s->channel, &s->pid, &s->pidfd, &s->null_errno);
    return NULL;
}

/* Returns a handle for IsolationNative_EndStartHelper, or NULL (errno set) when no thread could be started. */
EXPORT void *IsolationNative_BeginStartHelper(const char *path)
{
    size_t n = strlen(path) + 1;
    struct iso_helper_start *s = malloc(sizeof *s + n);
    if (s == NULL)
        return NULL;
    memcpy(s->path, path, n);
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old); /* this thread's mask (glibc), inherited by the new thread */
    int err = pthread_create(&s->thread, NULL, start_helper_thread, s);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        free(s);
        errno = err;
        return NULL;
    }
    return s;
}

/* Waits for the start begun by IsolationNative_BeginStartHelper and frees its handle: what StartHelper returned. */
EXPORT int IsolationNative_EndStartHelper(void *handle, int *channel, int *pid, int *pidfd, int *null_errno)
{
    struct iso_helper_start *s = handle;
    pthread_join(s->thread, NULL);
    int rc = s->rc;
    if (rc == 0) {
        *channel = s->channel;
        *pid = s->pid;
        *pidfd = s->pidfd;
        *null_errno = s->null_errno;
    }
    free(s);
    return rc;
}

/* Host: reaps the helper behind pidfd once it is gone (it exits at EOF on its channel), and closes pidfd.
 * ECHILD (a runtime that reaps every child, as PID 1 does, got there first) is fine. */
EXPORT int IsolationNative_ReapHelper(int pidfd)
{
    if (pidfd < 0)
        return 0;
    siginfo_t info;
    long rc;
    while ((rc = syscall(SYS_waitid, 3 /* P_PIDFD */, pidfd, &info, WEXITED, NULL)) < 0 && errno == EINTR)
        ;
    int err = rc < 0 ? -errno : 0;
    close(pidfd);
    return err == -ECHILD ? 0 : err;
}

/* Sends one message with descriptors on a SOCK_SEQPACKET socket. */
static int send_with_fds(int sock, const struct iovec *iov, int iovcnt, const int32_t *fds, uint32_t nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * ISO_MAX_SPAWN_FDS)];
        struct cmsghdr align;
    } control;
    struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
    if (nfds > ISO_MAX_SPAWN_FDS)
        return -EMFILE;
    if (nfds > 0) {
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    while ((n = sendmsg(sock, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    return n < 0 ? -errno : 0;
}

/* A memfd holding len bytes of data (close-on-exec, at 3 or above), or -errno. */
static int memfd_with(const char *name, const void *data, size_t len)
{
    int fd = above_stdio(memfd_create(name, MFD_CLOEXEC));
    if (fd < 0)
        return -errno;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? errno : EIO;
            close(fd);
            return -err;
        }
        done += (size_t)n;
    }
    return fd;
}

/* Host: packs the spec part of tmpl (iso_pack_spec) and sends it to the helper as spec_id. */
EXPORT int IsolationNative_DefineSpec(int channel, uint32_t spec_id, const struct iso_spawn_request *tmpl,
                                      const char *setgroups, const char *uid_map, const char *gid_map)
{
    size_t size = iso_pack_spec(tmpl, setgroups, uid_map, gid_map, NULL, 0);
    void *block = calloc(1, size);
    if (block == NULL)
        return -ENOMEM;
    iso_pack_spec(tmpl, setgroups, uid_map, gid_map, block, size);
    int fd = memfd_with("isolation-spec", block, size);
    free(block);
    if (fd < 0)
        return fd;
    struct iso_define_msg m = { ISO_MSG_DEFINE, spec_id };
    struct iovec iov = { &m, sizeof m };
    int32_t fds[1] = { fd };
    int rc = send_with_fds(channel, &iov, 1, fds, 1);
    close(fd);
    return rc;
}

EXPORT int IsolationNative_ForgetSpec(int channel, uint32_t spec_id)
{
    struct iso_define_msg m = { ISO_MSG_FORGET, spec_id };
    struct iovec iov = { &m, sizeof m };
    return send_with_fds(channel, &iov, 1, NULL, 0);
}

/* Host: asks the helper for a spawn. The strings go in the message, or in a memfd when they are large. */
EXPORT int IsolationNative_SendSpawn(int channel, const struct iso_spawn_msg *msg, const int32_t *fds, const char *strings)
{
    if (msg->strings_len <= 48 * 1024) {
        struct iovec iov[2] = { { (void *)msg, sizeof *msg }, { (void *)strings, msg->strings_len } };
        return send_with_fds(channel, iov, 2, fds, msg->nfds);
    }
    if (msg->nfds >= ISO_MAX_SPAWN_FDS)
        return -EMFILE;
    int mfd = memfd_with("isolation-args", strings, msg->strings_len);
    if (mfd < 0)
        return mfd;
    struct iso_spawn_msg copy = *msg;
    int32_t all[ISO_MAX_SPAWN_FDS];
    memcpy(all, fds, sizeof(int32_t) * msg->nfds);
    all[copy.nfds] = mfd;
    copy.slots[copy.nfds] = (struct iso_fd_slot){ ISO_FD_ARGS, 0 };
    copy.nfds++;
    struct iovec iov = { &copy, sizeof copy };
    int rc = send_with_fds(channel, &iov, 1, all, copy.nfds);
    close(mfd);
    return rc;
}

/* Host: a new status socket pair for one spawn, both ends at 3 or above. */
EXPORT int IsolationNative_StatusSocket(int32_t *host_end, int32_t *helper_end)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    sv[0] = above_stdio(sv[0]);
    sv[1] = above_stdio(sv[1]);
    if (sv[0] < 0 || sv[1] < 0) {
        int err = errno;
        if (sv[0] >= 0)
            close(sv[0]);
        if (sv[1] >= 0)
            close(sv[1]);
        return -err;
    }
    *host_end = sv[0];
    *helper_end = sv[1];
    return 0;
}

/*
 * Host: reads one reply from a status socket, and the descriptors it carries (up to two, close-on-exec and at 3
 * or above; -1 for each missing). Returns 1 with a reply, 0 at EOF (the helper is gone or gave the spawn up),
 * -EAGAIN when nonblocking and nothing is there yet, -errno otherwise.
 */
EXPORT int IsolationNative_ReadReply(int status_fd, int nonblocking, struct iso_reply *reply, int32_t fd[2])
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } control;
    struct iovec iov = { reply, sizeof *reply };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
    ssize_t n;
    while ((n = recvmsg(status_fd, &msg, MSG_CMSG_CLOEXEC | (nonblocking ? MSG_DONTWAIT : 0))) < 0 && errno == EINTR)
        ;
    fd[0] = fd[1] = -1;
    if (n < 0)
        return -errno;
    int got = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int received;
            memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof received);
            if (got < 2)
                fd[got++] = above_stdio(received);
            else
                close(received);
        }
    }
    if (n == 0)
        return 0;
    return n == (ssize_t)sizeof *reply ? 1 : -EBADMSG;
}

/* Host: returns 0 when the child reached execve (EOF on its error pipe), 1 when it reported a failure into
 * *error, -errno on a read error (a short record is a failure too: -EPROTO). Closes error_fd. */
EXPORT int IsolationNative_WaitExec(int error_fd, struct iso_child_error *error)
{
    size_t got = 0;
    int result = 0;
    for (;;) {
        ssize_t n = got < sizeof *error ? read(error_fd, (char *)error + got, sizeof *error - got) : read(error_fd, &(char){ 0 }, 1);
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
        return 1;
    if (result == 0 && got != 0)
        return -EPROTO;
    return result;
}

/* Host: its own steps are done; the helper may release the child. */
EXPORT int IsolationNative_Continue(int status_fd)
{
    char byte = 1;
    ssize_t n;
    while ((n = send(status_fd, &byte, 1, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    return n == 1 ? 0 : -errno;
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

/* Returns 1 once fd is readable (a pidfd: its process exited; a socket: a message or EOF), 0 on timeout,
 * -errno on failure. timeout_ms < 0 waits for ever. Retries on EINTR. */
EXPORT int IsolationNative_WaitReadable(int fd, int timeout_ms)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN, .revents = 0 };
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

#ifndef PIDFD_SIGNAL_PROCESS_GROUP
#define PIDFD_SIGNAL_PROCESS_GROUP (1U << 2)
#endif

/*
 * Host: signals the process group the sandbox leads (ISO_SPAWN_OWN_GROUP): its pid is the group's id.
 * pidfd_send_signal(PIDFD_SIGNAL_PROCESS_GROUP) (Linux 6.9) names the group through the pidfd, so it is right
 * even after the leader was reaped. Older kernels: kill(-pid) only while the leader is unreaped
 * (leader_unreaped), when the number cannot belong to anyone else. Returns 0, -ESRCH (no member left),
 * -EINVAL (an old kernel and the leader gone: nothing can name the group safely) or -errno.
 */
EXPORT int IsolationNative_SignalProcessGroup(int pidfd, int pid, int sig, int leader_unreaped)
{
    if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, PIDFD_SIGNAL_PROCESS_GROUP) == 0)
        return 0;
    if (errno != EINVAL)
        return -errno;
    if (!leader_unreaped || pid <= 1)
        return -EINVAL;
    return kill(-pid, sig) == 0 ? 0 : -errno;
}

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

/* Copies src (size bytes) into out; returns 0 or -errno. */
static int copy_file(int out, int src, off_t size)
{
    for (off_t off = 0; off < size;) {
        ssize_t n = sendfile(out, src, &off, (size_t)(size - off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
    }
    return 0;
}

/*
 * A sealed, executable memfd copy of src. MFD_EXEC (Linux 6.3) asks for an executable memfd where
 * vm.memfd_noexec=1 would otherwise seal it non-executable (fchmod then fails with EPERM); an older kernel
 * refuses the flag with EINVAL and has no such sysctl. vm.memfd_noexec=2 refuses MFD_EXEC (EACCES).
 */
static int exec_memfd(int src, off_t size)
{
    int mfd = memfd_create("isolation-exec", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (mfd < 0 && errno == EINVAL)
        mfd = memfd_create("isolation-exec", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    mfd = above_stdio(mfd);
    if (mfd < 0)
        return -errno;
    int rc = copy_file(mfd, src, size);
    if (rc == 0 && fchmod(mfd, 0555) != 0)
        rc = -errno;
    if (rc == 0 && fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) != 0)
        rc = -errno;
    if (rc == 0) {
        fcntl(mfd, F_ADD_SEALS, F_SEAL_EXEC); /* 6.3+: the mode can no longer change */
        fcntl(mfd, F_ADD_SEALS, F_SEAL_SEAL);
        return mfd;
    }
    close(mfd);
    return rc;
}

/* Whether the file system behind fd allows exec (not mounted noexec). */
static int exec_allowed_on(int fd)
{
    struct statfs sfs;
    return fstatfs(fd, &sfs) == 0 && !(sfs.f_flags & ST_NOEXEC);
}

/*
 * An unnamed copy of src in the first temp directory that allows exec ($TMPDIR, /dev/shm, /tmp), opened
 * read-only (no writer left, or exec fails with ETXTBSY): like a memfd, nothing else can reach it.
 */
static int exec_tmpfile(int src, off_t size)
{
    const char *dirs[] = { getenv("TMPDIR"), "/dev/shm", "/tmp" };
    int rc = -ENOENT;
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (dirs[i] == NULL || dirs[i][0] != '/')
            continue;
        int fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC, 0700);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        char self[64];
        snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
        int ro = -1;
        rc = exec_allowed_on(fd) ? copy_file(fd, src, size) : -EACCES;
        if (rc == 0 && fchmod(fd, 0555) != 0)
            rc = -errno;
        if (rc == 0 && (ro = above_stdio(open(self, O_RDONLY | O_CLOEXEC))) < 0)
            rc = -errno;
        close(fd);
        if (ro >= 0)
            return ro;
    }
    return rc;
}

/* An O_PATH descriptor of the file itself, when everyone may execute it and its mount allows exec. */
static int exec_in_place(const char *path)
{
    int fd = above_stdio(open(path, O_PATH | O_CLOEXEC));
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) == 0111 && exec_allowed_on(fd))
        return fd;
    close(fd);
    return -EACCES;
}

/*
 * Host: a descriptor of the executable at path that execveat(fd, "", AT_EMPTY_PATH) runs, close-on-exec
 * and at 3 or above, whatever vm.memfd_noexec says (0, 1 or 2: it is per PID namespace). In order: a
 * sealed memfd copy (no execute bit needed on the installed file, and nothing inside a sandbox can reach
 * the host's copy through /proc/1/exe: runc CVE-2019-5736); an unnamed copy in a temp directory that
 * allows exec; with in_place, the file itself (O_PATH), when everyone may execute it. *how says which
 * (ISO_EXEC_*). Returns the descriptor, or the memfd's -errno when every way failed.
 */
EXPORT int IsolationNative_OpenExecutable(const char *path, int in_place, int *how)
{
    int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return -errno;
    struct stat st;
    if (fstat(src, &st) != 0) {
        int err = errno;
        close(src);
        return -err;
    }
    int first = exec_memfd(src, st.st_size);
    int fd = first;
    *how = ISO_EXEC_MEMFD;
    if (fd < 0) {
        fd = exec_tmpfile(src, st.st_size);
        *how = ISO_EXEC_TMPFILE;
    }
    if (fd < 0 && in_place) {
        fd = exec_in_place(path);
        *how = ISO_EXEC_IN_PLACE;
    }
    close(src);
    if (fd < 0)
        *how = 0;
    return fd >= 0 ? fd : first;
}

/*
 * Host: what a spawn helper acts with, read from the calling thread (setns and capability changes are per
 * thread): euid, egid, permitted capabilities and the user, mount and PID namespaces. A helper started
 * under another identity must not act for this one (DESIGN.md §2, identity drift).
 */
EXPORT int IsolationNative_Identity(uint64_t out[6])
{
    struct { uint32_t version; int pid; } header = { 0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0 };
    struct { uint32_t effective, permitted, inheritable; } data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &header, data) != 0)
        return -errno;
    out[0] = geteuid();
    out[1] = getegid();
    out[2] = (uint64_t)data[1].permitted << 32 | data[0].permitted;
    static const char *const ns[3] = { "/proc/thread-self/ns/user", "/proc/thread-self/ns/mnt", "/proc/thread-self/ns/pid" };
    for (int i = 0; i < 3; i++) {
        struct stat st;
        out[3 + i] = stat(ns[i], &st) == 0 ? (uint64_t)st.st_ino : 0;
    }
    return 0;
}

/* Host: the Landlock ABI (landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)), or -errno
 * (-EOPNOTSUPP: built in but disabled at boot; -ENOSYS: not built in). */
EXPORT int IsolationNative_LandlockAbi(void)
{
    long rc = syscall(444 /* SYS_landlock_create_ruleset */, NULL, 0, 1u);
    return rc < 0 ? -errno : (int)rc;
}

/* The file the shim is in: the library, or the executable when an application links the shim in (samples/Isolate),
 * where dladdr finds no name (a static executable has no link map; a dynamic one names itself ""). */
EXPORT const char *IsolationNative_LibraryPath(void)
{
    Dl_info info;
    if (dladdr((void *)&IsolationNative_LibraryPath, &info) != 0 && info.dli_fname != NULL && info.dli_fname[0] != '\0')
        return info.dli_fname;
    static char exe[4096]; /* every caller writes the same bytes */
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    return exe;
}
