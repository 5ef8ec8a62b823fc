/*
 * musl builds only (the Makefile passes -include musl_compat.h): glibc-only calls the sources make, as no-ops.
 * helper.c tunes glibc's malloc with mallopt() so that freed spawn blocks stay mapped; musl's malloc has no
 * such knobs (and returns large blocks to the kernel), so on musl this costs some speed, not correctness.
 */
#ifndef ISOLATION_MUSL_COMPAT_H
#define ISOLATION_MUSL_COMPAT_H
#ifndef __ASSEMBLER__

#define M_TRIM_THRESHOLD (-1)
#define M_MMAP_THRESHOLD (-3)

static inline int mallopt(int param, int value)
{
    (void)param;
    (void)value;
    return 1;
}

#endif /* __ASSEMBLER__ */
#endif
