using System.Diagnostics;
using Isolation.Security;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;
using static Isolation.Tests.Integration.IsolateUnshareTests;

namespace Isolation.Tests.Integration;

/// <summary>
/// README's defence table ("Running untrusted code"), cell by cell: each column's face (the API preset,
/// <c>isolate unshare --untrusted</c>, <c>isolate bwrap --untrusted</c>) started as its caller (root, uid 65534
/// with a delegated cgroup, uid 65534 without), and every row read from inside that sandbox. The table is parsed
/// from README.md, so the table and this test cannot drift apart.
/// </summary>
[Collection(LeakChecks.Name)] // a fork storm and a 600 MB allocation per column: not beside other heavy tests
public sealed class DefenceTableTests
{
    private const string Python = "/usr/bin/python3";

    private static readonly string[] Rows =
        ["namespaces", "identity", "masked paths and sockets", "capabilities", "no_new_privs", "seccomp", "Landlock", "pids", "memory", "tmpfs", "time"];

    private static readonly string[] BwrapLine = ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"];

    public static TheoryData<string> Columns() => [.. Table.Value.Columns];

    [Fact]
    public void The_table_has_every_defence_for_every_face_and_caller()
    {
        Assert.Equal(Rows, Table.Value.Cells.Keys);
        Assert.Equal(9, Table.Value.Columns.Length);
        foreach (string face in new[] { "API", "unshare", "bwrap" })
        {
            foreach (string caller in new[] { "root", "deleg.", "no deleg." })
                Assert.Contains($"{face} · {caller}", Table.Value.Columns);
        }
    }

    [Theory]
    [MemberData(nameof(Columns))]
    public async Task Every_cell_of_the_column_holds_inside_a_sandbox_of_that_face_and_caller(string column)
    {
        (string face, string caller) = (column.Split(" · ")[0], column.Split(" · ")[1]);
        Host.RequireRoot();
        Assert.SkipUnless(File.Exists(Python), $"the sandbox's probes are written in Python and {Python} is missing");
        if (face != "API")
            Assert.SkipUnless(File.Exists(Isolate), $"the isolate sample is not built at {Isolate}");
        if (caller != "root")
            Host.RequireUnprivilegedRunner();
        if (caller == "deleg.")
        {
            CgroupHost.Require("pids");
            CgroupHost.Require("memory");
        }
        Dictionary<string, string> cells = Table.Value.Cells.ToDictionary(r => r.Key, r => r.Value[Array.IndexOf(Table.Value.Columns, column)]);

        string marker = "iso-defence-" + Guid.NewGuid().ToString("N");
        string hostTmpMarker = Path.Join("/tmp", marker);
        await File.WriteAllTextAsync(hostTmpMarker, "host");
        using DelegatedSubtree? delegated = caller == "deleg." ? new DelegatedSubtree() : null;
        try
        {
            // The sandbox's facts, then the time row: the same face and caller with a 1 s timeout around sleep 30.
            using var peer = new AbstractSocketPeer(marker);
            (int code, string output) = await RunAsync(face, caller, delegated, TimeSpan.FromSeconds(120), ["/bin/sh", "-c", Script(marker)]);
            var stopwatch = Stopwatch.StartNew();
            (int timedOutCode, string timedOutOutput) = await RunAsync(face, caller, delegated, TimeSpan.FromSeconds(1), ["/bin/sleep", "30"]);
            TimeSpan timedOutAfter = stopwatch.Elapsed;

            Dictionary<string, string> facts = Parse(output);
            Assert.True(facts.ContainsKey("hog"), $"the script did not finish (exit {code}): {output}");
            facts["host uid"] = peer.HostUid?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "not found";
            foreach (string row in Rows)
                Check(row, cells[row], facts, timedOutAfter, timedOutCode, timedOutOutput);
        }
        finally
        {
            File.Delete(hostTmpMarker);
        }
    }

    /// <summary>Checks one cell against what the sandbox saw; the message names the row and the cell.</summary>
    private static void Check(string row, string cell, Dictionary<string, string> f, TimeSpan timedOutAfter, int timedOutCode, string timedOutOutput)
    {
        string Because(string what) => $"{row}: the table says \"{cell}\"; {what}";
        bool holds = cell.StartsWith('✓');
        Assert.True(holds || cell.StartsWith('✗'), Because("a cell starts with ✓ or ✗"));
        switch (row)
        {
            case "namespaces":
                foreach (string name in cell[1..].Split(' ', StringSplitOptions.RemoveEmptyEntries))
                {
                    string kernelName = name == "mount" ? "mnt" : name;
                    Assert.True(f["ns " + kernelName] != Host.Namespace(kernelName), Because($"the sandbox shares the host's {name} namespace"));
                }
                break;
            case "identity":
                // Inside, uid 0 (of a nested user namespace when nested ones are disabled, so its uid_map says "0 0 1");
                // the host's /proc says which kernel uid that is.
                Assert.True(f["Uid"].Split('\t', ' ')[0] == "0", Because($"the program's uid inside is {f["Uid"]}"));
                if (cell.Contains("id block"))
                    Assert.True(int.TryParse(f["host uid"], out int block) && block is not (0 or 65534), Because($"the program is host uid {f["host uid"]}"));
                else
                    Assert.True(cell.Contains("your uid") && f["host uid"] == "65534", Because($"the program is host uid {f["host uid"]}, the caller 65534"));
                break;
            case "masked paths and sockets":
                Assert.True(Directory.EnumerateFileSystemEntries("/run").Any(), "the host's /run is empty, so the check could not fail");
                string[] sensitive = [.. new[] { "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sysrq-trigger" }.Where(File.Exists)];
                Assert.True(sensitive.Length > 0, "none of the /proc files the masks cover exists on this host, so the check could not fail");
                foreach (string path in sensitive)
                    Assert.True(f["masked " + path] != "0", Because($"{path} is not masked or read-only (no mount on it)"));
                Assert.True(f["run"] == "0", Because($"the host's /run shows {f["run"]} entries"));
                Assert.True(f["tmpmarker"] == "hidden", Because("a file the test put in the host's /tmp is visible"));
                break;
            case "capabilities":
                Assert.True(f["CapEff"] == "0000000000000000" && f["CapBnd"] == "0000000000000000", Because($"CapEff {f["CapEff"]}, CapBnd {f["CapBnd"]}"));
                break;
            case "no_new_privs":
                Assert.True(f["NoNewPrivs"] == "1", Because($"NoNewPrivs is {f["NoNewPrivs"]}"));
                break;
            case "seccomp":
                Assert.True(f["Seccomp"] == "2", Because($"Seccomp is {f["Seccomp"]} (2: a filter)"));
                break;
            case "Landlock":
                Assert.SkipWhen(Isolation.Security.SecurityCompiler.HostLandlockAbi() < 6, $"Landlock scopes need ABI 6; this kernel has {Isolation.Security.SecurityCompiler.HostLandlockAbi()}");
                // The test listened on the abstract name inside the sandbox's network namespace, from outside its domain.
                Assert.True(f["landlock"] == "EPERM", Because($"connecting to a socket outside the sandbox's Landlock domain gave {f["landlock"]}"));
                break;
            case "pids":
                string[] storm = f["storm"].Split(' ');
                int forked = int.Parse(storm[0]), errno = int.Parse(storm[1]);
                int limit = int.Parse(cell.Split(' ')[^1]);
                Assert.True(errno == 11 && forked < limit && forked > limit - 8, Because($"a fork storm forked {forked} children and stopped with errno {errno}"));
                string maxProcesses = f["Max processes"];
                if (cell.Contains("RLIMIT_NPROC"))
                    Assert.True(maxProcesses == $"{limit} {limit}", Because($"Max processes is {maxProcesses}"));
                else
                    Assert.True(cell.Contains("cgroup pids.max") && maxProcesses != $"{limit} {limit}", Because($"Max processes is {maxProcesses}: the bound is not the cgroup's"));
                break;
            case "memory":
                Assert.True(f["Max address space"] == "unlimited unlimited", Because($"Max address space is {f["Max address space"]}"));
                if (holds)
                    Assert.True(f["hog"] == "137", Because($"a 600 MB allocation ended with {f["hog"]} (137: SIGKILL)"));
                else
                    Assert.True(f["hog"] == "0", Because($"a 600 MB allocation ended with {f["hog"]}"));
                break;
            case "tmpfs":
                long bytes = long.Parse(cell.Split(' ')[2]) << 20;
                string[] writable = f["tmpfs"].Split('\n', StringSplitOptions.RemoveEmptyEntries);
                Assert.True(writable.Length > 0, Because("the sandbox has no writable tmpfs"));
                Assert.All(writable, m => Assert.True(m.Contains($"size={bytes / 1024}k"), Because($"a writable tmpfs has no size= of {bytes} bytes: {m}")));
                break;
            case "time":
                Assert.True(timedOutAfter < TimeSpan.FromSeconds(15) && timedOutCode != 0, Because($"a 1 s timeout around sleep 30 ended after {timedOutAfter.TotalSeconds:F1} s with {timedOutCode}: {timedOutOutput}"));
                break;
            default:
                Assert.Fail($"no check for row {row}");
                break;
        }
    }

    /// <summary>What the program of each column runs: the facts each row is read from, one "key value" line each.</summary>
    private static string Script(string marker) => $$"""
        grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | sed 's/:[[:space:]]*/ /'
        echo "uid_map $(tr -s ' ' < /proc/self/uid_map | sed 's/^ //')"
        for n in user pid mnt ipc uts net cgroup; do echo "ns $n $(readlink /proc/self/ns/$n)"; done
        for p in /proc/kcore /proc/keys /proc/timer_list /proc/sysrq-trigger; do echo "masked $p $(grep -c " $p " /proc/self/mountinfo)"; done
        echo "run $(ls -A /run 2>/dev/null | wc -l)"
        echo "tmpmarker $(test -e /tmp/{{marker}} && echo visible || echo hidden)"
        awk -F'  +' '/^Max (processes|address space)/ {print $1 "\t" $2 " " $3}' /proc/self/limits
        grep ' - tmpfs ' /proc/self/mountinfo | awk '$6 ~ /^rw/' | sed 's/^/tmpfs /'
        echo "landlock $({{Python}} - <<'PY'
        import errno, socket, time
        for _ in range(300):
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect("\0{{marker}}")
                print("connected")
                break
            except OSError as e:
                if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    time.sleep(0.05)
                    continue
                print(errno.errorcode[e.errno])
                break
        else:
            print("nobody listened")
        PY
        )"
        echo "storm $({{Python}} - <<'PY'
        {{NprocFallbackTests.Storm(2000)}}
        PY
        )"
        {{Python}} -c 'x = b"x" * (600 << 20)' >/dev/null 2>&1
        echo "hog $?"
        """;

    /// <summary>"key value" lines into a map; tmpfs lines are gathered under "tmpfs"; "Max ..." lines keep soft and hard.</summary>
    private static Dictionary<string, string> Parse(string output)
    {
        var facts = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("tmpfs ", StringComparison.Ordinal))
                facts["tmpfs"] = facts.GetValueOrDefault("tmpfs", "") + line[6..] + "\n";
            else if (line.StartsWith("Max ", StringComparison.Ordinal) && line.Contains('\t'))
                facts[line[..line.IndexOf('\t')]] = line[(line.IndexOf('\t') + 1)..].Trim();
            else if (line.StartsWith("ns ", StringComparison.Ordinal) || line.StartsWith("masked ", StringComparison.Ordinal))
            {
                int split = line.IndexOf(' ', line.IndexOf(' ') + 1);
                facts[line[..split]] = line[(split + 1)..];
            }
            else if (line.IndexOf(' ') is int space and > 0)
                facts[line[..space]] = line[(space + 1)..].Trim();
        }
        return facts;
    }

    /// <summary>Runs <paramref name="program"/> in the column's face as its caller; returns the exit code and standard output.</summary>
    private static async Task<(int Code, string Output)> RunAsync(string face, string caller, DelegatedSubtree? delegated, TimeSpan timeout, string[] program)
    {
        if (face == "API" && caller == "root")
        {
            IsolationSpec spec = NamespaceBuilder.ForUntrustedCode().WithTimeout(timeout).WithStandardOutput(Stdio.Pipe).Build();
            await using IsolatedProcess p = spec.Start(program[0], program[1..]);
            string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
            ExitStatus status = await p.WaitForExitAsync();
            return (status.Reason == TerminationReason.TimedOut ? 124 : status.ExitCode, output);
        }
        if (face == "API")
        {
            string[] options = ["--untrusted", .. delegated is null ? [] : (string[])["--cgroup-parent", delegated.CgroupPath], "--timeout-ms", ((int)timeout.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture), "--", .. program];
            SpawnOutcome o = delegated?.SpawnUnprivileged(options) ?? TestHostRunner.SpawnUnprivileged(options);
            Assert.True(o.Started, $"{face} · {caller} did not start: {o.Error?.Message}{o.ArgumentError}");
            return (o.Reason == "TimedOut" ? 124 : o.ExitCode, o.Stdout);
        }
        string seconds = $"{(int)timeout.TotalSeconds}s";
        string[] limits = [.. delegated is null ? [] : (string[])["--cgroup-parent", delegated.CgroupPath], "--timeout", seconds];
        string[] args = face == "unshare"
            ? ["unshare", "--untrusted", .. limits, .. program]
            : ["bwrap", "--untrusted", .. limits, .. BwrapLine, "--", .. program];
        string isolate = caller == "root" ? Isolate : IsolateForAnyUser;
        ProcessStartInfo info = delegated?.StartInfoUnprivileged(isolate, args) ?? StartInfo(isolate, args, unprivileged: caller != "root");
        info.RedirectStandardInput = false;
        info.Environment["HOME"] = "/tmp";
        using Process process = Process.Start(info)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(150));
        await process.WaitForExitAsync(cancel.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    /// <summary>README.md's defence table: its column headers, and each row's cells in column order.</summary>
    private static readonly Lazy<(string[] Columns, Dictionary<string, string[]> Cells)> Table = new(() =>
    {
        string readme = File.ReadAllText(Path.Join(TestHostRunner.RepoRoot, "README.md"));
        string section = readme[readme.IndexOf("## Running untrusted code", StringComparison.Ordinal)..];
        string[] lines = section.Split('\n').SkipWhile(l => !l.StartsWith("| Defence |", StringComparison.Ordinal)).TakeWhile(l => l.StartsWith('|')).ToArray();
        static string[] Split(string line) => line.Trim().Trim('|').Split('|').Select(c => c.Trim()).ToArray();
        string[] header = Split(lines[0]);
        var cells = new Dictionary<string, string[]>(StringComparer.Ordinal);
        foreach (string line in lines.Skip(2))
        {
            string[] row = Split(line);
            cells[row[0]] = row[1..];
        }
        return (header[1..], cells);
    });

    /// <summary>
    /// A listener on the abstract unix name <c>\0marker</c> inside the network namespace of whichever sandbox runs
    /// a command line holding the marker: the test, outside every Landlock domain, enters that namespace with
    /// nsenter. Landlock's abstract-socket scope must refuse the sandbox's connection (EPERM).
    /// </summary>
    private sealed class AbstractSocketPeer : IDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _task;
        private Process? _listener;

        /// <summary>The real uid of the sandbox's program as the host sees it, once found.</summary>
        public int? HostUid { get; private set; }

        public AbstractSocketPeer(string marker) => _task = Task.Run(() => Listen(marker));

        private async Task Listen(string marker)
        {
            string hostNet = Host.Namespace("net");
            while (!_stop.IsCancellationRequested)
            {
                foreach (string dir in Directory.EnumerateDirectories("/proc"))
                {
                    if (!int.TryParse(Path.GetFileName(dir), out int pid))
                        continue;
                    try
                    {
                        string net = new FileInfo($"{dir}/ns/net").LinkTarget ?? hostNet;
                        if (net == hostNet || !File.ReadAllText($"{dir}/cmdline").Contains(marker, StringComparison.Ordinal))
                            continue;
                        string uidLine = File.ReadLines($"{dir}/status").First(l => l.StartsWith("Uid:", StringComparison.Ordinal));
                        HostUid = int.Parse(uidLine.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
                        var info = new ProcessStartInfo("nsenter") { UseShellExecute = false, RedirectStandardOutput = true };
                        foreach (string a in (string[])[$"--net=/proc/{pid}/ns/net", "--", Python, "-c",
                                     $"import socket, time\ns = socket.socket(socket.AF_UNIX)\ns.bind('\\0{marker}')\ns.listen(8)\ntime.sleep(120)"])
                            info.ArgumentList.Add(a);
                        _listener = Process.Start(info);
                        return;
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                    {
                    }
                }
                await Task.Delay(20);
            }
        }

        public void Dispose()
        {
            _stop.Cancel();
            _task.Wait(TimeSpan.FromSeconds(5));
            if (_listener is { } l)
            {
                l.Kill();
                l.WaitForExit();
                l.Dispose();
            }
        }
    }
}
