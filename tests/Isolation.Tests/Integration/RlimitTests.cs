using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>rlimits set by the parent with prlimit(2) before the program runs.</summary>
public sealed class RlimitTests
{
    private static ulong HardLimit(string name)
    {
        string line = File.ReadLines("/proc/self/limits").First(l => l.StartsWith(name, StringComparison.Ordinal));
        string hard = line[26..].Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
        return hard == "unlimited" ? Rlimit.Unlimited : ulong.Parse(hard);
    }

    [Fact]
    public async Task The_program_starts_with_the_open_files_limit_it_was_given()
    {
        IsolationSpec spec = new NamespaceBuilder()
            .WithRlimit(RlimitResource.NoFile, 64, 128)
            .WithStandardOutput(Stdio.Pipe)
            .Build();

        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "ulimit -Sn; ulimit -Hn");
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
        await p.WaitForExitAsync();

        Assert.Equal(["64", "128"], output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public async Task Rlimits_apply_inside_a_rootless_user_namespace_too()
    {
        IsolationSpec spec = new NamespaceBuilder()
            .WithNamespaces(Namespaces.User | Namespaces.Pid)
            .MapCurrentUserToRoot()
            .WithRlimit(RlimitResource.Core, 0)
            .WithStandardOutput(Stdio.Pipe)
            .Build();

        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "ulimit -c");
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
        await p.WaitForExitAsync();

        Assert.Equal("0", output.Trim());
    }

    [Fact]
    public async Task A_cpu_time_rlimit_ends_a_spinner_with_SIGXCPU()
    {
        IsolationSpec spec = new NamespaceBuilder().WithRlimit(RlimitResource.Cpu, 1, 5).Build();

        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "while :; do :; done");
        ExitStatus status = await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(TerminationReason.Signaled, status.Reason);
        Assert.Equal(24, status.Signal); // SIGXCPU
    }

    [Fact]
    public void Raising_a_hard_limit_above_the_callers_fails_with_a_hint_and_leaves_nothing()
    {
        Assert.SkipWhen(HasCapSysResource(), "this process has CAP_SYS_RESOURCE, so it may raise hard limits");
        ulong hard = HardLimit("Max open files");
        Assert.SkipWhen(hard == Rlimit.Unlimited, "the open-files hard limit is unlimited here");
        IsolationSpec spec = new NamespaceBuilder().WithRlimit(RlimitResource.NoFile, hard + 1).Build();

        var e = Assert.Throws<SandboxSetupException>(() => spec.Start("/bin/true"));

        Assert.Equal(SetupStep.Rlimit, e.Step);
        Assert.Equal("EPERM", e.ErrnoName);
        Assert.Contains("CAP_SYS_RESOURCE", e.Hint);
    }

    [Fact]
    public void A_soft_limit_above_the_hard_limit_is_rejected_in_Build()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithRlimit(RlimitResource.NoFile, 100, 10).Build());
        Assert.Contains("soft <= hard", e.Message);
    }

    private static bool HasCapSysResource()
    {
        string capEff = File.ReadLines("/proc/self/status").First(l => l.StartsWith("CapEff:", StringComparison.Ordinal))[7..].Trim();
        return (Convert.ToUInt64(capEff, 16) & (1UL << 24)) != 0;
    }
}
