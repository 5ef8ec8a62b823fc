/*
 * glibc symbol-version floor: linked into the glibc builds of the shim and the spawn helper only (the
 * Makefile passes --wrap for each symbol below), so that they run on glibc 2.27, .NET 10's own floor, although
 * they are built against a newer glibc. Every symbol this file stands in for got a new version after 2.27:
 *
 *   __libc_start_main  GLIBC_2.34 (init and fini moved into libc): called by crt1 in every executable
 *   stat, fstat        GLIBC_2.33 (before: __xstat/__fxstat with a version argument)
 *   dladdr             GLIBC_2.34 (moved from libdl into libc)
 *   pthread_create,    GLIBC_2.34 (moved from libpthread into libc; the shim only: a .NET process has
 *   pthread_join                   libpthread loaded on a glibc older than 2.34, which holds the old versions)
 *
 * The old versions still exist in every newer glibc (that is how old binaries keep working), so binding to
 * them costs nothing there. The Makefile's glibc-floor check fails the build if anything newer slips in.
 * Where this runs: the host (shim) and the helper, never in a child between clone and execve.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define ISO_GLIBC_BASE "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define ISO_GLIBC_BASE "GLIBC_2.17"
#else
#error "glibc_compat.c: add the architecture's oldest glibc symbol version"
#endif

/* stat and fstat: the kernel's struct stat is glibc's on x86-64 and aarch64, so the system call is the call. */
int __wrap_stat(const char *path, struct stat *st)
{
    return (int)syscall(SYS_newfstatat, AT_FDCWD, path, st, 0);
}

int __wrap_fstat(int fd, struct stat *st)
{
    return (int)syscall(SYS_fstat, fd, st);
}

/* dladdr: the GLIBC_2.2.5 / 2.17 version (libdl before 2.34; a compatibility symbol of libc since). */
int iso_dladdr_compat(const void *addr, Dl_info *info);
__asm__(".symver iso_dladdr_compat,dladdr@" ISO_GLIBC_BASE);

int __wrap_dladdr(const void *addr, Dl_info *info)
{
    return iso_dladdr_compat(addr, info);
}

/* pthread_create and pthread_join: the GLIBC_2.2.5 / 2.17 versions (libpthread before 2.34; compatibility symbols of libc since). */
int iso_pthread_create_compat(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *), void *arg);
__asm__(".symver iso_pthread_create_compat,pthread_create@" ISO_GLIBC_BASE);
int iso_pthread_join_compat(pthread_t thread, void **result);
__asm__(".symver iso_pthread_join_compat,pthread_join@" ISO_GLIBC_BASE);

int __wrap_pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *), void *arg)
{
    return iso_pthread_create_compat(thread, attr, start, arg);
}

int __wrap_pthread_join(pthread_t thread, void **result)
{
    return iso_pthread_join_compat(thread, result);
}

#ifdef ISO_COMPAT_EXECUTABLE
/*
 * __libc_start_main (executables only): crt1 (Scrt1.o) of glibc 2.34+ calls the GLIBC_2.34 version with init = fini = NULL and
 * lets libc find the executable's constructors. The old version, on an old glibc, runs only the init function
 * it is given; on a new glibc it runs that instead of looking for constructors. So we pass one that runs the
 * executable's _init and .init_array, as the old crt's __libc_csu_init did (the preinit array is run by ld.so
 * in a dynamically linked executable).
 */
typedef int (*iso_main_fn)(int, char **, char **);
int iso_libc_start_main_compat(iso_main_fn main, int argc, char **argv, void (*init)(int, char **, char **),
                               void (*fini)(void), void (*rtld_fini)(void), void *stack_end);
__asm__(".symver iso_libc_start_main_compat,__libc_start_main@" ISO_GLIBC_BASE);

extern void (*__init_array_start[])(int, char **, char **) __attribute__((visibility("hidden")));
extern void (*__init_array_end[])(int, char **, char **) __attribute__((visibility("hidden")));
extern void _init(void);

static void iso_run_constructors(int argc, char **argv, char **envp)
{
    _init();
    for (size_t i = 0; i < (size_t)(__init_array_end - __init_array_start); i++)
        __init_array_start[i](argc, argv, envp);
}

int __wrap___libc_start_main(iso_main_fn main, int argc, char **argv, void (*init)(int, char **, char **),
                             void (*fini)(void), void (*rtld_fini)(void), void *stack_end)
{
    (void)init;
    (void)fini;
    return iso_libc_start_main_compat(main, argc, argv, iso_run_constructors, NULL, rtld_fini, stack_end);
}
#endif
