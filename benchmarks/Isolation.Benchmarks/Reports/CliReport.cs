using System.Diagnostics;
using System.Globalization;
using Isolation.Benchmarks.Infrastructure;

namespace Isolation.Benchmarks.Reports;

/// <summary>
/// <c>--cli-report</c>: the <c>isolate</c> command as a whole process (start, sandbox, exit) beside bwrap and
/// util-linux unshare doing the same, interleaved round by round so that machine load cancels out. Every
/// contender is spawned by the C floor without namespaces (no Process.Start cost) and runs /bin/true with an
/// empty environment. The native isolate is the NativeAOT build that <c>./isolate</c> makes
/// (artifacts/isolate-aot/isolate, or the path in $ISOLATE); the JIT build (samples/Isolate/bin/Release) is
/// shown beside it when present. Goal: the native isolate ≤ 1.5× the tool.
/// </summary>
internal static class CliReport
{
    public static void Run(int rounds)
    {
        string? native = FindIsolate("ISOLATE", "artifacts/isolate-aot/isolate");
        if (native is null)
        {
            Console.WriteLine("## isolate as a whole command: skipped: no NativeAOT isolate (run ./isolate once, or set ISOLATE=path)");
            return;
        }
        string? jit = FindIsolate("ISOLATE_JIT_BIN", "samples/Isolate/bin/Release/net10.0/isolate");
        const string True = "/bin/true";
        string[][] faces =
        [
            ["bwrap", "--ro-bind", "/", "/", True],
            ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", True],
            ["unshare", "-Urpf", "--mount-proc", True],
        ];
        var rows = new List<(string Name, Floor.Command Command)>();
        foreach (string[] face in faces)
        {
            string tool = face[0] == "bwrap" ? Programs.Bwrap : Programs.Unshare;
            rows.Add(($"`{string.Join(' ', face)}`", new Floor.Command(tool, face[1..])));
            rows.Add(($"`isolate {string.Join(' ', face)}` (NativeAOT)", new Floor.Command(native, face)));
            if (jit is not null)
                rows.Add(($"`isolate {string.Join(' ', face)}` (JIT)", new Floor.Command(jit, face)));
        }
        int perFace = jit is null ? 2 : 3;
        try
        {
            string loadBefore = LoadAverage();
            foreach ((string _, Floor.Command command) in rows)
                for (int i = 0; i < 3; i++)
                    command.Run(); // warm the page cache
            var samples = rows.Select(_ => new List<double>(rounds)).ToArray();
            for (int r = 0; r < rounds; r++)
            {
                for (int k = 0; k < rows.Count; k++)
                {
                    int c = (k + r) % rows.Count;
                    long t0 = Stopwatch.GetTimestamp();
                    rows[c].Command.Run();
                    samples[c].Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
            }

            Console.WriteLine();
            Console.WriteLine($"## isolate as a whole command ({rounds} interleaved rounds, /bin/true, medians)");
            Console.WriteLine();
            // Wall times on 2 shared cores depend on what else runs: say how busy the machine was, and whether this
            // run had a real-time policy (chrt -f), which lets it preempt the rest as on a quiet machine.
            Console.WriteLine($"Load average before and after: {loadBefore} / {LoadAverage()}; scheduling policy: {SchedulingPolicy()}.");
            Console.WriteLine();
            Console.WriteLine("| Command | median | p10 | p90 |");
            Console.WriteLine("|---|---:|---:|---:|");
            for (int c = 0; c < rows.Count; c++)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {rows[c].Name} | {RatioReport.Percentile(samples[c], 0.5):F1} ms | {RatioReport.Percentile(samples[c], 0.1):F1} ms | {RatioReport.Percentile(samples[c], 0.9):F1} ms |"));
            Console.WriteLine();
            Console.WriteLine("| Target | measured | goal | met |");
            Console.WriteLine("|---|---:|---:|---|");
            for (int f = 0; f < faces.Length; f++)
            {
                int tool = f * perFace;
                double toolMedian = RatioReport.Percentile(samples[tool], 0.5);
                RatioReport.Target($"isolate {string.Join(' ', faces[f][..^1])} (NativeAOT) / the tool",
                    RatioReport.Percentile(samples[tool + 1], 0.5) / toolMedian, 1.5);
                if (jit is not null)
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"| (no target) the JIT build / the tool | {RatioReport.Percentile(samples[tool + 2], 0.5) / toolMedian:F2} | | |"));
            }
        }
        finally
        {
            foreach ((string _, Floor.Command command) in rows)
                command.Dispose();
        }
    }

    private static string LoadAverage() => string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ')[..3]);

    /// <summary>This process's scheduling policy as /proc/self/sched shows it (0 normal, 1 FIFO, 2 round-robin).</summary>
    private static string SchedulingPolicy()
    {
        string? line = File.ReadLines("/proc/self/sched").FirstOrDefault(l => l.StartsWith("policy", StringComparison.Ordinal));
        return line?.Split(':')[^1].Trim() switch
        {
            "0" => "normal",
            "1" => "real-time FIFO (chrt -f)",
            "2" => "real-time round-robin (chrt -r)",
            { } other => $"policy {other}",
            null => "unknown",
        };
    }

    /// <summary>$<paramref name="variable"/>, else <paramref name="relative"/> under the repository root (found upwards from here).</summary>
    private static string? FindIsolate(string variable, string relative)
    {
        if (Environment.GetEnvironmentVariable(variable) is { Length: > 0 } set)
            return File.Exists(set) ? set : throw new FileNotFoundException($"${variable} names {set}, which does not exist", set);
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir.TrimEnd('/')))
        {
            string candidate = Path.Combine(dir, relative);
            if (File.Exists(candidate))
                return candidate;
        }
        return null;
    }
}
