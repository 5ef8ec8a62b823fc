using System.Diagnostics;
using System.Text.Json;
using Isolation.Diagnostics;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>HostCapabilities.Probe() agrees with what real starts do on this host, as root and as uid 65534.</summary>
public sealed class HostProbeTests
{
    private static readonly HostCapabilities Probed = HostCapabilities.Probe();

    /// <summary>Whether a real start of <paramref name="builder"/> runs /bin/true to a clean exit.</summary>
    private static async Task<bool> StartsAsync(NamespaceBuilder builder)
    {
        try
        {
            SandboxResult r = await builder.Build().RunAsync("/bin/true", []);
            return r.Status.Success;
        }
        catch (SandboxSetupException)
        {
            return false;
        }
    }

    private static readonly NamespaceBuilder Rootless = new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Mount).MapCurrentUserToRoot();

    [Fact]
    public async Task The_probes_answers_match_real_starts()
    {
        Assert.Equal(Probed["user-namespaces"].Available, await StartsAsync(new NamespaceBuilder().WithNamespaces(Namespaces.User).MapCurrentUserToRoot()));
        Assert.Equal(Probed["time-namespaces"].Available, await StartsAsync(new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Time).MapCurrentUserToRoot()));
        Assert.Equal(Probed["seccomp"].Available, await StartsAsync(new NamespaceBuilder().WithSecurity(s => s.NoNewPrivileges().WithDefaultSeccomp())));
        Assert.Equal(Probed["overlay-in-user-namespace"].Available, await StartsAsync(Rootless.WithMounts(m => m.TmpOverlay("/mnt", ["/usr"]))));

        IsolationSpec landlocked = new NamespaceBuilder().WithSecurity(s => s.NoNewPrivileges().WithLandlock(l => l.AllowRead("/"))).Build();
        Assert.Equal(Probed["landlock"].Available, landlocked.LandlockAbi > 0);
        Assert.True(int.Parse(Probed["landlock"].Detail[4..]) >= landlocked.LandlockAbi); // the spec fits the host's ABI or the newest it knows
        Assert.True(await StartsAsync(new NamespaceBuilder().WithSecurity(s => s.NoNewPrivileges().WithLandlock(l => l.AllowRead("/").AllowExecute("/")))) || !Probed["landlock"].Available);
        if (Host.IsRoot)
        {
            Assert.Equal(Probed["cgroup-delegation"].Available, await StartsAsync(new NamespaceBuilder().WithCgroup(c => c.PidsMax(16))));
            string dir = Directory.CreateTempSubdirectory("isolation-probe-").FullName;
            try
            {
                NamespaceBuilder shifted = new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Mount).MapUsers(0, 100000, 65536).MapGroups(0, 100000, 65536);
                Assert.Equal(Probed["idmapped-mounts"].Available, await StartsAsync(shifted.WithMounts(m => m.IdmappedBind(dir, "/mnt"))));
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    [Fact]
    public void Every_no_comes_with_a_fix_and_every_yes_without_one()
    {
        Assert.All(Probed.Items, i => Assert.Equal(i.Available, i.Fix is null));
        Assert.Contains("user-namespaces", Probed.Items.Select(i => i.Name));
        Assert.Equal(12, Probed.Items.Count);
    }

    [Fact]
    public void The_json_has_every_answer()
    {
        using JsonDocument json = JsonDocument.Parse(Probed.ToJson());
        Assert.Equal(Probed.KernelVersion, json.RootElement.GetProperty("kernel").GetString());
        Assert.Equal(Probed.Items.Select(i => i.Name), json.RootElement.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("name").GetString()));
    }

    [Fact]
    public void A_sysctl_that_blocks_unprivileged_user_namespaces_is_a_no_with_its_fix()
    {
        // A fake /proc for the file-format logic: Debian's switch off, AppArmor's restriction on.
        string root = Directory.CreateTempSubdirectory("isolation-probe-root-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Join(root, "proc/sys/kernel"));
            Directory.CreateDirectory(Path.Join(root, "proc/sys/user"));
            Directory.CreateDirectory(Path.Join(root, "proc/sys/vm"));
            File.WriteAllText(Path.Join(root, "proc/sys/kernel/osrelease"), "6.8.0-45-generic\n");
            File.WriteAllText(Path.Join(root, "proc/sys/user/max_user_namespaces"), "1000\n");
            File.WriteAllText(Path.Join(root, "proc/sys/kernel/apparmor_restrict_unprivileged_userns"), "1\n");
            File.WriteAllText(Path.Join(root, "proc/sys/vm/memfd_noexec"), "2\n");
            HostCapabilities probed = HostCapabilities.Probe(root);

            Assert.Equal("6.8.0-45-generic", probed.KernelVersion);
            if (!probed.IsRoot)
            {
                Assert.False(probed["unprivileged-user-namespaces"].Available);
                Assert.Contains("apparmor", probed["unprivileged-user-namespaces"].Fix);
            }
            Assert.False(probed["memfd-exec"].Available);
            Assert.Contains("vm.memfd_noexec", probed["memfd-exec"].Fix);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void As_uid_65534_the_probe_matches_an_unprivileged_start()
    {
        Host.RequireUnprivilegedRunner();
        var info = new ProcessStartInfo("setpriv") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in (string[])["--reuid=65534", "--regid=65534", "--clear-groups", "--", TestHostRunner.ExecutableForAnyUser, "probe"])
            info.ArgumentList.Add(a);
        info.Environment["HOME"] = "/tmp";
        info.Environment["DOTNET_CLI_HOME"] = "/tmp";
        using Process process = Process.Start(info)!;
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        using JsonDocument json = JsonDocument.Parse(stdout);
        Dictionary<string, bool> answers = json.RootElement.GetProperty("items").EnumerateArray()
            .ToDictionary(e => e.GetProperty("name").GetString()!, e => e.GetProperty("available").GetBoolean());

        SpawnOutcome userNs = TestHostRunner.SpawnUnprivileged("--ns", "user", "--map-root", "--", "/bin/true");
        SpawnOutcome limited = TestHostRunner.SpawnUnprivileged("--pids-max", "16", "--", "/bin/true");

        Assert.False(json.RootElement.GetProperty("root").GetBoolean());
        Assert.Equal(answers["unprivileged-user-namespaces"], userNs.Started);
        Assert.Equal(answers["cgroup-delegation"], limited.Started);
        Assert.False(answers["idmapped-mounts"]);
    }
}
