#ifndef ISOLATION_CHILD_H
#define ISOLATION_CHILD_H

#include "isolation_native.h"

/* What the helper hands the child it forks: the request (the child's private copy) and the descriptors
 * the host sent for this spawn, as numbered in the helper (and so in the child). */
struct iso_child_args {
    struct iso_spawn_request *req;
    const struct iso_fd_slot *slots;
    int *fds;
    uint32_t nfds;
};

/* child: entry point; arg is a struct iso_child_args. Never returns on success. */
int iso_child_main(void *arg);

/* child: (re-)arm PR_SET_PDEATHSIG with req->pdeath_signal; -ESRCH when the helper is already gone. */
long iso_arm_death_signal(const struct iso_spawn_request *req);

long iso_clone3(void *args, unsigned long size, int (*fn)(void *), void *arg);

/* The trampoline's answer: the child's pid (in the helper's PID namespace; 0: read it from the pidfd) and pidfd (in the
 * helper's descriptor table), or -errno with the failed step. */
struct iso_join_result {
    int32_t pid;
    int32_t pidfd;
    int32_t step;                  /* ISO_STEP_HELPER_JOIN or ISO_STEP_HELPER_CLONE */
    int32_t index;                 /* JOIN: the CLONE_NEW* type; CLONE: 1 when the clone() fallback was used */
    int32_t used_clone3;
    int32_t into_cgroup;           /* the child was cloned into its cgroup (CLONE_INTO_CGROUP) */
    int32_t stage_pid;             /* a second stage the helper must reap (a PID namespace nested in a joined one), or 0 */
    int32_t reserved;
};

/* A spawn that joins namespaces (ISO_FD_JOIN): what the helper hands the trampoline it forks (child_join.c). */
struct iso_join_args {
    struct iso_child_args *child;  /* the child the trampoline clones, as for any spawn */
    int cgroup_fd;                 /* CLONE_INTO_CGROUP target, or -1 */
    int result_fd;                 /* write end of the pipe the trampoline answers on */
    char *child_stack;
    size_t child_stack_size;
    char *stage_stack;             /* the second stage's (a nested PID namespace) */
    size_t stage_stack_size;
    struct iso_join_result out;    /* filled in the trampoline's copy, then written to result_fd */
};

/* trampoline: join, clone the child as the helper's, report, return (exit). */
int iso_join_main(void *arg);

/* child, after setup: enter the ISO_FD_JOIN_LATE user namespace, if any (and close its descriptor). */
long iso_join_late(const struct iso_child_args *a);
#endif
