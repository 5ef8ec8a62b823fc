using System.Collections.Immutable;
using System.Runtime.InteropServices;

namespace Isolation.Security.Seccomp;

/// <summary>What a seccomp filter does with a system call (seccomp(2), "Filter return values").</summary>
public readonly record struct SeccompAction
{
    private SeccompAction(uint value, string name)
    {
        Value = value;
        Name = name;
    }

    /// <summary>The filter's 32-bit return value (<c>SECCOMP_RET_*</c>).</summary>
    public uint Value { get; }

    /// <summary>A readable name, for messages and tables.</summary>
    public string Name { get; }

    /// <summary>Let the call through (<c>SECCOMP_RET_ALLOW</c>).</summary>
    public static SeccompAction Allow { get; } = new(0x7fff0000, "allow");

    /// <summary>Kill the whole process, as if by an uncatchable SIGSYS (<c>SECCOMP_RET_KILL_PROCESS</c>).</summary>
    public static SeccompAction KillProcess { get; } = new(0x80000000, "kill-process");

    /// <summary>Kill the calling thread only (<c>SECCOMP_RET_KILL_THREAD</c>).</summary>
    public static SeccompAction KillThread { get; } = new(0x00000000, "kill-thread");

    /// <summary>Deliver a catchable SIGSYS (<c>SECCOMP_RET_TRAP</c>).</summary>
    public static SeccompAction Trap { get; } = new(0x00030000, "trap");

    /// <summary>Allow the call and log it to the audit log (<c>SECCOMP_RET_LOG</c>).</summary>
    public static SeccompAction Log { get; } = new(0x7ffc0000, "log");

    /// <summary>Fail the call with <paramref name="errno"/> without running it (<c>SECCOMP_RET_ERRNO</c>).</summary>
    public static SeccompAction Errno(int errno)
    {
        if (errno is < 0 or > 4095)
            throw new ArgumentOutOfRangeException(nameof(errno), errno, "An errno for seccomp is 0 to 4095 (SECCOMP_RET_DATA), for example 1 (EPERM) or 38 (ENOSYS).");
        return new(0x00050000u | (uint)errno, $"errno {errno}");
    }

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>How a system call argument is compared (the OCI runtime spec's <c>SCMP_CMP_*</c>).</summary>
public enum SeccompComparison
{
    /// <summary><c>arg == value</c> (<c>SCMP_CMP_EQ</c>).</summary>
    Equal,
    /// <summary><c>arg != value</c> (<c>SCMP_CMP_NE</c>).</summary>
    NotEqual,
    /// <summary><c>arg &lt; value</c>, unsigned 64-bit (<c>SCMP_CMP_LT</c>).</summary>
    LessThan,
    /// <summary><c>arg &lt;= value</c>, unsigned 64-bit (<c>SCMP_CMP_LE</c>).</summary>
    LessOrEqual,
    /// <summary><c>arg &gt; value</c>, unsigned 64-bit (<c>SCMP_CMP_GT</c>).</summary>
    GreaterThan,
    /// <summary><c>arg &gt;= value</c>, unsigned 64-bit (<c>SCMP_CMP_GE</c>).</summary>
    GreaterOrEqual,
    /// <summary><c>(arg &amp; mask) == value</c> (<c>SCMP_CMP_MASKED_EQ</c>).</summary>
    MaskedEqual,
}

/// <summary>A condition on one system call argument; a rule matches when all its conditions hold.</summary>
/// <param name="Index">The argument, 0 to 5.</param>
/// <param name="Comparison">How to compare.</param>
/// <param name="Value">The value compared with (after masking, for <see cref="SeccompComparison.MaskedEqual"/>).</param>
/// <param name="Mask">For <see cref="SeccompComparison.MaskedEqual"/>: the bits of the argument compared.</param>
public sealed record SeccompArgument(int Index, SeccompComparison Comparison, ulong Value, ulong Mask = ulong.MaxValue)
{
    /// <summary><c>arg[index] == value</c>.</summary>
    public static SeccompArgument Equal(int index, ulong value) => new(index, SeccompComparison.Equal, value);

    /// <summary><c>arg[index] != value</c>.</summary>
    public static SeccompArgument NotEqual(int index, ulong value) => new(index, SeccompComparison.NotEqual, value);

    /// <summary><c>(arg[index] &amp; mask) == value</c>: for flags, such as "clone without any CLONE_NEW* flag".</summary>
    public static SeccompArgument MaskedEqual(int index, ulong mask, ulong value) => new(index, SeccompComparison.MaskedEqual, value, mask);

    internal void Validate(string syscall)
    {
        if (Index is < 0 or > 5)
            throw new ArgumentException($"Argument index {Index} of a '{syscall}' rule is out of range: system calls have arguments 0 to 5.");
        if (!Enum.IsDefined(Comparison))
            throw new ArgumentException($"Unknown comparison {Comparison} in a '{syscall}' rule.");
    }
}

/// <summary>One rule: what to do with <paramref name="Syscall"/> when all <paramref name="Arguments"/> match.</summary>
public sealed record SeccompRule(string Syscall, SeccompAction Action, ImmutableArray<SeccompArgument> Arguments);

/// <summary>The architectures a filter can be compiled for; each filter checks <c>seccomp_data.arch</c> first.</summary>
public enum SeccompArchitecture
{
    /// <summary>x86-64 (<c>AUDIT_ARCH_X86_64</c>); the x32 ABI and 32-bit <c>int 0x80</c> calls are killed.</summary>
    X86_64,
    /// <summary>64-bit ARM (<c>AUDIT_ARCH_AARCH64</c>); 32-bit compat calls are killed.</summary>
    Aarch64,
}

/// <summary>One classic BPF instruction (<c>struct sock_filter</c>, 8 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct BpfInstruction(ushort Code, byte JumpTrue, byte JumpFalse, uint K);
