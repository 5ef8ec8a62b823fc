using System.Diagnostics;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>argv, environment, working directory, stdio, waiting, signals, timeouts and sessions.</summary>
public sealed class ProcessTests
{
    private static readonly NamespaceBuilder Plain = new();

    // The test host's apphost finds the runtime through DOTNET_ROOT once the environment is cleared.
    private static readonly string DotnetRoot = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(typeof(object).Assembly.Location)!, "../../.."));

    private static async Task<(string Output, ExitStatus Status)> RunAsync(NamespaceBuilder builder, string program, params string[] args)
    {
        IsolationSpec spec = builder.WithStandardOutput(Stdio.Pipe).Build();
        await using IsolatedProcess p = spec.Start(program, args);
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
        return (output, await p.WaitForExitAsync());
    }

    [Theory]
    [InlineData(true)]  // the program still runs when the sandbox is disposed
    [InlineData(false)] // the program has exited and left a background child behind
    public async Task Without_a_PID_namespace_or_cgroup_dispose_kills_the_sandboxes_process_group(bool programRunning)
    {
        IsolationSpec spec = new NamespaceBuilder().WithNamespaces(Namespaces.User).MapCurrentUserToRoot().WithStandardOutput(Stdio.Pipe).Build();
        int background;
        await using (IsolatedProcess p = spec.Start("/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!" + (programRunning ? "; exec sleep 300" : "")))
        {
            background = int.Parse((await new StreamReader(p.StandardOutput!).ReadLineAsync())!);
            if (!programRunning)
                await p.WaitForExitAsync();
            Assert.True(IsAlive(background), "the background child should run until the sandbox is disposed");
        }

        Assert.True(SpinWait.SpinUntil(() => !IsAlive(background), TimeSpan.FromSeconds(5)), $"pid {background} of the sandbox's process group survived Dispose");
    }

    /// <summary>Running (not gone, not a zombie waiting for its new parent to reap it).</summary>
    private static bool IsAlive(int pid)
    {
        try
        {
            return !File.ReadAllLines($"/proc/{pid}/status").Any(l => l.StartsWith("State:", StringComparison.Ordinal) && l.Contains('Z'));
        }
        catch (IOException)
        {
            return false;
        }
    }

    [Fact]
    public async Task Arguments_reach_the_program_unchanged()
    {
        string[] args = ["plain", "with space", "", "ünïcödé", "--flag=x", "$HOME", "a\nb"];
        EnvironmentReport report = await TestHostRunner.ReportAsync(Plain, args);
        Assert.Equal(args, report.Args);
    }

    [Fact]
    public async Task A_program_name_without_a_slash_is_found_in_PATH()
    {
        (string output, ExitStatus status) = await RunAsync(Plain, "echo", "found");
        Assert.Equal("found\n", output);
        Assert.True(status.Success);
    }

    [Fact]
    public async Task Argv0_can_differ_from_the_program_path()
    {
        (string output, _) = await RunAsync(Plain.WithArgv0("custom-name"), "/bin/sh", "-c", "echo $0");
        Assert.Equal("custom-name\n", output);
    }

    [Fact]
    public async Task The_environment_is_inherited_by_default()
    {
        Environment.SetEnvironmentVariable("ISOLATION_TEST_INHERITED", "yes");
        EnvironmentReport report = await TestHostRunner.ReportAsync(Plain);
        Assert.Equal("yes", report.Environment["ISOLATION_TEST_INHERITED"]);
        Assert.Equal(Environment.GetEnvironmentVariable("PATH"), report.Environment["PATH"]);
    }

    [Fact]
    public async Task The_environment_can_be_cleared_set_and_unset()
    {
        EnvironmentReport cleared = await TestHostRunner.ReportAsync(Plain.WithEnvironment(e => e.Clear().Set("ONLY", "this").Set("DOTNET_ROOT", DotnetRoot)));
        Assert.Equal("this", cleared.Environment["ONLY"]);
        Assert.DoesNotContain("PATH", cleared.Environment.Keys);

        Environment.SetEnvironmentVariable("ISOLATION_TEST_UNSET_ME", "x");
        EnvironmentReport changed = await TestHostRunner.ReportAsync(Plain.WithEnvironment(e => e.Unset("ISOLATION_TEST_UNSET_ME").Set("ADDED", "1").Set("ADDED", "2")));
        Assert.DoesNotContain("ISOLATION_TEST_UNSET_ME", changed.Environment.Keys);
        Assert.Equal("2", changed.Environment["ADDED"]);
        Assert.Contains("PATH", changed.Environment.Keys);
    }

    [Fact]
    public async Task The_working_directory_is_set()
    {
        EnvironmentReport report = await TestHostRunner.ReportAsync(Plain.WithWorkingDirectory("/tmp"));
        Assert.Equal("/tmp", report.Cwd);
    }

    [Fact]
    public async Task A_missing_working_directory_can_fall_back_to_home_and_then_to_the_root()
    {
        NamespaceBuilder missing = Plain.WithWorkingDirectory("/no/such/directory", fallBack: true);
        EnvironmentReport home = await TestHostRunner.ReportAsync(missing.WithEnvironment(e => e.Set("HOME", "/tmp")));
        EnvironmentReport root = await TestHostRunner.ReportAsync(missing.WithEnvironment(e => e.Set("HOME", "/no/such/home")));
        Assert.Equal("/tmp", home.Cwd);
        Assert.Equal("/", root.Cwd);
    }

    [Fact]
    public async Task Standard_input_output_and_error_can_be_pipes()
    {
        IsolationSpec spec = Plain.WithStandardInput(Stdio.Pipe).WithStandardOutput(Stdio.Pipe).WithStandardError(Stdio.Pipe).Build();
        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "read line; echo \"out:$line\"; echo \"err:$line\" >&2");
        await p.StandardInput!.WriteAsync("hello\n"u8.ToArray());
        await p.StandardInput.FlushAsync();
        p.StandardInput.Close();
        Task<string> output = new StreamReader(p.StandardOutput!).ReadToEndAsync();
        Task<string> error = new StreamReader(p.StandardError!).ReadToEndAsync();

        Assert.True((await p.WaitForExitAsync()).Success);
        Assert.Equal("out:hello\n", await output);
        Assert.Equal("err:hello\n", await error);
    }

    [Fact]
    public async Task Standard_input_can_be_dev_null_and_output_a_file()
    {
        string file = Path.Combine(Path.GetTempPath(), $"isolation-stdout-{Guid.NewGuid():N}");
        try
        {
            IsolationSpec spec = Plain.WithStandardInput(Stdio.Null).WithStandardOutput(Stdio.File(file)).Build();
            await using (IsolatedProcess p = spec.Start("/bin/sh", "-c", "cat; echo written"))
                Assert.True((await p.WaitForExitAsync()).Success);
            Assert.Equal("written\n", File.ReadAllText(file));

            IsolationSpec append = Plain.WithStandardOutput(Stdio.File(file, append: true)).Build();
            await using (IsolatedProcess p = append.Start("/bin/echo", "again"))
                await p.WaitForExitAsync();
            Assert.Equal("written\nagain\n", File.ReadAllText(file));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Exit_codes_and_signals_are_told_apart()
    {
        (_, ExitStatus exited) = await RunAsync(Plain, "/bin/sh", "-c", "exit 42");
        Assert.Equal(TerminationReason.Exited, exited.Reason);
        Assert.Equal(42, exited.ExitCode);
        Assert.Equal(0, exited.Signal);
        Assert.Equal(42, exited.ShellExitCode);

        (_, ExitStatus signaled) = await RunAsync(Plain, "/bin/sh", "-c", "kill -TERM $$");
        Assert.Equal(TerminationReason.Signaled, signaled.Reason);
        Assert.Equal(15, signaled.Signal);
        Assert.Equal(-1, signaled.ExitCode);
        Assert.Equal(143, signaled.ShellExitCode);
    }

    [Fact]
    public async Task Signal_delivers_a_signal_and_Kill_reports_killed()
    {
        IsolationSpec spec = Plain.WithStandardOutput(Stdio.Pipe).Build();
        await using IsolatedProcess trapped = spec.Start("/bin/sh", "-c", "trap 'echo got-usr1; exit 3' USR1; echo ready; while :; do sleep 0.05; done");
        var reader = new StreamReader(trapped.StandardOutput!);
        Assert.Equal("ready", await reader.ReadLineAsync());
        Assert.True(trapped.Signal(10 /* SIGUSR1 */));
        Assert.Equal(3, (await trapped.WaitForExitAsync()).ExitCode);
        Assert.Equal("got-usr1", await reader.ReadLineAsync());
        Assert.False(trapped.Signal(10), "signalling an exited process reports false");

        await using IsolatedProcess sleeper = Plain.Build().Start("/bin/sleep", "60");
        Assert.True(sleeper.Kill());
        ExitStatus status = await sleeper.WaitForExitAsync();
        Assert.Equal(TerminationReason.Killed, status.Reason);
        Assert.Equal(9, status.Signal);
    }

    [Fact]
    public async Task Cancelling_a_wait_stops_waiting_but_not_the_process()
    {
        await using IsolatedProcess p = Plain.Build().Start("/bin/sleep", "60");
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => p.WaitForExitAsync(cts.Token));
        Assert.False(p.HasExited);
        Assert.True(p.Kill());
        Assert.Equal(TerminationReason.Killed, (await p.WaitForExitAsync()).Reason);
    }

    [Fact]
    public async Task A_timeout_kills_the_sandbox_and_says_so()
    {
        var clock = Stopwatch.StartNew();
        await using IsolatedProcess p = Plain.WithTimeout(TimeSpan.FromMilliseconds(300)).Build().Start("/bin/sleep", "60");
        ExitStatus status = await p.WaitForExitAsync();
        Assert.Equal(TerminationReason.TimedOut, status.Reason);
        Assert.Equal(9, status.Signal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task A_program_that_finishes_in_time_is_not_reported_as_timed_out()
    {
        await using IsolatedProcess p = Plain.WithTimeout(TimeSpan.FromSeconds(30)).Build().Start("/bin/true");
        Assert.Equal(TerminationReason.Exited, (await p.WaitForExitAsync()).Reason);
    }

    [Fact]
    public async Task A_new_session_makes_the_program_a_session_leader()
    {
        EnvironmentReport inherited = await TestHostRunner.ReportAsync(Plain);
        EnvironmentReport leader = await TestHostRunner.ReportAsync(Plain.WithNewSession());
        Assert.NotEqual(inherited.Pid, inherited.Sid);
        Assert.Equal(leader.Pid, leader.Sid);
    }

    [Fact]
    public async Task Disposing_a_running_sandbox_kills_it()
    {
        IsolatedProcess p = Plain.Build().Start("/bin/sleep", "60");
        int pid = p.Id;
        await p.DisposeAsync();
        Assert.True(p.HasExited);
        Assert.False(Directory.Exists($"/proc/{pid}") && File.ReadAllText($"/proc/{pid}/comm").Trim() == "sleep" && !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z"),
            "the sleep is gone");
    }

    [Fact]
    public async Task Resource_usage_is_reported_after_exit()
    {
        await using IsolatedProcess p = Plain.Build().Start("/bin/sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done");
        Assert.Null(p.ResourceUsage);
        await p.WaitForExitAsync();
        Assert.NotNull(p.ResourceUsage);
        Assert.True(p.ResourceUsage!.Value.UserTime + p.ResourceUsage.Value.SystemTime > TimeSpan.Zero);
    }

    [Fact]
    public async Task The_clone_fallback_without_clone3_works_too()
    {
        IsolationSpec spec = new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Pid | Namespaces.Mount)
            .MapCurrentUserToRoot().WithMounts(m => m.Proc()).WithStandardOutput(Stdio.Pipe).Build();
        spec.ForceCloneFallback = true;
        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "echo $$");
        Assert.Equal("1\n", await new StreamReader(p.StandardOutput!).ReadToEndAsync());
        Assert.True((await p.WaitForExitAsync()).Success);
    }

    [Fact]
    public async Task A_spec_can_start_many_sandboxes_concurrently()
    {
        IsolationSpec spec = new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Pid).MapCurrentUserToRoot().Build();
        ExitStatus[] statuses = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => Task.Run(async () =>
        {
            await using IsolatedProcess p = spec.Start("/bin/sh", "-c", $"exit {i}");
            return await p.WaitForExitAsync();
        })));
        Assert.Equal(Enumerable.Range(0, 16), statuses.Select(s => s.ExitCode));
    }
}
