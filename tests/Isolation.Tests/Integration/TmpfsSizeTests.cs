using Isolation.Security;
using Isolation.Tests.Infrastructure;
using static Isolation.Tests.Integration.IsolateUnshareTests;
using static Isolation.Tests.Integration.MountRun;

namespace Isolation.Tests.Integration;

/// <summary>
/// Every tmpfs under the untrusted preset and <c>isolate bwrap --untrusted</c> is bounded (issue #11, item 5);
/// a plain <c>Tmpfs()</c> or <c>--tmpfs</c> keeps the kernel's default, as bubblewrap does.
/// </summary>
public sealed class TmpfsSizeTests
{
    // The size a tmpfs mount shows in its super options (shmem_show_options: only when not the default).
    private const string Script = "for m in /tmp /dev/shm; do awk -v m=$m '$5 == m { print m, $NF }' /proc/self/mountinfo | tail -1; done";

    [Fact]
    public async Task The_preset_bounds_tmp_and_dev_shm_and_a_fill_stops_at_the_bound()
    {
        Result r = await ShAsync(NamespaceBuilder.ForUntrustedCode(),
            Script + "; dd if=/dev/zero of=/tmp/fill bs=1M count=100 2>/dev/null; echo dd=$?; du -m /tmp/fill | cut -f1");

        Assert.Contains("/tmp rw,size=65536k", r.Stdout);
        Assert.Contains("/dev/shm rw,size=65536k", r.Stdout);
        Assert.Contains("dd=1", r.Stdout); // ENOSPC
        Assert.True(int.Parse(r.Lines[^1]) <= 64, r.Stdout);
    }

    [Fact]
    public async Task The_default_size_can_be_changed_and_an_explicit_size_wins()
    {
        Result r = await ShAsync(NamespaceBuilder.ForUntrustedCode().WithDefaultTmpfsSize(8L << 20).WithMounts(m => m.Tmpfs("/tmp", 1L << 20)), Script);

        Assert.Contains("/tmp rw,size=1024k", r.Stdout);
        Assert.Contains("/dev/shm rw,size=8192k", r.Stdout);
    }

    [Fact]
    public async Task A_plain_tmpfs_keeps_the_kernel_default()
    {
        Result r = await ShAsync(Rootless.WithMounts(m => m.Tmpfs("/tmp")), Script);

        Assert.StartsWith("/tmp rw,mode=755", r.Lines[0]);
        Assert.DoesNotContain("size=", r.Lines[0]); // (the host's /dev/shm is not the sandbox's to judge)
        Assert.Throws<ArgumentOutOfRangeException>(() => new NamespaceBuilder().WithDefaultTmpfsSize(0));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Isolate_bwrap_untrusted_bounds_its_tmpfs_and_plain_bwrap_does_not(bool unprivileged)
    {
        Assert.SkipUnless(File.Exists(Isolate), $"the isolate sample is not built at {Isolate}");
        if (unprivileged)
            Host.RequireUnprivilegedRunner();
        string isolate = unprivileged ? IsolateForAnyUser : Isolate;
        string[] line = ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"];

        Outcome untrusted = await RunAsync(isolate, ["bwrap", "--untrusted", .. line, "--", "/bin/sh", "-c", Script], unprivileged);
        Outcome plain = await RunAsync(isolate, ["bwrap", "--unshare-pid", .. line, "--", "/bin/sh", "-c", Script], unprivileged);

        Assert.Contains($"/tmp rw,size={UntrustedCodePreset.DefaultTmpfsSize >> 10}k", untrusted.Stdout);
        Assert.Contains($"/dev/shm rw,size={UntrustedCodePreset.DefaultTmpfsSize >> 10}k", untrusted.Stdout);
        Assert.Contains("/tmp", plain.Stdout);
        Assert.DoesNotContain("size=", plain.Stdout);
    }
}
