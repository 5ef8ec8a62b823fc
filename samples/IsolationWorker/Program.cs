// A worker service that runs shell jobs in the "jobs" sandbox of appsettings.json, after checking with the
// Isolation health check that this host can run sandboxes at all.
//
//   dotnet run --project samples/IsolationWorker                     # every 10 s until Ctrl+C
//   dotnet run --project samples/IsolationWorker -- --Worker:RunOnce=true
using Isolation;
using Isolation.Extensions.Hosting;
using Microsoft.Extensions.Diagnostics.HealthChecks;

HostApplicationBuilder builder = Host.CreateApplicationBuilder(args);
builder.Services.AddIsolation(builder.Configuration.GetSection(IsolationOptions.SectionName))
    .Configure("jobs", b => b.WithStandardOutput(Stdio.Pipe).WithNewSession());
builder.Services.AddHealthChecks().AddCheck<IsolationHealthCheck>("isolation");
builder.Services.AddHostedService<JobWorker>();
await builder.Build().RunAsync();

internal sealed partial class JobWorker(IsolationSpecs specs, HealthCheckService health, IConfiguration configuration,
    IHostApplicationLifetime lifetime, ILogger<JobWorker> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        HealthReport report = await health.CheckHealthAsync(stoppingToken);
        foreach (var (name, entry) in report.Entries)
            LogHealth(name, entry.Status, entry.Description);
        if (report.Status != HealthStatus.Healthy)
        {
            Environment.ExitCode = 2;
            lifetime.StopApplication();
            return;
        }

        string[] jobs = configuration.GetSection("Worker:Jobs").Get<string[]>() ?? [];
        TimeSpan interval = configuration.GetValue("Worker:Interval", TimeSpan.FromSeconds(10));
        do
        {
            foreach (string job in jobs)
            {
                await using IsolatedProcess process = specs.Get("jobs").Start("/bin/sh", ["-c", job]);
                string output = await new StreamReader(process.StandardOutput!).ReadToEndAsync(stoppingToken);
                ExitStatus status = await process.WaitForExitAsync(stoppingToken);
                LogJob(job, status.ToString(), output.TrimEnd());
                if (!status.Success)
                    Environment.ExitCode = 1;
            }
        }
        while (!configuration.GetValue<bool>("Worker:RunOnce") && await Delay(interval, stoppingToken));
        lifetime.StopApplication();
    }

    private static async Task<bool> Delay(TimeSpan interval, CancellationToken stoppingToken)
    {
        try
        {
            await Task.Delay(interval, stoppingToken);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "health check {Name}: {Status}, {Description}")]
    private partial void LogHealth(string name, HealthStatus status, string? description);

    [LoggerMessage(Level = LogLevel.Information, Message = "job {Job}: {Status}; output: {Output}")]
    private partial void LogJob(string job, string status, string output);
}
