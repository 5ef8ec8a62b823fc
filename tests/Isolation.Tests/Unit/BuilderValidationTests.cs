using Isolation.Mounts;

namespace Isolation.Tests.Unit;

/// <summary>Build() rejects every invalid combination with a message that says what to do.</summary>
public sealed class BuilderValidationTests
{
    [Fact]
    public void Proc_without_pid_and_mount_namespaces_is_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .WithNamespaces(Namespaces.User | Namespaces.Mount).MapCurrentUserToRoot()
            .WithMounts(m => m.Proc("/proc")).Build());
        Assert.Contains("requires Namespaces.Pid and Namespaces.Mount", e.Message);
    }

    [Fact]
    public void Proc_of_the_callers_pid_namespace_is_an_explicit_choice_refused_from_a_new_user_namespace()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .WithNamespaces(Namespaces.User | Namespaces.Mount).MapCurrentUserToRoot()
            .WithMounts(m => m.Proc("/proc", callerPidNamespace: true)).Build());
        Assert.Contains("cannot be mounted from a new user namespace", e.Message);
        // Without a user namespace it builds (the kernel allows it to root).
        new NamespaceBuilder().WithNamespaces(Namespaces.Mount).WithMounts(m => m.Proc("/proc", callerPidNamespace: true)).Build();
    }

    [Fact]
    public void Sysfs_in_a_user_namespace_without_a_network_namespace_is_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .WithNamespaces(Namespaces.User | Namespaces.Mount).MapCurrentUserToRoot()
            .WithMounts(m => m.Sysfs()).Build());
        Assert.Contains("requires Namespaces.Net", e.Message);
        new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Mount | Namespaces.Net).MapCurrentUserToRoot().WithMounts(m => m.Sysfs()).Build();
    }

    [Fact]
    public void A_mount_plan_without_a_mount_namespace_is_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .WithMounts(m => m.Tmpfs("/tmp")).Build());
        Assert.Contains("requires Namespaces.Mount", e.Message);
    }

    [Fact]
    public void Id_maps_without_a_user_namespace_are_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .WithNamespaces(Namespaces.Pid).MapCurrentUserToRoot().Build());
        Assert.Contains("requires Namespaces.User", e.Message);
    }

    [Fact]
    public void A_hostname_without_a_uts_namespace_is_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithHostname("x").Build());
        Assert.Contains("requires Namespaces.Uts", e.Message);
    }

    [Fact]
    public void Time_offsets_without_a_time_namespace_are_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithTimeOffsets(TimeSpan.FromSeconds(1), TimeSpan.Zero).Build());
        Assert.Contains("require Namespaces.Time", e.Message);
    }

    [Theory]
    [InlineData("proc")]
    [InlineData("relative/path")]
    public void Relative_mount_paths_are_rejected(string path)
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithMounts(m => m.Tmpfs(path)));
        Assert.Contains("relative", e.Message);
    }

    [Fact]
    public void Nul_bytes_are_rejected_in_paths_arguments_and_environment()
    {
        Assert.Contains("NUL", Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithMounts(m => m.Tmpfs("/tm\0p"))).Message);
        Assert.Contains("NUL", Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithEnvironment(e => e.Set("A", "b\0c"))).Message);
        Assert.Contains("NUL", Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithHostname("a\0b")).Message);
        IsolationSpec spec = new NamespaceBuilder().Build();
        Assert.Contains("NUL", Assert.Throws<ArgumentException>(() => spec.Start("/bin/echo", "a\0b")).Message);
        Assert.Contains("NUL", Assert.Throws<ArgumentException>(() => spec.Start("/bin/ec\0ho")).Message);
    }

    [Fact]
    public void Overlapping_uid_ranges_are_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithNamespaces(Namespaces.User)
            .MapUsers(0, 100000, 1000).MapUsers(500, 200000, 10).Build());
        Assert.Contains("overlap inside", e.Message);
        e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithNamespaces(Namespaces.User)
            .MapGroups(0, 100000, 1000).MapGroups(2000, 100500, 10).Build());
        Assert.Contains("overlap outside", e.Message);
    }

    [Fact]
    public void A_zero_length_range_is_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithNamespaces(Namespaces.User).MapUsers(0, 0, 0).Build());
        Assert.Contains("count of 0", e.Message);
    }

    [Fact]
    public void Environment_names_with_equals_signs_are_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithEnvironment(env => env.Set("A=B", "c")));
        Assert.Contains("'='", e.Message);
    }

    [Fact]
    public void A_hostname_longer_than_64_bytes_is_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithHostname(new string('h', 65)));
        Assert.Contains("64 bytes", e.Message);
    }

    [Fact]
    public void Builders_are_immutable_and_can_be_specialised()
    {
        NamespaceBuilder common = new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Mount).MapCurrentUserToRoot();
        NamespaceBuilder withTmp = common.WithMounts(m => m.Tmpfs("/tmp"));
        NamespaceBuilder withProc = common.WithNamespaces(Namespaces.User | Namespaces.Mount | Namespaces.Pid).WithMounts(m => m.Proc());

        Assert.Empty(common.State.Mounts);
        Assert.Single(withTmp.State.Mounts);
        Assert.Equal("proc on /proc", Assert.Single(withProc.State.Mounts).Description);
        Assert.Equal(Namespaces.User | Namespaces.Mount, common.State.Namespaces);
    }

    [Fact]
    public void Unknown_namespace_flags_and_bad_signals_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new NamespaceBuilder().WithNamespaces((Namespaces)1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new NamespaceBuilder().WithDieWithParent(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new NamespaceBuilder().WithTimeout(TimeSpan.Zero));
        Assert.Throws<ArgumentOutOfRangeException>(() => new NamespaceBuilder().WithMounts(m => m.WithPropagation((MountPropagation)42)));
    }
}
