using Isolation.Tests.Infrastructure;
using static Isolation.Tests.Integration.BwrapTests;

namespace Isolation.Tests.Integration;

/// <summary>
/// <c>isolate bwrap</c>'s messages, exit codes and bubblewrap 0.10–0.11 options as bwrap 0.11.1 documents and prints
/// them (bwrap(1) and bubblewrap.c of that tag): scripts match "^bwrap: ...". Debian's bwrap is 0.8, without
/// --bind-fd, --level-prefix or overlays, so these check the documented text and effect directly.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class BwrapUsageTests
{
    private static string WritableByAll(string dir)
    {
        File.SetUnixFileMode(dir, (UnixFileMode)0x1FF); // 0777: uid 65534 makes files in it too
        return dir;
    }

    /// <summary>The isolate to run as root or as uid 65534 (skipping where that cannot be done).</summary>
    private static string IsolateAs(bool unprivileged)
    {
        if (unprivileged)
            Host.RequireUnprivilegedRunner();
        else
            Host.RequireRoot();
        RequireIsolate();
        return unprivileged ? Staging.ProgramForAnyUser(Isolate) : Isolate;
    }

    private static void RequireIsolate() =>
        Assert.SkipUnless(File.Exists(Isolate), $"needs the isolate sample built ({Isolate}): dotnet build samples/Isolate -c Release");

    [Theory]
    [InlineData("--bind /usr", "--bind takes two arguments")]
    [InlineData("--ro-bind-fd 3", "--bind-fd takes two arguments")]
    [InlineData("--overlay /u /w", "--overlay takes three arguments")]
    [InlineData("--chdir", "--chdir takes one argument")]
    [InlineData("--tmpfs", "--tmpfs takes an argument")]
    [InlineData("--frobnicate /bin/true", "Unknown option --frobnicate")]
    [InlineData("--uid x /bin/true", "Invalid uid: x")]
    [InlineData("--info-fd x /bin/true", "Invalid fd: x")]
    [InlineData("--perms 0700 --proc /proc /bin/true", "--perms must be followed by an option that creates a file")]
    [InlineData("--perms 0640 --perms 0640 --tmpfs /a /bin/true", "--perms given twice for the same action")]
    [InlineData("--perms 8 --tmpfs /a /bin/true", "--perms takes an octal argument <= 07777")]
    [InlineData("--size 1048576 --dir /a /bin/true", "--size must be followed by --tmpfs")]
    [InlineData("--size 1048576 --size 1048576 --tmpfs /a /bin/true", "--size given twice for the same action")]
    [InlineData("--size 0 --tmpfs /a /bin/true", "--size takes a non-zero number of bytes")]
    [InlineData("--size 123bogus --tmpfs /a /bin/true", "--size takes a non-zero number of bytes")]
    [InlineData("--size ' -12345678' --tmpfs /a /bin/true", "--size takes a non-zero number of bytes")]
    [InlineData("--size 18446744073709551616 --tmpfs /a /bin/true", "--size takes a non-zero number of bytes")]
    [InlineData("--size 9223372036854775809 --tmpfs /a /bin/true", "--size (for tmpfs) is limited to 9223372036854775807")]
    [InlineData("--overlay-src /tmp /bin/true", "--overlay-src must be followed by another --overlay-src or one of --overlay, --tmp-overlay, or --ro-overlay")]
    [InlineData("--overlay-src /tmp --chdir / /bin/true", "--overlay-src must be followed by another --overlay-src or one of --overlay, --tmp-overlay, or --ro-overlay")]
    [InlineData("--overlay /u /w /x /bin/true", "--overlay requires at least one --overlay-src")]
    [InlineData("--tmp-overlay /x /bin/true", "--tmp-overlay requires at least one --overlay-src")]
    [InlineData("--overlay-src /tmp --ro-overlay /x /bin/true", "--ro-overlay requires at least two --overlay-src")]
    [InlineData("--argv0 a --argv0 b /bin/true", "--argv0 used multiple times")]
    [InlineData("--uid 5 /bin/true", "Specifying --uid requires --unshare-user or --userns")]
    [InlineData("--hostname box /bin/true", "Specifying --hostname requires --unshare-uts")]
    public void Usage_errors_are_bwraps_words_and_exit_code(string commandLine, string message)
    {
        Host.RequireRoot(); // as root: unprivileged, bwrap unshares the user namespace itself and --uid is then allowed
        RequireIsolate();

        var r = Run(Isolate + " bwrap", commandLine, unprivileged: false);

        Assert.Equal(1, r.Code);
        Assert.Equal($"bwrap: {message}\n", r.Stderr);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Assert_userns_disabled_without_disable_userns_fails_in_bwraps_words_and_with_it_runs(bool unprivileged)
    {
        string isolate = IsolateAs(unprivileged);
        Assert.SkipUnless(File.Exists("/usr/bin/bwrap"), "needs bubblewrap (/usr/bin/bwrap) to compare with");

        foreach (string commandLine in (string[])["--ro-bind / / --assert-userns-disabled /bin/true", "--unshare-user --ro-bind / / --assert-userns-disabled /bin/true"])
        {
            var bwrap = Run("/usr/bin/bwrap", commandLine, unprivileged);
            var ours = Run(isolate + " bwrap", commandLine, unprivileged);

            Assert.Equal((1, "bwrap: creation of new user namespaces was not disabled as requested\n"), (bwrap.Code, bwrap.Stderr));
            Assert.Equal((bwrap.Code, bwrap.Stderr), (ours.Code, ours.Stderr));
        }
        var disabled = Run(isolate + " bwrap", "--unshare-user --disable-userns --assert-userns-disabled --ro-bind / / /bin/echo ran", unprivileged);
        Assert.Equal((0, "ran\n"), (disabled.Code, disabled.Stdout));
    }

    [Fact]
    public void Of_two_block_fds_only_the_last_is_waited_on_as_bwrap_does()
    {
        Host.RequireRoot();
        RequireIsolate();
        Assert.SkipUnless(File.Exists("/usr/bin/bwrap"), "needs bubblewrap (/usr/bin/bwrap) to compare with");
        string dir = BusyboxRoot.NewTempDirectory("isolation-bwrap-blockfd-");
        try
        {
            // FD 5 never has data (we hold its fifo's write end ourselves); FD 6 has. Waiting on 5 would never end.
            string fifo = Path.Combine(dir, "fifo");
            Assert.Equal(0, Run("/usr/bin/mkfifo", fifo, unprivileged: false).Code);
            string commandLine = $"--block-fd 5 --block-fd 6 --ro-bind / / /bin/echo ran 5<>{fifo} 6< <(echo go)";

            var bwrap = Run("timeout 20 /usr/bin/bwrap", commandLine, unprivileged: false);
            var ours = Run("timeout 20 " + Isolate + " bwrap", commandLine, unprivileged: false);

            Assert.Equal((0, "ran\n", "bwrap: Only the last --block-fd option will take effect\n"), (bwrap.Code, bwrap.Stdout, bwrap.Stderr));
            Assert.Equal((bwrap.Code, bwrap.Stdout, bwrap.Stderr), (ours.Code, ours.Stdout, ours.Stderr));
        }
        finally
        {
            BusyboxRoot.DeleteTree(dir);
        }
    }

    [Fact]
    public void No_arguments_prints_the_usage_on_stderr_and_fails_and_help_prints_it_on_stdout()
    {
        RequireIsolate();

        var none = Run(Isolate + " bwrap", "", unprivileged: false);
        var help = Run(Isolate + " bwrap", "--help", unprivileged: false);

        Assert.Equal(1, none.Code);
        Assert.StartsWith("usage: isolate bwrap [OPTIONS...] [--] COMMAND [ARGS...]\n", none.Stderr);
        Assert.Equal(0, help.Code);
        Assert.StartsWith("usage: isolate bwrap [OPTIONS...] [--] COMMAND [ARGS...]\n", help.Stdout);
    }

    [Fact]
    public void A_symlink_named_bwrap_is_bwrap_and_names_itself_as_invoked()
    {
        RequireIsolate();
        string dir = BusyboxRoot.NewTempDirectory("isolation-bwrap-link-");
        try
        {
            string link = Path.Combine(dir, "bwrap");
            File.CreateSymbolicLink(link, Isolate);

            var help = Run(link, "--help", unprivileged: false);
            var run = Run(link, "--ro-bind / / --unshare-uts --hostname linked /bin/hostname", unprivileged: false);

            Assert.Equal(0, help.Code);
            Assert.StartsWith($"usage: {link} [OPTIONS...]", help.Stdout);
            Assert.True(run.Code == 0, run.Stderr);
            Assert.Equal("linked\n", run.Stdout);
        }
        finally
        {
            BusyboxRoot.DeleteTree(dir);
        }
    }

    [Fact]
    public void Level_prefix_puts_the_syslog_level_before_warnings_and_errors()
    {
        RequireIsolate();

        var plain = Run(Isolate + " bwrap", "--ro-bind / / --chdir / --chdir / /bin/true", unprivileged: false);
        var warning = Run(Isolate + " bwrap", "--level-prefix --ro-bind / / --chdir / --chdir / /bin/true", unprivileged: false);
        var error = Run(Isolate + " bwrap", "--level-prefix --frobnicate", unprivileged: false);

        Assert.Equal((0, "bwrap: Only the last --chdir option will take effect\n"), (plain.Code, plain.Stderr));
        Assert.Equal((0, "<4>bwrap: Only the last --chdir option will take effect\n"), (warning.Code, warning.Stderr));
        Assert.Equal((1, "<3>bwrap: Unknown option --frobnicate\n"), (error.Code, error.Stderr));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Setup_failures_are_told_in_bwraps_words_without_the_librarys_terms(bool unprivileged)
    {
        string isolate = IsolateAs(unprivileged);
        string dir = WritableByAll(BusyboxRoot.NewTempDirectory("isolation-bwrap-words-"));
        try
        {
            var missing = Run(isolate + " bwrap", "--ro-bind / / --bind /source-enoent /dest /bin/true", unprivileged);
            var exec = Run(isolate + " bwrap", "--ro-bind / / /", unprivileged);
            string symlink = Path.Combine(dir, "symlink");
            var first = Run(isolate + " bwrap", $"--ro-bind / / --bind {dir} {dir} --symlink /dev/null {symlink} /bin/true", unprivileged);
            var again = Run(isolate + " bwrap", $"--ro-bind / / --bind {dir} {dir} --symlink /dev/null {symlink} /bin/true", unprivileged);
            var conflict = Run(isolate + " bwrap", $"--ro-bind / / --bind {dir} {dir} --symlink /dev/full {symlink} /bin/true", unprivileged);
            var nested = Run(isolate + " bwrap", $"--unshare-user --disable-userns --dev-bind / / -- {isolate} bwrap --unshare-user --dev-bind / / -- /bin/true", unprivileged);

            Assert.Equal((1, "bwrap: Can't find source path /source-enoent: No such file or directory\n"), (missing.Code, missing.Stderr));
            Assert.Equal("bwrap: execvp /: Permission denied\n", exec.Stderr);
            Assert.NotEqual(0, exec.Code);
            Assert.True(first.Code == 0 && again.Code == 0, first.Stderr + again.Stderr); // the same symlink again is fine
            Assert.Equal((1, $"bwrap: Can't make symlink at {symlink}: existing destination is /dev/null\n"), (conflict.Code, conflict.Stderr));
            Assert.Equal((1, "bwrap: Creating new namespace failed: nesting depth or /proc/sys/user/max_*_namespaces exceeded (ENOSPC)\n"), (nested.Code, nested.Stderr));
        }
        finally
        {
            BusyboxRoot.DeleteTree(dir);
        }
    }

    [Theory]
    [InlineData("--bind /tmp /etc/hostname/x", "Can't create mount point /etc/hostname/x: Not a directory")]
    [InlineData("--bind /tmp/isolation-no-such-source /mnt", "Can't find source path /tmp/isolation-no-such-source: No such file or directory")]
    [InlineData("--dir /usr/isolation-x", "Can't mkdir /usr/isolation-x: Read-only file system")]
    [InlineData("--file 3 /usr/isolation-x", "Can't create file at /usr/isolation-x: Read-only file system")]
    [InlineData("--ro-bind-data 3 /usr/isolation-x", "Can't create file at /usr/isolation-x: Read-only file system")]
    [InlineData("--symlink x /usr/isolation-x", "Can't make symlink at /usr/isolation-x: Read-only file system")]
    [InlineData("--chmod 0755 /isolation-nonexistent", "Can't chmod 0755 /isolation-nonexistent: No such file or directory")] // bwrap 0.11.1's words
    [InlineData("--remount-ro /isolation-nonexistent", "Can't remount readonly on /isolation-nonexistent: No such file or directory")]
    [InlineData("--tmpfs /etc/hostname", "Can't mount tmpfs on /etc/hostname: Not a directory")]
    [InlineData("--unshare-pid --proc /etc/hostname", "Can't mount proc on /etc/hostname: Not a directory")]
    [InlineData("--dev /etc/hostname", "Can't mount tmpfs on /etc/hostname: Not a directory")]
    [InlineData("--overlay-src /tmp --tmp-overlay /etc/hostname", "Can't make overlay mount on /etc/hostname: Not a directory")]
    [InlineData("--chdir /isolation-nonexistent", "chdir /isolation-nonexistent: No such file or directory")]
    public void Each_kind_of_failed_setup_step_is_told_in_bwraps_words(string options, string message)
    {
        Host.RequireRoot();
        RequireIsolate();

        var r = Run(Isolate + " bwrap", $"--ro-bind / / {options} /bin/true 3</etc/hostname", unprivileged: false);

        Assert.Equal((1, $"bwrap: {message}\n"), (r.Code, r.Stderr));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Bind_fd_binds_the_directory_an_open_descriptor_refers_to_and_ro_bind_fd_read_only(bool unprivileged)
    {
        string isolate = IsolateAs(unprivileged);
        string dir = WritableByAll(BusyboxRoot.NewTempDirectory("isolation-bwrap-bindfd-"));
        try
        {
            File.WriteAllText(Path.Combine(dir, "file-data"), "foobar\n");
            File.SetUnixFileMode(Path.Combine(dir, "file-data"), (UnixFileMode)0x1A4);

            // bwrap's own case: a descriptor of ".", bound over /tmp of a sandbox that binds the whole host.
            var read = Run(isolate + " bwrap", $"--proc /proc --dev /dev --bind / / --bind-fd 100 /tmp /bin/cat /tmp/file-data 100< {dir}", unprivileged);
            var write = Run(isolate + " bwrap", $"--ro-bind / / --bind-fd 100 /mnt /bin/sh -c 'echo written > /mnt/new' 100< {dir}", unprivileged);
            var readOnly = Run(isolate + " bwrap", $"--ro-bind / / --ro-bind-fd 100 /mnt /bin/sh -c 'cat /mnt/file-data; echo x > /mnt/other 2>/dev/null || echo refused' 100< {dir}", unprivileged);
            var notOpen = Run(isolate + " bwrap", "--ro-bind / / --bind-fd 99 /mnt /bin/true", unprivileged);

            Assert.Equal((0, "foobar\n"), (read.Code, read.Stdout));
            Assert.True(write.Code == 0, write.Stderr);
            Assert.Equal("written\n", File.ReadAllText(Path.Combine(dir, "new")));
            Assert.Equal((0, "foobar\nrefused\n"), (readOnly.Code, readOnly.Stdout));
            Assert.False(File.Exists(Path.Combine(dir, "other")));
            Assert.Equal(1, notOpen.Code);
            Assert.StartsWith("bwrap: Can't stat fd 99: ", notOpen.Stderr);
        }
        finally
        {
            BusyboxRoot.DeleteTree(dir);
        }
    }

    [Fact]
    public void Bind_fd_refuses_a_descriptor_whose_directory_was_deleted_rather_than_bind_something_else()
    {
        Host.RequireRoot();
        RequireIsolate();
        string dir = BusyboxRoot.NewTempDirectory("isolation-bwrap-gone-");
        try
        {
            // The descriptor is opened, the directory removed and another made at its path.
            var r = Run("/bin/bash", $"-c 'exec 100<{dir}; rmdir {dir}; mkdir {dir}; exec {Isolate} bwrap --ro-bind / / --bind-fd 100 /mnt /bin/true'", unprivileged: false);

            Assert.Equal(1, r.Code);
            Assert.Contains("--bind-fd 100: the file it refers to", r.Stderr);
            Assert.Contains("cannot be reached by its path any more", r.Stderr);
        }
        finally
        {
            BusyboxRoot.DeleteTree(dir);
        }
    }

    [Fact]
    public void Json_status_has_no_exit_code_when_the_sandbox_fails_before_exec()
    {
        Host.RequireRoot();
        RequireIsolate();
        string dir = BusyboxRoot.NewTempDirectory("isolation-bwrap-preexec-");
        try
        {
            string json = Path.Combine(dir, "json");
            var setup = Run(Isolate + " bwrap", $"--ro-bind / / --json-status-fd 3 --bind /source-enoent /x /bin/true 3>{json}", unprivileged: false);
            string afterSetup = File.ReadAllText(json);
            var exec = Run(Isolate + " bwrap", $"--ro-bind / / --json-status-fd 3 / 3>{json}", unprivileged: false);
            string afterExec = File.ReadAllText(json);
            var ran = Run(Isolate + " bwrap", $"--ro-bind / / --json-status-fd 3 /bin/sh -c 'exit 3' 3>{json}", unprivileged: false);

            Assert.Equal(1, setup.Code);
            Assert.DoesNotContain("exit-code", afterSetup);
            Assert.NotEqual(0, exec.Code);
            Assert.DoesNotContain("exit-code", afterExec);
            Assert.Equal(3, ran.Code);
            Assert.Contains("\"exit-code\": 3", File.ReadAllText(json)); // the record is written when there is one
        }
        finally
        {
            BusyboxRoot.DeleteTree(dir);
        }
    }
}
