using System.Collections.Immutable;

namespace Isolation.Security.Seccomp;

/// <summary>
/// A seccomp policy as rules by system call name (seccomp(2)): a default action and, per system call, rules
/// tried in the order written; the first rule whose argument conditions all hold decides. Immutable: each
/// method returns a new profile. Compile it with <see cref="Compile"/>, or hand it to
/// <see cref="SecurityBuilder.WithSeccomp(SeccompProfile)"/>, which compiles it for the host once at
/// <see cref="NamespaceBuilder.Build"/>.
/// </summary>
/// <example>
/// <code>
/// var profile = new SeccompProfile(SeccompAction.Allow)
///     .Deny(1 /* EPERM */, "keyctl", "add_key")
///     .Rule("socket", SeccompAction.Errno(97 /* EAFNOSUPPORT */), SeccompArgument.Equal(0, 40 /* AF_VSOCK */));
/// </code>
/// </example>
public sealed class SeccompProfile
{
    /// <summary>Starts a profile whose unmatched system calls get <paramref name="defaultAction"/>.</summary>
    public SeccompProfile(SeccompAction defaultAction) : this(defaultAction, [], ignoreUnknown: false, flags: 0)
    {
    }

    private SeccompProfile(SeccompAction defaultAction, ImmutableArray<SeccompRule> rules, bool ignoreUnknown, uint flags)
    {
        DefaultAction = defaultAction;
        Rules = rules;
        IgnoreUnknownSyscalls = ignoreUnknown;
        FilterFlags = flags;
    }

    /// <summary>What happens to a system call no rule matches.</summary>
    public SeccompAction DefaultAction { get; }

    /// <summary>The rules, in the order they are tried.</summary>
    public ImmutableArray<SeccompRule> Rules { get; }

    /// <summary>
    /// Whether names this library's syscall tables do not know are skipped rather than rejected. True for
    /// OCI profiles and the default profile (they name system calls newer than the tables); false for rules
    /// written in code, so that a typo fails in <see cref="Compile"/> instead of silently allowing nothing.
    /// </summary>
    public bool IgnoreUnknownSyscalls { get; }

    /// <summary><c>SECCOMP_FILTER_FLAG_*</c> passed to seccomp(2) with the compiled program (OCI <c>flags</c>).</summary>
    public uint FilterFlags { get; }

    /// <summary>
    /// The default profile for untrusted code, in the spirit of container engines' defaults: an allow-list
    /// of ordinary system calls; everything else fails with EPERM. See <see cref="DefaultSeccompProfile"/>
    /// for what it blocks and why.
    /// </summary>
    public static SeccompProfile Default => DefaultSeccompProfile.Instance;

    /// <summary>Loads an OCI runtime-spec seccomp profile (<c>linux.seccomp</c> of config.json, or a Docker/Podman profile file).</summary>
    public static SeccompProfile FromOciJson(string json) => OciSeccompProfile.Parse(json);

    /// <summary>Adds a rule: <paramref name="action"/> for <paramref name="syscall"/> when all <paramref name="arguments"/> hold.</summary>
    public SeccompProfile Rule(string syscall, SeccompAction action, params SeccompArgument[] arguments)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(syscall);
        ArgumentNullException.ThrowIfNull(arguments);
        foreach (SeccompArgument argument in arguments)
            (argument ?? throw new ArgumentNullException(nameof(arguments))).Validate(syscall);
        if (!IgnoreUnknownSyscalls && !SeccompCompiler.IsKnown(syscall))
            throw new ArgumentException($"Unknown system call '{syscall}'. Use the kernel's name (see syscalls(2)), for example 'openat' or 'clone3'.", nameof(syscall));
        return new(DefaultAction, Rules.Add(new SeccompRule(syscall, action, [.. arguments])), IgnoreUnknownSyscalls, FilterFlags);
    }

    /// <summary>Allows each of <paramref name="syscalls"/> unconditionally.</summary>
    public SeccompProfile Allow(params string[] syscalls) => Each(syscalls, SeccompAction.Allow);

    /// <summary>Fails each of <paramref name="syscalls"/> with <paramref name="errno"/>.</summary>
    public SeccompProfile Deny(int errno, params string[] syscalls) => Each(syscalls, SeccompAction.Errno(errno));

    /// <summary>Kills the process on any of <paramref name="syscalls"/>.</summary>
    public SeccompProfile Kill(params string[] syscalls) => Each(syscalls, SeccompAction.KillProcess);

    /// <summary>Compiles the profile to a classic BPF program for <paramref name="architecture"/> (default: this process's).</summary>
    public SeccompProgram Compile(SeccompArchitecture? architecture = null) =>
        SeccompCompiler.Compile(this, architecture ?? SeccompCompiler.NativeArchitecture);

    internal SeccompProfile WithIgnoreUnknown() => new(DefaultAction, Rules, ignoreUnknown: true, FilterFlags);

    internal SeccompProfile WithFlags(uint flags) => new(DefaultAction, Rules, IgnoreUnknownSyscalls, flags);

    internal SeccompProfile AddRule(SeccompRule rule) => new(DefaultAction, Rules.Add(rule), IgnoreUnknownSyscalls, FilterFlags);

    private SeccompProfile Each(string[] syscalls, SeccompAction action)
    {
        ArgumentNullException.ThrowIfNull(syscalls);
        SeccompProfile profile = this;
        foreach (string syscall in syscalls)
            profile = profile.Rule(syscall, action);
        return profile;
    }
}

/// <summary>A compiled seccomp filter: classic BPF instructions, ready for <c>seccomp(SECCOMP_SET_MODE_FILTER)</c>.</summary>
public sealed class SeccompProgram
{
    /// <summary>The kernel's limit on a filter's length (<c>BPF_MAXINSNS</c>).</summary>
    public const int MaxInstructions = 4096;

    internal SeccompProgram(ImmutableArray<BpfInstruction> instructions, uint flags = 0)
    {
        Instructions = instructions;
        FilterFlags = flags;
    }

    /// <summary>The instructions.</summary>
    public ImmutableArray<BpfInstruction> Instructions { get; }

    /// <summary><c>SECCOMP_FILTER_FLAG_*</c> to load it with.</summary>
    public uint FilterFlags { get; }

    /// <summary>The program as the kernel reads it: 8 bytes per instruction, host byte order (what bubblewrap's <c>--seccomp FD</c> reads).</summary>
    public byte[] ToBytes()
    {
        byte[] bytes = new byte[Instructions.Length * 8];
        for (int i = 0; i < Instructions.Length; i++)
        {
            BpfInstruction insn = Instructions[i];
            BitConverter.TryWriteBytes(bytes.AsSpan(i * 8), insn.Code);
            bytes[i * 8 + 2] = insn.JumpTrue;
            bytes[i * 8 + 3] = insn.JumpFalse;
            BitConverter.TryWriteBytes(bytes.AsSpan(i * 8 + 4), insn.K);
        }
        return bytes;
    }

    /// <summary>
    /// Reads a compiled program (bubblewrap's <c>--seccomp FD</c> / <c>--add-seccomp-fd FD</c> format: raw
    /// <c>struct sock_filter</c> array). Throws <see cref="ArgumentException"/> unless it is 1 to 4096 whole
    /// instructions; the kernel verifies the rest when it is loaded.
    /// </summary>
    public static SeccompProgram FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length == 0 || bytes.Length % 8 != 0 || bytes.Length / 8 > MaxInstructions)
            throw new ArgumentException($"A seccomp program is 1 to {MaxInstructions} instructions of 8 bytes; got {bytes.Length} bytes.", nameof(bytes));
        var builder = ImmutableArray.CreateBuilder<BpfInstruction>(bytes.Length / 8);
        for (int i = 0; i < bytes.Length; i += 8)
            builder.Add(new BpfInstruction(BitConverter.ToUInt16(bytes[i..]), bytes[i + 2], bytes[i + 3], BitConverter.ToUInt32(bytes[(i + 4)..])));
        return new SeccompProgram(builder.MoveToImmutable());
    }
}
