using Isolation.Security;

namespace Isolation.Tests.Unit;

/// <summary>Capability names, masks and the builder's validation of the security settings.</summary>
public sealed class CapabilityTests
{
    [Theory]
    [InlineData("CAP_NET_BIND_SERVICE", Capability.CAP_NET_BIND_SERVICE)]
    [InlineData("cap_net_bind_service", Capability.CAP_NET_BIND_SERVICE)]
    [InlineData("NET_BIND_SERVICE", Capability.CAP_NET_BIND_SERVICE)]
    [InlineData(" sys_admin ", Capability.CAP_SYS_ADMIN)]
    [InlineData("CAP_CHECKPOINT_RESTORE", Capability.CAP_CHECKPOINT_RESTORE)]
    public void A_capability_is_parsed_by_any_of_its_usual_names(string name, Capability expected)
    {
        Assert.Equal(expected, Capabilities.Parse(name));
    }

    [Theory]
    [InlineData("CAP_NET_BIND")]
    [InlineData("12")]
    [InlineData("CAP_12")]
    [InlineData("")]
    public void An_unknown_capability_name_is_rejected_with_the_valid_names(string name)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => Capabilities.Parse(name));
        if (name.Length > 0)
            Assert.Contains("CAP_NET_BIND_SERVICE", e.Message);
    }

    [Fact]
    public void Masks_match_the_kernels_bit_numbers()
    {
        Assert.Equal(0x400UL, Capabilities.ToMask([Capability.CAP_NET_BIND_SERVICE]));
        Assert.Equal(0x1ffffffffffUL, Capabilities.All); // CapBnd of a full set on Linux 5.9+
        Assert.Equal([Capability.CAP_CHOWN, Capability.CAP_SYS_ADMIN], Capabilities.FromMask(0x200001));
    }

    [Fact]
    public void Securebits_without_a_capability_choice_are_rejected()
    {
        var builder = new NamespaceBuilder().WithSecurity(s => s.WithSecureBits(SecureBits.SECBIT_NOROOT));

        var e = Assert.Throws<ArgumentException>(() => builder.Build());
        Assert.Contains("DropAllCapabilities()", e.Message);
    }

    [Fact]
    public void Disabling_nested_user_namespaces_requires_a_user_namespace()
    {
        var builder = new NamespaceBuilder().WithSecurity(s => s.DisableNestedUserNamespaces());

        var e = Assert.Throws<ArgumentException>(() => builder.Build());
        Assert.Contains("Namespaces.User", e.Message);
    }

    [Fact]
    public void Landlock_without_no_new_privs_is_rejected_when_CAP_SYS_ADMIN_is_dropped()
    {
        var builder = new NamespaceBuilder().WithSecurity(s => s.DropAllCapabilities().WithLandlock(l => l.AllowRead("/usr")));

        var e = Assert.Throws<ArgumentException>(() => builder.Build());
        Assert.Contains("NoNewPrivileges()", e.Message);
    }

    [Fact]
    public void A_relative_landlock_path_is_rejected()
    {
        Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithSecurity(s => s.WithLandlock(l => l.AllowRead("usr"))));
    }

    [Fact]
    public void Dropping_ALL_by_name_drops_every_capability_and_add_puts_one_back()
    {
        var builder = new NamespaceBuilder().WithSecurity(s => s.DropCapabilities("ALL").AddCapabilities("net_bind_service"));

        Assert.Equal(0x400UL, builder.State.Security.KeepCapabilities);
    }

    [Fact]
    public void The_untrusted_preset_builds_and_composes_every_control()
    {
        NamespaceBuilder builder = NamespaceBuilder.ForUntrustedCode();
        var security = builder.State.Security;

        Assert.Equal(0UL, security.KeepCapabilities);
        Assert.True(security.NoNewPrivileges);
        Assert.True(security.DisableUserNamespaces);
        Assert.Single(security.SeccompProfiles);
        Assert.True(builder.State.NewSession);
        Assert.Equal(9, builder.State.DeathSignal);
        Assert.NotNull(builder.State.Root);
        Assert.True(builder.State.ReadOnlyRoot);
        Assert.Equal(Namespaces.User | Namespaces.Pid | Namespaces.Mount | Namespaces.Ipc | Namespaces.Uts | Namespaces.Net | Namespaces.Cgroup, builder.State.Namespaces);
        builder.Build();
    }
}
