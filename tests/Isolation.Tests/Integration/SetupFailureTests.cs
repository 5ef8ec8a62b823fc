using System.Diagnostics;
using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>
/// Every failed start says which step, path and errno, with a hint, and leaves nothing behind: no process,
/// no descriptor, no mount. Runs alone so that other tests' sandboxes do not blur the counts.
/// </summary>
[Collection(LeakChecks.Name)]
public sealed class SetupFailureTests
{
    private static readonly NamespaceBuilder Sandbox = new NamespaceBuilder()
        .WithNamespaces(Namespaces.User | Namespaces.Mount | Namespaces.Pid)
        .MapCurrentUserToRoot();

    internal static SandboxSetupException FailsCleanly(IsolationSpec spec, string program, params string[] args)
    {
        string[] fdsBefore = SpawnDescriptors();
        string mountsBefore = File.ReadAllText("/proc/self/mountinfo");

        var e = Assert.Throws<SandboxSetupException>(() => spec.Start(program, args));

        // No descriptor of the kinds a start opens (pidfds, pipes, memfds) may be left that was not there before.
        // Others may close meanwhile: an earlier test's pidfd is closed by the exit watcher thread.
        Assert.Empty(SpawnDescriptors().Except(fdsBefore));
        Assert.Empty(Host.Leftovers());
        Assert.Equal(mountsBefore, File.ReadAllText("/proc/self/mountinfo"));
        return e;
    }

    /// <summary>
    /// This process's descriptors that a start could leak, as "fd -> target"; the spawn helpers' pidfds are the
    /// library's for as long as they live (the first start, or a busy pool, adds one), so they are left out.
    /// </summary>
    internal static string[] SpawnDescriptors() =>
        Directory.GetFiles("/proc/self/fd")
            .Select(f => (Fd: Path.GetFileName(f), Target: TryReadLink(f)))
            .Where(d => d.Target is not null && (d.Target.StartsWith("pipe:", StringComparison.Ordinal)
                || d.Target.Contains("pidfd", StringComparison.Ordinal) || d.Target.StartsWith("/memfd:", StringComparison.Ordinal)))
            .Where(d => !Host.IsSpawnHelperPidfd(d.Fd))
            .Select(d => $"{d.Fd} -> {d.Target}")
            .ToArray();

    internal static string? TryReadLink(string path)
    {
        try { return new FileInfo(path).LinkTarget; }
        catch (IOException) { return null; }
    }

    [Fact]
    public void A_missing_executable_is_reported_at_the_exec_step()
    {
        var e = FailsCleanly(Sandbox.Build(), "/no/such/program");
        Assert.Equal(SetupStep.Exec, e.Step);
        Assert.Equal("ENOENT", e.ErrnoName);
        Assert.Equal("/no/such/program", e.Path);
        Assert.Contains("exec /no/such/program: No such file or directory (ENOENT). Hint:", e.Message);
    }

    [Fact]
    public void A_program_not_in_PATH_is_reported()
    {
        var e = FailsCleanly(Sandbox.Build(), "no-such-program-anywhere");
        Assert.Equal(SetupStep.Exec, e.Step);
        Assert.Equal("ENOENT", e.ErrnoName);
    }

    [Fact]
    public void Executing_a_directory_is_refused_with_eacces()
    {
        var e = FailsCleanly(Sandbox.Build(), "/tmp");
        Assert.Equal(SetupStep.Exec, e.Step);
        Assert.Equal("EACCES", e.ErrnoName);
        Assert.Contains("is a directory", e.Hint);
    }

    [Fact]
    public void A_script_whose_interpreter_is_missing_is_not_called_a_missing_program()
    {
        using var dir = new TempDirectory();
        string script = dir.Write("script", "#!/no/such/interpreter -x\necho hi\n", executable: true);

        var e = FailsCleanly(Sandbox.Build(), script);

        Assert.Equal(SetupStep.Exec, e.Step);
        Assert.Equal("ENOENT", e.ErrnoName);
        Assert.Contains("interpreter /no/such/interpreter", e.Hint);
        Assert.DoesNotContain("no such program", e.Hint);
    }

    [Fact]
    public void An_RLIMIT_NOFILE_below_3_is_named_instead_of_a_bare_EBADF_on_stdio()
    {
        var e = FailsCleanly(Sandbox.WithRlimit(RlimitResource.NoFile, 0).Build(), "/bin/true");

        Assert.Contains("RLIMIT_NOFILE", e.Hint);
    }

    [Fact]
    public void A_failed_mount_names_the_operation_as_written()
    {
        IsolationSpec spec = Sandbox.WithMounts(m => m.Tmpfs("/tmp").Bind("/no/such/source", "/mnt/data")).Build();
        var e = FailsCleanly(spec, "/bin/true");
        Assert.Equal(SetupStep.Mount, e.Step);
        Assert.Equal(2, e.MountIndex);
        Assert.Equal("ENOENT", e.ErrnoName);
        Assert.StartsWith("mount #2: bind /no/such/source on /mnt/data: No such file or directory (ENOENT)", e.Message);
    }

    [Fact]
    public void A_missing_working_directory_is_reported()
    {
        var e = FailsCleanly(Sandbox.WithWorkingDirectory("/no/such/dir").Build(), "/bin/true");
        Assert.Equal(SetupStep.WorkingDirectory, e.Step);
        Assert.Equal("/no/such/dir", e.Path);
    }

    [Fact]
    public void An_unopenable_stdio_file_fails_before_clone()
    {
        var e = FailsCleanly(Sandbox.WithStandardInput(Stdio.File("/no/such/input")).Build(), "/bin/true");
        Assert.Equal(SetupStep.OpenStdio, e.Step);
        Assert.Equal("ENOENT", e.ErrnoName);
    }

    [Fact]
    public void A_successful_run_leaves_no_descriptor_or_child_behind()
    {
        IsolationSpec spec = Sandbox.WithStandardOutput(Stdio.Pipe).WithStandardError(Stdio.Pipe).WithStandardInput(Stdio.Pipe).Build();
        using (IsolatedProcess warmup = spec.Start("/bin/true"))
            warmup.WaitForExit();
        string[] fdsBefore = SpawnDescriptors();

        using (IsolatedProcess p = spec.Start("/bin/true"))
            p.WaitForExit();

        // The pidfd is closed by whichever lets go last, Dispose or the exit watcher thread: allow it a moment.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (SpawnDescriptors().Except(fdsBefore).Any() && clock.Elapsed < TimeSpan.FromSeconds(5))
            Thread.Sleep(10);
        Assert.Empty(SpawnDescriptors().Except(fdsBefore));
        Assert.Empty(Host.Leftovers());
    }

    [Fact]
    public void Only_stdio_reaches_the_program_not_the_callers_descriptors()
    {
        using FileStream open = File.OpenRead("/etc/hostname"); // an fd the child must not inherit
        IsolationSpec spec = new NamespaceBuilder().WithStandardOutput(Stdio.Pipe).Build();
        using IsolatedProcess p = spec.Start("/bin/ls", "/proc/self/fd");
        string output = new StreamReader(p.StandardOutput!).ReadToEnd();
        p.WaitForExit();
        // ls itself opens one descriptor for the directory it lists.
        Assert.True(output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).Count(fd => fd > 2) <= 1, output);
    }

    [Fact]
    public void The_sandbox_dies_with_its_parent_when_asked()
    {
        Assert.SkipUnless(File.Exists(TestHostRunner.Executable), "the test host is not built");
        string pidFile = Path.Combine(Path.GetTempPath(), $"isolation-dwp-{Guid.NewGuid():N}");
        using Process driver = Process.Start(new ProcessStartInfo(TestHostRunner.Executable,
            ["spawn", "--die-with-parent", "--", "/bin/sh", "-c", $"echo $$ > {pidFile}; exec sleep 60"]) { RedirectStandardOutput = true })!;
        try
        {
            var clock = Stopwatch.StartNew();
            while (!File.Exists(pidFile) || File.ReadAllText(pidFile).Trim().Length == 0)
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "the sandbox did not start");
                Thread.Sleep(20);
            }
            int pid = int.Parse(File.ReadAllText(pidFile).Trim());
            Assert.True(Directory.Exists($"/proc/{pid}"));

            driver.Kill();
            driver.WaitForExit();

            clock.Restart();
            while (Directory.Exists($"/proc/{pid}") && clock.Elapsed < TimeSpan.FromSeconds(10))
                Thread.Sleep(20);
            Assert.False(Directory.Exists($"/proc/{pid}"), $"pid {pid} outlived its parent");
        }
        finally
        {
            File.Delete(pidFile);
        }
    }
}

/// <summary>A directory of files for one test, removed with it.</summary>
internal sealed class TempDirectory : IDisposable
{
    public string Path { get; } = TempLeftovers.Track(Directory.CreateTempSubdirectory("isolation-test-").FullName);

    public string Write(string name, string text, bool executable)
    {
        string file = System.IO.Path.Combine(Path, name);
        File.WriteAllText(file, text);
        if (executable && OperatingSystem.IsLinux())
            File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        return file;
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
