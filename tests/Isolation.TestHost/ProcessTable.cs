using System.Runtime.InteropServices;

namespace Isolation.TestHost;

/// <summary>One process as /proc shows it. <see cref="StartTime"/> (clock ticks after boot) tells a reused pid apart.</summary>
public sealed record ProcessEntry(int Pid, int ParentPid, char State, ulong StartTime, string CommandLine, string Executable)
{
    public override string ToString() => $"pid {Pid} (parent {ParentPid}, state {State}, exe {Executable}): {CommandLine}";
}

/// <summary>
/// Reads the machine's processes from /proc, for the host-fault scenarios (HostFaults.cs) and the tests that
/// check what a killed host left behind. Sandboxes are found by what the kernel says, never by what a
/// process printed: a marker in argv (<c>WithArgv0</c>) or parentage.
/// </summary>
public static partial class ProcessTable
{
    /// <summary>Every process of this PID namespace that could be read (ones that exit while we read are left out).</summary>
    public static List<ProcessEntry> Snapshot() => [.. Pids().Select(Read).OfType<ProcessEntry>()];

    /// <summary>The process <paramref name="pid"/>, or null when there is none.</summary>
    public static ProcessEntry? Read(int pid)
    {
        try
        {
            if (ReadStat(pid) is not { } stat)
                return null;
            string commandLine = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ').TrimEnd();
            string executable;
            try { executable = new FileInfo($"/proc/{pid}/exe").LinkTarget ?? "?"; }
            catch (IOException) { executable = "?"; }
            catch (UnauthorizedAccessException) { executable = "?"; }
            return new ProcessEntry(pid, stat.ParentPid, stat.State, stat.StartTime, commandLine, executable);
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>The children of <paramref name="pid"/>, their children, and so on (parentage read in one pass over /proc).</summary>
    public static List<ProcessEntry> Descendants(int pid)
    {
        ILookup<int, int> byParent = Pids().Select(p => (Pid: p, Stat: ReadStat(p))).Where(p => p.Stat is not null)
            .ToLookup(p => p.Stat!.Value.ParentPid, p => p.Pid);
        var result = new List<ProcessEntry>();
        var pending = new Queue<int>([pid]);
        while (pending.TryDequeue(out int parent))
        {
            foreach (int child in byParent[parent])
            {
                if (Read(child) is { } entry)
                    result.Add(entry);
                pending.Enqueue(child);
            }
        }
        return result;
    }

    private static IEnumerable<int> Pids()
    {
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(dir), out int pid))
                yield return pid;
        }
    }

    private static (int ParentPid, char State, ulong StartTime)? ReadStat(int pid)
    {
        string stat;
        try { stat = File.ReadAllText($"/proc/{pid}/stat"); }
        catch (IOException) { return null; }
        // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        // Fields after comm start at field 3 of proc(5): state (3), ppid (4), ..., starttime (22).
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (int.Parse(fields[1]), fields[0][0], ulong.Parse(fields[19]));
    }

    /// <summary>Live (not zombie) processes whose argv contains <paramref name="marker"/>, except <paramref name="except"/>.</summary>
    public static List<ProcessEntry> WithMarker(string marker, params int[] except) =>
        Snapshot().Where(e => e.State != 'Z' && !except.Contains(e.Pid) && e.CommandLine.Contains(marker, StringComparison.Ordinal)).ToList();

    /// <summary>Whether this very process (same pid and start time) still runs; a zombie has finished running.</summary>
    public static bool IsAlive(ProcessEntry entry) =>
        Read(entry.Pid) is { } now && now.StartTime == entry.StartTime && now.State != 'Z';

    /// <summary>Sends SIGKILL to this very process if it still runs (checked by start time, so a reused pid is spared).</summary>
    public static void Kill(ProcessEntry entry)
    {
        if (IsAlive(entry))
            kill(entry.Pid, 9);
    }

    [LibraryImport("libc")] private static partial int kill(int pid, int signal);
}
