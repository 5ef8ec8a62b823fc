using System.Diagnostics;
using System.Text;
using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>Output consumed line by line as it comes (ListenAsync), stdin written while reading, waiting and starting with a token (leak checks: run alone).</summary>
[Collection(LeakChecks.Name)]
public sealed class ListenAsyncTests
{
    private static readonly IsolationSpec Pid = new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Pid).MapCurrentUserToRoot().Build();

    [Fact]
    public async Task I_can_listen_to_output_and_error_line_by_line_and_get_the_exit()
    {
        var events = new List<SandboxEvent>();
        await foreach (SandboxEvent e in Pid.ListenAsync("/bin/sh", ["-c", "echo one; echo two >&2; printf 'three\\r\\nlast'; exit 4"]))
            events.Add(e);

        SandboxStarted started = Assert.IsType<SandboxStarted>(events[0]);
        Assert.True(started.ProcessId > 0);
        Assert.Equal(["one", "three", "last"], events.OfType<StandardOutputLine>().Select(l => l.Text));
        Assert.Equal(["two"], events.OfType<StandardErrorLine>().Select(l => l.Text));
        SandboxExited exited = Assert.IsType<SandboxExited>(events[^1]);
        Assert.Equal(4, exited.Status.ExitCode);
    }

    [Fact]
    public async Task Lines_arrive_while_the_program_still_runs()
    {
        var clock = Stopwatch.StartNew();
        TimeSpan firstLine = TimeSpan.Zero;
        await foreach (SandboxEvent e in Pid.ListenAsync("/bin/sh", ["-c", "echo early; sleep 2; echo late"]))
        {
            if (e is StandardOutputLine { Text: "early" })
                firstLine = clock.Elapsed;
        }
        Assert.InRange(firstLine, TimeSpan.FromTicks(1), TimeSpan.FromMilliseconds(1500));
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(2));
    }

    [Fact]
    public async Task I_can_write_stdin_while_reading_the_answers()
    {
        // An interactive exchange: each answer comes back before the next question is written.
        var answers = new List<string>();
        Stream? stdin = null;
        int asked = 0;
        await foreach (SandboxEvent e in Pid.ListenAsync("/bin/sh", ["-c", "while read q; do echo \"answer $q\"; done"]).WithCancellation(TestContext.Current.CancellationToken))
        {
            switch (e)
            {
                case SandboxStarted s:
                    stdin = s.StandardInput!;
                    await stdin.WriteAsync(Encoding.UTF8.GetBytes($"{asked++}\n"));
                    await stdin.FlushAsync();
                    break;
                case StandardOutputLine line:
                    answers.Add(line.Text);
                    if (asked < 3)
                    {
                        await stdin!.WriteAsync(Encoding.UTF8.GetBytes($"{asked++}\n"));
                        await stdin.FlushAsync();
                    }
                    else
                        await stdin!.DisposeAsync(); // end of file: the loop ends
                    break;
            }
        }
        Assert.Equal(["answer 0", "answer 1", "answer 2"], answers);
    }

    [Fact]
    public async Task Stopping_the_enumeration_early_kills_the_sandbox()
    {
        await foreach (SandboxEvent e in Pid.ListenAsync("/bin/sh", ["-c", "sleep 60 & while :; do echo tick; sleep 0.05; done"]))
        {
            if (e is StandardOutputLine)
                break;
        }
        Assert.Empty(Host.Leftovers());
    }

    [Fact]
    public async Task Cancelling_a_listen_kills_the_sandbox_and_throws()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (SandboxEvent _ in Pid.ListenAsync("/bin/sleep", ["60"], cancellationToken: cts.Token))
            {
            }
        });
        Assert.Empty(Host.Leftovers());
    }

    [Fact]
    public async Task A_process_made_with_Stdio_Pipe_exposes_its_streams()
    {
        IsolationSpec spec = new NamespaceBuilder().WithStandardInput(Stdio.Pipe).WithStandardOutput(Stdio.Pipe).WithStandardError(Stdio.Pipe).Build();
        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "cat; echo e >&2");

        Assert.True(p.StandardInput!.CanWrite);
        await p.StandardInput.WriteAsync("piped"u8.ToArray());
        await p.StandardInput.DisposeAsync();
        Assert.Equal("piped", await new StreamReader(p.StandardOutput!).ReadToEndAsync());
        Assert.Equal("e\n", await new StreamReader(p.StandardError!).ReadToEndAsync());
        Assert.True((await p.WaitForExitAsync()).Success);
    }

    [Fact]
    public void Start_with_a_cancelled_token_starts_nothing_and_with_a_live_one_starts()
    {
        using var cts = new CancellationTokenSource();
        using (IsolatedProcess p = Pid.Start("/bin/true", [], cts.Token))
            Assert.True(p.WaitForExit().Success);
        cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => Pid.Start("/bin/true", [], cts.Token));
        Assert.Empty(Host.Leftovers());
    }
}
