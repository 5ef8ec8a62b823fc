using System.Text.Json;
using Isolation.Security;
using Isolation.Security.Seccomp;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>Capabilities, no_new_privs, seccomp, Landlock and nested user namespaces, proved on the real kernel.</summary>
public sealed class SecurityTests
{
    private const int EPERM = 1, EACCES = 13, ENOSPC = 28, ENOSYS = 38, EHWPOISON = 133, SIGSYS = 31;

    private static readonly NamespaceBuilder Rootless = new NamespaceBuilder()
        .WithNamespaces(Namespaces.User | Namespaces.Pid | Namespaces.Mount)
        .MapCurrentUserToRoot()
        .WithMounts(m => m.Proc());

    private static async Task<ExitStatus> RunAsync(NamespaceBuilder builder, string program, params string[] args)
    {
        // Not the test process's stdout: xunit v3 reports results over it, and a program's "x" would corrupt a report.
        await using IsolatedProcess process = builder.WithStandardOutput(Stdio.Null).Build().Start(program, args);
        return await process.WaitForExitAsync();
    }

    private static Task<ExitStatus> ErrnoOfAsync(NamespaceBuilder builder, params string[] call) =>
        RunAsync(builder, TestHostRunner.Executable, ["errno-of", .. call]);

    [Fact]
    public async Task Dropping_all_capabilities_empties_all_five_sets()
    {
        EnvironmentReport report = await TestHostRunner.ReportAsync(Rootless.WithSecurity(s => s.DropAllCapabilities()));

        Assert.Equal(0, report.Uid);
        Assert.Equal("0000000000000000", report.CapEff);
        Assert.Equal("0000000000000000", report.CapPrm);
        Assert.Equal("0000000000000000", report.CapInh);
        Assert.Equal("0000000000000000", report.CapBnd);
        Assert.Equal("0000000000000000", report.CapAmb);
    }

    [Fact]
    public async Task Keeping_one_capability_leaves_exactly_that_one_in_every_set()
    {
        EnvironmentReport report = await TestHostRunner.ReportAsync(Rootless.WithSecurity(s => s.DropAllCapabilities().AddCapabilities("CAP_NET_BIND_SERVICE")));

        Assert.Equal("0000000000000400", report.CapEff);
        Assert.Equal("0000000000000400", report.CapPrm);
        Assert.Equal("0000000000000400", report.CapBnd);
        Assert.Equal("0000000000000400", report.CapAmb);
    }

    [Fact]
    public async Task Without_security_settings_root_in_a_user_namespace_keeps_its_full_set()
    {
        EnvironmentReport report = await TestHostRunner.ReportAsync(Rootless);

        Assert.Equal(Capabilities.All, Convert.ToUInt64(report.CapEff, 16) & Capabilities.All);
        Assert.Equal("0", report.NoNewPrivs);
        Assert.Equal("0", report.Seccomp);
    }

    [Fact]
    public async Task A_kept_capability_survives_the_switch_to_a_non_root_uid()
    {
        Host.RequireRoot();
        NamespaceBuilder builder = new NamespaceBuilder()
            .WithNamespaces(Namespaces.User | Namespaces.Pid | Namespaces.Mount)
            .MapUsers(0, 0, 1).MapUsers(1000, 1000, 1).MapGroups(0, 0, 1).MapGroups(1000, 1000, 1)
            .RunAs(1000, 1000)
            .WithMounts(m => m.Proc())
            .WithSecurity(s => s.KeepCapabilities(Capability.CAP_NET_BIND_SERVICE));

        EnvironmentReport report = await TestHostRunner.ReportAsAnotherHostUserAsync(builder); // host uid 1000

        Assert.Equal(1000, report.Uid);
        Assert.Equal("0000000000000400", report.CapEff);
        Assert.Equal("0000000000000400", report.CapBnd);
    }

    [Fact]
    public async Task No_new_privs_is_set_for_the_program()
    {
        EnvironmentReport report = await TestHostRunner.ReportAsync(Rootless.WithSecurity(s => s.NoNewPrivileges()));

        Assert.Equal("1", report.NoNewPrivs);
    }

    [Fact]
    public async Task A_blocked_call_fails_with_the_chosen_errno_and_an_allowed_one_works()
    {
        var profile = new SeccompProfile(SeccompAction.Allow).Deny(EHWPOISON, "mkdir", "mkdirat");
        NamespaceBuilder builder = Rootless.WithSecurity(s => s.NoNewPrivileges().WithSeccomp(profile));
        string dir = Path.Combine(Path.GetTempPath(), "isolation-seccomp-" + Guid.NewGuid().ToString("N"));

        ExitStatus blocked = await ErrnoOfAsync(builder, "mkdir", dir);
        ExitStatus allowed = await ErrnoOfAsync(Rootless.WithSecurity(s => s.NoNewPrivileges().WithSeccomp(new SeccompProfile(SeccompAction.Allow).Deny(EHWPOISON, "socket"))), "mkdir", dir);
        EnvironmentReport report = await TestHostRunner.ReportAsync(builder);

        Assert.Equal(EHWPOISON, blocked.ExitCode);
        Assert.Equal(0, allowed.ExitCode);
        Assert.True(Directory.Exists(dir));
        Directory.Delete(dir);
        Assert.Equal("2", report.Seccomp); // SECCOMP_MODE_FILTER
    }

    [Fact]
    public async Task A_kill_action_kills_the_program_with_SIGSYS()
    {
        NamespaceBuilder builder = Rootless.WithSecurity(s => s.NoNewPrivileges().WithSeccomp(new SeccompProfile(SeccompAction.Allow).Kill("mkdir", "mkdirat")));

        ExitStatus status = await ErrnoOfAsync(builder, "mkdir", "/tmp/never-" + Guid.NewGuid().ToString("N"));

        Assert.Equal(SIGSYS, status.Signal);
    }

    [Fact]
    public async Task A_precompiled_program_loads_like_bubblewraps_seccomp_fd()
    {
        byte[] bytes = new SeccompProfile(SeccompAction.Allow).Deny(EHWPOISON, "keyctl").Compile().ToBytes();
        NamespaceBuilder builder = Rootless.WithSecurity(s => s.NoNewPrivileges().WithSeccompProgram(SeccompProgram.FromBytes(bytes)));

        ExitStatus status = await ErrnoOfAsync(builder, "keyctl");

        Assert.Equal(EHWPOISON, status.ExitCode);
    }

    [Fact]
    public void A_program_the_kernel_rejects_is_reported_as_a_seccomp_step_failure()
    {
        // One instruction with an opcode seccomp does not allow (BPF_LD | BPF_W | BPF_IND).
        SeccompProgram bad = SeccompProgram.FromBytes([0x40, 0, 0, 0, 0, 0, 0, 0]);
        IsolationSpec spec = Rootless.WithSecurity(s => s.NoNewPrivileges().WithSeccompProgram(bad)).Build();

        var e = Assert.Throws<SandboxSetupException>(() => spec.Start("/bin/true"));

        Assert.Equal(SetupStep.Seccomp, e.Step);
        Assert.Equal("EINVAL", e.ErrnoName);
        Assert.Contains("seccomp filter #1", e.Message);
    }

    [Fact]
    public async Task The_default_profile_denies_new_user_namespaces_and_keyrings_and_runs_dotnet()
    {
        NamespaceBuilder builder = Rootless.WithSecurity(s => s.DropAllCapabilities().NoNewPrivileges().WithDefaultSeccomp());

        ExitStatus unshare = await ErrnoOfAsync(builder, "clone-user");
        ExitStatus keyctl = await ErrnoOfAsync(builder, "keyctl");
        string dir = "/tmp/isolation-default-" + Guid.NewGuid().ToString("N");
        ExitStatus mkdir;
        try
        {
            mkdir = await ErrnoOfAsync(builder, "mkdir", dir);
        }
        finally
        {
            if (Directory.Exists(dir))
                Directory.Delete(dir); // the sandbox shares the host's /tmp
        }

        Assert.Equal(EPERM, unshare.ExitCode);
        Assert.Equal(EPERM, keyctl.ExitCode);
        Assert.Equal(0, mkdir.ExitCode); // the .NET runtime itself started and ran under the filter
    }

    [Fact]
    public async Task A_profile_loaded_from_oci_json_is_enforced()
    {
        string json = $$"""
        { "defaultAction": "SCMP_ACT_ALLOW",
          "syscalls": [ { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": {{ENOSYS}} } ] }
        """;
        NamespaceBuilder builder = Rootless.WithSecurity(s => s.NoNewPrivileges().WithSeccompProfileJson(json));

        ExitStatus status = await ErrnoOfAsync(builder, "mkdir", "/tmp/isolation-oci-" + Guid.NewGuid().ToString("N"));

        Assert.Equal(ENOSYS, status.ExitCode);
    }

    [Fact]
    public async Task Disabling_nested_user_namespaces_makes_unshare_fail_even_without_seccomp()
    {
        NamespaceBuilder builder = Rootless.WithSecurity(s => s.DisableNestedUserNamespaces());

        ExitStatus status = await ErrnoOfAsync(builder, "clone-user");
        ExitStatus control = await ErrnoOfAsync(Rootless, "clone-user");

        Assert.Equal(ENOSPC, status.ExitCode); // user_namespaces(7): the count limit of an ancestor namespace
        Assert.Equal(0, control.ExitCode);
    }

    [Fact]
    public async Task Landlock_allows_the_listed_paths_and_denies_the_rest()
    {
        Assert.SkipWhen(SecurityCompiler.HostLandlockAbi() == 0, "the kernel has no Landlock (CONFIG_SECURITY_LANDLOCK, lsm=)");
        string rw = Directory.CreateTempSubdirectory("isolation-landlock-").FullName;
        File.WriteAllText(Path.Combine(rw, "readable"), "x");
        try
        {
            NamespaceBuilder builder = Rootless.WithSecurity(s => s.NoNewPrivileges()
                .WithLandlock(l => l.AllowExecute("/usr").AllowRead("/proc").AllowReadWrite(rw)));
            IsolationSpec spec = builder.Build();

            ExitStatus readAllowed = await RunAsync(builder, "/bin/cat", Path.Combine(rw, "readable"));
            ExitStatus writeAllowed = await RunAsync(builder, "/usr/bin/touch", Path.Combine(rw, "created"));
            ExitStatus readDenied = await RunAsync(builder, "/bin/cat", "/etc/hostname");
            ExitStatus writeDenied = await RunAsync(builder, "/usr/bin/touch", "/tmp/isolation-landlock-denied-" + Guid.NewGuid().ToString("N"));

            Assert.Equal(Math.Min(SecurityCompiler.HostLandlockAbi(), 7), spec.LandlockAbi);
            Assert.Equal(0, readAllowed.ExitCode);
            Assert.Equal(0, writeAllowed.ExitCode);
            Assert.True(File.Exists(Path.Combine(rw, "created")));
            Assert.NotEqual(0, readDenied.ExitCode);
            Assert.NotEqual(0, writeDenied.ExitCode);
        }
        finally
        {
            Directory.Delete(rw, recursive: true);
        }
    }

    [Fact]
    public async Task Landlock_restricts_tcp_bind_to_the_listed_port()
    {
        Assert.SkipWhen(SecurityCompiler.HostLandlockAbi() < 4, "TCP rules need Landlock ABI 4 (Linux 6.7)");
        NamespaceBuilder builder = Rootless.WithNamespaces(Namespaces.User | Namespaces.Pid | Namespaces.Mount | Namespaces.Net)
            .WithSecurity(s => s.NoNewPrivileges().WithLandlock(l => l.AllowReadWrite("/").AllowExecute("/").AllowBindTcp(8080)));

        ExitStatus allowed = await ErrnoOfAsync(builder, "bind-tcp", "8080");
        ExitStatus denied = await ErrnoOfAsync(builder, "bind-tcp", "8081");

        Assert.Equal(0, allowed.ExitCode);
        Assert.Equal(EACCES, denied.ExitCode);
    }

    [Fact]
    public async Task Landlock_scopes_stop_signals_and_abstract_sockets_outside_and_the_preset_applies_them()
    {
        Assert.SkipWhen(SecurityCompiler.HostLandlockAbi() < 6, $"Landlock scopes need ABI 6 (Linux 6.12); this kernel offers ABI {SecurityCompiler.HostLandlockAbi()}");
        string name = "iso-scope-" + Guid.NewGuid().ToString("N");
        using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        listener.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint("\0" + name));
        listener.Listen();
        string script = $"kill -0 {Environment.ProcessId} 2>/dev/null && echo SIGNALLED; "
            + $"/usr/bin/python3 -c \"import socket; socket.socket(socket.AF_UNIX).connect('\\0{name}')\" 2>/dev/null && echo CONNECTED; "
            + "cat /etc/hostname >/dev/null && echo READ";

        NamespaceBuilder shared = new NamespaceBuilder().WithNamespaces(Namespaces.User).MapCurrentUserToRoot(); // sees our pid and abstract sockets
        MountRun.Result scoped = await MountRun.ShAsync(shared.WithSecurity(s => s.NoNewPrivileges()
            .WithLandlock(l => l.ScopesOnly().ScopeSignals().ScopeAbstractUnixSockets())), script);
        MountRun.Result open = await MountRun.ShAsync(shared, script);

        Assert.Equal("READ\n", scoped.Stdout); // files are not handled: only the scopes restrict
        Assert.Equal("SIGNALLED\nCONNECTED\nREAD\n", open.Stdout);
        Assert.True(NamespaceBuilder.ForUntrustedCode().Build().LandlockAbi >= 6);
    }

    [Fact]
    public void A_missing_landlock_path_is_reported_with_the_step_and_the_path()
    {
        Assert.SkipWhen(SecurityCompiler.HostLandlockAbi() == 0, "the kernel has no Landlock");
        IsolationSpec spec = Rootless.WithSecurity(s => s.NoNewPrivileges().WithLandlock(l => l.AllowRead("/usr", "/no/such/dir"))).Build();

        var e = Assert.Throws<SandboxSetupException>(() => spec.Start("/bin/true"));

        Assert.Equal(SetupStep.Landlock, e.Step);
        Assert.Equal("/no/such/dir", e.Path);
        Assert.Equal("ENOENT", e.ErrnoName);
    }

    [Fact]
    public async Task The_untrusted_preset_runs_a_program_with_nothing_left_to_take()
    {
        // As root the preset's identity is a block of host ids of its own: it binds and runs the copy any user reaches.
        NamespaceBuilder builder = NamespaceBuilder.ForUntrustedCode()
            .WithMounts(m => m.BindReadOnly(TestHostRunner.DirectoryForAnyUser, TestHostRunner.DirectoryForAnyUser))
            .WithEnvironment(e => e.Set("DOTNET_EnableDiagnostics", "0"));

        EnvironmentReport report = await TestHostRunner.ReportAsAnotherHostUserAsync(builder);

        Assert.Equal(0, report.Uid);
        Assert.Equal(1, report.Pid);
        Assert.Equal(1, report.Sid); // a new session: not the caller's terminal
        Assert.Equal("sandbox", report.Hostname);
        Assert.Equal("0000000000000000", report.CapEff);
        Assert.Equal("0000000000000000", report.CapBnd);
        Assert.Equal("1", report.NoNewPrivs);
        Assert.Equal("2", report.Seccomp);
        Assert.Equal([0, 1, 2], report.OpenFds.Where(fd => fd <= 2).ToArray());
        Assert.DoesNotContain("HOME=/root", report.Environment.Select(kv => $"{kv.Key}={kv.Value}"));
        string rootLine = report.MountInfo.Split('\n').First(l => l.Split(' ')[4] == "/");
        Assert.Contains("ro", rootLine.Split(' ')[5].Split(','));
        Assert.NotEqual(Host.Namespace("user"), report.Namespaces["user"]);
    }

    [Fact]
    public async Task Only_the_descriptors_the_caller_passes_reach_the_program()
    {
        using FileStream file = File.OpenRead("/etc/hostname");
        int passed = Tmds.Linux.LibC.fcntl((int)file.SafeFileHandle.DangerousGetHandle(), Tmds.Linux.LibC.F_DUPFD_CLOEXEC, 900);
        int kept = Tmds.Linux.LibC.fcntl(passed, Tmds.Linux.LibC.F_DUPFD, 950); // not close-on-exec in the caller
        try
        {
            EnvironmentReport with = await TestHostRunner.ReportAsync(Rootless.WithSecurity(s => s.PassFileDescriptors(passed)));
            EnvironmentReport without = await TestHostRunner.ReportAsync(Rootless);

            Assert.Contains(passed, with.OpenFds);
            Assert.DoesNotContain(kept, with.OpenFds);
            Assert.DoesNotContain(passed, without.OpenFds);
            Assert.DoesNotContain(kept, without.OpenFds);
        }
        finally
        {
            Tmds.Linux.LibC.close(passed);
            Tmds.Linux.LibC.close(kept);
        }
    }

    [Fact]
    public void Passing_a_descriptor_that_is_not_open_is_rejected_at_build()
    {
        var e = Assert.Throws<ArgumentException>(() => Rootless.WithSecurity(s => s.PassFileDescriptors(4000)).Build());
        Assert.Contains("4000", e.Message);
    }

    [Fact]
    public async Task The_untrusted_preset_runs_with_isolation_init_as_pid_1()
    {
        NamespaceBuilder builder = NamespaceBuilder.ForUntrustedCode().WithInit().WithStandardOutput(Stdio.Pipe);

        await using IsolatedProcess process = builder.Build().Start("/bin/sh", "-c", "echo $$; /bin/true & wait");
        string pid = (await new StreamReader(process.StandardOutput!).ReadToEndAsync()).Trim();
        ExitStatus status = await process.WaitForExitAsync();

        Assert.Equal(0, status.ExitCode);
        Assert.Equal("2", pid); // the init is 1, the program its first child
    }

    [Fact]
    public void The_untrusted_preset_works_for_an_unprivileged_caller()
    {
        Host.RequireUnprivilegedRunner();

        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged("--untrusted", "--ro-bind", TestHostRunner.DirectoryForAnyUser + ":" + TestHostRunner.DirectoryForAnyUser,
            "--setenv", "DOTNET_EnableDiagnostics", "0", "--", TestHostRunner.ExecutableForAnyUser, "report");

        Assert.True(outcome.Started, $"{outcome.Error?.Message}{outcome.ArgumentError}");
        EnvironmentReport report = JsonSerializer.Deserialize(outcome.Stdout, ReportJson.Default.EnvironmentReport)!;
        Assert.Equal("0000000000000000", report.CapEff);
        Assert.Equal("0000000000000000", report.CapBnd);
        Assert.Equal("1", report.NoNewPrivs);
        Assert.Equal("2", report.Seccomp);
        Assert.Equal(1, report.Sid);
    }
}
