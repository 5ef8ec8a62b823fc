using System.Diagnostics;

namespace Isolation.Tests.Infrastructure;

/// <summary>
/// A sleeping process in namespaces of its own, made by util-linux <c>unshare ... --fork --kill-child sleep</c>, as root
/// or as uid 65534 (through setpriv): what a test joins. Disposing kills it and waits until it is gone.
/// </summary>
public sealed class NamespaceHolder : IDisposable
{
    private readonly Process _unshare;

    private NamespaceHolder(Process unshare, int pid)
    {
        _unshare = unshare;
        Pid = pid;
    }

    /// <summary>The sleeping process whose namespaces are joined.</summary>
    public int Pid { get; }

    /// <summary>Starts <c>unshare FLAGS --fork --kill-child sleep 600</c>, as uid/gid 65534 when <paramref name="asNobody"/>.</summary>
    public static NamespaceHolder Start(bool asNobody, params string[] unshareFlags) =>
        Start(asNobody ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] : [], unshareFlags);

    /// <summary>As root, starts the holder inside <paramref name="outer"/>'s user namespace (nsenter): its new user namespace is nested in that one.</summary>
    public static NamespaceHolder StartInUserNamespaceOf(NamespaceHolder outer, params string[] unshareFlags) =>
        Start(["nsenter", "--user", $"--target={outer.Pid}", "--"], unshareFlags);

    private static NamespaceHolder Start(string[] prefix, string[] unshareFlags)
    {
        string[] args = [.. prefix, "unshare", .. unshareFlags, "--fork", "--kill-child", "sleep", "600"];
        var info = new ProcessStartInfo(args[0]) { UseShellExecute = false, RedirectStandardError = true };
        args = args[1..];
        foreach (string a in args)
            info.ArgumentList.Add(a);
        Process unshare = Process.Start(info)!;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            foreach (int pid in Host.Descendants(unshare.Id))
            {
                if (Comm(pid) == "sleep")
                    return new NamespaceHolder(unshare, pid);
            }
            if (unshare.HasExited)
                throw new InvalidOperationException($"unshare {string.Join(' ', unshareFlags)} exited {unshare.ExitCode}: {unshare.StandardError.ReadToEnd()}");
            Thread.Sleep(10);
        }
        unshare.Kill(entireProcessTree: true);
        throw new TimeoutException("the namespace holder did not start sleeping");
    }

    /// <summary>/proc/PID/ns/NAME of the holder.</summary>
    public string Path(string name) => $"/proc/{Pid}/ns/{name}";

    /// <summary>The holder's namespace of that name, as its /proc/PID/ns link reads ("net:[4026...]").</summary>
    public string Namespace(string name) => new FileInfo(Path(name)).LinkTarget!;

    /// <summary>Kills the holder (unshare, and its sleep through --kill-child) and waits until the sleep is gone.</summary>
    public void Kill()
    {
        if (!_unshare.HasExited)
        {
            _unshare.Kill();
            _unshare.WaitForExit();
        }
        var clock = Stopwatch.StartNew();
        while (Comm(Pid) == "sleep" && clock.Elapsed < TimeSpan.FromSeconds(10))
            Thread.Sleep(10);
    }

    public void Dispose()
    {
        Kill();
        _unshare.Dispose();
    }

    private static string? Comm(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.IndexOf('(') + 1)..stat.LastIndexOf(')')] is var comm && stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z') ? null : comm;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
