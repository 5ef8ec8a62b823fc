using System.Diagnostics;
using System.Text.Json;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>
/// The host under fault conditions: it is PID 1, it inherited SIGCHLD ignored, it closed its own stdio, it is
/// SIGKILLed in the middle of starts, it feeds a file through a pipe, it signals a disposed sandbox.
/// Each host is a separate process (tests/Isolation.TestHost, HostFaults.cs) so the fault cannot touch the
/// test runner. Sandboxes are found by what the kernel says (argv markers, parentage under a subreaper, kcmp,
/// prctl), never assumed to be the host's direct children (DESIGN.md §2: they are its spawn helper's).
/// These run alone: they load the machine (120 starts, 16-thread storms) and scan its whole process table.
/// </summary>
[Collection(LeakChecks.Name)]
public sealed class HostFaultTests
{
    private static readonly TimeSpan HostTimeout = TimeSpan.FromSeconds(45);
    private static readonly TimeSpan GraceAfterKill = TimeSpan.FromSeconds(5);

    // --- 1. Exit statuses (the runtime reaps with waitpid(-1) when it is PID 1 or SIGCHLD was ignored) ---

    [Fact]
    public void A_host_that_is_PID_1_gets_every_exit_status_while_Process_Start_runs_alongside()
    {
        Host.RequireRoot();
        Assert.SkipUnless(File.Exists("/usr/bin/unshare"), "needs unshare (util-linux) to make the host PID 1");

        StatusesOutcome outcome = FaultHost.Run(HostFaultJson.Default.StatusesOutcome, HostTimeout,
            ["/usr/bin/unshare", "--pid", "--fork", "--mount-proc", "--kill-child"], "statuses", "--count", "120", "--process-start");

        Assert.Equal(1, outcome.HostPid); // the fault holds: the host is PID 1 of its namespace
        Assert.True(outcome.ProcessStarts > 0, "the Process.Start loop never ran, so the runtime never reaped for it");
        Assert.True(outcome.Correct == 120, Describe(outcome));
    }

    [Fact]
    public void A_host_started_with_SIGCHLD_ignored_gets_every_exit_status()
    {
        Host.RequireRoot();
        string? python = new[] { "/usr/bin/python3", "/usr/local/bin/python3" }.FirstOrDefault(File.Exists);
        Assert.SkipUnless(python is not null, "needs python3 in /usr/bin or /usr/local/bin to exec the host with SIGCHLD ignored");

        // signal(7): a disposition of SIG_IGN survives execve, so the host starts with SIGCHLD ignored.
        StatusesOutcome outcome = FaultHost.Run(HostFaultJson.Default.StatusesOutcome, HostTimeout,
            [python!, "-c", "import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])"],
            "statuses", "--count", "50");

        Assert.True(outcome.SigchldIgnoredAtStart, $"the wrapper did not leave SIGCHLD ignored: {outcome.SignalsAtStart}");
        Assert.True(outcome.Correct == 50, Describe(outcome));
    }

    private static string Describe(StatusesOutcome o) =>
        $"{o.Correct} of {o.Count} sandboxes reported their exit status ({o.Started} started, host pid {o.HostPid}, "
        + $"{o.ProcessStarts} Process.Start runs); errors: {string.Join("; ", o.Errors.Select(e => $"{e.Value} x {e.Key}"))}";

    // --- 3. Credential changes in a child must not act on the host ---

    [Fact]
    public void Starting_sandboxes_that_change_credentials_never_flips_the_host_dumpable_flag()
    {
        Host.RequireRoot();

        DumpableOutcome outcome = FaultHost.Run(HostFaultJson.Default.DumpableOutcome, HostTimeout, [], "dumpable", "--count", "100");

        var failures = new List<string>();
        foreach (DumpablePhase phase in outcome.Phases)
        {
            AssertPhaseRan(phase);
            if (phase.UnexpectedSamples > 0 || phase.Final != phase.Expected)
                failures.Add($"{phase.Name}: the host's dumpable flag was {phase.Expected}, then read otherwise in {phase.UnexpectedSamples} of {phase.Samples} samples, "
                    + $"ending at {phase.Final}; flips: {string.Join(", ", phase.Flips.Select(f => $"{f.From}->{f.To} at {f.AtMilliseconds:F0} ms"))}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void No_child_ever_shares_the_host_memory()
    {
        Host.RequireRoot();

        DumpableOutcome outcome = FaultHost.Run(HostFaultJson.Default.DumpableOutcome, HostTimeout, [], "dumpable", "--count", "100");

        Assert.SkipUnless(outcome.KcmpAvailable, "kcmp(2) is not available here (CONFIG_KCMP), so shared memory cannot be seen");
        var failures = new List<string>();
        foreach (DumpablePhase phase in outcome.Phases)
        {
            AssertPhaseRan(phase);
            Assert.True(phase.KcmpChecks > 0, $"{phase.Name}: the sampler compared no process");
            if (phase.SharedMemory.Count > 0)
                failures.Add($"{phase.Name}: {phase.SharedMemory.Count} processes shared the host's mm (kcmp KCMP_VM == 0; each read just after the match):\n  {string.Join("\n  ", phase.SharedMemory)}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    private static void AssertPhaseRan(DumpablePhase phase)
    {
        Assert.True(phase.Started == 100, $"{phase.Name}: {phase.Started} of 100 sandboxes started; errors: {string.Join("; ", phase.ErrorExamples)}");
        Assert.True(phase.Samples > 100, $"{phase.Name}: the sampler took only {phase.Samples} samples");
    }

    // --- 3 and §3a. A killed host takes its sandboxes with it ---

    [Fact]
    public void A_killed_host_takes_its_die_with_parent_sandboxes_with_it() =>
        AssertKilledHostLeavesNoSandbox("--die-with-parent");

    [Fact]
    public void A_killed_host_takes_its_die_with_parent_sandboxes_with_it_when_they_run_as_another_uid() =>
        AssertKilledHostLeavesNoSandbox("--run-as", "--die-with-parent");

    [Fact]
    public void A_killed_host_takes_every_sandbox_it_owns_with_it() =>
        AssertKilledHostLeavesNoSandbox();

    private static void AssertKilledHostLeavesNoSandbox(params string[] options)
    {
        Host.RequireRoot();
        string marker = NewMarker();
        using FaultHost launcher = FaultHost.Start(Subreaper, ["hold", "--marker", marker, .. options]);
        try
        {
            // Arrange: the sandboxes run, with the marker as their argv[0].
            HoldOutcome held = JsonSerializer.Deserialize(launcher.ReadLine(HostTimeout), HostFaultJson.Default.HoldOutcome)!;
            Assert.Empty(held.Errors);
            List<ProcessEntry> running = ProcessTable.WithMarker(marker, launcher.Pid, held.HostPid);
            foreach (HeldSandbox sandbox in held.Sandboxes)
                Assert.True(running.Any(p => p.Pid == sandbox.Pid), $"{sandbox.Kind} (pid {sandbox.Pid}) is not running with the marker");

            // Act
            KillHost(held.HostPid);
            List<ProcessEntry> survivors = WaitUntilNone(() => Leftovers(marker, launcher.Pid), GraceAfterKill);

            // Assert
            Assert.True(survivors.Count == 0, $"{GraceAfterKill.TotalSeconds} s after SIGKILL of the host, still running:\n  "
                + string.Join("\n  ", survivors.Select(s => $"{held.Sandboxes.FirstOrDefault(h => h.Pid == s.Pid)?.Kind ?? "not a reported sandbox"}: {s}")));
        }
        finally
        {
            KillAll(Leftovers(marker, launcher.Pid));
        }
    }

    // --- 2. A host killed in the middle of starts ---

    [Fact]
    public void A_host_killed_in_the_middle_of_16_concurrent_starts_leaves_no_process_behind() =>
        AssertStormKillLeavesNothing();

    [Fact]
    public void A_host_killed_in_the_middle_of_16_concurrent_die_with_parent_starts_leaves_no_process_behind() =>
        AssertStormKillLeavesNothing("--die-with-parent");

    private static void AssertStormKillLeavesNothing(params string[] options)
    {
        Host.RequireRoot();
        var random = new Random();
        for (int round = 1; round <= 5; round++)
        {
            string marker = NewMarker();
            using FaultHost launcher = FaultHost.Start(Subreaper, ["storm", "--marker", marker, "--threads", "16", .. options]);
            try
            {
                // Arrange: the storm is on.
                StormReady storm = JsonSerializer.Deserialize(launcher.ReadLine(HostTimeout), HostFaultJson.Default.StormReady)!;
                TimeSpan killAt = TimeSpan.FromMilliseconds(random.Next(200, 800));
                Thread.Sleep(killAt);

                // Act
                KillHost(storm.HostPid);
                List<ProcessEntry> left = WaitUntilNone(() => Leftovers(marker, launcher.Pid), GraceAfterKill);

                // Assert
                Assert.True(left.Count == 0, $"round {round}: {GraceAfterKill.TotalSeconds} s after SIGKILL of the host {killAt.TotalMilliseconds:F0} ms into the storm, "
                    + $"{left.Count} processes are left ({Running(left, "sleep")} running sleep, {left.Count - Running(left, "sleep")} not yet exec'd), e.g.:\n  {string.Join("\n  ", left.Take(10))}");
            }
            finally
            {
                KillAll(Leftovers(marker, launcher.Pid));
            }
        }
    }

    /// <summary>
    /// The host runs under a subreaper (isolation-testhost subreaper): what it leaves behind when killed is
    /// reparented there, so "below the launcher" finds a leftover even before exec, when it has no marker yet.
    /// </summary>
    private static readonly string[] Subreaper = [TestHostRunner.Executable, "subreaper"];

    /// <summary>Live processes with the marker in argv, and live processes below the launcher (the host itself once it is gone: it is not live).</summary>
    private static List<ProcessEntry> Leftovers(string marker, int launcherPid) =>
        ProcessTable.WithMarker(marker, launcherPid)
            .Concat(ProcessTable.Descendants(launcherPid).Where(p => p.State != 'Z'))
            .DistinctBy(p => p.Pid).ToList();

    private static int Running(List<ProcessEntry> processes, string program) =>
        processes.Count(p => Path.GetFileName(p.Executable) == program);

    /// <summary>SIGKILL to the host alone, not its tree: the fault under test. Returns once it is no longer running.</summary>
    private static void KillHost(int pid)
    {
        ProcessEntry host = ProcessTable.Read(pid) ?? throw new Xunit.Sdk.XunitException($"the host (pid {pid}) was gone before the kill");
        ProcessTable.Kill(host);
        Assert.True(SpinWait.SpinUntil(() => !ProcessTable.IsAlive(host), TimeSpan.FromSeconds(10)), $"the host (pid {pid}) survived SIGKILL");
    }

    // --- 4. A host that closed its own stdio ---

    [Fact]
    public void A_host_that_closed_its_stdio_starts_sandboxes_with_an_init()
    {
        Host.RequireRoot();
        string file = Path.Combine(Path.GetTempPath(), $"isolation-closed-stdio-{Guid.NewGuid():N}.json");
        try
        {
            using (FaultHost host = FaultHost.Start([], "closed-stdio", "--out", file))
                host.WaitForExit(HostTimeout);
            ClosedStdioOutcome outcome = JsonSerializer.Deserialize(File.ReadAllText(file), HostFaultJson.Default.ClosedStdioOutcome)!;

            Assert.True(outcome.WarmUp is { Started: true, ExitCode: 3 }, $"the warm-up start, stdio still open, failed: {outcome.WarmUp}");
            Assert.True(outcome.StdioClosed, "the host's fds 0..2 were still open after close(2)");
            List<SandboxOutcome> failed = outcome.Sandboxes.Where(s => !s.Started || s.Reason != nameof(TerminationReason.Exited) || s.ExitCode != 3).ToList();
            Assert.True(failed.Count == 0, $"with fds 0..2 closed ({string.Join(", ", outcome.LowDescriptors)} after the starts):\n  {string.Join("\n  ", failed)}");
        }
        finally
        {
            File.Delete(file);
        }
    }

    // --- 2. FileFromDescriptor fed by a pipe ---

    [Fact]
    public void A_file_from_a_pipe_arrives_when_its_writer_closes_after_the_start_began()
    {
        Host.RequireRoot();

        PipeFileOutcome outcome = FaultHost.Run(HostFaultJson.Default.PipeFileOutcome, HostTimeout, [], "pipe-file", "--mode", "alone", "--timeout-ms", "10000");

        AssertReadItsPipe(outcome, "A", "from A's pipe");
    }

    [Fact]
    public void A_file_from_a_pipe_arrives_while_another_start_still_waits_for_its_own_pipe()
    {
        Host.RequireRoot();

        PipeFileOutcome outcome = FaultHost.Run(HostFaultJson.Default.PipeFileOutcome, HostTimeout, [], "pipe-file", "--mode", "concurrent", "--timeout-ms", "10000");

        AssertReadItsPipe(outcome, "B", "from B's pipe");
        AssertReadItsPipe(outcome, "A", "from A's pipe");
    }

    private static void AssertReadItsPipe(PipeFileOutcome outcome, string name, string expected)
    {
        SandboxOutcome sandbox = outcome.Sandboxes.Single(s => s.Name == name);
        string leftovers = outcome.KilledLeftovers.Count == 0 ? "" : $"; the host then killed {string.Join("; ", outcome.KilledLeftovers)}";
        Assert.True(sandbox is { Started: true, Error: null }, $"{sandbox}{leftovers}");
        Assert.Equal(expected, sandbox.Output);
    }

    // --- 5. A disposed sandbox's descriptor number goes to the next one ---

    [Fact]
    public void Signal_after_Dispose_never_reaches_the_sandbox_that_got_the_same_descriptor()
    {
        // No namespaces: sleep is an ordinary process that SIGKILL ends, and no root is needed.
        IsolationSpec spec = new NamespaceBuilder()
            .WithStandardInput(Stdio.Null).WithStandardOutput(Stdio.Null).WithStandardError(Stdio.Null).Build();
        spec.Start("/bin/true").Dispose(); // warm-up: descriptors the library keeps for good (exit watcher) are open now

        // Arrange: A is disposed, and B gets the descriptor number A's pidfd had (a few tries: a start
        // opens short-lived descriptors too, so the lowest free number is not always the pidfd's).
        (IsolatedProcess A, IsolatedProcess B)? pair = null;
        for (int attempt = 0; attempt < 5 && pair is null; attempt++)
        {
            IsolatedProcess a = spec.Start("/bin/sleep", "1000");
            int? aPidfd = PidfdOf(a.Id);
            Assert.True(aPidfd is not null, "found no pidfd of the sandbox in /proc/self/fdinfo");
            a.Dispose();
            // The library lets go of A's pidfd once it is disposed and reaped (the exit watcher may be last).
            Assert.True(SpinWait.SpinUntil(() => !File.Exists($"/proc/self/fd/{aPidfd}"), TimeSpan.FromSeconds(5)), $"fd {aPidfd} (A's pidfd) stayed open after Dispose");
            IsolatedProcess b = spec.Start("/bin/sleep", "1000");
            if (PidfdOf(b.Id) == aPidfd)
                pair = (a, b);
            else
                b.Dispose();
        }
        Assert.SkipUnless(pair is not null, "in 5 tries no sandbox got the descriptor number of the one disposed before it");
        (IsolatedProcess disposed, IsolatedProcess running) = pair!.Value;
        try
        {
            ProcessEntry runningProcess = ProcessTable.Read(running.Id)!;

            // Act
            bool signalled = Try(() => disposed.Signal(9));
            bool killed = Try(disposed.Kill);

            // Assert
            Assert.False(signalled, "Signal(SIGKILL) on a disposed sandbox said it delivered the signal");
            Assert.False(killed, "Kill() on a disposed sandbox said it delivered SIGKILL");
            Assert.False(running.WaitForExit(TimeSpan.FromMilliseconds(500)), $"B, which got A's descriptor number, exited: {(running.HasExited ? running.WaitForExit().ToString() : "")}");
            Assert.True(ProcessTable.IsAlive(runningProcess), "B is no longer running");
        }
        finally
        {
            running.Dispose();
        }
    }

    /// <summary>What a signalling call on a disposed sandbox returned; throwing ObjectDisposedException counts as false.</summary>
    private static bool Try(Func<bool> signal)
    {
        try
        {
            return signal();
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>The number of this process's pidfd for <paramref name="pid"/> (its fdinfo has "Pid: N"), if any.</summary>
    private static int? PidfdOf(int pid)
    {
        foreach (string info in Directory.GetFiles("/proc/self/fdinfo"))
        {
            try
            {
                if (File.ReadLines(info).Any(l => l.StartsWith("Pid:", StringComparison.Ordinal) && l["Pid:".Length..].Trim() == pid.ToString()))
                    return int.Parse(Path.GetFileName(info));
            }
            catch (IOException)
            {
                // closed while we read
            }
        }
        return null;
    }

    // --- helpers ---

    private static string NewMarker() => $"isolation-hostfault-{Guid.NewGuid():N}";

    /// <summary>Polls <paramref name="find"/> until it finds nothing or <paramref name="within"/> has passed; returns the last finding.</summary>
    private static List<ProcessEntry> WaitUntilNone(Func<List<ProcessEntry>> find, TimeSpan within)
    {
        var clock = Stopwatch.StartNew();
        List<ProcessEntry> found;
        while ((found = find()).Count > 0 && clock.Elapsed < within)
            Thread.Sleep(100);
        return found;
    }

    private static void KillAll(IEnumerable<ProcessEntry> processes)
    {
        List<ProcessEntry> list = processes.ToList();
        foreach (ProcessEntry p in list)
            ProcessTable.Kill(p);
        WaitUntilNone(() => list.Where(ProcessTable.IsAlive).ToList(), TimeSpan.FromSeconds(5));
    }
}
