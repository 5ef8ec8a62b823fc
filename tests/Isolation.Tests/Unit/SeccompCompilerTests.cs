using System.Collections.Immutable;
using Isolation.Security;
using Isolation.Security.Seccomp;
using static Isolation.Tests.Unit.SeccompBpfInterpreter;

namespace Isolation.Tests.Unit;

/// <summary>The rules-to-BPF compiler, proved by running its output through an interpreter.</summary>
public sealed class SeccompCompilerTests
{
    private const uint Allow = 0x7fff0000;
    private const uint KillProcess = 0x80000000;
    private static uint Errno(int e) => 0x00050000u | (uint)e;

    [Fact]
    public void An_allowed_call_is_allowed_and_an_unlisted_one_gets_the_default_action()
    {
        SeccompProgram program = new SeccompProfile(SeccompAction.Errno(1)).Allow("read", "write").Compile(SeccompArchitecture.X86_64);

        Assert.Equal(Allow, Run(program, "read"));
        Assert.Equal(Allow, Run(program, "write"));
        Assert.Equal(Errno(1), Run(program, "openat"));
    }

    [Fact]
    public void A_call_from_another_architecture_or_the_x32_abi_kills_the_process()
    {
        SeccompProgram program = new SeccompProfile(SeccompAction.Allow).Compile(SeccompArchitecture.X86_64);

        Assert.Equal(Allow, Run(program.Instructions, AUDIT_ARCH_X86_64, 0));
        Assert.Equal(KillProcess, Run(program.Instructions, AUDIT_ARCH_I386, 0));
        Assert.Equal(KillProcess, Run(program.Instructions, AUDIT_ARCH_AARCH64, 0));
        Assert.Equal(KillProcess, Run(program.Instructions, AUDIT_ARCH_X86_64, 0x40000000 | 1)); // x32 write
    }

    [Fact]
    public void An_aarch64_filter_checks_its_own_architecture_and_numbers_and_skips_calls_it_lacks()
    {
        SeccompProgram program = new SeccompProfile(SeccompAction.Errno(1)).Allow("openat", "open").Compile(SeccompArchitecture.Aarch64);

        Assert.Equal(Allow, Run(program.Instructions, AUDIT_ARCH_AARCH64, SyscallNumber("openat", SeccompArchitecture.Aarch64)));
        Assert.Equal(56, SyscallNumber("openat", SeccompArchitecture.Aarch64));
        Assert.False(SeccompCompiler.Table(SeccompArchitecture.Aarch64).ContainsKey("open"));
        Assert.Equal(KillProcess, Run(program.Instructions, AUDIT_ARCH_X86_64, 257));
        Assert.Equal(Errno(1), Run(program.Instructions, AUDIT_ARCH_AARCH64, 2)); // 2 is io_submit on aarch64 here, not open
    }

    [Theory]
    [InlineData(SeccompComparison.Equal, 5UL, 5UL, true)]
    [InlineData(SeccompComparison.Equal, 5UL, 0x1_0000_0005UL, false)]
    [InlineData(SeccompComparison.Equal, 0x1_0000_0005UL, 0x1_0000_0005UL, true)]
    [InlineData(SeccompComparison.NotEqual, 5UL, 5UL, false)]
    [InlineData(SeccompComparison.NotEqual, 5UL, 0x1_0000_0005UL, true)]
    [InlineData(SeccompComparison.NotEqual, 5UL, 6UL, true)]
    [InlineData(SeccompComparison.GreaterThan, 5UL, 6UL, true)]
    [InlineData(SeccompComparison.GreaterThan, 5UL, 5UL, false)]
    [InlineData(SeccompComparison.GreaterThan, 0x1_0000_0000UL, 0xFFFF_FFFFUL, false)]
    [InlineData(SeccompComparison.GreaterThan, 0xFFFF_FFFFUL, 0x1_0000_0000UL, true)]
    [InlineData(SeccompComparison.GreaterOrEqual, 5UL, 5UL, true)]
    [InlineData(SeccompComparison.GreaterOrEqual, 5UL, 4UL, false)]
    [InlineData(SeccompComparison.GreaterOrEqual, 0x2_0000_0000UL, 0x1_FFFF_FFFFUL, false)]
    [InlineData(SeccompComparison.LessThan, 5UL, 4UL, true)]
    [InlineData(SeccompComparison.LessThan, 5UL, 5UL, false)]
    [InlineData(SeccompComparison.LessThan, 0x1_0000_0000UL, 0xFFFF_FFFFUL, true)]
    [InlineData(SeccompComparison.LessThan, 0x1_0000_0000UL, 0x1_0000_0001UL, false)]
    [InlineData(SeccompComparison.LessOrEqual, 5UL, 5UL, true)]
    [InlineData(SeccompComparison.LessOrEqual, 5UL, 6UL, false)]
    [InlineData(SeccompComparison.LessOrEqual, 5UL, 0x1_0000_0004UL, false)]
    public void Every_comparison_holds_exactly_on_64_bit_values(SeccompComparison comparison, ulong value, ulong argument, bool matches)
    {
        SeccompProgram program = new SeccompProfile(SeccompAction.Allow)
            .Rule("socket", SeccompAction.Errno(97), new SeccompArgument(2, comparison, value))
            .Compile(SeccompArchitecture.X86_64);

        Assert.Equal(matches ? Errno(97) : Allow, Run(program, "socket", 0, 0, argument));
    }

    [Fact]
    public void A_masked_comparison_denies_clone_with_any_namespace_flag()
    {
        SeccompProgram program = new SeccompProfile(SeccompAction.Errno(1))
            .Rule("clone", SeccompAction.Allow, SeccompArgument.MaskedEqual(0, 0x7E020000, 0))
            .Compile(SeccompArchitecture.X86_64);

        Assert.Equal(Allow, Run(program, "clone", 0x01200011 /* fork-like: CHILD_SETTID|CHILD_CLEARTID|SIGCHLD */));
        Assert.Equal(Errno(1), Run(program, "clone", 0x10000000 | 17 /* CLONE_NEWUSER */));
        Assert.Equal(Errno(1), Run(program, "clone", 0x00020000 /* CLONE_NEWNS */));
    }

    [Fact]
    public void All_conditions_of_a_rule_must_hold_and_the_first_matching_rule_wins()
    {
        SeccompProgram program = new SeccompProfile(SeccompAction.Allow)
            .Rule("socket", SeccompAction.Errno(13), SeccompArgument.Equal(0, 2), SeccompArgument.Equal(1, 3)) // AF_INET, SOCK_RAW
            .Rule("socket", SeccompAction.Errno(97), SeccompArgument.Equal(0, 2))
            .Rule("socket", SeccompAction.KillProcess)
            .Compile(SeccompArchitecture.X86_64);

        Assert.Equal(Errno(13), Run(program, "socket", 2, 3));
        Assert.Equal(Errno(97), Run(program, "socket", 2, 1));
        Assert.Equal(KillProcess, Run(program, "socket", 1, 1));
        Assert.Equal(Allow, Run(program, "read"));
    }

    [Fact]
    public void The_default_profile_blocks_the_dangerous_calls_and_allows_ordinary_ones()
    {
        SeccompProgram program = SeccompProfile.Default.Compile(SeccompArchitecture.X86_64);

        foreach (string name in new[] { "read", "write", "openat", "mmap", "execve", "exit_group", "futex", "rt_sigreturn", "socket", "wait4" })
            Assert.True(Allow == Run(program, name), $"{name} should be allowed");
        foreach (string name in new[] { "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "kexec_load", "init_module", "finit_module",
                     "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "ptrace", "process_vm_writev", "userfaultfd",
                     "open_by_handle_at", "io_uring_setup", "reboot", "swapon", "syslog", "iopl", "fsopen", "move_mount" })
            Assert.True(Errno(1) == Run(program, name), $"{name} should fail with EPERM");
        Assert.Equal(Errno(38), Run(program, "clone3"));
        Assert.Equal(Allow, Run(program, "clone", 0x003d0f00 /* glibc pthread_create */));
        Assert.Equal(Errno(1), Run(program, "clone", 0x10000000 | 17));
        Assert.Equal(Allow, Run(program, "personality", 0xffffffff));
        Assert.Equal(Errno(1), Run(program, "personality", 0x0400000 /* READ_IMPLIES_EXEC */));
    }

    [Fact]
    public void The_default_profile_denies_TIOCSTI_even_with_high_bits_set()
    {
        SeccompProgram program = SeccompProfile.Default.Compile(SeccompArchitecture.X86_64);

        Assert.Equal(Errno(1), Run(program, "ioctl", 0, 0x5412));
        Assert.Equal(Errno(1), Run(program, "ioctl", 0, 0xFFFF_FFFF_0000_5412)); // CVE-2019-10063: the kernel reads 32 bits
        Assert.Equal(Errno(1), Run(program, "ioctl", 0, 0x541C));
        Assert.Equal(Allow, Run(program, "ioctl", 0, 0x5401 /* TCGETS */));
    }

    [Fact]
    public void The_default_profile_compiles_for_both_architectures_within_the_kernel_limit()
    {
        foreach (SeccompArchitecture arch in Enum.GetValues<SeccompArchitecture>())
        {
            SeccompProgram program = SeccompProfile.Default.Compile(arch);
            Assert.InRange(program.Instructions.Length, 100, SeccompProgram.MaxInstructions);
            Assert.Equal(0x06, program.Instructions[^1].Code); // ends in a return
        }
    }

    [Fact]
    public void A_program_survives_the_trip_through_bytes()
    {
        SeccompProgram program = SeccompProfile.Default.Compile(SeccompArchitecture.X86_64);

        SeccompProgram copy = SeccompProgram.FromBytes(program.ToBytes());

        Assert.Equal(program.Instructions, copy.Instructions);
        Assert.Equal(program.Instructions.Length * 8, program.ToBytes().Length);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData(4097 * 8)]
    public void Malformed_program_bytes_are_rejected(int length)
    {
        Assert.Throws<ArgumentException>(() => SeccompProgram.FromBytes(new byte[length]));
    }

    [Fact]
    public void An_unknown_system_call_name_is_rejected_with_a_hint()
    {
        var e = Assert.Throws<ArgumentException>(() => new SeccompProfile(SeccompAction.Allow).Deny(1, "opnat"));
        Assert.Contains("opnat", e.Message);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(4096)]
    public void An_errno_out_of_range_is_rejected(int errno)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => SeccompAction.Errno(errno));
    }

    [Fact]
    public void An_argument_index_past_five_is_rejected()
    {
        Assert.Throws<ArgumentException>(() => new SeccompProfile(SeccompAction.Allow).Rule("read", SeccompAction.KillProcess, SeccompArgument.Equal(6, 0)));
    }

    [Fact]
    public void An_oci_profile_loads_with_its_actions_errnos_arguments_and_dockers_conditions()
    {
        const string json = """
        {
          "defaultAction": "SCMP_ACT_ERRNO",
          "defaultErrnoRet": 38,
          "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
          "syscalls": [
            { "names": ["read", "write", "exit_group", "some_future_call"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["clone"], "action": "SCMP_ACT_ALLOW",
              "args": [ { "index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" } ] },
            { "names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": { "caps": ["CAP_SYS_ADMIN"] } },
            { "names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": { "arches": ["amd64", "x32"] } },
            { "names": ["sync"], "action": "SCMP_ACT_ALLOW", "excludes": { "arches": ["amd64"] } },
            { "names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS" },
            { "names": ["tkill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 },
            { "names": ["getpid"], "action": "SCMP_ACT_LOG" },
            { "names": ["getppid"], "action": "SCMP_ACT_TRAP" }
          ]
        }
        """;
        SeccompProgram program = SeccompProfile.FromOciJson(json).Compile(SeccompArchitecture.X86_64);

        Assert.Equal(Allow, Run(program, "read"));
        Assert.Equal(Errno(38), Run(program, "openat"));
        Assert.Equal(Allow, Run(program, "clone", 17));
        Assert.Equal(Errno(38), Run(program, "clone", 0x10000000));
        Assert.Equal(Errno(38), Run(program, "mount"));      // needs a capability the sandbox lacks
        Assert.Equal(Allow, Run(program, "arch_prctl"));    // included on amd64
        Assert.Equal(Errno(38), Run(program, "sync"));      // excluded on amd64
        Assert.Equal(KillProcess, Run(program, "kill"));
        Assert.Equal(Errno(13), Run(program, "tkill"));
        Assert.Equal(0x7ffc0000u, Run(program, "getpid"));
        Assert.Equal(0x00030000u, Run(program, "getppid"));
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("""{ "syscalls": [] }""")]
    [InlineData("""{ "defaultAction": "SCMP_ACT_NOTIFY" }""")]
    [InlineData("""{ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [ { "names": ["read"], "action": "SCMP_ACT_TRACE" } ] }""")]
    [InlineData("""{ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [ { "names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [ { "index": 0, "value": 1, "op": "SCMP_CMP_FOO" } ] } ] }""")]
    [InlineData("""{ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [ { "action": "SCMP_ACT_ERRNO" } ] }""")]
    public void A_malformed_oci_profile_is_rejected_with_an_ArgumentException(string json)
    {
        Assert.ThrowsAny<ArgumentException>(() => SeccompProfile.FromOciJson(json));
    }

    [Fact]
    public void Build_rejects_a_seccomp_filter_without_no_new_privs_when_CAP_SYS_ADMIN_is_dropped()
    {
        var builder = new NamespaceBuilder().WithSecurity(s => s.DropAllCapabilities().WithDefaultSeccomp());

        var e = Assert.Throws<ArgumentException>(() => builder.Build());
        Assert.Contains("NoNewPrivileges()", e.Message);
    }

    [Fact]
    public void A_rule_list_too_long_for_the_kernel_is_rejected_at_build()
    {
        SeccompProfile profile = new(SeccompAction.Allow);
        for (int i = 0; i < 1000; i++) // 5 instructions each
            profile = profile.Rule("ioctl", SeccompAction.Errno(1), SeccompArgument.Equal(1, (ulong)i));
        var builder = new NamespaceBuilder().WithSecurity(s => s.NoNewPrivileges().WithSeccomp(profile));

        var e = Assert.Throws<ArgumentException>(() => builder.Build());
        Assert.Contains("4096", e.Message);
    }
}
