/*
 * isolation-init: a minimal init for PID 1 of a sandbox (NamespaceBuilder.WithInit(), like
 * `docker run --init`). Exec'd by the shim's child from a sealed memfd after all setup.
 *
 *   isolation-init ERROR_FD FILE ARGV0 [ARGS...]
 *
 * Forks the payload (FILE with ARGV0 ARGS..., looked up in $PATH as the child does without an init: execve
 * only, so a file without #! fails with ENOEXEC here too instead of running through /bin/sh), reports an exec
 * failure through ERROR_FD as an iso_child_error, forwards every catchable signal to the payload, reaps every
 * orphan (as PID 1, or as a child subreaper without a PID namespace), and exits with the payload's status
 * (128+N when it died of signal N: PID 1 cannot die of its own signals, pid_namespaces(7)).
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

#include <string.h>

/* The child's search path when the environment has no PATH (IsolationSpec.DefaultSearchPath). */
static const char default_path[] = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/* Signals a fault raises in the process itself: not forwarded, never blocked (a blocked one would kill us). */
static const int synchronous[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS };

/* execvpe without the /bin/sh fallback for ENOEXEC, with the child's rules (child.c exec_program): EACCES
 * from any directory wins over ENOENT; any other error stops the search. Returns the errno. */
static int exec_search(const char *file, char *const argv[])
{
    extern char **environ;
    if (strchr(file, '/') != NULL) {
        execve(file, argv, environ);
        return errno;
    }
    const char *path = getenv("PATH");
    if (path == NULL)
        path = default_path;
    size_t name_len = strlen(file);
    int result = ENOENT;
    for (const char *dir = path;; ) {
        const char *end = strchrnul(dir, ':');
        size_t dir_len = (size_t)(end - dir);
        char buf[4096];
        if (dir_len + 1 + name_len + 1 <= sizeof buf) {
            size_t n = 0;
            if (dir_len == 0)
                buf[n++] = '.';
            memcpy(buf + n, dir, dir_len);
            n += dir_len;
            buf[n++] = '/';
            memcpy(buf + n, file, name_len + 1);
            execve(buf, argv, environ);
            if (errno == EACCES)
                result = EACCES;
            else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE && errno != ENODEV && errno != ETIMEDOUT)
                return errno;
        }
        if (*end == '\0')
            return result;
        dir = end + 1;
    }
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 125;
    int error_fd = atoi(argv[1]);
    /* Not dumpable: nothing in the sandbox can open /proc/1/exe or ptrace us. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* Exec'd from a memfd, our comm would read "memfd:isolation". */
    prctl(PR_SET_NAME, "isolation-init", 0, 0, 0);

    /* Without a PID namespace we are not PID 1: orphans of the payload come to us all the same. */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

    /* Every catchable signal is waited for and forwarded (tini does the same), SIGCHLD included for reaping. */
    sigset_t set;
    sigfillset(&set);
    for (size_t i = 0; i < sizeof synchronous / sizeof synchronous[0]; i++)
        sigdelset(&set, synchronous[i]);
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
        int err = exec_search(argv[2], argv + 3);
        struct iso_child_error rec = { ISO_STEP_EXEC, -1, err, 0 };
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
            /* From inside, a signal to PID 1 is ours alone; the payload gets it like a signal sent to it. */
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
