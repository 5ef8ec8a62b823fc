using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Isolation.Benchmarks.Infrastructure;
using Isolation.Benchmarks.Reports;
using Perfolizer.Horology;

namespace Isolation.Benchmarks;

/// <summary>
/// Runs the suite (see benchmarks/README.md). Must run as a user who may create the namespaces (root, or
/// with unprivileged user namespaces enabled).
///
///   --quick          a short job per row (a few minutes), then the ratio, allocation and scale reports
///   (no mode)        BenchmarkDotNet's default job (the full run), then the reports
///   --smoke          CI: BenchmarkDotNet's dry job (one invocation per row), the smallest parameters,
///                    the reports at small N. Times are meaningless; it proves every row still runs.
///   --ratios         only the target ratios, interleaved so that load from other processes cancels out
///                    (with --quick: 200 rounds; with --smoke: 5; else 1000)
///   --alloc-report   only the allocation breakdown
///   --loop CONFIG N  N spawns of one configuration and nothing else, for strace -c -f and perf
///                    (add --init for isolation-init as PID 1, --async to await WaitForExitAsync)
///   --scale-report   only the memory-per-sandbox table
///   --cli-report     only the isolate command as a whole process beside bwrap and unshare (needs the
///                    NativeAOT isolate: run ./isolate once)
/// Any other argument goes to BenchmarkDotNet (--filter '*Tool*', --list flat, ...).
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        List<string> rest = [.. args];
        string mode = Take(rest, "--smoke") ? "smoke" : Take(rest, "--quick") ? "quick" : "full";
        bool allocOnly = Take(rest, "--alloc-report");
        bool scaleOnly = Take(rest, "--scale-report");
        bool ratiosOnly = Take(rest, "--ratios");
        bool cliOnly = Take(rest, "--cli-report");
        bool withInit = Take(rest, "--init");
        bool awaitExit = Take(rest, "--async");
        int loop = rest.IndexOf("--loop");
        if (loop >= 0 && loop + 2 < rest.Count)
            return Loop(Enum.Parse<Config>(rest[loop + 1]), int.Parse(rest[loop + 2], System.Globalization.CultureInfo.InvariantCulture), withInit, awaitExit);
        bool noReports = Take(rest, "--no-reports");
        Environment.SetEnvironmentVariable(Programs.ModeVariable, mode); // inherited by the benchmark processes
        int[] fleetSizes = mode == "smoke" ? [10] : [100, 1000];

        int cliRounds = mode == "smoke" ? 3 : mode == "quick" ? 40 : 200;
        if (allocOnly || scaleOnly || ratiosOnly || cliOnly)
        {
            if (cliOnly)
                CliReport.Run(cliRounds);
            if (ratiosOnly)
                RatioReport.Run(mode == "smoke" ? 5 : mode == "quick" ? 200 : 1000);
            if (allocOnly)
                AllocationReport.Run();
            if (scaleOnly)
                ScaleReport.Run(fleetSizes);
            return 0;
        }

        Job job = mode switch
        {
            "smoke" => Job.Dry,
            "quick" => Job.Default.WithLaunchCount(1).WithWarmupCount(2).WithIterationCount(5)
                .WithIterationTime(TimeInterval.FromMilliseconds(150)),
            _ => Job.Default,
        };
        IConfig config = DefaultConfig.Instance
            .AddJob(job.WithId(mode).AsDefault())
            .AddColumn(new SpawnsPerSecondColumn())
            .WithArtifactsPath(Path.Combine(Environment.CurrentDirectory, "artifacts", "benchmarks", mode))
            .WithOptions(ConfigOptions.DisableLogFile);
        if (!rest.Contains("--filter"))
            rest.AddRange(["--filter", "*"]);

        IEnumerable<Summary> summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run([.. rest], config);
        bool failed = false;
        foreach (Summary summary in summaries)
        {
            failed |= summary.HasCriticalValidationErrors;
            foreach (BenchmarkReport report in summary.Reports)
                failed |= !report.Success;
        }

        if (!noReports)
        {
            RatioReport.Run(mode == "smoke" ? 5 : mode == "quick" ? 200 : 1000);
            AllocationReport.Run();
            ScaleReport.Run(fleetSizes);
            CliReport.Run(cliRounds);
        }
        return failed ? 1 : 0;
    }

    /// <summary>
    /// <c>--loop CONFIG N [--init]</c>: N start-to-exit cycles of the static no-op, nothing else, to run
    /// under <c>strace -c -f</c> or <c>perf record -g</c>; with <c>--init</c>, isolation-init as PID 1; with
    /// <c>--async</c>, one async flow that awaits each exit (as an async app does). Prints the mean.
    /// </summary>
    private static int Loop(Config config, int count, bool withInit, bool awaitExit)
    {
        IsolationSpec spec = Sandboxes.Builder(config).WithInit(withInit).Build();
        string noop = Programs.Noop;
        Func<Task> cycle = awaitExit ? () => Sandboxes.RunToExitAsync(spec, noop) : () => { Sandboxes.RunToExit(spec, noop); return Task.CompletedTask; };
        double mean = Task.Run(async () =>
        {
            for (int i = 0; i < 20; i++)
                await cycle().ConfigureAwait(false);
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            for (int i = 0; i < count; i++)
                await cycle().ConfigureAwait(false);
            return System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalMicroseconds / count;
        }).GetAwaiter().GetResult();
        Console.WriteLine($"{config}{(withInit ? " with init" : "")}{(awaitExit ? ", await WaitForExitAsync" : "")}: {count} spawns, mean {mean:F0} µs");
        return 0;
    }

    private static bool Take(List<string> args, string flag) => args.Remove(flag);
}
