using Isolation.Tests.Infrastructure;
using static Isolation.Tests.Integration.IsolateUnshareTests;

namespace Isolation.Tests.Integration;

/// <summary>isolate's resource-limit and security options, on both faces (samples/Isolate/SandboxFlags.cs).</summary>
public sealed class IsolateFlagsTests
{
    private static readonly string[] Bwrap = ["bwrap", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--unshare-all", "--"];
    private static readonly string[] Unshare = ["unshare", "-Urpf", "--mount-proc"];

    private static void RequireIsolate() => Assert.SkipUnless(File.Exists(Isolate), $"the isolate sample is not built at {Isolate}; build the solution");

    [Theory]
    [InlineData("unshare")]
    [InlineData("bwrap")]
    public async Task A_pids_limit_stops_a_fork_storm_and_the_reason_is_printed(string face)
    {
        RequireIsolate();
        Host.RequireRoot(); // cgroups are delegated to root on this host
        string[] prefix = face == "bwrap" ? ["bwrap", "--pids-max", "8", .. Bwrap[1..]] : [.. Unshare, "--pids-max", "8"];
        Outcome o = await RunAsync(Isolate, [.. prefix, "/bin/sh", "-c", "for i in $(seq 30); do sleep 5 & done; wait"], unprivileged: false);

        Assert.NotEqual(0, o.ExitCode);
        Assert.Contains("isolate: the program hit the pids limit", o.Stderr);
    }

    [Theory]
    [InlineData("unshare")]
    [InlineData("bwrap")]
    public async Task A_timeout_kills_the_program_and_says_so(string face)
    {
        RequireIsolate();
        string[] prefix = face == "bwrap" ? ["bwrap", "--timeout", "300ms", .. Bwrap[1..]] : [.. Unshare, "--timeout", "300ms"];
        Outcome o = await RunAsync(Isolate, [.. prefix, "/bin/sleep", "30"], unprivileged: false);

        Assert.Equal(137, o.ExitCode);
        Assert.Contains("killed after its timeout", o.Stderr);
    }

    [Fact]
    public async Task Cap_drop_all_leaves_no_capabilities_on_both_faces()
    {
        RequireIsolate();
        foreach (string[] prefix in new[] { (string[])["bwrap", "--cap-drop", "ALL", .. Bwrap[1..]], [.. Unshare, "--cap-drop", "ALL"] })
        {
            Outcome o = await RunAsync(Isolate, [.. prefix, "/bin/grep", "CapEff", "/proc/self/status"], unprivileged: false);
            Assert.Equal(0, o.ExitCode);
            Assert.Contains("0000000000000000", o.Stdout);
        }
    }

    [Fact]
    public async Task Untrusted_applies_the_preset_from_the_unshare_face()
    {
        RequireIsolate();
        Outcome o = await RunAsync(Isolate, ["unshare", "--untrusted", "/bin/sh", "-c", "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; ls /"], unprivileged: false);

        Assert.Equal(0, o.ExitCode);
        Assert.Contains("CapEff:\t0000000000000000", o.Stdout);
        Assert.Contains("NoNewPrivs:\t1", o.Stdout);
        Assert.Contains("Seccomp:\t2", o.Stdout);
        Assert.DoesNotContain("root\n", o.Stdout); // the host's /root is not in the minimal root
    }

    [Fact]
    public async Task An_rlimit_reaches_the_program()
    {
        RequireIsolate();
        Outcome o = await RunAsync(Isolate, [.. Unshare, "--rlimit", "nofile=64:128", "/bin/sh", "-c", "ulimit -Sn; ulimit -Hn"], unprivileged: false);
        Assert.Equal(["64", "128"], o.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Theory]
    [InlineData("--memory-max", "lots", "takes a size")]
    [InlineData("--timeout", "-3", "takes a duration")]
    [InlineData("--rlimit", "bogus=1", "unknown resource")]
    public async Task A_bad_value_is_a_usage_error_with_exit_status_1(string option, string value, string message)
    {
        RequireIsolate();
        foreach (string[] prefix in new[] { (string[])["bwrap", option, value, .. Bwrap[1..]], [.. Unshare, option, value] })
        {
            Outcome o = await RunAsync(Isolate, [.. prefix, "/bin/true"], unprivileged: false);
            Assert.Equal(1, o.ExitCode);
            Assert.Contains(message, o.Stderr);
        }
    }

    [Fact]
    public async Task A_compiled_seccomp_program_passed_as_a_descriptor_is_enforced()
    {
        RequireIsolate();
        string filter = Path.Combine(Path.GetTempPath(), $"isolation-seccomp-{Guid.NewGuid():N}.bpf");
        try
        {
            // mkdir fails with EPERM (1); everything else is allowed.
            byte[] program = new Isolation.Security.Seccomp.SeccompProfile(Isolation.Security.Seccomp.SeccompAction.Allow)
                .Deny(1, "mkdir", "mkdirat").Compile().ToBytes();
            File.WriteAllBytes(filter, program);
            string command = $"exec {Isolate} bwrap --ro-bind / / --tmpfs /tmp --chdir / --unshare-all --seccomp 9 -- /bin/sh -c 'mkdir /tmp/x 2>&1; echo rc=$?' 9<{filter}";
            Outcome o = await RunAsync("/bin/sh", ["-c", command], unprivileged: false);

            Assert.True(o.ExitCode == 0, $"exit {o.ExitCode}: {o.Stderr}{o.Stdout}");
            Assert.Contains("Operation not permitted", o.Stdout);
            Assert.Contains("rc=1", o.Stdout);
        }
        finally
        {
            File.Delete(filter);
        }
    }

    [Fact]
    public async Task An_unknown_capability_is_a_usage_error()
    {
        RequireIsolate();
        Outcome o = await RunAsync(Isolate, [.. Unshare, "--cap-add", "CAP_NOT_A_THING", "/bin/true"], unprivileged: false);
        Assert.Equal(1, o.ExitCode);
        Assert.Contains("CAP_NOT_A_THING", o.Stderr);
    }
}
