using System.Diagnostics;
using System.Text.Json;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>
/// The test infrastructure's staging of build outputs for users other than root (<see cref="Staging"/>): a
/// private checkout's outputs are copied where uid 65534 can run them, a world-readable one is used as it is.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class StagingTests(ITestOutputHelper output) : IDisposable
{
    private const UnixFileMode Private = (UnixFileMode)0x1C0; // 0700
    private const UnixFileMode Open = (UnixFileMode)0x1ED; // 0755

    private readonly string _temp = BusyboxRoot.NewTempDirectory("isolation-staging-test-");

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    [Fact]
    public void A_build_output_below_a_mode_700_directory_is_not_reachable_by_others()
    {
        string home = Dir("home", Private);
        string output = BuildOutput(Path.Combine(home, "checkout/bin"));

        string? why = Staging.WhyNotReachableByOthers(output);

        Assert.NotNull(why);
        Assert.Contains($"{home} is not searchable by others (mode 0700)", why);
    }

    [Fact]
    public void A_world_readable_build_output_is_reachable_as_it_is()
    {
        string output = BuildOutput(Path.Combine(Dir("home", Open), "checkout/bin"), executable: Open);

        Assert.Null(Staging.WhyNotReachableByOthers(output));
    }

    [Fact]
    public void A_file_only_its_owner_may_read_makes_the_output_unreachable()
    {
        string output = BuildOutput(Path.Combine(Dir("home", Open), "checkout/bin"), executable: Open);
        File.SetUnixFileMode(Path.Combine(output, "app.dll"), UnixFileMode.UserRead | UnixFileMode.UserWrite);

        Assert.Contains("app.dll is not readable or executable by others (mode 0600)", Staging.WhyNotReachableByOthers(output));
    }

    [Fact]
    public void An_executable_only_its_owner_may_run_makes_the_output_unreachable()
    {
        string output = BuildOutput(Path.Combine(Dir("home", Open), "checkout/bin"), executable: Private);

        Assert.Contains("app is not readable or executable by others (mode 0700)", Staging.WhyNotReachableByOthers(output));
    }

    [Fact]
    public void A_copied_tree_is_readable_by_others_and_keeps_its_executables_executable()
    {
        string output = BuildOutput(Path.Combine(Dir("home", Private), "checkout/bin"));
        string copy = Path.Combine(Dir("staged", Open), "app");

        Staging.CopyTree(output, copy);

        Assert.Null(Staging.WhyNotReachableByOthers(copy));
        Assert.Equal(Open, File.GetUnixFileMode(copy));
        Assert.Equal(Open, File.GetUnixFileMode(Path.Combine(copy, "runtimes/native")));
        Assert.Equal(Open, File.GetUnixFileMode(Path.Combine(copy, "app")));
        Assert.Equal(Open, File.GetUnixFileMode(Path.Combine(copy, "runtimes/native/libshim.so")));
        Assert.Equal((UnixFileMode)0x1A4 /* 0644 */, File.GetUnixFileMode(Path.Combine(copy, "app.dll")));
        Assert.Equal("#!/bin/sh\necho staged\n", File.ReadAllText(Path.Combine(copy, "app")));
    }

    [Fact]
    public void A_private_build_output_is_staged_once_under_tmp_and_an_open_one_is_used_as_it_is()
    {
        string privateOutput = BuildOutput(Path.Combine(Dir("private-home", Private), "checkout/bin"));
        string openOutput = BuildOutput(Path.Combine(Dir("open-home", Open), "checkout/bin"), executable: Open);

        string staged = Staging.DirectoryForAnyUser(privateOutput);

        Assert.StartsWith("/tmp/isolation-staged-", staged);
        Assert.Null(Staging.WhyNotReachableByOthers(staged));
        Assert.Equal(staged, Staging.DirectoryForAnyUser(privateOutput + "/"));
        Assert.Equal(Path.Combine(staged, "app"), Staging.ProgramForAnyUser(Path.Combine(privateOutput, "app")));
        Assert.Equal(openOutput, Staging.DirectoryForAnyUser(openOutput));
    }

    [Fact]
    public void Uid_65534_can_run_the_copy_of_an_output_it_could_not_reach()
    {
        Assert.SkipUnless(Host.IsRoot && Host.HasSetpriv, "needs root and setpriv (util-linux) to drop to uid 65534");
        string output = BuildOutput(Path.Combine(Dir("home", Private), "checkout/bin"));
        string copy = Path.Combine(Dir("staged", Open), "app");
        Staging.CopyTree(output, copy);

        (int denied, _) = RunAsNobody(Path.Combine(output, "app"));
        (int code, string stdout) = RunAsNobody(Path.Combine(copy, "app"));

        Assert.Equal(126, denied); // sh: permission denied
        Assert.Equal(0, code);
        Assert.Equal("staged\n", stdout);
    }

    [Fact]
    public void The_test_host_for_any_user_runs_as_uid_65534_and_finds_the_dotnet_runtime()
    {
        Assert.SkipUnless(Host.IsRoot && Host.HasSetpriv, "needs root and setpriv (util-linux) to drop to uid 65534");
        string executable = TestHostRunner.ExecutableForAnyUser;
        output.WriteLine($"test host for any user: {executable}; DOTNET_ROOT={Environment.GetEnvironmentVariable("DOTNET_ROOT") ?? "(unset)"}");

        // The environment the unprivileged runners give it: this process's, HOME=/tmp. The apphost finds the
        // runtime through DOTNET_ROOT when set, else at its default location (/usr/share/dotnet).
        (int code, string stdout) = RunAsNobody(executable, "report");

        Assert.True(code == 0, $"the test host exited {code} as uid 65534: {stdout}");
        EnvironmentReport report = JsonSerializer.Deserialize(stdout, ReportJson.Default.EnvironmentReport)!;
        Assert.Equal(65534, report.Uid);
    }

    /// <summary>A fake build output: an executable script (mode <paramref name="executable"/>), a library, a native subdirectory.</summary>
    private static string BuildOutput(string path, UnixFileMode executable = Private)
    {
        Directory.CreateDirectory(Path.Combine(path, "runtimes/native"));
        File.WriteAllText(Path.Combine(path, "app"), "#!/bin/sh\necho staged\n");
        File.WriteAllText(Path.Combine(path, "app.dll"), "not really");
        File.WriteAllText(Path.Combine(path, "runtimes/native/libshim.so"), "not really");
        File.SetUnixFileMode(Path.Combine(path, "app"), executable);
        File.SetUnixFileMode(Path.Combine(path, "runtimes/native/libshim.so"), (UnixFileMode)0x1ED);
        return path;
    }

    private string Dir(string name, UnixFileMode mode)
    {
        string path = Path.Combine(_temp, name);
        Directory.CreateDirectory(path);
        File.SetUnixFileMode(path, mode);
        return path;
    }

    /// <summary>Runs <paramref name="program"/> through sh as uid/gid 65534, from /, and returns its exit code and output.</summary>
    private static (int Code, string Stdout) RunAsNobody(string program, params string[] args)
    {
        var info = new ProcessStartInfo("setpriv") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = "/" };
        foreach (string a in (string[])["--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/sh", "-c", "exec \"$@\"", "sh", program, .. args])
            info.ArgumentList.Add(a);
        info.Environment["HOME"] = "/tmp";
        info.Environment["DOTNET_CLI_HOME"] = "/tmp";
        using Process process = Process.Start(info)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout + stderr.Result);
    }
}
