using System.Diagnostics;
using System.Text.Json;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>One unprivileged host, many sandboxes: the spawn helper keeps serving after its first children.</summary>
public sealed class UnprivilegedHelperTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    public void An_unprivileged_host_starts_many_user_namespace_sandboxes_one_after_another_and_at_once(int parallel)
    {
        Host.RequireUnprivilegedRunner();
        var info = new ProcessStartInfo("setpriv") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in (string[])["--reuid=65534", "--regid=65534", "--clear-groups", "--", TestHostRunner.ExecutableForAnyUser,
                     "statuses", "--count", "12", "--parallel", parallel.ToString(System.Globalization.CultureInfo.InvariantCulture)])
            info.ArgumentList.Add(a);
        info.Environment["HOME"] = "/tmp";
        info.Environment["DOTNET_EnableDiagnostics"] = "0";

        using Process host = Process.Start(info)!;
        string stdout = host.StandardOutput.ReadToEnd(), stderr = host.StandardError.ReadToEnd();
        host.WaitForExit();
        StatusesOutcome outcome = JsonSerializer.Deserialize(stdout, HostFaultJson.Default.StatusesOutcome)
            ?? throw new InvalidOperationException(stdout + stderr);

        // Before the fix a CLONE_VM child made the helper's (shared) memory non-dumpable, so from the second or
        // third start on every child's /proc files belonged to root: "write /proc/N/setgroups: EACCES".
        Assert.True(outcome.Correct == 12, $"{outcome.Correct} of 12 correct; errors: {string.Join("; ", outcome.Errors.Select(e => $"{e.Value} x {e.Key}"))}");
    }
}
