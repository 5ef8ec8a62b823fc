using System.Diagnostics;
using System.Text.Json;
using Isolation.Tests.Infrastructure;
using static Isolation.Tests.Integration.BwrapTests;

namespace Isolation.Tests.Integration;

/// <summary>
/// <c>isolate bwrap</c> where bubblewrap's own test suite and users found it apart from bwrap: capability
/// sets spelled ALL, the status records, the lock, --perms and --size, mount-point files, and
/// --die-with-parent for isolate itself. Compared with the real bwrap where both can run the same command line.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class BwrapFaceTests
{
    public static TheoryData<string> SameAsBwrap => new()
    {
        Usr + "--cap-drop ALL -- /bin/grep Cap /proc/self/status",
        Usr + "--unshare-user --cap-add ALL -- /bin/grep Cap /proc/self/status",
        Usr + "--tmpfs /tmp --perms 0700 --size 1048576 --tmpfs /tmp/t -- /usr/bin/stat -c %a /tmp/t",
        Usr + "--tmpfs /tmp --size 1048576 --perms 0700 --tmpfs /tmp/t -- /usr/bin/stat -c %a /tmp/t",
        Usr + "--tmpfs /tmp --perms 0700 --dir /tmp/a/b/c --dir /tmp/d/e -- /usr/bin/stat -c '%n %a' /tmp/a /tmp/a/b /tmp/a/b/c /tmp/d /tmp/d/e",
        // Parents of what bwrap creates are 0755 less what the thing itself denies its group or others.
        Usr + "--tmpfs /tmp --perms 1777 --dir /tmp/s/d --perms 0640 --dir /tmp/g/d --perms 0604 --file 3 /tmp/o/f --perms 0000 --tmpfs /tmp/n/t "
            + "-- /usr/bin/stat -c '%n %a' /tmp/s /tmp/s/d /tmp/g /tmp/g/d /tmp/o /tmp/o/f /tmp/n /tmp/n/t 3</dev/null",
        // --proc without --unshare-pid binds the caller's /proc (so it works in a new user namespace too); outside one, its knobs are made read-only.
        Usr + "--unshare-user --proc /proc -- /bin/sh -c 'test -e /proc/1/status && echo host-pids; echo 1 > /proc/sys/kernel/ns_last_pid || echo refused'",
        Usr + "--proc /proc -- /usr/bin/findmnt -no TARGET,OPTIONS -R /proc",
        // The mount point bwrap creates for a file bind is an empty 0444 file: seen once the bind is gone.
        Usr + "--tmpfs /tmp --ro-bind /etc/hostname /tmp/h --unshare-user --uid 0 --cap-add ALL -- /bin/sh -c 'umount /tmp/h && stat -c %a /tmp/h'",
    };

    [Theory]
    [MemberData(nameof(SameAsBwrap))]
    public void Isolate_bwrap_matches_bubblewrap_as_root(string commandLine)
    {
        Host.RequireRoot();
        RequireBoth();
        AssertSame(commandLine, unprivileged: false);
    }

    [Theory]
    [MemberData(nameof(SameAsBwrap))]
    public void Isolate_bwrap_matches_bubblewrap_unprivileged(string commandLine)
    {
        Host.RequireUnprivilegedRunner();
        RequireBoth();
        AssertSame(commandLine, unprivileged: true);
    }

    [Fact]
    public void Status_records_to_a_regular_file_follow_each_other_and_carry_the_namespace_ids_bwrap_reports()
    {
        Host.RequireRoot();
        RequireBoth();
        string dir = BusyboxRoot.NewTempDirectory("isolation-bwrap-status-");
        try
        {
            var seen = new List<(string[] Json, string[] Info)>();
            foreach (string program in (string[])["/usr/bin/bwrap", Isolate + " bwrap"])
            {
                string json = Path.Combine(dir, "json"), info = Path.Combine(dir, "info");
                // The program outlives the first record (bwrap reads the ids while its child runs).
                var r = Run(program, Usr + $"--unshare-all --json-status-fd 3 --info-fd 4 -- /bin/sh -c 'sleep 0.3; exit 5' 3>{json} 4>{info}", unprivileged: false);
                Assert.True(r.Code == 5, $"{program}: exit {r.Code}: {r.Stderr}");
                seen.Add((File.ReadAllLines(json), [File.ReadAllText(info)]));
            }

            (string[] bwrapJson, string[] bwrapInfo) = seen[0];
            (string[] isolateJson, string[] isolateInfo) = seen[1];
            Assert.Equal(2, isolateJson.Length); // the child-pid record, then the exit record: none overwritten
            Assert.Equal(Keys(bwrapJson[0]), Keys(isolateJson[0]));
            Assert.Equal(["exit-code"], Keys(isolateJson[1]));
            Assert.Equal(5, JsonDocument.Parse(isolateJson[1]).RootElement.GetProperty("exit-code").GetInt32());
            Assert.Equal(Keys(bwrapInfo[0]), Keys(isolateInfo[0]));
            Assert.Contains("mnt-namespace", Keys(isolateInfo[0]));
            // The ids are the sandbox's own, not the host's.
            Assert.NotEqual(NamespaceId("/proc/self/ns/mnt"), JsonDocument.Parse(isolateInfo[0]).RootElement.GetProperty("mnt-namespace").GetInt64());
        }
        finally
        {
            BusyboxRoot.DeleteTree(dir);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Lock_file_is_an_fcntl_read_lock_as_bubblewrap_takes_it(bool unprivileged)
    {
        if (unprivileged)
            Host.RequireUnprivilegedRunner();
        else
            Host.RequireRoot();
        RequireBoth();
        string dir = BusyboxRoot.NewTempDirectory("isolation-bwrap-lock-");
        try
        {
            string file = Path.Combine(dir, "lock");
            File.WriteAllText(file, "");
            File.SetUnixFileMode(dir, (UnixFileMode)0x1ED);
            File.SetUnixFileMode(file, (UnixFileMode)0x1A4);
            // While the program runs, the lock is held: /proc/locks shows its kind (POSIX for fcntl, FLOCK for flock).
            AssertSame($"--ro-bind / / --lock-file {file} -- /bin/sh -c 'i=$(stat -c %i {file}); grep \":$i \" /proc/locks | awk \"{{print \\$2, \\$3, \\$4}}\"'", unprivileged);
            var r = Run(Isolate + " bwrap", $"--ro-bind / / --lock-file {file} -- /bin/sh -c 'grep -c \":$(stat -c %i {file}) \" /proc/locks'", unprivileged: false);
            Assert.Equal("1\n", r.Stdout); // and it is there at all (the comparison alone would pass on two empty outputs)
        }
        finally
        {
            BusyboxRoot.DeleteTree(dir);
        }
    }

    [Fact]
    public void Die_with_parent_ends_the_sandbox_when_isolates_own_parent_dies()
    {
        Host.RequireRoot();
        Assert.SkipUnless(File.Exists(Isolate), $"needs the isolate sample built ({Isolate}): dotnet build samples/Isolate -c Release");
        string marker = $"1000.{Random.Shared.Next(100000, 999999)}";
        // sh starts isolate in the background, prints its pid and waits; killing sh orphans isolate.
        var info = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in (string[])["-c", $"{Isolate} bwrap --die-with-parent --ro-bind / / /bin/sleep {marker} </dev/null >/dev/null 2>&1 & echo $!; exec /bin/sleep 60"])
            info.ArgumentList.Add(a);
        using Process parent = Process.Start(info)!;
        int isolatePid = int.Parse(parent.StandardOutput.ReadLine()!, System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            Assert.True(WaitUntil(() => SleepersWith(marker).Count == 1), "the sandboxed sleep never started");

            parent.Kill();
            parent.WaitForExit();

            Assert.True(WaitUntil(() => SleepersWith(marker).Count == 0), "the sandbox outlived isolate's parent");
            Assert.True(WaitUntil(() => Gone(isolatePid)), $"isolate (pid {isolatePid}) outlived its parent");
        }
        finally
        {
            foreach (int pid in SleepersWith(marker))
                Kill(pid);
            if (!Gone(isolatePid))
                Kill(isolatePid);
        }
    }

    private static string[] Keys(string json) =>
        [.. JsonDocument.Parse(json).RootElement.EnumerateObject().Select(p => p.Name)];

    private static long NamespaceId(string link)
    {
        string target = new FileInfo(link).LinkTarget!; // "mnt:[4026531841]"
        return long.Parse(target[(target.IndexOf('[') + 1)..^1], System.Globalization.CultureInfo.InvariantCulture);
    }

    private static bool WaitUntil(Func<bool> condition)
    {
        for (int i = 0; i < 200; i++)
        {
            if (condition())
                return true;
            Thread.Sleep(50);
        }
        return false;
    }

    private static List<int> SleepersWith(string marker)
    {
        var pids = new List<int>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid))
                continue;
            try
            {
                string cmdline = File.ReadAllText(Path.Combine(dir, "cmdline"));
                if (cmdline.StartsWith("/bin/sleep\0", StringComparison.Ordinal) && cmdline.Contains(marker, StringComparison.Ordinal))
                    pids.Add(pid);
            }
            catch (IOException)
            {
                // gone meanwhile
            }
        }
        return pids;
    }

    /// <summary>Exited: no /proc entry, or a zombie (its new parent has not reaped it yet).</summary>
    private static bool Gone(int pid) => Isolation.TestHost.ProcessTable.Read(pid) is null or { State: 'Z' };

    private static void Kill(int pid)
    {
        try
        {
            Process.GetProcessById(pid).Kill();
        }
        catch (ArgumentException)
        {
            // already gone
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
    }
}
