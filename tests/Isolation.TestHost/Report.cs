using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Isolation.TestHost;

/// <summary>What a process sees of its sandbox, as JSON on stdout. Every field is read from the kernel.</summary>
internal static partial class Report
{
    public static int Run(string[] args)
    {
        var report = new EnvironmentReport
        {
            Pid = Environment.ProcessId,
            ParentPid = ReadStatusField("PPid") is { } ppid ? int.Parse(ppid) : -1,
            Uid = (int)getuid(),
            Gid = (int)getgid(),
            Euid = (int)geteuid(),
            Hostname = File.ReadAllText("/proc/sys/kernel/hostname").Trim(),
            DomainName = File.ReadAllText("/proc/sys/kernel/domainname").Trim(),
            Cwd = Environment.CurrentDirectory,
            Namespaces = ReadNamespaces(),
            UidMap = TryRead("/proc/self/uid_map"),
            GidMap = TryRead("/proc/self/gid_map"),
            Setgroups = TryRead("/proc/self/setgroups")?.Trim(),
            Groups = ReadStatusField("Groups") ?? "",
            CapEff = ReadStatusField("CapEff") ?? "",
            CapBnd = ReadStatusField("CapBnd") ?? "",
            CapPrm = ReadStatusField("CapPrm") ?? "",
            CapInh = ReadStatusField("CapInh") ?? "",
            CapAmb = ReadStatusField("CapAmb") ?? "",
            NoNewPrivs = ReadStatusField("NoNewPrivs") ?? "",
            Seccomp = ReadStatusField("Seccomp") ?? "",
            Cgroup = TryRead("/proc/self/cgroup") ?? "",
            MountInfo = TryRead("/proc/self/mountinfo") ?? "",
            NetworkInterfaces = ReadInterfaces(),
            Environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
                .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? ""),
            OpenFds = Directory.Exists("/proc/self/fd") ? Directory.GetFiles("/proc/self/fd").Select(f => int.Parse(Path.GetFileName(f))).Order().ToArray() : [],
            MonotonicSeconds = ClockSeconds(1),
            BoottimeSeconds = ClockSeconds(7),
            VisiblePids = Directory.Exists("/proc") ? Directory.GetDirectories("/proc").Select(Path.GetFileName).Where(n => n!.All(char.IsAsciiDigit)).Count() : -1,
            Sid = getsid(0),
            Args = args,
        };
        Console.Out.Write(JsonSerializer.Serialize(report, ReportJson.Default.EnvironmentReport));
        Console.Out.Flush();
        return 0;
    }

    private static Dictionary<string, string> ReadNamespaces()
    {
        var result = new Dictionary<string, string>();
        foreach (string name in new[] { "user", "pid", "mnt", "net", "ipc", "uts", "cgroup", "time" })
        {
            try { result[name] = new FileInfo($"/proc/self/ns/{name}").LinkTarget ?? ""; }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return result;
    }

    private static string[] ReadInterfaces()
    {
        string? dev = TryRead("/proc/net/dev");
        if (dev is null)
            return [];
        return dev.Split('\n').Skip(2).Where(l => l.Contains(':')).Select(l => l.Split(':')[0].Trim()).ToArray();
    }

    private static string? ReadStatusField(string name)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(name + ":", StringComparison.Ordinal))
                return line[(name.Length + 1)..].Trim();
        }
        return null;
    }

    private static string? TryRead(string path)
    {
        try { return File.ReadAllText(path); }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    private static unsafe double ClockSeconds(int clock)
    {
        long* ts = stackalloc long[2];
        return clock_gettime(clock, ts) == 0 ? ts[0] + ts[1] / 1e9 : -1;
    }

    [DllImport("libc")] private static extern uint getuid();
    [DllImport("libc")] private static extern uint getgid();
    [DllImport("libc")] private static extern uint geteuid();
    [DllImport("libc")] private static extern int getsid(int pid);
    [DllImport("libc")] private static extern unsafe int clock_gettime(int clock, long* ts);
}

/// <summary>The JSON a report prints; the tests deserialize the same type.</summary>
public sealed class EnvironmentReport
{
    public int Pid { get; set; }
    public int ParentPid { get; set; }
    public int Uid { get; set; }
    public int Gid { get; set; }
    public int Euid { get; set; }
    public string Hostname { get; set; } = "";
    public string DomainName { get; set; } = "";
    public string Cwd { get; set; } = "";
    public Dictionary<string, string> Namespaces { get; set; } = [];
    public string? UidMap { get; set; }
    public string? GidMap { get; set; }
    public string? Setgroups { get; set; }
    public string Groups { get; set; } = "";
    public string CapEff { get; set; } = "";
    public string CapBnd { get; set; } = "";
    public string CapPrm { get; set; } = "";
    public string CapInh { get; set; } = "";
    public string CapAmb { get; set; } = "";
    public string NoNewPrivs { get; set; } = "";
    public string Seccomp { get; set; } = "";
    public string Cgroup { get; set; } = "";
    public string MountInfo { get; set; } = "";
    public string[] NetworkInterfaces { get; set; } = [];
    public Dictionary<string, string> Environment { get; set; } = [];
    public int[] OpenFds { get; set; } = [];
    public double MonotonicSeconds { get; set; }
    public double BoottimeSeconds { get; set; }
    public int VisiblePids { get; set; }
    public int Sid { get; set; }
    public string[] Args { get; set; } = [];
}

[JsonSerializable(typeof(EnvironmentReport))]
[JsonSerializable(typeof(SpawnOutcome))]
public sealed partial class ReportJson : JsonSerializerContext;
