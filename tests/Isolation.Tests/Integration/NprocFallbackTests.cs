using Isolation.Cgroups;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>
/// The untrusted preset without a cgroup: RLIMIT_NPROC stands for pids.max (CgroupBuilder.FallBackToRlimit), and
/// IsolatedProcess.Limits says what holds. Fork storms run for real, as root (an id block of its own) and as 65534.
/// </summary>
public sealed class NprocFallbackTests
{
    private const string Python = "/usr/bin/python3";

    // Forks children that sleep until the limit refuses one (or `cap` is reached); prints "forked errno".
    internal static string Storm(int cap, int hold = 0) => $$"""
        import os, sys, time
        n, err = 0, 0
        while n < {{cap}}:
            try:
                pid = os.fork()
            except OSError as e:
                err = e.errno
                break
            if pid == 0:
                os.close(1)  # the reader of our output waits for no child
                os.close(2)
                time.sleep(60)
                os._exit(0)
            n += 1
        print(n, err, flush=True)
        time.sleep({{hold}})
        """;

    private static void RequirePython() => Assert.SkipUnless(File.Exists(Python), $"the fork storms are written in Python and {Python} is missing");

    private static async Task<(int Forked, int Errno, SandboxLimits Limits)> StormAsync(IsolationSpec spec, int cap)
    {
        await using IsolatedProcess p = spec.Start(Python, "-c", Storm(cap));
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
        ExitStatus status = await p.WaitForExitAsync();
        Assert.True(status.Success, $"{status}: {output}");
        int[] numbers = output.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
        return (numbers[0], numbers[1], p.Limits);
    }

    private static NamespaceBuilder PresetWithoutCgroup(bool fallback = true) =>
        NamespaceBuilder.ForUntrustedCode().WithCgroup(c => c.BestEffort().FallBackToRlimit(fallback)).WithStandardOutput(Stdio.Pipe);

    [Fact]
    public void This_kernel_counts_RLIMIT_NPROC_per_user_namespace()
    {
        (NprocScope scope, string detail) = NprocProbe.Result;

        Assert.SkipWhen(scope == NprocScope.HostUid, $"this kernel counts RLIMIT_NPROC per host uid: {detail}");
        Assert.Equal(NprocScope.Namespace, scope);
    }

    [Fact]
    public async Task As_root_a_fork_storm_in_the_preset_without_a_cgroup_stops_at_RLIMIT_NPROC_per_sandbox()
    {
        Host.RequireRoot();
        RequirePython();
        Assert.SkipUnless(NprocProbe.Result.Scope == NprocScope.Namespace, NprocProbe.Result.Detail);
        IsolationSpec spec = PresetWithoutCgroup().Build();
        spec.CgroupDriverForTests = new NoCgroupDriver(); // best effort failing: no cgroup for this spec
        IsolationSpec control = PresetWithoutCgroup(fallback: false).Build();
        control.CgroupDriverForTests = new NoCgroupDriver();

        // A sandbox of the same spec (the same id block, so the same host uid) holds 200 tasks meanwhile: they
        // are not counted against the next one, which has a namespace of its own.
        await using IsolatedProcess holder = spec.Start(Python, "-c", Storm(200, hold: 60));
        string held = await new StreamReader(holder.StandardOutput!).ReadLineAsync() ?? "";
        (int forked, int errno, SandboxLimits limits) = await StormAsync(spec, cap: 400);
        (int unbounded, int controlErrno, SandboxLimits controlLimits) = await StormAsync(control, cap: 400);

        Assert.Equal("200 0", held);
        Assert.Equal(UntrustedCodePresetPids - 1, forked); // the storm's own process is the 256th
        Assert.Equal(11 /* EAGAIN */, errno);
        Assert.Equal(new LimitState(LimitMechanism.Rlimit, UntrustedCodePresetPids, limits.Pids.Setting), limits.Pids);
        Assert.Contains("RLIMIT_NPROC 256", limits.Pids.Setting);
        Assert.NotNull(limits.CgroupError);
        Assert.Equal(LimitMechanism.None, limits.Memory.Mechanism); // no RLIMIT_AS by default
        Assert.Equal((400, 0), (unbounded, controlErrno)); // without the fallback nothing stopped it
        Assert.Equal(LimitMechanism.None, controlLimits.Pids.Mechanism);
    }

    [Fact]
    public void As_uid_65534_without_delegation_a_fork_storm_in_the_preset_stops_at_RLIMIT_NPROC()
    {
        CgroupHost.Require();
        Host.RequireUnprivilegedRunner(); // uid 65534 has no cgroup delegation here (CgroupTests rely on it too)
        RequirePython();

        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged("--untrusted", "--", Python, "-c", Storm(400));

        Assert.True(outcome.Started, outcome.Error?.Message ?? outcome.ArgumentError);
        Assert.NotNull(outcome.CgroupError);
        Assert.True(outcome.ExitCode == 0, outcome.Stderr);
        Assert.True(outcome.Limits!.Mechanism["pids"] == "Rlimit", outcome.Limits.Text);
        Assert.Equal($"{UntrustedCodePresetPids - 1} 11\n", outcome.Stdout);
        Assert.Equal("Rlimit", outcome.Limits!.Mechanism["pids"]);
        Assert.Equal(UntrustedCodePresetPids, outcome.Limits.Value["pids"]);
        Assert.Equal("None", outcome.Limits.Mechanism["memory"]);
        Assert.Equal("TmpfsSize", outcome.Limits.Mechanism["tmpfs"]);
    }

    [Fact]
    public async Task With_a_cgroup_the_report_names_the_hierarchy_of_each_controller_and_starts_share_it()
    {
        CgroupHost.Require("pids");
        CgroupHost.Require("memory");
        IsolationSpec spec = NamespaceBuilder.ForUntrustedCode().WithTimeout(TimeSpan.FromSeconds(30)).Build();

        await using IsolatedProcess first = spec.Start("/bin/sleep", "30");
        await using IsolatedProcess second = spec.Start("/bin/true");
        SandboxLimits limits = first.Limits;

        LimitMechanism Expected(string controller) =>
            CgroupHost.Layout.Mode == CgroupMode.V1 || (CgroupHost.Layout.Mode == CgroupMode.Hybrid && !CgroupHost.Layout.V2Controllers().Contains(controller))
                ? LimitMechanism.CgroupV1 : LimitMechanism.CgroupV2;
        Assert.Same(limits, second.Limits); // computed once per spec: a start allocates no report
        Assert.Null(limits.CgroupError);
        Assert.Equal(new LimitState(Expected("pids"), 256, "pids.max 256"), limits.Pids);
        Assert.Equal(Expected("memory"), limits.Memory.Mechanism);
        Assert.Equal(512L << 20, limits.Memory.Value);
        Assert.Equal(LimitMechanism.TmpfsSize, limits.Tmpfs.Mechanism);
        Assert.Equal(64L << 20, limits.Tmpfs.Value);
        Assert.Equal(new LimitState(LimitMechanism.Timeout, 30_000, "timeout 00:00:30"), limits.Time);
        Assert.Equal(LimitMechanism.None, limits.Cpu.Mechanism);
        Assert.Equal(LimitMechanism.None, limits.Io.Mechanism);
        // The facts behind the report: the files of the cgroup the start created.
        string pidsDir = first.CgroupDirectories.First(d => File.Exists(Path.Join(d, "pids.max")));
        Assert.Equal("256", File.ReadAllText(Path.Join(pidsDir, "pids.max")).Trim());
    }

    [Fact]
    public async Task Without_a_user_namespace_the_fallback_is_not_applied_and_the_report_says_why()
    {
        Host.RequireRoot();
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.PidsMax(64).BestEffort().FallBackToRlimit()).Build();
        spec.CgroupDriverForTests = new NoCgroupDriver();
        IsolationSpec plain = new NamespaceBuilder().WithMounts(m => m.Tmpfs("/x")).WithNamespaces(Namespaces.Mount).Build();

        await using IsolatedProcess p = spec.Start("/bin/true");
        await using IsolatedProcess q = plain.Start("/bin/true");

        Assert.Equal(LimitMechanism.None, p.Limits.Pids.Mechanism);
        Assert.Contains("without Namespaces.User it would count every process of your uid", p.Limits.Pids.Setting);
        Assert.Equal(LimitMechanism.NotApplicable, p.Limits.Tmpfs.Mechanism);
        Assert.Equal(LimitMechanism.None, q.Limits.Tmpfs.Mechanism); // a plain Tmpfs() keeps the kernel's default size
        Assert.Contains("has no size=", q.Limits.Tmpfs.Setting);
    }

    private const int UntrustedCodePresetPids = Isolation.Security.UntrustedCodePreset.DefaultPidsMax;
}
