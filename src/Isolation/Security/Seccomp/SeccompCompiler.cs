using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Runtime.InteropServices;

namespace Isolation.Security.Seccomp;

/// <summary>
/// Compiles a <see cref="SeccompProfile"/> to classic BPF (seccomp(2), "Filters"). The program's shape:
/// <code>
///   ld  arch              ; seccomp_data.arch
///   jeq AUDIT_ARCH, +1    ; any other ABI (i386 int 0x80 on x86-64, arm32 on aarch64) is killed
///   ret KILL_PROCESS
///   ld  nr                ; seccomp_data.nr
///   jge 0x40000000 → kill ; x86-64 only: the x32 ABI (__X32_SYSCALL_BIT)
///   per system call:  jeq nr ? next : skip;  ret ACTION      (one unconditional rule)
///                     jeq nr ? next : skip;  ja  body        (rules with argument conditions)
///   ret DEFAULT
///   bodies: per rule, each condition as 32-bit halves (high word first), ret ACTION; then ret DEFAULT
/// </code>
/// Only the long jumps (<c>ja</c>, 32-bit offsets) cross the program; conditional jumps (8-bit offsets) stay
/// within one rule, so no program the kernel accepts is beyond the compiler.
/// </summary>
internal static class SeccompCompiler
{
    // linux/filter.h, linux/bpf_common.h
    internal const ushort BPF_LD_W_ABS = 0x20;
    internal const ushort BPF_JMP_JA = 0x05;
    internal const ushort BPF_JMP_JEQ_K = 0x15;
    internal const ushort BPF_JMP_JGT_K = 0x25;
    internal const ushort BPF_JMP_JGE_K = 0x35;
    internal const ushort BPF_JMP_JSET_K = 0x45;
    internal const ushort BPF_RET_K = 0x06;
    internal const ushort BPF_ALU_AND_K = 0x54;

    // linux/audit.h
    internal const uint AUDIT_ARCH_X86_64 = 0xC000003E;
    internal const uint AUDIT_ARCH_AARCH64 = 0xC00000B7;
    internal const uint X32_SYSCALL_BIT = 0x40000000;

    // struct seccomp_data
    internal const uint OffsetNr = 0;
    internal const uint OffsetArch = 4;
    internal static uint OffsetArgLow(int index) => 16 + 8 * (uint)index;
    internal static uint OffsetArgHigh(int index) => 16 + 8 * (uint)index + 4;

    public static SeccompArchitecture NativeArchitecture => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => SeccompArchitecture.X86_64,
        Architecture.Arm64 => SeccompArchitecture.Aarch64,
        var other => throw new PlatformNotSupportedException($"seccomp filters are compiled for x86-64 and aarch64; this process is {other}."),
    };

    public static FrozenDictionary<string, int> Table(SeccompArchitecture arch) =>
        arch == SeccompArchitecture.X86_64 ? SyscallTables.X86_64 : SyscallTables.Aarch64;

    public static bool IsKnown(string name) => SyscallTables.X86_64.ContainsKey(name) || SyscallTables.Aarch64.ContainsKey(name);

    public static SeccompProgram Compile(SeccompProfile profile, SeccompArchitecture arch)
    {
        ArgumentNullException.ThrowIfNull(profile);
        FrozenDictionary<string, int> table = Table(arch);

        // Group rules by system call number, keeping the order of first appearance.
        var groups = new List<(int Nr, List<SeccompRule> Rules)>();
        var byNr = new Dictionary<int, List<SeccompRule>>();
        foreach (SeccompRule rule in profile.Rules)
        {
            if (!table.TryGetValue(rule.Syscall, out int nr))
            {
                if (!profile.IgnoreUnknownSyscalls && !IsKnown(rule.Syscall))
                    throw new ArgumentException($"Unknown system call '{rule.Syscall}'. Use the kernel's name (see syscalls(2)).");
                continue; // not on this architecture (e.g. 'open' on aarch64) or newer than our tables
            }
            if (!byNr.TryGetValue(nr, out List<SeccompRule>? list))
            {
                byNr[nr] = list = [];
                groups.Add((nr, list));
            }
            list.Add(rule);
        }

        var e = new Emitter();
        uint killProcess = SeccompAction.KillProcess.Value;
        uint defaultAction = profile.DefaultAction.Value;
        e.Load(OffsetArch);
        e.JumpRaw(BPF_JMP_JEQ_K, arch == SeccompArchitecture.X86_64 ? AUDIT_ARCH_X86_64 : AUDIT_ARCH_AARCH64, 1, 0);
        e.Return(killProcess);
        e.Load(OffsetNr);
        if (arch == SeccompArchitecture.X86_64)
        {
            e.JumpRaw(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1);
            e.Return(killProcess);
        }

        var bodies = new List<(int Label, List<SeccompRule> Rules)>();
        foreach ((int nr, List<SeccompRule> rules) in groups)
        {
            e.JumpRaw(BPF_JMP_JEQ_K, (uint)nr, 0, 1);
            if (rules[0].Arguments.IsDefaultOrEmpty)
            {
                e.Return(rules[0].Action.Value); // the first rule always matches: later ones are unreachable
            }
            else
            {
                int label = e.NewLabel();
                e.LongJump(label);
                bodies.Add((label, rules));
            }
        }
        e.Return(defaultAction);

        foreach ((int label, List<SeccompRule> rules) in bodies)
        {
            e.Place(label);
            foreach (SeccompRule rule in rules)
            {
                if (rule.Arguments.IsDefaultOrEmpty)
                {
                    e.Return(rule.Action.Value);
                    break;
                }
                int fail = e.NewLabel();
                foreach (SeccompArgument argument in rule.Arguments)
                    EmitCondition(e, argument, fail);
                e.Return(rule.Action.Value);
                e.Place(fail);
            }
            e.Return(defaultAction);
        }

        ImmutableArray<BpfInstruction> program = e.Resolve();
        if (program.Length > SeccompProgram.MaxInstructions)
            throw new ArgumentException($"The seccomp profile compiles to {program.Length} instructions; the kernel accepts at most {SeccompProgram.MaxInstructions}. Merge rules or split the profile into several filters.");
        return new SeccompProgram(program, profile.FilterFlags);
    }

    /// <summary>One 64-bit comparison as two 32-bit ones; falls through when it holds, jumps to <paramref name="fail"/> when not.</summary>
    private static void EmitCondition(Emitter e, SeccompArgument a, int fail)
    {
        uint hi = (uint)(a.Value >> 32), lo = (uint)a.Value;
        int pass = e.NewLabel();
        switch (a.Comparison)
        {
            case SeccompComparison.Equal:
                e.Load(OffsetArgHigh(a.Index));
                e.Jump(BPF_JMP_JEQ_K, hi, Emitter.Next, fail);
                e.Load(OffsetArgLow(a.Index));
                e.Jump(BPF_JMP_JEQ_K, lo, Emitter.Next, fail);
                break;
            case SeccompComparison.NotEqual:
                e.Load(OffsetArgHigh(a.Index));
                e.Jump(BPF_JMP_JEQ_K, hi, Emitter.Next, pass);
                e.Load(OffsetArgLow(a.Index));
                e.Jump(BPF_JMP_JEQ_K, lo, fail, Emitter.Next);
                break;
            case SeccompComparison.GreaterThan or SeccompComparison.GreaterOrEqual:
                e.Load(OffsetArgHigh(a.Index));
                e.Jump(BPF_JMP_JGT_K, hi, pass, Emitter.Next);
                e.Jump(BPF_JMP_JEQ_K, hi, Emitter.Next, fail);
                e.Load(OffsetArgLow(a.Index));
                e.Jump(a.Comparison == SeccompComparison.GreaterThan ? BPF_JMP_JGT_K : BPF_JMP_JGE_K, lo, Emitter.Next, fail);
                break;
            case SeccompComparison.LessThan or SeccompComparison.LessOrEqual:
                e.Load(OffsetArgHigh(a.Index));
                e.Jump(BPF_JMP_JGT_K, hi, fail, Emitter.Next);
                e.Jump(BPF_JMP_JEQ_K, hi, Emitter.Next, pass);
                e.Load(OffsetArgLow(a.Index));
                e.Jump(a.Comparison == SeccompComparison.LessThan ? BPF_JMP_JGE_K : BPF_JMP_JGT_K, lo, fail, Emitter.Next);
                break;
            case SeccompComparison.MaskedEqual:
                e.Load(OffsetArgHigh(a.Index));
                e.And((uint)(a.Mask >> 32));
                e.Jump(BPF_JMP_JEQ_K, hi & (uint)(a.Mask >> 32), Emitter.Next, fail);
                e.Load(OffsetArgLow(a.Index));
                e.And((uint)a.Mask);
                e.Jump(BPF_JMP_JEQ_K, lo & (uint)a.Mask, Emitter.Next, fail);
                break;
            default:
                throw new ArgumentException($"Unknown comparison {a.Comparison}.");
        }
        e.Place(pass);
    }

    /// <summary>Emits instructions with symbolic jump targets and resolves them to offsets.</summary>
    private sealed class Emitter
    {
        public const int Next = -1; // fall through to the next instruction

        private readonly List<(BpfInstruction Insn, int True, int False, int Long)> _code = [];
        private readonly List<int> _labels = [];

        public int NewLabel()
        {
            _labels.Add(-1);
            return _labels.Count - 1;
        }

        public void Place(int label) => _labels[label] = _code.Count;

        public void Load(uint offset) => Add(new(BPF_LD_W_ABS, 0, 0, offset));

        public void And(uint k) => Add(new(BPF_ALU_AND_K, 0, 0, k));

        public void Return(uint action) => Add(new(BPF_RET_K, 0, 0, action));

        /// <summary>A conditional jump to labels (or <see cref="Next"/>), resolved to 8-bit offsets.</summary>
        public void Jump(ushort code, uint k, int whenTrue, int whenFalse) => _code.Add((new(code, 0, 0, k), whenTrue, whenFalse, Next));

        /// <summary>A conditional jump with literal skip counts.</summary>
        public void JumpRaw(ushort code, uint k, byte skipTrue, byte skipFalse) => Add(new(code, skipTrue, skipFalse, k));

        public void LongJump(int label) => _code.Add((new(BPF_JMP_JA, 0, 0, 0), Next, Next, label));

        private void Add(BpfInstruction insn) => _code.Add((insn, Next, Next, Next));

        public ImmutableArray<BpfInstruction> Resolve()
        {
            var result = ImmutableArray.CreateBuilder<BpfInstruction>(_code.Count);
            for (int pc = 0; pc < _code.Count; pc++)
            {
                (BpfInstruction insn, int whenTrue, int whenFalse, int longTarget) = _code[pc];
                if (longTarget != Next)
                    insn = insn with { K = (uint)(Target(longTarget) - pc - 1) };
                if (whenTrue != Next)
                    insn = insn with { JumpTrue = Short(Target(whenTrue) - pc - 1) };
                if (whenFalse != Next)
                    insn = insn with { JumpFalse = Short(Target(whenFalse) - pc - 1) };
                result.Add(insn);
            }
            return result.MoveToImmutable();
        }

        private int Target(int label) =>
            _labels[label] >= 0 ? _labels[label] : throw new InvalidOperationException($"seccomp compiler: label {label} was never placed.");

        private static byte Short(int offset) =>
            offset is >= 0 and <= 255 ? (byte)offset : throw new InvalidOperationException($"seccomp compiler: a conditional jump of {offset} does not fit in 8 bits.");
    }
}
