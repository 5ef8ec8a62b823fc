namespace Isolation.Benchmarks.Infrastructure;

/// <summary>The programs the sandboxes run, the command-line tools compared against, and the run mode.</summary>
internal static class Programs
{
    /// <summary>Set by Program.cs for the benchmark processes BenchmarkDotNet starts (they inherit it).</summary>
    public const string ModeVariable = "ISOLATION_BENCH_MODE";

    public static string Mode => Environment.GetEnvironmentVariable(ModeVariable) ?? "full";

    public static bool Smoke => Mode == "smoke";

    /// <summary>The spawned programs: /bin/true (dynamically linked, what people type) and the static no-op.</summary>
    public static IEnumerable<string> Names => Smoke ? ["noop"] : ["true", "noop"];

    public static string PathOf(string name) => name switch
    {
        "true" => "/bin/true",
        "noop" => Noop,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "true or noop"),
    };

    /// <summary>native/noop.c: exit(0) with no libc and no loader; with an argument it sleeps until killed.</summary>
    public static string Noop => Find("noop");

    /// <summary>The C floor as a stand-alone program (native/floor.c, FLOOR_MAIN).</summary>
    public static string Floor => Find("floor");

    public static string Unshare => Tool("unshare", "/usr/bin/unshare", "util-linux");

    public static string Bwrap => Tool("bwrap", "/usr/bin/bwrap", "bubblewrap");

    /// <summary>The native helpers sit beside the benchmark assembly; BenchmarkDotNet's generated host may sit deeper.</summary>
    private static string Find(string name)
    {
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir.TrimEnd('/')))
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
                return candidate;
        }
        throw new FileNotFoundException($"{name} is built by native/Makefile into the benchmark's output; rebuild the project.", name);
    }

    private static string Tool(string name, string path, string package) =>
        File.Exists(path) ? path : throw new FileNotFoundException($"{name} is missing: apt-get install -y {package}", path);
}
