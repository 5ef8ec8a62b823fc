using Isolation.Security;

namespace Isolation.Tests.Integration;

/// <summary>Landlock's best effort down to the host's ABI, and the error when an ABI is required (no kernel needed).</summary>
public sealed class SecurityLandlockAbiTests
{
    private static LandlockPolicy Policy(Action<LandlockBuilder> configure)
    {
        LandlockPolicy? policy = new NamespaceBuilder().WithSecurity(s => s.WithLandlock(configure)).State.Security.Landlock;
        return policy!;
    }

    [Theory]
    [InlineData(1, 0x1fffUL)]
    [InlineData(2, 0x3fffUL)]
    [InlineData(3, 0x7fffUL)]
    [InlineData(4, 0x7fffUL)]
    [InlineData(5, 0xffffUL)]
    [InlineData(7, 0xffffUL)]
    public void Each_abi_handles_exactly_the_file_rights_it_knows(int abi, ulong fs)
    {
        Assert.Equal(fs, Policy(l => l.AllowRead("/usr")).Handled(abi).Fs);
    }

    [Fact]
    public void Tcp_rules_apply_from_abi_4_and_scopes_from_abi_6()
    {
        LandlockPolicy policy = Policy(l => l.AllowBindTcp(80).ScopeSignals().ScopeAbstractUnixSockets());

        Assert.Equal(0UL, policy.Handled(3).Net);
        Assert.Equal(3UL, policy.Handled(4).Net);
        Assert.Equal(0UL, policy.Handled(5).Scoped);
        Assert.Equal(3UL, policy.Handled(6).Scoped);
    }

    [Fact]
    public void Best_effort_on_a_host_without_landlock_applies_nothing()
    {
        (int abi, LandlockPolicy? applied) = SecurityCompiler.FitLandlock(Policy(l => l.AllowRead("/usr")), host: 0);

        Assert.Equal(0, abi);
        Assert.Null(applied);
    }

    [Fact]
    public void A_newer_host_is_used_up_to_the_newest_abi_this_library_knows()
    {
        (int abi, LandlockPolicy? applied) = SecurityCompiler.FitLandlock(Policy(l => l.AllowRead("/usr")), host: 9);

        Assert.Equal(7, abi);
        Assert.NotNull(applied);
    }

    [Fact]
    public void Required_landlock_on_a_host_without_it_fails_with_a_clear_error()
    {
        var e = Assert.Throws<PlatformNotSupportedException>(() => SecurityCompiler.FitLandlock(Policy(l => l.AllowRead("/usr").Require()), host: 0));
        Assert.Contains("does not offer it", e.Message);
    }

    [Fact]
    public void A_required_abi_above_the_hosts_fails_with_both_versions_named()
    {
        var e = Assert.Throws<PlatformNotSupportedException>(() => SecurityCompiler.FitLandlock(Policy(l => l.AllowBindTcp(80).Require(4)), host: 3));
        Assert.Contains("ABI 4", e.Message);
        Assert.Contains("ABI 3", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(8)]
    public void A_required_abi_out_of_range_is_rejected(int abi)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new NamespaceBuilder().WithSecurity(s => s.WithLandlock(l => l.Require(abi))));
    }
}
