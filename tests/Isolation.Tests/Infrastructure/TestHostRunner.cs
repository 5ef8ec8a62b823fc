using System.Diagnostics;
using System.Reflection;
using System.Text.Json;
using Isolation.TestHost;

namespace Isolation.Tests.Infrastructure;

/// <summary>Runs tests/Isolation.TestHost inside sandboxes (report) and as other users (spawn).</summary>
public static class TestHostRunner
{
    public static string Directory { get; } = Metadata("TestHostDir");

    public static string RepoRoot { get; } = Metadata("RepoRoot");

    /// <summary>The apphost executable: runnable inside a sandbox that shares the host's file system.</summary>
    public static string Executable { get; } = Path.Combine(Directory, "Isolation.TestHost");

    /// <summary>Starts the report inside <paramref name="spec"/>'s sandbox and returns what it saw.</summary>
    public static async Task<EnvironmentReport> ReportAsync(NamespaceBuilder builder, params string[] extraArgs)
    {
        IsolationSpec spec = builder.WithStandardOutput(Stdio.Pipe).Build();
        await using IsolatedProcess process = spec.Start(Executable, ["report", .. extraArgs]);
        string json = await new StreamReader(process.StandardOutput!).ReadToEndAsync();
        ExitStatus status = await process.WaitForExitAsync();
        Assert.True(status.Success, $"report exited: {status}; output: {json}");
        return JsonSerializer.Deserialize(json, ReportJson.Default.EnvironmentReport)!;
    }

    /// <summary>Runs the spawn driver as uid/gid 65534 (nobody) through setpriv, so the library runs unprivileged.</summary>
    public static SpawnOutcome SpawnUnprivileged(params string[] args)
    {
        var info = new ProcessStartInfo("setpriv")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in (string[])["--reuid=65534", "--regid=65534", "--clear-groups", "--", Executable, "spawn", .. args])
            info.ArgumentList.Add(a);
        return RunSpawnDriver(info);
    }

    /// <summary>Runs a command line that ends in the spawn driver and returns the outcome it printed.</summary>
    public static SpawnOutcome RunSpawnDriver(ProcessStartInfo info)
    {
        info.Environment["HOME"] = "/tmp";
        info.Environment["DOTNET_CLI_HOME"] = "/tmp";
        using Process process = Process.Start(info)!;
        string stdout = process.StandardOutput.ReadToEnd();
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"spawn driver failed ({process.ExitCode}): {stderr}{stdout}");
        return JsonSerializer.Deserialize(stdout, ReportJson.Default.SpawnOutcome)
            ?? throw new InvalidOperationException("no outcome: " + stdout + stderr);
    }

    private static string Metadata(string key) =>
        typeof(TestHostRunner).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().First(a => a.Key == key).Value!;
}
