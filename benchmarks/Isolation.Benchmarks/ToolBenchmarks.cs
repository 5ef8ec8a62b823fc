using BenchmarkDotNet.Attributes;
using Isolation.Benchmarks.Infrastructure;

namespace Isolation.Benchmarks;

/// <summary>
/// The target row, user + pid + mount with a new /proc, against the tools people use for it today, timed
/// as whole processes (spawned by the C floor without namespaces, so no Process.Start cost is added):
/// <c>unshare --user --pid --map-root-user --mount-proc --fork</c> and the closest <c>bwrap</c>
/// (<c>--unshare-user --unshare-pid --uid 0 --gid 0 --dev-bind / / --proc /proc</c>; bwrap always adds a
/// mount namespace, a tmpfs root and pivot_root, and stays as the sandbox's PID 1). Baseline: the C floor.
/// Targets: Isolation ≤ 1.15× the floor, ≤ 0.4× unshare, ≤ 0.25× bwrap, also with 512 MiB resident.
/// </summary>
[MemoryDiagnoser]
public class ToolBenchmarks : CallerBenchmark
{
    private IsolationSpec _spec = null!;
    private Floor.Command _floor = null!;
    private Floor.Command _unshare = null!;
    private Floor.Command _bwrap = null!;

    [GlobalSetup]
    public void Setup()
    {
        SetupCaller();
        _spec = Sandboxes.Spec(Config.UserPidMountProc);
        _floor = new Floor.Command(ProgramPath);
        _unshare = new Floor.Command(Programs.Unshare, "--user", "--pid", "--map-root-user", "--mount-proc", "--fork", ProgramPath);
        _bwrap = new Floor.Command(Programs.Bwrap, "--unshare-user", "--unshare-pid", "--uid", "0", "--gid", "0",
            "--dev-bind", "/", "/", "--proc", "/proc", ProgramPath);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _floor.Dispose();
        _unshare.Dispose();
        _bwrap.Dispose();
        CleanupCaller();
    }

    [Benchmark(Baseline = true, Description = "C floor")]
    public void CFloor()
    {
        (ulong cloneFlags, int flags) = Sandboxes.FloorArgs(Config.UserPidMountProc);
        _floor.Run(cloneFlags, flags);
    }

    [Benchmark(Description = "Isolation")]
    public void Isolation() => Sandboxes.RunToExit(_spec, ProgramPath);

    [Benchmark(Description = "Isolation, await WaitForExitAsync")]
    public Task IsolationAsync() => Sandboxes.RunToExitAsync(_spec, ProgramPath);

    [Benchmark(Description = "unshare")]
    public void Unshare() => _unshare.Run();

    [Benchmark(Description = "bwrap")]
    public void Bwrap() => _bwrap.Run();
}
