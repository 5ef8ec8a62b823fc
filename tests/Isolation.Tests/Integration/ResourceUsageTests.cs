using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>ResourceUsage means the program's own figures: never the caller's memory (leak checks: the test holds 400 MiB, run alone).</summary>
[Collection(LeakChecks.Name)]
public sealed class ResourceUsageTests
{
    private static NamespaceBuilder[] Shapes =>
    [
        new NamespaceBuilder(), // the child shares the helper's memory until exec (CLONE_VM)
        NamespaceBuilder.ForUntrustedCode().WithCgroup(c => c.BestEffort()), // a private copy (it changes credentials)
        new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Pid).MapCurrentUserToRoot().WithInit(), // init forks the program
    ];

    [Fact]
    public async Task A_tiny_program_in_a_host_holding_400_MiB_reports_a_small_peak_or_none()
    {
        byte[] held = new byte[400 << 20];
        for (int i = 0; i < held.Length; i += 4096)
            held[i] = 1; // resident, so this process's high-water mark is above 400 MiB
        foreach (NamespaceBuilder b in Shapes)
        {
            SandboxResult r = await b.Build().RunAsync("/bin/true", []);
            Assert.True(r.ResourceUsage.MaxResidentSetBytes is null or < 16L << 20, $"reported {r.ResourceUsage.MaxResidentSetBytes} bytes for /bin/true");
        }
        GC.KeepAlive(held);
    }

    [Fact]
    public async Task A_program_that_holds_48_MiB_reports_its_own_peak()
    {
        // dash keeps a command substitution's output in memory: 48 MiB of it.
        foreach (NamespaceBuilder b in Shapes)
        {
            SandboxResult r = await b.Build().RunAsync("/bin/sh", ["-c", "x=$(head -c 50331648 /dev/zero | tr '\\0' a); echo ${#x}"]);
            Assert.Equal("50331648\n", r.StandardOutput);
            Assert.InRange(r.ResourceUsage.MaxResidentSetBytes ?? 0, 48L << 20, 400L << 20);
        }
    }

    [Fact]
    public async Task The_cgroups_memory_peak_is_a_separate_figure()
    {
        CgroupHost.Require("memory");
        // 32 MiB written to a tmpfs: charged to the cgroup (memory.peak), not to any process's resident set.
        IsolationSpec spec = new NamespaceBuilder().WithNamespaces(Namespaces.Mount).WithMounts(m => m.Tmpfs("/mnt"))
            .WithCgroup(c => c.MemoryMax(256L << 20)).Build();

        SandboxResult r = await spec.RunAsync("/bin/sh", ["-c", "head -c 33554432 /dev/zero > /mnt/f"]);

        Assert.True(r.Status.Success, r.ToString());
        Assert.True(r.CgroupStats!.MemoryPeakBytes >= 32L << 20, $"memory.peak {r.CgroupStats.MemoryPeakBytes}");
        Assert.True(r.ResourceUsage.MaxResidentSetBytes is null or < 16L << 20, $"maxrss {r.ResourceUsage.MaxResidentSetBytes}");
        Assert.Empty(CgroupHost.LeftOver());
    }
}
