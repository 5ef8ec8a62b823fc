using BenchmarkDotNet.Attributes;
using Isolation.Benchmarks.Infrastructure;

namespace Isolation.Benchmarks;

/// <summary>
/// N sandboxes alive at once (user + pid + mount + /proc, init as PID 1, an idle payload): the time to
/// start all of them, and the time to tear all of them down. Memory per idle sandbox is not a timing:
/// <c>--scale-report</c> (run after the suite by --quick and the full mode) measures it.
/// </summary>
[MemoryDiagnoser]
[WarmupCount(1)]
[IterationCount(5)]
public class ScaleBenchmarks
{
    private readonly Fleet _fleet = new();

    [ParamsSource(nameof(Counts))]
    public int Sandboxes { get; set; }

    public static IEnumerable<int> Counts => Programs.Smoke ? [10] : [100, 1000];

    [IterationSetup(Target = nameof(TearDownAll))]
    public void StartBeforeTearDown() => _fleet.StartAll(Sandboxes);

    [IterationCleanup(Target = nameof(StartAll))]
    public void TearDownAfterStart() => _fleet.TearDownAll();

    [GlobalCleanup]
    public void Cleanup() => _fleet.TearDownAll();

    [Benchmark(Description = "start all")]
    public void StartAll() => _fleet.StartAll(Sandboxes);

    [Benchmark(Description = "tear down all")]
    public void TearDownAll() => _fleet.TearDownAll();
}
