using Isolation.Tests.Infrastructure;
using static Isolation.Tests.Integration.IsolateUnshareTests;
using static Isolation.Tests.Integration.MountRun;

namespace Isolation.Tests.Integration;

/// <summary>bubblewrap's own defaults on isolate's bwrap face, and isolate without the .NET diagnostics socket (issue #11, items 7 and 2).</summary>
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

    [Fact]
    public async Task Isolate_runs_without_a_dotnet_diagnostics_socket()
    {
        RequireIsolate();
        var info = new System.Diagnostics.ProcessStartInfo(Isolate) { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in (string[])["unshare", "-r", "/bin/sh", "-c", "echo up; sleep 5"])
            info.ArgumentList.Add(a);
        info.Environment.Remove("DOTNET_EnableDiagnostics");
        using var process = System.Diagnostics.Process.Start(info)!;
        try
        {
            Assert.Equal("up", await process.StandardOutput.ReadLineAsync()); // the sandbox runs: isolate is fully up

            // The runtime names its socket by pid and start time (clock ticks after boot, field 22 of /proc/PID/stat),
            // which execve keeps: the file of the runtime isolate left by re-executing must be gone too. Files of
            // earlier processes that had the same pid may lie about; they are not isolate's.
            string pattern = $"dotnet-diagnostic-{process.Id}-";
            ulong startTime = Isolation.TestHost.ProcessTable.Read(process.Id)!.StartTime;
            Assert.False(File.Exists(Path.Join(Path.GetTempPath(), $"{pattern}{startTime}-socket")), $"isolate's diagnostics socket {pattern}{startTime}-socket exists; isolate's environment: {string.Join(" ", Environ(process.Id))}");
            Assert.DoesNotContain(pattern, File.ReadAllText("/proc/net/unix"));
            Assert.Equal("", Environ(process.Id).FirstOrDefault(e => e.StartsWith("DOTNET_EnableDiagnostics=", StringComparison.Ordinal)) is { } v && v != "DOTNET_EnableDiagnostics=0" ? v : "");
            // The check can fail: a .NET process with diagnostics on (this one, unless started without) has the socket.
            if (Environment.GetEnvironmentVariable("DOTNET_EnableDiagnostics") != "0")
                Assert.Contains($"dotnet-diagnostic-{Environment.ProcessId}-", File.ReadAllText("/proc/net/unix"));
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }

    private static string[] Environ(int pid) => File.ReadAllText($"/proc/{pid}/environ").Split('\0');
}
