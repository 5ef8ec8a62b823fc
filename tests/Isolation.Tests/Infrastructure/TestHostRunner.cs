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

    /// <summary>The apphost executable: runnable inside a sandbox that shares the host's file system, by root.</summary>
    public static string Executable { get; } = Path.Combine(Directory, "Isolation.TestHost");

    /// <summary>
    /// <see cref="Directory"/> as uid 65534 and other non-root host users reach it: the build output, or its
    /// staged copy when the checkout is private (<see cref="Staging"/>). Skips the test when there is neither.
    /// </summary>
    public static string DirectoryForAnyUser => Staging.DirectoryForAnyUser(Directory);

    /// <summary>The apphost in <see cref="DirectoryForAnyUser"/>: for runs as uid 65534 and for sandboxes whose program is a non-root host uid.</summary>
    public static string ExecutableForAnyUser => Path.Combine(DirectoryForAnyUser, "Isolation.TestHost");

    /// <summary>Starts the report inside <paramref name="builder"/>'s sandbox and returns what it saw.</summary>
    public static Task<EnvironmentReport> ReportAsync(NamespaceBuilder builder, params string[] extraArgs) =>
        RunReportAsync(builder, Executable, extraArgs);

    /// <summary>
    /// <see cref="ReportAsync(NamespaceBuilder, string[])"/> for a sandbox whose program runs as a host uid other
    /// than root (mapped ranges, RunAs, ForUntrustedCode as root): starts <see cref="ExecutableForAnyUser"/>.
    /// </summary>
    public static Task<EnvironmentReport> ReportAsAnotherHostUserAsync(NamespaceBuilder builder, params string[] extraArgs) =>
        RunReportAsync(builder, ExecutableForAnyUser, extraArgs);

    private static async Task<EnvironmentReport> RunReportAsync(NamespaceBuilder builder, string executable, string[] extraArgs)
    {
        IsolationSpec spec = builder.WithStandardOutput(Stdio.Pipe).Build();
        await using IsolatedProcess process = spec.Start(executable, ["report", .. extraArgs]);
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
        foreach (string a in (string[])["--reuid=65534", "--regid=65534", "--clear-groups", "--", ExecutableForAnyUser, "spawn", .. args])
            info.ArgumentList.Add(a);
        return RunSpawnDriver(info);
    }

    /// <summary>Runs a command line that ends in the spawn driver and returns the outcome it printed.</summary>
    public static SpawnOutcome RunSpawnDriver(ProcessStartInfo info)
    {
        info.Environment["HOME"] = "/tmp";
        info.Environment["DOTNET_CLI_HOME"] = "/tmp";
        info.Environment["DOTNET_EnableDiagnostics"] = "0"; // a host the test kills would leave its diagnostics socket in /tmp
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
