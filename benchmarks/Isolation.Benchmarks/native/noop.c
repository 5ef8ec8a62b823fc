/*
 * noop.c: the smallest program exec can start. Static, no libc, no dynamic loader: _start calls exit(0).
 * Spawned by the latency benchmarks so that the measured time is the sandbox's, not the program's.
 * With a first argument starting with 'p' ("pause"), it sleeps until killed instead: the idle payload
 * of the scale benchmarks. Any other arguments are ignored.
 */
#if defined(__x86_64__)
__asm__(
    ".text\n"
    ".globl _start\n"
    "_start:\n"
    "    mov (%rsp), %rdi\n"        /* argc */
    "    cmp $1, %rdi\n"
    "    jle 2f\n"
    "    mov 16(%rsp), %rax\n"      /* argv[1] */
    "    cmpb $'p', (%rax)\n"
    "    je 1f\n"
    "2:  mov $60, %eax\n"           /* exit(0) */
    "    xor %edi, %edi\n"
    "    syscall\n"
    "1:  mov $34, %eax\n"           /* pause() until a signal kills us */
    "    syscall\n"
    "    jmp 1b\n");
#elif defined(__aarch64__)
__asm__(
    ".text\n"
    ".globl _start\n"
    "_start:\n"
    "    ldr x0, [sp]\n"            /* argc */
    "    cmp x0, #1\n"
    "    b.le 2f\n"
    "    ldr x1, [sp, #16]\n"      /* argv[1] */
    "    ldrb w1, [x1]\n"
    "    cmp w1, #'p'\n"
    "    b.eq 1f\n"
    "2:  mov x0, #0\n"
    "    mov x8, #93\n"             /* exit(0) */
    "    svc #0\n"
    "1:  mov x0, #0\n"              /* ppoll(NULL, 0, NULL, NULL) sleeps until a signal kills us */
    "    mov x1, #0\n"
    "    mov x2, #0\n"
    "    mov x3, #0\n"
    "    mov x8, #73\n"
    "    svc #0\n"
    "    b 1b\n");
#else
#error "noop: x86_64 and aarch64 only"
#endif
