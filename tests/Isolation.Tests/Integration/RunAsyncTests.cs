using System.Diagnostics;
using System.Text;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>The one-call run (IsolationSpec.RunAsync): output captured concurrently, capped, input fed, cancellation and timeouts (leak checks: run alone).</summary>
[Collection(LeakChecks.Name)]
public sealed class RunAsyncTests
{
    private static readonly IsolationSpec Plain = new NamespaceBuilder().Build();

    /// <summary>The contract's code runner: the untrusted preset with a timeout and explicit limits.</summary>
    private static IsolationSpec Runner(TimeSpan? timeout = null, long memory = 64L << 20, long pids = 32) =>
        NamespaceBuilder.ForUntrustedCode()
            .WithTimeout(timeout ?? TimeSpan.FromSeconds(10))
            .WithCgroup(c => c.MemoryMax(memory).PidsMax(pids))
            .Build();

    [Fact]
    public async Task I_can_run_a_script_and_get_its_exit_code_output_and_error()
    {
        SandboxResult r = await Plain.RunAsync("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"]);

        Assert.Equal(TerminationReason.Exited, r.Status.Reason);
        Assert.Equal(3, r.Status.ExitCode);
        Assert.Equal("out\n", r.StandardOutput);
        Assert.Equal("err\n", r.StandardError);
        Assert.False(r.OutputTruncated);
        Assert.True(r.ResourceUsage.UserTime + r.ResourceUsage.SystemTime >= TimeSpan.Zero);
    }

    [Fact]
    public async Task The_contract_one_liner_runs_an_untrusted_snippet_with_input()
    {
        CgroupHost.Require("memory");
        CgroupHost.Require("pids");
        SandboxResult r = await Runner().RunAsync("/bin/sh", ["-c", "read a; echo \"got $a\"; id -u"], standardInput: "hello\n");

        Assert.True(r.Status.Success, r.ToString() + r.StandardError);
        Assert.Equal("got hello\n0\n", r.StandardOutput);
        Assert.NotNull(r.CgroupStats);
        Assert.Empty(CgroupHost.LeftOver());
    }

    [Fact]
    public async Task Ten_megabytes_on_each_stream_written_interleaved_never_deadlock()
    {
        // Each iteration writes 64 KiB to stdout then to stderr: a reader that drained one stream at a time would
        // leave the program blocked on the other's full pipe.
        const string script = "head -c 65536 /dev/zero > /tmp/chunk 2>/dev/null || true; i=0; while [ $i -lt 160 ]; do cat /tmp/chunk; cat /tmp/chunk >&2; i=$((i+1)); done";
        IsolationSpec spec = new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Mount).MapCurrentUserToRoot()
            .WithMounts(m => m.Tmpfs("/tmp")).Build();

        SandboxResult r = await spec.RunAsync("/bin/sh", ["-c", script]).WaitAsync(TimeSpan.FromSeconds(60));

        Assert.True(r.Status.Success, r.ToString());
        Assert.Equal(160 * 65536, r.StandardOutputBytes.Length);
        Assert.Equal(160 * 65536, r.StandardErrorBytes.Length);
        Assert.False(r.OutputTruncated);
    }

    [Fact]
    public async Task Output_past_the_cap_is_read_and_discarded_and_the_run_says_so()
    {
        // 8 MiB through a 1 MiB cap: the program must still finish (the rest is drained, not left in a full pipe).
        SandboxResult r = await Plain.RunAsync("/bin/sh", ["-c", "head -c 8388608 /dev/zero; echo done >&2"], new RunOptions { MaxOutputBytes = 1 << 20 })
            .WaitAsync(TimeSpan.FromSeconds(60));

        Assert.True(r.Status.Success);
        Assert.Equal(1 << 20, r.StandardOutputBytes.Length);
        Assert.Equal("done\n", r.StandardError);
        Assert.True(r.OutputTruncated);
    }

    [Fact]
    public void The_default_output_cap_is_at_least_16_MiB() =>
        Assert.True(new RunOptions().MaxOutputBytes >= 16L << 20);

    [Fact]
    public async Task Bytes_and_streams_can_be_the_input_and_the_output()
    {
        byte[] input = [.. Enumerable.Range(0, 3 << 20).Select(i => (byte)(i * 7))];
        using var output = new MemoryStream();

        SandboxResult r = await Plain.RunAsync("/bin/cat", [], new RunOptions { StandardInputBytes = input, StandardOutputStream = output });

        Assert.True(r.Status.Success);
        Assert.Equal(input, output.ToArray());
        Assert.Equal(0, r.StandardOutputBytes.Length);

        using var source = new MemoryStream(Encoding.UTF8.GetBytes("from a stream"));
        SandboxResult fromStream = await Plain.RunAsync("/bin/cat", [], new RunOptions { StandardInputStream = source });
        Assert.Equal("from a stream", fromStream.StandardOutput);
    }

    [Fact]
    public async Task Without_input_standard_input_is_empty()
    {
        SandboxResult r = await Plain.RunAsync("/bin/sh", ["-c", "wc -c"]);
        Assert.Equal("0", r.StandardOutput.Trim());
    }

    [Fact]
    public async Task A_program_that_never_reads_its_input_still_ends()
    {
        SandboxResult r = await Plain.RunAsync("/bin/true", [], new RunOptions { StandardInputBytes = new byte[4 << 20] }).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(r.Status.Success);
    }

    [Fact]
    public async Task The_timeout_is_a_status_reason_not_an_exception()
    {
        IsolationSpec spec = new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Pid).MapCurrentUserToRoot()
            .WithTimeout(TimeSpan.FromMilliseconds(300)).Build();

        SandboxResult r = await spec.RunAsync("/bin/sh", ["-c", "echo before; sleep 30"]).WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(TerminationReason.TimedOut, r.Status.Reason);
        Assert.Equal("before\n", r.StandardOutput);
    }

    [Fact]
    public async Task A_per_run_timeout_overrides_the_specs()
    {
        SandboxResult r = await Plain.RunAsync("/bin/sleep", ["30"], new RunOptions { Timeout = TimeSpan.FromMilliseconds(200) }).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(TerminationReason.TimedOut, r.Status.Reason);
    }

    [Fact]
    public async Task Cancelling_kills_the_whole_sandbox_and_throws_once_it_is_gone()
    {
        // A PID namespace and a background child that would outlive a kill of the program alone.
        IsolationSpec spec = new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Pid).MapCurrentUserToRoot().Build();
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
        var clock = Stopwatch.StartNew();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => spec.RunAsync("/bin/sh", ["-c", "sleep 60 & echo started; wait"], cancellationToken: cts.Token));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed}");
        Assert.Empty(Host.Leftovers());
    }

    [Fact]
    public async Task Cancelling_a_run_with_a_cgroup_removes_the_cgroup()
    {
        CgroupHost.Require("pids");
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.PidsMax(16)).Build();
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(400));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => spec.RunAsync("/bin/sh", ["-c", "sleep 60 & sleep 60 & wait"], cancellationToken: cts.Token));

        Assert.Empty(CgroupHost.LeftOver());
        Assert.Empty(Host.Leftovers());
    }

    [Fact]
    public async Task An_already_cancelled_token_starts_nothing()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Plain.RunAsync("/bin/true", [], cancellationToken: cts.Token));
    }

    [Fact]
    public async Task Environment_working_directory_and_files_change_per_run_without_a_new_build()
    {
        IsolationSpec spec = NamespaceBuilder.ForUntrustedCode().WithCgroup(c => c.BestEffort()).Build();
        var options = new RunOptions
        {
            Environment = new Dictionary<string, string?> { ["JOB"] = "42", ["LANG"] = null },
            WorkingDirectory = "/tmp",
            Files = new Dictionary<string, byte[]> { ["/tmp/main.sh"] = Encoding.UTF8.GetBytes("echo \"job $JOB in $(pwd) lang=${LANG-unset}\"") },
        };

        SandboxResult r = await spec.RunAsync("/bin/sh", ["-c", ". ./main.sh; stat -c %a main.sh; echo x > main.sh || echo read-only"], options);
        SandboxResult plain = await spec.RunAsync("/bin/sh", ["-c", "echo \"job ${JOB-none} in $(pwd)\"; ls /tmp"]);

        Assert.Equal("job 42 in /tmp lang=unset\n444\n", r.StandardOutput.Replace("read-only\n", ""));
        Assert.Equal("job none in /\n", plain.StandardOutput);
    }

    [Fact]
    public async Task Bad_run_options_are_refused_before_anything_starts()
    {
        await Assert.ThrowsAsync<ArgumentException>(() => Plain.RunAsync("/bin/true", [], new RunOptions { StandardInput = "a", StandardInputBytes = new byte[1] }));
        await Assert.ThrowsAsync<ArgumentException>(() => Plain.RunAsync("/bin/true", [], new RunOptions { WorkingDirectory = "relative" }));
        ArgumentException files = await Assert.ThrowsAsync<ArgumentException>(() => Plain.RunAsync("/bin/true", [], new RunOptions { Files = new Dictionary<string, byte[]> { ["/x"] = [] } }));
        Assert.Contains("Namespaces.Mount", files.Message);
        Assert.Empty(Host.Leftovers());
    }

    [Fact]
    public async Task A_failed_setup_throws_at_once_and_leaves_nothing()
    {
        SandboxSetupException e = await Assert.ThrowsAsync<SandboxSetupException>(() => Plain.RunAsync("/no/such/program", []));
        Assert.Equal(SetupStep.Exec, e.Step);
        Assert.Empty(Host.Leftovers());
    }

    [Fact]
    public async Task OOM_and_the_pids_limit_are_status_reasons()
    {
        CgroupHost.Require("memory");
        CgroupHost.Require("pids");
        Assert.SkipUnless(File.ReadAllLines("/proc/swaps").Length <= 1, "swap is on: the hog would swap instead of being OOM-killed");

        SandboxResult oom = await Runner(memory: 32L << 20).RunAsync("/usr/bin/tail", ["-n", "1", "/dev/zero"]).WaitAsync(TimeSpan.FromSeconds(60));
        SandboxResult storm = await Runner(pids: 8).RunAsync("/bin/sh", ["-c", "i=0; while [ $i -lt 50 ]; do sleep 30 & i=$((i+1)); done; wait"]).WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(TerminationReason.OutOfMemory, oom.Status.Reason);
        Assert.Equal(TerminationReason.PidsLimit, storm.Status.Reason);
        Assert.Empty(CgroupHost.LeftOver());
    }

    [Fact]
    public async Task Fifty_concurrent_runs_each_get_their_own_output()
    {
        IsolationSpec spec = new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Pid).MapCurrentUserToRoot().Build();

        SandboxResult[] results = await Task.WhenAll(Enumerable.Range(0, 50).Select(i =>
            spec.RunAsync("/bin/sh", ["-c", $"head -c 200000 /dev/zero | tr '\\0' x; echo; echo {i} >&2; read l; echo \"$l\""], standardInput: $"in-{i}\n")))
            .WaitAsync(TimeSpan.FromSeconds(120));

        for (int i = 0; i < 50; i++)
        {
            Assert.True(results[i].Status.Success, results[i].ToString());
            Assert.Equal(200000 + 1 + $"in-{i}\n".Length, results[i].StandardOutput.Length);
            Assert.EndsWith($"in-{i}\n", results[i].StandardOutput);
            Assert.Equal($"{i}\n", results[i].StandardError);
        }
        Assert.Empty(Host.Leftovers());
    }
}

/// <summary>RunAsync by an unprivileged caller (uid 65534 through setpriv).</summary>
public sealed class RunAsyncUnprivilegedTests
{
    [Fact]
    public void An_unprivileged_caller_runs_the_untrusted_preset_and_gets_output_and_input()
    {
        Host.RequireUnprivilegedRunner();
        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged("--run-async", "--untrusted", "--cgroup-best-effort",
            "--", "/bin/sh", "-c", "read l; echo \"$l $(id -u)\"; echo err >&2; exit 5");

        Assert.True(outcome.Started, outcome.Error?.Message);
        Assert.Equal("input 0\n", outcome.Stdout);
        Assert.Equal("err\n", outcome.Stderr);
        Assert.Equal(5, outcome.ExitCode);
    }

    [Fact]
    public void Without_cgroup_delegation_explicit_limits_make_an_unprivileged_run_refuse()
    {
        Host.RequireUnprivilegedRunner();
        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged("--run-async", "--ns", "user,pid", "--map-root", "--memory-max", "67108864", "--pids-max", "32",
            "--", "/bin/true");

        Assert.False(outcome.Started);
        Assert.Equal("Cgroup", outcome.Error!.Step);
        Assert.Contains("Delegate=yes", outcome.Error.Hint);
        Assert.Equal(outcome.FdsBefore, outcome.FdsAfter);
    }
}
