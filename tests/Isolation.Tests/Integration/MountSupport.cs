using System.Diagnostics;
using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>A small root file system built from busybox-static in a temp directory; removed on dispose.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class BusyboxRoot : IDisposable
{
    public const string Busybox = "/bin/busybox";

    private static readonly string[] Applets =
        ["sh", "cat", "ls", "echo", "stat", "readlink", "id", "hostname", "touch", "mkdir", "test", "grep", "head", "wc", "rm", "true", "ln", "mount"];

    public BusyboxRoot()
    {
        Assert.SkipUnless(System.IO.File.Exists(Busybox), "needs /bin/busybox (Debian's busybox-static) to build a root file system");
        Path = NewTempDirectory("isolation-rootfs-");
        Directory.CreateDirectory(System.IO.Path.Combine(Path, "bin"));
        foreach (string dir in (string[])["etc", "proc", "dev", "tmp", "sys"])
            Directory.CreateDirectory(System.IO.Path.Combine(Path, dir));
        System.IO.File.Copy(Busybox, System.IO.Path.Combine(Path, "bin/busybox"));
        System.IO.File.SetUnixFileMode(System.IO.Path.Combine(Path, "bin/busybox"), (UnixFileMode)0x1ED);
        foreach (string applet in Applets)
            System.IO.File.CreateSymbolicLink(System.IO.Path.Combine(Path, "bin", applet), "busybox");
        System.IO.File.WriteAllText(System.IO.Path.Combine(Path, "etc/os-release"), "NAME=busybox-test\n");
    }

    public string Path { get; }

    /// <summary>A host path of something inside the root.</summary>
    public string this[string inside] => Path + inside;

    /// <summary>A world-readable temp directory (the unprivileged tests run as uid 65534).</summary>
    public static string NewTempDirectory(string prefix)
    {
        string path = TempLeftovers.Track(Directory.CreateTempSubdirectory(prefix).FullName);
        System.IO.File.SetUnixFileMode(path, (UnixFileMode)0x1ED);
        return path;
    }

    /// <summary>chown -hR the whole tree (the tests run as root).</summary>
    public void ChownTo(int uid)
    {
        using var chown = Process.Start("chown", ["-hR", $"{uid}:{uid}", Path]);
        chown.WaitForExit();
        Assert.Equal(0, chown.ExitCode);
    }

    public void Dispose() => DeleteTree(Path);

    /// <summary>Deletes a tree without following symlinks out of it (our test roots hold hostile ones).</summary>
    public static void DeleteTree(string path)
    {
        if (!Directory.Exists(path))
            return;
        foreach (string entry in Directory.EnumerateFileSystemEntries(path))
        {
            var info = new FileInfo(entry);
            if (info.LinkTarget is null && Directory.Exists(entry))
                DeleteTree(entry);
            else
                System.IO.File.Delete(entry);
        }
        Directory.Delete(path);
    }
}

/// <summary>Runs shell scripts in sandboxes and checks that nothing is left behind on the host.</summary>
public static class MountRun
{
    public static readonly NamespaceBuilder Rootless = new NamespaceBuilder()
        .WithNamespaces(Namespaces.User | Namespaces.Mount | Namespaces.Pid)
        .MapCurrentUserToRoot();

    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public string[] Lines => Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <summary>Runs <c>/bin/sh -c script</c> in the sandbox (inside its root, when it has one).</summary>
    public static async Task<Result> ShAsync(NamespaceBuilder builder, string script)
    {
        IsolationSpec spec = builder.WithStandardOutput(Stdio.Pipe).WithStandardError(Stdio.Pipe).Build();
        await using IsolatedProcess p = spec.Start("/bin/sh", ["-c", script]);
        Task<string> stdout = new StreamReader(p.StandardOutput!).ReadToEndAsync();
        Task<string> stderr = new StreamReader(p.StandardError!).ReadToEndAsync();
        ExitStatus status = await p.WaitForExitAsync();
        return new Result(status.ExitCode, await stdout, await stderr);
    }

    /// <summary>The host's mount table (this process's namespace), without the per-line ids that churn.</summary>
    public static string[] HostMounts() =>
        System.IO.File.ReadAllLines("/proc/self/mountinfo").Select(l => string.Join(' ', l.Split(' ').Skip(4))).Order().ToArray();

    /// <summary>The mountinfo line for a mount point inside a sandbox's report.</summary>
    public static string? MountLine(string mountinfo, string mountPoint) =>
        mountinfo.Split('\n').LastOrDefault(l => l.Split(' ') is { Length: > 5 } f && f[4] == mountPoint);

    /// <summary>Whether the mount's per-mount options (field 6) include <paramref name="option"/>.</summary>
    public static bool HasOption(string? line, string option) =>
        line is not null && line.Split(' ')[5].Split(',').Contains(option);
}
