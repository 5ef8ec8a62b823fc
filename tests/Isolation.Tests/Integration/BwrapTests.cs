using System.Diagnostics;
using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>
/// <c>isolate bwrap</c> side by side with the real bubblewrap: the same command line through both, and the
/// sandboxed program must see the same things (its output and exit code are compared).
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class BwrapTests
{
    internal const string Usr = "--ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 ";

    internal static string Isolate
    {
        get
        {
            string configuration = AppContext.BaseDirectory.Contains("/Debug/", StringComparison.Ordinal) ? "Debug" : "Release";
            return Path.Combine(TestHostRunner.RepoRoot, "samples/Isolate/bin", configuration, "net10.0/isolate");
        }
    }

    internal static void RequireBoth()
    {
        Assert.SkipUnless(File.Exists("/usr/bin/bwrap"), "needs bubblewrap (/usr/bin/bwrap) to compare with");
        Assert.SkipUnless(File.Exists(Isolate), $"needs the isolate sample built ({Isolate}): dotnet build samples/Isolate -c Release");
    }

    /// <summary>Runs "PROGRAM ARGS" through bash (so fds can be redirected) as root or as uid 65534.</summary>
    internal static (int Code, string Stdout, string Stderr) Run(string program, string args, bool unprivileged)
    {
        var info = new ProcessStartInfo(unprivileged ? "setpriv" : "/bin/bash") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = "/" };
        if (unprivileged)
            foreach (string a in (string[])["--reuid=65534", "--regid=65534", "--clear-groups", "--", "/bin/bash"])
                info.ArgumentList.Add(a);
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($"exec {program} {args}");
        info.Environment["HOME"] = "/nonexistent-home";
        using Process p = Process.Start(info)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout, stderr.Result);
    }

    public static TheoryData<string> CommandLines => new()
    {
        // Mounts: an empty root with /usr, /proc, /dev, tmpfs, dirs, perms, symlinks, files from fds.
        Usr + "--proc /proc --dev /dev --unshare-pid -- /bin/sh -c 'ls /; ls /dev; echo $$; readlink /dev/ptmx /dev/stdout'",
        Usr + "--tmpfs /tmp --dir /tmp/a --perms 0700 --dir /tmp/b --perms 01777 --tmpfs /tmp/c --size 1048576 --tmpfs /tmp/d -- /bin/sh -c 'stat -c \"%n %a\" /tmp/a /tmp/b /tmp/c /tmp/d'",
        Usr + "--tmpfs /tmp --file 3 /tmp/f --perms 0640 --file 4 /tmp/g --chmod 0600 /tmp/f -- /bin/sh -c 'stat -c \"%n %a\" /tmp/f /tmp/g; cat /tmp/f /tmp/g' 3</etc/hostname 4</etc/os-release",
        Usr + "--tmpfs /tmp --ro-bind-data 3 /tmp/r -- /bin/sh -c 'cat /tmp/r; echo x > /tmp/r || echo refused' 3</etc/hostname",
        Usr + "--tmpfs /tmp --symlink /usr /tmp/u -- /bin/sh -c 'readlink /tmp/u'",
        // Binds: read-only, remount-ro, -try, dev-bind.
        Usr + "--bind /tmp /mnt --remount-ro /mnt --bind-try /nonexistent /x --ro-bind-try /nonexistent /y -- /bin/sh -c 'touch /mnt/x 2>/dev/null || echo ro; ls -d /x /y 2>&1 | wc -l'",
        Usr + "--dev-bind /dev/null /null --ro-bind /etc/hostname /h -- /bin/sh -c 'echo x > /null && echo dev-ok; cat /h'",
        "--ro-bind / / --bind /usr /usr --remount-ro /usr -- /bin/sh -c 'touch /usr/x 2>/dev/null || echo ro'",
        // Namespaces, identity, environment, process.
        Usr + "--unshare-uts --hostname box --unshare-ipc --unshare-net --proc /proc --unshare-pid -- /bin/sh -c 'hostname; cat /proc/net/dev | tail -n +3 | cut -d: -f1; echo $$'",
        Usr + "--unshare-all --share-net --proc /proc -- /bin/sh -c 'echo $$; test $(cat /proc/net/dev | wc -l) -gt 3 && echo host-net'",
        Usr + "--unshare-user --uid 1234 --gid 4321 -- /bin/sh -c 'id -u; id -g; cat /proc/self/uid_map | wc -l'",
        Usr + "--unshare-pid --as-pid-1 --proc /proc -- /bin/sh -c 'echo $$'",
        Usr + "--clearenv --setenv A 1 --setenv B 2 --unsetenv B -- /usr/bin/env",
        Usr + "--setenv X y --unsetenv HOME -- /bin/sh -c 'echo $X ${HOME-unset}'",
        Usr + "--chdir /usr/share --new-session --die-with-parent -- /bin/sh -c 'pwd; exit 7'",
        // The caller's directory hidden by a tmpfs over its parent: bwrap falls back to $HOME, then "/".
        $"--ro-bind / / --tmpfs {Path.GetDirectoryName(Environment.CurrentDirectory)} -- /bin/pwd",
        Usr + "--args 3 -- /bin/sh -c 'echo $0' 3< <(printf -- '--tmpfs\\0/spliced\\0') ; true",
        Usr + "--unshare-pid --info-fd 3 -- /bin/true 3>&1 | grep -c child-pid",
        Usr + "--unshare-pid --json-status-fd 3 -- /bin/sh -c 'exit 5' 3>&1 | grep -c -E 'child-pid|exit-code'",
        // Exit status: a signal becomes 128 + N.
        Usr + "-- /bin/sh -c 'kill -TERM $$'",
    };

    [Theory]
    [MemberData(nameof(CommandLines))]
    public void Isolate_bwrap_shows_the_program_what_bubblewrap_shows_it_as_root(string commandLine)
    {
        Host.RequireRoot();
        RequireBoth();
        AssertSame(commandLine, unprivileged: false);
    }

    [Theory]
    [MemberData(nameof(CommandLines))]
    public void Isolate_bwrap_shows_the_program_what_bubblewrap_shows_it_unprivileged(string commandLine)
    {
        Host.RequireUnprivilegedRunner();
        RequireBoth();
        AssertSame(commandLine, unprivileged: true);
    }

    internal static void AssertSame(string commandLine, bool unprivileged)
    {
        var bwrap = Run("/usr/bin/bwrap", commandLine, unprivileged);
        var isolate = Run((unprivileged ? Staging.ProgramForAnyUser(Isolate) : Isolate) + " bwrap", commandLine, unprivileged);

        Assert.True(bwrap.Code == isolate.Code, $"exit codes differ: bwrap {bwrap.Code} ({bwrap.Stderr}), isolate {isolate.Code} ({isolate.Stderr})");
        Assert.Equal(bwrap.Stdout, isolate.Stdout);
    }

    [Theory]
    [InlineData("--hostname box -- /bin/true", "--hostname requires --unshare-uts")]
    [InlineData("--exec-label x -- /bin/true", "not supported")]
    [InlineData("--cap-add CAP_NOT_A_THING -- /bin/true", "CAP_NOT_A_THING")]
    [InlineData("--perms 0700 --proc /proc -- /bin/true", "--perms")]
    public void Isolate_bwrap_rejects_what_it_cannot_do_with_a_clear_message(string commandLine, string message)
    {
        Assert.SkipUnless(File.Exists(Isolate), $"needs the isolate sample built ({Isolate}): dotnet build samples/Isolate -c Release");
        var isolate = Run(Isolate + " bwrap", commandLine, unprivileged: false);

        Assert.Equal(1, isolate.Code);
        Assert.Contains(message, isolate.Stderr);
    }

    [Fact]
    public void Isolate_bwrap_passes_argv0_to_the_program()
    {
        // bubblewrap 0.8 (Debian 12) has no --argv0 yet; busybox shows it by running the applet argv[0] names.
        Assert.SkipUnless(File.Exists(Isolate), $"needs the isolate sample built ({Isolate}): dotnet build samples/Isolate -c Release");
        Assert.SkipUnless(File.Exists(BusyboxRoot.Busybox), "needs /bin/busybox");

        var r = Run(Isolate + " bwrap", $"--ro-bind / / --argv0 echo -- {BusyboxRoot.Busybox} hello from argv0", unprivileged: false);

        Assert.True(r.Code == 0, r.Stderr);
        Assert.Equal("hello from argv0\n", r.Stdout);
    }

    [Fact]
    public void Isolate_bwrap_overlays_an_image_with_throw_away_and_persistent_writes()
    {
        // bubblewrap 0.8 (Debian 12) has no overlay options yet, so this one checks the effect directly.
        Assert.SkipUnless(File.Exists(Isolate), $"needs the isolate sample built ({Isolate}): dotnet build samples/Isolate -c Release");
        string lower = BusyboxRoot.NewTempDirectory("isolation-bwrap-lower-");
        string state = BusyboxRoot.NewTempDirectory("isolation-bwrap-state-");
        try
        {
            File.WriteAllText(Path.Combine(lower, "base"), "base");
            Directory.CreateDirectory(Path.Combine(state, "upper"));
            Directory.CreateDirectory(Path.Combine(state, "work"));
            string lowerTwo = Path.Combine(state, "upper"); // a second layer for the read-only overlay

            var r = Run(Isolate + " bwrap", Usr + $"--overlay-src {lower} --tmp-overlay /tmpov --overlay-src {lower} --overlay {state}/upper {state}/work /persist "
                + $"--overlay-src {lower} --overlay-src {lowerTwo} --ro-overlay /ro "
                + "-- /bin/sh -c 'echo t > /tmpov/t; echo p > /persist/p; cat /tmpov/base; echo; ls /tmpov; touch /ro/x 2>/dev/null || echo ro-refused'", unprivileged: false);

            Assert.True(r.Code == 0, r.Stderr);
            Assert.Equal(["base", "base", "t", "ro-refused"], r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Equal(["base"], Directory.GetFileSystemEntries(lower).Select(Path.GetFileName));
            Assert.Equal("p\n", File.ReadAllText(Path.Combine(state, "upper/p")));
        }
        finally
        {
            BusyboxRoot.DeleteTree(lower);
            BusyboxRoot.DeleteTree(state);
        }
    }
}
