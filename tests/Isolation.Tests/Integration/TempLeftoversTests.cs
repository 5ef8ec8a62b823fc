using System.Diagnostics;
using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>The run's guard on /tmp (<see cref="TempLeftovers"/>) sees the runtime files of a .NET process a test kills, and removes them once it has gone.</summary>
public sealed class TempLeftoversTests(TempLeftovers guard)
{
    [Fact]
    public void A_killed_dotnet_process_leaves_its_runtime_files_and_the_guard_removes_them_once_it_has_gone()
    {
        var info = new ProcessStartInfo(TestHostRunner.Executable, ["wait-stdin"]) { UseShellExecute = false, RedirectStandardInput = true };
        info.Environment.Remove("DOTNET_EnableDiagnostics");
        using Process host = Process.Start(info)!;
        string stat = File.ReadAllText($"/proc/{host.Id}/stat");
        string id = $"{host.Id}-{stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[19]}";
        string[] files = guard.FilesOf(id);
        var clock = Stopwatch.StartNew();
        while (!(files.All(File.Exists) && guard.IsOurs(id)) && clock.Elapsed < TimeSpan.FromSeconds(20))
            Thread.Sleep(20);
        Assert.True(files.All(File.Exists), $"the runtime of pid {host.Id} did not make all of {string.Join(", ", files)}");
        Assert.True(guard.IsOurs(id), "the guard did not see the runtime files of a process of this run");

        host.Kill(); // SIGKILL: the runtime cannot remove its files
        host.WaitForExit();
        Assert.True(files.All(File.Exists));
        IReadOnlyList<string> removed = guard.RemoveGone();

        Assert.Contains(id, removed);
        Assert.DoesNotContain(files, File.Exists);
    }
}
