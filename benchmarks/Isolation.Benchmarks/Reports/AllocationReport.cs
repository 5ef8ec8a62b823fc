using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;
using Isolation.Benchmarks.Infrastructure;

namespace Isolation.Benchmarks.Reports;

/// <summary>
/// <c>--alloc-report</c>: what one steady-state start allocates, and where. [MemoryDiagnoser] gives the
/// bytes of a whole start-wait-dispose cycle (all threads); this splits it into Start(), WaitForExit() and
/// Dispose() on the calling thread, checks that arguments add nothing, and sizes the objects the library
/// is known to create so the bytes can be read as objects (the sizes are measured, not assumed).
/// </summary>
internal static class AllocationReport
{
    private const int Rounds = 300;

    public static void Run()
    {
        string noop = Programs.Noop;
        Console.WriteLine();
        Console.WriteLine("## Allocation per start (bytes, steady state, mean of " + Rounds + ")");
        Console.WriteLine();
        Console.WriteLine("| Config | Start() | Start() with 8 args | WaitForExit() | Dispose() | whole cycle, all threads |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|");
        foreach (Config config in new[] { Config.None, Config.UserPidMountProc })
        {
            IsolationSpec spec = Sandboxes.Spec(config);
            string[] eight = ["a", "b", "c", "d", "e", "f", "g", "h"];
            for (int i = 0; i < 50; i++) // warm: JIT tiers, exit watcher, dictionary growth
            {
                Sandboxes.RunToExit(spec, noop);
                using IsolatedProcess p = spec.Start(noop, eight);
                p.WaitForExit();
            }

            double start = 0, startArgs = 0, wait = 0, dispose = 0, cycle = 0;
            for (int i = 0; i < Rounds; i++)
            {
                long total0 = GC.GetTotalAllocatedBytes(precise: true);
                long t0 = GC.GetAllocatedBytesForCurrentThread();
                IsolatedProcess p = spec.Start(noop);
                long t1 = GC.GetAllocatedBytesForCurrentThread();
                p.WaitForExit();
                long t2 = GC.GetAllocatedBytesForCurrentThread();
                p.Dispose();
                long t3 = GC.GetAllocatedBytesForCurrentThread();
                long total1 = GC.GetTotalAllocatedBytes(precise: true);
                start += t1 - t0;
                wait += t2 - t1;
                dispose += t3 - t2;
                cycle += total1 - total0;

                long a0 = GC.GetAllocatedBytesForCurrentThread();
                IsolatedProcess q = spec.Start(noop, "a", "b", "c", "d", "e", "f", "g", "h");
                startArgs += GC.GetAllocatedBytesForCurrentThread() - a0;
                q.WaitForExit();
                q.Dispose();
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {config} | {start / Rounds:F0} | {startArgs / Rounds:F0} | {wait / Rounds:F0} | {dispose / Rounds:F0} | {cycle / Rounds:F0} |"));
        }

        Console.WriteLine();
        Console.WriteLine("Sizes of the objects a sandbox can create (measured on this runtime); Start() itself creates only the first two:");
        Console.WriteLine();
        Console.WriteLine("| Object | Bytes | Created by |");
        Console.WriteLine("|---|---:|---|");
        Row("IsolatedProcess", Measure(() => RuntimeHelpers.GetUninitializedObject(typeof(IsolatedProcess))), "IsolationSpec.Start (the returned handle)");
        Row("SandboxHandle (SafeHandle: the pidfd and the status socket)", Measure(() => RuntimeHelpers.GetUninitializedObject(typeof(IsolatedProcess).Assembly.GetType("Isolation.Spawning.SandboxHandle")!)),
            "IsolationSpec.Start, held by the returned handle");
        Row("TaskCompletionSource<ExitStatus> + its Task<ExitStatus>", Measure(() => new TaskCompletionSource<ExitStatus>(TaskCreationOptions.RunContinuationsAsynchronously)),
            "IsolatedProcess.WaitForExit/WaitForExitAsync, only when called before the exit");
        Row("Timer (+ TimerHolder, TimerQueueTimer)", Measure(() =>
        {
            var t = new Timer(static _ => { }, null, Timeout.Infinite, Timeout.Infinite);
            return t;
        }), "IsolatedProcess ctor, only WithTimeout");
        Console.WriteLine();
    }

    private static long Measure(Func<object> create)
    {
        for (int i = 0; i < 16; i++)
            GC.KeepAlive(create());
        long best = long.MaxValue;
        for (int i = 0; i < 16; i++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            object o = create();
            long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
            GC.KeepAlive(o);
            best = Math.Min(best, bytes);
        }
        return best;
    }

    private static void Row(string what, long bytes, string by) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {what} | {bytes} | {by} |"));
}
