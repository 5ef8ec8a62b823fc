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
///   --quick          a short job per row (a few minutes), then the allocation and scale reports
///   (no mode)        BenchmarkDotNet's default job (the full run), then the reports
///   --smoke          CI: BenchmarkDotNet's dry job (one invocation per row), the smallest parameters,
///                    the reports at small N. Times are meaningless; it proves every row still runs.
///   --alloc-report   only the allocation breakdown
///   --scale-report   only the memory-per-sandbox table
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
        bool noReports = Take(rest, "--no-reports");
        Environment.SetEnvironmentVariable(Programs.ModeVariable, mode); // inherited by the benchmark processes
        int[] fleetSizes = mode == "smoke" ? [10] : [100, 1000];

        if (allocOnly || scaleOnly)
        {
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
            AllocationReport.Run();
            ScaleReport.Run(fleetSizes);
        }
        return failed ? 1 : 0;
    }

    private static bool Take(List<string> args, string flag) => args.Remove(flag);
}
