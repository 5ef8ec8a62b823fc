namespace Isolation.Tests.Unit;

/// <summary>Build() checks the kernel's rules for joining namespaces before it opens anything, saying what to do.</summary>
public sealed class JoinValidationTests
{
    // A path that would fail to open: the rules below must be refused before Build() opens anything.
    private const string Missing = "/no/such/namespace";

    [Theory]
    [InlineData(Namespaces.None)]
    [InlineData(Namespaces.User | Namespaces.Net)]
    [InlineData((Namespaces)0x1)]
    public void A_join_names_exactly_one_kind(Namespaces kind)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new NamespaceBuilder().JoinNamespace(kind, Missing));
        Assert.Contains("one namespace at a time", e.Message);
    }

    [Theory]
    [InlineData(Namespaces.User)]
    [InlineData(Namespaces.Net)]
    [InlineData(Namespaces.Uts)]
    [InlineData(Namespaces.Ipc)]
    [InlineData(Namespaces.Cgroup)]
    [InlineData(Namespaces.Time)]
    public void A_kind_cannot_be_both_created_and_joined(Namespaces kind)
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .WithNamespaces(kind | (kind == Namespaces.User ? 0 : Namespaces.User)).JoinNamespace(kind, Missing).Build());
        Assert.Contains($"Namespaces.{kind} is both created (WithNamespaces) and joined", e.Message);
    }

    [Fact]
    public void A_joined_user_namespace_gets_no_id_maps_and_no_setgroups()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .JoinNamespace(Namespaces.User, Missing).MapUsers(0, 1000, 1).Build());
        Assert.Contains("A joined user namespace has its uid and gid maps already", e.Message);
        e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .JoinNamespace(Namespaces.User, Missing).WithSetgroups(IdMaps.SetgroupsPolicy.Deny).Build());
        Assert.Contains("a joined one has its own", e.Message);
    }

    [Fact]
    public void A_mount_plan_needs_a_copy_of_a_joined_mount_namespace()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .JoinNamespace(Namespaces.Mount, Missing).WithMounts(m => m.Tmpfs("/tmp")).Build());
        Assert.Contains("would change the joined mount namespace for every process in it. Add Namespaces.Mount", e.Message);
    }

    [Fact]
    public void A_joined_uts_namespace_keeps_its_names_and_a_joined_time_namespace_its_offsets()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .JoinNamespace(Namespaces.Uts, Missing).WithHostname("box").Build());
        Assert.Contains("would rename the joined UTS namespace", e.Message);
        e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .JoinNamespace(Namespaces.Time, Missing).WithTimeOffsets(TimeSpan.FromDays(1), TimeSpan.Zero).Build());
        Assert.Contains("a joined one keeps its own", e.Message);
    }

    [Fact]
    public void The_rules_pass_and_build_opens_the_path_naming_it_when_it_is_missing()
    {
        // Pid and mount may be joined and created: a nested PID namespace, a copy of the joined mount table.
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .WithNamespaces(Namespaces.User | Namespaces.Pid | Namespaces.Mount).MapCurrentUserToRoot()
            .JoinNamespace(Namespaces.Pid, Missing).WithMounts(m => m.Proc()).Build());
        Assert.Contains($"JoinNamespace(Namespaces.Pid, ...): cannot open '{Missing}'", e.Message);
        Assert.Contains("ENOENT", e.Message);
    }

    [Fact]
    public void A_later_join_of_the_same_kind_replaces_the_earlier_one()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .JoinNamespace(Namespaces.Net, "/proc/self/ns/net").JoinNamespace(Namespaces.Net, Missing).Build());
        Assert.Contains($"'{Missing}'", e.Message);
    }
}
