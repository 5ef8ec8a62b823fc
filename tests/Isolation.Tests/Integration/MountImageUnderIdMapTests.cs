using Isolation.TestHost;
using Isolation.Tests.Infrastructure;
using static Isolation.Tests.Integration.MountRun;

namespace Isolation.Tests.Integration;

/// <summary>
/// README's image recipe, <c>Root(img).TmpOverlay("/", [img])</c>, with a root-owned image: as root under a
/// 0→100000 map (the program must never be host root) and as an unprivileged user with its own one-id map.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class MountImageUnderIdMapTests
{
    private const string Script =
        "id -u; cat /etc/os-release; stat -c %u /etc; cat /etc/secret 2>/dev/null || echo secret-unreadable; " +
        "echo x > /written && echo root-writable; echo y > /tmp/t && echo tmp-writable; " +
        "echo z > /etc/written 2>/dev/null || echo etc-not-writable; true";

    /// <summary>The README recipe, word for word, with the ids of the map and the image's path filled in.</summary>
    private static NamespaceBuilder Recipe(NamespaceBuilder builder, string image) => builder
        .WithNamespaces(Namespaces.User | Namespaces.Mount | Namespaces.Pid)
        .WithMounts(m => m
            .Root(image)
            .TmpOverlay("/", [image])
            .Proc().Dev().Tmpfs("/tmp", mode: (UnixFileMode)0x3FF)
            .BindReadOnly("/etc/resolv.conf", "/etc/resolv.conf", optional: true)
            .ContainerDefaults());

    /// <summary>The recipe as root, with root inside mapped to host 100000.</summary>
    private static NamespaceBuilder UnderMap(BusyboxRoot image) =>
        Recipe(new NamespaceBuilder(), image.Path).MapUsers(0, 100000, 65536).MapGroups(0, 100000, 65536);

    /// <summary>A busybox root owned by host root, with a root-only file the sandbox must not read.</summary>
    private static BusyboxRoot RootOwnedImage()
    {
        var image = new BusyboxRoot();
        File.WriteAllText(image["/etc/secret"], "host-root-only\n");
        File.SetUnixFileMode(image["/etc/secret"], UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllText(image["/etc/resolv.conf"], ""); // distribution images ship the mount points they expect
        return image;
    }

    [Fact]
    public async Task The_README_image_recipe_runs_as_written_as_root_under_a_0_to_100000_map()
    {
        Host.RequireRoot();
        using BusyboxRoot image = RootOwnedImage();
        string[] before = Directory.GetFileSystemEntries(image.Path, "*", SearchOption.AllDirectories);
        string[] mounts = HostMounts();

        Result r = await ShAsync(UnderMap(image), Script);

        Assert.True(r.ExitCode == 0, r.Stderr);
        // Root inside; the image's owner (host root) is not mapped, so its files show as the overflow id and
        // its root-only file stays unreadable: the program is host uid 100000, never host root.
        Assert.Equal(["0", "NAME=busybox-test", "65534", "secret-unreadable", "root-writable", "tmp-writable", "etc-not-writable"], r.Lines);
        Assert.Equal(before, Directory.GetFileSystemEntries(image.Path, "*", SearchOption.AllDirectories));
        Assert.Equal(mounts, HostMounts());
    }

    [Fact]
    public async Task A_mount_point_a_root_owned_image_lacks_fails_under_a_map_with_the_fix_named()
    {
        Host.RequireRoot();
        using BusyboxRoot image = RootOwnedImage();
        NamespaceBuilder builder = UnderMap(image)
            .WithMounts(m => m.BindReadOnly("/etc/hostname", "/etc/new-mount-point"));
        string[] mounts = HostMounts();

        var e = await Assert.ThrowsAsync<SandboxSetupException>(() => ShAsync(builder, "true"));

        Assert.Equal("EACCES", e.ErrnoName);
        Assert.Contains("ro-bind /etc/hostname on /etc/new-mount-point (creating the target)", e.Message);
        Assert.Contains("chown -R 100000:100000", e.Message);
        Assert.Equal(mounts, HostMounts());
    }

    [Fact]
    public async Task A_missing_overlay_layer_is_named_in_the_hint()
    {
        Host.RequireRoot();
        using BusyboxRoot image = RootOwnedImage();
        NamespaceBuilder builder = UnderMap(image)
            .WithMounts(m => m.TmpOverlay("/mnt", ["/nonexistent/isolation-layer"]));

        var e = await Assert.ThrowsAsync<SandboxSetupException>(() => ShAsync(builder, "true"));

        Assert.Equal("ENOENT", e.ErrnoName);
        Assert.Contains("a lower layer (/nonexistent/isolation-layer) does not exist", e.Message);
    }

    [Fact]
    public void The_README_image_recipe_runs_for_an_unprivileged_user_with_a_root_owned_image()
    {
        Host.RequireUnprivilegedRunner();
        using BusyboxRoot image = RootOwnedImage();
        string[] before = Directory.GetFileSystemEntries(image.Path, "*", SearchOption.AllDirectories);
        string[] mounts = HostMounts();

        SpawnOutcome o = TestHostRunner.SpawnUnprivileged(["--ns", "user,mount,pid", "--map-root", "--root", image.Path,
            "--tmp-overlay", "/:" + image.Path, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--mask-defaults",
            "--", "/bin/sh", "-c", Script]);

        Assert.True(o.Started, o.Error?.Message ?? o.ArgumentError);
        Assert.True(o.ExitCode == 0, o.Stdout);
        Assert.Equal(["0", "NAME=busybox-test", "65534", "secret-unreadable", "root-writable", "tmp-writable", "etc-not-writable"],
            o.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(before, Directory.GetFileSystemEntries(image.Path, "*", SearchOption.AllDirectories));
        Assert.Equal(mounts, HostMounts());
    }
}
