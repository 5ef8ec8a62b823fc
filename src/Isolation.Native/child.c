/*
 * child.c: the child side, between clone and execve.
 *
 * The child is a fork of the spawn helper (helper.c): it has a private copy of the helper's small memory,
 * and nothing of the host's. It still uses only raw system calls (raw_syscall.h): no malloc, no stdio, no
 * locks, no errno, so the same code could run on a shared stack again. Every call is followed by its
 * check; a failure writes one iso_child_error to the O_CLOEXEC error pipe and exits. The steps run in the
 * order of DESIGN.md §3, step 5.
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

#include <poll.h>

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
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef MOUNT_ATTR_NOSUID
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
#endif
#ifndef RESOLVE_IN_ROOT
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_IN_ROOT 0x10
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

/*
 * Mount-plan operations. Every path an op touches is resolved through a `where`: either a host path
 * (dirfd AT_FDCWD, no resolve flags) or a path inside the new root, resolved with
 * openat2(root_fd, path, RESOLVE_IN_ROOT) so that a symlink in the image (`proc -> /etc`) resolves inside
 * the root, never out of it (openat2(2)). Mounts are then attached to the resolved descriptor, not to a
 * path: fs mounts with fchdir + mount(".") and binds with open_tree + move_mount(MOVE_MOUNT_T_EMPTY_PATH)
 * (open_tree(2), move_mount(2)), so nothing is looked up twice.
 */

/* The state the op loop carries: the new root, once ISO_OP_OPEN_ROOT has opened it. On the child's stack. */
struct op_ctx {
    long root_fd;              /* O_PATH fd of the new root, or -1 */
    const char *root_path;     /* the path it was opened from (reopened after a mount onto the root) */
    const char *proc_fd_dir;   /* "/proc/self/fd" as reachable now, for overlay layer paths */
    const char *proc_self_ns_user; /* our user namespace, for idmapped binds */
    int pivoted;               /* the last pivot_root happened: the cwd is the new "/" */
};

struct where {
    long dirfd;
    uint64_t resolve;
    const char *path;
};

struct iso_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

static struct where where_of(const struct op_ctx *ctx, const char *path, int in_root)
{
    struct where w = { AT_FDCWD, 0, path };
    if (in_root && ctx->root_fd >= 0) {
        while (*path == '/')
            path++;
        w.dirfd = ctx->root_fd;
        w.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
        w.path = path;
    }
    return w;
}

static long w_open(const struct where *w, const char *path, uint64_t flags, uint64_t mode)
{
    struct iso_open_how how = { flags | O_CLOEXEC, mode, w->resolve };
    return iso_sys4(SYS_openat2, w->dirfd, *path != '\0' ? path : ".", &how, sizeof how);
}

static int w_is_root(const struct where *w, const struct op_ctx *ctx)
{
    return w->dirfd == ctx->root_fd && w->dirfd >= 0 && w->path[0] == '\0';
}

/* After a mount onto the new root itself, root_fd still names the covered directory: reopen it. */
static long reopen_root(struct op_ctx *ctx)
{
    long fd = iso_sys4(SYS_openat, AT_FDCWD, ctx->root_path, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    iso_sys1(SYS_close, ctx->root_fd);
    ctx->root_fd = fd;
    return 0;
}

/* mkdir -p w->path (parents 0755, the last one `mode`, exactly: chmod'ed past the umask when we created
 * it). Returns an O_PATH fd of the directory. Uses the request's scratch buffer. */
static long w_mkdir_p(const struct iso_spawn_request *req, const struct where *w, long mode)
{
    size_t len = iso_strlen(w->path);
    if (len + 1 > req->scratch_size)
        return -ENAMETOOLONG;
    char *buf = req->scratch;
    iso_memcpy(buf, w->path, len + 1);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    size_t start = 0;
    while (buf[start] == '/')
        start++;
    if (buf[start] == '\0')
        return w_open(w, buf, O_PATH | O_DIRECTORY, 0);
    for (size_t i = start;; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        if (i == start) { /* "//" */
            start++;
            continue;
        }
        char saved = buf[i];
        int last = saved == '\0';
        buf[i] = '\0';
        long fd = w_open(w, buf, O_PATH | O_DIRECTORY, 0);
        if (fd == -ENOENT) {
            char first = buf[start];
            buf[start] = '\0';
            long parent = w_open(w, buf, O_PATH | O_DIRECTORY, 0);
            buf[start] = first;
            if (parent < 0)
                return parent;
            long rc = iso_sys3(SYS_mkdirat, parent, buf + start, last ? mode : 0755);
            if (rc == 0 && last)
                rc = iso_sys4(SYS_fchmodat, parent, buf + start, mode, 0);
            iso_sys1(SYS_close, parent);
            if (rc < 0 && rc != -EEXIST)
                return rc;
            fd = w_open(w, buf, O_PATH | O_DIRECTORY, 0);
        }
        if (fd < 0 || last)
            return fd;
        iso_sys1(SYS_close, fd);
        buf[i] = saved;
        start = i + 1;
        while (buf[start] == '/')
            start++;
        if (buf[start] == '\0')
            return w_open(w, buf, O_PATH | O_DIRECTORY, 0);
        i = start - 1;
    }
}

/* Open (creating 0755 as needed) the parent directory of w->path; *leaf points at the last component. */
static long w_parent(const struct iso_spawn_request *req, const struct where *w, const char **leaf)
{
    size_t len = iso_strlen(w->path);
    if (len + 1 > req->scratch_size)
        return -ENAMETOOLONG;
    size_t slash = len;
    while (slash > 0 && w->path[slash - 1] != '/')
        slash--;
    *leaf = w->path + slash;
    if (**leaf == '\0')
        return -EINVAL;
    struct where parent = *w;
    char *buf = req->scratch;
    size_t plen = slash;
    iso_memcpy(buf, w->path, plen);
    buf[plen] = '\0';
    parent.path = buf;
    return w_mkdir_p(req, &parent, 0755);
}

/* Resolve a mount target, creating it when missing and `create`: a directory (0755) or an empty file
 * (0444, as bubblewrap creates it: nothing is meant to write to a mount point) when the source is not a
 * directory. Returns an O_PATH fd. */
static long w_target(const struct iso_spawn_request *req, const struct where *w, int want_dir, int create)
{
    long fd = w_open(w, w->path, O_PATH, 0);
    if (fd != -ENOENT || !create)
        return fd;
    if (want_dir)
        return w_mkdir_p(req, w, 0755);
    const char *leaf;
    long parent = w_parent(req, w, &leaf);
    if (parent < 0)
        return parent;
    long file = iso_sys4(SYS_openat, parent, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0444);
    iso_sys1(SYS_close, parent);
    if (file < 0 && file != -EEXIST)
        return file;
    if (file >= 0)
        iso_sys1(SYS_close, file);
    return w_open(w, w->path, O_PATH, 0);
}

static uint64_t ms_to_attr(uint64_t ms)
{
    uint64_t attr = 0;
    if (ms & MS_RDONLY) attr |= MOUNT_ATTR_RDONLY;
    if (ms & MS_NOSUID) attr |= MOUNT_ATTR_NOSUID;
    if (ms & MS_NODEV) attr |= MOUNT_ATTR_NODEV;
    if (ms & MS_NOEXEC) attr |= MOUNT_ATTR_NOEXEC;
    return attr;
}

/* mount_setattr(2) on a descriptor: with AT_RECURSIVE it covers every submount. */
static long fd_setattr(long fd, int recursive, uint64_t set, uint64_t clr, uint64_t propagation)
{
    struct iso_mount_attr attr = { set, clr, propagation, 0 };
    return iso_sys5(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr);
}

/* Mount a file system on the directory `fd` names: fchdir there and mount on "." (the cwd is ours: no
 * CLONE_FS). */
static long mount_on_fd(long fd, const char *source, const char *fstype, uint64_t flags, const void *data)
{
    long rc = iso_sys1(SYS_fchdir, fd);
    if (rc < 0)
        return rc;
    return iso_sys5(SYS_mount, source, ".", fstype, flags, data);
}

/* Attach a detached tree (open_tree/fsmount) on the object `target` names. */
static long attach(long tree, long target)
{
    return iso_sys5(SYS_move_mount, tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

/* Append s to buf at *n; returns -ENAMETOOLONG when it does not fit. */
static long append(char *buf, size_t size, size_t *n, const char *s)
{
    size_t len = iso_strlen(s);
    if (*n + len + 1 > size)
        return -ENAMETOOLONG;
    iso_memcpy(buf + *n, s, len + 1);
    *n += len;
    return 0;
}

static long append_fd_path(const struct op_ctx *ctx, char *buf, size_t size, size_t *n, long fd)
{
    char digits[24];
    int d = 0;
    do {
        digits[d++] = (char)('0' + fd % 10);
        fd /= 10;
    } while (fd > 0);
    char num[24];
    for (int i = 0; i < d; i++)
        num[i] = digits[d - 1 - i];
    num[d] = '\0';
    long rc = append(buf, size, n, ctx->proc_fd_dir);
    if (rc == 0)
        rc = append(buf, size, n, "/");
    return rc == 0 ? append(buf, size, n, num) : rc;
}

#define ISO_MAX_LOWER 64

/* overlay: lower layers (s1: n2 NUL-separated host paths), upper s3 + work s4 (host paths), or a tmpfs
 * upper (ISO_OPF_TMPFS_UPPER, size n1), or none (read-only). Layers are opened first and named to
 * overlayfs as /proc/self/fd/N, so a tmpfs mounted on the target cannot hide a lower layer that lives
 * there, and no path needs escaping. */
static long run_overlay(const struct iso_spawn_request *req, struct op_ctx *ctx, const struct iso_op *op, int *detail)
{
    long fds[ISO_MAX_LOWER + 2];
    int nfds = 0;
    long rc = 0, target = -1;
    if (op->n2 < 1 || op->n2 > ISO_MAX_LOWER)
        return -EINVAL;
    const char *p = op->s1;
    for (int64_t i = 0; i < op->n2; i++) {
        struct where lw = where_of(ctx, p, (op->flags & ISO_OPF_SOURCE_IN_ROOT) != 0);
        long fd = w_open(&lw, lw.path, O_PATH | O_DIRECTORY, 0);
        if (fd < 0) {
            rc = fd;
            goto out;
        }
        fds[nfds++] = fd;
        p += iso_strlen(p) + 1;
    }
    int nlower = nfds;
    struct where tw = where_of(ctx, op->s2, (op->flags & ISO_OPF_IN_ROOT) != 0);
    *detail = ISO_SUB_MKDIR_TARGET;
    target = w_target(req, &tw, 1, (op->flags & ISO_OPF_MKTARGET) != 0);
    if (target < 0) {
        rc = target;
        goto out;
    }
    *detail = ISO_SUB_MAIN;
    if (op->flags & ISO_OPF_TMPFS_UPPER) {
        /* The throw-away upper: a tmpfs on the target itself, holding upper/ and work/. */
        char data[64];
        size_t n = 0;
        append(data, sizeof data, &n, "mode=0755");
        if (op->n1 > 0) {
            char num[24];
            int64_t v = op->n1;
            int d = 0;
            char rev[24];
            do {
                rev[d++] = (char)('0' + v % 10);
                v /= 10;
            } while (v > 0);
            for (int i = 0; i < d; i++)
                num[i] = rev[d - 1 - i];
            num[d] = '\0';
            append(data, sizeof data, &n, ",size=");
            append(data, sizeof data, &n, num);
        }
        if ((rc = mount_on_fd(target, "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, data)) < 0)
            goto out;
        if (w_is_root(&tw, ctx)) {
            if ((rc = reopen_root(ctx)) < 0)
                goto out;
            tw = where_of(ctx, op->s2, (op->flags & ISO_OPF_IN_ROOT) != 0);
        }
        long top = w_open(&tw, tw.path, O_PATH | O_DIRECTORY, 0);
        if (top < 0) {
            rc = top;
            goto out;
        }
        /* EOVERFLOW here: our fsuid or fsgid has no mapping in the namespace that owns the tmpfs
         * (inode_init_owner needs one), so say that rather than the ENOENT of the open below. */
        if ((rc = iso_sys3(SYS_mkdirat, top, "upper", 0755)) < 0 || (rc = iso_sys3(SYS_mkdirat, top, "work", 0755)) < 0) {
            iso_sys1(SYS_close, top);
            goto out;
        }
        /* The upper's root takes the mode of the top lower layer, so the merged root keeps the image's mode. */
        struct stat st;
        if (iso_sys4(SYS_newfstatat, fds[0], "", &st, AT_EMPTY_PATH) == 0)
            iso_sys4(SYS_fchmodat, top, "upper", st.st_mode & 07777, 0);
        long upper = iso_sys4(SYS_openat, top, "upper", O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW, 0);
        long work = iso_sys4(SYS_openat, top, "work", O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW, 0);
        iso_sys1(SYS_close, top);
        if (upper >= 0) fds[nfds++] = upper;
        if (work >= 0) fds[nfds++] = work;
        if (upper < 0 || work < 0) {
            rc = upper < 0 ? upper : work;
            goto out;
        }
    } else if (op->s3 != 0) {
        struct where uw = where_of(ctx, op->s3, (op->flags & ISO_OPF_SOURCE_IN_ROOT) != 0);
        struct where ww = where_of(ctx, op->s4, (op->flags & ISO_OPF_SOURCE_IN_ROOT) != 0);
        long upper = w_open(&uw, uw.path, O_PATH | O_DIRECTORY, 0);
        if (upper < 0) {
            rc = upper;
            goto out;
        }
        fds[nfds++] = upper;
        long work = w_open(&ww, ww.path, O_PATH | O_DIRECTORY, 0);
        if (work < 0) {
            rc = work;
            goto out;
        }
        fds[nfds++] = work;
    }

    /* "lowerdir=/proc/self/fd/A:/proc/self/fd/B[,upperdir=...,workdir=...]" in the scratch buffer. */
    char *buf = req->scratch;
    size_t n = 0;
    rc = append(buf, req->scratch_size, &n, "lowerdir=");
    for (int i = 0; i < nlower && rc == 0; i++) {
        if (i > 0)
            rc = append(buf, req->scratch_size, &n, ":");
        if (rc == 0)
            rc = append_fd_path(ctx, buf, req->scratch_size, &n, fds[i]);
    }
    if (rc == 0 && nfds > nlower) {
        rc = append(buf, req->scratch_size, &n, ",upperdir=");
        if (rc == 0) rc = append_fd_path(ctx, buf, req->scratch_size, &n, fds[nlower]);
        if (rc == 0) rc = append(buf, req->scratch_size, &n, ",workdir=");
        if (rc == 0) rc = append_fd_path(ctx, buf, req->scratch_size, &n, fds[nlower + 1]);
    }
    if (rc == 0 && n > 4000)
        rc = -ENAMETOOLONG; /* mount(2) copies one page of data */
    if (rc < 0)
        goto out;
    /* Mount on the target as it is now (the tmpfs upper, if any, sits on it). */
    iso_sys1(SYS_close, target);
    target = w_open(&tw, tw.path, O_PATH | O_DIRECTORY, 0);
    if (target < 0) {
        rc = target;
        goto out;
    }
    rc = mount_on_fd(target, "overlay", "overlay", op->mount_flags, buf);
    if (rc == 0 && w_is_root(&tw, ctx))
        rc = reopen_root(ctx);
out:
    if (target >= 0)
        iso_sys1(SYS_close, target);
    for (int i = 0; i < nfds; i++)
        iso_sys1(SYS_close, fds[i]);
    return rc;
}

/* Bind: a detached clone of the source (open_tree), its flags set on the clone before anyone can see it,
 * then attached on the target's descriptor. With an idmap the clone is idmapped through our own user
 * namespace (mount_setattr(2) MOUNT_ATTR_IDMAP). */
static long run_bind(const struct iso_spawn_request *req, struct op_ctx *ctx, const struct iso_op *op, int *detail, int idmap)
{
    int recursive = (op->flags & ISO_OPF_RECURSIVE) != 0;
    long tree;
    if (idmap && (op->flags & ISO_OPF_PREPARED)) {
        /* The parent idmapped it before clone (only it has CAP_SYS_ADMIN over the host file system);
         * our fd table is a copy of its, so the detached tree is ours to attach. */
        tree = iso_sys3(SYS_fcntl, op->n2, F_DUPFD_CLOEXEC, 3);
        if (tree < 0)
            return tree;
        idmap = 0;
    } else {
        struct where sw = where_of(ctx, op->s1, (op->flags & ISO_OPF_SOURCE_IN_ROOT) != 0);
        long src = w_open(&sw, sw.path, O_PATH, 0);
        if (src < 0)
            return (src == -ENOENT && (op->flags & ISO_OPF_OPTIONAL)) ? 0 : src;
        tree = iso_sys3(SYS_open_tree, src, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0));
        iso_sys1(SYS_close, src);
        if (tree < 0)
            return tree;
    }
    struct stat st;
    long rc = iso_sys4(SYS_newfstatat, tree, "", &st, AT_EMPTY_PATH);
    uint64_t set = (op->flags & ISO_OPF_PREPARED) ? 0 : ms_to_attr(op->mount_flags) | ((op->flags & ISO_OPF_READONLY) ? MOUNT_ATTR_RDONLY : 0);
    if (rc == 0 && idmap) {
        *detail = ISO_SUB_OPEN;
        long userns = iso_sys4(SYS_openat, AT_FDCWD, ctx->proc_self_ns_user, O_RDONLY | O_CLOEXEC, 0);
        if (userns < 0) {
            rc = userns;
        } else {
            *detail = ISO_SUB_REMOUNT;
            struct iso_mount_attr attr = { MOUNT_ATTR_IDMAP | set, 0, 0, (uint64_t)userns };
            rc = iso_sys5(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr);
            iso_sys1(SYS_close, userns);
        }
    } else if (rc == 0 && set != 0) {
        *detail = ISO_SUB_REMOUNT;
        rc = fd_setattr(tree, recursive, set, 0, 0);
    }
    if (rc == 0) {
        struct where tw = where_of(ctx, op->s2, (op->flags & ISO_OPF_IN_ROOT) != 0);
        *detail = ISO_SUB_MKDIR_TARGET;
        long target = w_target(req, &tw, S_ISDIR(st.st_mode), (op->flags & ISO_OPF_MKTARGET) != 0);
        if (target < 0) {
            rc = target;
        } else {
            *detail = ISO_SUB_MAIN;
            rc = attach(tree, target);
            iso_sys1(SYS_close, target);
            if (rc == 0 && w_is_root(&tw, ctx))
                rc = reopen_root(ctx);
        }
    }
    iso_sys1(SYS_close, tree);
    return rc;
}

/* Write a file in the sandbox's tree from memory (s1, n2 bytes) or from fd n2. */
static long run_write_file(const struct iso_spawn_request *req, const struct iso_op *op, const struct where *w, int *detail)
{
    const char *leaf;
    *detail = ISO_SUB_MKDIR_TARGET;
    long parent = w_parent(req, w, &leaf);
    if (parent < 0)
        return parent;
    iso_sys1(SYS_close, parent);
    *detail = ISO_SUB_OPEN;
    long fd = w_open(w, w->path, O_WRONLY | O_CREAT | O_TRUNC | O_NOCTTY, op->n1);
    if (fd < 0)
        return fd;
    *detail = ISO_SUB_WRITE;
    long rc = 0;
    if (op->kind == ISO_OP_WRITE_FILE) {
        const char *p = op->s1;
        int64_t left = op->n2;
        while (left > 0 && rc == 0) {
            long n = iso_sys3(SYS_write, fd, p, left);
            if (n == -EINTR)
                continue;
            if (n < 0)
                rc = n;
            else {
                p += n;
                left -= n;
            }
        }
    } else {
        while (rc == 0) {
            long n = iso_sys3(SYS_read, op->n2, req->scratch, req->scratch_size);
            if (n == -EINTR)
                continue;
            if (n <= 0) {
                rc = n;
                break;
            }
            for (long off = 0; off < n && rc == 0;) {
                long wr = iso_sys3(SYS_write, fd, req->scratch + off, n - off);
                if (wr == -EINTR)
                    continue;
                if (wr < 0)
                    rc = wr;
                else
                    off += wr;
            }
        }
    }
    if (rc == 0)
        rc = iso_sys2(SYS_fchmod, fd, op->n1);
    iso_sys1(SYS_close, fd);
    return rc;
}

/* chmod through an O_PATH descriptor: fchmodat2(AT_EMPTY_PATH) (Linux 6.6), else open it and fchmod. */
static long fd_chmod(const struct where *w, long mode)
{
    long fd = w_open(w, w->path, O_PATH, 0);
    if (fd < 0)
        return fd;
    long rc = iso_sys4(SYS_fchmodat2, fd, "", mode, AT_EMPTY_PATH);
    iso_sys1(SYS_close, fd);
    if (rc != -ENOSYS && rc != -EINVAL && rc != -EOPNOTSUPP)
        return rc;
    fd = w_open(w, w->path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
    if (fd < 0)
        return fd;
    rc = iso_sys2(SYS_fchmod, fd, mode);
    iso_sys1(SYS_close, fd);
    return rc;
}

/* child, in the new mount namespace: one operation of the mount plan. Returns -errno and sets *detail. */
static long run_op(const struct iso_spawn_request *req, struct op_ctx *ctx, const struct iso_op *op, int *detail)
{
    long rc, fd;
    struct stat st;
    struct where w = where_of(ctx, op->s2 != 0 ? op->s2 : "", (op->flags & ISO_OPF_IN_ROOT) != 0);
    *detail = ISO_SUB_MAIN;
    switch (op->kind) {
    case ISO_OP_MOUNT:
        *detail = ISO_SUB_MKDIR_TARGET;
        if ((fd = w_target(req, &w, 1, (op->flags & ISO_OPF_MKTARGET) != 0)) < 0)
            return fd;
        *detail = ISO_SUB_MAIN;
        rc = mount_on_fd(fd, op->s1, op->s3, op->mount_flags, op->s4);
        iso_sys1(SYS_close, fd);
        if (rc == 0 && w_is_root(&w, ctx))
            rc = reopen_root(ctx);
        if (rc < 0 || !(op->flags & ISO_OPF_READONLY))
            return rc;
        *detail = ISO_SUB_REMOUNT;
        if ((fd = w_open(&w, w.path, O_PATH, 0)) < 0)
            return fd;
        rc = fd_setattr(fd, 0, MOUNT_ATTR_RDONLY, 0, 0);
        iso_sys1(SYS_close, fd);
        return rc;
    case ISO_OP_BIND:
        return run_bind(req, ctx, op, detail, 0);
    case ISO_OP_IDMAP:
        return run_bind(req, ctx, op, detail, 1);
    case ISO_OP_MKDIR:
        if ((fd = w_mkdir_p(req, &w, op->n1)) < 0)
            return fd;
        iso_sys1(SYS_close, fd);
        return 0;
    case ISO_OP_SYMLINK: {
        const char *leaf;
        *detail = ISO_SUB_MKDIR_TARGET;
        long parent = w_parent(req, &w, &leaf);
        if (parent < 0)
            return parent;
        *detail = ISO_SUB_MAIN;
        rc = iso_sys3(SYS_symlinkat, op->s1, parent, leaf);
        if (rc == -EEXIST) {
            /* bubblewrap accepts an existing link with the same target. */
            char *buf = req->scratch;
            long n = iso_sys4(SYS_readlinkat, parent, leaf, buf, req->scratch_size - 1);
            size_t want = iso_strlen(op->s1);
            if (n == (long)want) {
                rc = 0;
                for (size_t i = 0; i < want; i++)
                    if (buf[i] != op->s1[i])
                        rc = -EEXIST;
            }
        }
        iso_sys1(SYS_close, parent);
        return rc;
    }
    case ISO_OP_WRITE_FILE:
    case ISO_OP_COPY_FD:
        return run_write_file(req, op, &w, detail);
    case ISO_OP_CHMOD:
        return fd_chmod(&w, op->n1);
    case ISO_OP_REMOUNT:
    case ISO_OP_MOUNT_SETATTR:
    case ISO_OP_PROPAGATION: {
        uint64_t set = op->kind == ISO_OP_MOUNT_SETATTR ? (uint64_t)op->n1
            : ms_to_attr(op->mount_flags) | ((op->flags & ISO_OPF_READONLY) ? MOUNT_ATTR_RDONLY : 0);
        uint64_t clr = op->kind == ISO_OP_MOUNT_SETATTR ? (uint64_t)op->n2 : 0;
        uint64_t propagation = op->kind == ISO_OP_PROPAGATION ? (op->mount_flags & (MS_PRIVATE | MS_SLAVE | MS_SHARED | MS_UNBINDABLE)) : 0;
        int recursive = (op->flags & ISO_OPF_RECURSIVE) || (op->kind == ISO_OP_PROPAGATION && (op->mount_flags & MS_REC));
        if (op->kind == ISO_OP_PROPAGATION && w.dirfd == AT_FDCWD)
            return iso_sys5(SYS_mount, 0, op->s2, 0, op->mount_flags, 0); /* mount_namespaces(7): works on any kernel */
        if ((fd = w_open(&w, w.path, O_PATH, 0)) < 0)
            return fd;
        rc = fd_setattr(fd, recursive, set, clr, propagation);
        iso_sys1(SYS_close, fd);
        return rc;
    }
    case ISO_OP_TOUCH:
        if ((fd = w_target(req, &w, 0, 1)) < 0)
            return fd;
        iso_sys1(SYS_close, fd);
        return 0;
    case ISO_OP_MASK:
        fd = w_open(&w, w.path, O_PATH, 0);
        if (fd == -ENOENT)
            return 0; /* nothing to hide */
        if (fd < 0)
            return fd;
        rc = iso_sys4(SYS_newfstatat, fd, "", &st, AT_EMPTY_PATH);
        if (rc == 0 && S_ISDIR(st.st_mode)) {
            rc = mount_on_fd(fd, "tmpfs", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=0555");
        } else if (rc == 0) {
            /* A file: /dev/null (s1, a host path) over it, read-only. */
            long tree = iso_sys3(SYS_open_tree, AT_FDCWD, op->s1, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
            if (tree < 0) {
                rc = tree;
            } else {
                rc = fd_setattr(tree, 0, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, 0, 0);
                if (rc == 0)
                    rc = attach(tree, fd);
                iso_sys1(SYS_close, tree);
            }
        }
        iso_sys1(SYS_close, fd);
        return rc;
    case ISO_OP_OVERLAY:
        return run_overlay(req, ctx, op, detail);
    case ISO_OP_OPEN_ROOT:
        /* s2: the new root (a mount point by now); s1: where /proc/self/fd is; s3: /proc/self/ns/user. */
        *detail = ISO_SUB_OPEN;
        fd = iso_sys4(SYS_openat, AT_FDCWD, op->s2, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
        if (fd < 0)
            return fd;
        if (ctx->root_fd >= 0)
            iso_sys1(SYS_close, ctx->root_fd);
        ctx->root_fd = fd;
        ctx->root_path = op->s2;
        if (op->s1 != 0)
            ctx->proc_fd_dir = op->s1;
        if (op->s3 != 0)
            ctx->proc_self_ns_user = op->s3;
        return 0;
    case ISO_OP_PIVOT_BASE:
        /* bubblewrap's first pivot: a tmpfs base at s2 holding newroot/ and oldroot/ becomes "/", the
         * host's root moves to /oldroot (sources are then named /oldroot/...). pivot_root(2). */
        *detail = ISO_SUB_MAIN;
        /* s3: its mount data when the spec bounds every tmpfs (a size), else just the mode. */
        if ((rc = iso_sys5(SYS_mount, "tmpfs", op->s2, "tmpfs", MS_NOSUID | MS_NODEV, op->s3 != 0 ? op->s3 : "mode=0755")) < 0)
            return rc;
        *detail = ISO_SUB_CHDIR;
        if ((rc = iso_sys1(SYS_chdir, op->s2)) < 0)
            return rc;
        *detail = ISO_SUB_MKDIR_TARGET;
        if ((rc = iso_sys3(SYS_mkdirat, AT_FDCWD, "newroot", 0755)) < 0)
            return rc;
        if ((rc = iso_sys3(SYS_mkdirat, AT_FDCWD, "oldroot", 0755)) < 0)
            return rc;
        *detail = ISO_SUB_PIVOT;
        if ((rc = iso_sys2(SYS_pivot_root, ".", "oldroot")) < 0)
            return rc;
        ctx->pivoted = 1;
        return iso_sys1(SYS_chdir, "/");
    case ISO_OP_PIVOT_ROOT:
        if (ctx->root_fd >= 0) {
            iso_sys1(SYS_close, ctx->root_fd);
            ctx->root_fd = -1;
        }
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
        ctx->pivoted = 1;
        if (op->flags & ISO_OPF_READONLY) {
            *detail = ISO_SUB_REMOUNT;
            if ((fd = iso_sys4(SYS_openat, AT_FDCWD, "/", O_PATH | O_DIRECTORY | O_CLOEXEC, 0)) < 0)
                return fd;
            rc = fd_setattr(fd, 0, MOUNT_ATTR_RDONLY, 0, 0);
            iso_sys1(SYS_close, fd);
        }
        return rc;
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

/* child: is the helper still there? Its pidfd becomes readable when it exits (pidfd_open(2)). */
static int helper_gone(const struct iso_spawn_request *req)
{
    if (req->helper_pidfd < 0)
        return 0;
    struct pollfd pfd = { req->helper_pidfd, POLLIN, 0 };
    struct { long sec, nsec; } zero = { 0, 0 };
    return iso_sys5(SYS_ppoll, &pfd, 1, &zero, 0, 0) > 0;
}

/*
 * child: (re-)arm the parent-death signal and check that the helper did not die before it was armed.
 * prctl(2): the setting is cleared by every credential change (commit_creds), so it is armed first thing
 * and again after the last identity switch. getppid() is no use for the check: it is 0 in a new PID
 * namespace, so the helper's pidfd is.
 */
long iso_arm_death_signal(const struct iso_spawn_request *req)
{
    long rc = iso_sys2(SYS_prctl, PR_SET_PDEATHSIG, req->pdeath_signal);
    if (rc < 0)
        return rc;
    return helper_gone(req) ? -ESRCH : 0;
}

static void sort_fds(int *fds, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
            int t = fds[j];
            fds[j] = fds[j - 1];
            fds[j - 1] = t;
        }
}

static int is_kept(const int *keep, uint32_t n, long fd)
{
    for (uint32_t i = 0; i < n; i++)
        if (keep[i] == fd)
            return 1;
    return 0;
}

/* child: the highest descriptor number this process may have (RLIMIT_NOFILE's hard limit), for the last resort. */
static long fd_limit(void)
{
    struct { uint64_t cur, max; } lim;
    if (iso_sys4(SYS_prlimit64, 0, 7 /* RLIMIT_NOFILE */, 0, &lim) < 0 || lim.max > (1u << 20))
        return 1 << 20; /* fs.nr_open's default ceiling */
    return (long)lim.max;
}

/*
 * child: close every descriptor from 3 up that is not in keep (sorted). close_range(2) (5.9) where it works;
 * where it fails for any reason (ENOSYS on an old kernel, or whatever errno a seccomp filter answers), a walk of
 * /proc/self/fd with getdents64; without /proc, every number up to RLIMIT_NOFILE. Never exec with a
 * descriptor nobody asked for. This runs first in the child, before any mount or pivot_root.
 */
static long close_all_but(const int *keep, uint32_t n)
{
    long rc = 0;
    unsigned int from = 3;
    for (uint32_t i = 0; i <= n && rc == 0; i++) {
        unsigned int to = i < n ? (unsigned int)keep[i] : ~0U;
        if (i < n && (keep[i] < 3 || (i > 0 && keep[i] == keep[i - 1])))
            continue;
        if (to > from)
            rc = iso_sys3(SYS_close_range, from, to - 1, 0);
        from = to + 1;
    }
    if (rc == 0)
        return 0;
    long dir = iso_sys4(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (dir < 0) {
        for (long fd = 3, max = fd_limit(); fd < max; fd++)
            if (!is_kept(keep, n, fd))
                iso_sys1(SYS_close, fd);
        return 0;
    }
    char buf[1024];
    for (;;) {
        /* Closing while reading the same directory is fine for /proc/self/fd: entries are numbers in order. */
        long got = iso_sys3(SYS_getdents64, dir, buf, sizeof buf);
        if (got < 0) {
            iso_sys1(SYS_close, dir);
            return got;
        }
        if (got == 0)
            break;
        for (long off = 0; off < got;) {
            struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *d = (void *)(buf + off);
            off += d->reclen;
            long fd = 0;
            if (d->name[0] < '0' || d->name[0] > '9')
                continue;
            for (const char *c = d->name; *c >= '0' && *c <= '9'; c++)
                fd = fd * 10 + (*c - '0');
            if (fd >= 3 && fd != dir && !is_kept(keep, n, fd))
                iso_sys1(SYS_close, fd);
        }
    }
    iso_sys1(SYS_close, dir);
    return 0;
}

/* child: move fd to at least min (close-on-exec), closing the old number. */
static long move_up(int *fd, int min)
{
    long moved = iso_sys3(SYS_fcntl, *fd, F_DUPFD_CLOEXEC, min);
    if (moved < 0)
        return moved;
    iso_sys1(SYS_close, *fd);
    *fd = (int)moved;
    return 0;
}

/*
 * child, first of all: keep only the spawn's own descriptors (the ones the host sent for it, the sync and
 * error pipes, the helper's pidfd) and put them where the request says. Everything else of the helper's
 * (its channel, other spawns' sockets and pipes) is closed, so nothing in the sandbox can talk to the
 * helper or hold another sandbox's pipe open. Passed descriptors go to the numbers the program expects,
 * after every internal one has been moved out of their way.
 */
static long arrange_fds(struct iso_child_args *a, int *slot)
{
    struct iso_spawn_request *req = a->req;
    int keep[ISO_MAX_SPAWN_FDS + 3];
    uint32_t n = 0;
    int max_target = 2;
    for (uint32_t i = 0; i < a->nfds; i++) {
        int role = a->slots[i].role;
        if (role == ISO_FD_STATUS || role == ISO_FD_CGROUP || role == ISO_FD_ARGS || role == ISO_FD_JOIN)
            continue; /* the helper's (or the trampoline's), never the sandbox's: closed below */
        keep[n++] = a->fds[i];
        if (role == ISO_FD_PASS && a->slots[i].arg > max_target)
            max_target = a->slots[i].arg;
    }
    keep[n++] = req->child_sync_fd;
    keep[n++] = req->child_error_fd;
    if (req->helper_pidfd >= 0)
        keep[n++] = req->helper_pidfd;
    sort_fds(keep, n);
    long rc = close_all_but(keep, n);
    if (rc < 0)
        return rc;
    for (uint32_t i = 0; i < a->nfds; i++) {
        int role = a->slots[i].role;
        if (role == ISO_FD_STATUS || role == ISO_FD_CGROUP || role == ISO_FD_ARGS || role == ISO_FD_JOIN)
            a->fds[i] = -1;
    }

    if (max_target > 2) {
        /* Out of the way of the targets: every internal descriptor above the highest one. */
        *slot = -1;
        int *internal[3] = { &req->child_sync_fd, &req->child_error_fd, &req->helper_pidfd };
        for (int i = 0; i < 3; i++)
            if (*internal[i] >= 0 && *internal[i] <= max_target && (rc = move_up(internal[i], max_target + 1)) < 0)
                return rc;
        for (uint32_t i = 0; i < a->nfds; i++) {
            *slot = (int)i;
            if (a->fds[i] >= 0 && a->fds[i] <= max_target && (rc = move_up(&a->fds[i], max_target + 1)) < 0)
                return rc;
        }
    }
    for (uint32_t i = 0; i < a->nfds; i++) {
        *slot = (int)i;
        int fd = a->fds[i], arg = a->slots[i].arg;
        switch (a->slots[i].role) {
        case ISO_FD_STDIO:
            if (arg >= 0 && arg < 3)
                req->stdio_fds[arg] = fd;
            break;
        case ISO_FD_INIT:
            req->init_fd = fd;
            break;
        case ISO_FD_OP:
            if (arg >= 0 && (uint32_t)arg < req->nops)
                ((struct iso_op *)req->ops)[arg].n2 = fd;
            break;
        case ISO_FD_PASS:
            if (arg > 2 && (rc = iso_sys3(SYS_dup3, fd, arg, 0)) < 0)
                return rc;
            break;
        }
    }
    *slot = -1;
    return 0;
}

/* child: whether any of 0..2 is a terminal (TCGETS succeeds only on one). */
static int stdio_is_terminal(void)
{
    char termios[128] __attribute__((aligned(8)));
    for (int fd = 0; fd < 3; fd++)
        if (iso_sys3(SYS_ioctl, fd, TCGETS, termios) == 0)
            return 1;
    return 0;
}

/* The child's entry point (see iso_clone3 / clone): a fork of the helper. Never returns on success. */
int iso_child_main(void *arg)
{
    struct iso_child_args *args = arg;
    const struct iso_spawn_request *req = args->req;
    long rc;
    struct iso_security_state sec;   /* security: see child_security.c */
    int sec_step = 0, sec_index = -1;

    /* child, signals still blocked: restore default dispositions (the helper ignores SIGPIPE). */
    struct iso_kernel_sigaction dfl = { SIG_DFL, 0, 0, 0 };
    for (int sig = 1; sig < 65; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        iso_sys4(SYS_rt_sigaction, sig, &dfl, 0, 8);
    }

    /* Die with the helper (it dies with the host: an owned sandbox never outlives its owner, DESIGN.md
     * §3a), armed before the first wait. */
    if ((rc = iso_arm_death_signal(req)) < 0)
        fail(req, rc == -ESRCH ? ISO_STEP_PARENT_GONE : ISO_STEP_DEATH_SIGNAL, -1, rc, 0);

    int slot = -1;
    if ((rc = arrange_fds(args, &slot)) < 0)
        fail(req, ISO_STEP_ARRANGE_FDS, slot, rc, 0);

    /* sync 1: wait until the helper (and the host, for its own steps) has written our id maps and placed us
     * in our cgroups. EOF: the helper gave up on us, or died. */
    if (req->flags & ISO_SPAWN_WAIT_RELEASE) {
        char byte;
        do
            rc = iso_sys3(SYS_read, req->child_sync_fd, &byte, 1);
        while (rc == -EINTR);
        if (rc != 1)
            fail(req, ISO_STEP_WAIT_RELEASE, -1, rc < 0 ? rc : -ECANCELED, 0);
    }
    iso_sys1(SYS_close, req->child_sync_fd);
    /* Not dumpable while we hold a copy of the helper's memory: nothing that shares our user namespace can
     * ptrace or read us before exec (execve makes the program dumpable again). Only now: before the maps are
     * written, a non-dumpable child's /proc files belong to root, and an unprivileged helper could not write
     * them (proc(5), /proc/PID). Only with a copy of our own (ISO_SPAWN_FORK): the dumpable flag belongs to
     * the memory, and with CLONE_VM that is the helper's, so every later child of an unprivileged helper would
     * be born non-dumpable and its setgroups and id maps refused (EACCES). A CLONE_VM child keeps the caller's
     * credentials: it is as dumpable as the helper itself, which that uid can reach anyway. */
    if (req->flags & ISO_SPAWN_FORK)
        iso_sys5(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);

    /* security, early: become root of the new user namespace before setup (untrusted preset), and limit
     * nested user namespaces while the host's /proc is still visible (child_security.c). */
    if ((rc = iso_security_early(req, &sec, &sec_step)) < 0)
        fail(req, sec_step, -1, rc, 0);

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

    /* The mount plan (its context lives on this stack: the parent's memory is shared, so no statics). */
    struct op_ctx ctx = { -1, 0, "/proc/self/fd", "/proc/self/ns/user", 0 };
    /* fs mounts fchdir to their target: remember the cwd to come back to when nothing pivots. */
    long cwd_fd = req->nops > 0 ? iso_sys4(SYS_openat, AT_FDCWD, ".", O_PATH | O_DIRECTORY | O_CLOEXEC, 0) : -1;
    for (uint32_t i = 0; i < req->nops; i++) {
        int detail = 0;
        if ((rc = run_op(req, &ctx, &req->ops[i], &detail)) < 0)
            fail(req, ISO_STEP_MOUNT_OP, (int)i, rc, detail);
    }
    if (ctx.root_fd >= 0)
        iso_sys1(SYS_close, ctx.root_fd);
    if (cwd_fd >= 0) {
        if (!ctx.pivoted)
            iso_sys1(SYS_fchdir, cwd_fd);
        iso_sys1(SYS_close, cwd_fd);
    }

    if (req->hostname != 0 && (rc = iso_sys2(SYS_sethostname, req->hostname, iso_strlen(req->hostname))) < 0)
        fail(req, ISO_STEP_HOSTNAME, -1, rc, 0);
    if (req->domainname != 0 && (rc = iso_sys2(SYS_setdomainname, req->domainname, iso_strlen(req->domainname))) < 0)
        fail(req, ISO_STEP_DOMAINNAME, -1, rc, 0);
    if ((req->flags & ISO_SPAWN_LOOPBACK_UP) && (rc = loopback_up()) < 0)
        fail(req, ISO_STEP_LOOPBACK, -1, rc, 0);
    /* bubblewrap's --userns2: the rest runs in another user namespace, without privilege over the above (child_join.c). */
    if ((rc = iso_join_late(args)) < 0)
        fail(req, ISO_STEP_JOIN_LATE, -1, rc, 0);

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
    /* The identity switches above (and the early one) cleared the death signal: arm it again. The
     * security step re-arms it once more after its own credential changes. */
    if ((rc = iso_arm_death_signal(req)) < 0)
        fail(req, rc == -ESRCH ? ISO_STEP_PARENT_GONE : ISO_STEP_DEATH_SIGNAL, -1, rc, 0);

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

    /* No PID namespace: lead a process group of our own, so that Dispose can kill what we leave behind. Not with a
     * terminal on stdio: a background group reading it would be stopped (SIGTTIN), so we stay in the caller's. */
    if ((req->flags & ISO_SPAWN_OWN_GROUP) && !stdio_is_terminal() && (rc = iso_sys2(SYS_setpgid, 0, 0)) < 0)
        fail(req, ISO_STEP_NEW_SESSION, -1, rc, 0);

    if (req->cwd != 0 && (rc = iso_sys1(SYS_chdir, req->cwd)) < 0) {
        if (!(req->flags & ISO_SPAWN_CWD_FALLBACK))
            fail(req, ISO_STEP_CHDIR, -1, rc, 0);
        /* bubblewrap: the caller's directory is not in the sandbox, so try $HOME, then "/". */
        rc = -ENOENT;
        for (char *const *e = req->envp; *e != 0 && rc < 0; e++) {
            const char *v = *e;
            if (v[0] == 'H' && v[1] == 'O' && v[2] == 'M' && v[3] == 'E' && v[4] == '=')
                rc = iso_sys1(SYS_chdir, v + 5);
        }
        if (rc < 0 && (rc = iso_sys1(SYS_chdir, "/")) < 0)
            fail(req, ISO_STEP_CHDIR, -1, rc, 0);
    }

    /* Every descriptor left from 3 up is internal and close-on-exec (arrange_fds), but the passed ones. */

    uint64_t empty = 0;
    iso_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &empty, 0, 8);

    /* security, last before exec: nested userns, caps, no_new_privs, Landlock, seccomp (child_security.c). */
    if ((rc = iso_security_apply(req, &sec, &sec_step, &sec_index)) < 0)
        fail(req, sec_step, sec_index, rc, 0);

    if (req->init_fd >= 0) {
        /* isolation-init reports the payload's exec failure through the same error pipe, whose number is
         * only known now that arrange_fds has put it in place. */
        char *text = req->init_argv[1];
        char digits[12];
        int nd = 0;
        for (unsigned int v = (unsigned int)req->child_error_fd; nd == 0 || v != 0; v /= 10)
            digits[nd++] = (char)('0' + v % 10);
        for (int i = 0; i < nd; i++)
            text[i] = digits[nd - 1 - i];
        text[nd] = '\0';
        if ((rc = iso_sys3(SYS_fcntl, req->child_error_fd, F_SETFD, 0)) < 0)
            fail(req, ISO_STEP_EXEC_INIT, -1, rc, 0);
        rc = iso_sys5(SYS_execveat, req->init_fd, "", req->init_argv, req->envp, AT_EMPTY_PATH);
        iso_sys3(SYS_fcntl, req->child_error_fd, F_SETFD, FD_CLOEXEC);
        fail(req, ISO_STEP_EXEC_INIT, -1, rc, 0);
    }
    rc = exec_program(req);
    fail(req, ISO_STEP_EXEC, -1, rc, 0);
}
