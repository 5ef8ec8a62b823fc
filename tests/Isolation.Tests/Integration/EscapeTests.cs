using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;
using Isolation.Cgroups;

namespace Isolation.Tests.Integration;

/// <summary>
/// The classic container escapes, each attempted for real from inside <see cref="NamespaceBuilder.ForUntrustedCode"/>
/// by the test host's <c>attempts</c> mode, as root and as an unprivileged caller. Prints a table
/// (attempt, expected defence, result) and fails on any escape.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed partial class EscapeTests(ITestOutputHelper output) : IDisposable
{
    private const int AttemptCount = 29;
    private readonly string _markerDir = CreateMarkerDir();
    private readonly string _markerText = "isolation-marker-" + Guid.NewGuid().ToString("N");

    private string MarkerFile => Path.Combine(_markerDir, "secret");

    [Fact]
    public async Task No_classic_escape_works_from_the_untrusted_preset_as_root()
    {
        Host.RequireRoot();
        using var leak = new LeakedHostDescriptor(_markerDir);
        using var pty = Pty.Open();
        File.WriteAllText(MarkerFile, _markerText);

        // As root the preset's identity is a block of host ids of its own: bind and run the copy any user reaches.
        NamespaceBuilder builder = NamespaceBuilder.ForUntrustedCode()
            .WithMounts(m => m.BindReadOnly(TestHostRunner.DirectoryForAnyUser, TestHostRunner.DirectoryForAnyUser))
            .WithEnvironment(e => e.Set("DOTNET_EnableDiagnostics", "0"))
            .WithStandardInput(pty is null ? Stdio.Null : Stdio.File(pty.SlavePath))
            .WithStandardOutput(Stdio.Pipe);
        await using IsolatedProcess process = builder.Build().Start(TestHostRunner.ExecutableForAnyUser, Arguments());
        string json = await new StreamReader(process.StandardOutput!).ReadToEndAsync();
        ExitStatus status = await process.WaitForExitAsync();

        Assert.True(status.Success, $"attempts exited {status}: {json}");
        AssertNoEscape("root", json, leak.Fd);
    }

    [Fact]
    public void No_classic_escape_works_from_the_untrusted_preset_as_an_unprivileged_caller()
    {
        Host.RequireUnprivilegedRunner();
        using var leak = new LeakedHostDescriptor(_markerDir);
        using var pty = Pty.Open();
        File.WriteAllText(MarkerFile, _markerText);
        File.SetUnixFileMode(MarkerFile, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged(
            ["--untrusted", "--ro-bind", TestHostRunner.DirectoryForAnyUser + ":" + TestHostRunner.DirectoryForAnyUser, "--setenv", "DOTNET_EnableDiagnostics", "0",
             .. pty is null ? Array.Empty<string>() : ["--stdin-file", pty.SlavePath],
             "--", TestHostRunner.ExecutableForAnyUser, .. Arguments()]);

        Assert.True(outcome.Started, $"{outcome.Error?.Message}{outcome.ArgumentError}");
        Assert.True(outcome.ExitCode == 0, $"attempts exited {outcome.ExitCode} signal {outcome.Signal}: {outcome.Stdout}");
        AssertNoEscape("uid 65534", outcome.Stdout, leak.Fd);
    }

    [Fact]
    public async Task A_fork_storm_is_stopped_by_the_presets_pids_limit()
    {
        Host.RequireRoot(); // cgroup delegation: root may create cgroups on this host
        IsolationSpec spec = NamespaceBuilder.ForUntrustedCode().WithTimeout(TimeSpan.FromSeconds(60)).Build();
        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "i=0; while [ $i -lt 5000 ]; do sleep 30 & i=$((i+1)); done; wait");
        ExitStatus status = await p.WaitForExitAsync();
        CgroupStats? stats = p.GetCgroupStats();

        output.WriteLine($"fork storm: {status}; pids.max hits: {stats?.PidsLimitHits}");
        Assert.Null(p.CgroupError);
        Assert.Equal(TerminationReason.PidsLimit, status.Reason);
        Assert.True(stats!.PidsLimitHits > 0);
    }

    [Fact]
    public async Task A_memory_hog_is_oom_killed_inside_the_preset()
    {
        Host.RequireRoot();
        IsolationSpec spec = NamespaceBuilder.ForUntrustedCode().WithCgroup(c => c.MemoryMax(64L << 20).MemorySwapMax(0)).WithTimeout(TimeSpan.FromSeconds(60)).Build();
        await using IsolatedProcess p = spec.Start("/bin/sh", "-c", "x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo ${#x}");
        ExitStatus status = await p.WaitForExitAsync();

        output.WriteLine($"memory hog: {status}");
        Assert.Equal(TerminationReason.OutOfMemory, status.Reason);
    }

    [Fact]
    public async Task A_symlink_planted_by_sandboxed_code_does_not_redirect_a_setup_write_to_the_host()
    {
        Host.RequireRoot();
        string shared = Directory.CreateTempSubdirectory("isolation-shared-").FullName;
        File.SetUnixFileMode(shared, (UnixFileMode)0x1FF); // 0777: the sandbox's root (host nobody) may write
        string hostTarget = Directory.CreateTempSubdirectory("isolation-victim-").FullName; // root-owned 0700
        try
        {
            // Run 1: untrusted code plants a symlink where the next run's mount plan writes.
            NamespaceBuilder plant = NamespaceBuilder.ForUntrustedCode().WithMounts(m => m.Bind(shared, "/work"));
            await using (IsolatedProcess p = plant.Build().Start("/bin/ln", "-s", hostTarget, "/work/plant"))
                Assert.Equal(0, (await p.WaitForExitAsync()).ExitCode);
            Assert.Equal(hostTarget, new FileInfo(Path.Combine(shared, "plant")).LinkTarget);

            // Run 2: a plan that writes a file through the planted path.
            NamespaceBuilder victim = NamespaceBuilder.ForUntrustedCode()
                .WithMounts(m => m.Bind(shared, "/work").File("/work/plant/pwned", "x"));
            string result;
            try
            {
                await using IsolatedProcess p = victim.Build().Start("/bin/true");
                await p.WaitForExitAsync();
                result = "started";
            }
            catch (SandboxSetupException e)
            {
                result = $"setup failed: {e.Message}";
            }

            output.WriteLine($"symlink swap: {result}");
            Assert.False(File.Exists(Path.Combine(hostTarget, "pwned")), $"the mount plan wrote through the planted symlink into {hostTarget}");
        }
        finally
        {
            Directory.Delete(shared, recursive: true);
            Directory.Delete(hostTarget, recursive: true);
        }
    }

    public void Dispose() => Directory.Delete(_markerDir, recursive: true);

    private string[] Arguments() => ["attempts", "--marker", MarkerFile, "--marker-text", _markerText, "--host-pid", Environment.ProcessId.ToString()];

    private void AssertNoEscape(string caller, string json, int leakedFd)
    {
        List<AttemptResult> results = JsonSerializer.Deserialize(json, AttemptJson.Default.ListAttemptResult)!;
        var table = new StringBuilder();
        table.AppendLine($"Escape attempts from ForUntrustedCode() as {caller} (host fd {leakedFd} open on the marker's directory, not CLOEXEC)");
        table.AppendLine($"{"attempt",-52} | {"expected defence",-70} | result");
        table.AppendLine(new string('-', 170));
        foreach (AttemptResult r in results)
            table.AppendLine($"{r.Attempt,-52} | {r.Defence,-70} | {(r.Escaped ? "ESCAPED: " : "")}{r.Detail}");
        output.WriteLine(table.ToString());

        Assert.Equal(AttemptCount, results.Count);
        Assert.Empty(results.Where(r => r.Escaped).Select(r => $"{r.Attempt}: {r.Detail}"));
        Assert.True(File.ReadAllText(MarkerFile) == _markerText, "the marker is readable on the host, so 'blocked' means the sandbox stopped it");
    }

    private static string CreateMarkerDir()
    {
        string dir = Directory.CreateTempSubdirectory("isolation-escape-").FullName;
        File.SetUnixFileMode(dir, (UnixFileMode)0x1ED); // 0755: readable by the unprivileged caller too
        return dir;
    }

    /// <summary>A directory descriptor opened without O_CLOEXEC in the caller: the leak of runc CVE-2024-21626.</summary>
    private sealed partial class LeakedHostDescriptor : IDisposable
    {
        public LeakedHostDescriptor(string directory)
        {
            Fd = open(directory, 0x10000 /* O_DIRECTORY */);
            Assert.True(Fd >= 0, "open the marker directory");
        }

        public int Fd { get; }

        public void Dispose() => close(Fd);

        [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)] private static partial int open(string path, int flags);
        [LibraryImport("libc")] private static partial int close(int fd);
    }

    /// <summary>A pseudo-terminal whose slave becomes the sandbox's stdin, so TIOCSTI has a terminal to target.</summary>
    private sealed partial class Pty : IDisposable
    {
        private readonly int _master;

        private Pty(int master, string slave)
        {
            _master = master;
            SlavePath = slave;
        }

        public string SlavePath { get; }

        public static Pty? Open()
        {
            int master = posix_openpt(0x2 | 0x100 /* O_RDWR | O_NOCTTY */);
            if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0)
                return null;
            string slave = Marshal.PtrToStringUTF8(ptsname(master))!;
            File.SetUnixFileMode(slave, (UnixFileMode)0x1B6); // 0666, so the unprivileged run can open it
            return new Pty(master, slave);
        }

        public void Dispose() => close(_master);

        [LibraryImport("libc")] private static partial int posix_openpt(int flags);
        [LibraryImport("libc")] private static partial int grantpt(int fd);
        [LibraryImport("libc")] private static partial int unlockpt(int fd);
        [LibraryImport("libc")] private static partial nint ptsname(int fd);
        [LibraryImport("libc")] private static partial int close(int fd);
    }
}
