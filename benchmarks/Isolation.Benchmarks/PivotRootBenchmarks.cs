using BenchmarkDotNet.Attributes;
using Isolation.Benchmarks.Infrastructure;

namespace Isolation.Benchmarks;

/// <summary>
/// user + pid + mount with /proc, plus pivot_root into a small root: /usr bound read-only, /bin, /lib and
/// /lib64 as symlinks into it, the benchmark's directory bound read-only on /bench. Compared with the
/// same sandbox without the new root (the baseline) and with the bwrap command line that builds the same
/// root (bwrap always pivots into a tmpfs, so this is its like-for-like row).
/// </summary>
[MemoryDiagnoser]
public class PivotRootBenchmarks
{
    private string _root = null!;
    private IsolationSpec _plain = null!;
    private IsolationSpec _pivot = null!;
    private IsolationSpec _cgroup = null!;
    private Floor.Command _bwrap = null!;
    private string _path = null!;
    private string _pathInside = null!;

    [ParamsSource(nameof(ProgramNames))]
    public string Program { get; set; } = "noop";

    public static IEnumerable<string> ProgramNames => Programs.Names;

    [GlobalSetup]
    public void Setup()
    {
        _path = Programs.PathOf(Program);
        string benchDir = Path.GetDirectoryName(Programs.Noop)!;
        _pathInside = Program == "noop" ? "/bench/noop" : _path;

        // The new root's skeleton, made once on the host; the sandbox only binds into it.
        _root = Directory.CreateTempSubdirectory("isolation-bench-root-").FullName;
        foreach (string dir in new[] { "usr", "proc", "bench", "tmp" })
            Directory.CreateDirectory(Path.Combine(_root, dir));
        foreach (string link in new[] { "bin", "lib", "lib64", "sbin" })
            File.CreateSymbolicLink(Path.Combine(_root, link), "usr/" + link);

        _plain = Sandboxes.Spec(Config.UserPidMountProc);
        _pivot = new NamespaceBuilder()
            .WithNamespaces(Sandboxes.Core)
            .MapCurrentUserToRoot()
            .WithMounts(m => m
                .Root(_root)
                .BindReadOnly("/usr", "/usr")
                .BindReadOnly(benchDir, "/bench")
                .Proc("/proc"))
            .WithWorkingDirectory("/")
            .Build();
        _cgroup = new NamespaceBuilder()
            .WithNamespaces(Sandboxes.Core)
            .MapCurrentUserToRoot()
            .WithMounts(m => m.Proc("/proc"))
            .WithCgroup(c => c.MemoryMax(256L << 20).PidsMax(64))
            .Build();
        _bwrap = new Floor.Command(Programs.Bwrap, "--unshare-user", "--unshare-pid", "--uid", "0", "--gid", "0",
            "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin", "--ro-bind", benchDir, "/bench",
            "--proc", "/proc", _pathInside);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _bwrap.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    [Benchmark(Baseline = true, Description = "Isolation, no new root")]
    public void NoNewRoot() => Sandboxes.RunToExit(_plain, _path);

    [Benchmark(Description = "Isolation, pivot_root")]
    public void PivotRoot() => Sandboxes.RunToExit(_pivot, _pathInside);

    [Benchmark(Description = "bwrap, same root")]
    public void Bwrap() => _bwrap.Run();

    /// <summary>
    /// user + pid + mount with /proc in a new cgroup of its own with memory and pids limits: created, limits
    /// written, the child placed before its first instruction (v1 here, clone3 CLONE_INTO_CGROUP on v2), and
    /// removed after the exit. Needs cgroup delegation (root here).
    /// </summary>
    [Benchmark(Description = "Isolation, + cgroup with limits")]
    public void CgroupLimits() => Sandboxes.RunToExit(_cgroup, _path);

}
