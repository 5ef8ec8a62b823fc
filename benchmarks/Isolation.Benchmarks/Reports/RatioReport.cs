using System.Diagnostics;
using System.Globalization;
using Isolation.Benchmarks.Infrastructure;

namespace Isolation.Benchmarks.Reports;

/// <summary>
/// <c>--ratios</c>: the issue's target ratios, measured so that load from other processes cancels out.
/// BenchmarkDotNet runs one row after another, so a build that starts halfway through skews the ratio;
/// here every round runs each contender once, in rotating order, and the table compares medians of the
/// same rounds. Run it first with a small caller, then again in the same process with 512 MiB resident.
/// </summary>
internal static class RatioReport
{
    public static void Run(int rounds)
    {
        string noop = Programs.Noop;
        using var floorNoop = new Floor.Command(noop);
        using var unshare = new Floor.Command(Programs.Unshare, "--user", "--pid", "--map-root-user", "--mount-proc", "--fork", noop);
        using var bwrap = new Floor.Command(Programs.Bwrap, "--unshare-user", "--unshare-pid", "--uid", "0", "--gid", "0",
            "--dev-bind", "/", "/", "--proc", "/proc", noop);
        IsolationSpec none = Sandboxes.Spec(Config.None);
        IsolationSpec target = Sandboxes.Spec(Config.UserPidMountProc);
        (ulong flags, int floorFlags) = Sandboxes.FloorArgs(Config.UserPidMountProc);

        using var ownFloor = new FloorProcess(flags, floorFlags, noop);
        var contenders = new (string Name, Func<double?> Run)[]
        {
            ("none: Process.Start", Timed(() => Sandboxes.ProcessStartToExit(noop))),
            ("none: Isolation", Timed(() => Sandboxes.RunToExit(none, noop))),
            ("none: C floor", Timed(() => floorNoop.Run())),
            ("user+pid+mount+proc: Isolation", Timed(() => Sandboxes.RunToExit(target, noop))),
            ("user+pid+mount+proc: C floor", Timed(() => floorNoop.Run(flags, floorFlags))),
            ("user+pid+mount+proc: unshare", Timed(() => unshare.Run())),
            ("user+pid+mount+proc: bwrap", Timed(() => bwrap.Run())),
            ("user+pid+mount+proc: Isolation, await WaitForExitAsync", TimedAsync(() => Sandboxes.RunToExitAsync(target, noop))),
            ("user+pid+mount+proc: C floor as its own small process", ownFloor.Run),
            ("user+pid+mount+proc: Isolation, await WaitForExitAsync, 4 in one async flow (mean)", TimedAsync(() => Sandboxes.RunToExitAsync(target, noop), cycles: 4)),
        };

        Console.WriteLine();
        Console.WriteLine($"## Target ratios (static no-op payload, {rounds} interleaved rounds, medians)");
        foreach (int mib in new[] { 0, 512 })
        {
            byte[]? ballast = Ballast.Allocate(mib);
            foreach ((string _, Func<double?> run) in contenders)
                for (int i = 0; i < 20; i++)
                    run(); // warm
            var samples = contenders.Select(_ => new List<double>(rounds)).ToArray();
            for (int r = 0; r < rounds; r++)
            {
                for (int k = 0; k < contenders.Length; k++)
                {
                    int c = (k + r) % contenders.Length;
                    samples[c].Add(contenders[c].Run() ?? throw new InvalidOperationException($"{contenders[c].Name} failed"));
                }
            }
            double[] median = samples.Select(s => Percentile(s, 0.5)).ToArray();
            Console.WriteLine();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Caller resident: {mib} MiB extra ({Environment.WorkingSet / (1024 * 1024)} MiB working set)"));
            Console.WriteLine();
            Console.WriteLine("| Row | median | p10 | p90 |");
            Console.WriteLine("|---|---:|---:|---:|");
            for (int c = 0; c < contenders.Length; c++)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {contenders[c].Name} | {median[c]:F0} µs | {Percentile(samples[c], 0.1):F0} µs | {Percentile(samples[c], 0.9):F0} µs |"));
            Console.WriteLine();
            Console.WriteLine("| Target | measured | goal | met |");
            Console.WriteLine("|---|---:|---:|---|");
            Target("none: Isolation / Process.Start", median[1] / median[0], 0.9);
            Target("user+pid+mount+proc: Isolation / C floor as its own small process", median[3] / median[8], 1.15);
            Target("user+pid+mount+proc: Isolation, await WaitForExitAsync / C floor as its own small process", median[7] / median[8], 1.15);
            Target("user+pid+mount+proc: Isolation, await WaitForExitAsync, 4 in one flow / C floor as its own small process", median[9] / median[8], 1.15);
            Target("user+pid+mount+proc: Isolation / C floor in this process (CLONE_VM from the caller)", median[3] / median[4], 1.15);
            Target("user+pid+mount+proc: Isolation / unshare", median[3] / median[5], 0.4);
            Target("user+pid+mount+proc: Isolation / bwrap", median[3] / median[6], 0.25);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| (no target) none: Isolation / C floor | {median[1] / median[2]:F2} | | |"));
            GC.KeepAlive(ballast);
        }
        Phases(rounds, target, floorNoop, flags, floorFlags, noop);
        Concurrency(target, noop, flags, floorFlags, 50, rounds >= 200 ? 10 : 2);
        Console.WriteLine();
    }

    /// <summary>
    /// 50 starts at once take about what 50 sequential ones take divided by the cores: no start waits for
    /// another's setup (the spawn helpers are event-driven, each start waits on a socket of its own). The C
    /// floor, on 50 threads of this process, shows what the kernel itself allows on this machine.
    /// </summary>
    private static void Concurrency(IsolationSpec spec, string noop, ulong flags, int floorFlags, int n, int repeats)
    {
        Floor.Command[] floors = [.. Enumerable.Range(0, n).Select(_ => new Floor.Command(noop))];
        (double Sequential, double Concurrent) library = Measure(i => Sandboxes.RunToExit(spec, noop));
        (double Sequential, double Concurrent) floor = Measure(i => floors[i].Run(flags, floorFlags));
        foreach (Floor.Command f in floors)
            f.Dispose();
        int cores = Environment.ProcessorCount;
        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Concurrency: {n} user+pid+mount+proc starts to exit, {repeats} repeats, medians, {cores} cores"));
        Console.WriteLine();
        Console.WriteLine("| Run | Isolation | C floor (threads of this process) |");
        Console.WriteLine("|---|---:|---:|");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {n} one after another | {library.Sequential:F1} ms | {floor.Sequential:F1} ms |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {n} at once ({n} threads) | {library.Concurrent:F1} ms | {floor.Concurrent:F1} ms |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| at once / (one after another / {cores} cores) | {library.Concurrent / (library.Sequential / cores):F2} | {floor.Concurrent / (floor.Sequential / cores):F2} |"));

        (double, double) Measure(Action<int> run)
        {
            var sequential = new List<double>();
            var concurrent = new List<double>();
            for (int r = 0; r < repeats; r++)
            {
                long t0 = Stopwatch.GetTimestamp();
                for (int i = 0; i < n; i++)
                    run(i);
                sequential.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);

                using var go = new ManualResetEventSlim();
                var threads = Enumerable.Range(0, n).Select(i => new Thread(() => { go.Wait(); run(i); })).ToArray();
                foreach (Thread t in threads)
                    t.Start();
                long t1 = Stopwatch.GetTimestamp();
                go.Set();
                foreach (Thread t in threads)
                    t.Join();
                concurrent.Add(Stopwatch.GetElapsedTime(t1).TotalMilliseconds);
            }
            return (Percentile(sequential, 0.5), Percentile(concurrent, 0.5));
        }
    }

    /// <summary>A contender timed here, start to exit, in µs.</summary>
    private static Func<double?> Timed(Action run) => () =>
    {
        long t0 = Stopwatch.GetTimestamp();
        run();
        return Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
    };

    /// <summary>
    /// An async contender timed inside the async flow, as an async application sees it: from before Start() to
    /// after the awaited exit, on whatever thread the continuation runs, averaged over <paramref name="cycles"/>
    /// starts in a row (1: a lone start whose threads have gone cold meanwhile; more: an app's steady flow, where
    /// each start runs on the exit watcher thread the previous exit woke). The hand-off back to this blocked
    /// report thread is not counted (an async app has none).
    /// </summary>
    private static Func<double?> TimedAsync(Func<Task> run, int cycles = 1) => () => Task.Run(async () =>
    {
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < cycles; i++)
            await run().ConfigureAwait(false);
        return (double?)(Stopwatch.GetElapsedTime(t0).TotalMicroseconds / cycles);
    }).GetAwaiter().GetResult();

    /// <summary>
    /// The C floor as its own small process (<c>floor -s</c>): it times each spawn itself and writes the time
    /// back, so the pipe to it is not counted. What the library is held to since it spawns from a helper.
    /// </summary>
    private sealed class FloorProcess : IDisposable
    {
        private readonly Process _process;
        private readonly byte[] _buffer = new byte[8];

        public FloorProcess(ulong cloneFlags, int flags, string program)
        {
            var info = new ProcessStartInfo(Programs.Floor) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            info.ArgumentList.Add("-s");
            info.ArgumentList.Add("-f");
            info.ArgumentList.Add(cloneFlags.ToString("x", CultureInfo.InvariantCulture));
            if ((flags & Floor.MapRoot) != 0)
                info.ArgumentList.Add("-u");
            if ((flags & Floor.MountProc) != 0)
                info.ArgumentList.Add("-p");
            info.ArgumentList.Add(program);
            _process = Process.Start(info)!;
        }

        public double? Run()
        {
            _process.StandardInput.BaseStream.WriteByte(1);
            _process.StandardInput.BaseStream.Flush();
            _process.StandardOutput.BaseStream.ReadExactly(_buffer);
            long ns = BitConverter.ToInt64(_buffer);
            return ns < 0 ? null : ns / 1000.0;
        }

        public void Dispose()
        {
            _process.StandardInput.Close();
            _process.WaitForExit();
            _process.Dispose();
        }
    }

    /// <summary>
    /// Where the difference to the floor is: start (clone to exec, returned by Start()) and exit (exec to
    /// the waiter seeing the exit: the floor blocks in waitid itself, the library's waiter is woken by the
    /// exit-watcher thread through a TaskCompletionSource), and Dispose.
    /// </summary>
    private static void Phases(int rounds, IsolationSpec spec, Floor.Command floor, ulong flags, int floorFlags, string noop)
    {
        var isoStart = new List<double>(rounds);
        var isoExit = new List<double>(rounds);
        var isoDispose = new List<double>(rounds);
        var isoSeen = new List<double>(rounds);
        var floorStart = new List<double>(rounds);
        var floorExit = new List<double>(rounds);
        var watcherLag = new List<double>(rounds);
        for (int r = 0; r < 2 * rounds + 20; r++)
        {
            // Even rounds: the plain WaitForExit path. Odd rounds: the calling thread first waits on a pidfd of
            // its own, which is when a waiter that reaps for itself would return; then WaitForExit.
            bool own = r % 2 == 1;
            long t0 = Stopwatch.GetTimestamp();
            IsolatedProcess p = spec.Start(noop);
            long t1 = Stopwatch.GetTimestamp();
            long seen = own ? WaitOnOwnPidfd(p.Id) : 0;
            p.WaitForExit();
            long t2 = Stopwatch.GetTimestamp();
            p.Dispose();
            long t3 = Stopwatch.GetTimestamp();
            int pidfd = floor.StartOnly(flags, floorFlags);
            long t4 = Stopwatch.GetTimestamp();
            Floor.Command.WaitFor(pidfd);
            long t5 = Stopwatch.GetTimestamp();
            if (r < 20)
                continue; // warm
            isoStart.Add(Stopwatch.GetElapsedTime(t0, t1).TotalMicroseconds);
            isoDispose.Add(Stopwatch.GetElapsedTime(t2, t3).TotalMicroseconds);
            floorStart.Add(Stopwatch.GetElapsedTime(t3, t4).TotalMicroseconds);
            floorExit.Add(Stopwatch.GetElapsedTime(t4, t5).TotalMicroseconds);
            if (own)
            {
                isoSeen.Add(Stopwatch.GetElapsedTime(t1, seen).TotalMicroseconds);
                watcherLag.Add(Stopwatch.GetElapsedTime(seen, t2).TotalMicroseconds);
            }
            else
            {
                isoExit.Add(Stopwatch.GetElapsedTime(t1, t2).TotalMicroseconds);
            }
        }
        Console.WriteLine();
        Console.WriteLine("Phases of user+pid+mount+proc (medians, µs):");
        Console.WriteLine();
        Console.WriteLine("| Phase | Isolation | C floor |");
        Console.WriteLine("|---|---:|---:|");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| start: clone → exec seen (Start() returns) | {Percentile(isoStart, 0.5):F0} | {Percentile(floorStart, 0.5):F0} |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| exit: exec → waiter sees the exit | {Percentile(isoExit, 0.5):F0} | {Percentile(floorExit, 0.5):F0} |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| exit, seen by the calling thread polling its own pidfd (what a waiter that reaps itself would see) | {Percentile(isoSeen, 0.5):F0} | – |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| then until WaitForExit() returns (exit watcher's reap and hand-off; mean, p90) | {watcherLag.Average():F0}, {Percentile(watcherLag, 0.9):F0} | – |"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| Dispose() | {Percentile(isoDispose, 0.5):F0} | – |"));
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "syscall")]
    private static extern int PidfdOpen(long number, int pid, uint flags);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "poll")]
    private static extern unsafe int Poll(long* fds, nuint count, int timeout);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "close")]
    private static extern int Close(int fd);

    /// <summary>
    /// Blocks the calling thread until <paramref name="pid"/> has exited, on a pidfd of its own (pidfd_open(2),
    /// poll(2)), and returns the timestamp. Already reaped by the exit watcher: returns at once.
    /// </summary>
    private static unsafe long WaitOnOwnPidfd(int pid)
    {
        const long SYS_pidfd_open = 434;
        int fd = PidfdOpen(SYS_pidfd_open, pid, 0);
        if (fd >= 0)
        {
            long pollfd = (long)(uint)fd | (1L /* POLLIN */ << 32); // struct pollfd { int fd; short events; short revents; }
            Poll(&pollfd, 1, -1);
            long seen = Stopwatch.GetTimestamp();
            Close(fd);
            return seen;
        }
        return Stopwatch.GetTimestamp();
    }

    internal static void Target(string name, double ratio, double goal) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {ratio:F2} | ≤ {goal:F2} | {(ratio <= goal ? "yes" : "no")} |"));

    internal static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        return sorted[(int)Math.Clamp(Math.Round(p * (sorted.Length - 1)), 0, sorted.Length - 1)];
    }
}
