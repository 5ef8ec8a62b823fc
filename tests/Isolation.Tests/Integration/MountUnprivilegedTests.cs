using Isolation.TestHost;
using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>Mount plans run by an unprivileged user (uid 65534 through setpriv): the rootless path end to end.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class MountUnprivilegedTests
{
    private static readonly string[] Sandbox = ["--ns", "user,mount,pid", "--map-root"];

    [Fact]
    public void An_unprivileged_user_runs_a_busybox_root_with_proc_dev_tmp_and_a_throw_away_overlay()
    {
        Host.RequireUnprivilegedRunner();
        using var root = new BusyboxRoot();
        root.ChownTo(65534); // a rootless user's image belongs to that user, so its root can copy up into /etc
        string[] before = MountRun.HostMounts();

        SpawnOutcome o = TestHostRunner.SpawnUnprivileged([.. Sandbox, "--root", root.Path, "--tmp-overlay", "/:" + root.Path,
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--file", "/etc/hostname:box", "--mask-defaults",
            "--", "/bin/sh", "-c", "id -u; cat /etc/hostname; echo; echo x > /written && echo overlay-writable; ls /dev/null /dev/pts/ptmx; grep -c . /proc/self/mountinfo"]);

        Assert.True(o.Started, o.Error?.Message ?? o.ArgumentError);
        Assert.Equal(0, o.ExitCode);
        string[] lines = o.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["0", "box", "overlay-writable", "/dev/null", "/dev/pts/ptmx"], lines[..5]);
        Assert.False(File.Exists(root["/written"]));
        Assert.False(File.Exists(root["/etc/hostname"]));
        Assert.Equal(before, MountRun.HostMounts());
    }

    [Fact]
    public void An_unprivileged_empty_root_holds_only_the_binds_and_a_failed_plan_reports_the_operation()
    {
        Host.RequireUnprivilegedRunner();
        using var root = new BusyboxRoot();

        SpawnOutcome ok = TestHostRunner.SpawnUnprivileged([.. Sandbox, "--empty-root", "--ro-bind", root["/bin"] + ":/bin",
            "--", "/bin/sh", "-c", "ls /"]);
        SpawnOutcome failed = TestHostRunner.SpawnUnprivileged([.. Sandbox, "--empty-root", "--ro-bind", root["/bin"] + ":/bin",
            "--bind", "/nonexistent/isolation:/data", "--", "/bin/sh", "-c", "true"]);

        Assert.True(ok.Started, ok.Error?.Message);
        Assert.Equal("bin\n", ok.Stdout);
        Assert.False(failed.Started);
        Assert.Equal("Mount", failed.Error!.Step);
        Assert.Equal("ENOENT", failed.Error.ErrnoName);
        Assert.Contains("mount #2: bind /nonexistent/isolation on /data", failed.Error.Message);
    }
}
