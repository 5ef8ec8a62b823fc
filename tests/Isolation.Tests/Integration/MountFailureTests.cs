using Isolation.Mounts;
using Isolation.Tests.Infrastructure;
using static Isolation.Tests.Integration.MountRun;

namespace Isolation.Tests.Integration;

/// <summary>Failed mount plans: the error names the operation as written, and nothing is left behind. Run alone, so the count of descendant processes is ours.</summary>
[Collection(LeakChecks.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class MountFailureTests : IDisposable
{
    private readonly BusyboxRoot _root = new();
    private readonly List<string> _temps = [];
    private readonly string[] _hostMountsBefore = HostMounts();
    private readonly int[] _descendantsBefore = Host.Leftovers();

    public void Dispose()
    {
        _root.Dispose();
        foreach (string t in _temps)
            BusyboxRoot.DeleteTree(t);
        Assert.Equal(_hostMountsBefore, HostMounts());
        Assert.Equal(_descendantsBefore, Host.Leftovers());
    }

    private string Temp()
    {
        string path = BusyboxRoot.NewTempDirectory("isolation-mount-");
        _temps.Add(path);
        return path;
    }

    private NamespaceBuilder InRoot(Action<MountPlanBuilder> plan) => Rootless.WithMounts(m => plan(m.Root(_root.Path)));

    [Fact]
    public async Task A_failed_operation_names_the_call_and_leaves_no_mount_or_process_behind()
    {
        var e = await Assert.ThrowsAsync<SandboxSetupException>(() => ShAsync(
            InRoot(m => m.Tmpfs("/tmp").Dev().Bind("/nonexistent/isolation-source", "/data")), "true"));

        Assert.Equal(SetupStep.Mount, e.Step);
        Assert.Equal(3, e.MountIndex);
        Assert.Contains("mount #3: bind /nonexistent/isolation-source on /data", e.Message);
        Assert.Equal("ENOENT", e.ErrnoName);
        Assert.Contains("optional", e.Hint);
        Assert.False(e.CreatingTarget); // the source was missing: the bind itself failed
        Assert.Equal("mount #3: bind /nonexistent/isolation-source on /data", e.What);
    }

    [Fact]
    public async Task A_target_that_cannot_be_created_is_told_apart_from_a_failed_mount()
    {
        // The bind's target would be a directory under a file: making the mount point fails, before any mount.
        string source = Temp();

        var e = await Assert.ThrowsAsync<SandboxSetupException>(() => ShAsync(
            InRoot(m => m.Tmpfs("/tmp").File("/tmp/file", "x").Bind(source, "/tmp/file/data")), "true"));

        Assert.Equal((SetupStep.Mount, 3, "/tmp/file/data"), (e.Step, e.MountIndex, e.Path));
        Assert.True(e.CreatingTarget);
        Assert.Equal($"mount #3: bind {source} on /tmp/file/data (creating the target)", e.What);
        Assert.StartsWith(e.What + ": ", e.Message);
    }

    [Fact]
    public async Task A_failure_after_the_first_pivot_of_an_empty_root_leaves_nothing_behind()
    {
        var e = await Assert.ThrowsAsync<SandboxSetupException>(() => ShAsync(Rootless.WithMounts(m => m
            .EmptyRoot().Bind("/usr", "/usr").Chmod("/missing", (UnixFileMode)0x1ED)), "true"));

        Assert.Equal(2, e.MountIndex);
        Assert.Contains("chmod 755 /missing", e.Message);
        Assert.Equal("ENOENT", e.ErrnoName);
    }
}
