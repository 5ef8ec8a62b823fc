using System.Diagnostics;
using System.IO.Compression;

namespace Isolation.Tests.Infrastructure;

/// <summary>
/// The Isolation package packed once from this checkout (dotnet pack -c Release, as a release would be) into a
/// temporary local feed, for the tests that open it and the one that consumes it. Removed afterwards.
/// </summary>
public sealed class PackedPackage : IDisposable
{
    /// <summary>A version no public feed has, unique to this run, so no cache can hold an older copy of it.</summary>
    public string Version { get; } = $"0.0.0-test.{Guid.NewGuid():N}"[..24];

    public string Work { get; } = Directory.CreateTempSubdirectory("isolation-package-").FullName;

    public string Feed => Path.Combine(Work, "feed");

    public string Nupkg => Path.Combine(Feed, $"Isolation.{Version}.nupkg");

    public string Snupkg => Path.Combine(Feed, $"Isolation.{Version}.snupkg");

    /// <summary>The commit the package was packed from (git rev-parse HEAD).</summary>
    public string Commit { get; }

    /// <summary>The repository url in the package: the checkout's origin remote, or one given to pack when it has none.</summary>
    public string RepositoryUrl { get; }

    public PackedPackage()
    {
        string root = TestHostRunner.RepoRoot;
        Commit = Run("git", ["-C", root, "rev-parse", "HEAD"], root).Trim();
        string origin = TryRun("git", ["-C", root, "remote", "get-url", "origin"], root)?.Trim() ?? "";
        List<string> args = ["pack", Path.Combine(root, "src/Isolation/Isolation.csproj"), "-c", "Release", "-o", Feed, $"-p:Version={Version}", "--nologo"];
        if (origin.Length == 0 || origin.StartsWith('/') || origin.StartsWith('.') || origin.StartsWith("file:", StringComparison.Ordinal))
        {
            // SourceLink takes the url from the origin remote; a checkout without one, or cloned from a local path
            // (as CI clones), gets it from the property.
            origin = "https://example.invalid/isolation.git";
            args.Add($"-p:RepositoryUrl={origin}");
        }
        RepositoryUrl = origin;
        Run("dotnet", [.. args], root);
        args[1] = Path.Combine(root, "src/Isolation.Extensions.Hosting/Isolation.Extensions.Hosting.csproj");
        Run("dotnet", [.. args], root);
    }

    public string HostingNupkg => Path.Combine(Feed, $"Isolation.Extensions.Hosting.{Version}.nupkg");

    public ZipArchive OpenNupkg() => ZipFile.OpenRead(Nupkg);

    public ZipArchive OpenSnupkg() => ZipFile.OpenRead(Snupkg);

    public static byte[] ReadEntry(ZipArchive zip, string name)
    {
        ZipArchiveEntry entry = zip.GetEntry(name) ?? throw new Xunit.Sdk.XunitException($"the package has no {name}; it has {string.Join(", ", zip.Entries.Select(e => e.FullName))}");
        using var memory = new MemoryStream();
        using (Stream s = entry.Open())
            s.CopyTo(memory);
        return memory.ToArray();
    }

    public void Dispose() => Directory.Delete(Work, recursive: true);

    public static string Run(string program, IEnumerable<string> args, string cwd, IDictionary<string, string>? environment = null)
    {
        var (code, stdout, stderr) = RunProcess(program, args, cwd, environment);
        return code == 0 ? stdout : throw new Xunit.Sdk.XunitException($"{program} {string.Join(' ', args)} failed ({code}):\n{stdout}\n{stderr}");
    }

    private static string? TryRun(string program, IEnumerable<string> args, string cwd) =>
        RunProcess(program, args, cwd, null) is (0, string stdout, _) ? stdout : null;

    /// <summary>Runs a program to its end: exit code, stdout and stderr.</summary>
    public static (int ExitCode, string Stdout, string Stderr) RunProcess(string program, IEnumerable<string> args, string cwd, IDictionary<string, string>? environment)
    {
        var info = new ProcessStartInfo(program) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
            info.ArgumentList.Add(a);
        foreach (var (k, v) in environment ?? new Dictionary<string, string>())
            info.Environment[k] = v;
        using Process p = Process.Start(info)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout, stderr.Result);
    }
}
