using Isolation.Tests.Infrastructure;
using Isolation.TestHost;
using Microsoft.Win32.SafeHandles;

namespace Isolation.Tests.Integration;

/// <summary>
/// JoinNamespace: a sandbox joins namespaces held by another process (util-linux unshare ... sleep), proved from inside by
/// the /proc/self/ns inodes, as root and as uid 65534.
/// </summary>
public sealed class JoinNamespaceTests
{
    [Theory]
    [InlineData(Namespaces.Net, "net", "--net")]
    [InlineData(Namespaces.Uts, "uts", "--uts")]
    [InlineData(Namespaces.Ipc, "ipc", "--ipc")]
    [InlineData(Namespaces.Mount, "mnt", "--mount")]
    [InlineData(Namespaces.Cgroup, "cgroup", "--cgroup")]
    [InlineData(Namespaces.Time, "time", "--time")]
    [InlineData(Namespaces.Pid, "pid", "--pid")]
    [InlineData(Namespaces.User, "user", "--user")]
    public async Task A_sandbox_joins_a_namespace_of_each_kind_and_shares_the_others(Namespaces kind, string procName, string unshareFlag)
    {
        Host.RequireRoot();
        if (kind == Namespaces.Time)
            Host.RequireTimeNamespace();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: false, unshareFlag);

        EnvironmentReport report = await TestHostRunner.ReportAsync(new NamespaceBuilder().JoinNamespace(kind, holder.Path(procName)));

        Assert.Equal(holder.Namespace(procName), report.Namespaces[procName]);
        Assert.NotEqual(Host.Namespace(procName), report.Namespaces[procName]);
        foreach ((string name, string inode) in report.Namespaces)
        {
            if (name != procName)
                Assert.Equal(Host.Namespace(name), inode);
        }
    }

    [Fact]
    public async Task A_sandbox_joins_a_user_namespace_held_by_a_sleeping_process_and_sees_its_inode()
    {
        Host.RequireRoot();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: false, "--user", "--map-root-user");
        IsolationSpec spec;
        using (SafeFileHandle handle = File.OpenHandle(holder.Path("user")))
            spec = new NamespaceBuilder().JoinNamespace(Namespaces.User, handle).WithStandardOutput(Stdio.Pipe).Build();
        // Build() took its own copy of the descriptor: the caller's is closed now.

        string[] lines = await OutputOf(spec, "readlink /proc/self/ns/user; cat /proc/self/uid_map; id -u");

        Assert.Equal(holder.Namespace("user"), lines[0]);
        Assert.Equal("0 0 1", string.Join(' ', lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)));
        Assert.Equal("0", lines[2]);
        Assert.Equal(Namespaces.User, spec.JoinedNamespaces);
    }

    [Fact]
    public async Task A_pid_namespace_created_with_a_joined_one_is_nested_in_it_and_the_program_is_its_pid_1()
    {
        Host.RequireRoot();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: false, "--pid");
        IsolationSpec spec = new NamespaceBuilder()
            .JoinNamespace(Namespaces.Pid, holder.Path("pid"))
            .WithNamespaces(Namespaces.Pid)
            .WithStandardOutput(Stdio.Pipe)
            .Build();

        // NSpid: the pid in each PID namespace from the host's down: host, the holder's, the new one (as PID 1).
        string[] lines = await OutputOf(spec, "exec grep NSpid /proc/self/status");

        string[] pids = lines[0].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1..];
        Assert.Equal(3, pids.Length);
        Assert.Equal("1", pids[2]);
        Assert.NotEqual("1", pids[1]);
    }

    [Fact]
    public async Task In_a_joined_pid_namespace_the_program_is_not_pid_1()
    {
        Host.RequireRoot();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: false, "--pid");
        IsolationSpec spec = new NamespaceBuilder().JoinNamespace(Namespaces.Pid, holder.Path("pid")).WithStandardOutput(Stdio.Pipe).Build();

        string[] lines = await OutputOf(spec, "exec grep NSpid /proc/self/status");

        string[] pids = lines[0].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1..];
        Assert.Equal(2, pids.Length);
        Assert.NotEqual("1", pids[1]);
    }

    [Fact]
    public async Task A_mount_plan_runs_in_a_copy_of_a_joined_mount_namespace_and_leaves_the_joined_one_alone()
    {
        Host.RequireRoot();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: false, "--mount");
        using var dir = new TempDirectory(); // the mount point is made on the shared file system: in a directory removed with the test
        string marker = Path.Combine(dir.Path, "joined");

        EnvironmentReport report = await TestHostRunner.ReportAsync(new NamespaceBuilder()
            .JoinNamespace(Namespaces.Mount, holder.Path("mnt"))
            .WithNamespaces(Namespaces.Mount)
            .WithMounts(m => m.Tmpfs(marker)));

        Assert.Contains($" {marker} ", report.MountInfo);
        Assert.NotEqual(holder.Namespace("mnt"), report.Namespaces["mnt"]);
        Assert.DoesNotContain(marker, File.ReadAllText($"/proc/{holder.Pid}/mountinfo"));
        Assert.DoesNotContain(marker, File.ReadAllText("/proc/self/mountinfo"));
    }

    [Fact]
    public async Task After_setup_the_program_moves_into_a_nested_user_namespace_without_privilege_over_its_mounts()
    {
        // bubblewrap's --userns with --userns2: the mount plan runs with privilege in the first user namespace, the
        // program runs in the second, nested one, which owns nothing of the mount namespace.
        Host.RequireRoot();
        using NamespaceHolder outer = NamespaceHolder.Start(asNobody: false, "--user", "--map-root-user");
        using NamespaceHolder inner = NamespaceHolder.StartInUserNamespaceOf(outer, "--user", "--map-root-user");
        using var dir = new TempDirectory(); // the mount point is made on the shared file system: in a directory removed with the test
        string marker = Path.Combine(dir.Path, "userns2");
        NamespaceBuilder setup = new NamespaceBuilder()
            .JoinNamespace(Namespaces.User, outer.Path("user"))
            .WithNamespaces(Namespaces.Mount)
            .WithMounts(m => m.Tmpfs(marker))
            .WithStandardOutput(Stdio.Pipe);
        string script = $"readlink /proc/self/ns/user; grep -c ' {marker} ' /proc/self/mountinfo; umount {marker} 2>/dev/null && echo unmounted || echo refused";

        string[] lines = await OutputOf(setup.JoinUserNamespaceAfterSetup(inner.Path("user")).Build(), script);
        string[] withoutSwitch = await OutputOf(setup.Build(), script);

        Assert.Equal([inner.Namespace("user"), "1", "refused"], lines);
        Assert.Equal([outer.Namespace("user"), "1", "unmounted"], withoutSwitch);
    }

    [Fact]
    public async Task The_program_holds_no_descriptor_of_a_namespace_it_joined()
    {
        Host.RequireRoot();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: false, "--user", "--map-root-user", "--net");
        IsolationSpec spec = new NamespaceBuilder()
            .JoinNamespace(Namespaces.Net, holder.Path("net"))
            .JoinUserNamespaceAfterSetup(holder.Path("user"))
            .WithStandardOutput(Stdio.Pipe)
            .Build();

        string[] lines = await OutputOf(spec, "readlink /proc/self/ns/net /proc/self/ns/user; for f in /proc/self/fd/*; do readlink $f; done; true");

        Assert.Equal([holder.Namespace("net"), holder.Namespace("user")], lines[..2]);
        Assert.DoesNotContain(lines[2..], l => l.StartsWith("net:[", StringComparison.Ordinal) || l.StartsWith("user:[", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_spec_holds_the_namespace_it_opened_at_build_after_its_holder_has_exited()
    {
        Host.RequireRoot();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: false, "--net");
        string joined = holder.Namespace("net");
        NamespaceBuilder builder = new NamespaceBuilder().JoinNamespace(Namespaces.Net, holder.Path("net"));
        IsolationSpec spec = builder.WithStandardOutput(Stdio.Pipe).Build();
        holder.Kill();

        await using IsolatedProcess p = spec.Start("/bin/readlink", ["/proc/self/ns/net"]);
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
        await p.WaitForExitAsync();

        Assert.Equal(joined, output.Trim());
        var e = Assert.Throws<ArgumentException>(() => builder.Build()); // the path itself has gone with its process
        Assert.Contains($"'{holder.Path("net")}'", e.Message);
        Assert.Contains("ENOENT", e.Message);
    }

    [Fact]
    public void JoinedNamespaces_lists_what_the_spec_joins()
    {
        Host.RequireRoot();
        IsolationSpec spec = new NamespaceBuilder()
            .JoinNamespace(Namespaces.Net, "/proc/self/ns/net")
            .JoinNamespace(Namespaces.Uts, "/proc/self/ns/uts")
            .Build();
        Assert.Equal(Namespaces.Net | Namespaces.Uts, spec.JoinedNamespaces);
    }

    [Fact]
    public void Joining_a_path_of_the_wrong_kind_is_refused_at_build_naming_the_path()
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().JoinNamespace(Namespaces.Net, "/proc/self/ns/uts").Build());
        Assert.Contains("'/proc/self/ns/uts' is a UTS namespace, not a network namespace", e.Message);

        e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().JoinNamespace(Namespaces.Net, "/etc/hostname").Build());
        Assert.Contains("'/etc/hostname' is not a namespace file", e.Message);
        Assert.Contains("ENOTTY", e.Message);

        e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().JoinNamespace(Namespaces.Net, "/no/such/ns").Build());
        Assert.Contains("'/no/such/ns'", e.Message);
    }

    [Fact]
    public void Joining_through_a_handle_of_the_wrong_kind_is_refused_naming_the_descriptor()
    {
        using SafeFileHandle handle = File.OpenHandle("/proc/self/ns/ipc");
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().JoinNamespace(Namespaces.Pid, handle).Build());
        Assert.Contains($"descriptor {handle.DangerousGetHandle()} is a IPC namespace, not a PID namespace", e.Message);

        handle.Dispose();
        Assert.Throws<ObjectDisposedException>(() => new NamespaceBuilder().JoinNamespace(Namespaces.Pid, handle).Build());
    }

    [Fact]
    public void As_uid_65534_a_sandbox_joins_the_user_network_and_uts_namespaces_of_a_process_of_its_own()
    {
        Host.RequireUnprivilegedRunner();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: true, "--user", "--map-root-user", "--net", "--uts");

        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged(
            "--join", $"user:{holder.Path("user")}", "--join", $"net:{holder.Path("net")}", "--join", $"uts:{holder.Path("uts")}",
            "--", "/bin/sh", "-c", "readlink /proc/self/ns/user /proc/self/ns/net /proc/self/ns/uts; id -u");

        Assert.True(outcome.Started, outcome.Error?.Message ?? outcome.ArgumentError);
        Assert.Equal([holder.Namespace("user"), holder.Namespace("net"), holder.Namespace("uts"), "0"],
            outcome.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void As_uid_65534_a_sandbox_joins_all_eight_namespaces_of_a_process_of_its_own()
    {
        Host.RequireUnprivilegedRunner();
        Host.RequireTimeNamespace();
        string[] names = ["user", "pid", "mnt", "net", "ipc", "uts", "cgroup", "time"];
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: true,
            "--user", "--map-root-user", "--pid", "--mount", "--net", "--ipc", "--uts", "--cgroup", "--time");
        string[] joins = [.. names.SelectMany(n => new[] { "--join", $"{(n == "mnt" ? "mount" : n)}:{holder.Path(n)}" })];

        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged([.. joins, "--", "/bin/readlink", .. names.Select(n => $"/proc/self/ns/{n}")]);

        Assert.True(outcome.Started, outcome.Error?.Message ?? outcome.ArgumentError);
        Assert.Equal(names.Select(holder.Namespace), outcome.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public async Task The_clone_fallback_joins_and_nests_a_pid_namespace_too()
    {
        Host.RequireRoot();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: false, "--user", "--map-root-user", "--pid");
        IsolationSpec spec = new NamespaceBuilder()
            .JoinNamespace(Namespaces.User, holder.Path("user"))
            .JoinNamespace(Namespaces.Pid, holder.Path("pid"))
            .WithNamespaces(Namespaces.Pid | Namespaces.Net)
            .WithStandardOutput(Stdio.Pipe)
            .Build();
        spec.ForceCloneFallback = true;

        string[] lines = await OutputOf(spec, "readlink /proc/self/ns/user; exec grep NSpid /proc/self/status");

        Assert.Equal(holder.Namespace("user"), lines[0]);
        Assert.Equal(["1"], lines[1].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[^1..]);
        Assert.Equal(4, lines[1].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries).Length); // "NSpid:" and three levels
    }

    [Fact]
    public async Task A_sandbox_that_joins_namespaces_is_in_its_own_cgroup()
    {
        Host.RequireRoot();
        CgroupHost.Require("pids");
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: false, "--user", "--map-root-user", "--net");
        IsolationSpec spec = new NamespaceBuilder()
            .JoinNamespace(Namespaces.User, holder.Path("user"))
            .JoinNamespace(Namespaces.Net, holder.Path("net"))
            .WithCgroup(c => c.PidsMax(16))
            .WithStandardOutput(Stdio.Pipe)
            .Build();

        await using IsolatedProcess p = spec.Start("/bin/cat", "/proc/self/cgroup");
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
        ExitStatus status = await p.WaitForExitAsync();

        Assert.True(status.Success, status.ToString());
        Dictionary<string, string> seen = CgroupHost.ParseProcCgroup(output);
        string pidsKey = seen.Keys.Single(k => k.Split(',').Contains("pids") || (k == "" && CgroupHost.Layout.V2Controllers().Contains("pids")));
        Assert.EndsWith("/" + Path.GetFileName(p.CgroupDirectories[0]), seen[pidsKey]);
    }

    [Fact]
    public void As_uid_65534_namespaces_created_with_a_joined_user_namespace_belong_to_it()
    {
        // uid 65534 cannot create a network namespace in the host's user namespace: only inside the joined one.
        Host.RequireUnprivilegedRunner();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: true, "--user", "--map-root-user");

        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged(
            "--join", $"user:{holder.Path("user")}", "--ns", "net,uts,ipc,mount", "--hostname", "joined",
            "--", "/bin/sh", "-c", "readlink /proc/self/ns/user /proc/self/ns/net; hostname");

        Assert.True(outcome.Started, outcome.Error?.Message ?? outcome.ArgumentError);
        string[] lines = outcome.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(holder.Namespace("user"), lines[0]);
        Assert.NotEqual(Host.Namespace("net"), lines[1]);
        Assert.Equal("joined", lines[2]);
    }

    [Fact]
    public void As_uid_65534_joining_a_network_namespace_without_its_user_namespace_fails_at_the_join_naming_it()
    {
        Host.RequireUnprivilegedRunner();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: true, "--user", "--map-root-user", "--net");

        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged("--join", $"net:{holder.Path("net")}", "--", "/bin/true");

        Assert.False(outcome.Started);
        Assert.Equal(nameof(SetupStep.JoinNamespace), outcome.Error!.Step);
        Assert.Equal("EPERM", outcome.Error.ErrnoName);
        Assert.Contains($"join the network namespace of '{holder.Path("net")}'", outcome.Error.Message);
        Assert.Contains("JoinNamespace(Namespaces.User", outcome.Error.Hint);
        Assert.Equal(outcome.FdsBefore, outcome.FdsAfter);
    }

    private static async Task<string[]> OutputOf(IsolationSpec spec, string script)
    {
        await using IsolatedProcess p = spec.Start("/bin/sh", ["-c", script]);
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
        ExitStatus status = await p.WaitForExitAsync();
        Assert.True(status.Success, $"{script}: {status}");
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}
