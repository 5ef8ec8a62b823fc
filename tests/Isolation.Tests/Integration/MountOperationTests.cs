using Isolation.Mounts;
using Isolation.Tests.Infrastructure;
using static Isolation.Tests.Integration.MountRun;

namespace Isolation.Tests.Integration;

/// <summary>Every operation of a mount plan, proved from inside a sandbox with a busybox root.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class MountOperationTests : IDisposable
{
    private readonly BusyboxRoot _root = new();
    private readonly List<string> _temps = [];
    private readonly string[] _hostMountsBefore = HostMounts();

    public void Dispose()
    {
        _root.Dispose();
        foreach (string t in _temps)
            BusyboxRoot.DeleteTree(t);
        Assert.Equal(_hostMountsBefore, HostMounts());
    }

    private string Temp(string prefix = "isolation-mount-")
    {
        string path = BusyboxRoot.NewTempDirectory(prefix);
        _temps.Add(path);
        return path;
    }

    private NamespaceBuilder InRoot(Action<MountPlanBuilder> plan) => Rootless.WithMounts(m => plan(m.Root(_root.Path)));

    [Fact]
    public async Task Dev_gives_a_minimal_dev_with_working_nodes_ptys_shm_and_links()
    {
        Result r = await ShAsync(InRoot(m => m.Proc().Dev()),
            "ls /dev; echo hi > /dev/null && echo null-ok; head -c 5 /dev/zero | wc -c; head -c 3 /dev/urandom | wc -c;"
            + " for l in ptmx fd stdin stdout stderr core; do readlink /dev/$l; done; touch /dev/shm/x && echo shm-ok; cat /proc/self/mountinfo");

        Assert.True(r.ExitCode == 0, r.Stderr);
        string[] lines = r.Lines;
        foreach (string node in (string[])["null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd", "stdin", "stdout", "stderr", "core"])
            Assert.Contains(node, lines);
        Assert.Contains("null-ok", lines);
        Assert.Contains("5", lines);
        Assert.Contains("3", lines);
        Assert.Contains("pts/ptmx", lines);
        Assert.Contains("/proc/self/fd", lines);
        Assert.Contains("/proc/self/fd/0", lines);
        Assert.Contains("/proc/kcore", lines);
        Assert.Contains("shm-ok", lines);
        Assert.Contains(" devpts ", MountLine(r.Stdout, "/dev/pts"));
        Assert.Contains(" tmpfs ", MountLine(r.Stdout, "/dev/shm"));
        Assert.True(HasOption(MountLine(r.Stdout, "/dev"), "nosuid"));
    }

    [Fact]
    public async Task Dev_works_on_the_host_tree_through_an_empty_root_with_everything_bound_in()
    {
        Result r = await ShAsync(Rootless.WithMounts(m => m.EmptyRoot().Bind("/", "/").Proc().Dev()),
            "ls /dev | wc -l; echo x > /dev/null && echo null-ok; test -e /etc/os-release && echo host-tree");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["14", "null-ok", "host-tree"], r.Lines.Select(l => l.Trim()));
    }

    [Fact]
    public async Task Devpts_alone_is_a_new_instance_with_a_ptmx_link()
    {
        Result r = await ShAsync(InRoot(m => m.Proc().Tmpfs("/dev").Devpts("/dev/pts")),
            "readlink /dev/ptmx; ls /dev/pts; grep ' /dev/pts ' /proc/self/mountinfo");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("pts/ptmx", r.Lines[0]);
        Assert.Contains("ptmx", r.Lines);
        Assert.Contains(" devpts ", MountLine(r.Stdout, "/dev/pts"));
        Assert.Contains("ptmxmode=666", MountLine(r.Stdout, "/dev/pts"));
    }

    [Fact]
    public async Task A_read_only_bind_is_read_only_for_its_submounts_too()
    {
        string dir = Temp();
        File.WriteAllText(Path.Combine(dir, "hello"), "from the host");
        Directory.CreateDirectory(Path.Combine(dir, "sub"));

        // The plan mounts a tmpfs inside the source first, so the source has a submount.
        Result r = await ShAsync(Rootless.WithMounts(m => m.Tmpfs(dir + "/sub").Root(_root.Path).BindReadOnly(dir, "/data")),
            "cat /data/hello; echo; touch /data/new 2>/dev/null || echo top-ro; touch /data/sub/new 2>/dev/null || echo sub-ro");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["from the host", "top-ro", "sub-ro"], r.Lines);
    }

    [Fact]
    public async Task A_bind_is_writable_and_shows_writes_on_the_host()
    {
        string dir = Temp();

        Result r = await ShAsync(InRoot(m => m.Bind(dir, "/data")), "echo written > /data/out");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("written\n", File.ReadAllText(Path.Combine(dir, "out")));
    }

    [Fact]
    public async Task Dev_bind_allows_device_nodes_and_a_plain_bind_does_not()
    {
        Result r = await ShAsync(InRoot(m => m.DevBind("/dev/null", "/devnull").Bind("/dev/null", "/plainnull")),
            "echo x > /devnull && echo dev-ok; echo x > /plainnull 2>/dev/null || echo plain-refused");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["dev-ok", "plain-refused"], r.Lines);
    }

    [Fact]
    public async Task An_optional_bind_of_a_missing_source_is_skipped()
    {
        Result r = await ShAsync(InRoot(m => m.Bind("/nonexistent/isolation-test", "/maybe", optional: true).Tmpfs("/tmp")),
            "test -e /maybe && echo exists || echo skipped");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["skipped"], r.Lines);
    }

    [Fact]
    public async Task Dir_symlink_file_and_chmod_create_what_they_say_with_exact_modes()
    {
        Result r = await ShAsync(InRoot(m => m
                .Dir("/a/b/c", (UnixFileMode)0x1C0 /* 0700 */)
                .Symlink("/a/b", "/link")
                .Symlink("/a/b", "/link") // the same link again is fine, as in bubblewrap
                .File("/etc/greeting", "hello\n", (UnixFileMode)0x180 /* 0600 */)
                .File("/etc/motd", "motd")
                .Chmod("/a", (UnixFileMode)0x1FF /* 0777 */)),
            "stat -c '%n %a' /a /a/b /a/b/c /etc/greeting /etc/motd; readlink /link; cat /etc/greeting");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["/a 777", "/a/b 755", "/a/b/c 700", "/etc/greeting 600", "/etc/motd 644", "/a/b", "hello"], r.Lines);
    }

    [Fact]
    public async Task A_file_can_be_filled_from_a_descriptor()
    {
        string dir = Temp();
        string source = Path.Combine(dir, "source");
        File.WriteAllText(source, "from a descriptor\n");
        using Microsoft.Win32.SafeHandles.SafeFileHandle handle = File.OpenHandle(source);

        Result r = await ShAsync(InRoot(m => m.FileFromDescriptor("/etc/from-fd", (int)handle.DangerousGetHandle(), (UnixFileMode)0x1A0 /* 0640 */)),
            "cat /etc/from-fd; stat -c %a /etc/from-fd");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["from a descriptor", "640"], r.Lines);
    }

    [Fact]
    public async Task Remount_read_only_freezes_a_mount_and_its_submounts()
    {
        Result r = await ShAsync(InRoot(m => m.Tmpfs("/data").Tmpfs("/data/sub").Dir("/data/sub/d").RemountReadOnly("/data")),
            "touch /data/x 2>/dev/null || echo top-ro; touch /data/sub/x 2>/dev/null || echo sub-ro; test -d /data/sub/d && echo made-before");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["top-ro", "sub-ro", "made-before"], r.Lines);
    }

    [Fact]
    public async Task Tmpfs_has_its_size_and_mode()
    {
        Result r = await ShAsync(InRoot(m => m.Proc().Tmpfs("/scratch", 1024 * 1024, (UnixFileMode)0x3FF /* 01777 */)),
            "stat -c %a /scratch; grep ' /scratch ' /proc/self/mountinfo");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("1777", r.Lines[0]);
        Assert.Contains("size=1024k", r.Lines[1]);
    }

    [Fact]
    public async Task Sysfs_and_mqueue_mount_in_their_namespaces()
    {
        Result r = await ShAsync(Rootless.WithNamespaces(Namespaces.User | Namespaces.Mount | Namespaces.Pid | Namespaces.Net | Namespaces.Ipc)
                .WithMounts(m => m.Root(_root.Path).Proc().Sysfs().Mqueue("/dev/mqueue")),
            "ls /sys/class/net; grep -E ' /sys | /dev/mqueue ' /proc/self/mountinfo");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("lo", r.Lines[0]); // the sandbox's own network devices
        Assert.Contains(r.Lines, l => l.Contains(" sysfs ", StringComparison.Ordinal) && HasOption(l, "ro"));
        Assert.Contains(r.Lines, l => l.Contains(" mqueue ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task An_overlay_with_an_upper_directory_keeps_writes_there_and_leaves_the_lower_alone()
    {
        string lower = Temp(), state = Temp();
        File.WriteAllText(Path.Combine(lower, "base"), "lower");
        string upper = Path.Combine(state, "upper"), work = Path.Combine(state, "work");
        Directory.CreateDirectory(upper);
        Directory.CreateDirectory(work);

        Result r = await ShAsync(InRoot(m => m.Overlay("/merged", [lower], upper, work)),
            "cat /merged/base; echo; echo new > /merged/added; echo changed > /merged/base; rm /merged/base; ls /merged");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["lower", "added"], r.Lines);
        Assert.Equal("lower", File.ReadAllText(Path.Combine(lower, "base")));
        Assert.Equal(["base"], Directory.GetFileSystemEntries(lower).Select(Path.GetFileName));
        Assert.Equal("new\n", File.ReadAllText(Path.Combine(upper, "added")));
    }

    [Fact]
    public async Task A_tmp_overlay_root_forgets_every_write_when_the_sandbox_exits()
    {
        string[] before = Directory.GetFileSystemEntries(_root.Path, "*", SearchOption.AllDirectories);

        Result r = await ShAsync(Rootless.WithMounts(m => m.Root(_root.Path).TmpOverlay("/", [_root.Path]).Proc()),
            "echo x > /etc/new && rm /etc/os-release && mkdir /newdir && ls /etc; grep ' / ' /proc/self/mountinfo");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("new", r.Lines[0]);
        Assert.Contains(" overlay ", r.Lines[1]);
        Assert.Equal(before, Directory.GetFileSystemEntries(_root.Path, "*", SearchOption.AllDirectories));
        Assert.True(File.Exists(_root["/etc/os-release"]));
    }

    [Fact]
    public async Task A_read_only_overlay_merges_layers_top_first_and_refuses_writes()
    {
        string top = Temp(), bottom = Temp();
        File.WriteAllText(Path.Combine(top, "both"), "top");
        File.WriteAllText(Path.Combine(bottom, "both"), "bottom");
        File.WriteAllText(Path.Combine(bottom, "only-bottom"), "b");

        Result r = await ShAsync(InRoot(m => m.ReadOnlyOverlay("/layers", [top, bottom])),
            "cat /layers/both; echo; cat /layers/only-bottom; echo; touch /layers/x 2>/dev/null || echo refused");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(["top", "b", "refused"], r.Lines);
    }

    [Fact]
    public async Task Default_masked_paths_are_hidden_and_read_only_paths_frozen()
    {
        // Only the paths this kernel has can be checked; a missing one is skipped by the plan as well.
        string[] files = ["/proc/keys", "/proc/timer_list", "/proc/interrupts", "/proc/kcore"];
        string[] present = files.Where(File.Exists).ToArray();
        Assert.SkipWhen(present.Length == 0, "this kernel has none of " + string.Join(", ", files));

        Result r = await ShAsync(InRoot(m => m.Proc().Dev().ContainerDefaults()),
            string.Concat(present.Select(f => $"echo {f} $(cat {f} | wc -c); ")) + "ls /proc/acpi | wc -l; cat /proc/self/mountinfo");

        Assert.True(r.ExitCode == 0, r.Stderr);
        foreach (string f in present)
            Assert.Contains($"{f} 0", r.Lines);
        if (Directory.Exists("/proc/acpi"))
            Assert.Equal("0", r.Lines[present.Length].Trim());
        Assert.True(HasOption(MountLine(r.Stdout, "/proc/sys"), "ro"), r.Stdout);
        if (File.Exists("/proc/sysrq-trigger"))
            Assert.True(HasOption(MountLine(r.Stdout, "/proc/sysrq-trigger"), "ro"), r.Stdout);
        Assert.NotNull(MountLine(r.Stdout, present[0]));
        Assert.Equal(MountPlanBuilder.DefaultMaskedPaths.Count, MountPlanBuilder.DefaultMaskedPaths.Distinct().Count());
    }

    [Fact]
    public async Task A_slave_mount_receives_what_is_mounted_on_its_master_and_not_the_other_way()
    {
        string dir = Temp();
        string a = dir + "/a", b = dir + "/b";

        Result r = await ShAsync(Rootless.WithMounts(m => m
                .Proc()
                .Tmpfs(a).SetPropagation(a, MountPropagation.Shared)
                .Bind(a, b).SetPropagation(b, MountPropagation.Slave)
                .Tmpfs(a + "/from-master")
                .Tmpfs(b + "/from-slave")),
            "cat /proc/self/mountinfo");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("shared:", MountLine(r.Stdout, a));
        Assert.Contains("master:", MountLine(r.Stdout, b));
        Assert.NotNull(MountLine(r.Stdout, b + "/from-master"));
        Assert.Null(MountLine(r.Stdout, a + "/from-slave"));
    }

    [Theory]
    [InlineData(MountPropagation.Shared, "shared:")]
    [InlineData(MountPropagation.Private, null)]
    public async Task The_whole_tree_is_made_private_by_default_or_shared_on_request(MountPropagation propagation, string? tag)
    {
        Result r = await ShAsync(Rootless.WithMounts(m => m.WithPropagation(propagation).Proc()), "cat /proc/self/mountinfo");

        Assert.True(r.ExitCode == 0, r.Stderr);
        string optional = string.Join(' ', MountLine(r.Stdout, "/")!.Split(' ').Skip(6).TakeWhile(f => f != "-"));
        if (tag is null)
            Assert.Equal("", optional);
        else
            Assert.StartsWith(tag, optional);
    }

    [Fact]
    public async Task A_mount_can_be_made_shared_or_slave_on_its_own()
    {
        Result r = await ShAsync(InRoot(m => m.Proc().Tmpfs("/shared").SetPropagation("/shared", MountPropagation.Shared).Tmpfs("/private")),
            "cat /proc/self/mountinfo");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("shared:", MountLine(r.Stdout, "/shared"));
        Assert.DoesNotContain("shared:", MountLine(r.Stdout, "/private"));
    }

    [Fact]
    public async Task A_failed_overlay_reports_the_overlay()
    {
        string lower = Temp();

        var e = await Assert.ThrowsAsync<SandboxSetupException>(() => ShAsync(
            InRoot(m => m.Overlay("/merged", [lower], "/nonexistent/upper", "/nonexistent/work")), "true"));

        Assert.Equal(1, e.MountIndex);
        Assert.Contains("overlay on /merged", e.Message);
        Assert.Equal("ENOENT", e.ErrnoName);
    }
}
