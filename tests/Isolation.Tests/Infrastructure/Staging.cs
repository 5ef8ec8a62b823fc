using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace Isolation.Tests.Infrastructure;

/// <summary>
/// The repository's build outputs where users other than root can run them. Tests that drop to uid 65534
/// (setpriv) or start a sandbox whose program runs as a non-root host uid need every directory above the
/// program searchable by "others" (path_resolution(7)); a checkout under a mode-700 directory (root's home,
/// <c>mktemp -d</c>) is not, and the apphost then fails with "Failed to resolve full path of the current
/// executable". Such an output directory is copied once per test run into a fresh world-readable directory
/// under /tmp, which is removed when the test process exits. A reachable output directory is used as it is.
/// </summary>
public static partial class Staging
{
    // The Linux-only members are reached through OperatingSystem.IsLinux() guards, so callers need no annotation.
    private const string Prefix = "isolation-staged-";
    private const UnixFileMode Searchable = (UnixFileMode)0x1ED; // 0755
    private const UnixFileMode Readable = (UnixFileMode)0x1A4; // 0644

    private static readonly ConcurrentDictionary<string, Lazy<Result>> Staged = new(StringComparer.Ordinal);
    private static readonly Lazy<string?> RuntimeProblem = new(() => OperatingSystem.IsLinux() ? WhyRuntimeNotReachableByOthers() : null);
    private static readonly Lazy<Result> Root = new(() => OperatingSystem.IsLinux() ? CreateRunRoot() : new Result(null, "staging uses Linux file modes"));
    private static int s_count;

    private sealed record Result(string? Path, string? Failure);

    /// <summary>
    /// <paramref name="directory"/> (a build output directory) as any user reaches it: itself, or its staged
    /// copy. Skips the calling test, saying why, when neither is possible.
    /// </summary>
    public static string DirectoryForAnyUser(string directory)
    {
        Result result = Staged.GetOrAdd(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory)),
            d => new(() => OperatingSystem.IsLinux() ? Stage(d) : new Result(null, "staging uses Linux file modes"))).Value;
        Assert.SkipWhen(result.Failure is not null, $"cannot give users other than root a path to the build output {directory}: {result.Failure}");
        // The outputs are apphosts: they start the runtime this process runs on (DOTNET_ROOT, else /usr/share/dotnet).
        Assert.SkipWhen(RuntimeProblem.Value is not null, $"users other than root cannot start the .NET runtime: {RuntimeProblem.Value}");
        return result.Path!;
    }

    /// <summary><paramref name="program"/> as any user reaches it: its whole directory staged (libraries, native shim, isolation-init) when needed.</summary>
    public static string ProgramForAnyUser(string program) =>
        Path.Combine(DirectoryForAnyUser(Path.GetDirectoryName(program)!), Path.GetFileName(program));

    /// <summary>
    /// Why "others" (a uid that neither owns nor shares a group with the files) cannot run programs from
    /// <paramref name="directory"/>, or null when they can: every ancestor must be searchable (o+x), every
    /// directory in the tree listable (o+rx), every file readable (o+r) and every executable executable (o+x).
    /// Mode bits only; ACLs are not consulted.
    /// </summary>
    [SupportedOSPlatform("linux")]
    public static string? WhyNotReachableByOthers(string directory)
    {
        string real = RealPath(directory) ?? directory;
        for (string? ancestor = Path.GetDirectoryName(real); ancestor is not null; ancestor = Path.GetDirectoryName(ancestor))
        {
            if ((File.GetUnixFileMode(ancestor) & UnixFileMode.OtherExecute) == 0)
                return $"{ancestor} is not searchable by others (mode {Octal(File.GetUnixFileMode(ancestor))})";
        }
        foreach (string dir in System.IO.Directory.EnumerateDirectories(real, "*", SearchOption.AllDirectories).Prepend(real))
        {
            UnixFileMode mode = File.GetUnixFileMode(dir);
            if ((mode & (UnixFileMode.OtherRead | UnixFileMode.OtherExecute)) != (UnixFileMode.OtherRead | UnixFileMode.OtherExecute))
                return $"{dir} is not listable by others (mode {Octal(mode)})";
        }
        foreach (string file in System.IO.Directory.EnumerateFiles(real, "*", SearchOption.AllDirectories))
        {
            UnixFileMode mode = File.GetUnixFileMode(file);
            if ((mode & UnixFileMode.OtherRead) == 0 || (IsExecutable(mode) && (mode & UnixFileMode.OtherExecute) == 0))
                return $"{file} is not readable or executable by others (mode {Octal(mode)})";
        }
        return null;
    }

    /// <summary>
    /// Copies the tree <paramref name="source"/> to <paramref name="destination"/> (which must not exist):
    /// directories 0755, executables (any x bit) 0755, other files 0644, symbolic links followed.
    /// </summary>
    [SupportedOSPlatform("linux")]
    public static void CopyTree(string source, string destination)
    {
        System.IO.Directory.CreateDirectory(destination);
        File.SetUnixFileMode(destination, Searchable); // explicitly: CreateDirectory is subject to the umask
        foreach (string dir in System.IO.Directory.EnumerateDirectories(source))
            CopyTree(dir, Path.Combine(destination, Path.GetFileName(dir)));
        foreach (string file in System.IO.Directory.EnumerateFiles(source))
        {
            string target = Path.Combine(destination, Path.GetFileName(file));
            File.Copy(file, target);
            File.SetUnixFileMode(target, IsExecutable(File.GetUnixFileMode(file)) ? Searchable : Readable);
        }
    }

    [SupportedOSPlatform("linux")]
    private static Result Stage(string directory)
    {
        if (!System.IO.Directory.Exists(directory))
            return new(null, "it does not exist (build the solution first)");
        string? why = WhyNotReachableByOthers(directory);
        if (why is null)
            return new(directory, null);

        Result root = Root.Value;
        if (root.Failure is not null)
            return new(null, $"{why}, and staging a copy failed: {root.Failure}");
        // <run root>/<n>-<project>, e.g. 1-Isolation.TestHost for tests/Isolation.TestHost/bin/Release/net10.0.
        string copy = Path.Combine(root.Path!, $"{Interlocked.Increment(ref s_count)}-{ProjectName(directory)}");
        try
        {
            CopyTree(directory, copy);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return new(null, $"{why}, and copying it to {copy} failed: {e.Message}");
        }
        string? stillNot = WhyNotReachableByOthers(copy);
        if (stillNot is not null)
            return new(null, $"{why}, and its copy is not reachable either: {stillNot}");
        // access(2) refuses X_OK on a noexec mount even for root.
        string? notExecutable = System.IO.Directory.EnumerateFiles(copy, "*", SearchOption.AllDirectories)
            .FirstOrDefault(f => IsExecutable(File.GetUnixFileMode(f)) && access(f, X_OK) != 0);
        if (notExecutable is not null)
            return new(null, $"{why}, and its copy cannot be executed ({notExecutable}: is /tmp mounted noexec?)");
        return new(copy, null);
    }

    /// <summary>Why others cannot load the runtime this process runs on (hostfxr and the shared framework), or null.</summary>
    [SupportedOSPlatform("linux")]
    private static string? WhyRuntimeNotReachableByOthers()
    {
        string framework = Path.GetDirectoryName(typeof(object).Assembly.Location)!; // DOTNET_ROOT/shared/Microsoft.NETCore.App/VERSION
        string dotnetRoot = Path.GetFullPath(Path.Combine(framework, "../../.."));
        string hostfxr = Path.Combine(dotnetRoot, "host/fxr");
        return (System.IO.Directory.Exists(hostfxr) ? WhyNotReachableByOthers(hostfxr) : null) ?? WhyNotReachableByOthers(framework);
    }

    /// <summary>The per-run directory, /tmp/isolation-staged-PID-RANDOM (0755), removed when this process exits.</summary>
    [SupportedOSPlatform("linux")]
    private static Result CreateRunRoot()
    {
        RemoveLeftoversOfDeadRuns();
        string root = $"/tmp/{Prefix}{Environment.ProcessId}-{Guid.NewGuid():N}";
        // mkdir(2), not Directory.CreateDirectory: fail rather than reuse a directory someone else made in /tmp.
        if (mkdir(root, 0x1C0 /* 0700 until it is ours and complete */) != 0)
            return new(null, $"mkdir {root}: {Marshal.GetLastPInvokeErrorMessage()}");
        File.SetUnixFileMode(root, Searchable);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => DeleteQuietly(root);
        return new(root, null);
    }

    /// <summary>Staged copies of earlier runs that were killed before they could remove them (their pid is gone).</summary>
    private static void RemoveLeftoversOfDeadRuns()
    {
        foreach (string dir in System.IO.Directory.EnumerateDirectories("/tmp", Prefix + "*"))
        {
            string[] parts = Path.GetFileName(dir)[Prefix.Length..].Split('-');
            if (int.TryParse(parts[0], out int pid) && !System.IO.Directory.Exists($"/proc/{pid}"))
                DeleteQuietly(dir);
        }
    }

    private static void DeleteQuietly(string dir)
    {
        try
        {
            System.IO.Directory.Delete(dir, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Another run's, or already gone: nothing of ours to remove.
        }
    }

    /// <summary>The project a build output belongs to: the directory above "bin", else the last segment.</summary>
    private static string ProjectName(string directory)
    {
        string[] segments = directory.Split('/', StringSplitOptions.RemoveEmptyEntries);
        int bin = Array.LastIndexOf(segments, "bin");
        return bin > 0 ? segments[bin - 1] : segments[^1];
    }

    private static bool IsExecutable(UnixFileMode mode) =>
        (mode & (UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) != 0;

    private static string Octal(UnixFileMode mode) => Convert.ToString((int)mode, 8).PadLeft(4, '0');

    /// <summary>realpath(3): the path with every symbolic link resolved, or null when it cannot be resolved.</summary>
    private static string? RealPath(string path)
    {
        nint resolved = realpath(path, 0);
        if (resolved == 0)
            return null;
        try
        {
            return Marshal.PtrToStringUTF8(resolved);
        }
        finally
        {
            free(resolved);
        }
    }

    private const int X_OK = 1;

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)] private static partial int mkdir(string path, uint mode);
    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)] private static partial int access(string path, int mode);
    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)] private static partial nint realpath(string path, nint resolved);
    [LibraryImport("libc")] private static partial void free(nint pointer);
}
