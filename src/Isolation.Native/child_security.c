/*
 * child_security.c: what the child takes away from itself before execve.
 *
 * Runs in the child (CLONE_VM, the parent's memory and TLS), so only raw system calls (raw_syscall.h):
 * no libc call that sets errno, no malloc, no stdio. Everything here was decided and compiled by
 * src/Isolation/Security; this file only applies struct iso_security, in the order that keeps each step
 * possible:
 *   1. nested user namespace (its creation hands back a full capability set, so it comes first);
 *   2. capabilities: bounding set, securebits, capset, ambient (capabilities(7));
 *   3. no_new_privs (prctl(2) PR_SET_NO_NEW_PRIVS);
 *   4. Landlock (landlock(7)): needs no_new_privs or CAP_SYS_ADMIN;
 *   5. seccomp last (seccomp(2)), so that the filter does not apply to our own setup above.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "isolation_native.h"
#include "raw_syscall.h"
#include "child_security.h"
#include "child.h"

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_add_rule
#define SYS_landlock_add_rule 445
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif
#ifndef SYS_seccomp
#if defined(__x86_64__)
#define SYS_seccomp 317
#else
#define SYS_seccomp 277
#endif
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef O_PATH
#define O_PATH 010000000
#endif

#define ISO_LANDLOCK_CREATE_RULESET_VERSION 1u
#define ISO_LANDLOCK_RULE_PATH_BENEATH 1
#define ISO_LANDLOCK_RULE_NET_PORT 2
#define ISO_SECCOMP_SET_MODE_FILTER 1
/* EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV */
#define ISO_LANDLOCK_FILE_RIGHTS (0x1ull | 0x2ull | 0x4ull | 0x4000ull | 0x8000ull)

/* landlock(7): struct landlock_ruleset_attr grew with the ABI (fs: v1, net: v4, scoped: v6). */
struct iso_landlock_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct iso_landlock_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

struct iso_landlock_net_port_attr {
    uint64_t allowed_access;
    uint64_t port;
};

static long write_all(int dirfd, const char *path, const char *text, long len)
{
    long fd = iso_sys4(SYS_openat, dirfd, path, O_WRONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    long rc = iso_sys3(SYS_write, fd, text, len);
    iso_sys1(SYS_close, fd);
    if (rc < 0)
        return rc;
    return rc == len ? 0 : -EIO;
}

/* "ID ID 1\n" for an id map, without stdio. */
static long format_map(char *buf, uint32_t id)
{
    char digits[12];
    int n = 0;
    do {
        digits[n++] = (char)('0' + id % 10);
        id /= 10;
    } while (id != 0);
    long len = 0;
    for (int copy = 0; copy < 2; copy++) {
        for (int i = n - 1; i >= 0; i--)
            buf[len++] = digits[i];
        buf[len++] = ' ';
    }
    buf[len++] = '1';
    buf[len++] = '\n';
    return len;
}

long iso_security_early(const struct iso_spawn_request *req, struct iso_security_state *st, int *step)
{
    const struct iso_security *sec = req->security;
    long rc;
    st->proc_self_fd = -1;
    if (sec == 0)
        return 0;
    if (sec->flags & ISO_SEC_EARLY_ROOT) {
        /* user_namespaces(7): a child cloned by host root keeps kuid 0 until it calls setresuid, and plain
         * DAC checks (the owner bits of host files) still see that uid during the mount plan. Becoming
         * root of the new namespace first keeps every capability over the namespace but makes the
         * process the mapped (unprivileged) host uid, so a symlink planted by earlier sandboxed code can
         * at worst lead a mount-plan write to files that uid may write anyway. */
        *step = ISO_STEP_SECURITY_IDENTITY;
        rc = iso_sys2(SYS_setgroups, 0, 0);
        if (rc < 0 && rc != -EPERM) /* EPERM: setgroups is "deny" here; the groups are the caller's own */
            return rc;
        if ((rc = iso_sys3(SYS_setresgid, 0, 0, 0)) < 0)
            return rc;
        if ((rc = iso_sys3(SYS_setresuid, 0, 0, 0)) < 0)
            return rc;
    }
    if (!(sec->flags & ISO_SEC_DISABLE_USERNS))
        return 0;
    /* user_namespaces(7), ucounts: the limit is per user namespace and applies to its descendants. One
     * more namespace may be created here (the nested one below); inside it the payload holds no
     * CAP_SYS_RESOURCE over this namespace, so it can neither raise the limit nor create another. */
    *step = ISO_STEP_USERNS_LIMIT;
    rc = write_all(AT_FDCWD, "/proc/sys/user/max_user_namespaces", "1\n", 2);
    if (rc < 0)
        return rc;
    /* Our /proc/<pid> directory, kept for writing the nested maps after pivot_root hid this /proc. */
    long fd = iso_sys4(SYS_openat, AT_FDCWD, "/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    st->proc_self_fd = (int)fd;
    return 0;
}

long iso_security_before_identity(const struct iso_spawn_request *req, int *step)
{
    const struct iso_security *sec = req->security;
    if (sec == 0 || !(sec->flags & ISO_SEC_KEEP_CAPS))
        return 0;
    /* capabilities(7): a switch of all uids away from 0 clears the permitted set unless KEEPCAPS is set;
     * execve resets KEEPCAPS, so this reaches only our own capability steps below. */
    *step = ISO_STEP_SECURITY_IDENTITY;
    return iso_sys2(SYS_prctl, PR_SET_KEEPCAPS, 1);
}

static long nest_user_namespace(struct iso_security_state *st, int *index)
{
    /* Our ids in the current namespace, read before unshare: inside the new one they are unmapped. */
    uint32_t uid = (uint32_t)iso_sys0(SYS_geteuid);
    uint32_t gid = (uint32_t)iso_sys0(SYS_getegid);
    *index = 0;
    long rc = iso_sys1(SYS_unshare, CLONE_NEWUSER);
    if (rc < 0)
        return rc;
    /* A change of credentials made us non-dumpable, which hands /proc/<pid>/ to root (proc(5),
     * PR_SET_DUMPABLE); execve resets the flag anyway for an ordinary program. */
    *index = 1;
    if ((rc = iso_sys2(SYS_prctl, PR_SET_DUMPABLE, 1)) < 0)
        return rc;
    char map[32];
    /* user_namespaces(7): one line mapping our own euid needs no privilege in the parent namespace; the
     * gid map so needs setgroups "deny" first. */
    *index = 2;
    if ((rc = write_all(st->proc_self_fd, "setgroups", "deny\n", 5)) < 0)
        return rc;
    *index = 3;
    if ((rc = write_all(st->proc_self_fd, "uid_map", map, format_map(map, uid))) < 0)
        return rc;
    *index = 4;
    return write_all(st->proc_self_fd, "gid_map", map, format_map(map, gid));
}

static long apply_caps(const struct iso_security *sec, int *step, int *index)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    long rc;

    /* Raise what we hold in permitted into effective: KEEPCAPS kept permitted over setresuid but the
     * kernel cleared effective; dropping from the bounding set needs CAP_SETPCAP in effective. */
    *step = ISO_STEP_CAPSET;
    if ((rc = iso_sys2(SYS_capget, &hdr, data)) < 0)
        return rc;
    data[0].effective = data[0].permitted;
    data[1].effective = data[1].permitted;
    if ((rc = iso_sys2(SYS_capset, &hdr, data)) < 0)
        return rc;
    /* "Keep" means keep what we hold: capset(2) cannot raise permitted, so never ask for more. */
    uint64_t held = ((uint64_t)data[1].permitted << 32) | data[0].permitted;

    /* capabilities(7): the bounding set limits what any later execve can grant, even to root or a
     * setuid/file-capability binary. PR_CAPBSET_DROP fails with EINVAL past the kernel's last cap. */
    *step = ISO_STEP_CAP_BOUNDING;
    for (int cap = 0; cap < 64; cap++) {
        if (sec->cap_bounding & (1ull << cap))
            continue;
        rc = iso_sys2(SYS_prctl, PR_CAPBSET_DROP, cap);
        if (rc == -EINVAL)
            break;
        if (rc < 0) {
            *index = cap;
            return rc;
        }
    }

    /* capabilities(7), "The securebits flags": locked bits keep root and uid changes from handing
     * capabilities back. Needs CAP_SETPCAP, so before capset drops it. */
    if (sec->flags & ISO_SEC_SECUREBITS) {
        *step = ISO_STEP_SECUREBITS;
        if ((rc = iso_sys2(SYS_prctl, PR_SET_SECUREBITS, sec->securebits)) < 0)
            return rc;
    }

    *step = ISO_STEP_CAPSET;
    uint64_t eff = sec->cap_effective & held, prm = sec->cap_permitted & held, inh = sec->cap_inheritable & held;
    data[0].effective = (uint32_t)eff;
    data[1].effective = (uint32_t)(eff >> 32);
    data[0].permitted = (uint32_t)prm;
    data[1].permitted = (uint32_t)(prm >> 32);
    data[0].inheritable = (uint32_t)inh;
    data[1].inheritable = (uint32_t)(inh >> 32);
    if ((rc = iso_sys2(SYS_capset, &hdr, data)) < 0)
        return rc;

    /* Ambient capabilities survive execve of a non-setuid program by a non-root uid; each must be in
     * both permitted and inheritable (prctl(2) PR_CAP_AMBIENT). */
    *step = ISO_STEP_CAP_AMBIENT;
    rc = iso_sys5(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (rc < 0 && rc != -EINVAL)
        return rc;
    for (int cap = 0; cap < 64; cap++) {
        if (!(sec->cap_ambient & held & (1ull << cap)))
            continue;
        if ((rc = iso_sys5(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0)) < 0) {
            *index = cap;
            return rc;
        }
    }
    return 0;
}

static long apply_landlock(const struct iso_security *sec, int *index)
{
    struct iso_landlock_ruleset_attr attr = { sec->landlock_handled_fs, sec->landlock_handled_net, sec->landlock_scoped };
    /* The struct the host's ABI knows: v1-v3 fs only, v4-v5 fs+net, v6+ fs+net+scoped. */
    long size = sec->landlock_abi >= 6 ? 24 : sec->landlock_abi >= 4 ? 16 : 8;
    long ruleset = iso_sys3(SYS_landlock_create_ruleset, &attr, size, 0);
    if (ruleset < 0)
        return ruleset;
    long rc = 0;
    for (uint32_t i = 0; i < sec->nlandlock_paths && rc >= 0; i++) {
        long fd = iso_sys4(SYS_openat, AT_FDCWD, sec->landlock_paths[i].path, O_PATH | O_CLOEXEC, 0);
        if (fd < 0) {
            rc = fd;
        } else {
            /* landlock(7): a rule on a file (not a directory) takes only the rights that apply to files. */
            struct stat st;
            uint64_t allowed = sec->landlock_paths[i].allowed_access;
            if (iso_sys4(SYS_newfstatat, fd, "", &st, AT_EMPTY_PATH) == 0 && !S_ISDIR(st.st_mode))
                allowed &= ISO_LANDLOCK_FILE_RIGHTS;
            struct iso_landlock_path_beneath_attr rule = { allowed, (int32_t)fd };
            rc = iso_sys4(SYS_landlock_add_rule, ruleset, ISO_LANDLOCK_RULE_PATH_BENEATH, &rule, 0);
            iso_sys1(SYS_close, fd);
        }
        if (rc < 0)
            *index = (int)i;
    }
    for (uint32_t i = 0; i < sec->nlandlock_ports && rc >= 0; i++) {
        struct iso_landlock_net_port_attr rule = { sec->landlock_ports[i].allowed_access, sec->landlock_ports[i].port };
        rc = iso_sys4(SYS_landlock_add_rule, ruleset, ISO_LANDLOCK_RULE_NET_PORT, &rule, 0);
        if (rc < 0)
            *index = (int)(sec->nlandlock_paths + i);
    }
    if (rc >= 0) {
        *index = -1;
        rc = iso_sys2(SYS_landlock_restrict_self, ruleset, sec->landlock_restrict_flags);
    }
    iso_sys1(SYS_close, ruleset);
    return rc;
}

long iso_security_apply(const struct iso_spawn_request *req, struct iso_security_state *st, int *step, int *index)
{
    const struct iso_security *sec = req->security;
    long rc;
    *index = -1;
    if (sec == 0)
        return 0;

    /* File descriptors: the passed ones sit at their numbers (arrange_fds, child.c); let them through exec. */
    *step = ISO_STEP_CLOSE_FDS;
    for (uint32_t i = 0; i < sec->npass_fds; i++) {
        if ((rc = iso_sys3(SYS_fcntl, sec->pass_fds[i], F_SETFD, 0)) < 0) {
            *index = sec->pass_fds[i];
            return rc;
        }
    }

    if (sec->flags & ISO_SEC_DISABLE_USERNS) {
        *step = ISO_STEP_USERNS_NEST;
        rc = nest_user_namespace(st, index);
        iso_sys1(SYS_close, st->proc_self_fd);
        st->proc_self_fd = -1;
        if (rc < 0)
            return rc;
    }

    if ((sec->flags & ISO_SEC_CAPS) && (rc = apply_caps(sec, step, index)) < 0)
        return rc;

    if (sec->flags & ISO_SEC_NO_NEW_PRIVS) {
        *step = ISO_STEP_NO_NEW_PRIVS;
        if ((rc = iso_sys5(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) < 0)
            return rc;
    }

    if (sec->flags & ISO_SEC_LANDLOCK) {
        *step = ISO_STEP_LANDLOCK;
        if ((rc = apply_landlock(sec, index)) < 0)
            return rc;
    }

    /* The nested user namespace and the identity switches before it cleared the death signal
     * (commit_creds); arm it once more while prctl is still sure to be allowed. */
    *step = ISO_STEP_DEATH_SIGNAL;
    if ((rc = iso_arm_death_signal(req)) < 0)
        return rc;

    /* seccomp(2): each filter is added on top of the previous ones; the strictest verdict wins. */
    *step = ISO_STEP_SECCOMP;
    for (uint32_t i = 0; i < sec->nfilters; i++) {
        if ((rc = iso_sys3(SYS_seccomp, ISO_SECCOMP_SET_MODE_FILTER, sec->seccomp_flags, &sec->filters[i])) < 0) {
            *index = (int)i;
            return rc;
        }
    }
    return 0;
}
