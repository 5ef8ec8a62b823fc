using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>PID 1 semantics: the program itself by default, or isolation-init with WithInit().</summary>
public sealed class InitTests
{
    private static readonly NamespaceBuilder PidSandbox = new NamespaceBuilder()
        .WithNamespaces(Namespaces.User | Namespaces.Pid | Namespaces.Mount)
        .MapCurrentUserToRoot()
        .WithMounts(m => m.Proc());

    [Fact]
    public async Task Without_init_the_program_is_pid_1()
    {
        await using IsolatedProcess p = PidSandbox.WithStandardOutput(Stdio.Pipe).Build().Start("/bin/sh", "-c", "echo $$");
        Assert.Equal("1\n", await new StreamReader(p.StandardOutput!).ReadToEndAsync());
    }

    [Fact]
    public async Task With_init_the_program_runs_under_a_pid_1_that_reaps_orphans()
    {
        // The shell spawns an orphan (its child exits before the grandchild); with an init it is reaped,
        // so no zombie remains in the namespace.
        IsolationSpec spec = PidSandbox.WithInit().WithStandardOutput(Stdio.Pipe).Build();
        await using IsolatedProcess p = spec.Start("/bin/sh", "-c",
            "echo $$; cat /proc/1/comm; (sh -c 'sleep 0.2 &' ); sleep 0.6; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l");
        string[] lines = (await new StreamReader(p.StandardOutput!).ReadToEndAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        ExitStatus status = await p.WaitForExitAsync();

        Assert.Equal("2", lines[0]);
        Assert.Equal("isolation-init", lines[1].Trim());
        Assert.Equal("0", lines[2].Trim());
        Assert.True(status.Success);
    }

    [Fact]
    public async Task With_init_the_exit_status_of_the_program_is_passed_through()
    {
        await using IsolatedProcess p = PidSandbox.WithInit().Build().Start("/bin/sh", "-c", "exit 17");
        ExitStatus status = await p.WaitForExitAsync();
        Assert.Equal(TerminationReason.Exited, status.Reason);
        Assert.Equal(17, status.ExitCode);
    }

    [Fact]
    public async Task With_init_signals_are_forwarded_to_the_program()
    {
        IsolationSpec spec = PidSandbox.WithInit().WithStandardOutput(Stdio.Pipe).Build();
        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "trap 'exit 5' TERM; echo ready; while :; do sleep 0.05; done");
        Assert.Equal("ready", await new StreamReader(p.StandardOutput!).ReadLineAsync());
        Assert.True(p.Signal(15));
        ExitStatus status = await p.WaitForExitAsync();
        Assert.Equal(5, status.ExitCode);
    }

    [Fact]
    public async Task With_init_a_missing_program_is_still_a_setup_error()
    {
        IsolationSpec spec = PidSandbox.WithInit().Build();
        var e = Assert.Throws<SandboxSetupException>(() => spec.Start("/no/such/program"));
        Assert.Equal(SetupStep.Exec, e.Step);
        Assert.Equal("ENOENT", e.ErrnoName);
        await Task.CompletedTask;
    }

    // --- vm.memfd_noexec (hardened hosts): the sysctl is per PID namespace and a child namespace may only raise
    // it, so each case runs a host of the library as PID 1 of a private PID namespace that set it first. ---

    private const string MemfdNoexec = "/proc/sys/vm/memfd_noexec";

    /// <summary>
    /// unshare makes a PID namespace (and, with --mount-proc, a private mount namespace) whose first process sets
    /// vm.memfd_noexec there, runs <paramref name="steps"/> (shell commands), then execs the test host.
    /// </summary>
    private static string[] UnderMemfdNoexec(int mode, params string[] steps) =>
        ["/usr/bin/unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "/bin/sh", "-c",
            string.Join(" && ", [$"echo {mode} > {MemfdNoexec}", .. steps, "exec \"$@\""]), "sh"];

    /// <summary>
    /// Shell steps that leave no temp directory where exec is allowed (noexec tmpfs on /tmp and /dev/shm, TMPDIR=/tmp).
    /// The test host's directory is bound back at its own path on top, so that a checkout under /tmp (as
    /// <c>mktemp -d</c> makes for CI) stays where the test host and the shipped init are run from.
    /// </summary>
    private static readonly string[] NoExecTempDirectories =
        [$"exec 9<'{TestHostRunner.Directory}'", "mount -t tmpfs -o noexec tmpfs /tmp", "mount -t tmpfs -o noexec tmpfs /dev/shm",
            $"mkdir -p '{TestHostRunner.Directory}'", $"mount --no-canonicalize --bind /proc/self/fd/9 '{TestHostRunner.Directory}'", "exec 9<&-", "export TMPDIR=/tmp"];

    private static readonly string[] InitReport =
        ["/bin/sh", "-c", $"echo $$; cat /proc/1/comm; cat {MemfdNoexec}; (sh -c 'sleep 0.2 &' ); sleep 0.6; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l; readlink /proc/1/exe"];

    private static void RequireMemfdNoexec()
    {
        Host.RequireRoot();
        Assert.SkipUnless(File.Exists("/usr/bin/unshare"), "needs unshare (util-linux) for a private PID namespace");
        Assert.SkipUnless(File.Exists(MemfdNoexec), "the kernel has no vm.memfd_noexec sysctl (Linux 6.3+)");
    }

    [Theory]
    [InlineData(0, true)]
    [InlineData(1, true)]
    [InlineData(2, false)] // an unnamed copy (O_TMPFILE) in the first temp directory that allows exec
    public void With_init_sandboxes_start_and_reap_whatever_vm_memfd_noexec_says(int mode, bool fromMemfd)
    {
        RequireMemfdNoexec();
        string before = File.ReadAllText(MemfdNoexec);

        SpawnOutcome outcome = RunInitUnder(UnderMemfdNoexec(mode, "unset TMPDIR"));

        Assert.True(outcome.Started, $"no start under vm.memfd_noexec={mode}: {outcome.Error?.Message}");
        string[] lines = outcome.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim()).ToArray();
        Assert.Equal(["2", "isolation-init", mode.ToString(), "0"], lines[..4]);
        Assert.True(fromMemfd ? lines[4].StartsWith("/memfd:", StringComparison.Ordinal) : lines[4].EndsWith("(deleted)", StringComparison.Ordinal) && lines[4].Contains("/#", StringComparison.Ordinal),
            $"the init ran from {lines[4]}");
        Assert.Equal(0, outcome.ExitCode);
        Assert.Equal(before, File.ReadAllText(MemfdNoexec)); // the host's own value is untouched
    }

    [Fact]
    public void With_init_and_no_executable_memfd_nor_temp_directory_the_shipped_init_runs_in_place()
    {
        RequireMemfdNoexec();

        SpawnOutcome outcome = RunInitUnder(UnderMemfdNoexec(2, NoExecTempDirectories));

        Assert.True(outcome.Started, $"no start: {outcome.Error?.Message}");
        string[] lines = outcome.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim()).ToArray();
        Assert.Equal(["2", "isolation-init", "2", "0", Path.Combine(TestHostRunner.Directory, "isolation-init")], lines);
    }

    [Fact]
    public void With_init_where_no_way_can_work_the_error_names_the_sysctl()
    {
        RequireMemfdNoexec();

        // ISOLATION_INIT_PATH names a copy that nobody may execute (mode 0644, on a noexec tmpfs).
        SpawnOutcome outcome = RunInitUnder(UnderMemfdNoexec(2, [.. NoExecTempDirectories,
            $"cp {Path.Combine(TestHostRunner.Directory, "isolation-init")} /tmp/init", "chmod 0644 /tmp/init", "export ISOLATION_INIT_PATH=/tmp/init"]));

        Assert.False(outcome.Started);
        Assert.NotNull(outcome.Error);
        Assert.Equal(nameof(SetupStep.LoadInit), outcome.Error.Step);
        Assert.Contains("/tmp/init", outcome.Error.Message);
        Assert.Contains("vm.memfd_noexec=2", outcome.Error.Hint);
        Assert.Contains("ISOLATION_INIT_PATH", outcome.Error.Hint);
    }

    private static SpawnOutcome RunInitUnder(string[] launcher) =>
        FaultHost.Run(ReportJson.Default.SpawnOutcome, TimeSpan.FromSeconds(60), launcher,
            ["spawn", "--ns", "user,pid,mount", "--map-root", "--proc", "/proc", "--init", "--", .. InitReport]);

    // --- The init without a PID namespace, and the same program giving the same result with or without it. ---

    private static readonly NamespaceBuilder UserOnly = new NamespaceBuilder().WithNamespaces(Namespaces.User).MapCurrentUserToRoot();

    [Fact]
    public async Task With_init_but_no_PID_namespace_orphans_come_to_the_init_and_are_reaped()
    {
        // The orphan's parent, seen in the host's /proc, must be the init (the shell's parent), not the machine's init.
        IsolationSpec spec = UserOnly.WithInit().WithStandardOutput(Stdio.Pipe).Build();
        await using IsolatedProcess p = spec.Start("/bin/sh", "-c",
            "o=$(sh -c 'sleep 0.5 >/dev/null 2>&1 & echo $!'); echo $PPID; awk '/^PPid/{print $2}' /proc/$o/status; sleep 1; awk '/^State/{print $2}' /proc/$o/status 2>/dev/null || echo gone");
        string[] lines = (await new StreamReader(p.StandardOutput!).ReadToEndAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        await p.WaitForExitAsync();

        Assert.Equal(p.Id.ToString(), lines[0]); // the shell's parent is the init, the sandbox's process
        Assert.Equal(lines[0], lines[1]);        // the orphan went to the init
        Assert.Equal("gone", lines[2]);          // and was reaped by it
    }

    [Theory]
    [InlineData(24)] // SIGXCPU
    [InlineData(40)] // a real-time signal
    public async Task With_init_every_catchable_signal_is_forwarded_to_the_program(int signal)
    {
        IsolationSpec spec = PidSandbox.WithInit().WithStandardOutput(Stdio.Pipe).Build();
        await using IsolatedProcess p = spec.Start("/bin/bash", "-c", $"trap 'exit 7' {signal}; echo ready; while :; do sleep 0.05; done");
        Assert.Equal("ready", await new StreamReader(p.StandardOutput!).ReadLineAsync());
        Assert.True(p.Signal(signal));
        ExitStatus status = await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(7, status.ExitCode);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_script_without_a_shebang_fails_with_ENOEXEC_with_or_without_init(bool init)
    {
        using var dir = new TempDirectory();
        string script = dir.Write("no-shebang", "echo ran\n", executable: true);

        IsolationSpec spec = PidSandbox.WithInit(init).WithStandardOutput(Stdio.Pipe).Build();
        var e = Assert.Throws<SandboxSetupException>(() => spec.Start(script).Dispose());

        Assert.Equal(SetupStep.Exec, e.Step);
        Assert.Equal("ENOEXEC", e.ErrnoName);
        await Task.CompletedTask;
    }

    [Fact]
    public async Task Without_init_a_signal_without_a_handler_does_not_kill_pid_1_from_inside()
    {
        // pid_namespaces(7): PID 1 gets only the signals it has handlers for, from inside its namespace.
        await using IsolatedProcess p = PidSandbox.WithStandardOutput(Stdio.Pipe).Build().Start("/bin/sh", "-c", "kill -TERM 1; echo survived");
        Assert.Equal("survived\n", await new StreamReader(p.StandardOutput!).ReadToEndAsync());
        Assert.True((await p.WaitForExitAsync()).Success);
    }
}
