using BenchmarkDotNet.Attributes;
using Isolation.Benchmarks.Infrastructure;

namespace Isolation.Benchmarks;

/// <summary>
/// Start() to exit, per configuration, against the C floor doing the same clone3/handshake/exec in raw
/// system calls. The ratio column is Isolation over the floor of the same configuration.
/// </summary>
[MemoryDiagnoser]
public class SpawnLatencyBenchmarks
{
    private IsolationSpec _spec = null!;
    private Floor.Command _floor = null!;
    private (ulong CloneFlags, int Flags) _floorArgs;
    private string _path = null!;

    [ParamsSource(nameof(Configs))]
    public Config Config { get; set; }

    [ParamsSource(nameof(ProgramNames))]
    public string Program { get; set; } = "noop";

    public static IEnumerable<Config> Configs => Programs.Smoke ? [Config.UserPidMountProc] : Enum.GetValues<Config>();

    public static IEnumerable<string> ProgramNames => Programs.Names;

    [GlobalSetup]
    public void Setup()
    {
        _path = Programs.PathOf(Program);
        _spec = Sandboxes.Spec(Config);
        _floor = new Floor.Command(_path);
        _floorArgs = Sandboxes.FloorArgs(Config);
    }

    [GlobalCleanup]
    public void Cleanup() => _floor.Dispose();

    [Benchmark(Baseline = true, Description = "C floor")]
    public void CFloor() => _floor.Run(_floorArgs.CloneFlags, _floorArgs.Flags);

    [Benchmark(Description = "Isolation")]
    public void Isolation() => Sandboxes.RunToExit(_spec, _path);
}
