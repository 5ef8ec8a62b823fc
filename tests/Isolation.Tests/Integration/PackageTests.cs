using System.IO.Compression;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Text;
using System.Xml.Linq;
using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>
/// The NuGet package as a user gets it, packed once from this checkout: its metadata and symbols, the native
/// assets of every runtime it carries, and a new project that restores it from a local feed and runs sandboxes.
/// </summary>
public sealed class PackageTests(PackedPackage package, ITestOutputHelper output) : IClassFixture<PackedPackage>
{
    private static readonly string[] Runtimes = ["linux-x64", "linux-arm64", "linux-musl-x64", "linux-musl-arm64"];
    private static readonly string[] NativeFiles = ["libIsolationNative.so", "isolation-helper", "isolation-init"];
    private static readonly XNamespace Nuspec = "http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd";

    [Fact]
    public void The_package_carries_a_consumer_readme_icon_tags_repository_and_release_notes()
    {
        using ZipArchive zip = package.OpenNupkg();
        XElement metadata = XDocument.Load(new MemoryStream(PackedPackage.ReadEntry(zip, "Isolation.nuspec"))).Root!.Element(Nuspec + "metadata")!;
        string Get(string name) => metadata.Element(Nuspec + name)?.Value ?? throw new Xunit.Sdk.XunitException($"the nuspec has no <{name}>");

        Assert.Equal("Isolation", Get("id"));
        Assert.Equal(package.Version, Get("version"));
        Assert.Equal("MIT", Get("license"));

        // The readme is PACKAGE.md, written for consumers: the one-liner first, not the repository's README.
        Assert.Equal("PACKAGE.md", Get("readme"));
        string readme = Encoding.UTF8.GetString(PackedPackage.ReadEntry(zip, "PACKAGE.md"));
        Assert.StartsWith("Run a program in its own Linux namespaces", readme);
        Assert.Equal(File.ReadAllText(Path.Combine(TestHostRunner.RepoRoot, "src/Isolation/PACKAGE.md")), readme);

        Assert.Equal("icon.png", Get("icon"));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, PackedPackage.ReadEntry(zip, "icon.png")[..4]);

        string[] tags = Get("tags").Split(' ');
        Assert.Contains("linux", tags);
        Assert.Contains("sandbox", tags);

        XElement repository = metadata.Element(Nuspec + "repository") ?? throw new Xunit.Sdk.XunitException("the nuspec has no <repository>");
        Assert.Equal("git", (string?)repository.Attribute("type"));
        Assert.Equal(package.Commit, (string?)repository.Attribute("commit"));
        Assert.Equal(package.RepositoryUrl, (string?)repository.Attribute("url"));

        // Release notes: CHANGELOG.md's section for this version, or [Unreleased] before a release.
        string notes = Get("releaseNotes");
        string changelog = File.ReadAllText(Path.Combine(TestHostRunner.RepoRoot, "CHANGELOG.md"));
        string unreleased = changelog[(changelog.IndexOf("## [Unreleased]", StringComparison.Ordinal) + "## [Unreleased]".Length)..];
        int next = unreleased.IndexOf("\n## [", StringComparison.Ordinal);
        Assert.Equal((next < 0 ? unreleased : unreleased[..next]).Trim(), notes);

        output.WriteLine($"repository {repository}; {notes.Length} characters of release notes");
    }

    [Fact]
    public void The_hosting_package_depends_on_Isolation_and_the_Microsoft_Extensions_abstractions_only()
    {
        using ZipArchive zip = ZipFile.OpenRead(package.HostingNupkg);
        XElement metadata = XDocument.Load(new MemoryStream(PackedPackage.ReadEntry(zip, "Isolation.Extensions.Hosting.nuspec"))).Root!.Element(Nuspec + "metadata")!;
        string[] dependencies = [.. metadata.Descendants(Nuspec + "dependency").Select(d => $"{d.Attribute("id")!.Value} {d.Attribute("version")!.Value}").Order()];
        Assert.Equal([
            $"Isolation {package.Version}",
            "Microsoft.Extensions.Configuration.Abstractions 10.0.0",
            "Microsoft.Extensions.Configuration.Binder 10.0.0",  // the configuration-binding source generator
            "Microsoft.Extensions.DependencyInjection.Abstractions 10.0.0",
            "Microsoft.Extensions.Diagnostics.HealthChecks.Abstractions 10.0.0",
            "Microsoft.Extensions.Options 10.0.0",
        ], dependencies);
        Assert.Equal("PACKAGE.md", metadata.Element(Nuspec + "readme")?.Value);
        Assert.Equal("icon.png", metadata.Element(Nuspec + "icon")?.Value);
        Assert.Equal(package.Commit, (string?)metadata.Element(Nuspec + "repository")?.Attribute("commit"));
        Assert.True(File.Exists(Path.ChangeExtension(package.HostingNupkg, ".snupkg")), "the hosting package has no .snupkg");
    }

    [Fact]
    public void Package_validation_is_on_and_the_symbols_are_a_separate_snupkg()
    {
        string properties = PackedPackage.Run("dotnet", ["msbuild", Path.Combine(TestHostRunner.RepoRoot, "src/Isolation/Isolation.csproj"),
            "-getProperty:EnablePackageValidation", "-getProperty:SymbolPackageFormat", "-getProperty:EmbedAllSources", "-p:Configuration=Release"], TestHostRunner.RepoRoot);
        Assert.Contains("\"EnablePackageValidation\": \"true\"", properties);
        Assert.Contains("\"SymbolPackageFormat\": \"snupkg\"", properties);

        using ZipArchive nupkg = package.OpenNupkg();
        Assert.Contains(nupkg.Entries, e => e.FullName == "lib/net10.0/Isolation.dll");
        Assert.DoesNotContain(nupkg.Entries, e => e.FullName.EndsWith(".pdb", StringComparison.Ordinal));
        using ZipArchive snupkg = package.OpenSnupkg();
        Assert.Contains(snupkg.Entries, e => e.FullName == "lib/net10.0/Isolation.pdb");
    }

    [Fact]
    public void The_pdb_embeds_every_source_under_a_mapped_path_and_no_binary_holds_a_path_of_the_build_machine()
    {
        using ZipArchive nupkg = package.OpenNupkg();
        using ZipArchive snupkg = package.OpenSnupkg();
        byte[] dll = PackedPackage.ReadEntry(nupkg, "lib/net10.0/Isolation.dll");
        byte[] pdb = PackedPackage.ReadEntry(snupkg, "lib/net10.0/Isolation.pdb");

        using (var pe = new PEReader(new MemoryStream(dll)))
        {
            DebugDirectoryEntry codeView = Assert.Single(pe.ReadDebugDirectory(), e => e.Type == DebugDirectoryEntryType.CodeView);
            Assert.StartsWith("/_/", pe.ReadCodeViewDebugDirectoryData(codeView).Path);
        }

        using MetadataReaderProvider provider = MetadataReaderProvider.FromPortablePdbImage([.. pdb]);
        MetadataReader reader = provider.GetMetadataReader();
        var embeddedSource = new Guid("0E8A571B-6926-466E-B4AD-8AB04611F5FE");
        var documents = reader.Documents.Select(h => (Handle: h, Name: reader.GetString(reader.GetDocument(h).Name))).ToList();
        Assert.NotEmpty(documents);
        foreach (var (handle, name) in documents)
        {
            Assert.True(name.StartsWith("/_/", StringComparison.Ordinal), $"PDB document {name} is not under the mapped root /_/");
            bool embedded = reader.GetCustomDebugInformation(handle).Any(c => reader.GetGuid(reader.GetCustomDebugInformation(c).Kind) == embeddedSource);
            Assert.True(embedded, $"PDB document {name} has no embedded source");
        }
        Assert.Contains(documents, d => d.Name == "/_/src/Isolation/NamespaceBuilder.cs");

        // No path of this machine in the assembly, the PDB or any native asset: the checkout, the NuGet packages
        // folder (reference assemblies, analyzers) or the pack's own directory, in UTF-8 or UTF-16.
        string nugetPackages = PackedPackage.Run("dotnet", ["nuget", "locals", "global-packages", "--list"], package.Work).Split(':', 2)[1].Trim().TrimEnd('/');
        string[] machinePaths = [TestHostRunner.RepoRoot.TrimEnd('/'), nugetPackages, package.Work];
        var binaries = new List<(string Name, byte[] Bytes)> { ("Isolation.dll", dll), ("Isolation.pdb", pdb) };
        binaries.AddRange(nupkg.Entries.Where(e => e.FullName.StartsWith("runtimes/", StringComparison.Ordinal)).Select(e => (e.FullName, PackedPackage.ReadEntry(nupkg, e.FullName))));
        foreach (var (name, bytes) in binaries)
        {
            foreach (string path in machinePaths.Where(p => p.Length > 1))
            {
                Assert.True(bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(path)) < 0, $"{name} holds the build machine's path {path}");
                Assert.True(bytes.AsSpan().IndexOf(Encoding.Unicode.GetBytes(path)) < 0, $"{name} holds the build machine's path {path} (UTF-16)");
            }
        }
        output.WriteLine($"{documents.Count} documents, all embedded under /_/; checked {binaries.Count} binaries for {string.Join(", ", machinePaths)}");
    }

    /// <summary>
    /// Every runtime's shim, helper and init: the right architecture, stripped, the right interpreter, and no glibc
    /// symbol version above 2.27 (.NET 10's own floor) for the glibc runtimes, none at all for musl.
    /// </summary>
    [Fact]
    public void Every_runtime_carries_stripped_native_assets_for_its_architecture_and_glibc_227_at_most()
    {
        using ZipArchive zip = package.OpenNupkg();
        string[] missing = [.. Runtimes.Where(rid => zip.GetEntry($"runtimes/{rid}/native/libIsolationNative.so") is null)];
        Assert.DoesNotContain("linux-x64", missing);
        foreach (string rid in Runtimes.Except(missing))
        {
            bool musl = rid.Contains("musl", StringComparison.Ordinal);
            bool arm = rid.EndsWith("arm64", StringComparison.Ordinal);
            foreach (string file in NativeFiles)
            {
                ElfFile elf = ElfFile.Read(PackedPackage.ReadEntry(zip, $"runtimes/{rid}/native/{file}"));
                string what = $"{rid}/{file}";
                Assert.True(elf.Machine == (arm ? ElfFile.EM_AARCH64 : ElfFile.EM_X86_64), $"{what} is for {elf.MachineName}");
                Assert.False(elf.HasSymbolTable, $"{what} is not stripped (it has .symtab)");
                Assert.Empty(elf.DebugSections);
                string? interpreter = file switch
                {
                    "isolation-helper" => (musl, arm) switch
                    {
                        (false, false) => "/lib64/ld-linux-x86-64.so.2",
                        (false, true) => "/lib/ld-linux-aarch64.so.1",
                        (true, false) => "/lib/ld-musl-x86_64.so.1",
                        (true, true) => "/lib/ld-musl-aarch64.so.1",
                    },
                    _ => null, // the shim is a library, the init is static
                };
                Assert.Equal(interpreter, elf.Interpreter);
                if (musl)
                    Assert.DoesNotContain(elf.NeededVersions, v => v.Version.StartsWith("GLIBC_", StringComparison.Ordinal));
                else
                    Assert.True(elf.HighestGlibcMinor is null or <= 27, $"{what} needs {string.Join(", ", elf.NeededVersions.Select(v => v.Version).Distinct())}, above GLIBC_2.27");
                output.WriteLine($"{what}: {elf.MachineName}, stripped, interpreter {elf.Interpreter ?? "none"}, " +
                    (elf.HighestGlibcMinor is int minor ? $"highest glibc symbol version GLIBC_2.{minor}" : "no glibc symbol versions"));
            }
        }
        if (missing.Length > 0)
            Assert.Skip($"checked {string.Join(", ", Runtimes.Except(missing))}; not built on this machine: {string.Join(", ", missing)} (their cross compilers are missing: see src/Isolation.Native/Makefile)");
    }

    /// <summary>
    /// The helper and init of every runtime run: natively where this machine can, under qemu-user for arm64. The
    /// helper enters its event loop on a channel and exits when the channel closes; the init runs a program as
    /// its child and exits with its status. Shims of other architectures can only be symbol-checked (above).
    /// </summary>
    [Fact]
    public void Every_runtimes_helper_and_init_run_natively_or_under_qemu()
    {
        string dir = Path.Combine(package.Work, "native-run");
        using (ZipArchive zip = package.OpenNupkg())
        {
            foreach (ZipArchiveEntry entry in zip.Entries.Where(e => e.FullName.StartsWith("runtimes/", StringComparison.Ordinal)))
            {
                string path = Path.Combine(dir, entry.FullName);
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                entry.ExtractToFile(path, overwrite: true);
                File.SetUnixFileMode(path, (UnixFileMode)0x1ED); // 0755: a restore may drop it; this test is not about that
            }
        }
        string channel = Path.Combine(dir, "channel.py");
        File.WriteAllText(channel, """
            # Starts argv[1:] with one end of a SOCK_SEQPACKET pair at fd 3 (the helper's channel), checks that it is
            # still running after a moment, closes the other end and prints whether it was alive and its exit code.
            import os, socket, subprocess, sys, time
            os.open("/dev/null", os.O_RDONLY)  # holds fd 3 so that neither end of the pair is 3
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            os.dup2(b.fileno(), 3)
            p = subprocess.Popen(sys.argv[1:], pass_fds=(3,))
            os.close(3); b.close()
            time.sleep(0.5)
            alive = p.poll() is None
            a.close()
            print("alive" if alive else "exited-early", p.wait())
            """);
        string qemu = new[] { "/usr/bin/qemu-aarch64-static", "/usr/bin/qemu-aarch64" }.FirstOrDefault(File.Exists) ?? "";
        bool python = File.Exists("/usr/bin/python3") || PackedPackage.RunProcess("sh", ["-c", "command -v python3"], dir, null).ExitCode == 0;
        Assert.SkipUnless(python, "needs python3 to hand the helper its channel at fd 3");

        var ran = new List<string>();
        var symbolCheckedOnly = new List<string>();
        foreach (string rid in Runtimes)
        {
            string native = Path.Combine(dir, "runtimes", rid, "native");
            if (!Directory.Exists(native))
            {
                symbolCheckedOnly.Add($"{rid} (not built here)");
                continue;
            }
            string[]? runner = Runner(rid, qemu);
            if (runner is null)
            {
                symbolCheckedOnly.Add($"{rid} helper and init (no way to run {rid} executables here)");
                continue;
            }
            var helper = PackedPackage.RunProcess("python3", [channel, .. runner, Path.Combine(native, "isolation-helper")], dir, null);
            Assert.True(helper.Stdout.Trim() == "alive 0", $"{rid} isolation-helper under [{string.Join(' ', runner)}]: {helper}");
            string[] init = [.. runner, Path.Combine(native, "isolation-init"), "2", "/bin/sh", "sh", "-c", "exit 7"];
            var initRun = PackedPackage.RunProcess(init[0], init[1..], dir, null);
            Assert.True(initRun.ExitCode == 7, $"{rid} isolation-init under [{string.Join(' ', runner)}] exited {initRun.ExitCode}, not with its program's 7: {initRun.Stderr}");
            ran.Add($"{rid} helper and init ({(runner.Length == 0 ? "natively" : Path.GetFileName(runner[0]))})");
        }
        symbolCheckedOnly.Add($"libIsolationNative.so of {string.Join(", ", Runtimes.Where(r => r != "linux-x64"))} (a shared library needs a .NET process of its runtime; linux-x64's is loaded by the consumer test)");
        output.WriteLine($"ran: {string.Join("; ", ran)}");
        output.WriteLine($"only symbol-checked: {string.Join("; ", symbolCheckedOnly)}");
        Assert.Contains(ran, r => r.StartsWith("linux-x64 ", StringComparison.Ordinal));
    }

    /// <summary>How to run a runtime's executables here: [] natively, [qemu, args...] under qemu-user, null when neither.</summary>
    private static string[]? Runner(string rid, string qemu)
    {
        bool arm = rid.EndsWith("arm64", StringComparison.Ordinal);
        bool musl = rid.Contains("musl", StringComparison.Ordinal);
        string interpreter = (musl, arm) switch
        {
            (false, false) => "/lib64/ld-linux-x86-64.so.2",
            (false, true) => "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1",
            (true, false) => "/lib/ld-musl-x86_64.so.1",
            (true, true) => "/lib/ld-musl-aarch64.so.1",
        };
        if (!File.Exists(interpreter))
            return null;
        if (!arm)
            return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64 ? [] : null;
        if (System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.Arm64)
            return [];
        if (qemu.Length == 0)
            return null;
        return musl ? [qemu] : [qemu, "-L", "/usr/aarch64-linux-gnu"];
    }

    /// <summary>
    /// A new project restores the package from a local feed that package source mapping makes the only source of
    /// Isolation* (a public package of the same id can never win), and runs the README's example and an init. The
    /// same build then runs with every native file's execute bit gone (as some restores leave them), and without
    /// the shim, which must fail with one sentence.
    /// </summary>
    [Fact]
    public void A_new_project_restores_the_package_from_a_mapped_local_feed_and_runs_sandboxes()
    {
        string app = Path.Combine(package.Work, "app");
        string packages = Path.Combine(package.Work, "packages");
        Directory.CreateDirectory(app);
        string machinePackages = PackedPackage.Run("dotnet", ["nuget", "locals", "global-packages", "--list"], app).Split(':', 2)[1].Trim();
        File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config>
                <!-- a packages folder of this test's own, so no copy of Isolation from an earlier run is used -->
                <add key="globalPackagesFolder" value="{packages}" />
              </config>
              <packageSources>
                <add key="isolation-local" value="{package.Feed}" />
              </packageSources>
              <!-- every other package comes from the machine's packages folder, already restored by this repository -->
              <fallbackPackageFolders>
                <add key="machine" value="{machinePackages}" />
              </fallbackPackageFolders>
              <packageSourceMapping>
                <packageSource key="isolation-local">
                  <package pattern="Isolation*" />
                </packageSource>
              </packageSourceMapping>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(app, "app.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="Isolation" Version="{package.Version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "Program.cs"), """
            using Isolation;

            try
            {
                IsolationSpec spec = new NamespaceBuilder()
                    .WithNamespaces(Namespaces.User | Namespaces.Pid | Namespaces.Mount | Namespaces.Uts | Namespaces.Ipc | Namespaces.Net)
                    .MapCurrentUserToRoot()
                    .WithHostname("sandbox")
                    .WithMounts(m => m.Proc("/proc"))
                    .Build();

                await using IsolatedProcess p = spec.Start("/bin/sh", ["-c", "echo $$; id -u; hostname"]);
                ExitStatus status = await p.WaitForExitAsync();
                if (!status.Success)
                    return 10;

                IsolationSpec withInit = new NamespaceBuilder()
                    .WithNamespaces(Namespaces.User | Namespaces.Pid | Namespaces.Mount)
                    .MapCurrentUserToRoot()
                    .WithMounts(m => m.Proc("/proc"))
                    .WithInit()
                    .Build();
                await using IsolatedProcess q = withInit.Start("/bin/sh", ["-c", "exit 7"]);
                return (await q.WaitForExitAsync()).ExitCode == 7 ? 0 : 11;
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"{e.GetType().FullName}: {e.Message}");
                return 3;
            }
            """);

        PackedPackage.Run("dotnet", ["build", "--nologo", "-v:q"], app);
        Assert.True(Directory.Exists(Path.Combine(packages, "isolation", package.Version)), "Isolation was not restored from the local feed into this test's packages folder");
        Assert.False(Directory.Exists(Path.Combine(machinePackages, "isolation", package.Version)), "Isolation went into the machine's packages folder");
        string bin = Path.Combine(app, "bin/Debug/net10.0");
        string native = Path.Combine(bin, "runtimes/linux-x64/native");
        foreach (string rid in Runtimes)
            output.WriteLine($"{rid}: {(Directory.Exists(Path.Combine(bin, "runtimes", rid, "native")) ? string.Join(", ", Directory.GetFiles(Path.Combine(bin, "runtimes", rid, "native")).Select(Path.GetFileName)) : "absent")}");

        var run = PackedPackage.RunProcess("dotnet", [Path.Combine(bin, "app.dll")], app, null);
        Assert.True(run.ExitCode == 0, $"the app exited {run.ExitCode}: {run.Stdout}{run.Stderr}");
        Assert.Equal(["1", "0", "sandbox"], run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        // The helper, the init and the shim without their execute bits.
        foreach (string file in Directory.GetFiles(native))
            File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        run = PackedPackage.RunProcess("dotnet", [Path.Combine(bin, "app.dll")], app, null);
        Assert.True(run.ExitCode == 0, $"without execute bits the app exited {run.ExitCode}: {run.Stdout}{run.Stderr}");

        // No shim: one sentence that names the file, the runtime and what to do.
        File.Delete(Path.Combine(native, "libIsolationNative.so"));
        run = PackedPackage.RunProcess("dotnet", [Path.Combine(bin, "app.dll")], app, null);
        output.WriteLine($"without the shim: {run.Stderr.Trim()}");
        Assert.Equal(3, run.ExitCode);
        Assert.Equal(
            "System.DllNotFoundException: Isolation's native library libIsolationNative.so for linux-x64 is missing beside Isolation.dll and in runtimes/linux-x64/native/; " +
            "restore the Isolation package for this runtime (it carries linux-x64, linux-arm64, linux-musl-x64, linux-musl-arm64) or build it with make -C src/Isolation.Native.",
            run.Stderr.Trim());
    }
}
