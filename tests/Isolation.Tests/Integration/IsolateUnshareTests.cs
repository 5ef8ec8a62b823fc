using System.Diagnostics;
using System.Reflection;
using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>
/// The isolate sample's <c>unshare</c> face run side by side with util-linux unshare(1) on the same command
/// lines: same exit status and same output (pid, uid, hostname, id maps, the /proc mount), as root and as
/// uid 65534. Command lines are written with '|' between arguments.
/// </summary>
public sealed class IsolateUnshareTests
{
    internal static readonly string Isolate = Path.Combine(
        typeof(IsolateUnshareTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().First(a => a.Key == "IsolateDir").Value!,
        "isolate");

    /// <summary><see cref="Isolate"/> where uid 65534 can run it (a staged copy when the checkout is private).</summary>
    internal static string IsolateForAnyUser => Staging.ProgramForAnyUser(Isolate);

    private static readonly string? Unshare = new[] { "/usr/bin/unshare", "/bin/unshare" }.FirstOrDefault(File.Exists);

    // ---- Same exit status and output as util-linux unshare, as root ----

    [Theory]
    [InlineData("-r|id|-u")] // options end at the program: -u is id's
    [InlineData("--map-user=0|id|-u")] // implies --user
    [InlineData("--map-group=0|id|-g")]
    [InlineData("-U|id|-u")] // unmapped: the overflow uid
    [InlineData("-c|id|-u")]
    [InlineData("--user|--pid|--map-root-user|--mount-proc|--fork|sh|-c|echo $$; id -u; cat /proc/1/comm")] // the README's command
    [InlineData("-Urpf|sh|-c|echo $$")] // bundled short options
    [InlineData("--kill-child|-rp|sh|-c|echo $$")] // --kill-child implies --fork
    [InlineData("-rpf|--mount-proc=/proc|sh|-c|cat /proc/1/comm; grep -c ' /proc proc ' /proc/self/mountinfo")]
    [InlineData("--mount-proc|sh|-c|cat /proc/1/comm; grep -c ' /proc proc ' /proc/self/mountinfo")] // without -p: a proc of the caller's PID namespace
    [InlineData("-r|cat|/proc/self/uid_map|/proc/self/gid_map|/proc/self/setgroups")]
    [InlineData("-U|--setgroups=allow|cat|/proc/self/setgroups")]
    [InlineData("-u|sh|-c|hostname sandbox && hostname")]
    [InlineData("-rm|findmnt|-no|PROPAGATION|/")]
    [InlineData("-S|5|-G|7|id")]
    [InlineData("-r|-w|/tmp|pwd")]
    [InlineData("--|id|-un")]
    [InlineData("-r|sh|-c|exit 7")]
    [InlineData("-rf|sh|-c|kill -TERM $$")] // unshare -f dies by the child's signal: 128 + 15 to the shell
    [InlineData("-r|sh|-c|kill -KILL $$")] // without -f the program's own death by signal: 128 + 9
    [InlineData("-S0|-G|0|id")] // a short option's value attached or separate
    [InlineData("-rw/tmp|pwd")] // ... also at the end of a bundle
    [InlineData("--setu=0|--setg|0|id")] // unique prefixes of long options; a required value after '=' or separate
    [InlineData("--map-r|--fo|--pid|--mount-p|sh|-c|echo $$; cat /proc/1/comm")]
    [InlineData("--propagation|private|-rm|findmnt|-no|PROPAGATION|/")]
    [InlineData("-r|-|id")] // "-" alone is the program, not an option
    public async Task As_root_isolate_unshare_prints_and_exits_like_util_linux_unshare(string commandLine) =>
        await AssertSameExitAndStdoutAsRootAsync(commandLine);

    /// <summary>Runs both as root; the exit codes and standard outputs must be the same.</summary>
    private static async Task<(Outcome Unshare, Outcome Isolate)> AssertSameExitAndStdoutAsRootAsync(string commandLine)
    {
        RequireRootAndUnshare();

        (Outcome expected, Outcome actual) = await RunBothAsync(commandLine.Split('|'), unprivileged: false);

        Assert.Equal(expected.ExitCode, actual.ExitCode);
        Assert.Equal(expected.Stdout, actual.Stdout);
        return (expected, actual);
    }

    /// <summary>getopt names unshare by its argv[0] (here its path), isolate itself "isolate unshare": both as "unshare".</summary>
    private static string Named(string stderr) =>
        stderr.Replace(Unshare + ":", "unshare:", StringComparison.Ordinal).Replace("isolate unshare", "unshare", StringComparison.Ordinal);

    [Theory]
    [InlineData("-x")] // an unknown short option
    [InlineData("-rx|id")] // ... in a bundle
    [InlineData("--foo")]
    [InlineData("--foo=1")]
    [InlineData("-S")] // a required value missing
    [InlineData("--setuid")]
    [InlineData("--fork=1")] // a value given to an option that takes none
    [InlineData("--map")] // an ambiguous prefix, with the candidates in unshare's order
    [InlineData("--mo|id")]
    [InlineData("-m/proc|id")] // a short option's optional value is never attached (only --mount=FILE)
    [InlineData("--propagation=sideways|id")]
    [InlineData("--setgroups|maybe|id")]
    public async Task Usage_errors_are_util_linux_unshare_s_words_and_exit_code(string commandLine)
    {
        RequireUnshare();
        string[] args = commandLine.Split('|');

        (Outcome expected, Outcome actual) = await RunBothAsync(args, unprivileged: false);

        Assert.Equal(1, expected.ExitCode);
        Assert.Equal(expected.ExitCode, actual.ExitCode);
        Assert.Equal(Named(expected.Stderr), Named(actual.Stderr));
        Assert.Equal("", actual.Stdout);
    }

    [Theory]
    [InlineData("--pi|true")] // --pid: isolate's --pids-max takes no part in abbreviations
    [InlineData("--c|true")] // --cgroup, not also --cpu-max, --cgroup-parent, --cap-add...
    [InlineData("--cg|true")]
    [InlineData("--n|true")] // --net, not also --no-new-privs
    [InlineData("--t|true")] // --time, not also --timeout
    [InlineData("--r=/|true")] // --root, not also --rlimit
    [InlineData("--i|true")]
    [InlineData("--f|true")]
    [InlineData("--ti|true")]
    [InlineData("--mount-p|true")]
    [InlineData("--us|id|-u")]
    [InlineData("--u|true")] // ambiguous: --uts, --user (and not --untrusted)
    [InlineData("--p|true")] // ambiguous: --pid, --propagation (and not --pids-max)
    [InlineData("--m|true")] // ambiguous, the candidates unshare's alone (not --memory-max)
    [InlineData("--s|true")] // ambiguous: --setgroups, --setuid, --setgid (not --seccomp)
    [InlineData("--k|true")] // ambiguous: --kill-child, --keep-caps
    [InlineData("--a|true")] // unrecognized, as isolate's --add-seccomp-fd and --assert-userns-disabled need their full names
    [InlineData("--d|true")] // unrecognized (not --debug, --disable-userns)
    [InlineData("--pids|true")] // unrecognized (not --pids-max)
    [InlineData("--untr|true")] // unrecognized (not --untrusted)
    public async Task Long_option_abbreviations_mean_what_they_mean_to_util_linux_unshare(string commandLine)
    {
        (Outcome expected, Outcome actual) = await AssertSameExitAndStdoutAsRootAsync(commandLine);

        Assert.Equal(Named(expected.Stderr), Named(actual.Stderr));
    }

    [Fact]
    public async Task Isolate_s_own_options_still_work_by_their_full_names_and_keep_caps_is_recognized_but_refused()
    {
        Host.RequireRoot();

        Outcome own = await RunAsync(Isolate, ["unshare", "--pids-max", "64", "--no-new-privs", "-rpf", "sh", "-c", "grep NoNewPrivs /proc/self/status"], unprivileged: false);
        Outcome keepCaps = await RunAsync(Isolate, ["unshare", "--ke", "-r", "true"], unprivileged: false);

        Assert.True(own.ExitCode == 0, own.Stderr);
        Assert.Equal("NoNewPrivs:\t1\n", own.Stdout);
        Assert.Equal(1, keepCaps.ExitCode);
        Assert.StartsWith("isolate unshare: --keep-caps is not supported", keepCaps.Stderr);
    }

    [Fact]
    public async Task An_empty_mount_proc_fails_with_util_linux_unshare_s_words_and_exit_code()
    {
        RequireRootAndUnshare();
        string[] args = ["-rpf", "--mount-proc=", "true"];

        (Outcome expected, Outcome actual) = await RunBothAsync(args, unprivileged: false);

        Assert.Equal((1, "unshare: mount  failed: No such file or directory\n"), (expected.ExitCode, expected.Stderr));
        Assert.Equal((1, "isolate unshare: mount  failed: No such file or directory\n"), (actual.ExitCode, actual.Stderr));
    }

    [Theory]
    [InlineData("-Urf|--mount-proc|true")]
    [InlineData("-U|--mount-proc=/proc|true")]
    public async Task Mount_proc_without_a_pid_namespace_from_a_new_user_namespace_fails_in_util_linux_unshare_s_words(string commandLine)
    {
        RequireRootAndUnshare();
        string[] args = commandLine.Split('|');

        (Outcome expected, Outcome actual) = await RunBothAsync(args, unprivileged: false);

        Assert.Equal((1, "unshare: mount /proc failed: Operation not permitted\n"), (expected.ExitCode, expected.Stderr));
        Assert.Equal((1, "isolate unshare: mount /proc failed: Operation not permitted\n"), (actual.ExitCode, actual.Stderr));
    }

    [Theory]
    [InlineData("--version|--foo", 0)] // acted on in order, as unshare's getopt loop does
    [InlineData("--foo|--version", 1)]
    [InlineData("-rhx", 0)]
    [InlineData("--vers", 0)]
    public async Task Help_and_version_act_where_they_stand_on_the_command_line(string commandLine, int exitCode)
    {
        RequireUnshare();
        string[] args = commandLine.Split('|');

        (Outcome expected, Outcome actual) = await RunBothAsync(args, unprivileged: false);

        Assert.Equal(exitCode, expected.ExitCode);
        Assert.Equal(expected.ExitCode, actual.ExitCode);
        Assert.Equal(exitCode == 0, actual.Stdout.Length > 0);
    }

    [Fact]
    public async Task As_root_isolate_unshare_U_without_maps_is_really_the_overflow_user_not_host_root()
    {
        Host.RequireRoot();
        // util-linux unshare -U shows uid 65534 but keeps host uid 0 (it reads root's 0600 files); isolate
        // maps 65534 to 65534 and switches to it, so the program is what it shows.
        using var secret = new RootSecret();
        Outcome o = await RunAsync(Isolate, ["unshare", "-U", "/bin/sh", "-c", $"id -u; cat {secret.Path} && echo READ; true"], unprivileged: false);

        Assert.Equal(0, o.ExitCode);
        Assert.StartsWith("65534\n", o.Stdout);
        Assert.DoesNotContain("READ", o.Stdout);
    }

    [Theory]
    [InlineData("nosuch-program-xyz", 127)] // errexec: not found
    [InlineData("/etc", 126)] // errexec: cannot execute
    [InlineData("--bogus|id", 1)] // unknown option
    [InlineData("-x|id", 1)] // unknown short option
    [InlineData("-R", 1)] // option without its argument
    [InlineData("--propagation|sideways|true", 1)]
    [InlineData("--monotonic|5|true", 1)] // needs -T
    [InlineData("--setgroups|deny|true", 1)] // needs a user namespace
    [InlineData("-r|-w|/nonexistent-dir-xyz|true", 1)] // chdir fails in the child
    [InlineData("-rpf|--mount-proc=/etc/hostname|true", 1)] // mount fails in the child
    [InlineData("-rpf|--mount-proc=/nonexistent-dir-xyz/proc|true", 1)] // no target: fails, and creates nothing on the host
    public async Task As_root_isolate_unshare_fails_with_unshare_s_exit_status_and_says_why(string commandLine, int exitCode)
    {
        RequireRootAndUnshare();
        string[] args = commandLine.Split('|');

        (Outcome expected, Outcome actual) = await RunBothAsync(args, unprivileged: false);

        Assert.Equal(exitCode, expected.ExitCode);
        Assert.Equal(exitCode, actual.ExitCode);
        Assert.Equal("", actual.Stdout);
        Assert.StartsWith("isolate", actual.Stderr);
        Assert.False(Path.Exists("/nonexistent-dir-xyz"), "a failed command left a directory on the host");
    }

    [Fact]
    public async Task A_mount_failure_names_the_mount_the_errno_and_a_hint()
    {
        RequireRootAndUnshare();

        Outcome actual = await RunAsync(Isolate, ["unshare", "-rpf", "--mount-proc=/etc/hostname", "true"], unprivileged: false);

        Assert.Equal(1, actual.ExitCode);
        Assert.Contains("isolate: mount #1: proc on /etc/hostname", actual.Stderr);
        Assert.Contains("ENOTDIR", actual.Stderr);
        Assert.Contains("Hint:", actual.Stderr);
    }

    [Fact]
    public async Task Setgid_drops_the_supplementary_groups_like_unshare()
    {
        RequireRootAndUnshare();
        Assert.SkipUnless(Host.HasSetpriv, "needs setpriv (util-linux) to give the caller supplementary groups");
        string[] args = ["--groups=1,2", "--"];

        string[] program = ["-S", "5", "-G", "7", "sh", "-c", "id -u; id -g; id -G"];
        Outcome expected = await RunAsync("setpriv", [.. args, Unshare!, .. program], unprivileged: false);
        Outcome actual = await RunAsync("setpriv", [.. args, Isolate, "unshare", .. program], unprivileged: false);

        Assert.Equal("5\n7\n7\n", expected.Stdout);
        Assert.Equal(expected.Stdout, actual.Stdout);
    }

    [Fact]
    public async Task With_no_program_it_runs_the_SHELL_as_a_login_shell_like_unshare()
    {
        RequireRootAndUnshare();
        var env = new Dictionary<string, string> { ["SHELL"] = "/bin/sh" };

        (Outcome expected, Outcome actual) = await RunBothAsync(["-r"], unprivileged: false, stdin: "echo $0; id -u; exit 3\n", env);

        Assert.Equal(3, expected.ExitCode);
        Assert.Equal(3, actual.ExitCode);
        Assert.Equal("-sh\n0\n", expected.Stdout);
        Assert.Equal(expected.Stdout, actual.Stdout);
    }

    [Fact]
    public async Task A_time_namespace_gets_the_boottime_offset_like_unshare()
    {
        RequireRootAndUnshare();
        Host.RequireTimeNamespace();
        // /proc/uptime follows CLOCK_BOOTTIME of the reader's time namespace: a day's offset pushes it past 86400 s.
        string[] args = ["-rT", "--boottime", "86400", "sh", "-c", "test $(cut -d. -f1 /proc/uptime) -ge 86400 && echo shifted"];

        (Outcome expected, Outcome actual) = await RunBothAsync(args, unprivileged: false);

        Assert.Equal("shifted\n", expected.Stdout);
        Assert.Equal(expected.Stdout, actual.Stdout);
        Assert.Equal(0, actual.ExitCode);
    }

    // unshare hands ranges to newuidmap, which refuses root here (no /etc/subuid lines for root); isolate, as
    // root, writes the same lines itself. Expected lines follow unshare's map_ids(): the range loses an id and
    // skips the single mapping's inside and outside ids.
    [Theory]
    [InlineData("--map-users=100000,0,1000", "0 100000 1000")] // util-linux 2.38: outer,inner,count
    [InlineData("--map-users=0:100000:1000", "0 100000 1000")] // util-linux 2.39+: inner:outer:count
    [InlineData("--map-user=0|--map-users=100000,0,1000", "0 0 1;1 100000 999")]
    [InlineData("--map-user=5|--map-users=0,0,10", "5 0 1;0 1 5;6 6 4")]
    [InlineData("--map-group=0|--map-groups=100000,0,1000", "0 0 1;1 100000 999")]
    public async Task As_root_id_ranges_are_written_as_unshare_would_have_newuidmap_write_them(string options, string expectedLines)
    {
        Host.RequireRoot();
        string file = options.Contains("group", StringComparison.Ordinal) ? "/proc/self/gid_map" : "/proc/self/uid_map";

        Outcome actual = await RunAsync(Isolate, ["unshare", .. options.Split('|'), "cat", file], unprivileged: false);

        Assert.Equal(0, actual.ExitCode);
        string[] lines = actual.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => string.Join(' ', l.Split(' ', StringSplitOptions.RemoveEmptyEntries))).ToArray();
        Assert.Equal(expectedLines.Split(';'), lines);
    }

    // ---- The same, unprivileged (uid 65534 via setpriv) ----

    [Theory]
    [InlineData("-r|id|-u")]
    [InlineData("-U|id|-u")]
    [InlineData("-c|id")]
    [InlineData("--map-user=1000|id|-u")]
    [InlineData("--user|--pid|--map-root-user|--mount-proc|--fork|sh|-c|echo $$; id -u; cat /proc/1/comm")]
    [InlineData("-r|cat|/proc/self/uid_map|/proc/self/gid_map|/proc/self/setgroups")]
    [InlineData("-ru|sh|-c|hostname sandbox && hostname")]
    [InlineData("-r|sh|-c|exit 7")]
    [InlineData("-rf|sh|-c|kill -TERM $$")]
    [InlineData("-r|-G|0|id")] // -r denies setgroups, which -G needs: exit 1
    [InlineData("-p|true")] // no user namespace: EPERM, exit 1
    [InlineData("-n|true")]
    public async Task As_uid_65534_isolate_unshare_prints_and_exits_like_util_linux_unshare(string commandLine)
    {
        RequireUnshare();
        Host.RequireUnprivilegedRunner();
        string[] args = commandLine.Split('|');

        (Outcome expected, Outcome actual) = await RunBothAsync(args, unprivileged: true);

        Assert.Equal(expected.ExitCode, actual.ExitCode);
        Assert.Equal(expected.Stdout, actual.Stdout);
    }

    // ---- Signals sent to unshare itself ----

    [Fact]
    public async Task Without_fork_a_SIGTERM_sent_to_unshare_ends_the_program_as_if_unshare_had_exec_d_it()
    {
        RequireRootAndUnshare();
        foreach (string[] command in new[] { new[] { Unshare!, "-r", "sleep", "30" }, new[] { Isolate, "unshare", "-r", "sleep", "30" } })
        {
            using Process tool = StartQuietly(command);
            int sleeper = await WaitForSleepAsync(tool.Id);

            kill(tool.Id, SIGTERM);
            Assert.True(tool.WaitForExit(TimeSpan.FromSeconds(30)), $"{command[0]} outlived a SIGTERM");

            Assert.Equal(128 + SIGTERM, tool.ExitCode);
            Assert.False(File.Exists($"/proc/{sleeper}/comm") && File.ReadAllText($"/proc/{sleeper}/comm").Trim() == "sleep", $"{command[0]}: the program outlived the SIGTERM");
        }
    }

    [Fact]
    public async Task With_fork_unshare_ignores_SIGTERM_and_dies_by_the_signal_that_ends_its_child()
    {
        RequireRootAndUnshare();
        foreach (string[] command in new[] { new[] { Unshare!, "-rf", "sleep", "30" }, new[] { Isolate, "unshare", "-rf", "sleep", "30" } })
        {
            using Process tool = StartQuietly(command);
            int sleeper = await WaitForSleepAsync(tool.Id);
            Assert.NotEqual(tool.Id, sleeper);

            kill(tool.Id, SIGTERM);
            await Task.Delay(500, TestContext.Current.CancellationToken);
            Assert.False(tool.HasExited, $"{command[0]} -f died of a SIGTERM it should ignore");

            kill(sleeper, SIGUSR1);
            await tool.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
            Assert.Equal(128 + SIGUSR1, tool.ExitCode);
        }
    }

    [Fact]
    public async Task Kill_child_kills_the_program_when_unshare_itself_is_killed()
    {
        RequireRootAndUnshare();
        foreach (string[] command in new[] { new[] { Unshare!, "--kill-child", "-rp", "sleep", "30" }, new[] { Isolate, "unshare", "--kill-child", "-rp", "sleep", "30" } })
        {
            using Process tool = StartQuietly(command);
            int sleeper = await WaitForSleepAsync(tool.Id);

            kill(tool.Id, SIGKILL);

            bool gone = false;
            for (int i = 0; i < 200 && !gone; i++)
            {
                // Dead: reaped, or a zombie waiting for its new parent to reap it.
                string stat = ReadOrEmpty($"/proc/{sleeper}/stat");
                gone = stat.Length == 0 || stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z');
                if (!gone)
                    await Task.Delay(50, TestContext.Current.CancellationToken);
            }
            Assert.True(gone, $"{command[0]} --kill-child: the program outlived unshare");
        }
    }

    // ---- Where the library's model differs from unshare's, on purpose (documented in --help and the README) ----

    [Fact]
    public async Task Without_fork_unshare_s_program_keeps_its_pid_while_isolate_s_is_pid_1()
    {
        RequireRootAndUnshare();
        string[] args = ["-rp", "sh", "-c", "echo $$"];

        (Outcome expected, Outcome actual) = await RunBothAsync(args, unprivileged: false);

        // unshare(2) with CLONE_NEWPID moves only the caller's future children; unshare then execs in place.
        Assert.NotEqual("1\n", expected.Stdout);
        Assert.Matches(@"^\d+\n$", expected.Stdout);
        // The library clones the program into the new PID namespace: it is PID 1 with or without -f.
        Assert.Equal("1\n", actual.Stdout);
    }

    [Fact]
    public async Task A_new_network_namespace_has_loopback_down_under_unshare_and_up_under_isolate()
    {
        RequireRootAndUnshare();
        Assert.SkipUnless(File.Exists("/usr/sbin/ip") || File.Exists("/sbin/ip") || File.Exists("/usr/bin/ip"), "needs ip (iproute2) to read the loopback's state");
        string[] args = ["-rn", "ip", "-o", "link", "show", "lo"];

        (Outcome expected, Outcome actual) = await RunBothAsync(args, unprivileged: false);

        Assert.Contains("state DOWN", expected.Stdout);
        Assert.Contains("LOOPBACK,UP", actual.Stdout);
    }

    [Fact]
    public async Task Descriptors_above_2_reach_unshare_s_program_but_isolate_closes_them()
    {
        RequireRootAndUnshare();
        // sh opens /etc/hostname as descriptor 3, then execs the tool; the program tries to read descriptor 3.
        string[] wrapper = ["-c", "exec 3</etc/hostname; exec \"$@\"", "sh"];
        string[] program = ["-r", "sh", "-c", "cat <&3 >/dev/null && echo open || echo closed"];

        Outcome expected = await RunAsync("/bin/sh", [.. wrapper, Unshare!, .. program], unprivileged: false);
        Outcome actual = await RunAsync("/bin/sh", [.. wrapper, Isolate, "unshare", .. program], unprivileged: false);

        Assert.Equal("open\n", expected.Stdout);
        // The library marks every descriptor above 2 close-on-exec and has no public way to keep one.
        Assert.Equal("closed\n", actual.Stdout);
    }

    // ---- isolate's own options ----

    [Fact]
    public async Task Debug_logs_each_setup_step_to_standard_error_and_leaves_standard_output_to_the_program()
    {
        RequireRootAndUnshare();

        Outcome actual = await RunAsync(Isolate, ["unshare", "--debug", "-r", "id", "-u"], unprivileged: false);

        Assert.Equal(0, actual.ExitCode);
        Assert.Equal("0\n", actual.Stdout);
        Assert.Contains("wrote uid_map = 0 0 1", actual.Stderr);
        Assert.Contains("exec'd id", actual.Stderr);
    }

    [Fact]
    public async Task Help_lists_unshare_s_options_and_exits_0()
    {
        Outcome actual = await RunAsync(Isolate, ["unshare", "--help"], unprivileged: false);

        Assert.Equal(0, actual.ExitCode);
        foreach (string option in new[] { "--map-root-user", "--mount-proc", "--kill-child", "--propagation", "--setgroups", "--monotonic", "--debug" })
            Assert.Contains(option, actual.Stdout);
    }

    // ---- Running ----

    internal sealed record Outcome(int ExitCode, string Stdout, string Stderr);

    private static void RequireUnshare() => Assert.SkipWhen(Unshare is null, "util-linux unshare is not installed; it is what isolate unshare is compared with");

    private static void RequireRootAndUnshare()
    {
        RequireUnshare();
        Host.RequireRoot();
    }

    private const int SIGKILL = 9;
    private const int SIGUSR1 = 10;
    private const int SIGTERM = 15;

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern int kill(int pid, int signal);

    private static Process StartQuietly(string[] command)
    {
        var info = new ProcessStartInfo(command[0]) { UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in command[1..])
            info.ArgumentList.Add(a);
        return Process.Start(info)!;
    }

    /// <summary>
    /// The pid of "sleep": <paramref name="pid"/> itself once it has exec'd sleep, or a descendant running sleep
    /// (a child under unshare -f; under isolate as deep as the library's spawn helper puts the sandbox).
    /// </summary>
    private static async Task<int> WaitForSleepAsync(int pid)
    {
        for (int i = 0; i < 300; i++)
        {
            foreach (int candidate in (int[])[pid, .. Host.Descendants(pid)])
            {
                if (ReadOrEmpty($"/proc/{candidate}/comm").Trim() == "sleep")
                    return candidate;
            }
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
        throw new TimeoutException($"pid {pid} never ran sleep");
    }

    private static string ReadOrEmpty(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (IOException)
        {
            return "";
        }
    }

    /// <summary>Runs util-linux unshare and then isolate unshare with the same arguments.</summary>
    private static async Task<(Outcome Unshare, Outcome Isolate)> RunBothAsync(string[] args, bool unprivileged, string? stdin = null, Dictionary<string, string>? environment = null) =>
        (await RunAsync(Unshare!, args, unprivileged, stdin, environment),
         await RunAsync(unprivileged ? IsolateForAnyUser : Isolate, ["unshare", .. args], unprivileged, stdin, environment));

    /// <summary>How to start <paramref name="file"/> with <paramref name="args"/>, through setpriv as uid/gid 65534 when unprivileged; stdio redirected.</summary>
    internal static ProcessStartInfo StartInfo(string file, string[] args, bool unprivileged)
    {
        var info = new ProcessStartInfo(unprivileged ? "setpriv" : file)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (unprivileged)
        {
            foreach (string a in (string[])["--reuid=65534", "--regid=65534", "--clear-groups", "--", file])
                info.ArgumentList.Add(a);
        }
        foreach (string a in args)
            info.ArgumentList.Add(a);
        info.Environment["HOME"] = "/tmp";
        info.Environment["DOTNET_CLI_HOME"] = "/tmp";
        return info;
    }

    /// <summary>Runs <paramref name="file"/> (through setpriv as uid/gid 65534 when unprivileged) and collects its status and output.</summary>
    internal static async Task<Outcome> RunAsync(string file, string[] args, bool unprivileged, string? stdin = null, Dictionary<string, string>? environment = null)
    {
        ProcessStartInfo info = StartInfo(file, args, unprivileged);
        foreach ((string name, string value) in environment ?? [])
            info.Environment[name] = value;

        using Process process = Process.Start(info)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
            await process.StandardInput.WriteAsync(stdin);
        process.StandardInput.Close();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish within 60 s");
        }
        return new Outcome(process.ExitCode, await stdout, await stderr);
    }
}
