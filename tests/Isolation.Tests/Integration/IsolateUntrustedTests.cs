using System.Diagnostics;
using System.Net.Sockets;
using Isolation.Tests.Infrastructure;
using static Isolation.Tests.Integration.IsolateUnshareTests;

namespace Isolation.Tests.Integration;

/// <summary>
/// <c>isolate bwrap --untrusted</c> is the whole ForUntrustedCode() preset with the command line's file system
/// inside it (issue #11, item 1): the exact line below starts and holds, as root and as uid 65534, against
/// the attempts that gave full host root before — core_pattern, /etc/shadow, a host unix socket, the host's
/// environment — and its program is never host root nor an id host daemons know.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class IsolateUntrustedTests
{
    private static readonly string[] ExactLine = ["bwrap", "--untrusted", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--"];

    [Fact]
    public async Task The_untrusted_bwrap_line_holds_as_root()
    {
        RequireIsolate();
        Host.RequireRoot();
        Facts facts = await RunAsync(unprivileged: false, ExactLine);

        facts.AssertHeld();
        Assert.NotEqual(0, facts.HostUid);
        Assert.NotEqual(65534, facts.HostUid); // not nobody, whom host daemons know: a block of its own
        Assert.NotEqual(0, facts.HostGid);
        Assert.Equal(facts.HostUid, facts.HostGid);
    }

    [Fact]
    public async Task The_untrusted_bwrap_line_holds_as_an_unprivileged_user()
    {
        RequireIsolate();
        Host.RequireUnprivilegedRunner();
        Facts facts = await RunAsync(unprivileged: true, ExactLine);

        facts.AssertHeld();
        Assert.Equal(65534, facts.HostUid);
    }

    [Fact]
    public async Task Two_untrusted_sandboxes_of_root_get_different_host_ids()
    {
        RequireIsolate();
        Host.RequireRoot();
        Task<Facts> a = RunAsync(unprivileged: false, ExactLine);
        Task<Facts> b = RunAsync(unprivileged: false, ExactLine);
        Assert.NotEqual((await a).HostUid, (await b).HostUid);
    }

    [Fact]
    public async Task Without_untrusted_the_same_attempts_succeed_as_root_so_the_checks_can_fail()
    {
        RequireIsolate();
        Host.RequireRoot();
        Facts facts = await RunAsync(unprivileged: false, ["bwrap", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--unshare-pid", "--"]);

        Assert.Contains("ESCAPE:shadow", facts.Output);
        Assert.Contains("ESCAPE:socket", facts.Output);
        Assert.Contains("ESCAPE:run", facts.Output);
        Assert.Contains("ESCAPE:env", facts.Output);
        Assert.Equal(0, facts.HostUid);
    }

    [Theory]
    [InlineData("--share-net", "--share-net cannot be combined with --untrusted")]
    [InlineData("--uid|5", "--uid and --gid other than 0")]
    public async Task Untrusted_refuses_options_that_would_weaken_it(string options, string message)
    {
        RequireIsolate();
        Outcome o = await IsolateUnshareTests.RunAsync(Isolate, ["bwrap", "--untrusted", .. options.Split('|'), "--ro-bind", "/", "/", "--", "/bin/true"], unprivileged: false);
        Assert.Equal(1, o.ExitCode);
        Assert.Contains(message, o.Stderr);
    }

    /// <summary>What the program saw (its output) and its kernel uid/gid read from the host.</summary>
    private sealed record Facts(string Output, int HostUid, int HostGid)
    {
        public void AssertHeld()
        {
            Assert.Contains("STARTED uid=0", Output);
            Assert.DoesNotContain("ESCAPE:", Output);
            Assert.Contains("TMP_WRITABLE", Output);
            Assert.Contains("NoNewPrivs:\t1", Output);
            Assert.Contains("CapEff:\t0000000000000000", Output);
        }
    }

    /// <summary>
    /// Runs isolate with <paramref name="prefix"/> and a shell script that attempts each escape and then waits
    /// on stdin, so that the program's kernel ids can be read from the host's /proc while it runs.
    /// </summary>
    private static async Task<Facts> RunAsync(bool unprivileged, string[] prefix)
    {
        string marker = "iso-untrusted-" + Guid.NewGuid().ToString("N");
        string socketPath = $"/run/{marker}.sock";
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        listener.Listen();
        File.SetUnixFileMode(socketPath, (UnixFileMode)0x1FF); // any uid may connect: only the mask stops it
        try
        {
            string script = $"""
                : {marker}
                echo "STARTED uid=$(id -u)"
                echo x > /proc/sys/kernel/core_pattern 2>/dev/null && echo ESCAPE:core_pattern
                cat /etc/shadow >/dev/null 2>&1 && echo ESCAPE:shadow
                /usr/bin/python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' {socketPath} 2>/dev/null && echo ESCAPE:socket
                [ -n "$(ls -A /run 2>/dev/null)" ] && echo ESCAPE:run
                [ -n "$HOST_SECRET" ] && echo ESCAPE:env
                echo hi > /tmp/f && echo TMP_WRITABLE
                grep -E '^(NoNewPrivs|CapEff):' /proc/self/status
                echo READY
                read line
                """;
            ProcessStartInfo info = StartInfo(unprivileged ? IsolateForAnyUser : Isolate, [.. prefix, "/bin/sh", "-c", script], unprivileged);
            info.Environment["HOST_SECRET"] = "hunter2";

            using Process process = Process.Start(info)!;
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            var output = new System.Text.StringBuilder();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            while (await process.StandardOutput.ReadLineAsync(timeout.Token) is { } line)
            {
                output.AppendLine(line);
                if (line == "READY")
                    break;
            }
            (int uid, int gid) = HostIds(process.Id, marker);
            process.StandardInput.WriteLine();
            process.StandardInput.Close();
            output.Append(await process.StandardOutput.ReadToEndAsync(timeout.Token));
            await process.WaitForExitAsync(timeout.Token);
            Assert.True(process.ExitCode == 0, $"isolate exited {process.ExitCode}: {await stderr}{output}");
            return new Facts(output.ToString(), uid, gid);
        }
        finally
        {
            File.Delete(socketPath);
        }
    }

    /// <summary>The real uid and gid, as the host sees them, of the descendant of <paramref name="root"/> whose command line holds <paramref name="marker"/>.</summary>
    private static (int Uid, int Gid) HostIds(int root, string marker)
    {
        foreach (int pid in Host.Descendants(root))
        {
            try
            {
                if (!File.ReadAllText($"/proc/{pid}/cmdline").Contains(marker, StringComparison.Ordinal))
                    continue;
                string[] status = File.ReadAllLines($"/proc/{pid}/status");
                int Field(string name) => int.Parse(status.First(l => l.StartsWith(name + ":", StringComparison.Ordinal)).Split('\t', StringSplitOptions.RemoveEmptyEntries)[1]);
                return (Field("Uid"), Field("Gid"));
            }
            catch (IOException)
            {
                // gone meanwhile
            }
        }
        throw new InvalidOperationException($"no process with marker {marker} under {root}");
    }

    private static void RequireIsolate() => Assert.SkipUnless(File.Exists(Isolate), $"the isolate sample is not built at {Isolate}; build the solution");
}
