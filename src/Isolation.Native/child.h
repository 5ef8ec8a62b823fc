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
#endif
