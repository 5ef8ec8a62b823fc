using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Isolation.Tests.Infrastructure;

[assembly: AssemblyFixture(typeof(TempLeftovers))]

namespace Isolation.Tests.Infrastructure;

/// <summary>
/// The test run's guard on the temp directory (/tmp): when the run ends, nothing our tests made is left there.
/// </summary>
/// <remarks>
/// <para>Two kinds of names are ours, and only those are checked, so other programs' files never fail the run:</para>
/// <para>- the directories tests make through <see cref="Track"/> (<see cref="Integration.TempDirectory"/>,
/// <see cref="Integration.BusyboxRoot.NewTempDirectory"/>, <see cref="RootSecret"/>): each must be gone;</para>
/// <para>- the .NET runtime's debugger pipes and diagnostics socket (<c>clr-debug-pipe-PID-KEY-in/out</c>,
/// <c>dotnet-diagnostic-PID-KEY-socket</c>; PID as the process sees itself, KEY its start time) made by a process
/// descended from this one (a test host, <c>isolate</c>, a .NET program inside a sandbox), seen as they are
/// created. A .NET process removes them when it exits normally; one that is killed, or that replaces itself
/// with execve (the JIT <c>isolate</c> re-executes itself with diagnostics off, and its first runtime's pipes
/// stay), cannot. So the guard removes them once their process has gone, and fails the run for those whose
/// process is still running (a process a test left behind).</para>
/// </remarks>
public sealed partial class TempLeftovers : IDisposable
{
    private static readonly ConcurrentDictionary<string, byte> s_tracked = new();

    private readonly string _temp = Path.GetTempPath();
    private readonly FileSystemWatcher _watcher;
    private readonly ConcurrentDictionary<string, Creator> _dotnet = new();
    private int _overflows;

    public TempLeftovers()
    {
        _watcher = new FileSystemWatcher(_temp)
        {
            IncludeSubdirectories = false,
            NotifyFilter = NotifyFilters.FileName,
            InternalBufferSize = 64 * 1024,
        };
        _watcher.Created += (_, e) => Seen(e.Name);
        _watcher.Error += (_, _) => Interlocked.Increment(ref _overflows);
        _watcher.EnableRaisingEvents = true;
    }

    /// <summary>A path a test made in the temp directory and removes itself: checked to be gone when the run ends.</summary>
    public static string Track(string path)
    {
        s_tracked.TryAdd(path, 0);
        return path;
    }

    public void Dispose()
    {
        _watcher.EnableRaisingEvents = false;
        _watcher.Dispose();
        RemoveGone();
        var left = new List<string>();
        foreach ((string id, Creator creator) in _dotnet.Where(d => FilesOf(d.Key).Any(File.Exists)))
            left.Add($"{string.Join(", ", FilesOf(id).Where(File.Exists).Select(Path.GetFileName))} (pid {creator.Pid} is still running: {creator.CommandLine})");
        foreach (string path in s_tracked.Keys.Where(p => Path.Exists(p)))
            left.Add($"{path} (made by a test, not removed)");
        if (left.Count > 0)
            throw new InvalidOperationException($"The test run left {left.Count} entries in {_temp}"
                + (_overflows > 0 ? $" (the watcher overflowed {_overflows} times: some may be missing)" : "") + ":\n  " + string.Join("\n  ", left));
    }

    /// <summary>
    /// Removes the runtime files of this run's .NET processes that have gone (they could not remove them: killed, or
    /// replaced by execve) and returns their ids (<c>PID-KEY</c>); those of running processes stay.
    /// </summary>
    internal IReadOnlyList<string> RemoveGone()
    {
        var removed = new List<string>();
        foreach ((string id, Creator creator) in _dotnet)
        {
            string[] files = FilesOf(id);
            if (!creator.IsRunning && files.Any(File.Exists))
            {
                foreach (string file in files)
                    File.Delete(file);
                removed.Add(id);
            }
        }
        return removed;
    }

    /// <summary>Whether the runtime <paramref name="id"/> (<c>PID-KEY</c>, as in its file names) is of a process of this run.</summary>
    internal bool IsOurs(string id) => _dotnet.ContainsKey(id);

    /// <summary>The debugger pipes and the diagnostics socket of runtime <paramref name="id"/>.</summary>
    internal string[] FilesOf(string id) =>
        [Path.Join(_temp, $"clr-debug-pipe-{id}-in"), Path.Join(_temp, $"clr-debug-pipe-{id}-out"), Path.Join(_temp, $"dotnet-diagnostic-{id}-socket")];

    [GeneratedRegex(@"^(?:clr-debug-pipe-(?<pid>\d+)-(?<key>\d+)-in|dotnet-diagnostic-(?<pid>\d+)-(?<key>\d+)-socket)$")]
    private static partial Regex RuntimeFile();

    /// <summary>On the watcher's thread, while the creating process still runs (it made the file at its start).</summary>
    private void Seen(string? name)
    {
        if (name is null || RuntimeFile().Match(name) is not { Success: true } m)
            return;
        string id = $"{m.Groups["pid"].Value}-{m.Groups["key"].Value}";
        if (!_dotnet.ContainsKey(id) && Creator.Find(int.Parse(m.Groups["pid"].Value), m.Groups["key"].Value) is { } creator)
            _dotnet.TryAdd(id, creator);
    }

    /// <summary>A process descended from this one, by host pid and start time (so a reused pid is not mistaken for it).</summary>
    private sealed record Creator(int Pid, string StartTime, string CommandLine)
    {
        public bool IsRunning => StartTimeOf(Pid) == StartTime;

        /// <summary>
        /// The descendant whose own pid (the last of NSpid: inside a PID namespace it is not the host's) is
        /// <paramref name="pid"/>, preferring the one whose start time is <paramref name="key"/> (the runtime reads
        /// /proc/PID/stat of its own pid, which in a sandbox sharing the host's /proc is another process's).
        /// </summary>
        public static Creator? Find(int pid, string key)
        {
            Creator? any = null;
            foreach (int candidate in Candidates(pid))
            {
                if (!IsDescendant(candidate) || StartTimeOf(candidate) is not { } start)
                    continue;
                var creator = new Creator(candidate, start, CommandLineOf(candidate));
                if (start == key)
                    return creator;
                any ??= creator;
            }
            return any;
        }

        private static IEnumerable<int> Candidates(int pid)
        {
            if (OwnPid(pid) == pid)
                yield return pid; // a process in the host's PID namespace: the usual case, no scan
            foreach (string dir in Directory.EnumerateDirectories("/proc"))
            {
                if (int.TryParse(Path.GetFileName(dir), out int p) && p != pid && OwnPid(p) == pid)
                    yield return p;
            }
        }

        /// <summary>The pid <paramref name="hostPid"/> has in its own PID namespace (the last NSpid field), or -1.</summary>
        private static int OwnPid(int hostPid)
        {
            string? line = StatusLine(hostPid, "NSpid:");
            return line is not null && int.TryParse(line.Split('\t', StringSplitOptions.RemoveEmptyEntries)[^1], out int own) ? own : -1;
        }

        private static bool IsDescendant(int pid)
        {
            int self = Environment.ProcessId;
            for (int p = pid, depth = 0; p > 1 && depth < 64; depth++)
            {
                if (p == self)
                    return true;
                string? line = StatusLine(p, "PPid:");
                if (line is null || !int.TryParse(line.Split('\t', StringSplitOptions.RemoveEmptyEntries)[^1], out p))
                    return false;
            }
            return false;
        }

        private static string? StatusLine(int pid, string prefix)
        {
            try
            {
                return File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return null;
            }
        }

        /// <summary>Field 22 of /proc/PID/stat (clock ticks after boot), as the runtime names its files; null when the process has gone.</summary>
        private static string? StartTimeOf(int pid)
        {
            try
            {
                string stat = File.ReadAllText($"/proc/{pid}/stat");
                return stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[19];
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return null;
            }
        }

        private static string CommandLineOf(int pid)
        {
            try
            {
                return File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ').Trim();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return "?";
            }
        }
    }
}
