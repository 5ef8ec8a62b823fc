using Isolation.Tests.Infrastructure;

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

    [Fact]
    public async Task Without_init_a_signal_without_a_handler_does_not_kill_pid_1_from_inside()
    {
        // pid_namespaces(7): PID 1 gets only the signals it has handlers for, from inside its namespace.
        await using IsolatedProcess p = PidSandbox.WithStandardOutput(Stdio.Pipe).Build().Start("/bin/sh", "-c", "kill -TERM 1; echo survived");
        Assert.Equal("survived\n", await new StreamReader(p.StandardOutput!).ReadToEndAsync());
        Assert.True((await p.WaitForExitAsync()).Success);
    }
}
