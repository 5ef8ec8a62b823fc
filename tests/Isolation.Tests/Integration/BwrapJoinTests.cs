using Isolation.Tests.Infrastructure;
using static Isolation.Tests.Integration.BwrapTests;

namespace Isolation.Tests.Integration;

/// <summary>
/// <c>isolate bwrap --userns FD --userns2 FD --pidns FD</c> against the real bwrap, with namespaces held by a process
/// util-linux <c>unshare</c> started (as root, or as uid 65534 for the unprivileged runs).
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class BwrapJoinTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Isolate_bwrap_joins_a_user_namespace_held_by_unshare_as_bwrap_does(bool unprivileged)
    {
        Require(unprivileged);
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: unprivileged, "--user", "--map-root-user");

        string commandLine = Usr + $"--userns 3 --unshare-net --unshare-pid --proc /proc -- /bin/sh -c 'readlink /proc/self/ns/user; id -u; cat /proc/net/dev | tail -n +3 | cut -d: -f1' 3<{holder.Path("user")}";

        AssertSame(commandLine, unprivileged);
        var isolate = Run(IsolateFor(unprivileged) + " bwrap", commandLine, unprivileged);
        Assert.Equal([holder.Namespace("user"), "0", "lo"], isolate.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim()));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Isolate_bwrap_joins_a_pid_namespace_and_nests_a_new_one_in_it_with_unshare_pid(bool unprivileged)
    {
        Require(unprivileged);
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: unprivileged, "--user", "--map-root-user", "--pid");
        string fds = $"3<{holder.Path("user")} 4<{holder.Path("pid")}";

        // The pid the program gets in a joined namespace depends on what ran there before: compare the namespace only.
        AssertSame(Usr + $"--userns 3 --pidns 4 --proc /proc -- /bin/sh -c 'readlink /proc/self/ns/pid' {fds}", unprivileged);
        // The processes /proc shows, counted by the shell itself (ls | grep raced: grep may not have started when ls read /proc).
        AssertSame(Usr + $"--userns 3 --pidns 4 --unshare-pid --proc /proc -- /bin/sh -c 'echo $$; set -- /proc/[0-9]*; echo $#' {fds}", unprivileged);
        var joined = Run(IsolateFor(unprivileged) + " bwrap", Usr + $"--userns 3 --pidns 4 --proc /proc -- /bin/readlink /proc/self/ns/pid {fds}", unprivileged);
        Assert.Equal(holder.Namespace("pid"), joined.Stdout.Trim());
    }

    [Fact]
    public void Isolate_bwrap_help_lists_the_join_options_in_bwraps_words()
    {
        Assert.SkipUnless(File.Exists(Isolate), $"needs the isolate sample built ({Isolate})");
        var help = Run(Isolate + " bwrap", "--help", unprivileged: false).Stdout;
        // bwrap 0.11.1's --help lines for the three options, word for word.
        Assert.Contains("    --userns FD                  Use this user namespace (cannot combine with --unshare-user)\n", help);
        Assert.Contains("    --userns2 FD                 After setup switch to this user namespace, only useful with --userns\n", help);
        Assert.Contains("    --pidns FD                   Use this pid namespace (as parent namespace if using --unshare-pid)\n", help);
    }

    [Fact]
    public void Isolate_bwrap_refuses_userns_with_unshare_user_in_bwraps_words()
    {
        Assert.SkipUnless(File.Exists(Isolate), $"needs the isolate sample built ({Isolate})");
        var isolate = Run(Isolate + " bwrap", Usr + "--userns 3 --unshare-user -- /bin/true 3</proc/self/ns/user", unprivileged: false);
        Assert.Equal(1, isolate.Code);
        Assert.Contains("--userns not compatible --unshare-user", isolate.Stderr);
    }

    [Fact]
    public void Isolate_bwrap_userns2_runs_the_program_in_the_nested_user_namespace()
    {
        Host.RequireRoot();
        RequireBoth();
        using NamespaceHolder outer = NamespaceHolder.Start(asNobody: false, "--user", "--map-root-user");
        using NamespaceHolder inner = NamespaceHolder.StartInUserNamespaceOf(outer, "--user", "--map-root-user");

        string commandLine = Usr + $"--userns 3 --userns2 4 --unshare-pid --proc /proc -- /bin/readlink /proc/self/ns/user 3<{outer.Path("user")} 4<{inner.Path("user")}";

        AssertSame(commandLine, unprivileged: false);
        Assert.Equal(inner.Namespace("user"), Run(Isolate + " bwrap", commandLine, unprivileged: false).Stdout.Trim());
    }

    private static void Require(bool unprivileged)
    {
        if (unprivileged)
            Host.RequireUnprivilegedRunner();
        else
            Host.RequireRoot();
        RequireBoth();
    }

    private static string IsolateFor(bool unprivileged) => unprivileged ? Staging.ProgramForAnyUser(Isolate) : Isolate;
}
