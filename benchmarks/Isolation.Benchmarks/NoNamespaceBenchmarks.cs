using BenchmarkDotNet.Attributes;
using Isolation.Benchmarks.Infrastructure;

namespace Isolation.Benchmarks;

/// <summary>
/// No namespaces: the library against System.Diagnostics.Process.Start (the baseline; target: Isolation
/// ≤ 0.9×) and the C floor, with the caller small and with 512 MiB resident.
/// </summary>
[MemoryDiagnoser]
public class NoNamespaceBenchmarks : CallerBenchmark
{
    private IsolationSpec _spec = null!;
    private Floor.Command _floor = null!;

    [GlobalSetup]
    public void Setup()
    {
        SetupCaller();
        _spec = Sandboxes.Spec(Config.None);
        _floor = new Floor.Command(ProgramPath);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _floor.Dispose();
        CleanupCaller();
    }

    [Benchmark(Baseline = true, Description = "Process.Start")]
    public void ProcessStart() => Sandboxes.ProcessStartToExit(ProgramPath);

    [Benchmark(Description = "Isolation")]
    public void Isolation() => Sandboxes.RunToExit(_spec, ProgramPath);

    [Benchmark(Description = "C floor")]
    public void CFloor() => _floor.Run();
}
