using System.Runtime.InteropServices;

namespace Isolation.Tests.Infrastructure;

/// <summary>Probes of what this kernel and machine offer, for skipping with a reason (never passing silently).</summary>
public static class Host
{
    public static bool IsRoot => geteuid() == 0;

    public static bool HasTimeNamespace => File.Exists("/proc/self/ns/time");

    public static bool HasSetpriv => File.Exists("/usr/bin/setpriv") || File.Exists("/bin/setpriv");

    /// <summary>Whether an unprivileged user may create user namespaces here.</summary>
    public static bool UnprivilegedUserNamespaces =>
        ReadInt("/proc/sys/user/max_user_namespaces") > 0 && ReadInt("/proc/sys/kernel/unprivileged_userns_clone", 1) != 0;

    public static void RequireRoot() => Assert.SkipUnless(IsRoot, "needs root: the test creates namespaces without a user namespace or maps other users' ids");

    public static void RequireTimeNamespace() => Assert.SkipUnless(HasTimeNamespace, "the kernel has no time namespaces (CONFIG_TIME_NS, Linux 5.6+)");

    public static void RequireUnprivilegedRunner()
    {
        Assert.SkipUnless(IsRoot && HasSetpriv, "needs root and setpriv (util-linux) to drop to uid 65534");
        Assert.SkipUnless(UnprivilegedUserNamespaces, "unprivileged user namespaces are disabled on this host");
    }

    public static string Namespace(string name) => new FileInfo($"/proc/self/ns/{name}").LinkTarget!;

    /// <summary>The open descriptors of this process.</summary>
    public static int[] OpenFds() =>
        System.IO.Directory.GetFiles("/proc/self/fd").Select(f => int.Parse(Path.GetFileName(f))).Order().ToArray();

    /// <summary>
    /// Live descendants of this process: children, grandchildren and so on. Sandboxes need not be direct
    /// children: the library may start them from a spawn helper, so they can sit any depth below us.
    /// </summary>
    public static int[] Descendants() => Descendants(Environment.ProcessId);

    /// <summary>
    /// What a start left behind: live descendants of this process other than the library's spawn helpers (they
    /// live as long as the process, by design), their own children included.
    /// </summary>
    public static int[] Leftovers() =>
        [.. Descendants().Where(pid => !IsSpawnHelper(pid))];

    /// <summary>Whether <paramref name="pid"/> is a spawn helper (comm keeps 15 bytes of "isolation-helper").</summary>
    public static bool IsSpawnHelper(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/comm").Trim() == "isolation-helpe";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>
    /// Whether this process's descriptor <paramref name="fd"/> is a pidfd of a spawn helper: the library keeps one
    /// per helper for as long as the helper lives, and a start may add a helper to the pool at any time.
    /// </summary>
    public static bool IsSpawnHelperPidfd(string fd)
    {
        try
        {
            string? pidLine = File.ReadLines($"/proc/self/fdinfo/{fd}").FirstOrDefault(l => l.StartsWith("Pid:", StringComparison.Ordinal));
            return pidLine is not null && int.TryParse(pidLine.AsSpan(4).Trim(), out int pid) && pid > 0 && IsSpawnHelper(pid);
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>Live descendants of <paramref name="pid"/>, breadth first, from /proc/PID/task/*/children (any thread's children).</summary>
    public static int[] Descendants(int pid)
    {
        var found = new List<int>();
        var pending = new Queue<int>([pid]);
        while (pending.TryDequeue(out int parent))
        {
            foreach (int child in Children(parent))
            {
                found.Add(child);
                pending.Enqueue(child);
            }
        }
        return found.ToArray();
    }

    /// <summary>The children of <paramref name="pid"/>; none once it has exited (the /proc files vanish while we read them).</summary>
    private static IEnumerable<int> Children(int pid)
    {
        try
        {
            return System.IO.Directory.GetDirectories($"/proc/{pid}/task")
                .SelectMany(t => File.ReadAllText(Path.Combine(t, "children")).Split(' ', StringSplitOptions.RemoveEmptyEntries))
                .Select(int.Parse).ToArray();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    private static int ReadInt(string path, int fallback = 0) =>
        File.Exists(path) && int.TryParse(File.ReadAllText(path).Trim(), out int v) ? v : fallback;

    [DllImport("libc")] private static extern uint geteuid();
}

/// <summary>A 0600 file of host root's in a 0755 root-owned directory: what a sandbox must not read, nor write beside.</summary>
public sealed class RootSecret : IDisposable
{
    public RootSecret()
    {
        if (!OperatingSystem.IsLinux())
            throw new PlatformNotSupportedException();
        Directory = TempLeftovers.Track(System.IO.Directory.CreateTempSubdirectory("iso-secret-").FullName);
        Path = System.IO.Path.Combine(Directory, "secret");
        File.WriteAllText(Path, "root only\n");
        File.SetUnixFileMode(Path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.SetUnixFileMode(Directory, (UnixFileMode)0x1ED);
    }

    public string Directory { get; }

    public string Path { get; }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
}
