/*
 * child_security.h: the child's security steps (capabilities, securebits, no_new_privs, Landlock, seccomp,
 * nested user namespaces). Called from iso_child_main (child.c); raw system calls only, like the rest of
 * the child. Each function returns 0 or -errno and names the failed step in *step (enum iso_step 30-39)
 * and a step-specific index in *index (the Landlock rule or seccomp filter, else -1).
 */
#ifndef ISOLATION_CHILD_SECURITY_H
#define ISOLATION_CHILD_SECURITY_H

#include "isolation_native.h"

/* State kept on the child's stack between the calls below. */
struct iso_security_state {
    int proc_self_fd; /* O_PATH fd on /proc/<pid> opened before the mount plan ran, or -1 */
};

/* child, right after sync 1 and before the mount plan: limit nested user namespaces in the sandbox's user
 * namespace while we still hold CAP_SYS_RESOURCE there and see the host's /proc. */
long iso_security_early(const struct iso_spawn_request *req, struct iso_security_state *st, int *step);

/* child, just before the identity switch: keep the permitted set across setresuid when caps are kept. */
long iso_security_before_identity(const struct iso_spawn_request *req, int *step);

/* child, last step before execve: nested user namespace, capabilities and securebits, no_new_privs,
 * Landlock, seccomp (in this order; seccomp last so that it does not filter our own setup). */
long iso_security_apply(const struct iso_spawn_request *req, struct iso_security_state *st, int *step, int *index);

#endif
