using System.Collections.Immutable;
using Isolation.Cgroups;
using static Isolation.Interop.Interop;

namespace Isolation.Tests.Unit;

/// <summary>
/// The ownership lock files and the reclaim rule against a temp directory laid out like a cgroup mount (file
/// logic only; the kernel's part is in Integration/CgroupReclaimTests.cs): a free lock is a dead owner, whose
/// recorded cgroups go; a held one, a foreign name or an unknown line leaves everything as it is.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class CgroupOwnerTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("isolation-owners-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string Store => Directory.CreateDirectory(Path.Join(_root, "owners")).FullName;

    private string Mount => Directory.CreateDirectory(Path.Join(_root, "cgroupfs")).FullName;

    /// <summary>A v2-only layout whose mount is the temp "cgroupfs".</summary>
    private CgroupLayout Layout => new(Mount, "/", "/", ImmutableDictionary<string, V1Hierarchy>.Empty);

    private static string NewToken() => Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));

    /// <summary>A lock file as a process of the library writes it, recording <paramref name="parents"/>.</summary>
    private string WriteLockFile(string token, params string[] parents)
    {
        string path = Path.Join(Store, token + ".lock");
        File.WriteAllLines(path, [CgroupOwner.Header, .. parents.Select(p => CgroupOwner.ParentLine + p)]);
        return path;
    }

    private string Cgroup(string relative) => Directory.CreateDirectory(Path.Join(Mount, relative)).FullName;

    [Fact]
    public void An_owner_holds_its_lock_file_and_records_each_parent_once()
    {
        CgroupOwner owner = CgroupOwner.Acquire(Store);
        string name = $"isolation-1-1-{owner.Token}";

        owner.Record("/sys/fs/cgroup/isolation", name);
        owner.Record("/sys/fs/cgroup/isolation", name);
        owner.Record("/sys/fs/cgroup/memory/isolation", name);
        owner.Record("/elsewhere", "isolation-1-1-0000000000000000"); // not one of its names

        Assert.Equal(Path.Join(Store, owner.Token + ".lock"), owner.LockPath);
        Assert.Equal([CgroupOwner.Header, "cgroup-parent /sys/fs/cgroup/isolation", "cgroup-parent /sys/fs/cgroup/memory/isolation"], CgroupFiles.TryRead(owner.LockPath!)!.Split('\n', StringSplitOptions.RemoveEmptyEntries)); // raw read(2): .NET's File takes a shared flock
        Assert.False(TryLock(owner.LockPath!), "another open file could take the owner's lock");
        Assert.Empty(Directory.GetFiles(Store, ".*"));
    }

    [Fact]
    public void The_leftovers_of_a_dead_owner_are_removed_with_its_lock_file()
    {
        string dead = NewToken();
        string a = Cgroup($"isolation/isolation-10-1-{dead}"), b = Cgroup($"isolation/isolation-10-2-{dead}");
        string lockFile = WriteLockFile(dead, Path.Join(Mount, "isolation"));

        CgroupReclaimResult result = CgroupReclaimer.Reclaim(Store, Layout, NewToken());

        Assert.Equal([a, b], result.RemovedDirectories.Order());
        Assert.Equal(1, result.DeadOwners);
        Assert.Empty(result.Failures);
        Assert.False(Directory.Exists(a) || Directory.Exists(b), "a dead owner's cgroup is still there");
        Assert.False(File.Exists(lockFile), "the dead owner's lock file is still there");
        Assert.False(Directory.Exists(Path.Join(Mount, "isolation")), "the library's empty default parent is still there");
    }

    [Fact]
    public void A_live_owners_cgroups_and_lock_file_are_untouched()
    {
        CgroupOwner live = CgroupOwner.Acquire(Store);
        string cgroup = Cgroup($"isolation/isolation-11-1-{live.Token}");
        live.Record(Path.Join(Mount, "isolation"), Path.GetFileName(cgroup));

        CgroupReclaimResult result = CgroupReclaimer.Reclaim(Store, Layout, NewToken());

        Assert.Empty(result.RemovedDirectories);
        Assert.Equal(1, result.LiveOwners);
        Assert.True(Directory.Exists(cgroup), "a live owner's cgroup was removed");
        Assert.True(File.Exists(live.LockPath), "a live owner's lock file was removed");
    }

    [Fact]
    public void Cgroups_no_dead_owner_names_are_never_touched()
    {
        string dead = NewToken(), other = NewToken();
        string[] foreign =
        [
            Cgroup($"isolation/isolation-12-1-{other}"),         // an owner with no lock file here: a detached sandbox, another user's
            Cgroup("isolation/isolation-12-1-abc"),              // an older version's name
            Cgroup($"isolation/not-ours-{dead}"),                // the token, but not our name
            Cgroup($"isolation/isolation-12-x-{dead}"),          // not a number
            Cgroup($"elsewhere/isolation-12-1-{dead}"),          // a directory the owner never recorded
        ];
        WriteLockFile(dead, Path.Join(Mount, "isolation"));

        CgroupReclaimResult result = CgroupReclaimer.Reclaim(Store, Layout, NewToken());

        Assert.Empty(result.RemovedDirectories);
        Assert.All(foreign, d => Assert.True(Directory.Exists(d), $"{d} was removed"));
    }

    [Fact]
    public void A_lock_file_with_a_line_this_version_does_not_know_is_kept()
    {
        string dead = NewToken();
        string cgroup = Cgroup($"isolation/isolation-13-1-{dead}");
        string lockFile = WriteLockFile(dead, Path.Join(Mount, "isolation"));
        File.AppendAllText(lockFile, "veth-pair vethXYZ\n");

        CgroupReclaimResult result = CgroupReclaimer.Reclaim(Store, Layout, NewToken());

        Assert.Equal([cgroup], result.RemovedDirectories);
        Assert.True(File.Exists(lockFile), "the lock file went although it names a leftover this version cannot reclaim");
    }

    [Fact]
    public void A_recorded_directory_outside_every_cgroup_mount_is_not_touched()
    {
        string dead = NewToken();
        string outside = Directory.CreateDirectory(Path.Join(_root, "not-a-cgroup-mount", $"isolation-14-1-{dead}")).FullName;
        string lockFile = WriteLockFile(dead, Path.GetDirectoryName(outside)!);

        CgroupReclaimResult result = CgroupReclaimer.Reclaim(Store, Layout, NewToken());

        Assert.Empty(result.RemovedDirectories);
        Assert.True(Directory.Exists(outside));
        Assert.True(File.Exists(lockFile), "the marker of a leftover this process cannot see went");
    }

    [Fact]
    public void This_processs_own_lock_file_is_skipped()
    {
        string own = NewToken();
        string cgroup = Cgroup($"isolation/isolation-15-1-{own}");
        string lockFile = WriteLockFile(own, Path.Join(Mount, "isolation"));

        CgroupReclaimResult result = CgroupReclaimer.Reclaim(Store, Layout, own);

        Assert.Empty(result.RemovedDirectories);
        Assert.True(Directory.Exists(cgroup) && File.Exists(lockFile));
    }

    [Fact]
    public void A_store_that_others_can_write_is_not_used()
    {
        string shared = Directory.CreateDirectory(Path.Join(_root, "shared")).FullName;
        Directory.CreateDirectory(Path.Join(shared, "isolation"));
        File.SetUnixFileMode(Path.Join(shared, "isolation"), (UnixFileMode)0x1ff); // 0777

        Assert.Null(CgroupOwner.UsableStore(shared, "isolation", geteuidForTests()));
        Assert.Equal(Path.Join(_root, "private", "isolation", "owners"),
            CgroupOwner.UsableStore(Directory.CreateDirectory(Path.Join(_root, "private")).FullName, "isolation", geteuidForTests()));
    }

    private static uint geteuidForTests() => Tmds.Linux.LibC.geteuid();

    /// <summary>Whether a new open file description can take the lock (flock locks conflict between descriptions, even in one process).</summary>
    private static bool TryLock(string path)
    {
        int fd = open_path(path, 0 /* O_RDONLY */ | 0x80000 /* O_CLOEXEC */, 0);
        Assert.True(fd >= 0);
        try
        {
            return flock(fd, LOCK_EX | LOCK_NB) == 0;
        }
        finally
        {
            Tmds.Linux.LibC.close(fd);
        }
    }
}
