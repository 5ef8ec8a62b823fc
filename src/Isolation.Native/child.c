/*
 * child.c: the child side, between clone and execve.
 *
 * Runs with CLONE_VM on the parent's memory, on a stack the parent allocated, with every signal blocked.
 * Only raw system calls (raw_syscall.h): no malloc, no stdio, no locks, no errno. Every call is followed
 * by its check; a failure writes one iso_child_error to the O_CLOEXEC error pipe and exits. The steps
 * run in the order of DESIGN.md §3, step 5.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <errno.h>
#include <netinet/in.h>

#include "isolation_native.h"
#include "raw_syscall.h"
#include "child.h"
#include "child_security.h"

#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct iso_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

/* The kernel's struct sigaction (with sa_restorer on both x86_64 and arm64). */
struct iso_kernel_sigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};

static size_t iso_strlen(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0')
        n++;
    return n;
}

static void iso_memcpy(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i];
}

static int iso_has_slash(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s == '/')
            return 1;
    return 0;
}

/* child: report the failed step and exit; the parent maps it back to what the user wrote. */
__attribute__((noreturn)) static void fail(const struct iso_spawn_request *req, int step, int op_index, long err, int detail)
{
    struct iso_child_error rec = { step, op_index, (int32_t)(err < 0 ? -err : err), detail };
    iso_sys3(SYS_write, req->child_error_fd, &rec, sizeof rec);
    for (;;)
        iso_sys1(SYS_exit, 127);
}

/* mkdir -p, using the request's scratch buffer. Existing directories are fine. */
static long mkdir_p(const struct iso_spawn_request *req, const char *path, long mode)
{
    size_t len = iso_strlen(path);
    if (len + 1 > req->scratch_size)
        return -ENAMETOOLONG;
    char *buf = req->scratch;
    iso_memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        long rc = iso_sys3(SYS_mkdirat, AT_FDCWD, buf, i == len ? mode : 0755);
        if (rc < 0 && rc != -EEXIST)
            return rc;
        buf[i] = saved;
    }
    return 0;
}

/* Create the parent directories of path (0755), then path itself as an empty file if missing. */
static long touch_p(const struct iso_spawn_request *req, const char *path, long mode)
{
    size_t len = iso_strlen(path);
    if (len + 1 > req->scratch_size)
        return -ENAMETOOLONG;
    size_t slash = len;
    while (slash > 0 && path[slash] != '/')
        slash--;
    if (slash > 0) {
        char *buf = req->scratch;
        iso_memcpy(buf, path, slash);
        buf[slash] = '\0';
        /* mkdir_p copies into scratch itself; copying a prefix of scratch onto itself is safe. */
        long rc = mkdir_p(req, buf, 0755);
        if (rc < 0)
            return rc;
    }
    long fd = iso_sys4(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, mode);
    if (fd < 0)
        return fd;
    iso_sys1(SYS_close, fd);
    return 0;
}

/* Make a mount read-only (and apply extra MS_NOSUID/MS_NODEV/MS_NOEXEC), keeping the flags the kernel
 * locked in a user namespace: mount_setattr where the kernel has it (covers submounts with
 * AT_RECURSIVE), else a bind remount that repeats the mount's current flags. */
static long make_readonly(const char *path, int recursive, uint64_t extra_ms_flags)
{
    struct iso_mount_attr attr = { 0 };
    attr.attr_set = MOUNT_ATTR_RDONLY;
    if (extra_ms_flags & MS_NOSUID) attr.attr_set |= 0x00000002; /* MOUNT_ATTR_NOSUID */
    if (extra_ms_flags & MS_NODEV) attr.attr_set |= 0x00000004;  /* MOUNT_ATTR_NODEV */
    if (extra_ms_flags & MS_NOEXEC) attr.attr_set |= 0x00000008; /* MOUNT_ATTR_NOEXEC */
    long rc = iso_sys5(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &attr, sizeof attr);
    if (rc != -ENOSYS)
        return rc;
    struct statfs st;
    rc = iso_sys2(SYS_statfs, path, &st);
    if (rc < 0)
        return rc;
    unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY | extra_ms_flags;
    if (st.f_flags & ST_NOSUID) flags |= MS_NOSUID;
    if (st.f_flags & ST_NODEV) flags |= MS_NODEV;
    if (st.f_flags & ST_NOEXEC) flags |= MS_NOEXEC;
    if (st.f_flags & ST_NOATIME) flags |= MS_NOATIME;
    if (st.f_flags & ST_NODIRATIME) flags |= MS_NODIRATIME;
    if (st.f_flags & ST_RELATIME) flags |= MS_RELATIME;
    return iso_sys5(SYS_mount, 0, path, 0, flags, 0);
}

/* child, in the new mount namespace: one operation of the mount plan. Returns -errno and sets *detail. */
static long run_op(const struct iso_spawn_request *req, const struct iso_op *op, int *detail)
{
    long rc;
    struct stat st;
    *detail = ISO_SUB_MAIN;
    switch (op->kind) {
    case ISO_OP_MOUNT:
        if (op->flags & ISO_OPF_MKTARGET) {
            *detail = ISO_SUB_MKDIR_TARGET;
            if ((rc = mkdir_p(req, op->s2, 0755)) < 0)
                return rc;
            *detail = ISO_SUB_MAIN;
        }
        rc = iso_sys5(SYS_mount, op->s1, op->s2, op->s3, op->mount_flags, op->s4);
        if (rc < 0)
            return rc;
        if (op->flags & ISO_OPF_READONLY) {
            *detail = ISO_SUB_REMOUNT;
            return make_readonly(op->s2, 0, 0);
        }
        return 0;
    case ISO_OP_BIND:
        rc = iso_sys4(SYS_newfstatat, AT_FDCWD, op->s1, &st, 0);
        if (rc < 0)
            return (rc == -ENOENT && (op->flags & ISO_OPF_OPTIONAL)) ? 0 : rc;
        if (op->flags & ISO_OPF_MKTARGET) {
            *detail = ISO_SUB_MKDIR_TARGET;
            rc = S_ISDIR(st.st_mode) ? mkdir_p(req, op->s2, 0755) : touch_p(req, op->s2, 0644);
            if (rc < 0)
                return rc;
            *detail = ISO_SUB_MAIN;
        }
        rc = iso_sys5(SYS_mount, op->s1, op->s2, 0, MS_BIND | ((op->flags & ISO_OPF_RECURSIVE) ? MS_REC : 0), 0);
        if (rc < 0)
            return rc;
        if ((op->flags & ISO_OPF_READONLY) || (op->mount_flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC))) {
            *detail = ISO_SUB_REMOUNT;
            if (op->flags & ISO_OPF_READONLY)
                return make_readonly(op->s2, (op->flags & ISO_OPF_RECURSIVE) != 0, op->mount_flags);
            struct iso_mount_attr attr = { 0 };
            if (op->mount_flags & MS_NOSUID) attr.attr_set |= 0x2;
            if (op->mount_flags & MS_NODEV) attr.attr_set |= 0x4;
            if (op->mount_flags & MS_NOEXEC) attr.attr_set |= 0x8;
            return iso_sys5(SYS_mount_setattr, AT_FDCWD, op->s2, (op->flags & ISO_OPF_RECURSIVE) ? AT_RECURSIVE : 0, &attr, sizeof attr);
        }
        return 0;
    case ISO_OP_MKDIR:
        rc = mkdir_p(req, op->s2, op->n1);
        if (rc < 0)
            return rc;
        return iso_sys3(SYS_fchmodat, AT_FDCWD, op->s2, op->n1);
    case ISO_OP_SYMLINK:
        if (op->flags & ISO_OPF_MKTARGET) {
            size_t len = iso_strlen(op->s2);
            size_t slash = len;
            while (slash > 0 && op->s2[slash] != '/')
                slash--;
            if (slash > 0 && slash + 1 < req->scratch_size) {
                iso_memcpy(req->scratch, op->s2, slash);
                req->scratch[slash] = '\0';
                *detail = ISO_SUB_MKDIR_TARGET;
                if ((rc = mkdir_p(req, req->scratch, 0755)) < 0)
                    return rc;
                *detail = ISO_SUB_MAIN;
            }
        }
        rc = iso_sys3(SYS_symlinkat, op->s1, AT_FDCWD, op->s2);
        return rc;
    case ISO_OP_WRITE_FILE:
    case ISO_OP_COPY_FD: {
        *detail = ISO_SUB_MKDIR_TARGET;
        if ((rc = touch_p(req, op->s2, op->n1)) < 0)
            return rc;
        *detail = ISO_SUB_OPEN;
        long fd = iso_sys4(SYS_openat, AT_FDCWD, op->s2, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, op->n1);
        if (fd < 0)
            return fd;
        *detail = ISO_SUB_WRITE;
        if (op->kind == ISO_OP_WRITE_FILE) {
            const char *p = op->s1;
            int64_t left = op->n2;
            while (left > 0) {
                long n = iso_sys3(SYS_write, fd, p, left);
                if (n == -EINTR)
                    continue;
                if (n < 0) {
                    iso_sys1(SYS_close, fd);
                    return n;
                }
                p += n;
                left -= n;
            }
        } else {
            for (;;) {
                long n = iso_sys3(SYS_read, op->n2, req->scratch, req->scratch_size);
                if (n == -EINTR)
                    continue;
                if (n <= 0) {
                    if (n < 0) {
                        iso_sys1(SYS_close, fd);
                        return n;
                    }
                    break;
                }
                for (long off = 0; off < n;) {
                    long w = iso_sys3(SYS_write, fd, req->scratch + off, n - off);
                    if (w == -EINTR)
                        continue;
                    if (w < 0) {
                        iso_sys1(SYS_close, fd);
                        return w;
                    }
                    off += w;
                }
            }
        }
        iso_sys1(SYS_close, fd);
        return iso_sys3(SYS_fchmodat, AT_FDCWD, op->s2, op->n1);
    }
    case ISO_OP_CHMOD:
        return iso_sys3(SYS_fchmodat, AT_FDCWD, op->s2, op->n1);
    case ISO_OP_REMOUNT:
        if (op->flags & ISO_OPF_READONLY)
            return make_readonly(op->s2, (op->flags & ISO_OPF_RECURSIVE) != 0, op->mount_flags);
        return iso_sys5(SYS_mount, 0, op->s2, 0, MS_BIND | MS_REMOUNT | op->mount_flags, 0);
    case ISO_OP_PROPAGATION:
        return iso_sys5(SYS_mount, 0, op->s2, 0, op->mount_flags, 0);
    case ISO_OP_TOUCH:
        return touch_p(req, op->s2, op->n1);
    case ISO_OP_MASK:
        rc = iso_sys4(SYS_newfstatat, AT_FDCWD, op->s2, &st, 0);
        if (rc == -ENOENT)
            return 0; /* nothing to hide */
        if (rc < 0)
            return rc;
        if (S_ISDIR(st.st_mode))
            return iso_sys5(SYS_mount, "tmpfs", op->s2, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=0555");
        return iso_sys5(SYS_mount, "/dev/null", op->s2, 0, MS_BIND, 0);
    case ISO_OP_MOUNT_SETATTR: {
        struct iso_mount_attr attr = { (uint64_t)op->n1, (uint64_t)op->n2, 0, 0 };
        return iso_sys5(SYS_mount_setattr, AT_FDCWD, op->s2, (op->flags & ISO_OPF_RECURSIVE) ? AT_RECURSIVE : 0, &attr, sizeof attr);
    }
    case ISO_OP_PIVOT_ROOT:
        /* pivot_root(".", "."): stack the old root under the new one, then detach it (pivot_root(2)). */
        *detail = ISO_SUB_CHDIR;
        if ((rc = iso_sys1(SYS_chdir, op->s2)) < 0)
            return rc;
        *detail = ISO_SUB_PIVOT;
        if ((rc = iso_sys2(SYS_pivot_root, ".", ".")) < 0)
            return rc;
        *detail = ISO_SUB_DETACH;
        if ((rc = iso_sys2(SYS_umount2, ".", MNT_DETACH)) < 0)
            return rc;
        if ((rc = iso_sys1(SYS_chdir, "/")) < 0)
            return rc;
        if (op->flags & ISO_OPF_READONLY) {
            *detail = ISO_SUB_REMOUNT;
            return make_readonly("/", 0, 0);
        }
        return 0;
    case ISO_OP_IDMAP: {
        /* An idmapped clone of s1 attached at s2, mapped through our own user namespace. */
        long tree = iso_sys3(SYS_open_tree, AT_FDCWD, op->s1, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | ((op->flags & ISO_OPF_RECURSIVE) ? AT_RECURSIVE : 0));
        if (tree < 0)
            return tree;
        *detail = ISO_SUB_OPEN;
        long userns = iso_sys4(SYS_openat, AT_FDCWD, "/proc/self/ns/user", O_RDONLY | O_CLOEXEC, 0);
        if (userns < 0) {
            iso_sys1(SYS_close, tree);
            return userns;
        }
        struct iso_mount_attr attr = { MOUNT_ATTR_IDMAP | ((op->flags & ISO_OPF_READONLY) ? MOUNT_ATTR_RDONLY : 0), 0, 0, (uint64_t)userns };
        *detail = ISO_SUB_REMOUNT;
        rc = iso_sys5(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | ((op->flags & ISO_OPF_RECURSIVE) ? AT_RECURSIVE : 0), &attr, sizeof attr);
        iso_sys1(SYS_close, userns);
        if (rc == 0) {
            *detail = ISO_SUB_MAIN;
            if (op->flags & ISO_OPF_MKTARGET) {
                rc = mkdir_p(req, op->s2, 0755);
            }
            if (rc == 0)
                rc = iso_sys5(SYS_move_mount, tree, "", AT_FDCWD, op->s2, MOVE_MOUNT_F_EMPTY_PATH);
        }
        iso_sys1(SYS_close, tree);
        return rc;
    }
    default:
        return -EINVAL;
    }
}

static long loopback_up(void)
{
    long fd = iso_sys3(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    struct ifreq ifr;
    char *p = (char *)&ifr;
    for (size_t i = 0; i < sizeof ifr; i++)
        p[i] = 0;
    ifr.ifr_name[0] = 'l';
    ifr.ifr_name[1] = 'o';
    long rc = iso_sys3(SYS_ioctl, fd, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = iso_sys3(SYS_ioctl, fd, SIOCSIFFLAGS, &ifr);
    }
    iso_sys1(SYS_close, fd);
    return rc;
}

/* execvpe without malloc or errno: search req->search_path when the program name has no '/'. */
static long exec_program(const struct iso_spawn_request *req)
{
    if (iso_has_slash(req->path) || req->search_path == 0)
        return iso_sys3(SYS_execve, req->path, req->argv, req->envp);
    size_t name_len = iso_strlen(req->path);
    long result = -ENOENT;
    const char *dir = req->search_path;
    for (;;) {
        const char *end = dir;
        while (*end != '\0' && *end != ':')
            end++;
        size_t dir_len = (size_t)(end - dir);
        if (dir_len + 1 + name_len + 1 <= req->scratch_size) {
            char *buf = req->scratch;
            size_t n = 0;
            if (dir_len == 0)
                buf[n++] = '.';
            iso_memcpy(buf + n, dir, dir_len);
            n += dir_len;
            buf[n++] = '/';
            iso_memcpy(buf + n, req->path, name_len + 1);
            long rc = iso_sys3(SYS_execve, buf, req->argv, req->envp);
            if (rc == -EACCES)
                result = rc;
            else if (rc != -ENOENT && rc != -ENOTDIR && rc != -ESTALE && rc != -ENODEV && rc != -ETIMEDOUT)
                return rc;
        }
        if (*end == '\0')
            return result;
        dir = end + 1;
    }
}

/* The child's entry point (see iso_clone3 / clone). Never returns on success. */
int iso_child_main(void *arg)
{
    const struct iso_spawn_request *req = arg;
    long rc;
    struct iso_security_state sec;   /* security: see child_security.c */
    int sec_step = 0, sec_index = -1;

    /* child, signals still blocked: restore default dispositions; the runtime's handlers live in the
     * parent's memory and must never run here (pal_process.c does the same). */
    struct iso_kernel_sigaction dfl = { SIG_DFL, 0, 0, 0 };
    for (int sig = 1; sig < 65; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        iso_sys4(SYS_rt_sigaction, sig, &dfl, 0, 8);
    }

    /* sync 1: wait until the parent has written our id maps and placed us in our cgroups. */
    if (req->flags & ISO_SPAWN_WAIT_RELEASE) {
        char byte;
        do
            rc = iso_sys3(SYS_read, req->child_sync_fd, &byte, 1);
        while (rc == -EINTR);
        if (rc != 1)
            fail(req, ISO_STEP_WAIT_RELEASE, -1, rc < 0 ? rc : -ECANCELED, 0);
    }
    iso_sys1(SYS_close, req->child_sync_fd);

    /* security, early: become root of the new user namespace before setup (untrusted preset), and limit
     * nested user namespaces while the host's /proc is still visible (child_security.c). */
    if ((rc = iso_security_early(req, &sec, &sec_step)) < 0)
        fail(req, sec_step, -1, rc, 0);

    if (req->pdeath_signal != 0 && (rc = iso_sys2(SYS_prctl, PR_SET_PDEATHSIG, req->pdeath_signal)) < 0)
        fail(req, ISO_STEP_DEATH_SIGNAL, -1, rc, 0);

    /* A cgroup namespace is rooted at the cgroup we are in now, so unshare it only after placement. */
    if ((req->unshare_flags & CLONE_NEWCGROUP) && (rc = iso_sys1(SYS_unshare, CLONE_NEWCGROUP)) < 0)
        fail(req, ISO_STEP_UNSHARE_CGROUP, -1, rc, 0);

    /* time_namespaces(7): offsets can be set only before a process enters the namespace; we enter it at
     * execve. */
    if (req->unshare_flags & CLONE_NEWTIME) {
        if ((rc = iso_sys1(SYS_unshare, CLONE_NEWTIME)) < 0)
            fail(req, ISO_STEP_UNSHARE_TIME, -1, rc, 0);
        if (req->timens_offsets_len > 0) {
            long fd = iso_sys4(SYS_openat, AT_FDCWD, "/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC, 0);
            if (fd < 0)
                fail(req, ISO_STEP_TIME_OFFSETS, -1, fd, 0);
            rc = iso_sys3(SYS_write, fd, req->timens_offsets, req->timens_offsets_len);
            if (rc < 0)
                fail(req, ISO_STEP_TIME_OFFSETS, -1, rc, 0);
            iso_sys1(SYS_close, fd);
        }
    }

    for (uint32_t i = 0; i < req->nops; i++) {
        int detail = 0;
        if ((rc = run_op(req, &req->ops[i], &detail)) < 0)
            fail(req, ISO_STEP_MOUNT_OP, (int)i, rc, detail);
    }

    if (req->hostname != 0 && (rc = iso_sys2(SYS_sethostname, req->hostname, iso_strlen(req->hostname))) < 0)
        fail(req, ISO_STEP_HOSTNAME, -1, rc, 0);
    if (req->domainname != 0 && (rc = iso_sys2(SYS_setdomainname, req->domainname, iso_strlen(req->domainname))) < 0)
        fail(req, ISO_STEP_DOMAINNAME, -1, rc, 0);
    if ((req->flags & ISO_SPAWN_LOOPBACK_UP) && (rc = loopback_up()) < 0)
        fail(req, ISO_STEP_LOOPBACK, -1, rc, 0);

    if ((req->flags & ISO_SPAWN_NEW_SESSION) && (rc = iso_sys0(SYS_setsid)) < 0)
        fail(req, ISO_STEP_NEW_SESSION, -1, rc, 0);

    /* security: keep the permitted set across the identity switch when capabilities are kept. */
    if ((rc = iso_security_before_identity(req, &sec_step)) < 0)
        fail(req, sec_step, -1, rc, 0);

    /* Identity last: a switch away from uid 0 drops the capabilities the steps above needed. */
    if (req->flags & ISO_SPAWN_SET_IDS) {
        if (req->flags & ISO_SPAWN_SET_GROUPS) {
            if ((rc = iso_sys2(SYS_setgroups, req->ngroups, req->groups)) < 0)
                fail(req, ISO_STEP_SETGROUPS, -1, rc, 0);
        }
        if ((rc = iso_sys3(SYS_setresgid, req->gid, req->gid, req->gid)) < 0)
            fail(req, ISO_STEP_SETGID, -1, rc, 0);
        if ((rc = iso_sys3(SYS_setresuid, req->uid, req->uid, req->uid)) < 0)
            fail(req, ISO_STEP_SETUID, -1, rc, 0);
    }

    /* stdio: move sources that sit on 0..2 out of the way first, so one dup2 cannot clobber another. */
    int32_t fds[3] = { req->stdio_fds[0], req->stdio_fds[1], req->stdio_fds[2] };
    for (int i = 0; i < 3; i++) {
        if (fds[i] >= 0 && fds[i] < 3 && fds[i] != i) {
            long moved = iso_sys3(SYS_fcntl, fds[i], F_DUPFD_CLOEXEC, 3);
            if (moved < 0)
                fail(req, ISO_STEP_STDIO, i, moved, 0);
            for (int j = i + 1; j < 3; j++)
                if (fds[j] == fds[i])
                    fds[j] = (int32_t)moved;
            fds[i] = (int32_t)moved;
        }
    }
    for (int i = 0; i < 3; i++) {
        if (fds[i] < 0)
            continue;
        rc = fds[i] == i ? iso_sys3(SYS_fcntl, i, F_SETFD, 0) : iso_sys3(SYS_dup3, fds[i], i, 0);
        if (rc < 0)
            fail(req, ISO_STEP_STDIO, i, rc, 0);
    }

    if (req->cwd != 0 && (rc = iso_sys1(SYS_chdir, req->cwd)) < 0)
        fail(req, ISO_STEP_CHDIR, -1, rc, 0);

    /* Only the fds the user passed reach the program: everything from 3 up is closed at execve. */
    if (!(req->flags & ISO_SPAWN_KEEP_FDS)) {
        rc = iso_sys3(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
        if (rc < 0 && rc != -ENOSYS && rc != -EINVAL)
            fail(req, ISO_STEP_CLOSE_FDS, -1, rc, 0);
    }

    uint64_t empty = 0;
    iso_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &empty, 0, 8);

    /* security, last before exec: nested userns, caps, no_new_privs, Landlock, seccomp (child_security.c). */
    if ((rc = iso_security_apply(req, &sec, &sec_step, &sec_index)) < 0)
        fail(req, sec_step, sec_index, rc, 0);

    if (req->init_fd >= 0) {
        /* isolation-init reports the payload's exec failure through the same error pipe. */
        if ((rc = iso_sys3(SYS_fcntl, req->child_error_fd, F_SETFD, 0)) < 0)
            fail(req, ISO_STEP_EXEC_INIT, -1, rc, 0);
        rc = iso_sys5(SYS_execveat, req->init_fd, "", req->init_argv, req->envp, AT_EMPTY_PATH);
        iso_sys3(SYS_fcntl, req->child_error_fd, F_SETFD, FD_CLOEXEC);
        fail(req, ISO_STEP_EXEC_INIT, -1, rc, 0);
    }
    rc = exec_program(req);
    fail(req, ISO_STEP_EXEC, -1, rc, 0);
}
