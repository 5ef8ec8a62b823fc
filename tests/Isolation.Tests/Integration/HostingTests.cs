using System.Reflection;
using Isolation.Extensions.Hosting;
using Isolation.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Isolation.Tests.Integration;

/// <summary>Isolation.Extensions.Hosting: named specs bound from configuration, the health check, the sample worker.</summary>
public sealed class HostingTests
{
    private static ServiceProvider Services(Dictionary<string, string?> settings, Action<IsolationBuilder>? code = null)
    {
        IConfiguration configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var services = new ServiceCollection();
        IsolationBuilder builder = services.AddIsolation(configuration.GetSection(IsolationOptions.SectionName));
        code?.Invoke(builder);
        return services.BuildServiceProvider();
    }

    [Fact]
    public async Task A_spec_bound_from_configuration_and_completed_in_code_runs_a_sandbox()
    {
        using ServiceProvider provider = Services(new()
        {
            ["Isolation:Specs:jobs:Namespaces"] = "User, Pid, Mount, Uts",
            ["Isolation:Specs:jobs:Hostname"] = "job",
            ["Isolation:Specs:jobs:MountProc"] = "true",
            ["Isolation:Specs:jobs:Tmpfs:0"] = "/tmp",
            ["Isolation:Specs:jobs:Environment:GREETING"] = "hello",
            ["Isolation:Specs:jobs:Timeout"] = "00:00:30",
        }, b => b.Configure("jobs", n => n.WithStandardOutput(Stdio.Pipe)));
        IsolationSpecs specs = provider.GetRequiredService<IsolationSpecs>();

        IsolationSpec spec = specs.Get("jobs");
        Assert.Same(spec, specs.Get("JOBS")); // built once; names are case-insensitive, as configuration keys
        Assert.Equal(Namespaces.User | Namespaces.Pid | Namespaces.Mount | Namespaces.Uts, spec.Namespaces);
        await using IsolatedProcess p = spec.Start("/bin/sh", ["-c", "echo $$ $(id -u) $(hostname) $GREETING; grep -c ' /tmp tmpfs ' /proc/self/mounts"]);
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync(TestContext.Current.CancellationToken);
        Assert.True((await p.WaitForExitAsync(TestContext.Current.CancellationToken)).Success, output);
        Assert.Equal(["1 0 job hello", "1"], output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void An_invalid_or_unknown_spec_fails_with_its_name()
    {
        using ServiceProvider provider = Services(new()
        {
            ["Isolation:Specs:broken:Namespaces"] = "User, Pid",
            ["Isolation:Specs:broken:Hostname"] = "no-uts",
        });
        IsolationSpecs specs = provider.GetRequiredService<IsolationSpecs>();
        var invalid = Assert.Throws<ArgumentException>(() => specs.Get("broken"));
        Assert.StartsWith("Isolation spec 'broken': WithHostname requires Namespaces.Uts", invalid.Message);
        var unknown = Assert.Throws<KeyNotFoundException>(() => specs.Get("nope"));
        Assert.Equal("No Isolation spec is named 'nope'; configure it under Isolation:Specs:nope or add it with AddIsolation().Configure(\"nope\", ...). Known: broken.", unknown.Message);
    }

    [Fact]
    public async Task The_health_check_is_healthy_when_a_sandbox_runs_and_says_why_when_not()
    {
        using ServiceProvider healthy = Services(new());
        HealthCheckResult ok = await Check(healthy);
        Assert.True(ok.Status == HealthStatus.Healthy, ok.Description);
        Assert.StartsWith("started and reaped a sandbox in ", ok.Description);

        using ServiceProvider missing = Services(new() { ["Isolation:HealthCheck:Program"] = "/no/such/program" });
        HealthCheckResult failed = await Check(missing);
        Assert.Equal(HealthStatus.Unhealthy, failed.Status);
        Assert.StartsWith("cannot start a sandbox: ", failed.Description);
        Assert.Contains("ENOENT", failed.Description);
        Assert.IsType<SandboxSetupException>(failed.Exception);

        using ServiceProvider exits = Services(new() { ["Isolation:HealthCheck:Program"] = "/bin/false" });
        HealthCheckResult exited = await Check(exits);
        Assert.Equal(HealthStatus.Unhealthy, exited.Status);
        Assert.StartsWith("the probe sandbox (/bin/false) ended: ", exited.Description);
    }

    private static Task<HealthCheckResult> Check(IServiceProvider provider)
    {
        IsolationHealthCheck check = provider.GetRequiredService<IsolationHealthCheck>();
        var context = new HealthCheckContext { Registration = new HealthCheckRegistration("isolation", check, HealthStatus.Unhealthy, null) };
        return check.CheckHealthAsync(context, TestContext.Current.CancellationToken);
    }

    [Fact]
    public void The_sample_worker_checks_health_and_runs_its_job_from_appsettings()
    {
        string dir = typeof(HostingTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().First(a => a.Key == "WorkerDir").Value!;
        string worker = Path.Combine(dir, "isolation-worker");
        Assert.SkipUnless(File.Exists(worker), $"needs the sample built ({worker}): dotnet build samples/IsolationWorker -c Release");

        var (code, stdout, stderr) = PackedPackage.RunProcess(worker, ["--Worker:RunOnce=true"], dir, null);

        Assert.True(code == 0, $"isolation-worker exited {code}:\n{stdout}\n{stderr}");
        Assert.Contains("health check isolation: Healthy, started and reaped a sandbox in ", stdout);
        Assert.Matches(@"job .*: exited with code 0; output: job 2 on job, [0-9]+ processes", stdout.ReplaceLineEndings(" "));
    }
}
