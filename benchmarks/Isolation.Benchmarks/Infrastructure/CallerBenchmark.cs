using BenchmarkDotNet.Attributes;

namespace Isolation.Benchmarks.Infrastructure;

/// <summary>
/// The caller's side shared by the rows that compare with other spawners: which program runs, and how big
/// the calling process is (0 or 512 MiB resident, the "big application embedding us" variant).
/// </summary>
public abstract class CallerBenchmark
{
    private byte[]? _ballast;

    [ParamsSource(nameof(ProgramNames))]
    public string Program { get; set; } = "noop";

    /// <summary>Memory the caller keeps resident (every page touched), in MiB.</summary>
    [ParamsSource(nameof(ResidentSizes))]
    public int ResidentMiB { get; set; }

    public static IEnumerable<string> ProgramNames => Programs.Names;

    public static IEnumerable<int> ResidentSizes => Programs.Smoke ? [0] : [0, 512];

    /// <summary>The program's path on the host.</summary>
    protected string ProgramPath { get; private set; } = null!;

    protected void SetupCaller()
    {
        _ballast = Ballast.Allocate(ResidentMiB);
        ProgramPath = Programs.PathOf(Program);
    }

    protected void CleanupCaller() => GC.KeepAlive(_ballast);
}
