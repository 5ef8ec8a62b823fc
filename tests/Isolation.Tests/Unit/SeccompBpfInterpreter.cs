using System.Collections.Immutable;
using Isolation.Security.Seccomp;

namespace Isolation.Tests.Unit;

/// <summary>
/// A classic BPF interpreter for seccomp programs, strict like the kernel's checker (seccomp(2),
/// kernel/seccomp.c seccomp_check_filter): only the instructions a seccomp filter may use, every jump
/// inside the program, every load aligned and inside struct seccomp_data, and the program must return.
/// </summary>
public static class SeccompBpfInterpreter
{
    public const uint AUDIT_ARCH_X86_64 = 0xC000003E;
    public const uint AUDIT_ARCH_AARCH64 = 0xC00000B7;
    public const uint AUDIT_ARCH_I386 = 0x40000003;

    /// <summary>Runs the program on one system call and returns the filter's verdict (SECCOMP_RET_*).</summary>
    public static uint Run(ImmutableArray<BpfInstruction> program, uint arch, int nr, params ulong[] args)
    {
        Assert.InRange(program.Length, 1, SeccompProgram.MaxInstructions);
        Span<byte> data = stackalloc byte[64];
        BitConverter.TryWriteBytes(data[0..], nr);
        BitConverter.TryWriteBytes(data[4..], arch);
        for (int i = 0; i < args.Length; i++)
            BitConverter.TryWriteBytes(data[(16 + 8 * i)..], args[i]);

        uint a = 0, x = 0;
        int pc = 0;
        for (int steps = 0; steps < 100_000; steps++)
        {
            Assert.InRange(pc, 0, program.Length - 1);
            BpfInstruction insn = program[pc];
            switch (insn.Code)
            {
                case 0x20: // BPF_LD | BPF_W | BPF_ABS
                    Assert.True(insn.K % 4 == 0 && insn.K <= 60, $"load at offset {insn.K} is outside seccomp_data");
                    a = BitConverter.ToUInt32(data[(int)insn.K..]);
                    pc++;
                    break;
                case 0x00: a = insn.K; pc++; break;        // BPF_LD | BPF_IMM
                case 0x54: a &= insn.K; pc++; break;       // BPF_ALU | BPF_AND | BPF_K
                case 0x07: x = a; pc++; break;             // BPF_MISC | BPF_TAX
                case 0x87: a = x; pc++; break;             // BPF_MISC | BPF_TXA
                case 0x05: pc = Target(program, pc, (long)insn.K); break; // BPF_JMP | BPF_JA
                case 0x15: pc = Branch(program, pc, insn, a == insn.K); break;
                case 0x25: pc = Branch(program, pc, insn, a > insn.K); break;
                case 0x35: pc = Branch(program, pc, insn, a >= insn.K); break;
                case 0x45: pc = Branch(program, pc, insn, (a & insn.K) != 0); break;
                case 0x06: return insn.K;                  // BPF_RET | BPF_K
                default:
                    Assert.Fail($"instruction {pc}: opcode 0x{insn.Code:x} is not allowed in a seccomp filter by this compiler");
                    return 0;
            }
        }
        Assert.Fail("the program did not return");
        return 0;
    }

    /// <summary>Runs a program for x86-64 by syscall name.</summary>
    public static uint Run(SeccompProgram program, string syscall, params ulong[] args) =>
        Run(program.Instructions, AUDIT_ARCH_X86_64, SyscallNumber(syscall), args);

    public static int SyscallNumber(string name, SeccompArchitecture arch = SeccompArchitecture.X86_64) =>
        Isolation.Security.Seccomp.SeccompCompiler.Table(arch)[name];

    private static int Branch(ImmutableArray<BpfInstruction> program, int pc, BpfInstruction insn, bool taken) =>
        Target(program, pc, taken ? insn.JumpTrue : insn.JumpFalse);

    private static int Target(ImmutableArray<BpfInstruction> program, int pc, long offset)
    {
        long target = pc + 1 + offset;
        Assert.True(target < program.Length, $"instruction {pc} jumps to {target}, past the end ({program.Length})");
        return (int)target;
    }
}
