using Isolation.Tests.Infrastructure;
using static Isolation.Tests.Integration.IsolateUnshareTests;
using static Isolation.Tests.Integration.MountRun;

namespace Isolation.Tests.Integration;

/// <summary>bubblewrap's own defaults on isolate's bwrap face (issue #11, items 7 and 8).</summary>
public sealed class BwrapDefaultsTests
{
    private static void RequireIsolate() => Assert.SkipUnless(File.Exists(Isolate), $"the isolate sample is not built at {Isolate}");

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Isolate_bwrap_always_sets_no_new_privs(bool unprivileged)
    {
        RequireIsolate();
        if (unprivileged)
            Host.RequireUnprivilegedRunner();
        else
            Host.RequireRoot();
        Outcome o = await RunAsync(unprivileged ? IsolateForAnyUser : Isolate,
            ["bwrap", "--ro-bind", "/", "/", "--", "/bin/grep", "NoNewPrivs", "/proc/self/status"], unprivileged);

        Assert.Equal(0, o.ExitCode);
        Assert.Equal("NoNewPrivs:\t1\n", o.Stdout);
    }

    [Fact]
    public async Task As_root_proc_without_unshare_pid_shows_the_callers_pid_namespace_as_bwrap_does()
    {
        RequireIsolate();
        Host.RequireRoot();
        Outcome o = await RunAsync(Isolate, ["bwrap", "--ro-bind", "/", "/", "--proc", "/proc", "--", "/bin/cat", "/proc/1/comm"], unprivileged: false);

        Assert.Equal(0, o.ExitCode);
        Assert.Equal(File.ReadAllText("/proc/1/comm"), o.Stdout);
    }

    [Fact]
    public async Task As_root_the_library_mounts_the_callers_proc_when_asked_explicitly()
    {
        Host.RequireRoot();
        Result r = await ShAsync(new NamespaceBuilder().WithNamespaces(Namespaces.Mount)
            .WithMounts(m => m.Tmpfs("/mnt").Proc("/mnt/proc", callerPidNamespace: true)), "cat /mnt/proc/1/comm");

        Assert.Equal(0, r.ExitCode);
        Assert.Equal(File.ReadAllText("/proc/1/comm"), r.Stdout);
    }
}
