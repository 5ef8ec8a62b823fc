using Isolation.IdMaps;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>uid/gid maps, setgroups and the identity the program runs as.</summary>
public sealed class IdentityTests
{
    [Fact]
    public async Task Map_current_user_to_root_makes_the_caller_root_inside()
    {
        EnvironmentReport report = await TestHostRunner.ReportAsync(new NamespaceBuilder().WithNamespaces(Namespaces.User).MapCurrentUserToRoot());
        Assert.Equal(0, report.Uid);
        Assert.Equal(0, report.Gid);
        Assert.Equal($"0 {CurrentUid()} 1", Normalize(report.UidMap));
        // capabilities(7): root of a new user namespace keeps the whole bounding set across execve.
        Assert.Equal(report.CapBnd, report.CapEff);
        Assert.NotEqual("0000000000000000", report.CapEff);
    }

    [Fact]
    public async Task Explicit_ranges_and_run_as_place_the_program_at_a_mapped_uid()
    {
        Host.RequireRoot();
        // The program runs as host uid 101000.
        EnvironmentReport report = await TestHostRunner.ReportAsAnotherHostUserAsync(new NamespaceBuilder()
            .WithNamespaces(Namespaces.User)
            .MapUsers(0, 100000, 65536)
            .MapGroups(0, 100000, 65536)
            .RunAs(1000, 1000, 2000, 3000));

        Assert.Equal(1000, report.Uid);
        Assert.Equal(1000, report.Gid);
        Assert.Equal("0 100000 65536", Normalize(report.UidMap));
        Assert.Equal("0 100000 65536", Normalize(report.GidMap));
        Assert.Equal("2000 3000", report.Groups);
        Assert.Equal("0000000000000000", report.CapEff);
    }

    [Fact]
    public async Task Several_ranges_can_be_mapped_by_root()
    {
        Host.RequireRoot();
        EnvironmentReport report = await TestHostRunner.ReportAsync(new NamespaceBuilder()
            .WithNamespaces(Namespaces.User)
            .MapUsers(0, 0, 1).MapUsers(1, 200000, 1000)
            .MapGroups(0, 0, 1).MapGroups(1, 200000, 1000));
        Assert.Equal(["0 0 1", "1 200000 1000"], report.UidMap!.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(Normalize));
    }

    [Fact]
    public async Task Setgroups_stays_allowed_for_root_and_can_be_denied()
    {
        Host.RequireRoot();
        NamespaceBuilder b = new NamespaceBuilder().WithNamespaces(Namespaces.User).MapCurrentUserToRoot();
        Assert.Equal("allow", (await TestHostRunner.ReportAsync(b)).Setgroups);
        Assert.Equal("deny", (await TestHostRunner.ReportAsync(b.WithSetgroups(SetgroupsPolicy.Deny))).Setgroups);
    }

    [Fact]
    public void Without_a_map_root_is_refused_at_build_because_the_program_would_keep_host_uid_0()
    {
        Host.RequireRoot();
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithNamespaces(Namespaces.User).Build());
        Assert.Contains("host uid 0", e.Message);
        Assert.Contains("MapUsers", e.Message);
        e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithNamespaces(Namespaces.User).MapUsers(0, 100000, 65536).Build());
        Assert.Contains("host gid 0", e.Message);
    }

    [Fact]
    public void Without_a_map_an_unprivileged_program_is_the_overflow_user()
    {
        Host.RequireUnprivilegedRunner();
        SpawnOutcome o = TestHostRunner.SpawnUnprivileged("--ns", "user", "--", "/bin/sh", "-c", "id -u; cat /proc/self/uid_map | wc -l");
        Assert.Null(o.ArgumentError);
        Assert.True(o.Started, o.Error?.Message);
        Assert.Equal(["65534", "0"], o.Stdout!.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public async Task Mapped_ids_that_leave_out_root_never_run_the_program_as_host_root()
    {
        Host.RequireRoot();
        // A 0600 file of host root's: the program must not read it, nor write into a root-owned directory.
        using var secret = new RootSecret();
        IsolationSpec spec = new NamespaceBuilder()
            .WithNamespaces(Namespaces.User)
            .MapUsers(0, 100000, 65536)
            .MapGroups(0, 100000, 65536)
            .WithStandardOutput(Stdio.Pipe)
            .Build();
        await using IsolatedProcess p = spec.Start("/bin/sh", "-c",
            $"id -u; id -g; grep -E '^Groups:' /proc/self/status; cat {secret.Path} && echo READ; touch {secret.Directory}/planted && echo WROTE; true");
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
        await p.WaitForExitAsync();

        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("0", lines[0]); // uid 0 inside, which is host uid 100000
        Assert.Equal("0", lines[1]);
        Assert.Equal("Groups:", lines[2].Trim());
        Assert.DoesNotContain("READ", output);
        Assert.DoesNotContain("WROTE", output);
        Assert.False(File.Exists(Path.Combine(secret.Directory, "planted")));
    }

    [Fact]
    public async Task Mapped_ids_without_0_run_the_program_as_the_first_mapped_id()
    {
        Host.RequireRoot();
        EnvironmentReport report = await TestHostRunner.ReportAsAnotherHostUserAsync(new NamespaceBuilder()
            .WithNamespaces(Namespaces.User)
            .MapUsers(1000, 101000, 10).MapUsers(500, 100500, 10)
            .MapGroups(2000, 102000, 1));
        Assert.Equal(500, report.Uid);
        Assert.Equal(2000, report.Gid);
    }

    [Fact]
    public void Running_as_an_unmapped_uid_is_refused_at_build()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithNamespaces(Namespaces.User).MapCurrentUserToRoot().RunAs(4242, 0).Build());
        Assert.Contains("uid 4242", e.Message);
        Assert.Contains("MapUsers", e.Message);
    }

    internal static string Normalize(string? map) =>
        string.Join(' ', (map ?? "").Split([' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries));

    private static string CurrentUid() => File.ReadLines("/proc/self/status").First(l => l.StartsWith("Uid:")).Split('\t', StringSplitOptions.RemoveEmptyEntries)[2];
}
