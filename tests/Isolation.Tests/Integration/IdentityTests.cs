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
    public async Task Without_a_map_the_program_is_the_overflow_user()
    {
        EnvironmentReport report = await TestHostRunner.ReportAsync(new NamespaceBuilder().WithNamespaces(Namespaces.User));
        Assert.Equal(65534, report.Uid);
        Assert.Equal("", Normalize(report.UidMap));
    }

    [Fact]
    public void Running_as_an_unmapped_uid_fails_at_the_setuid_step()
    {
        IsolationSpec spec = new NamespaceBuilder().WithNamespaces(Namespaces.User).MapCurrentUserToRoot().RunAs(4242, 0).Build();
        var e = Assert.Throws<SandboxSetupException>(() => spec.Start("/bin/true"));
        Assert.Equal(SetupStep.SetUid, e.Step);
        Assert.Equal("EINVAL", e.ErrnoName);
        Assert.Contains("not mapped", e.Hint);
    }

    internal static string Normalize(string? map) =>
        string.Join(' ', (map ?? "").Split([' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries));

    private static string CurrentUid() => File.ReadLines("/proc/self/status").First(l => l.StartsWith("Uid:")).Split('\t', StringSplitOptions.RemoveEmptyEntries)[2];
}
