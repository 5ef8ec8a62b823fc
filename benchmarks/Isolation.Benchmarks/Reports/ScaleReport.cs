using System.Diagnostics;
using System.Globalization;
using Isolation.Benchmarks.Infrastructure;

namespace Isolation.Benchmarks.Reports;

/// <summary>
/// <c>--scale-report</c>: memory per idle sandbox. Starts N sandboxes (see <see cref="Fleet"/>), then reads
/// the processes' proportional set size (PSS: shared pages, such as the init's memfd text, divided among
/// their users) from /proc/PID/smaps_rollup, their page tables from /proc/PID/status, and the kernel's
/// memory from /proc/meminfo (Slab, KernelStack, PageTables before and after). meminfo is system-wide: on a shared
/// machine other processes add noise, which the per-process columns do not have.
/// </summary>
internal static class ScaleReport
{
    public static void Run(IReadOnlyList<int> counts)
    {
        Console.WriteLine();
        Console.WriteLine("## Sandboxes alive at once (user+pid+mount+/proc, isolation-init as PID 1, idle static payload)");
        Console.WriteLine();
        Console.WriteLine("| N | start all | per start | tear down all | per sandbox: PSS init+payload (RSS) | page tables | kernel (Slab+KernelStack+PageTables, meminfo Δ) | MemAvailable Δ |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (int n in counts)
            One(n);
        Console.WriteLine();
    }

    private static void One(int n)
    {
        var fleet = new Fleet();
        fleet.StartAll(2); // warm: JIT, init memfd, exit watcher
        fleet.TearDownAll();
        Settle();
        Dictionary<string, long> before = MemInfo();

        var sw = Stopwatch.StartNew();
        fleet.StartAll(n);
        TimeSpan start = sw.Elapsed;
        Thread.Sleep(500); // let the payloads reach pause()
        Dictionary<string, long> after = MemInfo();

        long pssKb = 0, rssKb = 0, pteKb = 0, processes = 0;
        foreach (IsolatedProcess p in fleet.Alive)
        {
            foreach (int pid in Tree(p.Id))
            {
                (long rss, long pte) = Status(pid);
                pssKb += Pss(pid);
                rssKb += rss;
                pteKb += pte;
                processes++;
            }
        }

        sw.Restart();
        fleet.TearDownAll();
        TimeSpan teardown = sw.Elapsed;

        long kernelKb = Delta(before, after, "Slab") + Delta(before, after, "KernelStack") + Delta(before, after, "PageTables");
        long availableKb = -Delta(before, after, "MemAvailable");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {n} | {start.TotalMilliseconds:F0} ms | {start.TotalMicroseconds / n:F0} µs | {teardown.TotalMilliseconds:F0} ms | " +
            $"{(double)pssKb / n:F0} KiB ({(double)rssKb / n:F0} KiB), {processes / (double)n:F1} processes | {(double)pteKb / n:F0} KiB | {(double)kernelKb / n:F0} KiB | {(double)availableKb / n:F0} KiB |"));
    }

    private static void Settle()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Thread.Sleep(500);
    }

    /// <summary>The sandbox's init and its children (the payload).</summary>
    private static IEnumerable<int> Tree(int pid)
    {
        yield return pid;
        string children = $"/proc/{pid}/task/{pid}/children";
        string text;
        try
        {
            text = File.ReadAllText(children);
        }
        catch (IOException)
        {
            yield break;
        }
        foreach (string child in text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            yield return int.Parse(child, CultureInfo.InvariantCulture);
    }

    private static (long RssKb, long PteKb) Status(int pid)
    {
        long rss = 0, pte = 0;
        try
        {
            foreach (string line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    rss = Kb(line);
                else if (line.StartsWith("VmPTE:", StringComparison.Ordinal))
                    pte = Kb(line);
            }
        }
        catch (IOException)
        {
        }
        return (rss, pte);
    }

    private static long Pss(int pid)
    {
        try
        {
            foreach (string line in File.ReadLines($"/proc/{pid}/smaps_rollup"))
            {
                if (line.StartsWith("Pss:", StringComparison.Ordinal))
                    return Kb(line);
            }
        }
        catch (IOException)
        {
        }
        return 0;
    }

    private static Dictionary<string, long> MemInfo()
    {
        var values = new Dictionary<string, long>();
        foreach (string line in File.ReadLines("/proc/meminfo"))
        {
            int colon = line.IndexOf(':');
            values[line[..colon]] = Kb(line);
        }
        return values;
    }

    private static long Kb(string line) =>
        long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);

    private static long Delta(Dictionary<string, long> before, Dictionary<string, long> after, string key) =>
        after.GetValueOrDefault(key) - before.GetValueOrDefault(key);
}
