/*
 * isolation-init: a minimal init for PID 1 of a sandbox (NamespaceBuilder.WithInit(), like
 * `docker run --init`). Exec'd by the shim's child from a sealed memfd after all setup.
 *
 *   isolation-init ERROR_FD FILE ARGV0 [ARGS...]
 *
 * Forks the payload (execvp FILE with ARGV0 ARGS...), reports an exec failure through ERROR_FD as an
 * iso_child_error, forwards signals to the payload, reaps every orphan, and exits with the payload's
 * status (128+N when it died of signal N: PID 1 cannot die of its own signals, pid_namespaces(7)).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "isolation_native.h"

static const int forwarded[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM, SIGPIPE };

int main(int argc, char **argv)
{
    if (argc < 4)
        return 125;
    int error_fd = atoi(argv[1]);
    /* Not dumpable: nothing in the sandbox can open /proc/1/exe or ptrace us. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* Exec'd from a memfd, our comm would read "memfd:isolation". */
    prctl(PR_SET_NAME, "isolation-init", 0, 0, 0);

    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaddset(&set, forwarded[i]);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);

    /* vfork: the init is small, but a copy of its page tables is still the dearest part of starting the
     * payload; the child only execs or reports and _exits. */
    pid_t payload = vfork();
    if (payload < 0) {
        struct iso_child_error rec = { ISO_STEP_PAYLOAD_FORK, -1, errno, 0 };
        (void)!write(error_fd, &rec, sizeof rec);
        return 125;
    }
    if (payload == 0) {
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        fcntl(error_fd, F_SETFD, FD_CLOEXEC);
        execvp(argv[2], argv + 3);
        struct iso_child_error rec = { ISO_STEP_EXEC, -1, errno, 0 };
        (void)!write(error_fd, &rec, sizeof rec);
        _exit(127);
    }
    close(error_fd);

    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&set, &info);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            kill(payload, sig);
            continue;
        }
        for (;;) {
            int status;
            pid_t pid = waitpid(-1, &status, WNOHANG);
            if (pid <= 0)
                break;
            if (pid == payload) {
                if (WIFEXITED(status))
                    return WEXITSTATUS(status);
                return 128 + WTERMSIG(status);
            }
        }
    }
}
