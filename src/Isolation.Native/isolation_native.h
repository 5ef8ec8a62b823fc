/*
 * isolation_native.h: the one contract between the managed library (src/Isolation) and the C shim.
 *
 * Managed code compiles an IsolationSpec into a flat array of iso_op records and a spawn request, all in
 * native memory allocated before clone. The shim's child side walks that array between clone and execve.
 * It interprets; it does not decide: policy, ordering and validation live in C#.
 *
 * Keep in sync with src/Isolation/Interop/Interop.Native.cs. Bump ISO_ABI_VERSION on any layout change.
 */
#ifndef ISOLATION_NATIVE_H
#define ISOLATION_NATIVE_H

#include <stdint.h>
#include <stddef.h>

#define ISO_ABI_VERSION 5

/* Kinds of mount-plan operation, executed in order in the child's new mount namespace. Paths are host
 * paths, or with ISO_OPF_IN_ROOT paths inside the root ISO_OP_OPEN_ROOT opened (resolved with openat2
 * RESOLVE_IN_ROOT, so symlinks never lead out of it). Needs Linux 5.12 (openat2, open_tree, move_mount,
 * mount_setattr). */
enum iso_op_kind {
    ISO_OP_MOUNT = 1,        /* mount(s1 source, s2 target, s3 fstype, mount_flags, s4 data) */
    ISO_OP_BIND = 2,         /* bind s1 on s2; flags: ISO_OPF_RECURSIVE, ISO_OPF_READONLY, ISO_OPF_OPTIONAL;
                                mount_flags: extra MS_NOSUID/MS_NODEV/... applied with the read-only remount */
    ISO_OP_MKDIR = 3,        /* mkdir -p s2; parents 0755, s2 itself exactly mode n1 when created */
    ISO_OP_SYMLINK = 4,      /* symlink(s1 target, s2 linkpath) */
    ISO_OP_WRITE_FILE = 5,   /* create s2 with mode n1 and write n2 bytes from s1 */
    ISO_OP_CHMOD = 6,        /* chmod(s2, n1) */
    ISO_OP_REMOUNT = 7,      /* set mount_flags (and read-only with ISO_OPF_READONLY) on the mount at s2 with
                                mount_setattr, its submounts too with ISO_OPF_RECURSIVE */
    ISO_OP_PIVOT_ROOT = 8,   /* pivot_root into s2 and detach the old root; ISO_OPF_READONLY remounts / ro */
    ISO_OP_MASK = 9,         /* hide s2: /dev/null over a file, an empty read-only tmpfs over a directory */
    ISO_OP_PROPAGATION = 10, /* propagation of s2: mount_flags MS_PRIVATE|MS_SLAVE|MS_SHARED [|MS_REC] */
    ISO_OP_TOUCH = 11,       /* create an empty file s2 (mode n1) if missing, creating parents 0755 */
    ISO_OP_COPY_FD = 12,     /* create s2 with mode n1 and copy the contents of fd n2 into it */
    ISO_OP_MOUNT_SETATTR = 13, /* mount_setattr(s2, AT_RECURSIVE?, attr_set n1, attr_clr n2, userns fd = -1) */
    ISO_OP_IDMAP = 14,       /* idmapped bind mount of s1 on s2 using the child's own user namespace */
    ISO_OP_OVERLAY = 15,     /* overlay on s2: lower layers s1 (n2 NUL-separated paths), upper s3 + work s4,
                                or ISO_OPF_TMPFS_UPPER (tmpfs of n1 bytes, 0: default), or neither (read-only);
                                mount_flags: MS_RDONLY/MS_NOSUID/MS_NODEV */
    ISO_OP_OPEN_ROOT = 16,   /* open the new root s2: later ISO_OPF_IN_ROOT paths resolve inside it
                                (openat2 RESOLVE_IN_ROOT); s1: the /proc/self/fd dir, s3: /proc/self/ns/user */
    ISO_OP_PIVOT_BASE = 17,  /* mount a tmpfs base on s2 with newroot/ and oldroot/, pivot_root into it: the
                                host's root is then /oldroot (bubblewrap's layout) */
};

/* iso_op.flags */
#define ISO_OPF_RECURSIVE  0x1u
#define ISO_OPF_READONLY   0x2u
#define ISO_OPF_OPTIONAL   0x4u  /* skip when the source is missing */
#define ISO_OPF_MKTARGET   0x8u  /* create the target (dir or file, like the source) when missing */
#define ISO_OPF_IN_ROOT    0x10u /* s2 is a path inside the new root (resolved with RESOLVE_IN_ROOT) */
#define ISO_OPF_SOURCE_IN_ROOT 0x20u /* s1 (and an overlay's layers) too */
#define ISO_OPF_TMPFS_UPPER 0x40u /* overlay: a throw-away tmpfs upper layer */
#define ISO_OPF_PREPARED   0x80u /* idmap: n2 is a detached, already idmapped tree the parent made before clone */

struct iso_op {
    uint32_t kind;
    uint32_t flags;
    uint64_t mount_flags;
    const char *s1;
    const char *s2;
    const char *s3;
    const char *s4;
    int64_t n1;
    int64_t n2;
};

/* iso_spawn_request.flags */
#define ISO_SPAWN_SET_IDS        0x1u   /* setresgid/setgroups/setresuid to gid/uid/groups before exec */
#define ISO_SPAWN_NEW_SESSION    0x2u   /* setsid() */
#define ISO_SPAWN_LOOPBACK_UP    0x4u   /* bring lo up (new network namespace) */
#define ISO_SPAWN_WAIT_RELEASE   0x8u   /* block on the sync pipe until the parent has written id maps */
#define ISO_SPAWN_NO_CLONE3      0x10u  /* tests: force the clone() fallback */
#define ISO_SPAWN_HOST_STEP      0x20u  /* spawn message: the host has work of its own between clone and release
                                           (newuidmap, v1 cgroups, rlimits): stop at ISO_REPLY_CLONED for it */
#define ISO_SPAWN_SET_GROUPS     0x40u  /* call setgroups(ngroups, groups) (needs setgroups "allow") */
#define ISO_SPAWN_CWD_FALLBACK   0x80u  /* cwd missing: chdir to $HOME of envp, else to "/" (bubblewrap's rule) */
#define ISO_SPAWN_FORK           0x100u /* the child changes its credentials: give it a private copy of the helper's
                                           memory instead of CLONE_VM (helper.c, do_spawn) */
#define ISO_SPAWN_OWN_GROUP      0x200u /* no PID namespace: setpgid(0, 0) before exec unless stdio is a terminal, so
                                           that Dispose can kill the sandbox's process group */

/* The request: the spec's part is built once per spec by managed code and packed for the spawn helper
 * (iso_pack_spec); the helper fills the per-spawn part (path, argv, descriptors) into its copy. The child is
 * a fork of the helper, so it works on a private copy of all of it. */
struct iso_spawn_request {
    uint32_t abi_version;
    uint32_t flags;
    uint64_t clone_flags;          /* CLONE_NEW* passed to clone3 (never CLONE_NEWTIME/CLONE_NEWCGROUP) */
    uint64_t unshare_flags;        /* CLONE_NEWCGROUP / CLONE_NEWTIME, done by the child after release */
    const char *path;              /* program; searched in search_path when it has no '/' */
    char *const *argv;
    char *const *envp;
    const char *search_path;       /* PATH used for the search */
    const char *cwd;               /* NULL: stay where we are (after pivot_root: "/") */
    int32_t stdio_fds[3];          /* fd to dup2 onto 0/1/2, or -1 to inherit */
    int32_t cgroup_fd;             /* cgroup v2 directory for CLONE_INTO_CGROUP, or -1 */
    uint32_t uid;
    uint32_t gid;
    uint32_t ngroups;
    const uint32_t *groups;
    const char *hostname;
    const char *domainname;
    const char *timens_offsets;    /* written to /proc/self/timens_offsets after unshare(CLONE_NEWTIME) */
    uint64_t timens_offsets_len;
    const struct iso_op *ops;
    uint32_t nops;
    int32_t pdeath_signal;         /* 0: none */
    int32_t init_fd;               /* execveat(init_fd, "", init_argv, envp, AT_EMPTY_PATH) instead, or -1 */
    int32_t helper_pidfd;          /* the helper's own pidfd: readable once the helper is gone */
    char *const *init_argv;        /* init_argv[1] is written by the child: the error fd number */
    void *stack;                   /* unused (the child is a fork of the helper and runs on its own stack copy) */
    uint64_t stack_size;
    char *scratch;                 /* PATH search buffer */
    uint64_t scratch_size;
    /* --- security (child_security.c); NULL: the child changes nothing of its privileges --- */
    const struct iso_security *security;
    /* Filled by IsolationNative_Spawn; read by the child. */
    int32_t child_sync_fd;
    int32_t child_error_fd;
};


/* iso_security.flags */
#define ISO_SEC_CAPS             0x1u   /* apply the capability sets below */
#define ISO_SEC_SECUREBITS       0x2u   /* prctl(PR_SET_SECUREBITS, securebits) */
#define ISO_SEC_NO_NEW_PRIVS     0x4u   /* prctl(PR_SET_NO_NEW_PRIVS, 1) */
#define ISO_SEC_LANDLOCK         0x8u   /* build and enforce the Landlock ruleset below */
#define ISO_SEC_DISABLE_USERNS   0x10u  /* max_user_namespaces = 1, then a nested user namespace */
#define ISO_SEC_KEEP_CAPS        0x20u  /* PR_SET_KEEPCAPS before a switch to a non-zero uid */
#define ISO_SEC_EARLY_ROOT       0x40u  /* become uid/gid 0 of the new user namespace (no supplementary groups)
                                           before the mount plan, so setup never acts with the host's ids */

/* A seccomp program (struct sock_fprog): len classic BPF instructions of 8 bytes each. */
struct iso_sock_fprog {
    uint16_t len;
    uint16_t pad[3];
    const void *filter;
};

/* A Landlock path rule (LANDLOCK_RULE_PATH_BENEATH), opened O_PATH by the child inside the sandbox. */
struct iso_landlock_path {
    uint64_t allowed_access;
    const char *path;
};

/* A Landlock port rule (LANDLOCK_RULE_NET_PORT). */
struct iso_landlock_port {
    uint64_t allowed_access;
    uint64_t port;
};

/* Compiled once per spec by src/Isolation/Security (SecurityCompiler.cs); the child only applies it. */
struct iso_security {
    uint32_t flags;                   /* ISO_SEC_* */
    uint32_t securebits;
    uint64_t cap_bounding;            /* capabilities kept in the bounding set (the rest are dropped) */
    uint64_t cap_permitted;
    uint64_t cap_effective;
    uint64_t cap_inheritable;
    uint64_t cap_ambient;
    const struct iso_sock_fprog *filters; /* seccomp programs, installed in order */
    uint32_t nfilters;
    uint32_t seccomp_flags;           /* SECCOMP_FILTER_FLAG_* */
    uint64_t landlock_handled_fs;     /* already reduced to the host's ABI by the parent */
    uint64_t landlock_handled_net;
    uint64_t landlock_scoped;
    const struct iso_landlock_path *landlock_paths;
    const struct iso_landlock_port *landlock_ports;
    uint32_t nlandlock_paths;
    uint32_t nlandlock_ports;
    uint32_t landlock_abi;            /* the ABI the ruleset was reduced to (struct size follows it) */
    uint32_t landlock_restrict_flags; /* landlock_restrict_self flags */
    const int32_t *pass_fds;          /* the caller's descriptors that reach the program (CLOEXEC cleared) */
    uint32_t npass_fds;
    uint32_t reserved1;
};

/* Setup steps, reported by the child in iso_child_error.step. Keep in sync with SetupStep.cs. */
enum iso_step {
    ISO_STEP_NONE = 0,
    ISO_STEP_WAIT_RELEASE = 1,
    ISO_STEP_UNSHARE_CGROUP = 2,
    ISO_STEP_UNSHARE_TIME = 3,
    ISO_STEP_TIME_OFFSETS = 4,
    ISO_STEP_MOUNT_PROPAGATION = 5,
    ISO_STEP_MOUNT_OP = 6,
    ISO_STEP_HOSTNAME = 7,
    ISO_STEP_DOMAINNAME = 8,
    ISO_STEP_LOOPBACK = 9,
    ISO_STEP_NEW_SESSION = 10,
    ISO_STEP_DEATH_SIGNAL = 11,
    ISO_STEP_SETGROUPS = 12,
    ISO_STEP_SETGID = 13,
    ISO_STEP_SETUID = 14,
    ISO_STEP_STDIO = 15,
    ISO_STEP_CHDIR = 16,
    ISO_STEP_CLOSE_FDS = 17,
    ISO_STEP_EXEC = 18,
    ISO_STEP_EXEC_INIT = 19,
    ISO_STEP_PAYLOAD_FORK = 20,    /* reported by isolation-init */
    ISO_STEP_PARENT_GONE = 21,     /* the helper died before the child was armed to die with it */
    ISO_STEP_ARRANGE_FDS = 22,     /* moving the spawn's descriptors into place; index: the slot */
    ISO_STEP_JOIN_LATE = 23,       /* setns into the ISO_FD_JOIN_LATE user namespace after setup */
    /* Security steps (child_security.c), in the order they run. */
    ISO_STEP_USERNS_LIMIT = 30,    /* write /proc/sys/user/max_user_namespaces in the sandbox's user namespace */
    ISO_STEP_USERNS_NEST = 31,     /* unshare(CLONE_NEWUSER) and write the inner uid/gid map */
    ISO_STEP_SECURITY_IDENTITY = 32, /* early setresuid(0) in the user namespace, or prctl(PR_SET_KEEPCAPS) */
    ISO_STEP_CAP_BOUNDING = 33,    /* prctl(PR_CAPBSET_DROP); index: the capability */
    ISO_STEP_SECUREBITS = 34,      /* prctl(PR_SET_SECUREBITS) */
    ISO_STEP_CAPSET = 35,          /* capset(2) */
    ISO_STEP_CAP_AMBIENT = 36,     /* prctl(PR_CAP_AMBIENT); index: the capability */
    ISO_STEP_NO_NEW_PRIVS = 37,    /* prctl(PR_SET_NO_NEW_PRIVS) */
    ISO_STEP_LANDLOCK = 38,        /* landlock_*(2); index: the rule (path rules, then port rules), or -1 */
    ISO_STEP_SECCOMP = 39,         /* seccomp(SECCOMP_SET_MODE_FILTER); index: the filter */
    /* Steps of the spawn helper itself (helper.c), between clone and release. */
    ISO_STEP_HELPER_CLONE = 100,   /* clone3/clone; index: 1 when the clone() fallback was used */
    ISO_STEP_HELPER_SETGROUPS = 101,
    ISO_STEP_HELPER_UID_MAP = 102,
    ISO_STEP_HELPER_GID_MAP = 103,
    ISO_STEP_HELPER_RELEASE = 104,
    ISO_STEP_HELPER_CGROUP = 105,  /* writing the pid into cgroup.procs after the clone() fallback */
    ISO_STEP_HELPER_SPEC = 108,    /* the spawn named a spec the helper does not have, or a bad message */
    ISO_STEP_HELPER_JOIN = 110,    /* setns in the spawn's trampoline (child_join.c); index: the CLONE_NEW* type */
};

struct iso_child_error {
    int32_t step;
    int32_t op_index;  /* index into ops for ISO_STEP_MOUNT_OP, else -1 */
    int32_t err;       /* errno */
    int32_t detail;    /* step-specific: for a mount op, which sub-step failed (see iso_mount_substep) */
};

enum iso_mount_substep {
    ISO_SUB_MAIN = 0, ISO_SUB_MKDIR_TARGET = 1, ISO_SUB_REMOUNT = 2, ISO_SUB_OPEN = 3,
    ISO_SUB_WRITE = 4, ISO_SUB_CHDIR = 5, ISO_SUB_PIVOT = 6, ISO_SUB_DETACH = 7,
};

/*
 * The spawn helper (helper.c, DESIGN.md §2): a small single-threaded process, started once per host, whose
 * children the sandboxes are. The host talks to it over a SOCK_SEQPACKET socketpair (the channel, fd 3 in
 * the helper); every spawn brings a socketpair of its own (the status socket) on which the helper answers.
 */
#define ISO_HELPER_CHANNEL_FD 3

/* A spec as the helper keeps it: one block, pointers stored as offsets from its start (0: NULL), made by
 * iso_pack_spec in the host and made usable again by iso_unpack_spec in the helper. */
struct iso_packed_spec {
    uint32_t abi_version;
    uint32_t size;                 /* bytes in the block */
    struct iso_spawn_request req;  /* path, argv, init_argv and descriptors are filled per spawn */
    const char *setgroups;         /* written to /proc/PID/setgroups by the helper, or NULL */
    const char *uid_map;           /* written to /proc/PID/uid_map by the helper, or NULL (none, or the host's job) */
    const char *gid_map;
};

/* Host -> helper, on the channel. */
enum iso_message_kind {
    ISO_MSG_DEFINE = 1,   /* iso_define_msg; descriptors: a memfd holding an iso_packed_spec */
    ISO_MSG_FORGET = 2,   /* iso_define_msg: the spec is gone */
    ISO_MSG_SPAWN = 3,    /* iso_spawn_msg, then strings_len bytes "path\0argv0\0arg1\0..." (or an ISO_FD_ARGS memfd) */
};

struct iso_define_msg {
    uint32_t kind;
    uint32_t spec_id;
};

/* What each descriptor of a spawn message is, in the order they travel (SCM_RIGHTS). */
enum iso_fd_role {
    ISO_FD_STATUS = 1,    /* the status socket: the helper's answers, the host's "continue" */
    ISO_FD_STDIO = 2,     /* arg: 0, 1 or 2 */
    ISO_FD_CGROUP = 3,    /* v2 directory for CLONE_INTO_CGROUP */
    ISO_FD_INIT = 4,      /* the init executable */
    ISO_FD_OP = 5,        /* arg: a mount op whose n2 is this descriptor (FileFromDescriptor, idmapped trees) */
    ISO_FD_PASS = 6,      /* arg: the number the program gets it at (PassFileDescriptors) */
    ISO_FD_ARGS = 7,      /* a memfd holding the strings, when they do not fit in the message */
    ISO_FD_JOIN = 8,      /* arg: CLONE_NEW* type: a namespace to join before the child is created (child_join.c) */
    ISO_FD_JOIN_LATE = 9, /* arg: CLONE_NEWUSER: a user namespace the child enters after setup (bubblewrap's --userns2) */
};

struct iso_fd_slot {
    int32_t role;
    int32_t arg;
};

#define ISO_MAX_SPAWN_FDS 64   /* below SCM_MAX_FD (253) */

struct iso_spawn_msg {
    uint32_t kind;
    uint32_t spec_id;
    uint32_t flags;                /* added to the spec's: ISO_SPAWN_NO_CLONE3, ISO_SPAWN_HOST_STEP */
    int32_t death_signal;          /* sent to the sandbox when the helper dies (the host died); never 0 */
    uint32_t nfds;
    uint32_t argc;                 /* argv entries, argv[0] included */
    uint32_t strings_len;
    uint32_t reserved;
    struct iso_fd_slot slots[ISO_MAX_SPAWN_FDS];
};

/* Helper -> host, on the spawn's status socket. */
enum iso_reply_kind {
    ISO_REPLY_CLONED = 1,  /* the child waits at sync 1: the host does its part, then writes one byte (or closes to abort) */
    ISO_REPLY_STARTED = 2, /* the child was released; descriptors: its pidfd and the read end of its error pipe (EOF:
                              it exec'd; an iso_child_error: it failed and exits) */
    ISO_REPLY_FAILED = 3,  /* the helper's part failed (error); the child is reaped */
    ISO_REPLY_EXITED = 4,  /* the program exited and was reaped: code, status, rusage */
};

struct iso_reply {
    uint32_t kind;
    int32_t pid;
    int32_t used_clone3;
    int32_t code;                  /* EXITED: siginfo si_code (CLD_EXITED, CLD_KILLED, CLD_DUMPED) */
    int32_t status;                /* EXITED: si_status */
    int32_t rss_floor_kb;          /* EXITED: the helper's own peak RSS (VmHWM); maxrss_kb at or below it says nothing of the
                                      program (a child sharing or copying the helper's memory inherits its high-water mark at exec) */
    struct iso_child_error error;  /* FAILED */
    int64_t user_us;
    int64_t sys_us;
    int64_t maxrss_kb;
};

/* The managed mirror (Interop.Native.cs) relies on these sizes on 64-bit targets. */
_Static_assert(sizeof(struct iso_op) == 64, "iso_op layout");
_Static_assert(sizeof(struct iso_spawn_request) == 216, "iso_spawn_request layout");
_Static_assert(sizeof(struct iso_child_error) == 16, "iso_child_error layout");
_Static_assert(sizeof(struct iso_security) == 136, "iso_security layout");
_Static_assert(sizeof(struct iso_sock_fprog) == 16, "iso_sock_fprog layout");
_Static_assert(sizeof(struct iso_spawn_msg) == 32 + 8 * ISO_MAX_SPAWN_FDS, "iso_spawn_msg layout");
_Static_assert(sizeof(struct iso_reply) == 64, "iso_reply layout");

#ifdef __cplusplus
extern "C" {
#endif

/* Host side (managed callers, parent.c). All return -errno on failure unless stated. */
int IsolationNative_AbiVersion(void);
int IsolationNative_StartHelper(const char *path, int *channel, int *pid, int *pidfd, int *null_errno);
void *IsolationNative_BeginStartHelper(const char *path);
int IsolationNative_EndStartHelper(void *handle, int *channel, int *pid, int *pidfd, int *null_errno);
int IsolationNative_ReapHelper(int pidfd);
int IsolationNative_Identity(uint64_t out[6]);
int IsolationNative_DefineSpec(int channel, uint32_t spec_id, const struct iso_spawn_request *tmpl,
                               const char *setgroups, const char *uid_map, const char *gid_map);
int IsolationNative_ForgetSpec(int channel, uint32_t spec_id);
int IsolationNative_SendSpawn(int channel, const struct iso_spawn_msg *msg, const int32_t *fds, const char *strings);
int IsolationNative_ReadReply(int status_fd, int nonblocking, struct iso_reply *reply, int32_t fd[2]);
int IsolationNative_WaitExec(int error_fd, struct iso_child_error *error);
int IsolationNative_Continue(int status_fd);
int IsolationNative_WriteProcFile(int pid, const char *name, const char *text, size_t len);
int IsolationNative_PidfdSendSignal(int pidfd, int sig);
int IsolationNative_SignalProcessGroup(int pidfd, int pid, int sig, int leader_unreaped);
int IsolationNative_WaitReadable(int fd, int timeout_ms);
int IsolationNative_OpenIdmappedTree(const char *source, int userns_fd, int recursive, uint64_t attr_set);
/* How IsolationNative_OpenExecutable made a file executable. */
enum { ISO_EXEC_MEMFD = 1, ISO_EXEC_TMPFILE = 2, ISO_EXEC_IN_PLACE = 3 };
int IsolationNative_OpenExecutable(const char *path, int in_place, int *how);
const char *IsolationNative_LibraryPath(void);

/* Both sides (spec_pack.c). */
size_t iso_pack_spec(const struct iso_spawn_request *tmpl, const char *setgroups, const char *uid_map,
                     const char *gid_map, void *out, size_t cap);
int iso_unpack_spec(struct iso_packed_spec *spec, size_t size);

#ifdef __cplusplus
}
#endif

#endif
