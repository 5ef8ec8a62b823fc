/*
 * helper.c: isolation-helper, the spawn helper (DESIGN.md §2, §3, §3a).
 *
 * A small single-threaded process, started by the host library once (IsolationNative_StartHelper) with its
 * channel on fd 3 and stdio on /dev/null (or closed pipes where /dev/null cannot be opened; the host then gives
 * every sandbox stdio of its own). Every sandbox is its child: it forks them (a copy of this small
 * process, never of the .NET host), writes their id maps, releases them, tells the host when they have
 * exec'd, reaps them and reports their status. The host's memory, credentials, dumpable flag and descriptor
 * table are never touched by a sandbox's setup, and no exit status can be reaped by anyone else.
 *
 * Event-driven: one epoll set holds the channel, the status sockets of spawns waiting for their host, the
 * error pipes of spawns waiting for exec and the pidfds of running sandboxes, so a slow spawn never holds up
 * another. When the channel reaches EOF the host is gone: every sandbox gets its death signal and the helper
 * exits (each sandbox also has PR_SET_PDEATHSIG on the helper, so even a SIGKILLed helper takes them along).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "isolation_native.h"
#include "child.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

struct iso_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

struct spec {
    uint32_t id;
    struct iso_packed_spec *block;
    size_t size;
};

enum spawn_state { FREE = 0, WAIT_HOST, WAIT_EXEC, RUNNING };

/* What an epoll event is about: the low two bits of its data, the spawn's index above them. */
enum event_kind { EV_CHANNEL = 0, EV_STATUS = 1, EV_ERROR = 2, EV_EXIT = 3 };

struct spawn {
    int state;
    int pid;
    int pidfd;
    int sync_fd;      /* write end of sync 1, until released */
    int error_fd;     /* read end of the child's error pipe, until exec */
    int status_fd;    /* our end of the host's status socket */
    int death_signal;
    int used_clone3;
    void *block;      /* the child's struct spawn_block while it may still run on our memory (CLONE_VM) */
};

static int epfd = -1;
static int self_pidfd = -1;
static struct spec *specs;
static size_t nspecs;
static struct spawn *spawns;
static size_t nspawns;

/* The message being read; a spawn copies what its child needs into a block of its own (struct spawn_block). */
static char message[sizeof(struct iso_spawn_msg) + 64 * 1024];

static void watch_for(int fd, size_t index, int kind, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.u64 = ((uint64_t)index << 2) | (uint64_t)kind };
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        abort(); /* only ENOMEM can get here; the host sees EOF on its sockets and reports it */
}

static void watch(int fd, size_t index, int kind)
{
    watch_for(fd, index, kind, EPOLLIN);
}

static void unwatch(int fd)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Sends a reply (and up to two descriptors) on a status socket. A host that has gone away is not an error here. */
static void reply_with(int status_fd, const struct iso_reply *r, const int *fds, int nfds)
{
    struct iovec iov = { (void *)r, sizeof *r };
    union {
        char buf[CMSG_SPACE(sizeof(int) * 2)];
        struct cmsghdr align;
    } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds > 0) {
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    while (sendmsg(status_fd, &msg, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

static void reply(int status_fd, const struct iso_reply *r)
{
    reply_with(status_fd, r, NULL, 0);
}

static void reply_failed(int status_fd, int pid, int step, int index, int err, int detail)
{
    struct iso_reply r;
    memset(&r, 0, sizeof r);
    r.kind = ISO_REPLY_FAILED;
    r.pid = pid;
    r.error.step = step;
    r.error.op_index = index;
    r.error.err = err;
    r.error.detail = detail;
    reply(status_fd, &r);
}

struct spawn_block;
static void free_block(struct spawn_block *blk);

static void free_spawn(struct spawn *s)
{
    free_block(s->block);
    s->block = NULL;
    close_fd(&s->pidfd);
    close_fd(&s->sync_fd);
    close_fd(&s->error_fd);
    close_fd(&s->status_fd);
    s->state = FREE;
}

/* Kills a child that has not exec'd (or whose host gave up on it) and reaps it. */
static void kill_and_reap(struct spawn *s)
{
    syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
    siginfo_t info;
    while (waitid((idtype_t)P_PIDFD, (id_t)s->pidfd, &info, WEXITED) < 0 && errno == EINTR)
        ;
}

static void fail_spawn(struct spawn *s, int step, int err)
{
    kill_and_reap(s);
    reply_failed(s->status_fd, s->pid, step, -1, err, 0);
    free_spawn(s);
}

static struct spawn *new_spawn(size_t *index)
{
    for (size_t i = 0; i < nspawns; i++)
        if (spawns[i].state == FREE) {
            *index = i;
            return &spawns[i];
        }
    size_t grown = nspawns == 0 ? 64 : nspawns * 2;
    struct spawn *more = realloc(spawns, grown * sizeof *more);
    if (more == NULL)
        return NULL;
    memset(more + nspawns, 0, (grown - nspawns) * sizeof *more);
    spawns = more;
    *index = nspawns;
    nspawns = grown;
    return &spawns[*index];
}

static struct spec *find_spec(uint32_t id)
{
    for (size_t i = 0; i < nspecs; i++)
        if (specs[i].id == id)
            return &specs[i];
    return NULL;
}

static int write_proc(int pid, const char *name, const char *text)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int err = n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
    close(fd);
    return err;
}

/*
 * sync 1: the child may go on. The host gets its pidfd and the read end of its error pipe at once, and learns
 * how setup ends straight from the child (a record, or EOF at exec), with no hand-off through us on that path;
 * we only wait for the pipe's last writer to go (EPOLLHUP) to know the child no longer runs on our memory.
 */
static void release(struct spawn *s, size_t index)
{
    char byte = 1;
    ssize_t n;
    while ((n = write(s->sync_fd, &byte, 1)) < 0 && errno == EINTR)
        ;
    int err = n == 1 ? 0 : errno;
    close_fd(&s->sync_fd);
    if (err != 0) {
        fail_spawn(s, ISO_STEP_HELPER_RELEASE, err);
        return;
    }
    struct iso_reply r;
    memset(&r, 0, sizeof r);
    r.kind = ISO_REPLY_STARTED;
    r.pid = s->pid;
    r.used_clone3 = s->used_clone3;
    int fds[2] = { s->pidfd, s->error_fd };
    reply_with(s->status_fd, &r, fds, 2);
    s->state = WAIT_EXEC;
    watch_for(s->error_fd, index, EV_ERROR, 0); /* EPOLLHUP only: the host reads the pipe, we never do */
}

/* ---- ISO_MSG_SPAWN: clone, the helper's part between clone and release, then release or hand over ---- */

/*
 * Everything one child reads between clone and exec, in one allocation of its own: with CLONE_VM the child
 * runs on our memory, so nothing it reads may be a buffer the next message overwrites, and it is freed only
 * once the child has exec'd or died (free_spawn). The variable parts (argv, init argv, a patched copy of the
 * ops, the strings) follow the fixed ones.
 */
struct spawn_block {
    struct iso_spawn_request req;
    struct iso_child_args child;
    struct iso_fd_slot slots[ISO_MAX_SPAWN_FDS];
    int fds[ISO_MAX_SPAWN_FDS];
    char error_fd_text[16];
    char scratch[8192];
    char *stack;      /* ISO_CHILD_STACK bytes above a guard page (stack_get) */
};

/*
 * The child's stack: its own mapping with a PROT_NONE guard page below it, so that an overflow faults instead
 * of writing over the block (and, with CLONE_VM, our heap). Freed stacks are kept for the next spawns.
 */
#define ISO_CHILD_STACK (64 * 1024)
static char *stack_cache[16];
static int nstack_cache;

static char *stack_get(void)
{
    if (nstack_cache > 0)
        return stack_cache[--nstack_cache];
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *base = mmap(NULL, page + ISO_CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    if (mprotect(base, page, PROT_NONE) != 0) {
        munmap(base, page + ISO_CHILD_STACK);
        return NULL;
    }
    return base + page;
}

static void stack_put(char *stack)
{
    if (stack == NULL)
        return;
    if (nstack_cache < (int)(sizeof stack_cache / sizeof stack_cache[0])) {
        stack_cache[nstack_cache++] = stack;
        return;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    munmap(stack - page, page + ISO_CHILD_STACK);
}

/* Frees a spawn block and its stack. */
static void free_block(struct spawn_block *blk)
{
    if (blk == NULL)
        return;
    stack_put(blk->stack);
    free(blk);
}

/* The pid a pidfd refers to, in our PID namespace (its fdinfo's "Pid:" line); -errno when it cannot be told. */
static long pid_of_pidfd(int pidfd)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -EIO;
    buf[n] = '\0';
    const char *line = strstr(buf, "\nPid:");
    long pid = line != NULL ? strtol(line + 5, NULL, 10) : 0;
    return pid > 0 ? pid : -ESRCH;
}

/*
 * A spawn that joins namespaces (ISO_FD_JOIN, ISO_FD_JOIN_LATE): setns(2) would change us, so a trampoline, a
 * private copy of our memory sharing our descriptor table (CLONE_FILES), joins and clones the child as our child,
 * its pidfd landing in our table (child_join.c). We wait for it (a few system calls), then handle the child like any
 * other: we are its parent, so we write its maps, release it and reap it. Returns the child's pid with its pidfd,
 * or -errno with the failed step and its index.
 */
static long spawn_joined(struct spawn_block *blk, int cgroup_fd, int *pidfd, int *used_clone3, int *into_cgroup, int *step, int *index)
{
    *step = ISO_STEP_HELPER_CLONE;
    *index = blk->req.flags & ISO_SPAWN_NO_CLONE3 ? 1 : 0;
    int result[2];
    if (pipe2(result, O_CLOEXEC | O_NONBLOCK) != 0)
        return -errno;
    char *stack = stack_get(), *stage_stack = stack_get();
    struct iso_join_args ja = { &blk->child, cgroup_fd, result[1], blk->stack, ISO_CHILD_STACK, stage_stack, ISO_CHILD_STACK, { 0 } };
    long tpid = -ENOMEM;
    if (stack != NULL && stage_stack != NULL) {
        tpid = -ENOSYS;
        if (!(blk->req.flags & ISO_SPAWN_NO_CLONE3)) {
            struct iso_clone_args args;
            memset(&args, 0, sizeof args);
            args.flags = CLONE_FILES;
            args.exit_signal = SIGCHLD;
            args.stack = (uint64_t)(uintptr_t)stack;
            args.stack_size = ISO_CHILD_STACK;
            tpid = iso_clone3(&args, sizeof args, iso_join_main, &ja);
        }
        if (tpid == -ENOSYS) {
            tpid = clone(iso_join_main, stack + ISO_CHILD_STACK, CLONE_FILES | SIGCHLD, &ja);
            if (tpid < 0)
                tpid = -errno;
        }
    }
    if (tpid > 0)
        while (waitpid((pid_t)tpid, NULL, 0) < 0 && errno == EINTR)
            ;
    stack_put(stack);
    stack_put(stage_stack);
    struct iso_join_result r;
    ssize_t n = tpid > 0 ? read(result[0], &r, sizeof r) : -1;
    close(result[0]);
    close(result[1]); /* only now: the trampoline wrote it through our shared table */
    if (tpid < 0)
        return tpid;
    if (n != (ssize_t)sizeof r)
        return -ECHILD; /* the trampoline died before it answered */
    if (r.stage_pid > 0)
        while (waitpid(r.stage_pid, NULL, 0) < 0 && errno == EINTR)
            ;
    if (r.pid < 0) {
        *step = r.step;
        *index = r.index;
        return r.pid;
    }
    /* The child is ours (CLONE_PARENT) and unreaped, so neither its pid nor its pidfd can name another process. */
    long pid = r.pid > 0 ? r.pid : pid_of_pidfd(r.pidfd);
    if (pid < 0) {
        syscall(SYS_pidfd_send_signal, r.pidfd, SIGKILL, NULL, 0);
        siginfo_t info;
        while (waitid((idtype_t)P_PIDFD, (id_t)r.pidfd, &info, WEXITED) < 0 && errno == EINTR)
            ;
        close(r.pidfd);
        return pid;
    }
    *pidfd = r.pidfd;
    *used_clone3 = r.used_clone3;
    *into_cgroup = r.into_cgroup;
    return pid;
}

static void do_spawn(const struct iso_spawn_msg *m, size_t len, int *fds, uint32_t nfds)
{
    int status_fd = -1, cgroup_fd = -1, args_fd = -1, has_init = 0, patches_ops = 0, joins = 0;
    for (uint32_t i = 0; i < nfds; i++) {
        if (m->slots[i].role == ISO_FD_STATUS)
            status_fd = fds[i];
        else if (m->slots[i].role == ISO_FD_CGROUP)
            cgroup_fd = fds[i];
        else if (m->slots[i].role == ISO_FD_ARGS)
            args_fd = fds[i];
        else if (m->slots[i].role == ISO_FD_INIT)
            has_init = 1;
        else if (m->slots[i].role == ISO_FD_OP)
            patches_ops = 1;
        else if (m->slots[i].role == ISO_FD_JOIN || m->slots[i].role == ISO_FD_JOIN_LATE)
            joins = 1;
    }
    struct spec *spec = find_spec(m->spec_id);
    int err = 0;
    if (status_fd < 0 || spec == NULL)
        err = spec == NULL ? ENOENT : EBADMSG;
    else if (args_fd < 0 && len < sizeof *m + m->strings_len)
        err = EBADMSG;

    /* Sized first, then filled: the block, argv, init argv, the ops (when this spawn patches them), the strings. */
    const struct iso_spawn_request *tmpl = spec != NULL ? &spec->block->req : NULL;
    size_t argv_off = sizeof(struct spawn_block);
    size_t init_off = argv_off + ((size_t)m->argc + 1) * sizeof(char *);
    size_t ops_off = init_off + (has_init ? ((size_t)m->argc + 4) * sizeof(char *) : 0);
    size_t strings_off = ops_off + (patches_ops && tmpl != NULL ? tmpl->nops * sizeof(struct iso_op) : 0);
    size_t total = strings_off + m->strings_len + 1;
    struct spawn_block *blk = NULL;
    if (err == 0 && (m->argc > 1u << 20 || m->strings_len > 1u << 30 || (blk = malloc(total)) == NULL))
        err = ENOMEM;
    if (err == 0 && (blk->stack = stack_get()) == NULL)
        err = ENOMEM;
    char *base = (char *)blk;
    char *strings = base + strings_off;
    if (err == 0) {
        if (args_fd >= 0)
            err = pread(args_fd, strings, m->strings_len, 0) == (ssize_t)m->strings_len ? 0 : EBADMSG;
        else
            memcpy(strings, (const char *)(m + 1), m->strings_len);
        strings[m->strings_len] = '\0';
    }

    /* "path\0argv0\0arg1\0...": argc + 1 strings, all inside strings_len. */
    char **argv = (char **)(base + argv_off);
    size_t off = 0;
    for (uint32_t i = 0; err == 0 && i <= m->argc; i++) {
        const char *end = off < m->strings_len ? memchr(strings + off, '\0', m->strings_len - off) : NULL;
        if (end == NULL) {
            err = EBADMSG;
            break;
        }
        if (i > 0)
            argv[i - 1] = strings + off;
        off = (size_t)(end - strings) + 1;
    }

    size_t index = 0;
    struct spawn *s = err == 0 ? new_spawn(&index) : NULL;
    if (err == 0 && s == NULL)
        err = ENOMEM;
    int sync_pipe[2] = { -1, -1 }, error_pipe[2] = { -1, -1 };
    if (err == 0 && (pipe2(sync_pipe, O_CLOEXEC) != 0 || pipe2(error_pipe, O_CLOEXEC) != 0))
        err = errno;
    if (err != 0) {
        if (status_fd >= 0)
            reply_failed(status_fd, 0, err == ENOENT ? ISO_STEP_HELPER_SPEC : ISO_STEP_HELPER_CLONE, -1, err, 0);
        for (int i = 0; i < 2; i++) {
            close_fd(&sync_pipe[i]);
            close_fd(&error_pipe[i]);
        }
        for (uint32_t i = 0; i < nfds; i++)
            close(fds[i]);
        free_block(blk);
        return;
    }

    /* The child's request: the spec's, with this spawn's program, arguments and descriptors. */
    argv[m->argc] = NULL;
    struct iso_spawn_request *req = &blk->req;
    *req = *tmpl;
    req->flags |= m->flags & ISO_SPAWN_NO_CLONE3;
    req->path = strings;
    req->argv = argv;
    req->stdio_fds[0] = req->stdio_fds[1] = req->stdio_fds[2] = -1;
    req->cgroup_fd = -1;
    req->init_fd = -1;
    req->helper_pidfd = self_pidfd;
    req->pdeath_signal = m->death_signal;
    req->scratch = blk->scratch;
    req->scratch_size = sizeof blk->scratch;
    req->child_sync_fd = sync_pipe[0];
    req->child_error_fd = error_pipe[1];
    if (patches_ops) {
        /* FileFromDescriptor and idmapped trees put this spawn's descriptors into the ops: a copy of them. */
        struct iso_op *ops = (struct iso_op *)(base + ops_off);
        memcpy(ops, tmpl->ops, tmpl->nops * sizeof *ops);
        req->ops = ops;
    }
    if (has_init) {
        /* isolation-init ERROR_FD FILE ARGV0 ARGS...: the child writes ERROR_FD once its descriptors are in place. */
        char **init_argv = (char **)(base + init_off);
        init_argv[0] = "isolation-init";
        init_argv[1] = blk->error_fd_text;
        init_argv[2] = strings;
        for (uint32_t i = 0; i <= m->argc; i++)
            init_argv[3 + i] = argv[i];
        req->init_argv = init_argv;
    }
    memcpy(blk->slots, m->slots, nfds * sizeof *blk->slots);
    memcpy(blk->fds, fds, nfds * sizeof *blk->fds);
    blk->child = (struct iso_child_args){ req, blk->slots, blk->fds, nfds };

    /*
     * CLONE_VM unless the child changes its credentials (ISO_SPAWN_FORK): no page-table copy, which costs more
     * than the rest of a spawn on some virtual machines (fork + _exit alone: 1.6-2.1 ms vs 0.07-0.4 ms for vfork
     * here). A credential change would reset the dumpable flag of the memory it shares (commit_creds): ours
     * and that of every other child in setup, whose /proc files would then belong to root while their id maps
     * are written. Such children get a private copy of our (small) memory instead.
     */
    int share_vm = !(req->flags & ISO_SPAWN_FORK);
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old); /* the child resets dispositions and unblocks before exec */
    int pidfd = -1;
    long pid = -ENOSYS;
    int used_clone3 = 0, into_cgroup = 0, clone_step = ISO_STEP_HELPER_CLONE, clone_index = req->flags & ISO_SPAWN_NO_CLONE3 ? 1 : 0;
    if (joins) {
        /* The child runs on the trampoline's copy of our memory, never on ours. */
        share_vm = 0;
        pid = spawn_joined(blk, cgroup_fd, &pidfd, &used_clone3, &into_cgroup, &clone_step, &clone_index);
    } else if (!(req->flags & ISO_SPAWN_NO_CLONE3)) {
        struct iso_clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = (share_vm ? CLONE_VM : 0) | CLONE_PIDFD | req->clone_flags | (cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0);
        args.pidfd = (uint64_t)(uintptr_t)&pidfd;
        args.exit_signal = SIGCHLD;
        args.cgroup = cgroup_fd >= 0 ? (uint64_t)cgroup_fd : 0;
        args.stack = (uint64_t)(uintptr_t)blk->stack;
        args.stack_size = ISO_CHILD_STACK;
        pid = iso_clone3(&args, sizeof args, iso_child_main, &blk->child);
        used_clone3 = into_cgroup = pid > 0;
    }
    if (pid == -ENOSYS && !joins) {
        /* clone(2): no CLONE_INTO_CGROUP; the cgroup is joined below, before release. */
        pid = clone(iso_child_main, blk->stack + ISO_CHILD_STACK, (int)((share_vm ? CLONE_VM : 0) | CLONE_PIDFD | req->clone_flags | SIGCHLD), &blk->child, &pidfd);
        if (pid < 0)
            pid = -errno;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);

    close(sync_pipe[0]);
    close(error_pipe[1]);
    for (uint32_t i = 0; i < nfds; i++)
        if (fds[i] != status_fd && fds[i] != cgroup_fd)
            close(fds[i]);
    if (pid < 0) {
        reply_failed(status_fd, 0, clone_step, clone_index, (int)-pid, 0);
        close(status_fd);
        close_fd(&cgroup_fd);
        close(sync_pipe[1]);
        close(error_pipe[0]);
        free_block(blk);
        return;
    }
    if (!share_vm) {
        free_block(blk); /* the child has its own copy */
        blk = NULL;
    }
    *s = (struct spawn){ WAIT_HOST, (int)pid, pidfd, sync_pipe[1], error_pipe[0], status_fd, m->death_signal, used_clone3, blk };

    /* The helper's part, while the child waits at sync 1 and only we can reap it (so its pid is its own). */
    const struct iso_packed_spec *b = spec->block;
    if (b->setgroups != NULL && (err = write_proc(s->pid, "setgroups", b->setgroups)) < 0) {
        fail_spawn(s, ISO_STEP_HELPER_SETGROUPS, -err);
        return;
    }
    if (b->uid_map != NULL && (err = write_proc(s->pid, "uid_map", b->uid_map)) < 0) {
        fail_spawn(s, ISO_STEP_HELPER_UID_MAP, -err);
        return;
    }
    if (b->gid_map != NULL && (err = write_proc(s->pid, "gid_map", b->gid_map)) < 0) {
        fail_spawn(s, ISO_STEP_HELPER_GID_MAP, -err);
        return;
    }
    if (cgroup_fd >= 0 && !into_cgroup) {
        /* clone(2) (or a joined cgroup namespace) kept the child out of its cgroup: join it now, before it runs a single step. */
        char pid_text[16];
        int procs = openat(cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        int len = snprintf(pid_text, sizeof pid_text, "%d", s->pid);
        err = procs < 0 ? errno : write(procs, pid_text, (size_t)len) == len ? 0 : errno;
        if (procs >= 0)
            close(procs);
        if (err != 0) {
            close_fd(&cgroup_fd);
            fail_spawn(s, ISO_STEP_HELPER_CGROUP, err);
            return;
        }
    }
    close_fd(&cgroup_fd);

    if (m->flags & ISO_SPAWN_HOST_STEP) {
        /* The host has work of its own (newuidmap, v1 cgroups, rlimits): it answers on the status socket. */
        struct iso_reply r;
        memset(&r, 0, sizeof r);
        r.kind = ISO_REPLY_CLONED;
        r.pid = s->pid;
        r.used_clone3 = used_clone3;
        reply(s->status_fd, &r);
        watch(s->status_fd, index, EV_STATUS);
        return;
    }
    release(s, index);
}

/* The host's answer after its own steps: one byte to go on; EOF (or anything else) to give up. */
static void on_status(struct spawn *s, size_t index)
{
    char byte = 0;
    ssize_t n;
    while ((n = read(s->status_fd, &byte, 1)) < 0 && errno == EINTR)
        ;
    unwatch(s->status_fd);
    if (n == 1 && byte == 1) {
        release(s, index);
        return;
    }
    kill_and_reap(s);
    free_spawn(s);
}

/* sync 2 (as seen by us): the child exec'd, or failed and exited. Either way it no longer runs on our memory;
 * the host has read which from the pipe. From now on we wait to reap it. */
static void on_error_pipe(struct spawn *s, size_t index)
{
    unwatch(s->error_fd);
    close_fd(&s->error_fd);
    free_block(s->block);
    s->block = NULL;
    s->state = RUNNING;
    watch(s->pidfd, index, EV_EXIT);
}

/* The sandbox exited: reap it and tell the host. The record, not the pidfd, is what says it has exited. */
/*
 * This helper's own peak resident set in KiB (VmHWM, proc(5)), 0 when unknown. A child cloned with CLONE_VM (or
 * forked) leaves our memory at execve, and the kernel folds that memory's high-water mark into the child's
 * ru_maxrss (fs/exec.c, exec_mmap): a reported maxrss at or below this is ours, not the program's.
 */
static int32_t own_peak_rss_kb(void)
{
    char buf[2048];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    const char *line = strstr(buf, "\nVmHWM:");
    return line ? (int32_t)strtol(line + 7, NULL, 10) : 0;
}

static void on_exit_event(struct spawn *s)
{
    siginfo_t info;
    struct rusage ru;
    memset(&info, 0, sizeof info);
    memset(&ru, 0, sizeof ru);
    long rc;
    while ((rc = syscall(SYS_waitid, P_PIDFD, s->pidfd, &info, WEXITED | WNOHANG, &ru)) < 0 && errno == EINTR)
        ;
    if (rc == 0 && info.si_pid == 0)
        return; /* not yet (a spurious wake-up) */
    unwatch(s->pidfd);
    struct iso_reply r;
    memset(&r, 0, sizeof r);
    r.kind = ISO_REPLY_EXITED;
    r.pid = s->pid;
    if (rc < 0) {
        r.kind = ISO_REPLY_FAILED;
        r.error.step = ISO_STEP_NONE;
        r.error.err = errno;
    }
    r.code = info.si_code;
    r.status = info.si_status;
    r.user_us = (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec;
    r.sys_us = (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
    r.maxrss_kb = ru.ru_maxrss;
    r.rss_floor_kb = own_peak_rss_kb();
    reply(s->status_fd, &r);
    free_spawn(s);
}

/* ---- The channel ---- */

static void do_define(const struct iso_define_msg *m, int *fds, uint32_t nfds)
{
    if (nfds != 1)
        goto done;
    struct stat st;
    if (fstat(fds[0], &st) != 0 || st.st_size <= 0)
        goto done;
    /* A private mapping: unpacking writes pointers into our copy only. */
    void *block = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fds[0], 0);
    if (block == MAP_FAILED)
        goto done;
    if (iso_unpack_spec(block, (size_t)st.st_size) != 0) {
        munmap(block, (size_t)st.st_size);
        goto done; /* a spawn naming it is answered with ISO_STEP_HELPER_SPEC */
    }
    struct spec *spec = find_spec(m->spec_id);
    if (spec == NULL) {
        struct spec *more = realloc(specs, (nspecs + 1) * sizeof *more);
        if (more == NULL) {
            munmap(block, (size_t)st.st_size);
            goto done;
        }
        specs = more;
        spec = &specs[nspecs++];
    } else
        munmap(spec->block, spec->size);
    *spec = (struct spec){ m->spec_id, block, (size_t)st.st_size };
done:
    for (uint32_t i = 0; i < nfds; i++)
        close(fds[i]);
}

static void do_forget(const struct iso_define_msg *m)
{
    struct spec *spec = find_spec(m->spec_id);
    if (spec == NULL)
        return;
    munmap(spec->block, spec->size);
    *spec = specs[--nspecs];
}

/* The host is gone (EOF on the channel): its sandboxes go with it (DESIGN.md §3a). */
__attribute__((noreturn)) static void host_gone(void)
{
    for (size_t i = 0; i < nspawns; i++) {
        struct spawn *s = &spawns[i];
        if (s->state == FREE)
            continue;
        syscall(SYS_pidfd_send_signal, s->pidfd, s->state == RUNNING ? s->death_signal : SIGKILL, NULL, 0);
    }
    _exit(0);
}

static void on_channel(int channel)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * ISO_MAX_SPAWN_FDS)];
        struct cmsghdr align;
    } control;
    struct iovec iov = { message, sizeof message };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
    ssize_t n = recvmsg(channel, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0)
        host_gone();
    int fds[ISO_MAX_SPAWN_FDS];
    uint32_t nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count && nfds < ISO_MAX_SPAWN_FDS; i++)
            memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    uint32_t kind = (size_t)n >= sizeof(uint32_t) ? *(uint32_t *)message : 0;
    if (kind == ISO_MSG_DEFINE && (size_t)n >= sizeof(struct iso_define_msg))
        do_define((struct iso_define_msg *)message, fds, nfds);
    else if (kind == ISO_MSG_FORGET && (size_t)n >= sizeof(struct iso_define_msg))
        do_forget((struct iso_define_msg *)message);
    else if (kind == ISO_MSG_SPAWN && (size_t)n >= sizeof(struct iso_spawn_msg) && !(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
             && ((struct iso_spawn_msg *)message)->nfds == nfds)
        do_spawn((struct iso_spawn_msg *)message, (size_t)n, fds, nfds);
    else
        for (uint32_t i = 0; i < nfds; i++)
            close(fds[i]);
}

/*
 * Nothing but stdio (/dev/null) and the channel: whatever the host leaked (a descriptor without close-on-exec)
 * stays out of the helper, and so out of every sandbox. close_range(2) where it works; where it fails (before
 * 5.9, or refused by a seccomp filter with any errno) a walk of /proc/self/fd; without /proc, every number up
 * to RLIMIT_NOFILE's hard limit.
 */
static void close_above_channel(void)
{
    if (syscall(SYS_close_range, ISO_HELPER_CHANNEL_FD + 1, ~0U, 0) == 0)
        return;
    int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        char buf[4096];
        long got;
        /* Closing while reading is fine for /proc/self/fd: its entries are numbers in order. */
        while ((got = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
            for (long off = 0; off < got;) {
                struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *d = (void *)(buf + off);
                off += d->reclen;
                char *end;
                long fd = strtol(d->name, &end, 10);
                if (*end == '\0' && end != d->name && fd > ISO_HELPER_CHANNEL_FD && fd != dir)
                    close((int)fd);
            }
        }
        close(dir);
        if (got == 0)
            return;
    }
    struct rlimit lim;
    long max = getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_max < (1u << 20) ? (long)lim.rlim_max : 1 << 20;
    for (long fd = ISO_HELPER_CHANNEL_FD + 1; fd < max; fd++)
        close((int)fd);
}

int main(int argc, char **argv)
{
    /* A clean slate whatever the host had (DESIGN.md §2): default dispositions (an ignored SIGCHLD would
     * reap our children behind our back), nothing blocked, SIGPIPE ignored for our own writes. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_NAME, "isolation-helper", 0, 0, 0);
    /* Dumpable, like the host: our children are born with our flag, and until sync 1 a child's /proc files
     * must belong to our uid so that we (or newuidmap, for the host) can write its id maps. A process that
     * could ptrace us could ptrace the host as well. */

    /* isolation-helper [PERMITTED_CAPS_HEX]: keep no capability the host's thread did not have (exec as root
     * would grant the full set again). Only ever lowers. */
    if (argc > 1) {
        unsigned long long keep = strtoull(argv[1], NULL, 16);
        struct { uint32_t version; int pid; } header = { 0x20080522 /* _LINUX_CAPABILITY_VERSION_3 */, 0 };
        struct { uint32_t effective, permitted, inheritable; } data[2];
        if (syscall(SYS_capget, &header, data) == 0) {
            for (int i = 0; i < 2; i++) {
                uint32_t mask = (uint32_t)(keep >> (32 * i));
                data[i].permitted &= mask;
                data[i].effective &= mask;
                data[i].inheritable &= mask;
            }
            if (syscall(SYS_capset, &header, data) != 0)
                return 5;
        }
    }

    /* Spawn blocks are allocated and freed at every start: keep freed memory in the heap (no trim, no mmap for
     * them), so the next start reuses pages already mapped instead of faulting in and zeroing new ones. */
    mallopt(M_MMAP_THRESHOLD, 8 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);

    int channel = ISO_HELPER_CHANNEL_FD;
    int type = 0;
    socklen_t type_len = sizeof type;
    if (getsockopt(channel, SOL_SOCKET, SO_TYPE, &type, &type_len) != 0 || type != SOCK_SEQPACKET)
        return 2; /* not started by the library */
    fcntl(channel, F_SETFD, FD_CLOEXEC);
    close_above_channel();

    self_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return 3;
    watch(channel, 0, EV_CHANNEL);

    for (;;) {
        struct epoll_event events[64];
        int n = epoll_wait(epfd, events, 64, -1);
        if (n < 0 && errno != EINTR)
            return 4;
        for (int i = 0; i < n; i++) {
            int kind = (int)(events[i].data.u64 & 3);
            size_t index = (size_t)(events[i].data.u64 >> 2);
            if (kind == EV_CHANNEL) {
                on_channel(channel);
                continue;
            }
            struct spawn *s = &spawns[index];
            if (kind == EV_STATUS && s->state == WAIT_HOST)
                on_status(s, index);
            else if (kind == EV_ERROR && s->state == WAIT_EXEC)
                on_error_pipe(s, index);
            else if (kind == EV_EXIT && s->state == RUNNING)
                on_exit_event(s);
        }
    }
}
