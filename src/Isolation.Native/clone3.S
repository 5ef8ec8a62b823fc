/*
 * long iso_clone3(struct clone_args *args, size_t size, int (*fn)(void *), void *arg);
 *
 * clone3 with a child stack: the child starts on the new stack, so it cannot return into the caller's
 * frame. It calls fn(arg) and then exit(2)s with its result, as glibc's clone3.S does. Returns the child's
 * pid, or -errno, in the parent. Never touches errno.
 */
#if defined(__x86_64__)
    .text
    .globl iso_clone3
    .hidden iso_clone3
    .type iso_clone3, @function
iso_clone3:
    mov     %rcx, %r8          /* arg: r8 survives the syscall */
    mov     $435, %eax         /* __NR_clone3 */
    syscall
    test    %rax, %rax
    jz      1f
    ret
1:  /* child, on its own stack; rdx (fn) survived the syscall */
    xor     %ebp, %ebp
    and     $-16, %rsp
    mov     %r8, %rdi
    call    *%rdx
    mov     %rax, %rdi
    mov     $60, %eax          /* __NR_exit */
    syscall
    hlt
    .size iso_clone3, .-iso_clone3
#elif defined(__aarch64__)
    .text
    .globl iso_clone3
    .hidden iso_clone3
    .type iso_clone3, %function
iso_clone3:
    mov     x8, #435           /* __NR_clone3 */
    svc     #0
    cbz     x0, 1f
    ret
1:  /* child, on its own stack; x2 (fn) and x3 (arg) survived the syscall. AAPCS64: sp 16-byte aligned. */
    mov     x9, sp
    and     sp, x9, #-16
    mov     x29, #0
    mov     x30, #0
    mov     x0, x3
    blr     x2
    mov     x8, #93            /* __NR_exit */
    svc     #0
    brk     #0
    .size iso_clone3, .-iso_clone3
#endif
    .section .note.GNU-stack,"",%progbits
