using System.Diagnostics;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>The library run by an unprivileged user (uid 65534 through setpriv), as most users run it.</summary>
public sealed class UnprivilegedTests
{
    [Fact]
    public void The_readme_example_works_for_an_unprivileged_user()
    {
        Host.RequireUnprivilegedRunner();
        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged(
            "--ns", "user,pid,mount,uts,ipc,net", "--map-root", "--hostname", "sandbox", "--proc", "/proc",
            "--", "/bin/sh", "-c", "echo $$; id -u; hostname; cat /proc/self/setgroups");

        Assert.Null(outcome.Error?.Message);
        Assert.True(outcome.Started);
        Assert.Equal(["1", "0", "sandbox", "deny"], outcome.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(0, outcome.ExitCode);
    }

    [Fact]
    public void Map_current_user_keeps_the_callers_uid_inside()
    {
        Host.RequireUnprivilegedRunner();
        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged("--ns", "user", "--map-current", "--", "/bin/sh", "-c", "id -u; cat /proc/self/uid_map");
        string[] lines = outcome.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("65534", lines[0]);
        Assert.Equal("65534 65534 1", IdentityTests.Normalize(lines[1]));
    }

    [Fact]
    public void Namespaces_without_a_user_namespace_fail_with_eperm_and_a_hint()
    {
        Host.RequireUnprivilegedRunner();
        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged("--ns", "mount,pid", "--", "/bin/true");

        Assert.False(outcome.Started);
        Assert.NotNull(outcome.Error);
        Assert.Equal("Clone", outcome.Error!.Step);
        Assert.Equal("EPERM", outcome.Error.ErrnoName);
        Assert.Contains("CAP_SYS_ADMIN", outcome.Error.Hint);
        Assert.Equal(outcome.FdsBefore, outcome.FdsAfter);
    }

    [Fact]
    public void A_refused_gid_map_write_names_the_step_and_leaks_nothing()
    {
        Host.RequireUnprivilegedRunner();
        // user_namespaces(7): an unprivileged gid map needs setgroups "deny" first; forcing "allow" makes the write fail.
        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged("--ns", "user", "--map-root", "--setgroups", "allow", "--", "/bin/true");

        Assert.False(outcome.Started);
        Assert.Equal("GidMap", outcome.Error!.Step);
        Assert.Equal("EPERM", outcome.Error.ErrnoName);
        Assert.Contains("gid_map", outcome.Error.Message);
        Assert.Equal(outcome.FdsBefore, outcome.FdsAfter);
    }

    [Fact]
    public void A_multi_range_map_names_the_missing_tool_or_range_before_any_syscall()
    {
        Host.RequireUnprivilegedRunner();
        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged("--ns", "user", "--map-users", "0:300000:1000", "--", "/bin/true");

        Assert.False(outcome.Started);
        Assert.NotNull(outcome.ArgumentError);
        if (File.Exists("/usr/bin/newuidmap"))
            Assert.Contains("/etc/subuid", outcome.ArgumentError);
        else
            Assert.Contains("newuidmap", outcome.ArgumentError);
    }

    [Fact]
    public void A_multi_range_map_goes_through_newuidmap_and_etc_subuid()
    {
        Host.RequireUnprivilegedRunner();
        Assert.SkipUnless(File.Exists("/usr/bin/newuidmap") && File.Exists("/usr/bin/newgidmap"), "needs newuidmap/newgidmap (Debian package uidmap; ./run-tests installs it as root)");
        Assert.SkipUnless(File.Exists("/usr/bin/unshare"), "needs util-linux unshare to give the test its own /etc/subuid");

        // Give uid 65534 subordinate ranges in a private mount namespace only, so the host's files stay untouched.
        string dir = Directory.CreateTempSubdirectory("isolation-subid-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "subuid"), "65534:300000:65536\n");
            File.WriteAllText(Path.Combine(dir, "subgid"), "65534:300000:65536\n");
            string script = $"mount --bind {dir}/subuid /etc/subuid && mount --bind {dir}/subgid /etc/subgid && " +
                $"exec setpriv --reuid=65534 --regid=65534 --clear-groups -- {TestHostRunner.ExecutableForAnyUser} spawn " +
                "--ns user --map-users 0:65534:1 --map-users 1:300000:65536 --map-groups 0:65534:1 --map-groups 1:300000:65536 -- /bin/sh -c 'cat /proc/self/uid_map /proc/self/gid_map'";
            var info = new ProcessStartInfo("unshare", ["--mount", "--propagation", "private", "sh", "-c", script]) { RedirectStandardOutput = true, RedirectStandardError = true };
            info.Environment["HOME"] = "/tmp";
            using Process process = Process.Start(info)!;
            string stdout = process.StandardOutput.ReadToEnd();
            string stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            SpawnOutcome outcome = System.Text.Json.JsonSerializer.Deserialize(stdout, ReportJson.Default.SpawnOutcome)!;

            Assert.True(outcome.Started, $"{outcome.Error?.Message}{outcome.ArgumentError} {stderr}");
            Assert.Equal(["0 65534 1", "1 300000 65536", "0 65534 1", "1 300000 65536"],
                outcome.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(IdentityTests.Normalize));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_refused_user_namespace_is_reported_as_eperm_at_the_clone_step()
    {
        // user_namespaces(7): creating a user namespace fails with EPERM when the caller's uid has no mapping
        // in its own namespace, as in a user namespace that was given no uid map. Root may not build such a
        // sandbox (its program would keep host uid 0), so uid 65534 makes it.
        Host.RequireUnprivilegedRunner();
        SpawnOutcome outer = TestHostRunner.SpawnUnprivileged("--ns", "user", "--",
            TestHostRunner.ExecutableForAnyUser, "spawn", "--ns", "user", "--map-root", "--", "/bin/true");
        Assert.True(outer.Started, outer.Error?.Message ?? outer.ArgumentError);
        SpawnOutcome outcome = System.Text.Json.JsonSerializer.Deserialize(outer.Stdout!, ReportJson.Default.SpawnOutcome)!;

        Assert.False(outcome.Started);
        Assert.Equal("Clone", outcome.Error!.Step);
        Assert.Equal("EPERM", outcome.Error.ErrnoName);
        Assert.Contains("user namespace", outcome.Error.Hint);
        Assert.Equal(outcome.FdsBefore, outcome.FdsAfter);
    }
}
