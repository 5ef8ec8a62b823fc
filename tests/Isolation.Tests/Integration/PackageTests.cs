using System.Diagnostics;
using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>The NuGet package, as a user gets it: pack, reference it from a new project, run the README example.</summary>
public sealed class PackageTests
{
    [Fact]
    public void The_readme_example_compiles_against_the_package_and_runs()
    {
        string work = Directory.CreateTempSubdirectory("isolation-package-").FullName;
        try
        {
            string feed = Path.Combine(work, "feed");
            Run("dotnet", ["pack", Path.Combine(TestHostRunner.RepoRoot, "src/Isolation/Isolation.csproj"), "-c", "Release", "-o", feed, "-p:Version=0.0.0-test", "--nologo"], TestHostRunner.RepoRoot);

            string app = Path.Combine(work, "app");
            Directory.CreateDirectory(app);
            File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <add key="isolation-test-feed" value="{feed}" />
                  </packageSources>
                </configuration>
                """);
            File.WriteAllText(Path.Combine(app, "app.csproj"), """
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <Nullable>enable</Nullable>
                    <ImplicitUsings>enable</ImplicitUsings>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="Isolation" Version="0.0.0-test" />
                  </ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(app, "Program.cs"), """
                using Isolation;

                IsolationSpec spec = new NamespaceBuilder()
                    .WithNamespaces(Namespaces.User | Namespaces.Pid | Namespaces.Mount | Namespaces.Uts | Namespaces.Ipc | Namespaces.Net)
                    .MapCurrentUserToRoot()
                    .WithHostname("sandbox")
                    .WithMounts(m => m.Proc("/proc"))
                    .Build();

                await using IsolatedProcess p = spec.Start("/bin/sh", ["-c", "echo $$; id -u; hostname"]);
                ExitStatus status = await p.WaitForExitAsync();
                return status.ExitCode;
                """);
            // Outside this repository's Directory.Build.props and central package versions.
            string output = Run("dotnet", ["run", "--nologo", "-p:ManagePackageVersionsCentrally=false"], app);

            Assert.Equal(["1", "0", "sandbox"], output.Split('\n', StringSplitOptions.RemoveEmptyEntries).TakeLast(3));
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    private static string Run(string program, string[] args, string cwd)
    {
        var info = new ProcessStartInfo(program, args) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true };
        using Process p = Process.Start(info)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{program} {string.Join(' ', args)} failed ({p.ExitCode}):\n{stdout}\n{stderr.Result}");
        return stdout;
    }
}
