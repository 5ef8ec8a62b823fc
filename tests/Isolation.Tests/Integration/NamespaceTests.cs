using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>Every namespace, proved from inside the child.</summary>
public sealed class NamespaceTests
{
    private static readonly NamespaceBuilder Rootless = new NamespaceBuilder()
        .WithNamespaces(Namespaces.User)
        .MapCurrentUserToRoot();

    [Fact]
    public async Task The_readme_example_prints_pid_1_uid_0_and_the_hostname()
    {
        IsolationSpec spec = new NamespaceBuilder()
            .WithNamespaces(Namespaces.User | Namespaces.Pid | Namespaces.Mount | Namespaces.Uts | Namespaces.Ipc | Namespaces.Net)
            .MapCurrentUserToRoot()
            .WithHostname("sandbox")
            .WithMounts(m => m.Proc("/proc"))
            .WithStandardOutput(Stdio.Pipe)
            .Build();

        await using IsolatedProcess p = spec.Start("/bin/sh", ["-c", "echo $$; id -u; hostname"]);
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
        ExitStatus status = await p.WaitForExitAsync();

        Assert.Equal(["1", "0", "sandbox"], output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(0, status.ExitCode);
        Assert.Equal(TerminationReason.Exited, status.Reason);
    }

    [Theory]
    [InlineData(Namespaces.User, "user")]
    [InlineData(Namespaces.Pid, "pid")]
    [InlineData(Namespaces.Mount, "mnt")]
    [InlineData(Namespaces.Net, "net")]
    [InlineData(Namespaces.Ipc, "ipc")]
    [InlineData(Namespaces.Uts, "uts")]
    [InlineData(Namespaces.Cgroup, "cgroup")]
    [InlineData(Namespaces.Time, "time")]
    public async Task Each_namespace_is_new_and_the_others_are_shared(Namespaces ns, string procName)
    {
        if (ns == Namespaces.Time)
            Host.RequireTimeNamespace();
        // With a user namespace every other one can be created unprivileged.
        EnvironmentReport report = await TestHostRunner.ReportAsync(Rootless.WithNamespaces(Namespaces.User | ns));

        Assert.NotEqual(Host.Namespace(procName), report.Namespaces[procName]);
        foreach ((string name, string inode) in report.Namespaces)
        {
            if (name != procName && name != "user")
                Assert.Equal(Host.Namespace(name), inode);
        }
    }

    [Fact]
    public async Task All_eight_namespaces_at_once()
    {
        Host.RequireTimeNamespace();
        EnvironmentReport report = await TestHostRunner.ReportAsync(Rootless.WithNamespaces(Namespaces.All).WithMounts(m => m.Proc()));

        foreach (string name in new[] { "user", "pid", "mnt", "net", "ipc", "uts", "cgroup", "time" })
            Assert.NotEqual(Host.Namespace(name), report.Namespaces[name]);
        Assert.Equal(1, report.Pid);
        Assert.Equal(1, report.VisiblePids);
    }

    [Fact]
    public async Task Namespaces_without_a_user_namespace_work_as_root()
    {
        Host.RequireRoot();
        EnvironmentReport report = await TestHostRunner.ReportAsync(new NamespaceBuilder()
            .WithNamespaces(Namespaces.Pid | Namespaces.Mount | Namespaces.Uts | Namespaces.Ipc | Namespaces.Net)
            .WithMounts(m => m.Proc()));

        Assert.Equal(Host.Namespace("user"), report.Namespaces["user"]);
        Assert.NotEqual(Host.Namespace("pid"), report.Namespaces["pid"]);
        Assert.Equal(1, report.Pid);
    }

    [Fact]
    public async Task A_new_network_namespace_has_only_loopback_and_it_is_up()
    {
        IsolationSpec spec = Rootless.WithNamespaces(Namespaces.User | Namespaces.Net).WithStandardOutput(Stdio.Pipe).Build();
        await using IsolatedProcess p = spec.Start("/bin/sh", ["-c", "cat /proc/net/dev | tail -n +3 | cut -d: -f1; ip -o link show lo"]);
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
        await p.WaitForExitAsync();

        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("lo", lines[0].Trim());
        Assert.DoesNotContain(lines[1..], l => !l.Contains("lo:", StringComparison.Ordinal));
        Assert.Contains("UP", lines[^1].Split('<', '>')[1].Split(','));
    }

    [Fact]
    public async Task Hostname_and_domain_name_are_set_in_a_new_uts_namespace()
    {
        EnvironmentReport report = await TestHostRunner.ReportAsync(Rootless
            .WithNamespaces(Namespaces.User | Namespaces.Uts)
            .WithHostname("box-1")
            .WithDomainName("example.test"));

        Assert.Equal("box-1", report.Hostname);
        Assert.Equal("example.test", report.DomainName);
        Assert.NotEqual("box-1", File.ReadAllText("/proc/sys/kernel/hostname").Trim());
    }

    [Fact]
    public async Task Time_namespace_offsets_shift_monotonic_and_boottime_clocks()
    {
        Host.RequireTimeNamespace();
        TimeSpan monotonic = TimeSpan.FromDays(3), boottime = TimeSpan.FromDays(7);
        double hostMonotonic = Environment.TickCount64 / 1000.0;

        EnvironmentReport report = await TestHostRunner.ReportAsync(Rootless
            .WithNamespaces(Namespaces.User | Namespaces.Time)
            .WithTimeOffsets(monotonic, boottime));

        Assert.InRange(report.MonotonicSeconds - hostMonotonic, monotonic.TotalSeconds - 30, monotonic.TotalSeconds + 30);
        Assert.InRange(report.BoottimeSeconds - report.MonotonicSeconds, boottime.TotalSeconds - monotonic.TotalSeconds - 30, boottime.TotalSeconds - monotonic.TotalSeconds + 3600 * 24);
    }

    [Fact]
    public async Task Ipc_objects_of_the_host_are_invisible_in_a_new_ipc_namespace()
    {
        // A System V message queue created on the host...
        int id = MsgGet();
        try
        {
            IsolationSpec spec = Rootless.WithNamespaces(Namespaces.User | Namespaces.Ipc).WithStandardOutput(Stdio.Pipe).Build();
            await using IsolatedProcess p = spec.Start("/bin/cat", ["/proc/sysvipc/msg"]);
            string inside = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
            await p.WaitForExitAsync();

            Assert.Contains(File.ReadAllLines("/proc/sysvipc/msg").Skip(1), l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1] == id.ToString());
            Assert.DoesNotContain(inside.Split('\n').Skip(1), l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is [_, var qid, ..] && qid == id.ToString());
        }
        finally
        {
            MsgRemove(id);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int msgget(int key, int flags);

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int msgctl(int id, int cmd, nint buf);

    private static int MsgGet()
    {
        int id = msgget(0 /* IPC_PRIVATE */, 0x200 /* IPC_CREAT */ | 0x180);
        Assert.True(id >= 0, "msgget failed");
        return id;
    }

    private static void MsgRemove(int id) => msgctl(id, 0 /* IPC_RMID */, 0);
}
