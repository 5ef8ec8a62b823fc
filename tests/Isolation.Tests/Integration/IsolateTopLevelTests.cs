using static Isolation.Tests.Integration.IsolateUnshareTests;

namespace Isolation.Tests.Integration;

/// <summary><c>isolate</c> without a face: <c>--version</c> and <c>--help</c> as command-line tools answer them.</summary>
public sealed class IsolateTopLevelTests
{
    [Theory]
    [InlineData("--version")]
    [InlineData("-V")]
    public async Task Version_prints_isolate_s_version_on_stdout_and_exits_0(string option)
    {
        RequireIsolate();

        Outcome version = await RunAsync(Isolate, [option], unprivileged: false);
        Outcome faceVersion = await RunAsync(Isolate, ["unshare", "--version"], unprivileged: false);

        Assert.Equal((0, ""), (version.ExitCode, version.Stderr));
        Assert.Equal($"isolate {faceVersion.Stdout}", version.Stdout); // "isolate 1.2.3+commit\n"
        Assert.Matches(@"^isolate \d+\.\d+", version.Stdout);
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    public async Task Help_prints_the_usage_on_stdout_and_exits_0(string option)
    {
        RequireIsolate();

        Outcome help = await RunAsync(Isolate, [option], unprivileged: false);

        Assert.Equal((0, ""), (help.ExitCode, help.Stderr));
        Assert.StartsWith("usage: isolate unshare ", help.Stdout);
        Assert.Contains("isolate bwrap ", help.Stdout);
    }

    [Fact]
    public async Task An_unknown_word_prints_the_usage_on_stderr_and_exits_2()
    {
        RequireIsolate();

        Outcome unknown = await RunAsync(Isolate, ["frobnicate"], unprivileged: false);

        Assert.Equal((2, ""), (unknown.ExitCode, unknown.Stdout));
        Assert.StartsWith("usage: isolate unshare ", unknown.Stderr);
    }

    private static void RequireIsolate() =>
        Assert.SkipUnless(File.Exists(Isolate), $"needs the isolate sample built ({Isolate}): dotnet build samples/Isolate -c Release");
}
