/*
 * raw_syscall.h: system calls without libc, for the child between clone and execve.
 *
 * The child runs with CLONE_VM on the parent's memory and the parent thread's TLS, so a libc wrapper that
 * sets errno would write into the parent thread's errno while that thread runs. These return -errno
 * instead and touch nothing but registers.
 */
#ifndef ISOLATION_RAW_SYSCALL_H
#define ISOLATION_RAW_SYSCALL_H

#include <sys/syscall.h>

#if defined(__x86_64__)
static inline long iso_sys6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
static inline long iso_sys6(long n, long a, long b, long c, long d, long e, long f)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
}
#else
#error "isolation: unsupported architecture (x86_64 and aarch64 are supported)"
#endif

#define iso_sys0(n) iso_sys6((n), 0, 0, 0, 0, 0, 0)
#define iso_sys1(n, a) iso_sys6((n), (long)(a), 0, 0, 0, 0, 0)
#define iso_sys2(n, a, b) iso_sys6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define iso_sys3(n, a, b, c) iso_sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define iso_sys4(n, a, b, c, d) iso_sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define iso_sys5(n, a, b, c, d, e) iso_sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
#ifndef SYS_pivot_root
#define SYS_pivot_root 155
#endif

#endif
