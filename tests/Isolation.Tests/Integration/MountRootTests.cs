using Isolation.Mounts;
using Isolation.Tests.Infrastructure;
using static Isolation.Tests.Integration.MountRun;

namespace Isolation.Tests.Integration;

/// <summary>A new root: pivot_root into a directory or an empty tmpfs, with targets resolved inside it.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class MountRootTests
{
    [Fact]
    public async Task A_program_in_a_new_root_sees_only_the_root_and_what_is_mounted_into_it()
    {
        using var root = new BusyboxRoot();
        string[] before = HostMounts();

        Result r = await ShAsync(Rootless.WithMounts(m => m.Root(root.Path).Proc().Tmpfs("/tmp")),
            "ls /; cat /etc/os-release; test -e /usr && echo host-usr-visible; cat /proc/self/mountinfo");

        Assert.Equal(0, r.ExitCode);
        Assert.Contains("NAME=busybox-test", r.Stdout);
        Assert.DoesNotContain("host-usr-visible", r.Stdout);
        string[] top = r.Lines.TakeWhile(l => !l.StartsWith("NAME=", StringComparison.Ordinal)).ToArray();
        Assert.Equal(["bin", "dev", "etc", "proc", "sys", "tmp"], top.Order());
        string mountinfo = r.Stdout[r.Stdout.IndexOf("NAME=", StringComparison.Ordinal)..];
        Assert.NotNull(MountLine(mountinfo, "/"));
        Assert.NotNull(MountLine(mountinfo, "/proc"));
        Assert.NotNull(MountLine(mountinfo, "/tmp"));
        Assert.DoesNotContain(mountinfo.Split('\n'), l => l.Split(' ') is { Length: > 5 } f && f[4].StartsWith("/oldroot", StringComparison.Ordinal));
        Assert.Equal(before, HostMounts());
    }

    [Fact]
    public async Task Symlinks_in_the_image_resolve_inside_the_new_root_and_the_host_is_untouched()
    {
        using var root = new BusyboxRoot();
        string victim = BusyboxRoot.NewTempDirectory("isolation-victim-");
        try
        {
            // An image that points its mount points and files out of itself.
            Directory.Delete(root["/proc"]);
            File.CreateSymbolicLink(root["/proc"], "/etc");
            File.CreateSymbolicLink(root["/data"], victim);
            File.CreateSymbolicLink(root["/escape"], "../../../../../../" + victim.TrimStart('/'));
            Directory.CreateDirectory(root[victim]); // the root's own copy of the path the links name
            string[] hostEtc = Directory.GetFileSystemEntries("/etc");
            string[] before = HostMounts();

            Result r = await ShAsync(Rootless.WithMounts(m => m
                    .Root(root.Path)
                    .Proc("/proc")
                    .File("/data/pwned", "x")
                    .Dir("/data/newdir")
                    .File("/escape/pwned2", "y")
                    .Tmpfs("/escape/mnt")),
                "cat /data/pwned /escape/pwned2; echo; test -e /etc/self && echo proc-on-etc");

            Assert.Equal(0, r.ExitCode);
            Assert.Contains("xy", r.Stdout);
            Assert.Contains("proc-on-etc", r.Stdout);
            Assert.Empty(Directory.GetFileSystemEntries(victim));
            Assert.Equal(hostEtc, Directory.GetFileSystemEntries("/etc"));
            Assert.True(File.Exists(root[victim + "/pwned"]), "the file went to the root's own copy of the path");
            Assert.True(Directory.Exists(root[victim + "/newdir"]));
            Assert.Equal(before, HostMounts());
        }
        finally
        {
            BusyboxRoot.DeleteTree(victim);
        }
    }

    [Fact]
    public async Task Writing_through_a_link_that_leaves_the_root_fails_and_the_host_is_untouched()
    {
        using var root = new BusyboxRoot();
        string victim = BusyboxRoot.NewTempDirectory("isolation-victim-");
        try
        {
            File.CreateSymbolicLink(root["/data"], victim); // dangling inside the root
            string[] before = HostMounts();

            var e = await Assert.ThrowsAsync<SandboxSetupException>(() => ShAsync(Rootless.WithMounts(m => m
                .Root(root.Path).File("/data/pwned", "x")), "true"));

            Assert.Equal(SetupStep.Mount, e.Step);
            Assert.Equal(1, e.MountIndex);
            Assert.Equal("ENOENT", e.ErrnoName);
            Assert.Empty(Directory.GetFileSystemEntries(victim));
            Assert.Equal(before, HostMounts());
        }
        finally
        {
            BusyboxRoot.DeleteTree(victim);
        }
    }

    [Fact]
    public async Task An_empty_root_shows_only_what_the_plan_binds_in()
    {
        using var root = new BusyboxRoot();
        string[] before = HostMounts();

        Result r = await ShAsync(Rootless.WithMounts(m => m.EmptyRoot().BindReadOnly(root["/bin"], "/bin").Proc().Dir("/work", (UnixFileMode)0x1C0)),
            "ls -a /; stat -c %a /work; test -d /proc/self && echo proc");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["bin", "proc", "work"], r.Lines.Where(l => l is not "." and not "..").Take(3).Order());
        Assert.Contains("700", r.Lines);
        Assert.Contains("proc", r.Lines);
        Assert.Equal(before, HostMounts());
    }

    [Fact]
    public async Task A_read_only_root_refuses_writes_but_its_mounts_stay_writable()
    {
        using var root = new BusyboxRoot();

        Result r = await ShAsync(Rootless.WithMounts(m => m.Root(root.Path, readOnly: true).Tmpfs("/tmp")),
            "touch /newfile 2>/dev/null && echo root-writable; touch /tmp/x && echo tmp-writable");

        Assert.Equal(0, r.ExitCode);
        Assert.Equal(["tmp-writable"], r.Lines);
        Assert.False(File.Exists(root["/newfile"]));
    }

    [Fact]
    public async Task Mount_targets_are_created_as_directories_0755_and_files_0644()
    {
        using var root = new BusyboxRoot();
        string hostFile = Path.Combine(root.Path, "etc/os-release");

        Result r = await ShAsync(Rootless.WithMounts(m => m.Root(root.Path)
                .Tmpfs("/new/deep/dir")
                .BindReadOnly(hostFile, "/new/file")),
            "stat -c '%a %F' /new /new/deep /new/file");

        Assert.Equal(0, r.ExitCode);
        Assert.Equal(["755 directory", "755 directory", "644 regular file"], r.Lines);
    }

    [Fact]
    public async Task Pivot_into_a_root_works_without_a_user_namespace_as_root()
    {
        Host.RequireRoot();
        using var root = new BusyboxRoot();
        string[] before = HostMounts();

        Result r = await ShAsync(new NamespaceBuilder().WithNamespaces(Namespaces.Mount | Namespaces.Pid)
                .WithMounts(m => m.Root(root.Path).Proc().Dev()),
            "id -u; ls /dev");

        Assert.Equal(0, r.ExitCode);
        Assert.Equal("0", r.Lines[0]);
        Assert.Contains("null", r.Lines);
        Assert.Equal(before, HostMounts());
    }
}
