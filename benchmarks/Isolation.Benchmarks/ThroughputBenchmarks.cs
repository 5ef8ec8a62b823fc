using BenchmarkDotNet.Attributes;
using Isolation.Benchmarks.Infrastructure;

namespace Isolation.Benchmarks;

/// <summary>
/// Spawns per second with 1 and 2 concurrent callers sharing one spec (the machine has 2 cores). Each
/// invocation runs <see cref="Spawns"/> start-to-exit cycles split between the callers; the time per
/// operation is per spawn, and the Spawns/s column is its inverse.
/// </summary>
[MemoryDiagnoser]
public class ThroughputBenchmarks
{
    public const int Spawns = 32;

    private IsolationSpec _spec = null!;
    private string _path = null!;

    [ParamsSource(nameof(Configs))]
    public Config Config { get; set; }

    [Params(1, 2)]
    public int Callers { get; set; }

    public static IEnumerable<Config> Configs => Programs.Smoke ? [Config.UserPidMountProc] : [Config.None, Config.UserPidMountProc];

    [GlobalSetup]
    public void Setup()
    {
        _path = Programs.Noop;
        _spec = Sandboxes.Spec(Config);
    }

    [Benchmark(OperationsPerInvoke = Spawns, Description = "Isolation, noop")]
    public void Spawn()
    {
        if (Callers == 1)
        {
            for (int i = 0; i < Spawns; i++)
                Sandboxes.RunToExit(_spec, _path);
            return;
        }
        var threads = new Thread[Callers];
        for (int t = 0; t < Callers; t++)
        {
            int count = Spawns / Callers;
            threads[t] = new Thread(() =>
            {
                for (int i = 0; i < count; i++)
                    Sandboxes.RunToExit(_spec, _path);
            });
            threads[t].Start();
        }
        foreach (Thread thread in threads)
            thread.Join();
    }
}
