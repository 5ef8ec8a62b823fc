/*
 * child_join.c: joining existing namespaces (setns(2)) for a spawn (NamespaceBuilder.JoinNamespace).
 *
 * setns changes the calling process, and for some kinds only the caller's later children: after
 * setns(CLONE_NEWPID) the caller stays where it is and only processes it creates afterwards are in the joined
 * PID namespace (pid_namespaces(7)); a namespace created after setns(CLONE_NEWUSER) belongs to the user namespace
 * joined (user_namespaces(7)). The spawn helper must not change itself, so a spawn that joins goes through a
 * trampoline (helper.c, spawn_joined): a private copy of the helper (no CLONE_VM: joining a user namespace
 * changes its credentials, and setns(CLONE_NEWTIME) wants a memory shared with nobody) that
 *   1. joins every namespace of the spawn, in nsenter's two passes (below);
 *   2. clones the sandbox's child with the spec's CLONE_NEW* flags and CLONE_PARENT, so the child is the
 *      helper's own child (the helper writes its maps, releases and reaps it as for any other spawn) and the
 *      namespaces it creates belong to the user namespace joined, a new PID namespace nested in the one joined;
 *      its pidfd lands in the helper's descriptor table, which the trampoline shares (CLONE_FILES);
 *   3. reports the child's pid and pidfd (or the failed step) on a pipe and exits.
 * The child runs on the trampoline's copy of the helper's memory (CLONE_VM), which only it uses once the
 * trampoline has exited. Like child.c, only raw system calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "isolation_native.h"
#include "raw_syscall.h"
#include "child.h"

#ifndef SYS_setns
#define SYS_setns 308
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

struct iso_clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

static void report(int fd, const struct iso_join_result *r)
{
    iso_sys3(SYS_write, fd, r, sizeof *r);
}

/*
 * trampoline: join the spawn's namespaces as util-linux nsenter does, in two passes. Pass 1 joins every one but
 * the user namespace and lets a failure pass: a caller privileged where it is (root) can join namespaces its own
 * user namespace owns before entering another user namespace takes that privilege away. Pass 2 joins the user
 * namespace, then whatever pass 1 could not (now with the capabilities the joined user namespace gives: the
 * unprivileged case, where the others belong to it); a failure there is the answer.
 */
static long join_all(const struct iso_child_args *a, int *failed_type)
{
    int joined[ISO_MAX_SPAWN_FDS];
    for (uint32_t i = 0; i < a->nfds; i++)
        joined[i] = a->slots[i].role != ISO_FD_JOIN;
    for (uint32_t i = 0; i < a->nfds; i++) /* pass 1 */
        if (!joined[i] && a->slots[i].arg != CLONE_NEWUSER && iso_sys2(SYS_setns, a->fds[i], a->slots[i].arg) == 0)
            joined[i] = 1;
    for (int user = 1; user >= 0; user--) { /* pass 2: the user namespace, then the rest */
        for (uint32_t i = 0; i < a->nfds; i++) {
            if (joined[i] || (a->slots[i].arg == CLONE_NEWUSER) != user)
                continue;
            long rc = iso_sys2(SYS_setns, a->fds[i], a->slots[i].arg);
            if (rc < 0) {
                *failed_type = a->slots[i].arg;
                return rc;
            }
            joined[i] = 1;
        }
    }
    return 0;
}

/* trampoline (or its second stage): clone the sandbox's child as the helper's child (CLONE_PARENT), with a pidfd that lands
 * in the helper's descriptor table (shared: CLONE_FILES). Answers in j->out. */
static int clone_child(void *arg)
{
    struct iso_join_args *j = arg;
    const struct iso_spawn_request *req = j->child->req;
    /* A joined cgroup namespace may not see the sandbox's new cgroup, which CLONE_INTO_CGROUP requires
     * (cgroup_attach_permissions): the helper then writes cgroup.procs instead. */
    int joins_cgroup = 0;
    for (uint32_t i = 0; i < j->child->nfds; i++)
        if (j->child->slots[i].role == ISO_FD_JOIN && j->child->slots[i].arg == CLONE_NEWCGROUP)
            joins_cgroup = 1;
    int into = j->cgroup_fd >= 0 && !joins_cgroup;
    int pidfd = -1;
    long pid = -ENOSYS;
    if (!(req->flags & ISO_SPAWN_NO_CLONE3)) {
        struct iso_clone3_args c;
        memset(&c, 0, sizeof c);
        /* clone3(2): with CLONE_PARENT the exit signal must be 0; the child gets ours (SIGCHLD) for the helper. */
        c.flags = CLONE_VM | CLONE_PARENT | CLONE_PIDFD | req->clone_flags | (into ? CLONE_INTO_CGROUP : 0);
        c.pidfd = (uint64_t)(uintptr_t)&pidfd;
        c.cgroup = into ? (uint64_t)j->cgroup_fd : 0;
        c.stack = (uint64_t)(uintptr_t)j->child_stack;
        c.stack_size = j->child_stack_size;
        pid = iso_clone3(&c, sizeof c, iso_child_main, j->child);
        j->out.used_clone3 = pid > 0;
    }
    if (pid == -ENOSYS) {
        /* clone(2), from our private copy of the helper's memory: its errno is ours alone. */
        into = 0;
        pid = clone(iso_child_main, j->child_stack + j->child_stack_size, (int)(CLONE_VM | CLONE_PARENT | CLONE_PIDFD | req->clone_flags), j->child, &pidfd);
        if (pid < 0)
            pid = -errno;
    }
    j->out.pid = (int32_t)pid;
    j->out.pidfd = pidfd;
    j->out.into_cgroup = pid > 0 && into;
    return 0;
}

/* The trampoline's entry point (helper.c, spawn_joined); its return value is its exit status. */
int iso_join_main(void *arg)
{
    struct iso_join_args *j = arg;
    const struct iso_spawn_request *req = j->child->req;
    struct iso_join_result *r = &j->out;
    memset(r, 0, sizeof *r);
    r->pidfd = -1;

    int type = 0, joins_pid = 0;
    long rc = join_all(j->child, &type);
    if (rc < 0) {
        r->pid = (int32_t)rc;
        r->step = ISO_STEP_HELPER_JOIN;
        r->index = type;
        report(j->result_fd, r);
        return 1;
    }
    for (uint32_t i = 0; i < j->child->nfds; i++)
        if (j->child->slots[i].role == ISO_FD_JOIN && j->child->slots[i].arg == CLONE_NEWPID)
            joins_pid = 1;

    if (joins_pid && (req->clone_flags & CLONE_NEWPID)) {
        /* A new PID namespace nested in the joined one: the kernel makes one only for a process whose own PID namespace
         * is to be its parent (copy_pid_ns), and ours is still the helper's. So a second stage, created in the joined
         * one (and, CLONE_PARENT, the helper's child too, which it reaps), clones the child; it shares our memory
         * (CLONE_VM, CLONE_VFORK: we wait for it) and answers in j->out. Its pids are the joined namespace's: the helper
         * learns the child's own from its pidfd. */
        struct iso_clone3_args c;
        memset(&c, 0, sizeof c);
        c.flags = CLONE_VM | CLONE_VFORK | CLONE_PARENT | CLONE_FILES;
        c.stack = (uint64_t)(uintptr_t)j->stage_stack;
        c.stack_size = j->stage_stack_size;
        long stage = -ENOSYS;
        if (!(req->flags & ISO_SPAWN_NO_CLONE3))
            stage = iso_clone3(&c, sizeof c, clone_child, j);
        if (stage == -ENOSYS) {
            stage = clone(clone_child, j->stage_stack + j->stage_stack_size, (int)(CLONE_VM | CLONE_VFORK | CLONE_PARENT | CLONE_FILES), j);
            if (stage < 0)
                stage = -errno;
        }
        if (stage < 0)
            r->pid = (int32_t)stage;
        else {
            r->stage_pid = (int32_t)stage;
            if (r->pid > 0)
                r->pid = 0; /* the joined namespace's number: the helper reads its own from the pidfd */
        }
    } else {
        clone_child(j);
    }
    if (r->pid < 0) {
        r->step = ISO_STEP_HELPER_CLONE;
        r->index = req->flags & ISO_SPAWN_NO_CLONE3 ? 1 : 0;
    }
    report(j->result_fd, r);
    return r->pid < 0;
}

/*
 * child, after setup (mounts, host names, lo) and before the identity switch and the security steps: enter the user
 * namespace of an ISO_FD_JOIN_LATE descriptor (bubblewrap's --userns2), where the program has no privilege over the
 * namespaces and mounts set up above. 0 when there is none.
 */
long iso_join_late(const struct iso_child_args *a)
{
    for (uint32_t i = 0; i < a->nfds; i++) {
        if (a->slots[i].role != ISO_FD_JOIN_LATE)
            continue;
        long rc = iso_sys2(SYS_setns, a->fds[i], CLONE_NEWUSER);
        iso_sys1(SYS_close, a->fds[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}
