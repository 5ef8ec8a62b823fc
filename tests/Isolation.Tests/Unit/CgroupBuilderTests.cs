using Isolation.Cgroups;

namespace Isolation.Tests.Unit;

/// <summary>Cgroup and rlimit values are checked in Build(), before any system call.</summary>
public sealed class CgroupBuilderTests
{
    [Theory]
    [InlineData("memory-tiny", "at least 4096")]
    [InlineData("swap-alone", "requires MemoryMax")]
    [InlineData("high-above-max", "must not exceed")]
    [InlineData("pids-zero", "at least 1")]
    [InlineData("cpu-zero", "raise the fraction")]
    [InlineData("cpu-nan", "raise the fraction")]
    [InlineData("period-long", "1000–1000000")]
    [InlineData("weight", "1–10000")]
    [InlineData("io-weight", "1–10000")]
    [InlineData("cpuset", "list such as")]
    [InlineData("io-empty", "give at least one")]
    [InlineData("parent-dots", "'..'")]
    public void Each_bad_value_is_rejected_in_Build_with_what_to_do(string which, string expected)
    {
        NamespaceBuilder builder = new NamespaceBuilder().WithCgroup(c => _ = which switch
        {
            "memory-tiny" => c.MemoryMax(100),
            "swap-alone" => c.MemorySwapMax(0),
            "high-above-max" => c.MemoryMax(1 << 20).MemoryHigh(2 << 20),
            "pids-zero" => c.PidsMax(0),
            "cpu-zero" => c.CpuMax(0),
            "cpu-nan" => c.CpuMax(double.NaN),
            "period-long" => c.CpuMax(0.5, TimeSpan.FromSeconds(2)),
            "weight" => c.CpuWeight(0),
            "io-weight" => c.IoWeight(10001),
            "cpuset" => c.Cpuset("3-1"),
            "io-empty" => c.IoMax(new IoDeviceLimit(8, 0)),
            "parent-dots" => c.Parent("/a/../b"),
            _ => throw new ArgumentOutOfRangeException(nameof(which)),
        });

        var e = Assert.Throws<ArgumentException>(() => builder.Build());

        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void CpuMax_as_a_fraction_is_a_quota_per_period()
    {
        NamespaceBuilder builder = new NamespaceBuilder().WithCgroup(c => c.CpuMax(1.5, TimeSpan.FromMilliseconds(50)));

        Isolation.Cgroups.CgroupLimits limits = builder.State.Cgroup!.Limits;

        Assert.Equal(75_000, limits.CpuQuotaMicroseconds);
        Assert.Equal(50_000, limits.CpuPeriodMicroseconds);
    }

    [Fact]
    public void WithCgroup_appends_and_leaves_the_original_builder_unchanged()
    {
        NamespaceBuilder first = new NamespaceBuilder().WithCgroup(c => c.PidsMax(10));
        NamespaceBuilder second = first.WithCgroup(c => c.MemoryMax(1 << 20));

        Assert.Null(first.State.Cgroup!.Limits.MemoryMax);
        Assert.Equal(10, second.State.Cgroup!.Limits.PidsMax);
        Assert.Equal(1 << 20, second.State.Cgroup!.Limits.MemoryMax);
    }

    [Fact]
    public void A_later_rlimit_for_the_same_resource_replaces_the_earlier_one()
    {
        NamespaceBuilder builder = new NamespaceBuilder().WithRlimit(RlimitResource.NoFile, 10).WithRlimit(RlimitResource.NoFile, 20, 30);

        Assert.Equal([new Rlimit(RlimitResource.NoFile, 20, 30)], builder.State.Rlimits);
    }

    [Fact]
    public void An_unknown_rlimit_resource_is_rejected_in_Build()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithRlimit((RlimitResource)99, 1).Build());
        Assert.Contains("RlimitResource", e.Message);
    }
}
