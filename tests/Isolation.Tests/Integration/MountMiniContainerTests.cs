using System.Diagnostics;
using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>samples/MiniContainer run as documented: a busybox root, throw-away writes, own hostname and PID 1.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class MountMiniContainerTests
{
    private static string MiniContainer
    {
        get
        {
            string configuration = AppContext.BaseDirectory.Contains("/Debug/", StringComparison.Ordinal) ? "Debug" : "Release";
            return Path.Combine(TestHostRunner.RepoRoot, "samples/MiniContainer/bin", configuration, "net10.0/minicontainer");
        }
    }

    private static (int Code, string Stdout, string Stderr) Run(bool unprivileged, params string[] args)
    {
        var info = new ProcessStartInfo(unprivileged ? "setpriv" : MiniContainer) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (unprivileged)
            foreach (string a in (string[])["--reuid=65534", "--regid=65534", "--clear-groups", "--", Staging.ProgramForAnyUser(MiniContainer)])
                info.ArgumentList.Add(a);
        foreach (string a in args)
            info.ArgumentList.Add(a);
        using Process p = Process.Start(info)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout, stderr.Result);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MiniContainer_runs_a_command_in_a_root_file_system_and_forgets_its_writes(bool unprivileged)
    {
        Assert.SkipUnless(File.Exists(MiniContainer), $"needs the sample built ({MiniContainer}): dotnet build samples/MiniContainer -c Release");
        if (unprivileged)
            Host.RequireUnprivilegedRunner();
        using var root = new BusyboxRoot();
        if (unprivileged)
            root.ChownTo(65534);
        string[] before = Directory.GetFileSystemEntries(root.Path, "*", SearchOption.AllDirectories);

        var r = Run(unprivileged, "--hostname", "mini", "--no-network", root.Path, "/bin/sh", "-c",
            "hostname; cat /etc/hostname; echo $$; id -u; echo x > /etc/written && ls /etc; ls /dev/null /tmp; ls /sys/class/net; exit 3");

        Assert.True(r.Code == 3, r.Stderr);
        string[] lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["mini", "mini", "2", "0"], lines[..4]);
        Assert.Contains("written", lines);
        Assert.Contains("/dev/null", lines);
        Assert.Equal("lo", lines[^1]);
        Assert.Equal(before, Directory.GetFileSystemEntries(root.Path, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public void MiniContainer_reports_a_missing_command_as_docker_does()
    {
        Assert.SkipUnless(File.Exists(MiniContainer), $"needs the sample built ({MiniContainer}): dotnet build samples/MiniContainer -c Release");
        using var root = new BusyboxRoot();

        var r = Run(false, root.Path, "/no/such/program");

        Assert.Equal(125, r.Code);
        Assert.Contains("exec /no/such/program", r.Stderr);
    }
}
