/*
 * spec_pack.c: a compiled spec, moved from the host's memory into the spawn helper's.
 *
 * Managed code compiles a spec into native memory with ordinary pointers (isolation_native.h). The host
 * packs it (iso_pack_spec) into one block where every pointer is an offset from the block's start, sends
 * that block to the helper once per spec, and the helper turns the offsets back into pointers
 * (iso_unpack_spec). Both walk the same fields in the same order; a field added to the request, an op or
 * the security struct must be added to both walks here.
 *
 * The helper treats the block as untrusted input only in the sense of bounds: every offset is checked
 * against the block's size before use, so a short or damaged block is refused rather than followed.
 */
#include <string.h>

#include "isolation_native.h"

/* ---- Packing (host) ---- */

struct packer {
    char *out;      /* NULL while measuring */
    size_t cap;
    size_t used;
};

/* Reserves n bytes (16-aligned) and copies src there; returns the offset, as a pointer value (NULL for an
 * empty array, so that no offset ever points at the end of the block). */
static void *put(struct packer *p, const void *src, size_t n)
{
    if (n == 0)
        return NULL;
    size_t at = (p->used + 15) & ~(size_t)15;
    p->used = at + n;
    if (p->out != NULL && p->used <= p->cap && src != NULL)
        memcpy(p->out + at, src, n);
    return (void *)(uintptr_t)at;
}

static void *put_str(struct packer *p, const char *s)
{
    return s == NULL ? NULL : put(p, s, strlen(s) + 1);
}

/* Where a packed pointer field points in the output, for filling in what was just reserved. */
static void *at(struct packer *p, const void *offset)
{
    return p->out != NULL && p->used <= p->cap ? p->out + (uintptr_t)offset : NULL;
}

/* Length of an op's s1: bytes for a file's contents, n2 NUL-separated layers for an overlay. */
static size_t op_s1_len(const struct iso_op *op)
{
    if (op->s1 == NULL)
        return 0;
    if (op->kind == ISO_OP_WRITE_FILE)
        return (size_t)op->n2 + 1;
    if (op->kind == ISO_OP_OVERLAY) {
        size_t n = 0;
        for (int64_t i = 0; i < op->n2; i++)
            n += strlen(op->s1 + n) + 1;
        return n;
    }
    return strlen(op->s1) + 1;
}

static const void *pack_string_array(struct packer *p, char *const *array)
{
    if (array == NULL)
        return NULL;
    size_t n = 0;
    while (array[n] != NULL)
        n++;
    char **copy = put(p, NULL, (n + 1) * sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        char *s = put_str(p, array[i]);
        char **slot = at(p, copy);
        if (slot != NULL)
            slot[i] = s;
    }
    char **slot = at(p, copy);
    if (slot != NULL)
        slot[n] = NULL;
    return copy;
}

static const struct iso_security *pack_security(struct packer *p, const struct iso_security *sec)
{
    if (sec == NULL)
        return NULL;
    struct iso_security *copy = put(p, sec, sizeof *sec);
    const struct iso_sock_fprog *filters = put(p, sec->filters, sec->nfilters * sizeof *sec->filters);
    for (uint32_t i = 0; i < sec->nfilters; i++) {
        const void *code = put(p, sec->filters[i].filter, (size_t)sec->filters[i].len * 8);
        struct iso_sock_fprog *f = at(p, filters);
        if (f != NULL)
            f[i].filter = code;
    }
    const struct iso_landlock_path *paths = put(p, sec->landlock_paths, sec->nlandlock_paths * sizeof *sec->landlock_paths);
    for (uint32_t i = 0; i < sec->nlandlock_paths; i++) {
        const char *path = put_str(p, sec->landlock_paths[i].path);
        struct iso_landlock_path *lp = at(p, paths);
        if (lp != NULL)
            lp[i].path = path;
    }
    const void *ports = put(p, sec->landlock_ports, sec->nlandlock_ports * sizeof *sec->landlock_ports);
    const void *pass = put(p, sec->pass_fds, sec->npass_fds * sizeof *sec->pass_fds);
    struct iso_security *s = at(p, copy);
    if (s != NULL) {
        s->filters = filters;
        s->landlock_paths = paths;
        s->landlock_ports = ports;
        s->pass_fds = pass;
    }
    return copy;
}

/*
 * Host: packs the spec part of tmpl (everything but path, argv, init_argv, stack, scratch and descriptors)
 * and the helper's own steps into out. Returns the size the block needs; it was written only when that is
 * <= cap, so call it once with cap 0 to measure.
 */
size_t iso_pack_spec(const struct iso_spawn_request *tmpl, const char *setgroups, const char *uid_map,
                     const char *gid_map, void *out, size_t cap)
{
    struct packer p = { out, cap, 0 };
    struct iso_packed_spec *spec = put(&p, NULL, sizeof *spec);
    struct iso_packed_spec head;
    memset(&head, 0, sizeof head);
    head.abi_version = ISO_ABI_VERSION;
    head.req = *tmpl;
    struct iso_spawn_request *r = &head.req;
    r->path = NULL;
    r->argv = NULL;
    r->init_argv = NULL;
    r->stack = NULL;
    r->scratch = NULL;
    r->envp = (char *const *)pack_string_array(&p, tmpl->envp);
    r->search_path = put_str(&p, tmpl->search_path);
    r->cwd = put_str(&p, tmpl->cwd);
    r->groups = put(&p, tmpl->groups, tmpl->ngroups * sizeof *tmpl->groups);
    r->hostname = put_str(&p, tmpl->hostname);
    r->domainname = put_str(&p, tmpl->domainname);
    r->timens_offsets = tmpl->timens_offsets == NULL ? NULL : put(&p, tmpl->timens_offsets, tmpl->timens_offsets_len + 1);
    r->ops = put(&p, tmpl->ops, tmpl->nops * sizeof *tmpl->ops);
    for (uint32_t i = 0; i < tmpl->nops; i++) {
        const struct iso_op *src = &tmpl->ops[i];
        const char *s1 = src->s1 == NULL ? NULL : put(&p, src->s1, op_s1_len(src));
        const char *s2 = put_str(&p, src->s2), *s3 = put_str(&p, src->s3), *s4 = put_str(&p, src->s4);
        struct iso_op *op = at(&p, r->ops);
        if (op != NULL) {
            op[i].s1 = s1;
            op[i].s2 = s2;
            op[i].s3 = s3;
            op[i].s4 = s4;
        }
    }
    r->security = pack_security(&p, tmpl->security);
    head.setgroups = put_str(&p, setgroups);
    head.uid_map = put_str(&p, uid_map);
    head.gid_map = put_str(&p, gid_map);
    head.size = (uint32_t)p.used;
    struct iso_packed_spec *s = at(&p, spec);
    if (s != NULL)
        *s = head;
    return p.used;
}

/* ---- Unpacking (helper) ---- */

struct unpacker {
    char *base;
    size_t size;
    int bad;
};

/* Turns the offset in *field back into a pointer, checking that n bytes from there lie in the block. */
static void *fix(struct unpacker *u, const void *field, size_t n)
{
    uintptr_t off = (uintptr_t)field;
    if (off == 0)
        return NULL;
    if (off >= u->size || n > u->size - off) {
        u->bad = 1;
        return NULL;
    }
    return u->base + off;
}

static const char *fix_str(struct unpacker *u, const char *field)
{
    char *s = fix(u, field, 1);
    if (s != NULL && memchr(s, '\0', u->size - (size_t)(s - u->base)) == NULL)
        u->bad = 1;
    return u->bad ? NULL : s;
}

/* Helper: makes a packed block usable in place. Returns 0, or -1 when the block is damaged. */
int iso_unpack_spec(struct iso_packed_spec *spec, size_t size)
{
    if (size < sizeof *spec || spec->abi_version != ISO_ABI_VERSION || spec->size != size)
        return -1;
    struct unpacker u = { (char *)spec, size, 0 };
    struct iso_spawn_request *r = &spec->req;
    char **envp = fix(&u, r->envp, sizeof(char *));
    for (size_t i = 0; envp != NULL && !u.bad; i++) {
        if ((char *)&envp[i] + sizeof(char *) > u.base + size) {
            u.bad = 1;
            break;
        }
        if (envp[i] == NULL)
            break;
        envp[i] = (char *)fix_str(&u, envp[i]);
    }
    r->envp = envp;
    r->search_path = fix_str(&u, r->search_path);
    r->cwd = fix_str(&u, r->cwd);
    r->groups = fix(&u, r->groups, r->ngroups * sizeof *r->groups);
    r->hostname = fix_str(&u, r->hostname);
    r->domainname = fix_str(&u, r->domainname);
    r->timens_offsets = fix(&u, r->timens_offsets, r->timens_offsets_len + 1);
    struct iso_op *ops = fix(&u, r->ops, (size_t)r->nops * sizeof *ops);
    for (uint32_t i = 0; ops != NULL && i < r->nops && !u.bad; i++) {
        if (ops[i].kind == ISO_OP_WRITE_FILE)
            ops[i].s1 = fix(&u, ops[i].s1, (size_t)ops[i].n2 + 1);
        else
            ops[i].s1 = fix_str(&u, ops[i].s1); /* an overlay's first layer; the rest follow it in the block */
        ops[i].s2 = fix_str(&u, ops[i].s2);
        ops[i].s3 = fix_str(&u, ops[i].s3);
        ops[i].s4 = fix_str(&u, ops[i].s4);
    }
    r->ops = ops;
    struct iso_security *sec = fix(&u, r->security, sizeof *sec);
    if (sec != NULL) {
        struct iso_sock_fprog *filters = fix(&u, sec->filters, sec->nfilters * sizeof *filters);
        for (uint32_t i = 0; filters != NULL && i < sec->nfilters; i++)
            filters[i].filter = fix(&u, filters[i].filter, (size_t)filters[i].len * 8);
        sec->filters = filters;
        struct iso_landlock_path *paths = fix(&u, sec->landlock_paths, sec->nlandlock_paths * sizeof *paths);
        for (uint32_t i = 0; paths != NULL && i < sec->nlandlock_paths; i++)
            paths[i].path = fix_str(&u, paths[i].path);
        sec->landlock_paths = paths;
        sec->landlock_ports = fix(&u, sec->landlock_ports, sec->nlandlock_ports * sizeof *sec->landlock_ports);
        sec->pass_fds = fix(&u, sec->pass_fds, sec->npass_fds * sizeof *sec->pass_fds);
    }
    r->security = sec;
    spec->setgroups = fix_str(&u, spec->setgroups);
    spec->uid_map = fix_str(&u, spec->uid_map);
    spec->gid_map = fix_str(&u, spec->gid_map);
    return u.bad ? -1 : 0;
}
