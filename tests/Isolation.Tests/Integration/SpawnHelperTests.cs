using System.Diagnostics;
using Isolation.Spawning;
using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>The spawn helper: sandboxes are its children, it starts however the package was unpacked, and its death is reported.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class SpawnHelperTests
{
    private static readonly NamespaceBuilder UserAndPid = new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Pid).MapCurrentUserToRoot();

    [Fact]
    public async Task A_sandbox_is_a_child_of_the_spawn_helper_not_of_the_host()
    {
        await using IsolatedProcess p = new NamespaceBuilder().Build().Start("/bin/sleep", "30");

        int parent = ParentOf(p.Id);

        Assert.NotEqual(Environment.ProcessId, parent);
        Assert.Equal("isolation-helpe", File.ReadAllText($"/proc/{parent}/comm").Trim()); // comm keeps 15 bytes
        Assert.Equal(Environment.ProcessId, ParentOf(parent));
    }

    [Fact]
    public void PrepareSpawnHelper_starts_the_helper_that_the_first_start_then_uses()
    {
        var info = new ProcessStartInfo(TestHostRunner.Executable, "prepared-helper") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.Environment["DOTNET_EnableDiagnostics"] = "0";
        using Process host = Process.Start(info)!;
        string stdout = host.StandardOutput.ReadToEnd();
        string stderr = host.StandardError.ReadToEnd();
        host.WaitForExit();
        Assert.True(host.ExitCode == 0, $"exit {host.ExitCode}: {stderr}{stdout}");
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);

        string[] before = lines.Single(l => l.StartsWith("before-start", StringComparison.Ordinal)).Split(' ')[1..];
        string parent = lines.Single(l => l.StartsWith("sandbox-parent ", StringComparison.Ordinal)).Split(' ')[1];

        Assert.Single(before); // started by the first call, not again by the second
        Assert.Equal(before[0], parent);
    }

    [Fact]
    public async Task Concurrent_starts_are_spread_over_more_than_one_helper()
    {
        Assert.SkipWhen(Environment.ProcessorCount < 2, "one core: the library runs one helper");
        IsolationSpec spec = UserAndPid.Build();
        using var go = new ManualResetEventSlim();
        var started = new IsolatedProcess[16];
        var threads = Enumerable.Range(0, started.Length).Select(i => new Thread(() => { go.Wait(); started[i] = spec.Start("/bin/sleep", "30"); })).ToArray();
        foreach (Thread t in threads)
            t.Start();
        go.Set();
        foreach (Thread t in threads)
            t.Join();
        try
        {
            int[] parents = [.. started.Select(p => ParentOf(p.Id)).Distinct()];

            Assert.True(parents.Length >= 2, $"16 concurrent starts all went to helper {parents[0]}");
            Assert.True(parents.Length <= Math.Min(Environment.ProcessorCount, 8), $"{parents.Length} helpers on {Environment.ProcessorCount} cores");
            Assert.All(parents, p => Assert.Equal("isolation-helpe", File.ReadAllText($"/proc/{p}/comm").Trim()));
        }
        finally
        {
            foreach (IsolatedProcess p in started)
                await p.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_helper_whose_file_lost_its_execute_bit_still_starts_sandboxes()
    {
        string dir = Directory.CreateTempSubdirectory("isolation-helper-").FullName;
        try
        {
            string copy = Path.Combine(dir, SpawnHelper.Name);
            File.Copy(SpawnHelper.ExecutablePath, copy);
            File.SetUnixFileMode(copy, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            SpawnHelper helper = SpawnHelper.Start(copy);
            try
            {
                IsolationSpec spec = UserAndPid.Build();
                await using IsolatedProcess p = spec.StartWith(helper, "/bin/sh", ["-c", "exit 3"]);
                ExitStatus status = await p.WaitForExitAsync();

                Assert.Equal(3, status.ExitCode);
                Assert.NotEqual(SpawnHelper.Current.ProcessId, helper.ProcessId);
            }
            finally
            {
                helper.Close();
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void The_helper_starts_where_vm_memfd_noexec_forbids_executable_memfds(bool executeBit)
    {
        Host.RequireRoot();
        Assert.SkipUnless(File.Exists("/proc/sys/vm/memfd_noexec"), "the kernel has no vm.memfd_noexec (Linux 6.3+)");
        string dir = Directory.CreateTempSubdirectory("isolation-helper-").FullName;
        try
        {
            string copy = Path.Combine(dir, SpawnHelper.Name);
            File.Copy(SpawnHelper.ExecutablePath, copy);
            if (!executeBit)
                File.SetUnixFileMode(copy, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

            // vm.memfd_noexec is per PID namespace (and can only be raised there): 2 refuses executable memfds.
            var info = new ProcessStartInfo("unshare") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string a in (string[])["--pid", "--fork", "--mount-proc", "--", "/bin/sh", "-c",
                "echo 2 > /proc/sys/vm/memfd_noexec && exec \"$0\" spawn --ns user,pid --map-root -- /bin/sh -c 'cat /proc/sys/vm/memfd_noexec; exit 5'",
                TestHostRunner.Executable])
                info.ArgumentList.Add(a);
            info.Environment[SpawnHelper.PathVariable] = copy;

            var outcome = TestHostRunner.RunSpawnDriver(info);

            Assert.Null(outcome.Error?.Message);
            Assert.Equal(5, outcome.ExitCode);
            Assert.Equal("2\n", outcome.Stdout);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    internal static int ParentOf(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        return int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);
    }
}

/// <summary>A helper that dies takes its sandboxes along and says so; these run alone: they kill the shared helper.</summary>
[Collection(LeakChecks.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class SpawnHelperDeathTests
{
    [Fact]
    public async Task When_the_helper_is_killed_its_sandboxes_die_the_waits_fail_clearly_and_the_next_start_gets_a_new_helper()
    {
        IsolationSpec spec = new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Pid).MapCurrentUserToRoot().Build();
        await using IsolatedProcess sleeper = spec.Start("/bin/sleep", "300");
        int helper = SpawnHelperTests.ParentOf(sleeper.Id);

        Assert.Equal(0, kill(helper, 9));
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => sleeper.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken));

        Assert.Contains("spawn helper", e.Message);
        Assert.True(await GoneAsync(sleeper.Id), $"pid {sleeper.Id} outlived its helper");
        await using IsolatedProcess next = spec.Start("/bin/sleep", "300");
        Assert.NotEqual(helper, SpawnHelperTests.ParentOf(next.Id));
    }

    [Fact]
    public void A_thread_that_dropped_a_capability_gets_a_helper_without_it()
    {
        Host.RequireRoot();
        int before = SpawnHelper.Current.ProcessId;
        int after = 0;
        string capabilities = "";
        Exception? failure = null;

        // Capabilities are per thread: drop CAP_NET_RAW (13) from this one's permitted set, then start from it.
        var thread = new Thread(() =>
        {
            try
            {
                Assert.Equal(0, DropPermitted(13));
                using (IsolatedProcess p = new NamespaceBuilder().Build().Start("/bin/true"))
                    Assert.Equal(0, p.WaitForExit().ExitCode); // the helper has served a start: it is past its own setup
                after = SpawnHelper.Current.ProcessId;
                capabilities = File.ReadLines($"/proc/{after}/status").First(l => l.StartsWith("CapPrm:", StringComparison.Ordinal));
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();

        Assert.Null(failure);
        Assert.NotEqual(before, after);
        ulong permitted = Convert.ToUInt64(capabilities["CapPrm:".Length..].Trim(), 16);
        Assert.Equal(0UL, permitted & (1UL << 13));
        Assert.NotEqual(0UL, permitted & (1UL << 21)); // CAP_SYS_ADMIN kept: only what the thread dropped is gone
    }

    private static unsafe int DropPermitted(int capability)
    {
        uint* header = stackalloc uint[2] { 0x20080522, 0 };
        uint* data = stackalloc uint[6];
        if (syscall(125 /* capget */, header, data) != 0)
            return -1;
        data[3 * (capability / 32) + 1] &= ~(1u << (capability % 32)); // permitted
        data[3 * (capability / 32)] &= ~(1u << (capability % 32));     // effective
        return (int)syscall(126 /* capset */, header, data);
    }

    [System.Runtime.InteropServices.DllImport("libc")] private static extern unsafe long syscall(long number, uint* header, uint* data);

    private static async Task<bool> GoneAsync(int pid)
    {
        for (int i = 0; i < 100; i++)
        {
            string stat = File.Exists($"/proc/{pid}/stat") ? File.ReadAllText($"/proc/{pid}/stat") : "";
            if (stat.Length == 0 || stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z'))
                return true;
            await Task.Delay(50);
        }
        return false;
    }

    [Fact]
    public void The_childs_stack_has_a_guard_page_below_it()
    {
        // The helper keeps a spawned child's stack for the next spawn: after one start, its mapping is in the
        // helper's maps, a 64 KiB read-write region right above a PROT_NONE page (an overflow faults there).
        using (IsolatedProcess p = new NamespaceBuilder().Build().Start("/bin/true"))
            p.WaitForExit();

        int[] helpers = [.. Host.Descendants().Where(Host.IsSpawnHelper)];
        Assert.NotEmpty(helpers);
        Assert.Contains(helpers, pid => HasGuardedStack(File.ReadAllLines($"/proc/{pid}/maps")));
    }

    /// <summary>A "---p" page whose end is the start of a 64 KiB "rw-p" anonymous region.</summary>
    private static bool HasGuardedStack(string[] maps)
    {
        var regions = maps.Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(f => (Range: f[0].Split('-').Select(a => Convert.ToUInt64(a, 16)).ToArray(), Perms: f[1], Anonymous: f.Length < 6))
            .ToArray();
        for (int i = 0; i + 1 < regions.Length; i++)
        {
            var (guard, stack) = (regions[i], regions[i + 1]);
            if (guard.Perms == "---p" && guard.Range[1] - guard.Range[0] == 4096 && stack.Perms == "rw-p" && stack.Anonymous
                && stack.Range[0] == guard.Range[1] && stack.Range[1] - stack.Range[0] == 64 * 1024)
                return true;
        }
        return false;
    }

    [System.Runtime.InteropServices.DllImport("libc")] private static extern int kill(int pid, int signal);
}
