using System.Diagnostics;
using System.Text.Json;
using Isolation.TestHost;
using Isolation.Tests.Infrastructure;
using static Isolation.Tests.Integration.BwrapTests;

namespace Isolation.Tests.Integration;

/// <summary>
/// The library used inside a sandbox whose /dev is mounted nodev (a bind of the host's / without devices, as
/// bwrap's <c>--bind / /</c> makes it), where /dev/null cannot be opened: the spawn helper still starts, and the
/// sandboxes it starts get stdio of their own in place of /dev/null, never the helper's. And <c>isolate bwrap</c>
/// running itself for <c>/proc/self/exe</c>, as bubblewrap's own tests nest bwrap.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class NestedStartTests
{
    // Inside the inner sandbox (no PID namespace: the shell's parent is the inner host's spawn helper). stderr and
    // stdin are Stdio.Null: 1 MB written to stderr must not meet SIGPIPE, stdin must read end of file at once.
    private const string Script = """
        ( : > /dev/null ) 2>/dev/null; echo "devnull=$?"
        i=0; while [ $i -lt 4000 ]; do echo 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789 >&2; i=$((i+1)); done; echo "wrote=$?"
        cat; echo "read=$?"
        echo "in=$(readlink /proc/self/fd/0) err=$(readlink /proc/self/fd/2)"
        echo "helper-in=$(readlink /proc/$PPID/fd/0) helper-err=$(readlink /proc/$PPID/fd/2)"
        """;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_host_without_a_usable_dev_null_starts_sandboxes_whose_null_stdio_is_their_own(bool unprivileged)
    {
        if (unprivileged)
            Host.RequireUnprivilegedRunner();
        else
            Host.RequireRoot();
        string testHost = unprivileged ? TestHostRunner.ExecutableForAnyUser : TestHostRunner.Executable;
        // Outer sandbox: the host's / bound without devices, /proc bound; inside it the test host is the library's host.
        string[] args = ["--ns", "user,mount", "--map-root", "--empty-root", "--bind", "/:/", "--bind", "/proc:/proc", "--",
            testHost, "spawn", "--ns", "mount", "--stdin-null", "--stderr-null", "--", "/bin/sh", "-c", Script];
        SpawnOutcome outer = unprivileged ? TestHostRunner.SpawnUnprivileged(args) : RunDriver(testHost, args);
        Assert.True(outer.Error is null, $"outer sandbox: {outer.Error?.Message}");
        Assert.True(outer.ExitCode == 0, $"outer exit {outer.ExitCode}: {outer.Stdout}");

        SpawnOutcome inner = JsonSerializer.Deserialize(outer.Stdout!, ReportJson.Default.SpawnOutcome)!;
        Assert.True(inner.Error is null, $"inner start: {inner.Error?.Message} ({inner.Error?.Hint})");
        Dictionary<string, string> seen = inner.Stdout!.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries)
            .Select(p => p.Split('=', 2)).Where(p => p.Length == 2).ToDictionary(p => p[0], p => p[1]);
        Assert.True(inner.ExitCode == 0, $"inner exit {inner.ExitCode} signal {inner.Signal}: {inner.Stdout}");
        Assert.NotEqual("0", seen["devnull"]); // the premise: /dev/null cannot be opened in there
        Assert.Equal("0", seen["wrote"]);
        Assert.Equal("0", seen["read"]);
        Assert.StartsWith("pipe:", seen["in"], StringComparison.Ordinal);
        Assert.StartsWith("pipe:", seen["err"], StringComparison.Ordinal);
        Assert.StartsWith("pipe:", seen["helper-in"], StringComparison.Ordinal); // the helper's own substitutes
        Assert.NotEqual(seen["helper-in"], seen["in"]);
        Assert.NotEqual(seen["helper-err"], seen["err"]);
    }

    private static SpawnOutcome RunDriver(string testHost, string[] args)
    {
        var info = new ProcessStartInfo(testHost) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in (string[])["spawn", .. args])
            info.ArgumentList.Add(a);
        return TestHostRunner.RunSpawnDriver(info);
    }

    // bubblewrap's test-run.sh, cases 35 and 36: a nested bwrap run as /proc/self/exe in a new user namespace.
    private const string Recurse = "--unshare-user --uid 0 --gid 0 --cap-add ALL --bind / / --bind /proc /proc -- /proc/self/exe ";

    public static TheoryData<string, string, bool> SelfExe => new()
    {
        { Recurse + "--unshare-all --bind / / --bind /proc /proc echo hello", "hello", false },
        { Recurse + "--unshare-all --bind / / --bind /proc /proc echo hello", "hello", true },
        { Recurse + "--unshare-all " + Usr + "--ro-bind /etc /etc --proc /proc findmnt", "/usr", false },
        { Recurse + "--unshare-all " + Usr + "--ro-bind /etc /etc --proc /proc findmnt", "/usr", true },
        // The nested isolate is bwrap too: its usage and its rules.
        { Recurse + "--hostname x true", "", false },
    };

    [Theory]
    [MemberData(nameof(SelfExe))]
    public void Isolate_bwrap_runs_itself_for_proc_self_exe(string commandLine, string expected, bool unprivileged)
    {
        if (unprivileged)
            Host.RequireUnprivilegedRunner();
        else
            Host.RequireRoot();
        Assert.SkipUnless(File.Exists(Isolate), $"needs the isolate sample built ({Isolate}): dotnet build samples/Isolate -c Release");
        var r = Run((unprivileged ? Staging.ProgramForAnyUser(Isolate) : Isolate) + " bwrap", commandLine, unprivileged);
        if (expected.Length == 0)
        {
            Assert.Equal(1, r.Code);
            Assert.Equal("bwrap: Specifying --hostname requires --unshare-uts\n", r.Stderr);
            return;
        }
        Assert.True(r.Code == 0, $"exit {r.Code}: {r.Stderr}");
        Assert.Contains(expected, r.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Isolate_bwrap_says_why_when_the_sandbox_does_not_show_isolate_for_proc_self_exe()
    {
        Host.RequireRoot();
        Assert.SkipUnless(File.Exists(Isolate), $"needs the isolate sample built ({Isolate}): dotnet build samples/Isolate -c Release");
        var r = Run(Isolate + " bwrap", Usr + "--proc /proc -- /proc/self/exe --version", unprivileged: false);
        Assert.Equal(1, r.Code);
        Assert.StartsWith("bwrap: execvp /proc/self/exe: No such file or directory (isolate runs itself for /proc/self/exe, ", r.Stderr, StringComparison.Ordinal);
        Assert.Contains("which the sandbox does not show: bind it in)", r.Stderr, StringComparison.Ordinal);
    }
}
